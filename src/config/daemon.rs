//! `[daemon]`: what `herald daemon` does about editions whose time passed
//! while it was not running, how long running jobs get on SIGTERM, and how
//! long its lease on the store lasts.

use serde::{Deserialize, Serialize};

use super::problems::Check;

/// `herald daemon`.
#[derive(Debug, Clone)]
pub struct Daemon {
    pub catch_up: CatchUp,
    /// How late a missed edition may still go out (`catch_up = "once_if_late"`).
    pub max_lateness: chrono::Duration,
    /// On SIGTERM, how long running jobs get to finish.
    pub grace_secs: u64,
    /// How long the daemon's lease on the store lasts without a heartbeat.
    pub lease_secs: u64,
}

/// What a list's edition does when its time passed while no daemon ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatchUp {
    /// Compose and send it now, once, if it is less than `max_lateness` late.
    OnceIfLate,
    /// Wait for the next scheduled time.
    Skip,
    /// Compose and send it now however late.
    Always,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawDaemon {
    catch_up: String,
    max_lateness_minutes: i64,
    grace_secs: i64,
    lease_secs: i64,
}

impl Default for RawDaemon {
    fn default() -> Self {
        Self {
            catch_up: "once_if_late".into(),
            max_lateness_minutes: 360,
            grace_secs: 30,
            lease_secs: 30,
        }
    }
}

pub(super) fn check(raw: &RawDaemon, c: &mut Check) -> Daemon {
    let catch_up = match raw.catch_up.as_str() {
        "once_if_late" => CatchUp::OnceIfLate,
        "skip" => CatchUp::Skip,
        "always" => CatchUp::Always,
        other => {
            c.problem(
                c.place("daemon", None, "catch_up"),
                format!("daemon.catch_up is `{other}`; expected \"once_if_late\", \"skip\" or \"always\""),
            );
            CatchUp::OnceIfLate
        }
    };
    Daemon {
        catch_up,
        max_lateness: chrono::Duration::minutes(c.int(
            "daemon",
            "max_lateness_minutes",
            raw.max_lateness_minutes,
            // A year; longer is no use, and too long for the calendar.
            0..=525_600,
        )),
        grace_secs: c.int("daemon", "grace_secs", raw.grace_secs, 0..=86_400),
        lease_secs: c.int("daemon", "lease_secs", raw.lease_secs, 2..=86_400),
    }
}
