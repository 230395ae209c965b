//! Postmark's bounce and spam-complaint webhooks. Postmark does not sign its
//! webhooks; it sends the user and password written in the webhook's URL
//! (`https://USER:PASSWORD@news.example.com/webhooks/postmark`) as HTTP
//! Basic authentication, which herald requires and compares in constant
//! time. One event per request: `RecordType` `Bounce` (with `Type` and
//! `TypeCode`: `HardBounce` 1, `Transient` 2, `SoftBounce` 4096, ...) or
//! `SpamComplaint`; each carries Postmark's `ID`, which makes a replay a
//! duplicate.

use base64::Engine as _;
use serde_json::Value;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{id, json, status, text, Event, Refusal, Verp};
use crate::bounces::classify::{Finding, Kind};

/// The request's finding, once its credentials check out. Deliveries,
/// opens, clicks and the bounce types that say nothing about the address
/// give none.
pub fn read(
    authorization: Option<&str>,
    body: &[u8],
    user: &str,
    password: &str,
    verp: &Verp<'_>,
) -> Result<Vec<Event>, Refusal> {
    let given = authorization
        .and_then(|a| a.trim().strip_prefix("Basic "))
        .ok_or_else(|| Refusal::Unsigned("HTTP Basic credentials are required".into()))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(given.trim())
        .map_err(|_| Refusal::Forbidden("the Basic credentials are not base64".into()))?;
    let expected = format!("{user}:{password}");
    // Hashes of equal length, so the comparison's time says nothing about
    // the length or the first differing byte.
    let same: bool = Sha256::digest(&decoded).ct_eq(&Sha256::digest(expected.as_bytes())).into();
    if !same {
        return Err(Refusal::Forbidden("wrong user or password".into()));
    }

    let value = json(body)?;
    if !value.is_object() {
        return Err(Refusal::Malformed("the body is not a JSON object".into()));
    }
    let record = value.get("RecordType").and_then(Value::as_str).unwrap_or("");
    let kind = match record {
        "Bounce" => {
            let name = value.get("Type").and_then(Value::as_str).unwrap_or("");
            let code = value.get("TypeCode").and_then(Value::as_i64);
            if name.is_empty() && code.is_none() {
                return Err(Refusal::Malformed("a Bounce without `Type` or `TypeCode`".into()));
            }
            match bounce_kind(name, code) {
                Some(kind) => kind,
                None => return Ok(Vec::new()),
            }
        }
        "SpamComplaint" => Kind::Complaint,
        "" => return Err(Refusal::Malformed("no `RecordType`".into())),
        // Delivery, Open, Click, SubscriptionChange: nothing to act on.
        _ => return Ok(Vec::new()),
    };
    let email = text(value.get("Email"))
        .filter(|e| e.contains('@'))
        .ok_or_else(|| Refusal::Malformed(format!("a {record} without an `Email` address")))?;
    let reference = id(value.get("ID"))
        .ok_or_else(|| Refusal::Malformed(format!("a {record} without an `ID`")))?;
    let details = text(value.get("Details"));
    let status = status(details.as_deref());
    let kind = match (kind, status.as_deref()) {
        // A hard bounce whose text says the mailbox is only full, say.
        (Kind::Hard, Some(s)) => super::permanent(Some(s)),
        (kind, _) => kind,
    };
    Ok(vec![Event {
        finding: Finding {
            kind,
            address: Some(email),
            status,
            diagnostic: details.or_else(|| text(value.get("Description"))),
        },
        tag: verp.tag_in(&value),
        reference: Some(reference),
    }])
}

/// What a Postmark bounce type means for the address, by name or code;
/// `None` for the types that are not failures of the address
/// (auto-responders, subscription changes, address changes, ...).
fn bounce_kind(name: &str, code: Option<i64>) -> Option<Kind> {
    Some(match (name, code) {
        ("HardBounce", _) | (_, Some(1)) | ("BadEmailAddress", _) | (_, Some(100_000)) => {
            Kind::Hard
        }
        ("SoftBounce", _) | (_, Some(4096)) | ("DnsError", _) | (_, Some(256)) => Kind::Soft,
        ("Blocked", _) | (_, Some(100_006)) | ("SpamNotification", _) | (_, Some(512)) => {
            Kind::Soft
        }
        // Postmark is still trying.
        ("Transient", _) | (_, Some(2)) => Kind::Delayed,
        ("SpamComplaint", _) | (_, Some(100_001)) => Kind::Complaint,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    fn basic(user: &str, password: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        )
    }

    fn run(auth: Option<&str>, body: &str) -> Result<Vec<Event>, Refusal> {
        let (s, b) = (secret(), bounce());
        read(
            auth,
            body.as_bytes(),
            "postmark",
            "p4ssw0rd",
            &Verp { secret: &s, bounce_address: Some(&b) },
        )
    }

    const HARD: &str = r#"{"RecordType":"Bounce","ID":4323372036854775807,"Type":"HardBounce","TypeCode":1,
        "MessageID":"883953f4-6105-42a2-a16a-77a8eac79483","Email":"reader@example.org",
        "Details":"smtp;550 5.1.1 The email account that you tried to reach does not exist.",
        "Description":"The server was unable to deliver your message (ex: unknown user, mailbox not found).",
        "BouncedAt":"2026-11-30T10:00:00Z","Inactive":true,"CanActivate":true}"#;

    #[test]
    fn bounces_and_complaints_by_type() {
        let auth = basic("postmark", "p4ssw0rd");
        let events = run(Some(&auth), HARD).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].finding.kind, Kind::Hard);
        assert_eq!(events[0].finding.status.as_deref(), Some("5.1.1"));
        assert_eq!(events[0].reference.as_deref(), Some("4323372036854775807"));
        let soft =
            HARD.replace("\"HardBounce\",\"TypeCode\":1", "\"SoftBounce\",\"TypeCode\":4096");
        assert_eq!(run(Some(&auth), &soft).unwrap()[0].finding.kind, Kind::Soft);
        let transient =
            HARD.replace("\"HardBounce\",\"TypeCode\":1", "\"Transient\",\"TypeCode\":2");
        assert_eq!(run(Some(&auth), &transient).unwrap()[0].finding.kind, Kind::Delayed);
        let auto =
            HARD.replace("\"HardBounce\",\"TypeCode\":1", "\"AutoResponder\",\"TypeCode\":64");
        assert!(run(Some(&auth), &auto).unwrap().is_empty());
        let spam = r#"{"RecordType":"SpamComplaint","ID":42,"Type":"SpamComplaint","TypeCode":100001,"Email":"reader@example.org"}"#;
        assert_eq!(run(Some(&auth), spam).unwrap()[0].finding.kind, Kind::Complaint);
        let open = r#"{"RecordType":"Open","MessageID":"x","Recipient":"reader@example.org"}"#;
        assert!(run(Some(&auth), open).unwrap().is_empty());
    }

    #[test]
    fn credentials_are_required_and_checked() {
        assert!(matches!(run(None, HARD), Err(Refusal::Unsigned(_))));
        assert!(matches!(run(Some("Bearer x"), HARD), Err(Refusal::Unsigned(_))));
        assert!(matches!(run(Some(&basic("postmark", "wrong")), HARD), Err(Refusal::Forbidden(_))));
        assert!(matches!(run(Some(&basic("other", "p4ssw0rd")), HARD), Err(Refusal::Forbidden(_))));
        assert!(matches!(run(Some("Basic %%%"), HARD), Err(Refusal::Forbidden(_))));
    }

    #[test]
    fn malformed_bodies() {
        let auth = basic("postmark", "p4ssw0rd");
        assert!(matches!(run(Some(&auth), "{"), Err(Refusal::Malformed(_))));
        assert!(matches!(run(Some(&auth), "[]"), Err(Refusal::Malformed(_))));
        assert!(matches!(
            run(Some(&auth), r#"{"RecordType":"Bounce","Type":"HardBounce","ID":1}"#),
            Err(Refusal::Malformed(_))
        ));
        assert!(matches!(
            run(Some(&auth), r#"{"RecordType":"Bounce","ID":1,"Email":"a@b"}"#),
            Err(Refusal::Malformed(_))
        ));
    }
}
