//! `[web]`: `herald serve` and the daemon's web side. The listening
//! addresses (public, and the admin one for health and metrics), caching,
//! the sign-up form's limits, and the connection timeouts and cap.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::problems::Check;

#[derive(Debug, Clone)]
pub struct Web {
    pub listen: SocketAddr,
    /// Cache-Control max-age for served files, in seconds.
    pub cache_max_age: u64,
    /// How long a confirmation link works, in days.
    pub confirm_expiry_days: u64,
    /// Sign-up form posts allowed per client address per minute.
    pub subscribe_per_ip_per_minute: u32,
    /// Sign-up form posts allowed per email address per hour.
    pub subscribe_per_address_per_hour: u32,
    /// At most one confirmation mail per address in this many minutes.
    pub confirm_mail_interval_minutes: u64,
    /// Take the client's address from the last X-Forwarded-For entry (set it
    /// only behind a reverse proxy that writes that header).
    pub behind_proxy: bool,
    /// How long a client has to send a request's headers, from its first
    /// byte (or from connecting, for a connection's first request).
    pub header_timeout: Duration,
    /// How long a kept-alive connection may sit with no request.
    pub idle_timeout: Duration,
    /// Connections served at once; more wait until one closes.
    pub max_connections: usize,
    /// Memory the file cache may hold (files and their compressed copies).
    pub cache_bytes: u64,
    /// Where `/healthz` and `/metrics` are served instead of the public
    /// listener.
    pub admin_listen: Option<SocketAddr>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawWeb {
    listen: String,
    cache_max_age: i64,
    confirm_expiry_days: i64,
    subscribe_per_ip_per_minute: i64,
    subscribe_per_address_per_hour: i64,
    confirm_mail_interval_minutes: i64,
    behind_proxy: bool,
    header_timeout_secs: i64,
    idle_timeout_secs: i64,
    max_connections: i64,
    cache_bytes: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    admin_listen: Option<String>,
}

impl Default for RawWeb {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            cache_max_age: 300,
            confirm_expiry_days: 7,
            subscribe_per_ip_per_minute: 10,
            subscribe_per_address_per_hour: 5,
            confirm_mail_interval_minutes: 60,
            behind_proxy: false,
            header_timeout_secs: 10,
            idle_timeout_secs: 60,
            max_connections: 512,
            cache_bytes: 64 * 1024 * 1024,
            admin_listen: None,
        }
    }
}

pub(super) fn check(raw: &RawWeb, c: &mut Check) -> Web {
    let listen = raw.listen.parse::<SocketAddr>().unwrap_or_else(|_| {
        c.problem(
            c.place("web", None, "listen"),
            format!(
                "web.listen is `{}`; expected an address and port like \"127.0.0.1:8080\"",
                raw.listen
            ),
        );
        SocketAddr::from(([127, 0, 0, 1], 8080))
    });
    let admin_listen = admin_listen(raw, listen, c);
    // Durations are bounded: a date that far ahead is past the calendar.
    let confirm_expiry_days = c.int("web", "confirm_expiry_days", raw.confirm_expiry_days, 1..=365);
    let confirm_mail_interval_minutes = c.int(
        "web",
        "confirm_mail_interval_minutes",
        raw.confirm_mail_interval_minutes,
        0..=525_600,
    );
    let header_timeout = Duration::from_secs(c.int(
        "web",
        "header_timeout_secs",
        raw.header_timeout_secs,
        1..=3_600,
    ));
    let idle_timeout =
        Duration::from_secs(c.int("web", "idle_timeout_secs", raw.idle_timeout_secs, 1..=86_400));
    // A limit past what a u32 or usize holds is no limit in practice: it is
    // taken as the largest value, not refused.
    let mut count =
        |key: &str, value: i64, least: i64| -> u64 { c.int("web", key, value, least..) };
    Web {
        listen,
        confirm_expiry_days,
        confirm_mail_interval_minutes,
        header_timeout,
        idle_timeout,
        cache_max_age: count("cache_max_age", raw.cache_max_age, 0),
        subscribe_per_ip_per_minute: u32::try_from(count(
            "subscribe_per_ip_per_minute",
            raw.subscribe_per_ip_per_minute,
            1,
        ))
        .unwrap_or(u32::MAX),
        subscribe_per_address_per_hour: u32::try_from(count(
            "subscribe_per_address_per_hour",
            raw.subscribe_per_address_per_hour,
            1,
        ))
        .unwrap_or(u32::MAX),
        behind_proxy: raw.behind_proxy,
        max_connections: usize::try_from(count("max_connections", raw.max_connections, 1))
            .unwrap_or(usize::MAX),
        cache_bytes: count("cache_bytes", raw.cache_bytes, 0),
        admin_listen,
    }
}

/// `web.admin_listen`, which must be an address of its own.
fn admin_listen(raw: &RawWeb, listen: SocketAddr, c: &mut Check) -> Option<SocketAddr> {
    let text = raw.admin_listen.as_deref().filter(|a| !a.trim().is_empty())?;
    match text.trim().parse::<SocketAddr>() {
        Ok(addr) if addr == listen => {
            c.problem(
                c.place("web", None, "admin_listen"),
                format!("web.admin_listen is the same address as web.listen ({addr}); give health and metrics their own port, like \"127.0.0.1:9090\""),
            );
            None
        }
        Ok(addr) => Some(addr),
        Err(_) => {
            c.problem(
                c.place("web", None, "admin_listen"),
                format!("web.admin_listen is `{text}`; expected an address and port like \"127.0.0.1:9090\""),
            );
            None
        }
    }
}
