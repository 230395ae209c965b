//! `herald bounces`: what came back after the handoff, newest first, and
//! the counts per list, way in and kind.

use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::Result;
use chrono::{DateTime, Utc};

use crate::store::Store;

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
