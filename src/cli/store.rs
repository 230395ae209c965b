//! `herald store …`: the store as a whole. `copy` moves it into another,
//! empty store, such as a PostgreSQL database.

use std::io::IsTerminal as _;
use std::process::ExitCode;

use anyhow::{bail, Context as _, Result};
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::config::Config;
use crate::store::{redact, CopyEvent, Store, StoreOptions};

const COPY_ABOUT: &str = "\
Copy the store into another, empty one: the configured store (store.url, \
normally SQLite) into a PostgreSQL database, or into a new SQLite file.

Every table is copied as it is: articles and sources, readers with their \
lists, suppressions, sign-ups, the editions and the delivery ledger (what was \
sent, what is pending or in flight, attempts, Message-IDs) and the settings, \
among them the secret the links in mail are signed with. Ids stay the same, \
so an edition half sent finishes from the copy without sending anyone \
anything twice, and the unsubscribe links in digests already mailed keep \
working. The daemon's lease is not copied.

The target is created and migrated first, and must be empty: when any of \
herald's tables there holds a row, the copy names it and writes nothing. The \
rows are read from one snapshot of the store and written in one transaction; \
afterwards every table is counted on both sides, and the copy is kept only \
when the counts agree. It prints the rows of each table.

Stop `herald daemon` and the cron job that runs `herald run` before copying, \
and point store.url (or HERALD_STORE_URL) at the target afterwards. The \
original is only read, and stays as it was.";

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Copy the store into another, empty one (such as a PostgreSQL database); verified by counting every table on both sides.
    #[command(long_about = COPY_ABOUT)]
    Copy {
        /// The store to copy into: postgres://USER@HOST:PORT/DATABASE (the
        /// password from PGPASSWORD or ~/.pgpass keeps it out of the process
        /// list; one in the URL works too) or sqlite://FILE.
        #[arg(long, value_name = "URL")]
        to: String,
    },
}

/// Tables shorter than this copy without a progress bar.
const BAR_FROM_ROWS: u64 = 5_000;

pub(super) async fn store(
    config: &Config,
    source: &Store,
    action: &StoreCommand,
) -> Result<ExitCode> {
    match action {
        StoreCommand::Copy { to } => copy(config, source, to).await,
    }
}

async fn copy(config: &Config, source: &Store, to: &str) -> Result<ExitCode> {
    let (from_name, to_name) = (redact(&config.store.url), redact(to));
    if to == config.store.url {
        bail!("--to {to_name} is the configured store itself (store.url); give another store to copy into");
    }
    let target = Store::open_with(to, StoreOptions { pool_size: 2 }).await?;
    let terminal = std::io::stderr().is_terminal();
    let mut bar: Option<ProgressBar> = None;
    let mut progress = |event: CopyEvent<'_>| match event {
        CopyEvent::Table { table, rows } => {
            if let Some(done) = bar.take() {
                done.finish_and_clear();
            }
            tracing::info!("copying table {table}: {rows} row(s)");
            if terminal && rows >= BAR_FROM_ROWS {
                let b = ProgressBar::with_draw_target(Some(rows), ProgressDrawTarget::stderr());
                b.set_style(
                    ProgressStyle::with_template(
                        "{prefix:.bold} [{bar:30.cyan/blue}] {pos}/{len} rows · {per_sec} · ETA {eta}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
                );
                b.set_prefix(table.to_owned());
                bar = Some(b);
            }
        }
        CopyEvent::Copied { rows, .. } => {
            if let Some(b) = &bar {
                b.set_position(rows);
            }
        }
    };
    let copied = source.copy_into(&target, &mut progress).await;
    if let Some(done) = bar.take() {
        done.finish_and_clear();
    }
    target.close().await;
    let report =
        copied.with_context(|| format!("cannot copy the store {from_name} into {to_name}"))?;

    println!("copied the store {from_name} into {to_name}:");
    let width = report.tables.iter().map(|(t, _)| t.len()).max().unwrap_or(0);
    for (table, rows) in &report.tables {
        println!("  {table:<width$}  {rows:>10}");
    }
    println!(
        "{} rows in {} tables; every table counted on both sides, and the counts agree",
        report.rows(),
        report.tables.len()
    );
    if !report.next_ids.is_empty() {
        let ids: Vec<String> =
            report.next_ids.iter().map(|(table, id)| format!("{table} after {id}")).collect();
        println!("new ids in the copy go on from where the original's stopped: {}", ids.join(", "));
    }
    println!("next: point store.url (or HERALD_STORE_URL) at {to_name}");
    Ok(ExitCode::SUCCESS)
}
