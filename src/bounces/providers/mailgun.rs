//! Mailgun's webhooks: a JSON body with `signature` (`timestamp`, `token`,
//! `signature`, the HMAC-SHA256 with the webhook signing key of the
//! timestamp and the token) and `event-data` (`event` `failed` with
//! `severity` `permanent` or `temporary`, or `complained`). The signature
//! does not cover the body, so two more rules make a captured request
//! useless: its timestamp must be within five minutes of herald's clock, and
//! a token is taken once ([`Tokens`]); Mailgun's event `id` makes a replay
//! a duplicate in the store as well.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{fresh, hmac_ok, id, json, permanent, status, text, Event, Refusal, Verp, WINDOW_SECS};
use crate::bounces::classify::{Finding, Kind};

/// The tokens taken in the last two windows, so none is taken twice while
/// its timestamp would still pass.
#[derive(Default)]
pub struct Tokens(Mutex<HashMap<String, i64>>);

/// The most tokens remembered; past it, the oldest half goes. A flood of
/// genuine signed requests is the only way to fill it.
const MAX_TOKENS: usize = 200_000;

impl Tokens {
    /// Takes `token` at `now`; false when it was taken before.
    fn take(&self, token: &str, now: i64) -> bool {
        let mut seen = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if seen.len() >= MAX_TOKENS {
            seen.retain(|_, at| now - *at <= 2 * WINDOW_SECS);
            if seen.len() >= MAX_TOKENS {
                let mut ages: Vec<i64> = seen.values().copied().collect();
                ages.sort_unstable();
                let median = ages[ages.len() / 2];
                seen.retain(|_, at| *at > median);
            }
        }
        seen.insert(token.to_owned(), now).is_none()
    }
}

/// What a request gave: its findings, or that its token was taken before
/// (a replay, acknowledged and ignored).
#[derive(Debug, PartialEq, Eq)]
pub enum Read {
    Events(Vec<Event>),
    Replay,
}

pub fn read(
    body: &[u8],
    key: &[u8],
    tokens: &Tokens,
    now: DateTime<Utc>,
    verp: &Verp<'_>,
) -> Result<Read, Refusal> {
    let value = json(body)?;
    let signature = value
        .get("signature")
        .filter(|s| s.is_object())
        .ok_or_else(|| Refusal::Unsigned("no `signature` object".into()))?;
    let field = |name: &str| match signature.get(name) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let (Some(timestamp), Some(token), Some(mac)) =
        (field("timestamp"), field("token"), field("signature"))
    else {
        return Err(Refusal::Unsigned(
            "`signature` needs `timestamp`, `token` and `signature`".into(),
        ));
    };
    let mac = hex::decode(mac.trim())
        .map_err(|_| Refusal::Forbidden("`signature.signature` is not hex".into()))?;
    if !hmac_ok(key, &[timestamp.as_bytes(), token.as_bytes()], &mac) {
        return Err(Refusal::Forbidden("the signature does not match".into()));
    }
    fresh(&timestamp, now)?;
    if !tokens.take(&token, now.timestamp()) {
        return Ok(Read::Replay);
    }

    let data = value
        .get("event-data")
        .filter(|d| d.is_object())
        .ok_or_else(|| Refusal::Malformed("no `event-data` object".into()))?;
    let event = data.get("event").and_then(Value::as_str).unwrap_or("");
    let delivery = data.get("delivery-status");
    let code = delivery.and_then(|d| text(d.get("enhanced-code")));
    let message =
        delivery.and_then(|d| text(d.get("message")).or_else(|| text(d.get("description"))));
    let status = status(code.as_deref()).or_else(|| status(message.as_deref()));
    let kind = match event {
        "failed" => match data.get("severity").and_then(Value::as_str) {
            // Mailgun goes on trying.
            Some("temporary") => Kind::Delayed,
            // Mailgun gave up after retrying a temporary failure.
            Some("permanent") if data.get("reason").and_then(Value::as_str) == Some("old") => {
                Kind::Soft
            }
            Some("permanent") => permanent(status.as_deref()),
            _ => {
                return Err(Refusal::Malformed(
                    "a `failed` event without `severity` permanent or temporary".into(),
                ))
            }
        },
        "complained" => Kind::Complaint,
        "" => return Err(Refusal::Malformed("no `event-data.event`".into())),
        // delivered, opened, clicked, unsubscribed, accepted, ...
        _ => return Ok(Read::Events(Vec::new())),
    };
    let email = text(data.get("recipient"))
        .filter(|e| e.contains('@'))
        .ok_or_else(|| Refusal::Malformed(format!("a `{event}` event without a `recipient`")))?;
    let reference = id(data.get("id")).unwrap_or(token);
    Ok(Read::Events(vec![Event {
        finding: Finding { kind, address: Some(email), status, diagnostic: message },
        tag: verp.tag_in(data),
        reference: Some(reference),
    }]))
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    const KEY: &[u8] = b"key-0123456789abcdef";

    fn signed(ts: i64, token: &str, event_data: &str) -> String {
        use hmac::{Hmac, Mac};
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(KEY).unwrap();
        mac.update(ts.to_string().as_bytes());
        mac.update(token.as_bytes());
        let sig = hex::encode(mac.finalize().into_bytes());
        format!(
            r#"{{"signature":{{"timestamp":"{ts}","token":"{token}","signature":"{sig}"}},"event-data":{event_data}}}"#
        )
    }

    const FAILED: &str = r#"{"event":"failed","id":"G9Bn5sl1TC6nu79C8C0bwg","timestamp":1800000000.5,
        "severity":"permanent","reason":"bounce","recipient":"reader@example.org",
        "envelope":{"sender":"digest@news.example.com","targets":"reader@example.org"},
        "delivery-status":{"code":550,"enhanced-code":"5.1.1","message":"550 5.1.1 No such user here"}}"#;

    fn run(body: &str, tokens: &Tokens) -> Result<Read, Refusal> {
        let (s, b) = (secret(), bounce());
        read(body.as_bytes(), KEY, tokens, now(), &Verp { secret: &s, bounce_address: Some(&b) })
    }

    #[test]
    fn failures_and_complaints() {
        let tokens = Tokens::default();
        let ts = now().timestamp();
        let Read::Events(events) = run(&signed(ts, "t1", FAILED), &tokens).unwrap() else {
            panic!()
        };
        assert_eq!(events[0].finding.kind, Kind::Hard);
        assert_eq!(events[0].finding.status.as_deref(), Some("5.1.1"));
        assert_eq!(events[0].reference.as_deref(), Some("G9Bn5sl1TC6nu79C8C0bwg"));
        let temporary = FAILED.replace("permanent", "temporary");
        let Read::Events(events) = run(&signed(ts, "t2", &temporary), &tokens).unwrap() else {
            panic!()
        };
        assert_eq!(events[0].finding.kind, Kind::Delayed);
        let complained = r#"{"event":"complained","id":"c1","recipient":"reader@example.org"}"#;
        let Read::Events(events) = run(&signed(ts, "t3", complained), &tokens).unwrap() else {
            panic!()
        };
        assert_eq!(events[0].finding.kind, Kind::Complaint);
        let opened = r#"{"event":"opened","id":"o1","recipient":"reader@example.org"}"#;
        assert_eq!(run(&signed(ts, "t4", opened), &tokens).unwrap(), Read::Events(vec![]));
    }

    #[test]
    fn a_token_is_taken_once_and_the_signature_is_checked() {
        let tokens = Tokens::default();
        let ts = now().timestamp();
        let body = signed(ts, "once", FAILED);
        assert!(matches!(run(&body, &tokens), Ok(Read::Events(_))));
        assert_eq!(run(&body, &tokens), Ok(Read::Replay));
        // The same token and signature on another event-data: still a replay.
        let other = body.replace("reader@example.org", "someone@example.org");
        assert_eq!(run(&other, &tokens), Ok(Read::Replay));
        let forged = body.replace("\"signature\":\"", "\"signature\":\"00");
        assert!(matches!(run(&forged, &Tokens::default()), Err(Refusal::Forbidden(_))));
        let stale = signed(ts - 301, "stale", FAILED);
        assert!(matches!(run(&stale, &Tokens::default()), Err(Refusal::Forbidden(_))));
        let future = signed(ts + 301, "future", FAILED);
        assert!(matches!(run(&future, &Tokens::default()), Err(Refusal::Forbidden(_))));
        assert!(matches!(run(r#"{"event-data":{}}"#, &tokens), Err(Refusal::Unsigned(_))));
    }

    #[test]
    fn malformed_bodies() {
        let ts = now().timestamp();
        assert!(matches!(run("nope", &Tokens::default()), Err(Refusal::Malformed(_))));
        let no_data = signed(ts, "a", "null");
        assert!(matches!(run(&no_data, &Tokens::default()), Err(Refusal::Malformed(_))));
        let no_recipient = signed(ts, "b", r#"{"event":"failed","severity":"permanent"}"#);
        assert!(matches!(run(&no_recipient, &Tokens::default()), Err(Refusal::Malformed(_))));
    }
}
