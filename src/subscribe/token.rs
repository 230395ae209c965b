//! Signed tokens for unsubscribe links: `LIST.SUBSCRIBER.MAC`, where MAC is
//! an HMAC-SHA256 over the list and subscriber id with the site's secret.
//! A token cannot be forged or moved to another list or reader, and needs no
//! storage.

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

    fn mac(&self, purpose: &str, list: &str, subscriber: i64) -> HmacSha256 {
        // HMAC accepts keys of any length.
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes keys of any size");
        mac.update(purpose.as_bytes());
        mac.update(b"\0");
        mac.update(list.as_bytes());
        mac.update(b"\0");
        mac.update(subscriber.to_string().as_bytes());
        mac
    }
}

const UNSUBSCRIBE: &str = "unsubscribe";
const MAC_BYTES: usize = 16;

/// The token in a subscriber's unsubscribe link for `list`.
pub fn unsubscribe_token(secret: &Secret, list: &str, subscriber: i64) -> String {
    let mac = secret.mac(UNSUBSCRIBE, list, subscriber).finalize().into_bytes();
    format!("{list}.{subscriber}.{}", hex::encode(&mac[..MAC_BYTES]))
}

/// Checks a token; returns the list and subscriber it was made for.
pub fn verify_unsubscribe_token(secret: &Secret, token: &str) -> Option<(String, i64)> {
    let mut parts = token.trim().splitn(3, '.');
    let (list, id, mac) = (parts.next()?, parts.next()?, parts.next()?);
    let subscriber: i64 = id.parse().ok()?;
    let given = hex::decode(mac).ok()?;
    if given.len() != MAC_BYTES {
        return None;
    }
    // Constant-time comparison of the truncated MAC.
    secret.mac(UNSUBSCRIBE, list, subscriber).verify_truncated_left(&given).ok()?;
    Some((list.to_owned(), subscriber))
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
}
