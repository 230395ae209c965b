//! The store's claim-and-record path alone, without SMTP: K claimers, each
//! a node of its own with its own connection pool, loop "claim a batch of an
//! edition's due rows, record them all as sent" until the edition's rows are
//! all recorded. Prints rows per second. Driven by `bench/cluster.py`.
//!
//!     cargo bench --bench claims -- --url URL --seed 200000
//!     cargo bench --bench claims -- --url URL --compose
//!     cargo bench --bench claims -- --url URL --rows 200000 --claimers 4
//!
//! `--seed N` makes sure the list `bench` has N confirmed readers (the
//! script copies the seeded store for each measurement); `--compose` makes a
//! new edition of that list. A measurement takes the list's last edition,
//! times the claimers from the first claim to the last record, and checks
//! that every row was handed to exactly one claimer and is recorded `sent`.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use chrono::{NaiveDate, TimeDelta, Utc};
use clap::Parser;
use herald::store::{
    Claimant, DeliveryOutcome, Edition, MembershipStatus, NewEdition, Origin, StoreOptions,
};
use herald::{EmailAddress, Store};

const LIST: &str = "bench";

#[derive(Parser)]
struct Args {
    /// The store: sqlite://FILE or postgres://…
    #[arg(long)]
    url: Option<String>,
    /// Make sure the list has this many readers, then stop.
    #[arg(long)]
    seed: Option<usize>,
    /// Compose a new edition of the list, then stop.
    #[arg(long)]
    compose: bool,
    /// The readers of the measured edition (the list must hold them).
    #[arg(long, default_value_t = 200_000)]
    rows: usize,
    /// Concurrent claimers, each its own node and pool.
    #[arg(long, default_value_t = 1)]
    claimers: usize,
    /// Rows per claim: `herald deliver` claims 16 per connection, 128 with
    /// the default 8 connections.
    #[arg(long, default_value_t = 128)]
    batch: usize,
    /// Rows per record call (the whole batch by default).
    #[arg(long)]
    group: Option<usize>,
    /// Passed by `cargo bench`.
    #[arg(long, hide = true)]
    bench: bool,
}

/// What one claimer did.
#[derive(Default)]
struct Work {
    claimed: Vec<i64>,
    claims: usize,
    records: usize,
    claiming: Duration,
    recording: Duration,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let Some(url) = args.url.clone() else {
        println!("nothing to measure without --url (see bench/cluster.py)");
        return Ok(());
    };
    let store = Store::open(&url).await?;
    if let Some(n) = args.seed {
        seed(&store, n).await?;
        store.close().await;
        return Ok(());
    }
    if args.compose {
        compose(&store).await?;
        store.close().await;
        return Ok(());
    }
    let edition = store.last_edition(LIST).await?.context("no edition: compose one first")?;
    let due = store.due_count(edition.id, edition.composed_at, Utc::now()).await?;
    if edition.done || usize::try_from(due)? != args.rows {
        bail!("the last edition has {due} rows due, not {}", args.rows);
    }

    // Each claimer opens its own store, as a node on another host would.
    let mut stores = Vec::with_capacity(args.claimers);
    for _ in 0..args.claimers {
        stores.push(Store::open_with(&url, StoreOptions { pool_size: 2 }).await?);
    }
    let start = Arc::new(tokio::sync::Barrier::new(args.claimers + 1));
    let mut tasks = Vec::with_capacity(args.claimers);
    for (i, node_store) in stores.into_iter().enumerate() {
        let (edition, start) = (edition.clone(), Arc::clone(&start));
        let (batch, group) = (args.batch, args.group.unwrap_or(args.batch));
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            let work =
                claim_all(&node_store, &edition, &format!("bench-node-{i}"), batch, group).await;
            (work, node_store)
        }));
    }
    start.wait().await;
    let began = Instant::now();
    let mut works = Vec::with_capacity(tasks.len());
    let mut stores = Vec::with_capacity(tasks.len());
    for task in tasks {
        let (work, node_store) = task.await?;
        works.push(work?);
        stores.push(node_store);
    }
    let elapsed = began.elapsed().as_secs_f64();
    for node_store in stores {
        node_store.close().await;
    }

    // Every row went to exactly one claimer, and every row is recorded.
    let mut seen = HashSet::with_capacity(args.rows);
    for work in &works {
        for id in &work.claimed {
            if !seen.insert(*id) {
                bail!("row of subscriber {id} was handed to two claimers");
            }
        }
    }
    if seen.len() != args.rows {
        bail!("{} rows claimed, {} expected", seen.len(), args.rows);
    }
    let counts = store.delivery_counts(100).await?;
    let mine = counts
        .iter()
        .find(|c| c.edition_date == edition.edition_date.to_string() && c.list == LIST)
        .context("the edition's counts")?;
    if usize::try_from(mine.sent)? != args.rows || mine.pending + mine.sending != 0 {
        bail!(
            "after the run: {} sent, {} pending, {} sending",
            mine.sent,
            mine.pending,
            mine.sending
        );
    }
    if !store.finish_edition_if_done(edition.id).await? {
        bail!("the edition is not done");
    }
    store.close().await;

    let claims: usize = works.iter().map(|w| w.claims).sum();
    let records: usize = works.iter().map(|w| w.records).sum();
    let claiming: f64 = works.iter().map(|w| w.claiming.as_secs_f64()).sum();
    let recording: f64 = works.iter().map(|w| w.recording.as_secs_f64()).sum();
    let shares: Vec<String> = works.iter().map(|w| w.claimed.len().to_string()).collect();
    println!(
        "claimers {} | rows {} | {:.2} s | {:.0} rows/s | {} claims of {} ({:.2} ms each) | {} records ({:.2} ms each) | shares {}",
        args.claimers,
        args.rows,
        elapsed,
        args.rows as f64 / elapsed,
        claims,
        args.batch,
        claiming * 1000.0 / claims.max(1) as f64,
        records,
        recording * 1000.0 / records.max(1) as f64,
        shares.join("/"),
    );
    Ok(())
}

/// Loops claim → record until nothing is due.
async fn claim_all(
    store: &Store,
    edition: &Edition,
    node: &str,
    batch: usize,
    group: usize,
) -> Result<Work> {
    let mut work = Work::default();
    let now = edition.composed_at;
    loop {
        let wall = Utc::now();
        let claimant = Claimant { node, wall, until: wall + TimeDelta::minutes(10) };
        let t = Instant::now();
        let claimed = store.claim_deliveries(edition, now, batch, &claimant).await?;
        work.claiming += t.elapsed();
        work.claims += 1;
        if claimed.is_empty() {
            return Ok(work);
        }
        let sent_at = Utc::now();
        let outcomes: Vec<(i64, DeliveryOutcome<'_>)> = claimed
            .iter()
            .map(|c| (c.subscriber, DeliveryOutcome::Sent { reply: "250 2.0.0 Ok", at: sent_at }))
            .collect();
        let t = Instant::now();
        for chunk in outcomes.chunks(group.max(1)) {
            store.record_deliveries(edition.id, node, chunk).await?;
            work.records += 1;
        }
        work.recording += t.elapsed();
        work.claimed.extend(claimed.iter().map(|c| c.subscriber));
    }
}

/// Adds confirmed readers to the list until it has `n`.
async fn seed(store: &Store, n: usize) -> Result<()> {
    let now = Utc::now();
    let have = usize::try_from(store.audience(LIST).await?)?;
    let started = Instant::now();
    for from in (have..n).step_by(10_000) {
        let rows: Vec<(EmailAddress, Option<String>)> = (from..(from + 10_000).min(n))
            .map(|i| {
                let email = EmailAddress::parse(&format!("reader{i}@example.com"))?;
                Ok((email, Some(format!("Reader {i}"))))
            })
            .collect::<Result<_>>()?;
        store.add_members(LIST, &rows, Origin::Csv, MembershipStatus::Confirmed, now).await?;
    }
    println!(
        "list `{LIST}`: {n} readers ({:.1} s to add {})",
        started.elapsed().as_secs_f64(),
        n - have
    );
    Ok(())
}

/// A new edition of the list, dated after every edition it has.
async fn compose(store: &Store) -> Result<Edition> {
    let first = NaiveDate::from_ymd_opt(2026, 12, 1).context("date")?;
    let date = match store.last_edition(LIST).await? {
        Some(last) => last.edition_date.succ_opt().context("date")?,
        None => first,
    };
    let new = NewEdition {
        list: LIST.into(),
        edition_date: date,
        subject: "bench".into(),
        html: "<p>bench</p>".into(),
        text: "bench".into(),
        article_ids: vec![],
        considered: vec![],
        composed_at: Utc::now(),
    };
    let (edition, rows) =
        store.create_edition(&new, "example.com").await?.context("a new edition")?;
    println!("edition {} of list `{LIST}`: {rows} rows", edition.edition_date);
    Ok(edition)
}
