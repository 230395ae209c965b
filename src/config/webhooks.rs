//! `[bounces.webhooks]`: the providers' webhooks on herald's web server
//! (`/webhooks/ses`, `/webhooks/postmark`, `/webhooks/mailgun`,
//! `/webhooks/sendgrid`, `/webhooks/generic`). Only what is not secret is
//! here; the secrets come from the environment alone
//! ([`ENV_MAILGUN_KEY`], [`ENV_POSTMARK_PASSWORD`], [`ENV_WEBHOOK_SECRET`]),
//! read when the server starts. Each webhook is on only when what it needs
//! is set.

use std::path::PathBuf;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::problems::Check;

/// Mailgun's webhook signing key.
pub const ENV_MAILGUN_KEY: &str = "HERALD_BOUNCES_MAILGUN_KEY";
/// The password of Postmark's webhook URL (HTTP Basic authentication).
pub const ENV_POSTMARK_PASSWORD: &str = "HERALD_BOUNCES_POSTMARK_PASSWORD";
/// The HMAC secret of the generic webhook.
pub const ENV_WEBHOOK_SECRET: &str = "HERALD_BOUNCES_WEBHOOK_SECRET";

/// The DER prefix of a P-256 public key's SubjectPublicKeyInfo
/// (id-ecPublicKey, prime256v1), before its 65-byte uncompressed point.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

#[derive(Debug, Clone, Default)]
pub struct Webhooks {
    /// SNS topics whose notifications are taken; `/webhooks/ses` is on when
    /// there is at least one.
    pub ses_topic_arns: Vec<String>,
    /// PEM certificates trusted besides the public roots, for the SNS
    /// signing certificate and the HTTPS connection that fetches it.
    pub ses_extra_ca_file: Option<PathBuf>,
    /// The user of Postmark's webhook URL; `/webhooks/postmark` is on when
    /// it is set and [`ENV_POSTMARK_PASSWORD`] is.
    pub postmark_user: Option<String>,
    /// SendGrid's verification key: the uncompressed P-256 point taken from
    /// the configured SubjectPublicKeyInfo; `/webhooks/sendgrid` is on when
    /// it is set.
    pub sendgrid_public_key: Option<Vec<u8>>,
    /// The largest request body taken, in bytes.
    pub max_body_bytes: usize,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawWebhooks {
    ses_topic_arns: Vec<String>,
    ses_extra_ca_file: String,
    postmark_user: String,
    sendgrid_public_key: String,
    max_body_kb: i64,
}

impl Default for RawWebhooks {
    fn default() -> Self {
        Self {
            ses_topic_arns: Vec::new(),
            ses_extra_ca_file: String::new(),
            postmark_user: String::new(),
            sendgrid_public_key: String::new(),
            max_body_kb: 1024,
        }
    }
}

const SECTION: &str = "bounces.webhooks";

pub(super) fn check(raw: &RawWebhooks, c: &mut Check) -> Webhooks {
    let mut topics = Vec::new();
    for arn in &raw.ses_topic_arns {
        let arn = arn.trim();
        // arn:aws:sns:REGION:ACCOUNT:NAME (arn:aws-cn:, arn:aws-us-gov:).
        let parts: Vec<&str> = arn.split(':').collect();
        if parts.len() != 6
            || parts[0] != "arn"
            || !parts[1].starts_with("aws")
            || parts[2] != "sns"
            || parts.iter().any(|p| p.is_empty())
        {
            c.problem(
                c.place(SECTION, None, "ses_topic_arns"),
                format!("{SECTION}.ses_topic_arns has `{arn}`, not an SNS topic ARN such as \"arn:aws:sns:us-east-1:123456789012:herald-bounces\""),
            );
        } else {
            topics.push(arn.to_owned());
        }
    }
    let ses_extra_ca_file = match raw.ses_extra_ca_file.trim() {
        "" => None,
        path => Some(c.resolve(path)),
    };
    let postmark_user = match raw.postmark_user.trim() {
        "" => None,
        user if user.contains(':') || user.chars().any(char::is_control) => {
            c.problem(
                c.place(SECTION, None, "postmark_user"),
                format!("{SECTION}.postmark_user must not contain `:` or control characters"),
            );
            None
        }
        user => Some(user.to_owned()),
    };
    let sendgrid_public_key = match raw.sendgrid_public_key.trim() {
        "" => None,
        text => match sendgrid_key(text) {
            Some(point) => Some(point),
            None => {
                c.problem(
                    c.place(SECTION, None, "sendgrid_public_key"),
                    format!("{SECTION}.sendgrid_public_key is not a P-256 public key: paste the \"Verification Key\" SendGrid shows for the Signed Event Webhook (base64, starting with MFkw)"),
                );
                None
            }
        },
    };
    let max_body_kb: usize = c.int(SECTION, "max_body_kb", raw.max_body_kb, 1..=64 * 1024);
    Webhooks {
        ses_topic_arns: topics,
        ses_extra_ca_file,
        postmark_user,
        sendgrid_public_key,
        max_body_bytes: max_body_kb * 1024,
    }
}

/// The uncompressed point of a base64 DER SubjectPublicKeyInfo of a P-256
/// key (a PEM's header and footer lines allowed).
fn sendgrid_key(text: &str) -> Option<Vec<u8>> {
    let body: String = text
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .flat_map(|l| l.chars())
        .filter(|c| !c.is_whitespace())
        .collect();
    let der = base64::engine::general_purpose::STANDARD.decode(body).ok()?;
    let point = der.strip_prefix(&P256_SPKI_PREFIX[..])?;
    (point.len() == 65 && point[0] == 4).then(|| point.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sendgrid_key_is_a_p256_spki() {
        let mut der = P256_SPKI_PREFIX.to_vec();
        der.push(4);
        der.extend([7u8; 64]);
        let text = base64::engine::general_purpose::STANDARD.encode(&der);
        assert_eq!(sendgrid_key(&text).map(|p| p.len()), Some(65));
        let pem = format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n{}\n-----END PUBLIC KEY-----\n",
            &text[..40],
            &text[40..]
        );
        assert!(sendgrid_key(&pem).is_some());
        assert!(sendgrid_key(&text[..text.len() - 4]).is_none(), "cut short");
        assert!(sendgrid_key("not base64 at all").is_none());
    }
}
