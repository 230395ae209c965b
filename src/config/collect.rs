//! `[collect]`: how upstream feeds are fetched (how many at once, timeouts,
//! body and redirect limits) and when `herald daemon` collects.

use serde::{Deserialize, Serialize};

use super::problems::Check;
use crate::types::Schedule;

/// How upstream feeds are fetched.
#[derive(Debug, Clone)]
pub struct Collect {
    /// Sources fetched at once.
    pub concurrency: usize,
    pub connect_timeout_secs: u64,
    pub timeout_secs: u64,
    /// Largest body accepted, counted after decompression.
    pub max_body_bytes: u64,
    pub max_redirects: usize,
    /// Failures in a row before a failing source is logged as an error.
    pub error_after: i64,
    /// When `herald daemon` collects (then publishes when anything changed).
    pub schedule: Schedule,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawCollect {
    concurrency: i64,
    connect_timeout_secs: i64,
    timeout_secs: i64,
    max_body_bytes: i64,
    max_redirects: i64,
    error_after: i64,
    schedule: String,
}

const DEFAULT_SCHEDULE: &str = "0 */15 * * * *";

impl Default for RawCollect {
    fn default() -> Self {
        Self {
            concurrency: 8,
            connect_timeout_secs: 10,
            timeout_secs: 30,
            max_body_bytes: 10 * 1024 * 1024,
            max_redirects: 5,
            error_after: 3,
            schedule: DEFAULT_SCHEDULE.into(),
        }
    }
}

pub(super) fn check(raw: &RawCollect, c: &mut Check) -> Collect {
    let concurrency = c.int("collect", "concurrency", raw.concurrency, 1..=256);
    let connect_timeout_secs =
        c.int("collect", "connect_timeout_secs", raw.connect_timeout_secs, 1..=600);
    let timeout_secs = c.int("collect", "timeout_secs", raw.timeout_secs, 1..=3600);
    let max_body_bytes = c.int("collect", "max_body_bytes", raw.max_body_bytes, 1024..=1 << 32);
    let max_redirects = c.int("collect", "max_redirects", raw.max_redirects, 0..=20);
    let error_after = c.int("collect", "error_after", raw.error_after, 1..=1000);
    let schedule = Schedule::parse(&raw.schedule).unwrap_or_else(|e| {
        c.problem(c.place("collect", None, "schedule"), format!("collect.schedule: {e}"));
        Schedule::parse(DEFAULT_SCHEDULE).expect("a constant schedule parses")
    });
    Collect {
        concurrency,
        connect_timeout_secs,
        timeout_secs,
        max_body_bytes,
        max_redirects,
        error_after,
        schedule,
    }
}
