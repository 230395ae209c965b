//! `EmailAddress`: a subscriber's address, parsed once where it enters herald
//! (CSV import, the CLI, the web form) and trusted everywhere after.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::text::{clean_line, is_bidi_control};

/// A syntactically valid, normalised (trimmed, lowercase) email address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EmailAddress(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("`{value}` is not a valid email address: {reason}")]
pub struct EmailError {
    pub value: String,
    pub reason: &'static str,
}

impl EmailAddress {
    pub fn parse(value: &str) -> Result<Self, EmailError> {
        let err = |reason| EmailError { value: value.to_owned(), reason };
        let trimmed = value.trim();
        if trimmed.is_empty() {
            return Err(err("it is empty"));
        }
        if trimmed.len() > 254 {
            return Err(err("it is longer than 254 characters"));
        }
        if trimmed.chars().any(|c| c.is_whitespace() || c.is_control() || is_bidi_control(c)) {
            return Err(err("it contains spaces or control characters"));
        }
        let Some((local, domain)) = trimmed.rsplit_once('@') else {
            return Err(err("it has no '@'"));
        };
        if local.is_empty() || local.len() > 64 {
            return Err(err("the part before '@' must be 1 to 64 characters"));
        }
        // A dot-atom (RFC 5322 section 3.2.3, with RFC 6531's UTF-8): lettre
        // also takes quoted local parts, but mail servers and relays refuse
        // most of them, and the ones with `<`, `>` or `\` can never be mailed.
        if !local.split('.').all(|atom| !atom.is_empty() && atom.chars().all(is_atext)) {
            return Err(err(
                "the part before '@' may only hold letters, digits, single dots between them and ! # $ % & ' * + - / = ? ^ _ ` { | } ~",
            ));
        }
        if !domain.contains('.') || domain.starts_with('.') || domain.ends_with('.') {
            return Err(err("the domain after '@' must be a full domain name like example.com"));
        }
        if domain.split('.').any(|label| {
            label.is_empty()
                || label.starts_with('-')
                || label.ends_with('-')
                || !label.chars().all(|c| c.is_alphanumeric() || c == '-')
        }) {
            return Err(err("the domain after '@' is not a valid host name"));
        }
        let normalised = trimmed.to_lowercase();
        // lettre's parser is the one that builds the envelope: agree with it.
        if normalised.parse::<lettre::Address>().is_err() {
            return Err(err("it is not an address a mail server accepts"));
        }
        Ok(Self(normalised))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn domain(&self) -> &str {
        self.0.rsplit_once('@').map_or("", |(_, d)| d)
    }

    /// The address as lettre's envelope type. Always succeeds: `parse`
    /// already checked the address with lettre's own parser.
    pub fn to_lettre(&self) -> Option<lettre::Address> {
        self.0.parse().ok()
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for EmailAddress {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for EmailAddress {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        EmailAddress::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// RFC 5322's `atext`, and any character beyond ASCII (RFC 6531).
fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii()
}

/// A display name safe to put in a header and a greeting: control and bidi
/// characters removed, whitespace collapsed, at most 100 characters.
pub fn clean_display_name(name: &str) -> Option<String> {
    let cleaned: String = clean_line(name).chars().take(100).collect();
    let cleaned = cleaned.trim_end().to_owned();
    (!cleaned.is_empty()).then_some(cleaned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_normalises() {
        let a = EmailAddress::parse("  Ada.Lovelace@Example.COM ").unwrap();
        assert_eq!(a.as_str(), "ada.lovelace@example.com");
        assert_eq!(a.domain(), "example.com");
        assert!(EmailAddress::parse("jürgen@bücher.example").is_ok());
    }

    #[test]
    fn rejects_what_a_server_would() {
        for bad in [
            "",
            "plainaddress",
            "@example.com",
            "a@b",
            "a b@example.com",
            "a@example..com",
            "a@-example.com",
            "a@example.com\r\nBcc: x@example.com",
        ] {
            assert!(EmailAddress::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn rejects_addresses_no_server_can_deliver_to() {
        // lettre takes quoted local parts, but these can never be mailed:
        // the quotes, angle brackets and backslashes break the envelope.
        for bad in [
            "\"a<b>\"@example.com",
            "\"a\\b\"@example.com",
            "\"ann\"@example.com",
            "a<b@example.com",
            "a>b@example.com",
            "a\\b@example.com",
            "a(b)@example.com",
            "a,b@example.com",
            "a;b@example.com",
            "a:b@example.com",
            "[a]@example.com",
            ".ann@example.com",
            "ann.@example.com",
            "a..b@example.com",
            "ann\u{202e}moc.elpmaxe@example.com",
            "ann@exa\u{2066}mple.com",
            "ann\u{200f}@example.com",
        ] {
            assert!(EmailAddress::parse(bad).is_err(), "{bad:?} was accepted");
        }
        for good in
            ["o'brien@example.com", "a+tag@example.com", "x_y-z.w@example.com", "müller@example.de"]
        {
            assert!(EmailAddress::parse(good).is_ok(), "{good:?} was refused");
        }
    }

    #[test]
    fn display_names_lose_bidi_controls() {
        assert_eq!(clean_display_name("Ann \u{202e}nitsuA"), Some("Ann nitsuA".into()));
        assert_eq!(
            clean_display_name("\u{2066}evil\u{2069} \u{200f}x\u{061c}"),
            Some("evil x".into())
        );
    }

    #[test]
    fn display_names_lose_control_characters() {
        assert_eq!(clean_display_name("Ada\r\nBcc: x"), Some("Ada Bcc: x".into()));
        assert_eq!(clean_display_name("  \t "), None);
    }
}
