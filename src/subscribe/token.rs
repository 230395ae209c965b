//! Signed tokens for the links herald mails: unsubscribe, confirm and
//! preferences. A token is `LISTS.ID[.EXPIRY].MAC`, where MAC is an
//! HMAC-SHA256 with the site's secret over the action, the lists, the id,
//! the expiry and the *key* of the reader the link was made for. It cannot be
//! forged, moved to another list, reader or action, or kept past its expiry.
//!
//! The id names a row (a subscriber, or for a confirmation link a sign-up),
//! and the key is a random value made with the subscriber and deleted with
//! them: the key is not in the token, so checking one takes a store lookup
//! ([`parse`], then [`Unverified::verify`] with the key the store holds for
//! the id). Ids are never reused either, but the key alone already makes an
//! old link dead once its reader is gone: a later reader has another key.
//!
//! Unsubscribe links never expire (a one-click unsubscribe must work from an
//! old digest); confirmation links do (`web.confirm_expiry_days`). Links
//! mailed before keys existed (no key in their MAC) are accepted, for
//! unsubscribing only, for the subscribers that existed then
//! ([`Unverified::verify_legacy`]).

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

use crate::config::ENV_SECRET;
use crate::store::{Store, StoreError};

type HmacSha256 = Hmac<Sha256>;

/// The key that signs tokens. From `HERALD_SECRET` when set; otherwise one
/// generated on first use and kept in the store.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("{ENV_SECRET} is set but shorter than 32 characters; use a long random value (e.g. `openssl rand -hex 32`)")]
    TooShort,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Secret {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self(bytes.into())
    }

    /// The secret in force: the environment's, else the store's (created once).
    pub async fn resolve(store: &Store) -> Result<Self, SecretError> {
        if let Ok(value) = std::env::var(ENV_SECRET) {
            if value.len() < 32 {
                return Err(SecretError::TooShort);
            }
            return Ok(Self(value.into_bytes()));
        }
        let mut fresh = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut fresh);
        let fresh = hex::encode(fresh);
        let value = store.setting_or_insert("secret", &fresh).await?;
        if value == fresh {
            tracing::info!(
                "generated a secret for signing unsubscribe links and kept it in the store; set {ENV_SECRET} to manage it yourself"
            );
        }
        Ok(Self(value.into_bytes()))
    }

    /// An HMAC-SHA256 keyed with the secret, for the other signed values
    /// herald makes (VERP tokens).
    pub fn hmac(&self) -> HmacSha256 {
        self.keyed()
    }

    fn keyed(&self) -> HmacSha256 {
        // HMAC accepts keys of any length.
        HmacSha256::new_from_slice(&self.0).expect("HMAC takes keys of any size")
    }

    /// The MAC of a link. `key` is the reader's key, or `None` for the
    /// links made before keys existed.
    fn mac(
        &self,
        action: Action,
        lists: &str,
        id: i64,
        key: Option<&str>,
        expiry: Option<i64>,
    ) -> HmacSha256 {
        let mut mac = self.keyed();
        mac.update(action.as_str().as_bytes());
        mac.update(b"\0");
        mac.update(lists.as_bytes());
        mac.update(b"\0");
        mac.update(id.to_string().as_bytes());
        if let Some(expiry) = expiry {
            mac.update(b"\0");
            mac.update(expiry.to_string().as_bytes());
        }
        if let Some(key) = key {
            // After the expiry, with its own label, so no value of one part
            // can be read as another.
            mac.update(b"\0key\0");
            mac.update(key.as_bytes());
        }
        mac
    }

    /// A MAC over `parts` for another purpose than a link (the CSRF field).
    pub fn sign_bytes(&self, purpose: &str, value: &[u8]) -> String {
        let mut mac = self.keyed();
        mac.update(purpose.as_bytes());
        mac.update(b"\0");
        mac.update(value);
        hex::encode(&mac.finalize().into_bytes()[..MAC_BYTES])
    }

    /// Checks a MAC made by [`Secret::sign_bytes`], in constant time.
    pub fn verify_bytes(&self, purpose: &str, value: &[u8], given: &str) -> bool {
        let Ok(given) = hex::decode(given) else { return false };
        let mut mac = self.keyed();
        mac.update(purpose.as_bytes());
        mac.update(b"\0");
        mac.update(value);
        given.len() == MAC_BYTES && mac.verify_truncated_left(&given).is_ok()
    }
}

/// What a token lets its bearer do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Unsubscribe,
    Confirm,
    Preferences,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Unsubscribe => "unsubscribe",
            Action::Confirm => "confirm",
            Action::Preferences => "preferences",
        }
    }
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the link is incomplete or was altered")]
    Invalid,
    #[error("the link has expired")]
    Expired,
}

/// What a valid token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// The lists it is for (`*` in a preferences token: all).
    pub lists: Vec<String>,
    /// The row it names: a subscriber, or for a confirmation link a sign-up.
    pub id: i64,
}

/// Whom a link is made for: the id it names and the key of the reader
/// behind it.
#[derive(Debug, Clone, Copy)]
pub struct Bearer<'a> {
    pub id: i64,
    pub key: &'a str,
}

const MAC_BYTES: usize = 16;

/// A token for `action` on `lists` for `bearer`, valid until `expiry` (a
/// Unix time) when given.
pub fn sign(
    secret: &Secret,
    action: Action,
    lists: &[&str],
    bearer: Bearer<'_>,
    expiry: Option<i64>,
) -> String {
    let lists = lists.join(",");
    let id = bearer.id;
    let mac = secret.mac(action, &lists, id, Some(bearer.key), expiry).finalize().into_bytes();
    let mac = hex::encode(&mac[..MAC_BYTES]);
    match expiry {
        Some(expiry) => format!("{lists}.{id}.{expiry}.{mac}"),
        None => format!("{lists}.{id}.{mac}"),
    }
}

/// A token taken apart but not yet checked: the store is asked for the key
/// of [`Unverified::id`], then [`Unverified::verify`] checks the MAC.
#[derive(Debug, Clone)]
pub struct Unverified {
    lists: String,
    /// The row the token names (not to be trusted before it is verified).
    pub id: i64,
    expiry: Option<i64>,
    mac: Vec<u8>,
}

/// Takes a token apart; `Invalid` when it cannot be one of ours.
pub fn parse(token: &str) -> Result<Unverified, TokenError> {
    let parts: Vec<&str> = token.trim().split('.').collect();
    let (lists, id, expiry, mac) = match parts[..] {
        [lists, id, mac] => (lists, id, None, mac),
        [lists, id, expiry, mac] => {
            (lists, id, Some(expiry.parse::<i64>().map_err(|_| TokenError::Invalid)?), mac)
        }
        _ => return Err(TokenError::Invalid),
    };
    let id: i64 = id.parse().map_err(|_| TokenError::Invalid)?;
    let mac = hex::decode(mac).map_err(|_| TokenError::Invalid)?;
    if mac.len() != MAC_BYTES || lists.is_empty() {
        return Err(TokenError::Invalid);
    }
    Ok(Unverified { lists: lists.to_owned(), id, expiry, mac })
}

impl Unverified {
    /// Checks the token for `action` against the key of the reader its id
    /// names, at Unix time `now`.
    pub fn verify(
        &self,
        secret: &Secret,
        action: Action,
        key: &str,
        now: i64,
    ) -> Result<Claims, TokenError> {
        self.check(secret, action, Some(key), now)
    }

    /// Checks a link mailed before keys existed. Only for unsubscribing, and
    /// only for a subscriber who existed then (the caller checks that).
    pub fn verify_legacy(&self, secret: &Secret, now: i64) -> Result<Claims, TokenError> {
        self.check(secret, Action::Unsubscribe, None, now)
    }

    fn check(
        &self,
        secret: &Secret,
        action: Action,
        key: Option<&str>,
        now: i64,
    ) -> Result<Claims, TokenError> {
        // Constant-time comparison of the truncated MAC.
        secret
            .mac(action, &self.lists, self.id, key, self.expiry)
            .verify_truncated_left(&self.mac)
            .map_err(|_| TokenError::Invalid)?;
        // Checked after the MAC, so an expired token is known to be genuine.
        if self.expiry.is_some_and(|e| e < now) {
            return Err(TokenError::Expired);
        }
        Ok(Claims { lists: self.lists.split(',').map(str::to_owned).collect(), id: self.id })
    }
}

/// A click link's token (`/c/TOKEN`): `EDITION.ARTICLE.MAC`, or with the
/// reader (`[[lists]] individual = true`) `EDITION.ARTICLE.READER.MAC`, the
/// MAC over the edition, the article and, when there, the reader's id and
/// key. The token names where the click goes only through the store (the
/// article's URL in that edition), never a URL of its own, so a link can
/// lead nowhere else.
pub fn click_token(
    secret: &Secret,
    edition: i64,
    article: i64,
    reader: Option<Bearer<'_>>,
) -> String {
    let mac = secret.sign_bytes("click", &click_payload(edition, article, reader));
    match reader {
        Some(r) => format!("{edition}.{article}.{}.{mac}", r.id),
        None => format!("{edition}.{article}.{mac}"),
    }
}

fn click_payload(edition: i64, article: i64, reader: Option<Bearer<'_>>) -> Vec<u8> {
    let mut payload = format!("{edition}\0{article}");
    if let Some(r) = reader {
        payload.push_str(&format!("\0{}\0key\0{}", r.id, r.key));
    }
    payload.into_bytes()
}

/// A click token taken apart, not yet checked: with a reader, the store is
/// asked for their key first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClickToken {
    pub edition: i64,
    pub article: i64,
    pub reader: Option<i64>,
    mac: String,
}

impl ClickToken {
    /// Takes a click token apart; `Invalid` when it cannot be one of ours.
    pub fn parse(token: &str) -> Result<Self, TokenError> {
        let number = |s: &str| s.parse::<i64>().map_err(|_| TokenError::Invalid);
        let parts: Vec<&str> = token.split('.').collect();
        let (edition, article, reader, mac) = match parts[..] {
            [e, a, mac] => (number(e)?, number(a)?, None, mac),
            [e, a, r, mac] => (number(e)?, number(a)?, Some(number(r)?), mac),
            _ => return Err(TokenError::Invalid),
        };
        if mac.len() != MAC_BYTES * 2 {
            return Err(TokenError::Invalid);
        }
        Ok(Self { edition, article, reader, mac: mac.to_owned() })
    }

    /// Checks the MAC (in constant time), with the key of the reader the
    /// token names when it names one.
    pub fn verify(&self, secret: &Secret, key: Option<&str>) -> Result<(), TokenError> {
        let reader = match (self.reader, key) {
            (Some(id), Some(key)) => Some(Bearer { id, key }),
            (None, None) => None,
            _ => return Err(TokenError::Invalid),
        };
        let payload = click_payload(self.edition, self.article, reader);
        if secret.verify_bytes("click", &payload, &self.mac) {
            Ok(())
        } else {
            Err(TokenError::Invalid)
        }
    }
}

/// The token in a subscriber's unsubscribe link for `list`; it never expires.
pub fn unsubscribe_token(secret: &Secret, list: &str, bearer: Bearer<'_>) -> String {
    sign(secret, Action::Unsubscribe, &[list], bearer, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> Secret {
        Secret::new(b"0123456789abcdef0123456789abcdef".to_vec())
    }

    fn check(token: &str, action: Action, key: &str, now: i64) -> Result<Claims, TokenError> {
        parse(token)?.verify(&secret(), action, key, now)
    }

    #[test]
    fn tokens_round_trip_and_resist_tampering() {
        let ann = Bearer { id: 42, key: "k-ann" };
        let token = unsubscribe_token(&secret(), "daily", ann);
        let claims = check(&token, Action::Unsubscribe, "k-ann", 0).unwrap();
        assert_eq!((claims.lists, claims.id), (vec!["daily".to_string()], 42));
        let moved = token.replacen("42", "43", 1);
        assert_eq!(check(&moved, Action::Unsubscribe, "k-ann", 0), Err(TokenError::Invalid));
        let other_list = token.replacen("daily", "weekly", 1);
        assert_eq!(check(&other_list, Action::Unsubscribe, "k-ann", 0), Err(TokenError::Invalid));
        let other_secret = Secret::new(b"another secret, just as long, really!".to_vec());
        let forged = parse(&token).unwrap().verify(&other_secret, Action::Unsubscribe, "k-ann", 0);
        assert_eq!(forged, Err(TokenError::Invalid));
        assert_eq!(parse("garbage").unwrap_err(), TokenError::Invalid);
        assert_eq!(parse("daily.1.zz").unwrap_err(), TokenError::Invalid);
    }

    #[test]
    fn a_token_acts_only_for_the_key_it_was_made_with() {
        // The same id with another reader's key: a later reader who got the
        // id of someone who was forgotten.
        let token = unsubscribe_token(&secret(), "daily", Bearer { id: 7, key: "k-ann" });
        assert_eq!(check(&token, Action::Unsubscribe, "k-bob", 0), Err(TokenError::Invalid));
        // Nor is a keyed token a legacy one.
        assert_eq!(parse(&token).unwrap().verify_legacy(&secret(), 0), Err(TokenError::Invalid));
    }

    #[test]
    fn legacy_unsubscribe_links_still_verify() {
        // A link as herald made them before keys: no key in the MAC.
        let lists = "daily";
        let mac = secret().mac(Action::Unsubscribe, lists, 42, None, None).finalize().into_bytes();
        let token = format!("{lists}.42.{}", hex::encode(&mac[..MAC_BYTES]));
        let claims = parse(&token).unwrap().verify_legacy(&secret(), 0).unwrap();
        assert_eq!(claims.id, 42);
        assert_eq!(check(&token, Action::Unsubscribe, "k", 0), Err(TokenError::Invalid));
    }

    #[test]
    fn confirmation_tokens_expire_and_are_bound_to_their_action() {
        let bearer = Bearer { id: 7, key: "k" };
        let token = sign(&secret(), Action::Confirm, &["daily", "weekly"], bearer, Some(1_000));
        let claims = check(&token, Action::Confirm, "k", 999).unwrap();
        assert_eq!(claims.lists, ["daily", "weekly"]);
        assert_eq!(claims.id, 7);
        assert_eq!(check(&token, Action::Confirm, "k", 1_001), Err(TokenError::Expired));
        // A later expiry is an altered token, not a fresh one.
        let extended = token.replacen(".1000.", ".9999.", 1);
        assert_eq!(check(&extended, Action::Confirm, "k", 999), Err(TokenError::Invalid));
        // Not an unsubscribe or preferences token.
        assert_eq!(check(&token, Action::Unsubscribe, "k", 999), Err(TokenError::Invalid));
        assert_eq!(check(&token, Action::Preferences, "k", 999), Err(TokenError::Invalid));
        // One list dropped from the token.
        let fewer = token.replacen("daily,", "", 1);
        assert_eq!(check(&fewer, Action::Confirm, "k", 999), Err(TokenError::Invalid));
    }

    #[test]
    fn click_tokens_name_their_link_and_reader_and_resist_tampering() {
        let plain = click_token(&secret(), 12, 34, None);
        let t = ClickToken::parse(&plain).unwrap();
        assert_eq!((t.edition, t.article, t.reader), (12, 34, None));
        assert_eq!(t.verify(&secret(), None), Ok(()));
        // Another article or edition of the same MAC.
        for forged in [plain.replacen("12.34", "12.35", 1), plain.replacen("12.34", "13.34", 1)] {
            let t = ClickToken::parse(&forged).unwrap();
            assert_eq!(t.verify(&secret(), None), Err(TokenError::Invalid));
        }
        let ann = Bearer { id: 7, key: "k-ann" };
        let token = click_token(&secret(), 12, 34, Some(ann));
        let t = ClickToken::parse(&token).unwrap();
        assert_eq!(t.reader, Some(7));
        assert_eq!(t.verify(&secret(), Some("k-ann")), Ok(()));
        assert_eq!(t.verify(&secret(), Some("k-bob")), Err(TokenError::Invalid));
        assert_eq!(t.verify(&secret(), None), Err(TokenError::Invalid));
        let moved = ClickToken::parse(&token.replacen(".7.", ".8.", 1)).unwrap();
        assert_eq!(moved.verify(&secret(), Some("k-ann")), Err(TokenError::Invalid));
        for bad in ["", "1.2", "a.2.00", "1.2.3.4.5", "1.2.zz", "https://evil.example/"] {
            assert_eq!(ClickToken::parse(bad), Err(TokenError::Invalid), "{bad}");
        }
    }

    #[test]
    fn csrf_macs() {
        let mac = secret().sign_bytes("csrf", b"abc");
        assert!(secret().verify_bytes("csrf", b"abc", &mac));
        assert!(!secret().verify_bytes("csrf", b"abd", &mac));
        assert!(!secret().verify_bytes("csrf", b"abc", "00"));
        assert!(!secret().verify_bytes("csrf", b"abc", "zz"));
    }
}
