//! The store: SQLite through sqlx, in WAL mode, with the migrations in
//! `migrations/` embedded in the binary and applied on open.
//!
//! This is the only module that speaks SQL. The SQL is kept portable (text
//! timestamps, `INSERT … ON CONFLICT`, no SQLite-only functions) so another
//! engine can serve several herald processes later.

mod articles;
mod audience;
mod daemon;
mod editions;
mod retractions;
mod runs;
mod signups;
mod state;
mod subscribers;

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

pub use articles::Upsert;
pub use audience::FeedAudience;
pub use daemon::Lease;
pub use editions::{
    ClaimedDelivery, DeliveryCounts, DeliveryOutcome, DeliveryRow, Edition, NewEdition,
};
pub use retractions::{ArticleEntry, Marked, Withdrawal, Withdrawn};
pub use runs::{Recorded, SourceOutcome, SourceState, SourceUpdate, StageRun};
pub use signups::{Confirmed, Signup, SignupRecord, TokenKey};
pub use subscribers::{AddOutcome, ImportCounts, Member, MembershipStatus, Origin};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the store at {url}: {cause}")]
    Open { url: String, cause: sqlx::Error },
    #[error("cannot migrate the store at {url}: {cause}")]
    Migrate { url: String, cause: sqlx::migrate::MigrateError },
    /// A query failed; `op` says what the store was doing, with the list,
    /// edition or subscriber it was about.
    #[error("store: {} failed: {cause}", op.as_deref().unwrap_or("a query"))]
    Query { op: Option<String>, cause: sqlx::Error },
    #[error("the store holds a value herald cannot read ({0}); was it edited by hand?")]
    Corrupt(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

// By hand, not `#[from]`: the message says the cause, so it is not also
// exposed as the source (it would be printed twice).
impl From<sqlx::Error> for StoreError {
    fn from(cause: sqlx::Error) -> Self {
        StoreError::Query { op: None, cause }
    }
}

/// Names the operation a failed query was part of. Each public store call
/// wraps its body with it; the innermost name stays.
trait During<T> {
    fn during(self, op: impl FnOnce() -> String) -> Result<T>;
}

impl<T> During<T> for Result<T> {
    fn during(self, op: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| match e {
            StoreError::Query { op: None, cause } => StoreError::Query { op: Some(op()), cause },
            other => other,
        })
    }
}

/// A handle on the store; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pool: SqlitePool,
}

impl Store {
    /// Opens (creating if missing) and migrates the store.
    pub async fn open(url: &str) -> Result<Self> {
        let open_err = |cause| StoreError::Open { url: url.to_owned(), cause };
        let options = SqliteConnectOptions::from_str(url)
            .map_err(open_err)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // WAL with NORMAL is durable across process crashes (kill -9);
            // only an OS crash can lose the last commits.
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            // 32 MiB of page cache a connection (SQLite's default is 2 MiB):
            // a collect's batch of thousands of articles then stays in memory
            // until its commit instead of spilling to the WAL and being read
            // back.
            .pragma("cache_size", "-32768")
            .busy_timeout(Duration::from_secs(10));
        migrate(url, options.clone()).await?;
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(open_err)?;
        Ok(Self { pool })
    }

    /// A transaction that takes SQLite's write lock at once (`BEGIN
    /// IMMEDIATE`). A transaction that reads first and writes later would
    /// fail with "database is locked" (SQLITE_BUSY_SNAPSHOT) whenever another
    /// connection wrote in between; waiting for the lock up front avoids it.
    pub(crate) async fn write_tx(&self) -> Result<sqlx::Transaction<'_, sqlx::Sqlite>> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Applies the migrations on a connection of its own with foreign keys off,
/// as SQLite wants for changes that rebuild a table (foreign keys cannot be
/// switched inside the transaction each migration runs in), then checks that
/// every reference still holds.
async fn migrate(url: &str, options: SqliteConnectOptions) -> Result<()> {
    use sqlx::{ConnectOptions, Connection};
    let mut conn = options
        .foreign_keys(false)
        .connect()
        .await
        .map_err(|cause| StoreError::Open { url: url.to_owned(), cause })?;
    let migrated = sqlx::migrate!("./migrations")
        .run(&mut conn)
        .await
        .map_err(|cause| StoreError::Migrate { url: url.to_owned(), cause });
    let broken: Vec<(String, i64, String)> = match migrated {
        Ok(()) => {
            sqlx::query_as("SELECT \"table\", rowid, parent FROM pragma_foreign_key_check")
                .fetch_all(&mut conn)
                .await?
        }
        Err(e) => {
            let _ = conn.close().await;
            return Err(e);
        }
    };
    let _ = conn.close().await;
    match broken.first() {
        None => Ok(()),
        Some((table, rowid, parent)) => Err(StoreError::Corrupt(format!(
            "after migrating, row {rowid} of {table} refers to a missing row of {parent} ({} such rows)",
            broken.len()
        ))),
    }
}

/// Makes a store as an older herald left it: migrated up to `version` only,
/// then `sql` run on it. For the tests of the migrations that come after.
#[doc(hidden)]
pub async fn create_at_version(url: &str, version: i64, sql: &[&str]) -> Result<()> {
    use sqlx::{ConnectOptions, Connection};
    let open = |cause| StoreError::Open { url: url.to_owned(), cause };
    let mut conn = SqliteConnectOptions::from_str(url)
        .map_err(open)?
        .create_if_missing(true)
        .connect()
        .await
        .map_err(open)?;
    let all = sqlx::migrate!("./migrations");
    let older: Vec<_> = all.migrations.iter().filter(|m| m.version <= version).cloned().collect();
    sqlx::migrate::Migrator { migrations: older.into(), ..sqlx::migrate!("./migrations") }
        .run(&mut conn)
        .await
        .map_err(|cause| StoreError::Migrate { url: url.to_owned(), cause })?;
    for statement in sql {
        sqlx::query(statement).execute(&mut conn).await?;
    }
    let _ = conn.close().await;
    Ok(())
}

/// A timestamp as stored: fixed-width RFC 3339 in UTC, so text order is time order.
pub(crate) fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// A time as the store writes it, for comparisons with stored text.
pub fn ts_text(t: DateTime<Utc>) -> String {
    ts(t)
}

pub(crate) fn parse_ts(text: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| StoreError::Corrupt(format!("timestamp `{text}`")))
}

pub(crate) fn parse_opt_ts(text: Option<String>) -> Result<Option<DateTime<Utc>>> {
    text.as_deref().map(parse_ts).transpose()
}

#[cfg(test)]
pub(crate) async fn test_store() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("test.db").display());
    (Store::open(&url).await.unwrap(), dir)
}

/// An article of the source `blog` for the store's tests.
#[cfg(test)]
pub(crate) fn test_article(guid: &str, body: &str) -> crate::article::Article {
    crate::article::Article {
        source: "blog".into(),
        guid: guid.into(),
        url: format!("https://example.com/blog/{guid}/"),
        title: guid.into(),
        author: None,
        published: "2026-11-20T08:00:00Z".parse().unwrap(),
        updated: None,
        summary: None,
        content_html: body.into(),
        tags: vec!["x".into()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failed_query_says_what_the_store_was_doing() {
        let (store, _dir) = test_store().await;
        store.close().await;
        let e = store.audience("daily").await.unwrap_err().to_string();
        assert!(e.starts_with("store: counting the readers of list `daily` failed: "), "{e}");
        let e = store.edition_by_id(12).await.unwrap_err().to_string();
        assert!(e.starts_with("store: reading edition 12 failed: "), "{e}");
    }
}
