//! Amazon SES's notifications, through Amazon SNS. SNS signs each message
//! it posts: `Signature` is an RSA signature (`SignatureVersion` 1:
//! SHA1withRSA, 2: SHA256withRSA) over a canonical string of the message's
//! fields, made with the key of the certificate at `SigningCertURL`. herald
//! takes a message only when
//! - its `TopicArn` is one of `bounces.webhooks.ses_topic_arns`;
//! - `SigningCertURL` is `https://sns.REGION.amazonaws.com[.cn]/….pem`
//!   ([`amazon_url`]; anything else is refused before any fetch);
//! - the certificate found there chains to a trusted root (the public roots,
//!   and the operator's `ses_extra_ca_file`) and is valid now
//!   ([`signing_certificate`]);
//! - and the signature checks out with its key ([`verify`]).
//!
//! A `SubscriptionConfirmation` is confirmed by fetching its `SubscribeURL`
//! (same URL rule); a `Notification`'s `Message` is SES's own JSON, a
//! `Bounce` (`bounceType` `Permanent`, `Transient`, `Undetermined`), a
//! `Complaint` or a `DeliveryDelay` ([`events`]); every other notification
//! (deliveries, opens, clicks, SES's own test messages) is acknowledged and
//! ignored. The SNS `MessageId` and the recipient make each event's
//! reference, so a message SNS sends again is acted on once.

use base64::Engine as _;
use chrono::{DateTime, Utc};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{
    AlgorithmIdentifier, CertificateDer, InvalidSignature, SignatureVerificationAlgorithm,
    TrustAnchor, UnixTime,
};
use serde_json::Value;
use url::Url;

use super::{id, permanent, status, text, Event, Refusal, Verp};
use crate::bounces::classify::{Finding, Kind};

/// What SNS posts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    Notification,
    SubscriptionConfirmation,
    UnsubscribeConfirmation,
}

/// An SNS message, its fields as sent (not yet believed).
#[derive(Debug, Clone)]
pub struct Envelope {
    pub kind: MessageType,
    pub message_id: String,
    pub topic_arn: String,
    pub subject: Option<String>,
    pub message: String,
    pub timestamp: String,
    pub token: Option<String>,
    pub signature_version: SignatureVersion,
    pub signature: Vec<u8>,
    pub signing_cert_url: Url,
    pub subscribe_url: Option<Url>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureVersion {
    /// SHA1withRSA.
    V1,
    /// SHA256withRSA.
    V2,
}

/// Reads the body SNS posted and checks what can be checked without a
/// fetch: the fields, the topic, and the certificate URL's rule.
pub fn envelope(body: &[u8], allowed_topics: &[String]) -> Result<Envelope, Refusal> {
    let value = super::json(body)?;
    let field = |name: &str| value.get(name).and_then(Value::as_str);
    let required = |name: &str| {
        field(name)
            .map(str::to_owned)
            .ok_or_else(|| Refusal::Malformed(format!("no `{name}` in the SNS message")))
    };
    let kind = match field("Type") {
        Some("Notification") => MessageType::Notification,
        Some("SubscriptionConfirmation") => MessageType::SubscriptionConfirmation,
        Some("UnsubscribeConfirmation") => MessageType::UnsubscribeConfirmation,
        Some(other) => {
            return Err(Refusal::Malformed(format!(
                "`Type` is `{}`, not an SNS message type",
                super::shown(other)
            )))
        }
        None => return Err(Refusal::Malformed("no `Type`: not an SNS message".into())),
    };
    let (Some(signature), Some(version), Some(cert_url)) =
        (field("Signature"), field("SignatureVersion"), field("SigningCertURL"))
    else {
        return Err(Refusal::Unsigned(
            "an SNS message needs `Signature`, `SignatureVersion` and `SigningCertURL`".into(),
        ));
    };
    let topic_arn = required("TopicArn")?;
    if !allowed_topics.contains(&topic_arn) {
        return Err(Refusal::Forbidden(format!(
            "the topic `{}` is not in bounces.webhooks.ses_topic_arns",
            super::shown(&topic_arn)
        )));
    }
    let signature_version = match version {
        "1" => SignatureVersion::V1,
        "2" => SignatureVersion::V2,
        other => {
            return Err(Refusal::Forbidden(format!(
                "SignatureVersion `{}` is not 1 or 2",
                super::shown(other)
            )))
        }
    };
    let signature = base64::engine::general_purpose::STANDARD
        .decode(signature.trim())
        .map_err(|_| Refusal::Forbidden("`Signature` is not base64".into()))?;
    let signing_cert_url = amazon_url(cert_url, true).map_err(Refusal::Forbidden)?;
    let subscribe_url = match kind {
        MessageType::Notification => None,
        _ => Some(
            amazon_url(&required("SubscribeURL")?, false)
                .map_err(|e| Refusal::Forbidden(format!("SubscribeURL: {e}")))?,
        ),
    };
    let token = match kind {
        MessageType::Notification => None,
        _ => Some(required("Token")?),
    };
    Ok(Envelope {
        kind,
        message_id: required("MessageId")?,
        topic_arn,
        subject: field("Subject").map(str::to_owned),
        message: required("Message")?,
        timestamp: required("Timestamp")?,
        token,
        signature_version,
        signature,
        signing_cert_url,
        subscribe_url,
    })
}

/// The rule for the URLs herald fetches for SNS: `https`, no user or
/// password, and the host `sns.REGION.amazonaws.com` (or `.com.cn`), where
/// REGION is one label; a certificate's path ends in `.pem`. Checked
/// before anything is fetched, so a message cannot make herald fetch from
/// anywhere else.
pub fn amazon_url(text: &str, certificate: bool) -> Result<Url, String> {
    let refuse = |why: &str| Err(format!("`{}` {why}", super::shown(text)));
    let Ok(url) = Url::parse(text.trim()) else { return refuse("is not a URL") };
    if url.scheme() != "https" {
        return refuse("is not https");
    }
    if !url.username().is_empty() || url.password().is_some() {
        return refuse("carries credentials");
    }
    let Some(url::Host::Domain(host)) = url.host() else {
        return refuse("has no host name");
    };
    let region = host
        .strip_suffix(".amazonaws.com")
        .or_else(|| host.strip_suffix(".amazonaws.com.cn"))
        .and_then(|rest| rest.strip_prefix("sns."));
    let region_ok = region.is_some_and(|r| {
        !r.is_empty()
            && r.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    });
    if !region_ok {
        return refuse("is not on sns.REGION.amazonaws.com");
    }
    if certificate && !url.path().ends_with(".pem") {
        return refuse("is not a .pem file");
    }
    Ok(url)
}

/// The string SNS signs for `envelope`: each field's name and value on lines
/// of their own, in this order, `Subject` only when present.
pub fn string_to_sign(envelope: &Envelope) -> String {
    let mut s = String::with_capacity(envelope.message.len() + 512);
    let mut push = |name: &str, value: &str| {
        s.push_str(name);
        s.push('\n');
        s.push_str(value);
        s.push('\n');
    };
    push("Message", &envelope.message);
    push("MessageId", &envelope.message_id);
    match envelope.kind {
        MessageType::Notification => {
            if let Some(subject) = &envelope.subject {
                push("Subject", subject);
            }
            push("Timestamp", &envelope.timestamp);
            push("TopicArn", &envelope.topic_arn);
        }
        _ => {
            let url = envelope.subscribe_url.as_ref().map_or("", Url::as_str);
            push("SubscribeURL", url);
            push("Timestamp", &envelope.timestamp);
            push("Token", envelope.token.as_deref().unwrap_or(""));
            push("TopicArn", &envelope.topic_arn);
        }
    }
    push(
        "Type",
        match envelope.kind {
            MessageType::Notification => "Notification",
            MessageType::SubscriptionConfirmation => "SubscriptionConfirmation",
            MessageType::UnsubscribeConfirmation => "UnsubscribeConfirmation",
        },
    );
    s
}

/// What [`signing_certificate`] found.
#[derive(Debug)]
pub enum Chain {
    /// The signing certificate, chained to a trusted root.
    Trusted(CertificateDer<'static>),
    /// Its issuer is unknown here (SNS's file holds the signing certificate
    /// alone), and the certificate names where Amazon publishes it, a URL
    /// that passes [`issuer_url`]: fetch it and ask again with it.
    NeedsIssuer(Url),
}

/// The signing certificate in `pem` (the first certificate; any others are
/// intermediates), once it chains to a root of `webpki-roots` or to one of
/// `extra` and is valid at `now`. `issuers` are intermediates fetched from
/// the URL a [`Chain::NeedsIssuer`] named.
pub fn signing_certificate(
    pem: &[u8],
    extra: &[CertificateDer<'static>],
    issuers: &[CertificateDer<'static>],
    now: DateTime<Utc>,
) -> Result<Chain, String> {
    let mut certs = Vec::new();
    for cert in CertificateDer::pem_slice_iter(pem) {
        certs.push(cert.map_err(|e| format!("the signing certificate is not PEM: {e}"))?);
    }
    if certs.is_empty() {
        return Err("no certificate in the signing certificate's PEM".into());
    }
    let leaf = certs.remove(0);
    let mut anchors: Vec<TrustAnchor<'_>> = webpki_roots::TLS_SERVER_ROOTS.to_vec();
    anchors.extend(extra.iter().filter_map(|c| webpki::anchor_from_trusted_cert(c).ok()));
    let mut intermediates = certs;
    intermediates.extend(extra.iter().cloned());
    intermediates.extend(issuers.iter().cloned());
    let seconds = u64::try_from(now.timestamp()).unwrap_or(0);
    let verified = {
        let end = webpki::EndEntityCert::try_from(&leaf)
            .map_err(|e| format!("the signing certificate cannot be read: {e}"))?;
        end.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &anchors,
            &intermediates,
            UnixTime::since_unix_epoch(std::time::Duration::from_secs(seconds)),
            webpki::KeyUsage::server_auth(),
            None,
            None,
        )
        .map(|_| ())
    };
    match verified {
        Ok(()) => Ok(Chain::Trusted(leaf)),
        Err(webpki::Error::UnknownIssuer) if issuers.is_empty() => match issuer_url(&leaf) {
            Some(url) => Ok(Chain::NeedsIssuer(url)),
            None => Err(format!(
                "the signing certificate's issuer is not trusted ({}), and the certificate names no issuer on amazontrust.com; bounces.webhooks.ses_extra_ca_file can add it",
                webpki::Error::UnknownIssuer
            )),
        },
        Err(e) => Err(format!("the signing certificate does not chain to a trusted root: {e}")),
    }
}

/// The DER of the caIssuers access method (RFC 5280 4.2.2.1,
/// id-ad-caIssuers, 1.3.6.1.5.5.7.48.2).
const CA_ISSUERS: [u8; 10] = [0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x02];

/// Where the certificate `der` says its issuer's certificate is (its
/// Authority Information Access caIssuers URI), when that is on Amazon's
/// own certificate host: `http(s)://…amazontrust.com/….cer` (or `.crt`,
/// `.der`, `.pem`). Any other URL is never fetched. What is fetched there is
/// only a candidate intermediate: the chain to a trusted root decides.
pub fn issuer_url(der: &[u8]) -> Option<Url> {
    let at = der.windows(CA_ISSUERS.len()).position(|w| w == CA_ISSUERS)? + CA_ISSUERS.len();
    // A GeneralName uniformResourceIdentifier: [6] IA5String.
    if *der.get(at)? != 0x86 {
        return None;
    }
    let (len, start) = match *der.get(at + 1)? {
        n if n < 0x80 => (usize::from(n), at + 2),
        0x81 => (usize::from(*der.get(at + 2)?), at + 3),
        _ => return None,
    };
    let text = std::str::from_utf8(der.get(start..start + len)?).ok()?;
    let url = Url::parse(text).ok()?;
    let host = match url.host() {
        Some(url::Host::Domain(host)) => host.to_ascii_lowercase(),
        _ => return None,
    };
    let path = url.path().to_ascii_lowercase();
    let ok = matches!(url.scheme(), "http" | "https")
        && url.username().is_empty()
        && url.password().is_none()
        && host.strip_suffix(".amazontrust.com").is_some_and(|rest| {
            !rest.is_empty()
                && rest.split('.').all(|l| {
                    !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                })
        })
        && [".cer", ".crt", ".der", ".pem"].iter().any(|ext| path.ends_with(ext));
    ok.then_some(url)
}

/// The certificates in an issuer's file: DER, or PEM.
pub fn issuer_certificates(bytes: &[u8]) -> Vec<CertificateDer<'static>> {
    if bytes.starts_with(b"-----") {
        CertificateDer::pem_slice_iter(bytes).filter_map(Result::ok).collect()
    } else {
        vec![CertificateDer::from(bytes.to_vec())]
    }
}

/// RSA PKCS#1 v1.5 with SHA-1, which SNS's SignatureVersion 1 uses and
/// webpki no longer offers (it is only for this, never for certificates).
#[derive(Debug)]
struct RsaSha1;

impl SignatureVerificationAlgorithm for RsaSha1 {
    fn verify_signature(
        &self,
        public_key: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), InvalidSignature> {
        ring::signature::UnparsedPublicKey::new(
            &ring::signature::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
            public_key,
        )
        .verify(message, signature)
        .map_err(|_| InvalidSignature)
    }

    fn public_key_alg_id(&self) -> AlgorithmIdentifier {
        rustls_pki_types::alg_id::RSA_ENCRYPTION
    }

    fn signature_alg_id(&self) -> AlgorithmIdentifier {
        // sha1WithRSAEncryption, NULL parameters.
        AlgorithmIdentifier::from_slice(&[
            0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x05, 0x05, 0x00,
        ])
    }
}

/// Checks `envelope`'s signature with the key of `certificate` (one that
/// [`signing_certificate`] accepted).
pub fn verify(envelope: &Envelope, certificate: &CertificateDer<'_>) -> Result<(), Refusal> {
    let cert = webpki::EndEntityCert::try_from(certificate)
        .map_err(|e| Refusal::Forbidden(format!("the signing certificate cannot be read: {e}")))?;
    let algorithm: &dyn SignatureVerificationAlgorithm = match envelope.signature_version {
        SignatureVersion::V1 => &RsaSha1,
        SignatureVersion::V2 => webpki::ring::RSA_PKCS1_2048_8192_SHA256,
    };
    cert.verify_signature(algorithm, string_to_sign(envelope).as_bytes(), &envelope.signature)
        .map_err(|_| Refusal::Forbidden("the SNS signature does not match".into()))
}

/// The findings of a verified `Notification`'s SES message. A message that
/// is not SES's JSON (SES's own set-up notice) or not about a failure gives
/// none.
pub fn events(envelope: &Envelope, verp: &Verp<'_>) -> Result<Vec<Event>, Refusal> {
    let Ok(message) = serde_json::from_str::<Value>(&envelope.message) else {
        return Ok(Vec::new());
    };
    let name = message
        .get("notificationType")
        .or_else(|| message.get("eventType"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let section = |key: &str| {
        message.get(key).filter(|v| v.is_object()).ok_or_else(|| {
            Refusal::Malformed(format!("a {name} notification without its `{key}` object"))
        })
    };
    // The kind of each recipient's failure: `None` for a permanent one,
    // whose status decides.
    let (kind, recipients): (Option<Kind>, &Value) = match name {
        "Bounce" => {
            let bounce = section("bounce")?;
            let kind = match bounce.get("bounceType").and_then(Value::as_str) {
                Some("Permanent") => None,
                // SES gave up on a temporary failure, or cannot tell.
                Some("Transient") | Some("Undetermined") => Some(Kind::Soft),
                _ => {
                    return Err(Refusal::Malformed(
                        "a Bounce without bounceType Permanent, Transient or Undetermined".into(),
                    ))
                }
            };
            (kind, bounce.get("bouncedRecipients").unwrap_or(&Value::Null))
        }
        "Complaint" => {
            let complaint = section("complaint")?;
            (Some(Kind::Complaint), complaint.get("complainedRecipients").unwrap_or(&Value::Null))
        }
        "DeliveryDelay" => {
            let delay = section("deliveryDelay")?;
            (Some(Kind::Delayed), delay.get("delayedRecipients").unwrap_or(&Value::Null))
        }
        // Delivery, Send, Open, Click, Reject, ...
        _ => return Ok(Vec::new()),
    };
    let recipients = recipients.as_array().ok_or_else(|| {
        Refusal::Malformed(format!("a {name} notification without its recipients"))
    })?;
    // One reader per message: a VERP address in the mail's envelope sender
    // or headers names them when the notification is about one recipient.
    let tag = match recipients.len() {
        1 => message.get("mail").and_then(|m| verp.tag_in(m)),
        _ => None,
    };
    let message_id = id(Some(&Value::String(envelope.message_id.clone()))).unwrap_or_default();
    let mut found = Vec::new();
    for (n, r) in recipients.iter().take(1000).enumerate() {
        let email = text(r.get("emailAddress")).filter(|e| e.contains('@')).ok_or_else(|| {
            Refusal::Malformed(format!("{name} recipient {n} has no `emailAddress`"))
        })?;
        let status = status(r.get("status").and_then(Value::as_str));
        found.push(Event {
            finding: Finding {
                kind: kind.unwrap_or_else(|| permanent(status.as_deref())),
                address: Some(email.clone()),
                status,
                diagnostic: text(r.get("diagnosticCode")),
            },
            tag,
            reference: Some(format!("{message_id}#{}", email.to_ascii_lowercase())),
        });
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    const ARN: &str = "arn:aws:sns:us-east-1:123456789012:herald-bounces";

    fn topics() -> Vec<String> {
        vec![ARN.to_owned()]
    }

    fn notification(message: &str, cert_url: &str) -> String {
        serde_json::json!({
            "Type": "Notification",
            "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
            "TopicArn": ARN,
            "Message": message,
            "Timestamp": "2026-11-30T10:00:00.000Z",
            "SignatureVersion": "1",
            "Signature": "AAAA",
            "SigningCertURL": cert_url,
        })
        .to_string()
    }

    #[test]
    fn certificate_urls_must_be_amazons() {
        for good in [
            "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0123456789abcdef.pem",
            "https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-x.pem",
            "https://sns.us-east-1.amazonaws.com:8443/cert.pem",
        ] {
            assert!(amazon_url(good, true).is_ok(), "{good}");
        }
        for bad in [
            "https://evil.example/cert.pem",
            "http://sns.us-east-1.amazonaws.com/cert.pem",
            "https://sns.us-east-1.amazonaws.com.evil.example/cert.pem",
            "https://evilsns.us-east-1.amazonaws.com/cert.pem",
            "https://sns.us-east-1.evil.amazonaws.com/cert.pem",
            "https://s3.amazonaws.com/bucket/cert.pem",
            "https://sns..amazonaws.com/cert.pem",
            "https://sns.us-east-1.amazonaws.com/cert.txt",
            "https://user:pw@sns.us-east-1.amazonaws.com/cert.pem",
            "https://54.239.28.85/cert.pem",
            "file:///etc/passwd.pem",
            "not a url",
        ] {
            assert!(amazon_url(bad, true).is_err(), "{bad}");
        }
        // A subscription's confirmation URL needs no .pem.
        assert!(amazon_url(
            "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&Token=x",
            false
        )
        .is_ok());
    }

    #[test]
    fn issuers_are_fetched_only_from_amazons_certificate_host() {
        let der = |url: &str| {
            let mut der = vec![0x30, 0x10];
            der.extend(CA_ISSUERS);
            der.push(0x86);
            der.push(u8::try_from(url.len()).unwrap());
            der.extend(url.as_bytes());
            der.extend([0x30, 0x00]);
            der
        };
        let good = "http://crt.r2m02.amazontrust.com/r2m02.cer";
        assert_eq!(issuer_url(&der(good)).map(String::from), Some(good.to_owned()));
        assert!(issuer_url(&der("https://crt.test.amazontrust.com:8080/x.crt")).is_some());
        for bad in [
            "http://evil.example/r2m02.cer",
            "http://crt.amazontrust.com.evil.example/r2m02.cer",
            "http://amazontrust.com/r2m02.cer",
            "http://crt.r2m02.amazontrust.com/r2m02.html",
            "ftp://crt.r2m02.amazontrust.com/r2m02.cer",
            "http://user@crt.r2m02.amazontrust.com/r2m02.cer",
            "http://127.0.0.1/r2m02.cer",
        ] {
            assert_eq!(issuer_url(&der(bad)), None, "{bad}");
        }
        assert_eq!(issuer_url(b"no extension here"), None);
        let mut cut = der(good);
        cut.truncate(20);
        assert_eq!(issuer_url(&cut), None, "cut short");
    }

    #[test]
    fn the_envelope_is_checked_before_any_fetch() {
        let good = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-1.pem";
        let e = envelope(notification("{}", good).as_bytes(), &topics()).unwrap();
        assert_eq!(e.kind, MessageType::Notification);
        assert!(matches!(
            envelope(notification("{}", "https://evil.example/cert.pem").as_bytes(), &topics()),
            Err(Refusal::Forbidden(_))
        ));
        assert!(matches!(
            envelope(
                notification("{}", good).as_bytes(),
                &["arn:aws:sns:us-east-1:1:other".into()]
            ),
            Err(Refusal::Forbidden(_))
        ));
        let unsigned = notification("{}", good).replace("\"Signature\":\"AAAA\",", "");
        assert!(matches!(envelope(unsigned.as_bytes(), &topics()), Err(Refusal::Unsigned(_))));
        assert!(matches!(envelope(b"{\"Type\":1}", &topics()), Err(Refusal::Malformed(_))));
        assert!(matches!(envelope(b"<xml/>", &topics()), Err(Refusal::Malformed(_))));
    }

    #[test]
    fn the_canonical_strings() {
        let good = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-1.pem";
        let mut e = envelope(notification("hello", good).as_bytes(), &topics()).unwrap();
        assert_eq!(
            string_to_sign(&e),
            format!("Message\nhello\nMessageId\n22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324\nTimestamp\n2026-11-30T10:00:00.000Z\nTopicArn\n{ARN}\nType\nNotification\n")
        );
        e.subject = Some("Hi".into());
        assert!(string_to_sign(&e)
            .contains("MessageId\n22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324\nSubject\nHi\nTimestamp\n"));
        e.kind = MessageType::SubscriptionConfirmation;
        e.token = Some("tok".into());
        e.subscribe_url = Some(
            Url::parse("https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription").unwrap(),
        );
        assert_eq!(
            string_to_sign(&e),
            format!("Message\nhello\nMessageId\n22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324\nSubscribeURL\nhttps://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription\nTimestamp\n2026-11-30T10:00:00.000Z\nToken\ntok\nTopicArn\n{ARN}\nType\nSubscriptionConfirmation\n")
        );
    }

    #[test]
    fn ses_messages_become_findings() {
        let (s, b) = (secret(), bounce());
        let verp = Verp { secret: &s, bounce_address: Some(&b) };
        let sender = crate::bounces::verp::envelope_sender(
            &s,
            &b,
            crate::bounces::verp::Tag { edition: 4, subscriber: 2 },
        );
        let good = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-1.pem";
        let of = |message: Value| {
            let e =
                envelope(notification(&message.to_string(), good).as_bytes(), &topics()).unwrap();
            events(&e, &verp)
        };
        let hard = of(serde_json::json!({
            "notificationType": "Bounce",
            "bounce": {"bounceType": "Permanent", "bounceSubType": "General",
                       "bouncedRecipients": [{"emailAddress": "reader@example.org", "action": "failed", "status": "5.1.1", "diagnosticCode": "smtp; 550 5.1.1 user unknown"}]},
            "mail": {"source": sender, "destination": ["reader@example.org"]}
        }))
        .unwrap();
        assert_eq!(hard.len(), 1);
        assert_eq!(hard[0].finding.kind, Kind::Hard);
        assert_eq!(hard[0].tag, Some(crate::bounces::verp::Tag { edition: 4, subscriber: 2 }));
        assert_eq!(
            hard[0].reference.as_deref(),
            Some("22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324#reader@example.org")
        );
        let full = of(serde_json::json!({"eventType": "Bounce", "bounce": {"bounceType": "Permanent", "bouncedRecipients": [{"emailAddress": "a@example.org", "status": "5.2.2"}, {"emailAddress": "b@example.org"}]}})).unwrap();
        assert_eq!(
            full.iter().map(|e| e.finding.kind).collect::<Vec<_>>(),
            [Kind::Soft, Kind::Hard]
        );
        assert_eq!(full[0].tag, None);
        let soft = of(serde_json::json!({"notificationType": "Bounce", "bounce": {"bounceType": "Transient", "bouncedRecipients": [{"emailAddress": "a@example.org"}]}})).unwrap();
        assert_eq!(soft[0].finding.kind, Kind::Soft);
        let complaint = of(serde_json::json!({"notificationType": "Complaint", "complaint": {"complainedRecipients": [{"emailAddress": "a@example.org"}]}})).unwrap();
        assert_eq!(complaint[0].finding.kind, Kind::Complaint);
        let delay = of(serde_json::json!({"eventType": "DeliveryDelay", "deliveryDelay": {"delayedRecipients": [{"emailAddress": "a@example.org"}]}})).unwrap();
        assert_eq!(delay[0].finding.kind, Kind::Delayed);
        assert!(of(serde_json::json!({"notificationType": "Delivery", "delivery": {}}))
            .unwrap()
            .is_empty());
        assert!(of(Value::String("Successfully validated SNS topic".into())).unwrap().is_empty());
        assert!(matches!(
            of(serde_json::json!({"notificationType": "Bounce"})),
            Err(Refusal::Malformed(_))
        ));
    }
}
