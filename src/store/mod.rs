//! The store: SQLite (the embedded default, one file in WAL mode) or
//! PostgreSQL (several herald nodes sharing one database), both through
//! sqlx's `Any` driver, with the migrations of each backend embedded in the
//! binary and applied on open.
//!
//! This is the only module that speaks SQL, and the only one that knows which
//! backend is behind it. The SQL is written once for both wherever it can be:
//! `$1` placeholders (SQLite reads them too), text timestamps, `INSERT … ON
//! CONFLICT`, `RETURNING`, integers for flags. Where the two differ, the
//! `Backend` says which text to use (`Backend::pick`).

mod articles;
mod audience;
mod bounces;
mod clicks;
pub mod copy;
mod daemon;
mod editions;
mod nodes;
mod retractions;
mod runs;
mod signups;
mod state;
mod subscribers;

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{AnyPool, Executor};

pub use articles::{Unconsidered, Upsert};
pub use audience::FeedAudience;
pub use bounces::{
    BounceAction, BounceCount, BounceEvent, BouncePolicy, BounceRecorded, NewBounce,
};
pub use clicks::{ClickTarget, EditionClicks};
pub use copy::{CopyError, CopyEvent, CopyReport};
pub use daemon::Lease;
pub use editions::{
    Claimant, ClaimedDelivery, DeliveryCounts, DeliveryOutcome, DeliveryRow, Edition, Hold,
    NewEdition,
};
pub use nodes::NodeRecord;
pub use retractions::{ArticleEntry, Marked, Withdrawal, Withdrawn};
pub use runs::{Recorded, SourceOutcome, SourceState, SourceUpdate, StageRun};
pub use signups::{Confirmed, ManageMail, Signup, SignupRecord, TokenKey};
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

/// Which database is behind the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// The backend a store URL names, if herald speaks it.
    pub fn of_url(url: &str) -> Option<Self> {
        if url.starts_with("sqlite:") {
            Some(Self::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Self::Postgres)
        } else {
            None
        }
    }

    /// The text for this backend, where the two dialects differ.
    pub(crate) fn pick<'a>(self, sqlite: &'a str, postgres: &'a str) -> &'a str {
        match self {
            Self::Sqlite => sqlite,
            Self::Postgres => postgres,
        }
    }
}

/// How to open the store, beyond its URL.
#[derive(Debug, Clone, Copy)]
pub struct StoreOptions {
    /// Connections in the pool (PostgreSQL; SQLite uses 4).
    pub pool_size: u32,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self { pool_size: 10 }
    }
}

/// A handle on the store; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

/// The key of the PostgreSQL advisory lock that every write transaction
/// takes (`write_tx`): herald's writes keep SQLite's one-writer-at-a-time
/// order on PostgreSQL too, across every node.
const WRITE_LOCK: i64 = 0x6865_7261_6c64; // "herald"

impl Store {
    /// Opens (creating if missing) and migrates the store.
    pub async fn open(url: &str) -> Result<Self> {
        Self::open_with(url, StoreOptions::default()).await
    }

    /// Opens (creating a SQLite file if missing) and migrates the store.
    pub async fn open_with(url: &str, options: StoreOptions) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let open_err = |cause| StoreError::Open { url: redact(url), cause };
        let backend = Backend::of_url(url).ok_or_else(|| {
            open_err(sqlx::Error::Configuration(
                "herald speaks sqlite:// and postgres:// only".into(),
            ))
        })?;
        let pool = match backend {
            Backend::Sqlite => {
                let native =
                    SqliteConnectOptions::from_str(url).map_err(open_err)?.create_if_missing(true);
                migrate_sqlite(url, native).await?;
                AnyPoolOptions::new()
                    .max_connections(4)
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            // WAL with NORMAL is durable across process
                            // crashes (kill -9); only an OS crash can lose the
                            // last commits. 32 MiB of page cache a connection
                            // (SQLite's default is 2 MiB): a collect's batch of
                            // thousands of articles then stays in memory until
                            // its commit instead of spilling to the WAL.
                            conn.execute(
                                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
                                 PRAGMA foreign_keys = ON; PRAGMA cache_size = -32768;
                                 PRAGMA busy_timeout = 10000;",
                            )
                            .await?;
                            Ok(())
                        })
                    })
                    .connect_with(AnyConnectOptions::from_str(url).map_err(open_err)?)
                    .await
                    .map_err(open_err)?
            }
            Backend::Postgres => {
                migrate_postgres(url).await?;
                AnyPoolOptions::new()
                    .max_connections(options.pool_size.max(2))
                    .acquire_timeout(Duration::from_secs(30))
                    .connect_with(AnyConnectOptions::from_str(url).map_err(open_err)?)
                    .await
                    .map_err(open_err)?
            }
        };
        Ok(Self { pool, backend })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// A transaction that writes in turn with every other writer: SQLite's
    /// write lock taken at once (`BEGIN IMMEDIATE`), or on PostgreSQL an
    /// advisory lock held until the commit. A transaction that reads first
    /// and writes later then never acts on what another wrote in between.
    pub(crate) async fn write_tx(&self) -> Result<sqlx::Transaction<'_, sqlx::Any>> {
        match self.backend {
            Backend::Sqlite => Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?),
            Backend::Postgres => {
                let mut tx = self.pool.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(WRITE_LOCK)
                    .execute(&mut *tx)
                    .await?;
                Ok(tx)
            }
        }
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// The URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

/// Applies the migrations on a connection of its own with foreign keys off,
/// as SQLite wants for changes that rebuild a table (foreign keys cannot be
/// switched inside the transaction each migration runs in), then checks that
/// every reference still holds.
async fn migrate_sqlite(url: &str, options: SqliteConnectOptions) -> Result<()> {
    use sqlx::{ConnectOptions, Connection};
    let mut conn = options
        .foreign_keys(false)
        .connect()
        .await
        .map_err(|cause| StoreError::Open { url: url.to_owned(), cause })?;
    let migrated = sqlx::migrate!("./migrations/sqlite")
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

/// Applies PostgreSQL's migrations. Nodes that start at once take turns: the
/// migrator holds an advisory lock while it works.
async fn migrate_postgres(url: &str) -> Result<()> {
    use sqlx::{ConnectOptions, Connection};
    let mut conn = sqlx::postgres::PgConnectOptions::from_str(url)
        .map_err(|cause| StoreError::Open { url: redact(url), cause })?
        .connect()
        .await
        .map_err(|cause| StoreError::Open { url: redact(url), cause })?;
    let migrated = sqlx::migrate!("./migrations/postgres")
        .run(&mut conn)
        .await
        .map_err(|cause| StoreError::Migrate { url: redact(url), cause });
    let _ = conn.close().await;
    migrated
}

/// Makes a store as an older herald left it: migrated up to `version` only
/// (on PostgreSQL, its migrations up to that number), then `sql` run on it.
/// For the tests of the migrations that come after.
#[doc(hidden)]
pub async fn create_at_version(url: &str, version: i64, sql: &[&str]) -> Result<()> {
    use sqlx::migrate::Migrator;
    use sqlx::{ConnectOptions, Connection};
    let open = |cause| StoreError::Open { url: redact(url), cause };
    let migrate = |cause| StoreError::Migrate { url: redact(url), cause };
    let older = |all: Migrator| {
        let migrations: Vec<_> =
            all.migrations.iter().filter(|m| m.version <= version).cloned().collect();
        Migrator { migrations: migrations.into(), ..all }
    };
    if Backend::of_url(url) == Some(Backend::Postgres) {
        let mut conn = sqlx::postgres::PgConnectOptions::from_str(url)
            .map_err(open)?
            .connect()
            .await
            .map_err(open)?;
        older(sqlx::migrate!("./migrations/postgres")).run(&mut conn).await.map_err(migrate)?;
        for statement in sql {
            sqlx::query(statement).execute(&mut conn).await?;
        }
        let _ = conn.close().await;
        return Ok(());
    }
    let mut conn = SqliteConnectOptions::from_str(url)
        .map_err(open)?
        .create_if_missing(true)
        .connect()
        .await
        .map_err(open)?;
    older(sqlx::migrate!("./migrations/sqlite")).run(&mut conn).await.map_err(migrate)?;
    for statement in sql {
        sqlx::query(statement).execute(&mut conn).await?;
    }
    let _ = conn.close().await;
    Ok(())
}

/// `count` placeholders from `$first` on: `$3, $4, $5`.
pub(crate) fn params(first: usize, count: usize) -> String {
    rows(first, count, 1)
}

/// `count` rows of `width` placeholders from `$first` on, for `VALUES` or
/// `IN`: `($1, $2), ($3, $4)`; one placeholder a row goes without brackets.
pub(crate) fn rows(first: usize, count: usize, width: usize) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(count * width * 6);
    for row in 0..count {
        if row > 0 {
            out.push_str(", ");
        }
        if width > 1 {
            out.push('(');
        }
        for col in 0..width {
            if col > 0 {
                out.push_str(", ");
            }
            let _ = write!(out, "${}", first + row * width + col);
        }
        if width > 1 {
            out.push(')');
        }
    }
    out
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

// The tests' own programs from outside and PostgreSQL server, shared with
// the integration tests.
#[cfg(test)]
#[path = "../../tests/it/support/outside.rs"]
#[allow(dead_code)] // the unit tests need only PostgreSQL of it
pub(crate) mod outside;
#[cfg(test)]
#[path = "../../tests/it/support/postgres.rs"]
#[allow(dead_code)] // what only the integration tests use
pub(crate) mod postgres;

/// Whether the tests run on PostgreSQL: `HERALD_TEST_STORE=postgres`.
#[cfg(test)]
pub(crate) fn testing_on_postgres() -> bool {
    std::env::var("HERALD_TEST_STORE").is_ok_and(|v| v == "postgres")
        && outside::available(&postgres::POSTGRES)
}

/// A fresh, empty store for a test: a SQLite file, or a new database on the
/// tests' PostgreSQL server under `HERALD_TEST_STORE=postgres`.
#[cfg(test)]
pub(crate) async fn test_store() -> (Store, tempfile::TempDir) {
    let (url, dir) = test_store_url();
    (Store::open(&url).await.unwrap(), dir)
}

/// Where [`test_store`] would make its store, not made yet.
#[cfg(test)]
pub(crate) fn test_store_url() -> (String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = if testing_on_postgres() {
        postgres::server().fresh_database()
    } else {
        format!("sqlite://{}", dir.path().join("test.db").display())
    };
    (url, dir)
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

/// Stores an edition of `list` for `date` (`YYYY-MM-DD`) that considered
/// the articles `considered` and holds none, for the store's tests.
#[cfg(test)]
pub(crate) async fn test_edition(store: &Store, list: &str, date: &str, considered: Vec<i64>) {
    let new = NewEdition {
        list: list.into(),
        edition_date: date.parse().unwrap(),
        subject: "Today".into(),
        html: String::new(),
        text: String::new(),
        article_ids: Vec::new(),
        considered,
        composed_at: Utc::now(),
    };
    store.create_edition(&new, "example.com").await.unwrap().expect("a new edition");
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
