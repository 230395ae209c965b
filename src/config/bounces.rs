//! `[bounces]`: what herald does with the reports that come back after the
//! handoff (bounces, complaints), and where they come in: the daemon's
//! inbound SMTP listener. The envelope sender that carries each reader's
//! VERP token is `mail.bounce_address`. `[bounces.imap]`, the bounce
//! mailbox the daemon polls, has its own file (`imap.rs`).

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::imap::{Imap, RawImap};
use super::problems::Check;
use crate::email::EmailAddress;

#[derive(Debug, Clone)]
pub struct Bounces {
    /// Hard bounces after which an address is suppressed.
    pub hard_after: u32,
    /// Soft bounces within `soft_window_days` after which an address is
    /// suppressed.
    pub soft_after: u32,
    pub soft_window_days: u32,
    /// The daemon's inbound SMTP listener for delivery reports, when set.
    pub listen: Option<SocketAddr>,
    /// The largest message the listener takes, in bytes.
    pub max_message_bytes: usize,
    /// Connections the listener serves at once; one more is answered 421
    /// and closed.
    pub max_connections: usize,
    /// How long one SMTP session may last, and how long the listener waits
    /// for each line.
    pub timeout_secs: u64,
    /// `[bounces.imap]`: the bounce mailbox polled over IMAP, when set.
    pub imap: Option<Imap>,
    /// `[bounces.webhooks]`: the providers' webhooks on the web server.
    pub webhooks: super::webhooks::Webhooks,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawBounces {
    /// Defaults to `mail.suppress_after`, this key's older name.
    #[serde(skip_serializing_if = "Option::is_none")]
    hard_after: Option<i64>,
    soft_after: i64,
    soft_window_days: i64,
    listen: String,
    max_message_kb: i64,
    max_connections: i64,
    timeout_secs: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    imap: Option<RawImap>,
    webhooks: super::webhooks::RawWebhooks,
}

impl Default for RawBounces {
    fn default() -> Self {
        Self {
            hard_after: None,
            soft_after: 5,
            soft_window_days: 14,
            listen: String::new(),
            max_message_kb: 20 * 1024,
            max_connections: 64,
            timeout_secs: 120,
            imap: None,
            webhooks: super::webhooks::RawWebhooks::default(),
        }
    }
}

/// `suppress_after` is `mail.suppress_after` and `bounce_address` is
/// `mail.bounce_address`, both already checked.
pub(super) fn check(
    raw: &RawBounces,
    suppress_after: u32,
    bounce_address: Option<&EmailAddress>,
    c: &mut Check,
) -> Bounces {
    let hard_after = match raw.hard_after {
        Some(n) => c.int("bounces", "hard_after", n, 1..=100),
        None => suppress_after,
    };
    let listen = match raw.listen.trim() {
        "" => None,
        text => match text.parse::<SocketAddr>() {
            // The listener takes mail for the bounce address's domain only;
            // without one it would refuse everything.
            Ok(addr) if bounce_address.is_none() => {
                c.problem(
                    c.place("bounces", None, "listen"),
                    format!("bounces.listen is `{text}`, but mail.bounce_address is not set: the listener takes reports for the bounce address's domain only; set mail.bounce_address (e.g. \"bounces@news.example.com\") or remove bounces.listen"),
                );
                Some(addr)
            }
            Ok(addr) => Some(addr),
            Err(_) => {
                c.problem(
                    c.place("bounces", None, "listen"),
                    format!("bounces.listen is `{text}`; expected an address and port such as \"0.0.0.0:25\" or \"127.0.0.1:2525\""),
                );
                None
            }
        },
    };
    let max_message_kb: usize =
        c.int("bounces", "max_message_kb", raw.max_message_kb, 64..=1024 * 1024);
    Bounces {
        hard_after,
        soft_after: c.int("bounces", "soft_after", raw.soft_after, 1..=1000),
        soft_window_days: c.int("bounces", "soft_window_days", raw.soft_window_days, 1..=3650),
        listen,
        max_message_bytes: max_message_kb * 1024,
        max_connections: c.int("bounces", "max_connections", raw.max_connections, 1..=10_000),
        timeout_secs: c.int("bounces", "timeout_secs", raw.timeout_secs, 1..=3600),
        imap: raw.imap.as_ref().and_then(|imap| super::imap::check(imap, c)),
        webhooks: super::webhooks::check(&raw.webhooks, c),
    }
}
