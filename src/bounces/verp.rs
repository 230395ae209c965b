//! VERP: each message's envelope sender names its edition and reader, so a
//! report that comes back says whom it is about even when its body says
//! nothing useful. With `mail.bounce_address = "bounces@news.example.com"`,
//! the envelope sender of edition 12's copy for subscriber 3456 is
//! `bounces+12-3456-MAC@news.example.com`, where MAC is the first 48 bits of
//! an HMAC-SHA256 with the site's secret over both numbers, in lower-case
//! hex. The token holds only digits, letters and `-`, so it is safe in any
//! local part, and mail systems that change the case of a local part do not
//! break it. Edition 0 names a confirmation mail.
//!
//! A token cannot be made without the secret, so a report carrying one acts
//! on that reader alone; a reader who knows their own token (it is in their
//! copy's Return-Path) can only report about themselves.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::email::EmailAddress;
use crate::subscribe::Secret;

/// Bytes of the MAC kept in a token: 48 bits, 12 hex digits. A guess is
/// right once in 2^48, and every guess is one SMTP command.
const MAC_BYTES: usize = 6;

/// The edition and reader a VERP token names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tag {
    /// The edition (0 for a confirmation mail).
    pub edition: i64,
    pub subscriber: i64,
}

fn mac(secret: &Secret, tag: Tag) -> Hmac<Sha256> {
    let mut mac = secret.hmac();
    mac.update(b"verp\0");
    mac.update(tag.edition.to_string().as_bytes());
    mac.update(b"\0");
    mac.update(tag.subscriber.to_string().as_bytes());
    mac
}

/// The token of `tag`: `EDITION-SUBSCRIBER-MAC`.
pub fn token(secret: &Secret, tag: Tag) -> String {
    let mac = mac(secret, tag).finalize().into_bytes();
    format!("{}-{}-{}", tag.edition, tag.subscriber, hex::encode(&mac[..MAC_BYTES]))
}

/// The envelope sender for `tag`: `LOCAL+TOKEN@DOMAIN` of `bounce_address`.
pub fn envelope_sender(secret: &Secret, bounce_address: &EmailAddress, tag: Tag) -> String {
    let (local, domain) = split(bounce_address.as_str());
    format!("{local}+{}@{domain}", token(secret, tag))
}

/// The tag a token names, when its MAC is right.
pub fn verify_token(secret: &Secret, token: &str) -> Option<Tag> {
    let mut parts = token.trim().splitn(3, '-');
    let edition: i64 = parts.next()?.parse().ok()?;
    let subscriber: i64 = parts.next()?.parse().ok()?;
    let given = hex::decode(parts.next()?.to_ascii_lowercase()).ok()?;
    if edition < 0 || subscriber <= 0 || given.len() != MAC_BYTES {
        return None;
    }
    let tag = Tag { edition, subscriber };
    mac(secret, tag).verify_truncated_left(&given).ok()?;
    Some(tag)
}

/// What an address at the bounce domain is to herald.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recipient {
    /// `LOCAL+TOKEN@DOMAIN` with a token that verifies.
    Tagged(Tag),
    /// The bounce address itself (reports without a token: feedback loops,
    /// providers that rewrite the envelope sender).
    Plain,
    /// At the bounce domain, but neither: a token that does not verify, or
    /// another local part.
    Unknown,
    /// Another domain: the listener never relays.
    Elsewhere,
}

/// What `address` (as given in RCPT TO, a To or Delivered-To header, or a
/// quoted Return-Path) is, against `bounce_address`. Local parts and
/// domains compare without regard to case.
pub fn recipient(secret: &Secret, bounce_address: &EmailAddress, address: &str) -> Recipient {
    let address = address.trim().trim_start_matches('<').trim_end_matches('>');
    let Some((local, domain)) = address.rsplit_once('@') else { return Recipient::Elsewhere };
    let (bounce_local, bounce_domain) = split(bounce_address.as_str());
    if !domain.eq_ignore_ascii_case(bounce_domain) {
        return Recipient::Elsewhere;
    }
    if local.eq_ignore_ascii_case(bounce_local) {
        return Recipient::Plain;
    }
    match local.split_once('+') {
        Some((base, token)) if base.eq_ignore_ascii_case(bounce_local) => {
            verify_token(secret, token).map_or(Recipient::Unknown, Recipient::Tagged)
        }
        _ => Recipient::Unknown,
    }
}

/// Every tag named by a verifying VERP address in `text` (headers, a
/// report's body): the addresses that start with the bounce address's local
/// part and `+`, at its domain.
pub fn tags_in(secret: &Secret, bounce_address: &EmailAddress, text: &str) -> Vec<Tag> {
    let (bounce_local, _) = split(bounce_address.as_str());
    let needle = format!("{}+", bounce_local.to_ascii_lowercase());
    let lower = text.to_ascii_lowercase();
    let mut tags = Vec::new();
    let mut from = 0;
    while let Some(found) = lower[from..].find(&needle) {
        let start = from + found;
        from = start + needle.len();
        // The address runs to the next character that cannot be in one.
        let end = lower[start..]
            .find(|c: char| c.is_whitespace() || "<>\"',;()[]".contains(c))
            .map_or(lower.len(), |n| start + n);
        let candidate = &text[start..end];
        if let Recipient::Tagged(tag) = recipient(secret, bounce_address, candidate) {
            if !tags.contains(&tag) {
                tags.push(tag);
            }
        }
    }
    tags
}

fn split(address: &str) -> (&str, &str) {
    // An EmailAddress always has one `@` with text on both sides.
    address.rsplit_once('@').unwrap_or((address, ""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> Secret {
        Secret::new(b"0123456789abcdef0123456789abcdef".to_vec())
    }

    fn bounce() -> EmailAddress {
        EmailAddress::parse("bounces@news.example.com").unwrap()
    }

    #[test]
    fn a_token_names_its_edition_and_reader_and_nothing_else() {
        let tag = Tag { edition: 12, subscriber: 3456 };
        let sender = envelope_sender(&secret(), &bounce(), tag);
        assert!(sender.starts_with("bounces+12-3456-"), "{sender}");
        assert!(sender.ends_with("@news.example.com"));
        let local = sender.split('@').next().unwrap();
        assert!(local.len() <= 64, "a local part is at most 64 octets: {local}");
        assert_eq!(recipient(&secret(), &bounce(), &sender), Recipient::Tagged(tag));
        // Mail systems may change the case of a local part.
        assert_eq!(
            recipient(&secret(), &bounce(), &sender.to_ascii_uppercase()),
            Recipient::Tagged(tag)
        );
        // Another reader or edition with the same MAC is refused.
        let mac = sender.split('-').nth(2).unwrap().split('@').next().unwrap();
        for forged in [
            format!("bounces+12-3457-{mac}@news.example.com"),
            format!("bounces+13-3456-{mac}@news.example.com"),
            format!("bounces+12-3456-{}@news.example.com", &mac[..11]),
        ] {
            assert_eq!(recipient(&secret(), &bounce(), &forged), Recipient::Unknown, "{forged}");
        }
        // Another secret's token is refused.
        let other = Secret::new(b"another secret, just as long as the first".to_vec());
        assert_eq!(
            recipient(&other, &bounce(), &sender),
            Recipient::Unknown,
            "a token made with another secret"
        );
    }

    #[test]
    fn addresses_outside_the_bounce_domain_are_elsewhere() {
        let s = secret();
        assert_eq!(recipient(&s, &bounce(), "bounces@news.example.com"), Recipient::Plain);
        assert_eq!(recipient(&s, &bounce(), "<Bounces@NEWS.example.com>"), Recipient::Plain);
        assert_eq!(recipient(&s, &bounce(), "editor@news.example.com"), Recipient::Unknown);
        assert_eq!(recipient(&s, &bounce(), "bounces@example.org"), Recipient::Elsewhere);
        assert_eq!(recipient(&s, &bounce(), "no at sign"), Recipient::Elsewhere);
        assert_eq!(recipient(&s, &bounce(), "bounces+x-y-z@news.example.com"), Recipient::Unknown);
        assert_eq!(
            recipient(&s, &bounce(), "bounces+99999999999999999999-1-00@news.example.com"),
            Recipient::Unknown
        );
    }

    #[test]
    fn tags_are_found_in_quoted_headers() {
        let s = secret();
        let a = envelope_sender(&s, &bounce(), Tag { edition: 1, subscriber: 7 });
        let b = envelope_sender(&s, &bounce(), Tag { edition: 1, subscriber: 8 });
        let text = format!(
            "Return-Path: <{a}>\r\nX-Original-To: {b}\r\nTo: reader@example.org\r\nbounces+1-9-000000000000@news.example.com"
        );
        assert_eq!(
            tags_in(&s, &bounce(), &text),
            vec![Tag { edition: 1, subscriber: 7 }, Tag { edition: 1, subscriber: 8 }]
        );
        assert!(tags_in(&s, &bounce(), "nothing here, bounces+ at the end").is_empty());
    }
}
