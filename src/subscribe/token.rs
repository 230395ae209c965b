//! Signed tokens for the links herald mails: unsubscribe, confirm and
//! preferences. A token is `LISTS.SUBSCRIBER[.EXPIRY].MAC`, where MAC is an
//! HMAC-SHA256 over the action, the lists, the subscriber id and the expiry
//! with the site's secret, compared in constant time. It cannot be forged,
//! moved to another list, reader or action, or kept past its expiry, and it
//! needs no storage.
//!
//! Unsubscribe links never expire (a one-click unsubscribe must work from an
//! old digest); confirmation links do (`web.confirm_expiry_days`).

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

    fn keyed(&self) -> HmacSha256 {
        // HMAC accepts keys of any length.
        HmacSha256::new_from_slice(&self.0).expect("HMAC takes keys of any size")
    }

    fn mac(&self, action: Action, lists: &str, subscriber: i64, expiry: Option<i64>) -> HmacSha256 {
        let mut mac = self.keyed();
        mac.update(action.as_str().as_bytes());
        mac.update(b"\0");
        mac.update(lists.as_bytes());
        mac.update(b"\0");
        mac.update(subscriber.to_string().as_bytes());
        if let Some(expiry) = expiry {
            mac.update(b"\0");
            mac.update(expiry.to_string().as_bytes());
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
    pub subscriber: i64,
}

const MAC_BYTES: usize = 16;

/// A token for `action` on `lists` by `subscriber`, valid until `expiry`
/// (a Unix time) when given.
pub fn sign(
    secret: &Secret,
    action: Action,
    lists: &[&str],
    subscriber: i64,
    expiry: Option<i64>,
) -> String {
    let lists = lists.join(",");
    let mac = secret.mac(action, &lists, subscriber, expiry).finalize().into_bytes();
    let mac = hex::encode(&mac[..MAC_BYTES]);
    match expiry {
        Some(expiry) => format!("{lists}.{subscriber}.{expiry}.{mac}"),
        None => format!("{lists}.{subscriber}.{mac}"),
    }
}

/// Checks a token for `action` at Unix time `now`.
pub fn verify(
    secret: &Secret,
    action: Action,
    token: &str,
    now: i64,
) -> Result<Claims, TokenError> {
    let parts: Vec<&str> = token.trim().split('.').collect();
    let (lists, id, expiry, mac) = match parts[..] {
        [lists, id, mac] => (lists, id, None, mac),
        [lists, id, expiry, mac] => {
            (lists, id, Some(expiry.parse::<i64>().map_err(|_| TokenError::Invalid)?), mac)
        }
        _ => return Err(TokenError::Invalid),
    };
    let subscriber: i64 = id.parse().map_err(|_| TokenError::Invalid)?;
    let given = hex::decode(mac).map_err(|_| TokenError::Invalid)?;
    if given.len() != MAC_BYTES || lists.is_empty() {
        return Err(TokenError::Invalid);
    }
    // Constant-time comparison of the truncated MAC.
    secret
        .mac(action, lists, subscriber, expiry)
        .verify_truncated_left(&given)
        .map_err(|_| TokenError::Invalid)?;
    // Checked after the MAC, so an expired token is known to be genuine.
    if expiry.is_some_and(|e| e < now) {
        return Err(TokenError::Expired);
    }
    Ok(Claims { lists: lists.split(',').map(str::to_owned).collect(), subscriber })
}

/// The token in a subscriber's unsubscribe link for `list`; it never expires.
pub fn unsubscribe_token(secret: &Secret, list: &str, subscriber: i64) -> String {
    sign(secret, Action::Unsubscribe, &[list], subscriber, None)
}

/// Checks an unsubscribe token; returns the list and subscriber it was made for.
pub fn verify_unsubscribe_token(secret: &Secret, token: &str) -> Option<(String, i64)> {
    let claims = verify(secret, Action::Unsubscribe, token, 0).ok()?;
    match &claims.lists[..] {
        [list] => Some((list.clone(), claims.subscriber)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_resist_tampering() {
        let secret = Secret::new(b"0123456789abcdef0123456789abcdef".to_vec());
        let token = unsubscribe_token(&secret, "daily", 42);
        assert_eq!(verify_unsubscribe_token(&secret, &token), Some(("daily".into(), 42)));
        let moved = token.replacen("42", "43", 1);
        assert_eq!(verify_unsubscribe_token(&secret, &moved), None);
        let other_list = token.replacen("daily", "weekly", 1);
        assert_eq!(verify_unsubscribe_token(&secret, &other_list), None);
        let other_secret = Secret::new(b"another secret, just as long, really!".to_vec());
        assert_eq!(verify_unsubscribe_token(&other_secret, &token), None);
        assert_eq!(verify_unsubscribe_token(&secret, "garbage"), None);
    }

    #[test]
    fn confirmation_tokens_expire_and_are_bound_to_their_action() {
        let secret = Secret::new(b"0123456789abcdef0123456789abcdef".to_vec());
        let token = sign(&secret, Action::Confirm, &["daily", "weekly"], 7, Some(1_000));
        let claims = verify(&secret, Action::Confirm, &token, 999).unwrap();
        assert_eq!(claims.lists, ["daily", "weekly"]);
        assert_eq!(claims.subscriber, 7);
        assert_eq!(verify(&secret, Action::Confirm, &token, 1_001), Err(TokenError::Expired));
        // A later expiry is an altered token, not a fresh one.
        let extended = token.replacen(".1000.", ".9999.", 1);
        assert_eq!(verify(&secret, Action::Confirm, &extended, 999), Err(TokenError::Invalid));
        // Not an unsubscribe or preferences token.
        assert_eq!(verify(&secret, Action::Unsubscribe, &token, 999), Err(TokenError::Invalid));
        assert_eq!(verify(&secret, Action::Preferences, &token, 999), Err(TokenError::Invalid));
        // One list dropped from the token.
        let fewer = token.replacen("daily,", "", 1);
        assert_eq!(verify(&secret, Action::Confirm, &fewer, 999), Err(TokenError::Invalid));
    }

    #[test]
    fn csrf_macs() {
        let secret = Secret::new(b"0123456789abcdef0123456789abcdef".to_vec());
        let mac = secret.sign_bytes("csrf", b"abc");
        assert!(secret.verify_bytes("csrf", b"abc", &mac));
        assert!(!secret.verify_bytes("csrf", b"abd", &mac));
        assert!(!secret.verify_bytes("csrf", b"abc", "00"));
        assert!(!secret.verify_bytes("csrf", b"abc", "zz"));
    }
}
