//! SendGrid's Signed Event Webhook: the body is a JSON array of events, and
//! `X-Twilio-Email-Event-Webhook-Signature` is an ECDSA P-256 signature
//! (base64, DER) with SHA-256 over `X-Twilio-Email-Event-Webhook-Timestamp`
//! followed by the raw body, checked with the verification key SendGrid
//! shows (`bounces.webhooks.sendgrid_public_key`). Events: `bounce` (`type`
//! `bounce` or `blocked`), `dropped` (by `reason`), `spamreport`,
//! `deferred`; each event's `sg_event_id` makes a replay a duplicate.

use base64::Engine as _;
use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_ASN1};
use serde_json::Value;

use super::{id, json, permanent, status, text, Event, Refusal, Verp};
use crate::bounces::classify::{Finding, Kind};

/// The most events one request may carry (SendGrid batches up to about a
/// thousand, or 768 KB).
const MAX_EVENTS: usize = 10_000;

/// `public_key` is the uncompressed P-256 point of the verification key.
pub fn read(
    signature: Option<&str>,
    timestamp: Option<&str>,
    body: &[u8],
    public_key: &[u8],
    verp: &Verp<'_>,
) -> Result<Vec<Event>, Refusal> {
    let (Some(signature), Some(timestamp)) = (signature, timestamp) else {
        return Err(Refusal::Unsigned(
            "X-Twilio-Email-Event-Webhook-Signature and -Timestamp are both required".into(),
        ));
    };
    let signature = base64::engine::general_purpose::STANDARD
        .decode(signature.trim())
        .map_err(|_| Refusal::Forbidden("the signature is not base64".into()))?;
    let mut signed = Vec::with_capacity(timestamp.len() + body.len());
    signed.extend_from_slice(timestamp.as_bytes());
    signed.extend_from_slice(body);
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, public_key)
        .verify(&signed, &signature)
        .map_err(|_| Refusal::Forbidden("the signature does not match".into()))?;

    let value = json(body)?;
    let events =
        value.as_array().ok_or_else(|| Refusal::Malformed("the body is not an array".into()))?;
    if events.len() > MAX_EVENTS {
        return Err(Refusal::Malformed(format!("more than {MAX_EVENTS} events")));
    }
    let mut found = Vec::new();
    for (n, e) in events.iter().enumerate() {
        if let Some(event) = event(n, e, verp)? {
            found.push(event);
        }
    }
    Ok(found)
}

fn event(n: usize, e: &Value, verp: &Verp<'_>) -> Result<Option<Event>, Refusal> {
    let at = |what: &str| Refusal::Malformed(format!("event {n}: {what}"));
    let name = e.get("event").and_then(Value::as_str).ok_or_else(|| at("no `event`"))?;
    let reason = text(e.get("reason")).or_else(|| text(e.get("response")));
    let status =
        status(e.get("status").and_then(Value::as_str)).or_else(|| status(reason.as_deref()));
    let kind = match name {
        "bounce" => match e.get("type").and_then(Value::as_str) {
            Some("blocked") => Kind::Soft,
            _ => permanent(status.as_deref()),
        },
        // Not sent, because of what SendGrid knows of the address.
        "dropped" => match reason.as_deref().unwrap_or("") {
            r if r.contains("Bounced Address") || r.contains("Invalid") => Kind::Hard,
            r if r.contains("Spam Reporting Address") => Kind::Complaint,
            _ => return Ok(None),
        },
        "deferred" => Kind::Delayed,
        "spamreport" => Kind::Complaint,
        // processed, delivered, open, click, unsubscribe, group_unsubscribe, ...
        _ => return Ok(None),
    };
    let email = text(e.get("email")).filter(|a| a.contains('@')).ok_or_else(|| at("no `email`"))?;
    let reference = id(e.get("sg_event_id")).ok_or_else(|| at("no `sg_event_id`"))?;
    Ok(Some(Event {
        finding: Finding { kind, address: Some(email), status, diagnostic: reason },
        tag: verp.tag_in(e),
        reference: Some(reference),
    }))
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};

    fn key() -> EcdsaKeyPair {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng).unwrap()
    }

    fn sign(key: &EcdsaKeyPair, ts: &str, body: &[u8]) -> String {
        let mut signed = ts.as_bytes().to_vec();
        signed.extend_from_slice(body);
        let sig = key.sign(&SystemRandom::new(), &signed).unwrap();
        base64::engine::general_purpose::STANDARD.encode(sig.as_ref())
    }

    const BODY: &str = r#"[
      {"email":"a@example.org","timestamp":1800000000,"event":"bounce","type":"bounce","status":"5.1.1","reason":"550 5.1.1 unknown user","sg_event_id":"ev-1","sg_message_id":"m1"},
      {"email":"b@example.org","timestamp":1800000000,"event":"bounce","type":"blocked","status":"5.7.1","reason":"blocked","sg_event_id":"ev-2"},
      {"email":"c@example.org","timestamp":1800000000,"event":"spamreport","sg_event_id":"ev-3"},
      {"email":"d@example.org","timestamp":1800000000,"event":"deferred","response":"421 try later","attempt":"2","sg_event_id":"ev-4"},
      {"email":"e@example.org","timestamp":1800000000,"event":"dropped","reason":"Bounced Address","sg_event_id":"ev-5"},
      {"email":"f@example.org","timestamp":1800000000,"event":"delivered","sg_event_id":"ev-6"}
    ]"#;

    fn run(key: &EcdsaKeyPair, sig: Option<&str>, body: &[u8]) -> Result<Vec<Event>, Refusal> {
        let (s, b) = (secret(), bounce());
        read(
            sig,
            Some("1800000000"),
            body,
            key.public_key().as_ref(),
            &Verp { secret: &s, bounce_address: Some(&b) },
        )
    }

    #[test]
    fn signed_events_by_kind() {
        let k = key();
        let sig = sign(&k, "1800000000", BODY.as_bytes());
        let events = run(&k, Some(&sig), BODY.as_bytes()).unwrap();
        let kinds: Vec<Kind> = events.iter().map(|e| e.finding.kind).collect();
        assert_eq!(kinds, [Kind::Hard, Kind::Soft, Kind::Complaint, Kind::Delayed, Kind::Hard]);
        assert_eq!(events[0].reference.as_deref(), Some("ev-1"));
        assert_eq!(events[3].finding.diagnostic.as_deref(), Some("421 try later"));
    }

    #[test]
    fn another_key_or_body_is_refused() {
        let k = key();
        let sig = sign(&k, "1800000000", BODY.as_bytes());
        assert!(matches!(run(&key(), Some(&sig), BODY.as_bytes()), Err(Refusal::Forbidden(_))));
        let changed = BODY.replace("a@example.org", "z@example.org");
        assert!(matches!(run(&k, Some(&sig), changed.as_bytes()), Err(Refusal::Forbidden(_))));
        assert!(matches!(run(&k, None, BODY.as_bytes()), Err(Refusal::Unsigned(_))));
        assert!(matches!(run(&k, Some("!!"), BODY.as_bytes()), Err(Refusal::Forbidden(_))));
    }

    #[test]
    fn malformed_bodies() {
        let k = key();
        for body in [
            &b"{"[..],
            b"{}",
            br#"[{"event":"bounce","sg_event_id":"x"}]"#,
            br#"[{"email":"a@b","event":"bounce"}]"#,
        ] {
            let sig = sign(&k, "1800000000", body);
            assert!(
                matches!(run(&k, Some(&sig), body), Err(Refusal::Malformed(_))),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
