//! herald's own webhook, for any system that can sign a request: the body is
//! `{"events":[{"id":"…","type":"hard"|"soft"|"delayed"|"complaint",
//! "email":"…","status":"5.1.1","diagnostic":"…"}]}`, and the request
//! carries `X-Herald-Timestamp` (Unix seconds) and `X-Herald-Signature:
//! sha256=HEX`, the HMAC-SHA256 with the shared secret of the timestamp, a
//! `.` and the raw body. A timestamp more than five minutes from herald's
//! clock is refused, so a captured request cannot be replayed later; within
//! that window, each event's `id` makes a replay a duplicate.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{fresh, hmac_ok, id, json, status, text, Event, Refusal, Verp};
use crate::bounces::classify::{Finding, Kind};

/// The most events one request may carry.
const MAX_EVENTS: usize = 10_000;

/// The request's findings, once its signature checks out.
pub fn read(
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    secret: &[u8],
    now: DateTime<Utc>,
    verp: &Verp<'_>,
) -> Result<Vec<Event>, Refusal> {
    let (Some(timestamp), Some(signature)) = (timestamp, signature) else {
        return Err(Refusal::Unsigned(
            "X-Herald-Timestamp and X-Herald-Signature are both required".into(),
        ));
    };
    let mac =
        signature.trim().strip_prefix("sha256=").and_then(|h| hex::decode(h).ok()).ok_or_else(
            || Refusal::Forbidden("X-Herald-Signature is not `sha256=` and hex".into()),
        )?;
    if !hmac_ok(secret, &[timestamp.trim().as_bytes(), b".", body], &mac) {
        return Err(Refusal::Forbidden("X-Herald-Signature does not match the body".into()));
    }
    fresh(timestamp, now)?;

    let value = json(body)?;
    let events = value
        .get("events")
        .and_then(Value::as_array)
        .ok_or_else(|| Refusal::Malformed("no `events` array".into()))?;
    if events.len() > MAX_EVENTS {
        return Err(Refusal::Malformed(format!("more than {MAX_EVENTS} events")));
    }
    events.iter().enumerate().map(|(n, e)| event(n, e, verp)).collect()
}

fn event(n: usize, e: &Value, verp: &Verp<'_>) -> Result<Event, Refusal> {
    let at = |what: &str| Refusal::Malformed(format!("events[{n}]: {what}"));
    let kind = match e.get("type").and_then(Value::as_str) {
        Some("hard") => Kind::Hard,
        Some("soft") => Kind::Soft,
        Some("delayed") => Kind::Delayed,
        Some("complaint") => Kind::Complaint,
        _ => return Err(at("`type` must be \"hard\", \"soft\", \"delayed\" or \"complaint\"")),
    };
    let reference = id(e.get("id")).ok_or_else(|| at("no `id`"))?;
    let email = text(e.get("email")).ok_or_else(|| at("no `email`"))?;
    if !email.contains('@') {
        return Err(at("`email` is not an address"));
    }
    let status = status(e.get("status").and_then(Value::as_str));
    Ok(Event {
        finding: Finding {
            kind,
            address: Some(email),
            status,
            diagnostic: text(e.get("diagnostic")),
        },
        tag: verp.tag_in(e),
        reference: Some(reference),
    })
}

/// The headers a sender puts on a request for `body` at `timestamp`.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    const KEY: &[u8] = b"a webhook secret of some length";

    fn body() -> &'static [u8] {
        br#"{"events":[{"id":"e1","type":"hard","email":"Reader@Example.org","status":"5.1.1","diagnostic":"550 5.1.1 no such user"},
                       {"id":"e2","type":"complaint","email":"other@example.org"}]}"#
    }

    fn read_with(ts: &str, sig: &str, body: &[u8]) -> Result<Vec<Event>, Refusal> {
        let (s, b) = (secret(), bounce());
        read(Some(ts), Some(sig), body, KEY, now(), &Verp { secret: &s, bounce_address: Some(&b) })
    }

    #[test]
    fn a_signed_request_gives_its_events() {
        let ts = now().timestamp();
        let events = read_with(&ts.to_string(), &sign(KEY, ts, body()), body()).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].finding.kind, Kind::Hard);
        assert_eq!(events[0].finding.address.as_deref(), Some("Reader@Example.org"));
        assert_eq!(events[0].finding.status.as_deref(), Some("5.1.1"));
        assert_eq!(events[0].reference.as_deref(), Some("e1"));
        assert_eq!(events[1].finding.kind, Kind::Complaint);
    }

    #[test]
    fn wrong_stale_or_missing_signatures_are_refused() {
        let ts = now().timestamp();
        let good = sign(KEY, ts, body());
        let other = sign(b"another secret", ts, body());
        assert!(matches!(read_with(&ts.to_string(), &other, body()), Err(Refusal::Forbidden(_))));
        // The body changed after signing.
        let changed = body()
            .to_vec()
            .into_iter()
            .map(|b| if b == b'1' { b'2' } else { b })
            .collect::<Vec<_>>();
        assert!(matches!(read_with(&ts.to_string(), &good, &changed), Err(Refusal::Forbidden(_))));
        // The timestamp changed after signing.
        assert!(matches!(
            read_with(&(ts + 1).to_string(), &good, body()),
            Err(Refusal::Forbidden(_))
        ));
        let old = ts - 600;
        assert!(matches!(
            read_with(&old.to_string(), &sign(KEY, old, body()), body()),
            Err(Refusal::Forbidden(_))
        ));
        assert!(matches!(read_with(&ts.to_string(), "md5=00", body()), Err(Refusal::Forbidden(_))));
        let (s, b) = (secret(), bounce());
        let verp = Verp { secret: &s, bounce_address: Some(&b) };
        assert!(matches!(
            read(None, Some(&good), body(), KEY, now(), &verp),
            Err(Refusal::Unsigned(_))
        ));
    }

    #[test]
    fn malformed_bodies_say_what_is_wrong() {
        let ts = now().timestamp();
        for (body, says) in [
            (&b"not json"[..], "not JSON"),
            (br#"{"event":[]}"#, "no `events`"),
            (br#"{"events":[{"id":"1","type":"bounce","email":"a@b"}]}"#, "events[0]: `type`"),
            (br#"{"events":[{"type":"hard","email":"a@b"}]}"#, "no `id`"),
            (br#"{"events":[{"id":"1","type":"hard","email":"nobody"}]}"#, "not an address"),
        ] {
            match read_with(&ts.to_string(), &sign(KEY, ts, body), body) {
                Err(Refusal::Malformed(m)) => assert!(m.contains(says), "{m}"),
                other => panic!("{}: {other:?}", String::from_utf8_lossy(body)),
            }
        }
    }
}
