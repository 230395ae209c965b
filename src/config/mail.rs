//! `[mail]`: how digests are sent. The sender and reply addresses, the
//! transport (the outbox folder, or SMTP with its URL rules), pacing and
//! retries, DKIM signing, and `[[mail.relays]]` (several SMTP servers
//! sharing the sending). Passwords never come from the file, and a message
//! about a bad SMTP URL never shows one (`without_password`).

use std::path::PathBuf;

use lettre::message::Mailbox;
use serde::{Deserialize, Serialize};
use url::Url;

use super::env::ENV_SMTP_PASSWORD;
use super::problems::{Check, Place};
use crate::email::EmailAddress;
use crate::types::Slug;

#[derive(Debug, Clone)]
pub struct Mail {
    pub from: Mailbox,
    pub reply_to: Option<Mailbox>,
    pub transport: Transport,
    pub outbox_dir: PathBuf,
    pub smtp_url: Url,
    pub concurrency: usize,
    pub rate_per_second: f64,
    /// Reconnect after this many messages on one connection (0: never).
    pub messages_per_connection: usize,
    /// Hard bounces (5.1.x, 5.2.1) after which an address is suppressed.
    pub suppress_after: u32,
    pub max_attempts: u32,
    pub retry_base_secs: u64,
    pub timeout_secs: u64,
    pub unsubscribe_mailto: Option<EmailAddress>,
    /// The envelope sender's address for VERP (`bounces+TOKEN@domain`):
    /// reports about each message come back to an address that names its
    /// edition and reader.
    pub bounce_address: Option<EmailAddress>,
    /// The DKIM keys every message is signed with, one signature each:
    /// `[[mail.dkim]]`, or the one key of `dkim_selector` and
    /// `dkim_key_file`. Empty: mail goes unsigned.
    pub dkim: Vec<Dkim>,
    /// `[[mail.relays]]`: several SMTP servers sharing the sending. Empty
    /// means one relay from `smtp_url`, `concurrency` and `rate_per_second`.
    pub relays: Vec<Relay>,
}

/// One SMTP server of `[[mail.relays]]`.
#[derive(Debug, Clone)]
pub struct Relay {
    pub name: Slug,
    pub url: Url,
    pub concurrency: usize,
    /// Messages per second at most (0: no limit).
    pub rate_per_second: f64,
    /// Messages per UTC day at most (0: no limit).
    pub daily_cap: u64,
}

impl Relay {
    /// The environment variable holding this relay's SMTP password.
    pub fn password_var(&self) -> String {
        format!(
            "HERALD_MAIL_RELAY_{}_PASSWORD",
            self.name.as_str().to_ascii_uppercase().replace('-', "_")
        )
    }
}

/// DKIM signing settings (RFC 6376).
#[derive(Debug, Clone)]
pub struct Dkim {
    pub selector: String,
    /// The signing domain (`d=`): `dkim_domain`, else the From address's domain.
    pub domain: String,
    /// The private key: PEM (PKCS#1 or PKCS#8) for RSA; PKCS#8 PEM or the
    /// base64 of the 32-byte seed for Ed25519.
    pub key_file: PathBuf,
    pub algorithm: DkimAlgorithm,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DkimAlgorithm {
    Rsa,
    Ed25519,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Outbox,
    Smtp,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawMail {
    from: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    reply_to: Option<String>,
    transport: String,
    outbox_dir: String,
    smtp_url: String,
    concurrency: i64,
    rate_per_second: f64,
    messages_per_connection: i64,
    suppress_after: i64,
    max_attempts: i64,
    retry_base_secs: i64,
    timeout_secs: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    unsubscribe_mailto: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bounce_address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dkim_selector: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dkim_key_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dkim_domain: Option<String>,
    dkim_algorithm: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    dkim: Vec<RawDkim>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    relays: Vec<RawRelay>,
}

/// One key of `[[mail.dkim]]`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawDkim {
    selector: String,
    key_file: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    domain: Option<String>,
    #[serde(default = "default_dkim_algorithm")]
    algorithm: String,
}

fn default_dkim_algorithm() -> String {
    "rsa".into()
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawRelay {
    name: String,
    url: String,
    #[serde(default = "default_relay_concurrency")]
    concurrency: i64,
    #[serde(default)]
    rate_per_second: f64,
    #[serde(default)]
    daily_cap: i64,
}

fn default_relay_concurrency() -> i64 {
    4
}

const DEFAULT_FROM: &str = "herald <herald@localhost.localdomain>";
const DEFAULT_SMTP_URL: &str = "smtp://127.0.0.1:25";

impl Default for RawMail {
    fn default() -> Self {
        Self {
            from: DEFAULT_FROM.into(),
            reply_to: None,
            transport: "outbox".into(),
            outbox_dir: "outbox".into(),
            smtp_url: DEFAULT_SMTP_URL.into(),
            concurrency: 8,
            rate_per_second: 0.0,
            messages_per_connection: 0,
            suppress_after: 1,
            max_attempts: 5,
            retry_base_secs: 60,
            timeout_secs: 60,
            unsubscribe_mailto: None,
            bounce_address: None,
            dkim_selector: None,
            dkim_key_file: None,
            dkim_domain: None,
            dkim_algorithm: default_dkim_algorithm(),
            dkim: Vec::new(),
            relays: Vec::new(),
        }
    }
}

pub(super) fn check(raw: &RawMail, c: &mut Check) -> Mail {
    let from = parse_mailbox(&raw.from).unwrap_or_else(|e| {
        c.problem(c.place("mail", None, "from"), format!("mail.from: {e}"));
        DEFAULT_FROM.parse().expect("a constant mailbox parses")
    });
    let reply_to = raw.reply_to.as_deref().filter(|r| !r.trim().is_empty()).and_then(|r| {
        parse_mailbox(r)
            .map_err(|e| {
                c.problem(c.place("mail", None, "reply_to"), format!("mail.reply_to: {e}"))
            })
            .ok()
    });
    let transport = match raw.transport.as_str() {
        "outbox" => Transport::Outbox,
        "smtp" => Transport::Smtp,
        other => {
            c.problem(
                c.place("mail", None, "transport"),
                format!("mail.transport is `{other}`; expected \"outbox\" or \"smtp\""),
            );
            Transport::Outbox
        }
    };
    let smtp_url = parse_smtp_url(&raw.smtp_url).unwrap_or_else(|e| {
        c.problem(c.place("mail", None, "smtp_url"), e);
        Url::parse(DEFAULT_SMTP_URL).expect("a constant URL parses")
    });
    let concurrency = c.int("mail", "concurrency", raw.concurrency, 1..=256);
    let max_attempts = c.int("mail", "max_attempts", raw.max_attempts, 1..=100);
    let suppress_after = c.int("mail", "suppress_after", raw.suppress_after, 1..=100);
    let retry_base_secs = c.int("mail", "retry_base_secs", raw.retry_base_secs, 1..=86_400);
    let timeout_secs = c.int("mail", "timeout_secs", raw.timeout_secs, 1..=3_600);
    if raw.messages_per_connection < 0 {
        c.problem(
            c.place("mail", None, "messages_per_connection"),
            "mail.messages_per_connection must be 0 (no limit) or more",
        );
    }
    if !(raw.rate_per_second >= 0.0 && raw.rate_per_second.is_finite()) {
        c.problem(
            c.place("mail", None, "rate_per_second"),
            "mail.rate_per_second must be 0 (no limit) or more",
        );
    }
    let unsubscribe_mailto =
        raw.unsubscribe_mailto.as_deref().filter(|a| !a.trim().is_empty()).and_then(|a| {
            EmailAddress::parse(a)
                .map_err(|e| {
                    c.problem(
                        c.place("mail", None, "unsubscribe_mailto"),
                        format!("mail.unsubscribe_mailto: {e}"),
                    )
                })
                .ok()
        });
    let bounce_address = raw
        .bounce_address
        .as_deref()
        .filter(|a| !a.trim().is_empty())
        .and_then(|a| match EmailAddress::parse(a) {
            Ok(address) if address.as_str().split('@').next().is_some_and(|l| l.contains('+')) => {
                c.problem(
                    c.place("mail", None, "bounce_address"),
                    format!("mail.bounce_address `{a}` has a `+` in its local part; herald adds `+TOKEN` itself, so give the plain address (e.g. bounces@news.example.com)"),
                );
                None
            }
            Ok(address) => Some(address),
            Err(e) => {
                c.problem(c.place("mail", None, "bounce_address"), format!("mail.bounce_address: {e}"));
                None
            }
        });
    let dkim = dkim(raw, &from, c);
    let relays = relays(&raw.relays, c);
    Mail {
        relays,
        dkim,
        from,
        reply_to,
        transport,
        outbox_dir: c.resolve(&raw.outbox_dir),
        smtp_url,
        concurrency,
        rate_per_second: raw.rate_per_second.max(0.0),
        messages_per_connection: usize::try_from(raw.messages_per_connection).unwrap_or(0),
        suppress_after,
        max_attempts,
        retry_base_secs,
        timeout_secs,
        unsubscribe_mailto,
        bounce_address,
    }
}

/// The DKIM keys: `[[mail.dkim]]`, or the one-key shorthand (both
/// `dkim_selector` and `dkim_key_file`, or neither), not both.
fn dkim(raw: &RawMail, from: &Mailbox, c: &mut Check) -> Vec<Dkim> {
    let nonempty = |v: &Option<String>| {
        v.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned)
    };
    let shorthand = match (nonempty(&raw.dkim_selector), nonempty(&raw.dkim_key_file)) {
        (None, None) => None,
        (Some(selector), Some(key_file)) => Some(RawDkim {
            selector,
            key_file,
            domain: nonempty(&raw.dkim_domain),
            algorithm: raw.dkim_algorithm.clone(),
        }),
        (Some(_), None) => {
            c.problem(c.place("mail", None, "dkim_selector"), "mail.dkim_selector is set but mail.dkim_key_file is not: set both to sign with DKIM");
            None
        }
        (None, Some(_)) => {
            c.problem(c.place("mail", None, "dkim_key_file"), "mail.dkim_key_file is set but mail.dkim_selector is not: set both to sign with DKIM");
            None
        }
    };
    if let Some(one) = shorthand {
        if !raw.dkim.is_empty() {
            c.problem(
                c.place("mail", None, "dkim_selector"),
                "mail.dkim_selector and [[mail.dkim]] are both set: list every key under [[mail.dkim]]",
            );
            return Vec::new();
        }
        let place = |key: &str, c: &Check| c.place("mail", None, &format!("dkim_{key}"));
        return dkim_key(&one, "mail.dkim_", from, &place, c).into_iter().collect();
    }
    let mut keys: Vec<Dkim> = Vec::new();
    for (i, one) in raw.dkim.iter().enumerate() {
        let place = |key: &str, c: &Check| c.place("mail.dkim", Some(i), key);
        let Some(key) = dkim_key(one, "", from, &place, c) else { continue };
        if keys.iter().any(|k| k.selector == key.selector && k.domain == key.domain) {
            c.problem(
                place("selector", c),
                format!(
                    "[[mail.dkim]]: two keys sign as selector `{}` of {}; each needs its own selector",
                    key.selector, key.domain
                ),
            );
            continue;
        }
        keys.push(key);
    }
    keys
}

/// One DKIM key's settings; `prefix` is how the problems name its keys
/// (`mail.dkim_` for the shorthand).
fn dkim_key(
    raw: &RawDkim,
    prefix: &str,
    from: &Mailbox,
    place: &dyn Fn(&str, &Check) -> Place,
    c: &mut Check,
) -> Option<Dkim> {
    let algorithm = match raw.algorithm.as_str() {
        "rsa" => Some(DkimAlgorithm::Rsa),
        "ed25519" => Some(DkimAlgorithm::Ed25519),
        other => {
            let at = place("algorithm", c);
            c.problem(
                at,
                format!("{prefix}algorithm is `{other}`; expected \"rsa\" or \"ed25519\""),
            );
            None
        }
    };
    let selector = raw.selector.trim();
    if selector.is_empty()
        || !selector
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '.' || ch == '_')
    {
        let at = place("selector", c);
        c.problem(
            at,
            format!("{prefix}selector `{selector}` must be a DNS label like \"herald2026\""),
        );
        return None;
    }
    if raw.key_file.trim().is_empty() {
        let at = place("key_file", c);
        c.problem(at, format!("{prefix}key_file is empty"));
        return None;
    }
    algorithm.map(|algorithm| Dkim {
        selector: selector.to_owned(),
        domain: raw
            .domain
            .as_deref()
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .map_or_else(|| from.email.domain().to_owned(), str::to_owned),
        key_file: c.resolve(raw.key_file.trim()),
        algorithm,
    })
}

/// `[[mail.relays]]`, leaving out each relay with a problem.
fn relays(raw: &[RawRelay], c: &mut Check) -> Vec<Relay> {
    let mut relays: Vec<Relay> = Vec::new();
    for (i, r) in raw.iter().enumerate() {
        if let Some(relay) = relay(i, r, &relays, c) {
            relays.push(relay);
        }
    }
    relays
}

/// The `i`-th relay, unless it has a problem. `taken` are the relays before
/// it.
fn relay(i: usize, r: &RawRelay, taken: &[Relay], c: &mut Check) -> Option<Relay> {
    let name = match Slug::parse(&r.name) {
        Ok(name) => name,
        Err(e) => {
            c.problem(c.place("mail.relays", Some(i), "name"), format!("relay name: {e}"));
            return None;
        }
    };
    if taken.iter().any(|o| o.name == name) {
        c.problem(
            c.place("mail.relays", Some(i), "name"),
            format!("two relays are named `{name}`"),
        );
        return None;
    }
    let url = match parse_smtp_url(&r.url) {
        Ok(url) => url,
        Err(e) => {
            c.problem(
                c.place("mail.relays", Some(i), "url"),
                format!("relay `{name}`: {}", e.replace("mail.smtp_url", "url")),
            );
            return None;
        }
    };
    if !(1..=256).contains(&r.concurrency) {
        c.problem(
            c.place("mail.relays", Some(i), "concurrency"),
            format!("relay `{name}`: concurrency must be between 1 and 256"),
        );
        return None;
    }
    if !(r.rate_per_second >= 0.0 && r.rate_per_second.is_finite()) || r.daily_cap < 0 {
        c.problem(
            c.place("mail.relays", Some(i), "rate_per_second"),
            format!("relay `{name}`: rate_per_second and daily_cap must be 0 (no limit) or more"),
        );
        return None;
    }
    Some(Relay {
        name,
        url,
        concurrency: r.concurrency as usize,
        rate_per_second: r.rate_per_second,
        daily_cap: r.daily_cap as u64,
    })
}

fn parse_mailbox(text: &str) -> Result<Mailbox, String> {
    let mailbox: Mailbox = text.parse().map_err(|e| {
        format!("`{text}` is not an address like \"Example News <news@example.com>\" ({e})")
    })?;
    EmailAddress::parse(mailbox.email.as_ref()).map_err(|e| e.to_string())?;
    Ok(mailbox)
}

fn parse_smtp_url(text: &str) -> Result<Url, String> {
    // Messages show the URL without any password it carries: they end up in
    // terminals, logs and CI output.
    let shown = without_password(text);
    let url = Url::parse(text).map_err(|e| format!("mail.smtp_url `{shown}` is not a URL: {e}"))?;
    if url.scheme() != "smtp" && url.scheme() != "smtps" {
        return Err(format!(
            "mail.smtp_url must start with smtp:// (STARTTLS when offered) or smtps:// (TLS from the start), not {}://",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("mail.smtp_url `{shown}` has no host"));
    }
    if url.password().is_some() {
        return Err(format!(
            "mail.smtp_url must not contain a password: put the user in the URL and the password in {ENV_SMTP_PASSWORD}"
        ));
    }
    Ok(url)
}

/// `text` with the password of a URL's user part (`user:password@`)
/// replaced by `…`; it need not be a valid URL.
pub(super) fn without_password(text: &str) -> String {
    let start = text.find("://").map_or(0, |i| i + 3);
    let Some(at) = text[start..].rfind('@').map(|i| start + i) else {
        return text.to_owned();
    };
    match text[start..at].find(':') {
        Some(colon) => format!("{}:…{}", &text[..start + colon], &text[at..]),
        None => text.to_owned(),
    }
}
