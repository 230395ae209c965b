//! The providers' webhooks, read: one file per provider, each a pure
//! function from what the request carried (the headers it needs, as plain
//! values; the body's bytes), the provider's settings and the time, to the
//! findings it reports or a [`Refusal`] that names what was wrong. The
//! signature is checked before anything in the body is believed. Nothing
//! here knows HTTP types (`web/webhooks.rs` does) or acts on a finding
//! ([`super::Intake::finding`] does); `fetch.rs` is the one piece of I/O,
//! the SNS signing certificates and subscription confirmations.
//!
//! Every payload is hostile: parsed with serde_json into loose values, every
//! text kept is capped, and nothing in it is ever fetched but the two SNS
//! URLs that pass [`ses::amazon_url`].

pub mod fetch;
pub mod generic;
pub mod mailgun;
pub mod postmark;
pub mod sendgrid;
pub mod ses;

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use super::classify::{self, Finding, Kind};
use super::verp::{self, Tag};
use crate::email::EmailAddress;
use crate::subscribe::Secret;

/// One event a provider reported about one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub finding: Finding,
    /// The reader a VERP address in the payload names, when it names one.
    pub tag: Option<Tag>,
    /// Names the event, so a replay is acted on once.
    pub reference: Option<String>,
}

/// Why a request is refused. Nothing it carries is acted on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No signature or credentials at all (HTTP 401).
    #[error("not signed: {0}")]
    Unsigned(String),
    /// A signature or credentials that do not check out, or a request the
    /// settings do not allow (HTTP 403).
    #[error("refused: {0}")]
    Forbidden(String),
    /// A body that cannot be read (HTTP 400).
    #[error("malformed: {0}")]
    Malformed(String),
}

/// What finds VERP tags in a payload: the site's secret and bounce address.
pub struct Verp<'a> {
    pub secret: &'a Secret,
    pub bounce_address: Option<&'a EmailAddress>,
}

impl Verp<'_> {
    /// The one reader the VERP addresses in `value` (a provider's event,
    /// with its envelope sender, quoted headers, metadata) name, when they
    /// name exactly one.
    pub fn tag_in(&self, value: &Value) -> Option<Tag> {
        let bounce = self.bounce_address?;
        let mut text = String::new();
        strings(value, &mut text, 0);
        let tags = verp::tags_in(self.secret, bounce, &text);
        match tags.as_slice() {
            [tag] => Some(*tag),
            _ => None,
        }
    }
}

/// Every string in `value` (keys included), one a line, up to a cap.
fn strings(value: &Value, out: &mut String, depth: usize) {
    const CAP: usize = 64 * 1024;
    if out.len() > CAP || depth > 16 {
        return;
    }
    match value {
        Value::String(s) => {
            out.push_str(s);
            out.push('\n');
        }
        Value::Array(items) => items.iter().for_each(|v| strings(v, out, depth + 1)),
        Value::Object(map) => map.iter().for_each(|(k, v)| {
            out.push_str(k);
            out.push('\n');
            strings(v, out, depth + 1);
        }),
        _ => {}
    }
}

/// The most characters kept of any text a provider sends.
const TEXT_CHARS: usize = 500;

/// `text`, trimmed, without control characters, capped.
pub(crate) fn text(value: Option<&Value>) -> Option<String> {
    let s = value?.as_str()?.trim();
    let kept: String = s.chars().filter(|c| !c.is_control()).take(TEXT_CHARS).collect();
    (!kept.is_empty()).then_some(kept)
}

/// An id or number the provider names an event by, as text.
pub(crate) fn id(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) if !s.trim().is_empty() => {
            Some(s.trim().chars().filter(|c| !c.is_control()).take(200).collect())
        }
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The RFC 3463 status of a text (`5.1.1`) when it is one, or the first in it.
pub(crate) fn status(value: Option<&str>) -> Option<String> {
    classify::status_in(value?)
}

/// A permanent failure: hard unless its status says otherwise
/// (`classify::failure_kind`), hard when there is no status.
pub(crate) fn permanent(status: Option<&str>) -> Kind {
    match status {
        Some(s) if s.starts_with('5') => classify::failure_kind(s),
        _ => Kind::Hard,
    }
}

/// A text the sender chose, fit for a message: one line, capped.
pub(crate) fn shown(text: &str) -> String {
    crate::text::clean_line(text).chars().take(80).collect()
}

/// Parses a JSON body, or says where it is not JSON.
pub(crate) fn json(body: &[u8]) -> Result<Value, Refusal> {
    serde_json::from_slice(body)
        .map_err(|e| Refusal::Malformed(format!("the body is not JSON: {e}")))
}

/// Whether `mac` is HMAC-SHA256 of `parts` under `key`, in constant time.
pub(crate) fn hmac_ok(key: &[u8], parts: &[&[u8]], mac: &[u8]) -> bool {
    let Ok(mut h) = Hmac::<Sha256>::new_from_slice(key) else { return false };
    for part in parts {
        h.update(part);
    }
    h.verify_slice(mac).is_ok()
}

/// How far a signed timestamp may be from now, either way, in seconds.
pub const WINDOW_SECS: i64 = 300;

/// A Unix-seconds timestamp as signed, within [`WINDOW_SECS`] of `now`.
pub(crate) fn fresh(timestamp: &str, now: chrono::DateTime<chrono::Utc>) -> Result<(), Refusal> {
    let t = timestamp.trim();
    let seconds: i64 = t
        .split('.')
        .next()
        .filter(|s| !s.is_empty() && s.len() <= 12 && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            Refusal::Forbidden(format!("the timestamp `{}` is not Unix seconds", shown(t)))
        })?;
    let age = now.timestamp() - seconds;
    if age > WINDOW_SECS {
        return Err(Refusal::Forbidden(format!(
            "the timestamp is {age} s old (at most {WINDOW_SECS} s are allowed)"
        )));
    }
    if age < -WINDOW_SECS {
        return Err(Refusal::Forbidden(format!("the timestamp is {} s in the future", -age)));
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::*;

    pub fn secret() -> Secret {
        Secret::new(b"0123456789abcdef0123456789abcdef".to_vec())
    }

    pub fn bounce() -> EmailAddress {
        EmailAddress::parse("bounces@news.example.com").unwrap()
    }

    pub fn now() -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;

    #[test]
    fn one_verp_address_names_the_reader() {
        let (s, b) = (secret(), bounce());
        let verp = Verp { secret: &s, bounce_address: Some(&b) };
        let one = verp::envelope_sender(&s, &b, Tag { edition: 3, subscriber: 9 });
        let two = verp::envelope_sender(&s, &b, Tag { edition: 3, subscriber: 10 });
        let value =
            serde_json::json!({"mail": {"source": one, "headers": [{"name": "X", "value": "y"}]}});
        assert_eq!(verp.tag_in(&value), Some(Tag { edition: 3, subscriber: 9 }));
        let both = serde_json::json!({"a": one, "b": [two]});
        assert_eq!(verp.tag_in(&both), None, "two readers: the address decides");
        let forged = serde_json::json!({"a": "bounces+3-9-000000000000@news.example.com"});
        assert_eq!(verp.tag_in(&forged), None);
        let none = Verp { secret: &s, bounce_address: None };
        assert_eq!(none.tag_in(&value), None);
    }

    #[test]
    fn timestamps_out_of_the_window_are_refused() {
        let now = now();
        assert!(fresh(&now.timestamp().to_string(), now).is_ok());
        assert!(fresh(&(now.timestamp() - 299).to_string(), now).is_ok());
        assert!(matches!(
            fresh(&(now.timestamp() - 301).to_string(), now),
            Err(Refusal::Forbidden(_))
        ));
        assert!(matches!(
            fresh(&(now.timestamp() + 301).to_string(), now),
            Err(Refusal::Forbidden(_))
        ));
        assert!(fresh("", now).is_err());
        assert!(fresh("-5", now).is_err());
        assert!(fresh("99999999999999999999", now).is_err());
    }
}
