//! `herald status`: the last run of each stage, the daemon, the sources,
//! the lists, the feed audience and the deliveries.

use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::Result;
use chrono::{DateTime, Utc};

use crate::config::Config;
use crate::store::Store;

pub(super) async fn status(config: &Config, store: &Store) -> Result<ExitCode> {
    let mut out = String::new();
    stages(&mut out, store).await?;
    daemon(&mut out, store).await?;
    nodes(&mut out, store, config).await?;
    sources(&mut out, store, config).await?;
    lists(&mut out, store, config).await?;
    audience(&mut out, store).await?;
    deliveries(&mut out, store).await?;
    waiting(&mut out, store).await?;
    clicks(&mut out, store, config).await?;
    bounces(&mut out, store).await?;
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}

fn when(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// Each stage's last run.
async fn stages(out: &mut String, store: &Store) -> Result<()> {
    let _ = writeln!(out, "Stages");
    let runs = store.stage_runs().await?;
    for stage in ["collect", "publish", "compose", "deliver"] {
        match runs.iter().find(|r| r.stage == stage) {
            Some(r) => {
                let _ = writeln!(
                    out,
                    "  {stage:<8} {}  {:<6} {}",
                    when(r.finished_at),
                    if r.ok { "ok" } else { "FAILED" },
                    r.summary
                );
            }
            None => {
                let _ = writeln!(out, "  {stage:<8} never run");
            }
        }
    }
    Ok(())
}

/// The daemon holding the store, if one runs.
async fn daemon(out: &mut String, store: &Store) -> Result<()> {
    let _ = writeln!(out, "\nDaemon");
    match store.lease().await? {
        Some(lease) if lease.expires_at > Utc::now() => {
            let _ = writeln!(out, "  {lease}");
        }
        Some(lease) => {
            let _ = writeln!(
                out,
                "  none running; the last was {lease}, and it stopped without a word"
            );
        }
        None => {
            let _ = writeln!(out, "  none running");
        }
    }
    Ok(())
}

/// The herald processes working on the store: which leads, which are
/// alive, and the delivery rows each holds.
async fn nodes(out: &mut String, store: &Store, config: &Config) -> Result<()> {
    let nodes = store.nodes().await?;
    if nodes.is_empty() {
        return Ok(());
    }
    let now = Utc::now();
    let lease = store.lease().await?.filter(|l| l.expires_at > now);
    let silent = chrono::Duration::seconds(i64::try_from(config.daemon.lease_secs).unwrap_or(30));
    let _ = writeln!(out, "\nNodes");
    for n in &nodes {
        let leads = lease.as_ref().is_some_and(|l| l.host == n.host && l.pid == n.pid);
        let age = (now - n.heartbeat_at).num_seconds().max(0);
        let alive = if now - n.heartbeat_at > silent {
            format!("silent for {age}s: gone, its rows come back when their claims expire")
        } else {
            format!("last heartbeat {age}s ago")
        };
        let _ = writeln!(
            out,
            "  {} pid {} ({}{}), {alive}, holding {} row(s)",
            n.host,
            n.pid,
            n.role,
            if leads { ", leads" } else { "" },
            n.holding
        );
    }
    Ok(())
}

/// The batches of readers of lists sent at each reader's hour that wait
/// for it.
async fn waiting(out: &mut String, store: &Store) -> Result<()> {
    let batches = store.waiting_batches().await?;
    if batches.is_empty() {
        return Ok(());
    }
    let _ = writeln!(out, "\nReaders waiting for their hour (lists with local_time)");
    for (list, date, at, readers) in batches {
        let _ = writeln!(out, "  {list:<12} {date}  {readers} reader(s) at {}", when(at));
    }
    Ok(())
}

/// The clicks on each article of the latest editions of the lists that
/// count them (`track_clicks`); nothing when none does.
async fn clicks(out: &mut String, store: &Store, config: &Config) -> Result<()> {
    let lists: Vec<&str> =
        config.lists.iter().filter(|l| l.track_clicks).map(|l| l.slug.as_str()).collect();
    if lists.is_empty() {
        return Ok(());
    }
    let _ = writeln!(out, "\nClicks (the latest 3 editions of each list that counts them)");
    let editions = store.edition_clicks(&lists, 3).await?;
    if editions.is_empty() {
        let _ = writeln!(out, "  no editions yet");
    }
    for e in editions {
        let total: i64 = e.articles.iter().map(|(_, n)| n).sum();
        let individual = config.list(&e.list).is_some_and(|l| l.individual);
        let readers = if individual { format!(", {} reader(s)", e.readers) } else { String::new() };
        let _ = writeln!(out, "  {} {}: {total} click(s){readers}", e.list, e.date);
        for (title, n) in &e.articles {
            let _ = writeln!(out, "    {n:>6}  {title}");
        }
    }
    Ok(())
}

/// What came back in the last 30 days, per list and kind, with what was
/// done about it.
async fn bounces(out: &mut String, store: &Store) -> Result<()> {
    let since = Utc::now() - chrono::TimeDelta::days(30);
    let counts = store.bounce_counts(Some(since)).await?;
    let _ = writeln!(out, "\nBounces and complaints (30 days; `herald bounces` lists them)");
    if counts.is_empty() {
        let _ = writeln!(out, "  none");
    }
    // Summed over the ways in: list, kind, then each action's count.
    let mut rows: std::collections::BTreeMap<
        (String, String),
        std::collections::BTreeMap<String, i64>,
    > = Default::default();
    for c in counts {
        *rows
            .entry((c.list.unwrap_or_else(|| "(no list)".into()), c.kind))
            .or_default()
            .entry(c.action)
            .or_default() += c.count;
    }
    for ((list, kind), actions) in rows {
        let actions: Vec<String> = actions.iter().map(|(a, n)| format!("{n} {a}")).collect();
        let _ = writeln!(out, "  {list:<12} {kind:<11} {}", actions.join(", "));
    }
    Ok(())
}

/// Each source's health.
async fn sources(out: &mut String, store: &Store, config: &Config) -> Result<()> {
    let _ = writeln!(out, "\nSources");
    let states = store.source_states().await?;
    for source in &config.sources {
        match states.iter().find(|s| s.name == source.name.as_str()) {
            Some(s) => {
                let mut health = match &s.last_error {
                    Some(e) => {
                        format!("FAILING ({} time(s) in a row): {e}", s.consecutive_failures)
                    }
                    None => "ok".into(),
                };
                if let Some(next) = s.next_try {
                    health.push_str(&format!("; next try after {}", when(next)));
                }
                if let Some(moved) = &s.moved_to {
                    health.push_str(&format!("; moved permanently to {moved}"));
                }
                if let Some(gone) = &s.gone_since {
                    health.push_str(&format!("; disabled: 410 Gone since {gone}"));
                }
                let _ = writeln!(
                    out,
                    "  {:<12} {:<4} {} article(s), last success {}  {health}",
                    s.name,
                    s.kind,
                    s.articles,
                    s.last_success.map_or("never".into(), when),
                );
            }
            None => {
                let _ = writeln!(out, "  {:<12} not collected yet", source.name);
            }
        }
    }
    Ok(())
}

/// Readers and the last edition per list.
async fn lists(out: &mut String, store: &Store, config: &Config) -> Result<()> {
    let _ = writeln!(out, "\nLists");
    for list in &config.lists {
        let audience = store.audience(list.slug.as_str()).await?;
        let last = store.last_edition(list.slug.as_str()).await?;
        let _ = writeln!(
            out,
            "  {:<12} {audience} confirmed reader(s); last edition {}",
            list.slug,
            last.map_or("none".into(), |e| e.edition_date.to_string())
        );
    }
    Ok(())
}

/// The feed audience `herald serve` counted.
async fn audience(out: &mut String, store: &Store) -> Result<()> {
    let audience = store.feed_audience(Utc::now()).await?;
    let _ = writeln!(out, "\nFeed audience (from `herald serve`)");
    if audience.aggregators.is_empty() && audience.pollers_today == 0 {
        let _ = writeln!(out, "  no feed reader seen yet");
    } else {
        let _ = writeln!(out, "  about {} reader(s)", audience.estimate());
        for (name, n) in &audience.aggregators {
            let _ = writeln!(out, "  {name}: {n} subscriber(s)");
        }
        let _ = writeln!(out, "  {} other poller(s) on the latest day", audience.pollers_today);
    }
    Ok(())
}

/// Delivery counts of the newest editions.
async fn deliveries(out: &mut String, store: &Store) -> Result<()> {
    let _ = writeln!(out, "\nDeliveries (newest editions)");
    let counts = store.delivery_counts(10).await?;
    if counts.is_empty() {
        let _ = writeln!(out, "  none yet");
    }
    for c in counts {
        let _ = write!(
            out,
            "  {:<12} {}  {} sent, {} pending, {} failed, {} skipped",
            c.list,
            c.edition_date,
            c.sent,
            c.pending + c.sending,
            c.failed,
            c.skipped
        );
        if let Some(next) = c.next_attempt_at {
            let _ = write!(out, " (next retry {next})");
        }
        let _ = writeln!(out);
    }
    Ok(())
}
