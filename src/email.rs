//! `EmailAddress`: a subscriber's address, parsed once where it enters herald
//! (CSV import, the CLI, the web form) and trusted everywhere after.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

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
        if trimmed.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(err("it contains spaces or control characters"));
        }
        let Some((local, domain)) = trimmed.rsplit_once('@') else {
            return Err(err("it has no '@'"));
        };
        if local.is_empty() || local.len() > 64 {
            return Err(err("the part before '@' must be 1 to 64 characters"));
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

/// A display name safe to put in a header: control characters (CR, LF, …)
/// removed, whitespace collapsed, at most 100 characters.
pub fn clean_display_name(name: &str) -> Option<String> {
    let cleaned: String = name
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let cleaned: String = cleaned.chars().take(100).collect();
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
    fn display_names_lose_control_characters() {
        assert_eq!(clean_display_name("Ada\r\nBcc: x"), Some("Ada Bcc: x".into()));
        assert_eq!(clean_display_name("  \t "), None);
    }
}
