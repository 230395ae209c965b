//! `herald bounces`: what came back after the handoff, newest first, and
//! the counts per list, way in and kind; `herald bounces --poll` polls the
//! bounce mailbox once.

use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::{bail, Result};
use chrono::{DateTime, Utc};

use crate::bounces::imap::Poller;
use crate::bounces::Intake;
use crate::config::Config;
use crate::store::Store;
use crate::subscribe::Secret;

/// Polls `[bounces.imap]` once and says what it did. A running daemon
/// polls by itself: then this refuses, so that two pollers never move the
/// same message.
pub(super) async fn poll(config: &Config, store: &Store, now: DateTime<Utc>) -> Result<ExitCode> {
    let Some(imap) = &config.bounces.imap else {
        bail!(
            "{} has no [bounces.imap] section: add one with url = \"imaps://user@imap.example.com/Bounces\" (the password in {}) to poll a bounce mailbox",
            config.path.display(),
            crate::config::ENV_IMAP_PASSWORD
        );
    };
    if let Some(lease) = store.lease().await?.filter(|l| l.expires_at > Utc::now()) {
        bail!(
            "{lease} polls the bounce mailbox every {}s; leave it the work, or stop it first",
            imap.every_secs
        );
    }
    let secret = Secret::resolve(store).await?;
    let intake = Intake::new(store.clone(), secret, config);
    let mut poller = Poller::new(intake, &config.bounces, imap)?;
    let polled = poller.poll(now).await?;
    println!(
        "{} on {}:{}: {}",
        imap.mailbox,
        imap.host,
        imap.port,
        polled.summary(&imap.processed_folder)
    );
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn bounces(
    store: &Store,
    limit: usize,
    days: Option<u32>,
    now: DateTime<Utc>,
) -> Result<ExitCode> {
    let since = days.map(|d| now - chrono::TimeDelta::days(i64::from(d)));
    let counts = store.bounce_counts(since).await?;
    let events = store.bounce_events(i64::try_from(limit).unwrap_or(i64::MAX)).await?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Counts{}",
        days.map_or(" (all time)".to_owned(), |d| format!(" (the last {d} days)"))
    );
    if counts.is_empty() {
        let _ = writeln!(out, "  none");
    }
    for c in &counts {
        let _ = writeln!(
            out,
            "  {:<14} {:<9} {:<11} {:<13} {}",
            c.list.as_deref().unwrap_or("(no list)"),
            c.via,
            c.kind,
            c.action,
            c.count
        );
    }
    let _ = writeln!(out, "\nLatest {} event(s), newest first", events.len());
    for e in &events {
        let _ = writeln!(
            out,
            "  {}  {:<9} {:<11} {:<13} {:<40} {:<7} {}{}",
            e.at.format("%Y-%m-%d %H:%M:%S"),
            e.via,
            e.kind,
            e.action,
            e.email.as_deref().unwrap_or("(no address)"),
            e.status.as_deref().unwrap_or("-"),
            e.list.as_deref().map(|l| format!("[{l}] ")).unwrap_or_default(),
            [e.note.as_str(), e.diagnostic.as_deref().unwrap_or("")]
                .iter()
                .filter(|s| !s.is_empty())
                .copied()
                .collect::<Vec<_>>()
                .join("; ")
                .replace(['\n', '\r'], " ")
        );
    }
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}
