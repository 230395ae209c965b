//! Copying a whole store into another, empty one: SQLite into PostgreSQL
//! when a site outgrows one machine (or any backend into any other, e.g. a
//! SQLite file as a backup).
//!
//! The copy reads each table generically, its columns as the schema lists
//! them, so a column a later migration adds is carried without a change
//! here; a new table only has to be named in [`TABLES`] (a test fails until
//! it is, and so does a copy). Rows keep their ids, since tokens and
//! Message-IDs refer to them. Each table is read page by page in the order
//! of its primary key from one snapshot of the source, and written a page
//! per multi-row `INSERT` in one transaction on the target, which commits
//! only after every table was counted on both sides and the counts agree.

use std::collections::{BTreeMap, BTreeSet};

use sqlx::{AnyConnection, Row};

use super::{Backend, Store, StoreError};

/// The tables the copy carries, parents before children: a row is written
/// only after the rows it refers to. A table a migration adds goes here (or
/// in [`LEFT_OUT`]).
pub const TABLES: &[&str] = &[
    "sources",
    "articles",
    "subscribers",
    "memberships",
    "suppressions",
    "editions",
    "list_articles",
    "deliveries",
    "signups",
    "settings",
    "stage_runs",
    "feed_aggregators",
    "feed_pollers",
    "relay_days",
    "daemon_jobs",
    "paused_lists",
    "websub_pending",
    "bounce_events",
    "link_clicks",
    "reader_clicks",
];

/// The tables of the store the copy leaves out: the daemon's lease, the
/// nodes and the relays' current time slots belong to running processes,
/// not to the data.
pub const LEFT_OUT: &[&str] = &["daemon_lease", "nodes", "relay_slots"];

/// Rows a page holds at most: read with one query, written with one
/// `INSERT`.
const PAGE_ROWS: usize = 500;

/// Values a statement binds at most (SQLite allows 32766, PostgreSQL 65535).
const MAX_PARAMS: usize = 30_000;

/// What went wrong with a copy. Nothing was written to the target in any
/// case: its transaction is rolled back.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error(
        "the target is not empty: table `{table}` holds {rows} row(s); herald copies only \
         into an empty store, and wrote nothing"
    )]
    NotEmpty { table: String, rows: i64 },
    #[error(
        "the source has a table `{table}` that herald's copy does not know (neither copied \
         nor left out); nothing was copied"
    )]
    UnknownTable { table: String },
    #[error("the {side} has no table `{table}`; nothing was copied")]
    MissingTable { side: Side, table: String },
    #[error(
        "column `{column}` of table `{table}` is in the {present} but not in the {absent}: \
         both must be migrated by the same herald; nothing was copied"
    )]
    Column { table: String, column: String, present: Side, absent: Side },
    #[error(
        "column `{column}` of table `{table}` holds {source_kind} in the source but \
         {target_kind} in the target; nothing was copied"
    )]
    ColumnKind { table: String, column: String, source_kind: Kind, target_kind: Kind },
    #[error(
        "column `{column}` of table `{table}` in the {side} has the type `{declared}`; \
         the copy carries text and integers only; nothing was copied"
    )]
    UnsupportedType { side: Side, table: String, column: String, declared: String },
    #[error("table `{table}` of the {side} has no primary key to copy it in order by")]
    NoPrimaryKey { side: Side, table: String },
    #[error(
        "table `{table}`, column `{column}`: a value in the source is not {kind} \
         ({cause}); was it edited by hand? Nothing was copied"
    )]
    Value { table: String, column: String, kind: Kind, cause: sqlx::Error },
    #[error(
        "the counts differ for table `{table}`: {source_rows} row(s) in the source, \
         {copied} copied, {target_rows} in the target; the copy was undone"
    )]
    Count { table: String, source_rows: i64, copied: u64, target_rows: i64 },
    #[error("{0}")]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for CopyError {
    fn from(cause: sqlx::Error) -> Self {
        CopyError::Store(cause.into())
    }
}

impl CopyError {
    /// Names what the copy was doing when a query failed.
    fn during(self, op: impl FnOnce() -> String) -> Self {
        match self {
            CopyError::Store(StoreError::Query { op: None, cause }) => {
                CopyError::Store(StoreError::Query { op: Some(op()), cause })
            }
            other => other,
        }
    }
}

/// One end of a copy, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Source,
    Target,
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Side::Source => "source",
            Side::Target => "target",
        })
    }
}

/// What a column holds: both schemas use only these two.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Integer,
    Text,
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kind::Integer => "integers",
            Kind::Text => "text",
        })
    }
}

/// How far a copy is, for a progress display.
#[derive(Debug, Clone, Copy)]
pub enum CopyEvent<'a> {
    /// A table's copy begins; it has `rows` rows.
    Table { table: &'a str, rows: u64 },
    /// `rows` rows of the table are copied so far.
    Copied { table: &'a str, rows: u64 },
}

/// What a copy did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyReport {
    /// Each table of [`TABLES`] with its rows, counted on both sides.
    pub tables: Vec<(String, u64)>,
    /// Each table whose ids the target hands out itself, with the id after
    /// which it goes on: the highest the source ever gave.
    pub next_ids: Vec<(String, i64)>,
}

impl CopyReport {
    pub fn rows(&self) -> u64 {
        self.tables.iter().map(|(_, n)| n).sum()
    }
}

/// A column of a table, as the schema declares it.
#[derive(Debug, Clone)]
struct Column {
    name: String,
    kind: Kind,
    /// Its place in the primary key (1 for the first), if it is in it.
    key: Option<i64>,
}

/// A value read from the source, bound as it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    Integer(Option<i64>),
    Text(Option<String>),
}

impl Store {
    /// Copies every table of [`TABLES`] into `target`, which must be
    /// empty. `progress` hears of each table and each page.
    pub async fn copy_into(
        &self,
        target: &Store,
        progress: &mut (dyn FnMut(CopyEvent<'_>) + Send),
    ) -> Result<CopyReport, CopyError> {
        self.copy_paged(target, PAGE_ROWS, progress).await
    }

    pub(crate) async fn copy_paged(
        &self,
        target: &Store,
        page_rows: usize,
        progress: &mut (dyn FnMut(CopyEvent<'_>) + Send),
    ) -> Result<CopyReport, CopyError> {
        // One snapshot of the source: what is copied and what is counted
        // are the same rows, whatever else writes meanwhile.
        let mut source = match self.backend {
            Backend::Sqlite => self.pool.begin().await,
            Backend::Postgres => {
                self.pool.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY").await
            }
        }
        .map_err(|e| CopyError::from(e).during(|| "starting to read the source".into()))?;
        let mut dest = target
            .write_tx()
            .await
            .map_err(|e| CopyError::from(e).during(|| "starting to write the target".into()))?;
        let (from, to) = (self.backend, target.backend);

        let source_tables = tables(&mut source, from)
            .await
            .map_err(|e| e.during(|| "listing the tables of the source".into()))?;
        let target_tables = tables(&mut dest, to)
            .await
            .map_err(|e| e.during(|| "listing the tables of the target".into()))?;
        // A table of the source that is not in the list would be lost. (One
        // in the target is not herald's: the same herald migrated both.)
        let known = |t: &&String| TABLES.contains(&t.as_str()) || LEFT_OUT.contains(&t.as_str());
        if let Some(table) = source_tables.iter().find(|t| !known(t)) {
            return Err(CopyError::UnknownTable { table: table.clone() });
        }
        for (side, found) in [(Side::Source, &source_tables), (Side::Target, &target_tables)] {
            if let Some(table) = TABLES.iter().find(|t| !found.contains(**t)) {
                return Err(CopyError::MissingTable { side, table: (*table).to_owned() });
            }
        }
        for table in TABLES.iter().chain(LEFT_OUT).filter(|t| target_tables.contains(**t)) {
            let rows = count(&mut dest, table).await.map_err(|e| {
                e.during(|| format!("counting the rows of `{table}` in the target"))
            })?;
            if rows > 0 {
                return Err(CopyError::NotEmpty { table: (*table).to_owned(), rows });
            }
        }

        // Every table's columns first, so a difference stops the copy
        // before a row is written.
        let mut plans = Vec::with_capacity(TABLES.len());
        for table in TABLES {
            let columns = columns(&mut source, from, Side::Source, table).await.map_err(|e| {
                e.during(|| format!("reading the columns of `{table}` in the source"))
            })?;
            let theirs = columns_in(&mut dest, to, Side::Target, table).await.map_err(|e| {
                e.during(|| format!("reading the columns of `{table}` in the target"))
            })?;
            compare(table, &columns, &theirs)?;
            if !columns.iter().any(|c| c.key.is_some()) {
                return Err(CopyError::NoPrimaryKey { side: Side::Source, table: (*table).into() });
            }
            plans.push((*table, columns));
        }

        let mut copied = BTreeMap::new();
        for (table, columns) in &plans {
            let rows = count(&mut source, table).await.map_err(|e| {
                e.during(|| format!("counting the rows of `{table}` in the source"))
            })?;
            progress(CopyEvent::Table { table, rows: u64::try_from(rows).unwrap_or(0) });
            let n = copy_table(&mut source, &mut dest, table, columns, page_rows, progress)
                .await
                .map_err(|e| e.during(|| format!("copying table `{table}`")))?;
            copied.insert(*table, (rows, n));
        }

        let next_ids = carry_ids(&mut source, from, &mut dest, to)
            .await
            .map_err(|e| e.during(|| "moving the target's ids past the copied ones".into()))?;

        let mut report = CopyReport { tables: Vec::new(), next_ids };
        for table in TABLES {
            let (source_rows, n) = copied[table];
            let target_rows = count(&mut dest, table).await.map_err(|e| {
                e.during(|| format!("counting the rows of `{table}` in the target"))
            })?;
            if source_rows != target_rows || u64::try_from(source_rows).ok() != Some(n) {
                return Err(CopyError::Count {
                    table: (*table).to_owned(),
                    source_rows,
                    copied: n,
                    target_rows,
                });
            }
            report.tables.push(((*table).to_owned(), n));
        }
        dest.commit()
            .await
            .map_err(|e| CopyError::from(e).during(|| "committing the copy".into()))?;
        // Only read; its end changes nothing.
        let _ = source.rollback().await;
        Ok(report)
    }
}

/// Double quotes around a name, for SQL.
fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The tables of herald's schema in a store (not the migrations' own, nor
/// SQLite's).
async fn tables(conn: &mut AnyConnection, backend: Backend) -> Result<BTreeSet<String>, CopyError> {
    let sql = backend.pick(
        "SELECT name FROM sqlite_master WHERE type = 'table'
           AND substr(name, 1, 7) <> 'sqlite_' AND name <> '_sqlx_migrations'",
        "SELECT table_name::text FROM information_schema.tables
         WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'
           AND table_name <> '_sqlx_migrations'",
    );
    let names: Vec<String> = sqlx::query_scalar(sql).fetch_all(&mut *conn).await?;
    Ok(names.into_iter().collect())
}

async fn count(conn: &mut AnyConnection, table: &str) -> Result<i64, CopyError> {
    let sql = format!("SELECT COUNT(*) FROM {}", quoted(table));
    Ok(sqlx::query_scalar(&sql).fetch_one(&mut *conn).await?)
}

/// A table's columns in the order the schema lists them.
async fn columns(
    conn: &mut AnyConnection,
    backend: Backend,
    side: Side,
    table: &str,
) -> Result<Vec<Column>, CopyError> {
    let declared: Vec<(String, String, Option<i64>)> = match backend {
        Backend::Sqlite => {
            let rows = sqlx::query("SELECT name, type, pk FROM pragma_table_info($1) ORDER BY cid")
                .bind(table)
                .fetch_all(&mut *conn)
                .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                let pk: i64 = r.try_get("pk")?;
                out.push((r.try_get("name")?, r.try_get("type")?, (pk > 0).then_some(pk)));
            }
            out
        }
        Backend::Postgres => {
            let keys: Vec<String> = sqlx::query_scalar(
                "SELECT k.column_name::text
                 FROM information_schema.table_constraints c
                 JOIN information_schema.key_column_usage k
                   ON k.constraint_schema = c.constraint_schema
                  AND k.constraint_name = c.constraint_name
                 WHERE c.table_schema = current_schema() AND c.table_name = $1
                   AND c.constraint_type = 'PRIMARY KEY'
                 ORDER BY k.ordinal_position",
            )
            .bind(table)
            .fetch_all(&mut *conn)
            .await?;
            let rows = sqlx::query(
                "SELECT column_name::text AS name, data_type::text AS type
                 FROM information_schema.columns
                 WHERE table_schema = current_schema() AND table_name = $1
                 ORDER BY ordinal_position",
            )
            .bind(table)
            .fetch_all(&mut *conn)
            .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                let name: String = r.try_get("name")?;
                let key = keys.iter().position(|k| *k == name).map(|i| i as i64 + 1);
                out.push((name, r.try_get("type")?, key));
            }
            out
        }
    };
    declared
        .into_iter()
        .map(|(name, ty, key)| {
            let upper = ty.to_ascii_uppercase();
            let kind = if upper.contains("INT") {
                Kind::Integer
            } else if upper.contains("TEXT") || upper.contains("CHAR") || upper.contains("CLOB") {
                Kind::Text
            } else {
                return Err(CopyError::UnsupportedType {
                    side,
                    table: table.to_owned(),
                    column: name,
                    declared: ty,
                });
            };
            Ok(Column { name, kind, key })
        })
        .collect()
}

/// [`columns`], by name.
async fn columns_in(
    conn: &mut AnyConnection,
    backend: Backend,
    side: Side,
    table: &str,
) -> Result<BTreeMap<String, Kind>, CopyError> {
    Ok(columns(conn, backend, side, table).await?.into_iter().map(|c| (c.name, c.kind)).collect())
}

/// Both ends have the same columns, holding the same kind of value.
fn compare(table: &str, ours: &[Column], theirs: &BTreeMap<String, Kind>) -> Result<(), CopyError> {
    for column in ours {
        match theirs.get(&column.name) {
            None => {
                return Err(CopyError::Column {
                    table: table.to_owned(),
                    column: column.name.clone(),
                    present: Side::Source,
                    absent: Side::Target,
                })
            }
            Some(kind) if *kind != column.kind => {
                return Err(CopyError::ColumnKind {
                    table: table.to_owned(),
                    column: column.name.clone(),
                    source_kind: column.kind,
                    target_kind: *kind,
                })
            }
            Some(_) => {}
        }
    }
    if let Some(extra) = theirs.keys().find(|name| !ours.iter().any(|c| c.name == **name)) {
        return Err(CopyError::Column {
            table: table.to_owned(),
            column: extra.clone(),
            present: Side::Target,
            absent: Side::Source,
        });
    }
    Ok(())
}

/// Copies one table a page at a time, in the order of its primary key,
/// each page read after the last key of the one before; returns the rows.
async fn copy_table(
    source: &mut AnyConnection,
    dest: &mut AnyConnection,
    table: &str,
    columns: &[Column],
    page_rows: usize,
    progress: &mut (dyn FnMut(CopyEvent<'_>) + Send),
) -> Result<u64, CopyError> {
    let mut key: Vec<usize> = (0..columns.len()).filter(|i| columns[*i].key.is_some()).collect();
    key.sort_by_key(|i| columns[*i].key);
    let names: Vec<String> = columns.iter().map(|c| quoted(&c.name)).collect();
    let key_names: Vec<&str> = key.iter().map(|i| names[*i].as_str()).collect();
    let list = names.join(", ");
    let order = key_names.join(", ");
    let page_rows = page_rows.clamp(1, (MAX_PARAMS / columns.len().max(1)).max(1));
    let first = format!("SELECT {list} FROM {} ORDER BY {order} LIMIT {page_rows}", quoted(table));
    let next = format!(
        "SELECT {list} FROM {} WHERE ({order}) > ({}) ORDER BY {order} LIMIT {page_rows}",
        quoted(table),
        (1..=key.len()).map(|i| format!("${i}")).collect::<Vec<_>>().join(", "),
    );
    let mut after: Option<Vec<Value>> = None;
    let mut copied = 0u64;
    loop {
        let mut query = sqlx::query(if after.is_some() { &next } else { &first });
        for value in after.iter().flatten() {
            query = bind(query, value.clone());
        }
        let rows = query.fetch_all(&mut *source).await?;
        if rows.is_empty() {
            return Ok(copied);
        }
        let mut page: Vec<Vec<Value>> = Vec::with_capacity(rows.len());
        for row in &rows {
            let mut values = Vec::with_capacity(columns.len());
            for (i, column) in columns.iter().enumerate() {
                let value = match column.kind {
                    Kind::Integer => row.try_get::<Option<i64>, _>(i).map(Value::Integer),
                    Kind::Text => row.try_get::<Option<String>, _>(i).map(Value::Text),
                };
                values.push(value.map_err(|cause| CopyError::Value {
                    table: table.to_owned(),
                    column: column.name.clone(),
                    kind: column.kind,
                    cause,
                })?);
            }
            page.push(values);
        }
        drop(rows);
        let last = page.last().map(|row| key.iter().map(|i| row[*i].clone()).collect());
        let n = page.len() as u64;
        insert(dest, table, &list, columns.len(), page).await?;
        copied += n;
        after = last;
        progress(CopyEvent::Copied { table, rows: copied });
    }
}

/// Writes a page with one multi-row `INSERT`.
async fn insert(
    dest: &mut AnyConnection,
    table: &str,
    list: &str,
    width: usize,
    page: Vec<Vec<Value>>,
) -> Result<(), CopyError> {
    use std::fmt::Write as _;
    let mut sql = format!("INSERT INTO {} ({list}) VALUES ", quoted(table));
    for row in 0..page.len() {
        sql.push_str(if row == 0 { "(" } else { ", (" });
        for col in 0..width {
            let _ = write!(sql, "{}${}", if col == 0 { "" } else { ", " }, row * width + col + 1);
        }
        sql.push(')');
    }
    let mut query = sqlx::query(&sql);
    for value in page.into_iter().flatten() {
        query = bind(query, value);
    }
    query.execute(&mut *dest).await?;
    Ok(())
}

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

fn bind(query: AnyQuery<'_>, value: Value) -> AnyQuery<'_> {
    match value {
        Value::Integer(v) => query.bind(v),
        Value::Text(v) => query.bind(v),
    }
}

/// Moves the target's id generators past the highest id the source ever
/// gave (its highest row, or higher where the source keeps a counter of its
/// own, as SQLite's `AUTOINCREMENT` does for readers who were deleted), so
/// that new rows never take an id that was someone else's.
async fn carry_ids(
    source: &mut AnyConnection,
    from: Backend,
    dest: &mut AnyConnection,
    to: Backend,
) -> Result<Vec<(String, i64)>, CopyError> {
    let mut next_ids = Vec::new();
    for (table, column) in generated_ids(dest, to).await? {
        let max: Option<i64> =
            sqlx::query_scalar(&format!("SELECT MAX({}) FROM {}", quoted(&column), quoted(&table)))
                .fetch_one(&mut *dest)
                .await?;
        let given = counter(source, from, &table, &column).await?;
        let high = max.unwrap_or(0).max(given.unwrap_or(0));
        match to {
            Backend::Postgres => {
                let sql = if high > 0 {
                    "SELECT setval(pg_get_serial_sequence($1, $2), $3)"
                } else {
                    "SELECT setval(pg_get_serial_sequence($1, $2), 1, false)"
                };
                let mut query = sqlx::query(sql).bind(&table).bind(&column);
                if high > 0 {
                    query = query.bind(high);
                }
                query.execute(&mut *dest).await?;
            }
            Backend::Sqlite => {
                let updated = sqlx::query("UPDATE sqlite_sequence SET seq = $2 WHERE name = $1")
                    .bind(&table)
                    .bind(high)
                    .execute(&mut *dest)
                    .await?
                    .rows_affected();
                if updated == 0 {
                    sqlx::query("INSERT INTO sqlite_sequence (name, seq) VALUES ($1, $2)")
                        .bind(&table)
                        .bind(high)
                        .execute(&mut *dest)
                        .await?;
                }
            }
        }
        next_ids.push((table, high));
    }
    Ok(next_ids)
}

/// The (table, column) pairs whose ids the store generates and never gives
/// twice: PostgreSQL's identity columns, SQLite's `AUTOINCREMENT` keys.
async fn generated_ids(
    conn: &mut AnyConnection,
    backend: Backend,
) -> Result<Vec<(String, String)>, CopyError> {
    let mut found = Vec::new();
    match backend {
        Backend::Postgres => {
            let rows = sqlx::query(
                "SELECT table_name::text AS t, column_name::text AS c
                 FROM information_schema.columns
                 WHERE table_schema = current_schema()
                   AND (is_identity = 'YES' OR column_default LIKE 'nextval(%')
                 ORDER BY table_name, column_name",
            )
            .fetch_all(&mut *conn)
            .await?;
            for r in rows {
                found.push((r.try_get("t")?, r.try_get("c")?));
            }
        }
        Backend::Sqlite => {
            let tables: Vec<String> = sqlx::query_scalar(
                "SELECT name FROM sqlite_master WHERE type = 'table'
                   AND upper(sql) LIKE '%AUTOINCREMENT%' ORDER BY name",
            )
            .fetch_all(&mut *conn)
            .await?;
            for table in tables {
                let key: Option<String> =
                    sqlx::query_scalar("SELECT name FROM pragma_table_info($1) WHERE pk = 1")
                        .bind(&table)
                        .fetch_optional(&mut *conn)
                        .await?;
                found.extend(key.map(|column| (table, column)));
            }
        }
    }
    found.retain(|(table, _)| TABLES.contains(&table.as_str()));
    Ok(found)
}

/// The highest id the source's own counter for `table` gave, if it keeps one.
async fn counter(
    conn: &mut AnyConnection,
    backend: Backend,
    table: &str,
    column: &str,
) -> Result<Option<i64>, CopyError> {
    match backend {
        Backend::Postgres => Ok(sqlx::query_scalar(
            "SELECT pg_sequence_last_value(pg_get_serial_sequence($1, $2)::regclass)",
        )
        .bind(table)
        .bind(column)
        .fetch_one(&mut *conn)
        .await?),
        Backend::Sqlite => {
            let has_counters: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'sqlite_sequence'",
            )
            .fetch_one(&mut *conn)
            .await?;
            if has_counters == 0 {
                return Ok(None);
            }
            Ok(sqlx::query_scalar("SELECT seq FROM sqlite_sequence WHERE name = $1")
                .bind(table)
                .fetch_optional(&mut *conn)
                .await?)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{outside, postgres};

    /// A new SQLite store in `dir`, and its URL.
    async fn sqlite(dir: &tempfile::TempDir, name: &str) -> (Store, String) {
        let url = format!("sqlite://{}", dir.path().join(name).display());
        (Store::open(&url).await.unwrap(), url)
    }

    /// A new database on the tests' PostgreSQL server, when there is one.
    async fn postgres() -> Option<Store> {
        if !outside::available(&postgres::POSTGRES) {
            return None;
        }
        Some(Store::open(&postgres::server().fresh_database()).await.unwrap())
    }

    async fn run(store: &Store, statements: &[&str]) {
        for sql in statements {
            sqlx::query(sql).execute(&store.pool).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
    }

    /// Rows in every table, with what is easy to get wrong: NULLs, quotes,
    /// line breaks and other scripts in text, integers past 2^53, ids with
    /// gaps, the highest reader id given to a reader since deleted, keys of
    /// two columns, and more rows than a page holds.
    const FIXTURE: &[&str] = &[
        "INSERT INTO sources (name, kind, etag, last_modified, last_fetch, last_success,
             last_error, consecutive_failures, articles, next_try, moved_to, gone_since)
         VALUES ('blog', 'dir', NULL, NULL, NULL, NULL, NULL, 0, 30, NULL, NULL, NULL),
                ('upstream', 'feed', '\"e''t\"', 'Tue, 24 Nov 2026 07:00:00 GMT',
                 '2026-11-24T07:00:00.000000Z', '2026-11-23T07:00:00.000000Z', 'timed out
after 30 s', 3, 12, '2026-11-24T08:00:00.000000Z', 'https://example.org/feed', NULL)",
        "INSERT INTO articles (id, source, guid, url, title, author, published, updated,
             summary, content_html, tags, content_hash, first_seen, in_digest, path,
             withdrawn, withdrawn_at, unpublished_at)
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 30)
         SELECT i * 3, 'blog', 'g' || i, 'https://example.com/blog/' || i || '/',
             'Title ''' || i || ''' — 林美 ✓', CASE WHEN i % 2 = 0 THEN NULL ELSE 'Ann' END,
             '2026-11-20T08:00:00.000000Z', NULL, '', '<p>' || i || char(10) || '</p>',
             '[\"a\",\"b\"]', 'h' || i, '2026-11-20T08:00:00.000000Z', i % 2,
             CASE WHEN i < 5 THEN 'post-' || i || '.md' END,
             CASE WHEN i = 7 THEN 'draft' END, CASE WHEN i = 7 THEN '2026-11-21T08:00:00.000000Z' END,
             NULL
         FROM n",
        "INSERT INTO subscribers (id, email, name, created, hard_bounces, confirm_sent_at,
             token_key, legacy_tokens)
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300)
         SELECT i * 2, 'reader' || i || '@example.com', CASE WHEN i % 3 = 0 THEN NULL ELSE 'R ' || i END,
             '2026-11-01T00:00:00.000000Z', i % 2, NULL, 'key' || i, CASE WHEN i < 10 THEN 1 ELSE 0 END
         FROM n",
        // Reader 1000 was forgotten: no later reader may get that id.
        "UPDATE sqlite_sequence SET seq = 1000 WHERE name = 'subscribers'",
        "INSERT INTO memberships (list, subscriber, status, changed_at, origin)
         SELECT 'daily', id, 'confirmed', created, 'csv' FROM subscribers",
        "INSERT INTO memberships (list, subscriber, status, changed_at, origin)
         SELECT 'weekly', id, CASE WHEN id % 4 = 0 THEN 'pending' ELSE 'unsubscribed' END,
             created, 'web' FROM subscribers WHERE id < 100",
        "INSERT INTO suppressions (email, reason, at)
         VALUES ('gone@example.com', 'hard bounce: 550 5.1.1', '2026-11-02T00:00:00.000000Z'),
                ('sha256:abc', 'forgotten', '2026-11-03T00:00:00.000000Z')",
        "INSERT INTO editions (id, list, edition_date, subject, html, text, article_ids,
             article_cursor, state, composed_at)
         VALUES (5, 'daily', '2026-11-22', 'Subject ''one''', '<p>x</p>', 'x', '[3,6]', 6, 'done',
                 '2026-11-22T07:00:00.000000Z'),
                (6, 'daily', '2026-11-23', 'Two', '<p>y</p>', 'y', '[9]', 9, 'done',
                 '2026-11-23T07:00:00.000000Z'),
                (9, 'daily', '2026-11-24', 'Three', '<p>z</p>', 'z', '[]', 90, 'sending',
                 '2026-11-24T07:00:00.000000Z')",
        "INSERT INTO list_articles (list, article) SELECT 'daily', id FROM articles WHERE id <= 90",
        "INSERT INTO deliveries (edition, subscriber, state, attempts, next_attempt_at,
             last_error, message_id, reply, sent_at)
         SELECT e.id, s.id,
             CASE s.id % 5 WHEN 0 THEN 'pending' WHEN 1 THEN 'sending' WHEN 2 THEN 'sent'
                           WHEN 3 THEN 'failed' ELSE 'skipped' END,
             s.id % 4, CASE WHEN s.id % 5 = 0 THEN '2026-11-24T08:00:00.000000Z' END,
             CASE WHEN s.id % 5 = 3 THEN '550 5.1.1 \"no\"' || char(13) || char(10) || 'such user' END,
             'herald.daily.' || e.id || '.' || s.id || '@example.com',
             CASE WHEN s.id % 5 = 2 THEN '250 2.0.0 Ok: queued' END,
             CASE WHEN s.id % 5 = 2 THEN '2026-11-24T07:01:00.000000Z' END
         FROM editions e, subscribers s",
        "INSERT INTO signups (id, subscriber, lists, created_at, confirmed_at)
         VALUES (4, 2, '[\"daily\"]', '2026-11-01T00:00:00.000000Z', NULL),
                (11, 4, '[\"daily\",\"weekly\"]', '2026-11-02T00:00:00.000000Z',
                 '2026-11-02T00:05:00.000000Z')",
        "INSERT INTO settings (key, value)
         VALUES ('secret', 'c2VjcmV0IHRoYXQgc2lnbnMgbGlua3M='),
                ('odd ''key''', 'line one
line two \"quoted\" \\ ✓')",
        "INSERT INTO stage_runs (stage, started_at, finished_at, ok, summary)
         VALUES ('collect', '2026-11-24T06:59:00.000000Z', '2026-11-24T07:00:00.000000Z', 1,
                 '3 new, 0 changed')",
        "INSERT INTO feed_aggregators (name, subscribers, seen_at)
         VALUES ('Feedly', 462, '2026-11-24T06:00:00.000000Z')",
        "INSERT INTO feed_pollers (day, poller) VALUES ('2026-11-24', 'aa'), ('2026-11-24', 'bb'),
             ('2026-11-25', 'aa')",
        "INSERT INTO relay_days (relay, day, sent) VALUES ('smtp://relay', '2026-11-24', 9007199254740993)",
        "INSERT INTO daemon_jobs (job, handled_upto) VALUES ('list:daily', '2026-11-24T07:00:00.000000Z')",
        "INSERT INTO paused_lists (list, paused_at) VALUES ('weekly', '2026-11-20T00:00:00.000000Z')",
        "INSERT INTO websub_pending (feed_url)
         VALUES ('https://example.com/feed.xml'), ('https://example.com/atom.xml')",
        "INSERT INTO bounce_events (id, at, via, kind, email, subscriber, edition, list, status,
                                    diagnostic, action, note, reference)
         VALUES (1, '2026-11-24T08:00:00.000000Z', 'smtp', 'hard', 'r1@example.com', 1, 1, 'daily',
                 '5.1.1', 'smtp; 550 5.1.1 no such user', 'suppressed', 'hard bounce 1 of 1',
                 'smtp:dsn-1@mx.example.org#r1@example.com'),
                (2, '2026-11-24T09:00:00.000000Z', 'cli', 'unsuppress', 'r1@example.com', 1, NULL,
                 NULL, NULL, NULL, 'unsuppressed', 'herald subscribers unsuppress', NULL)",
        "INSERT INTO link_clicks (edition, article, clicks) VALUES (5, 3, 12), (5, 6, 9007199254740993)",
        "INSERT INTO reader_clicks (edition, article, subscriber, at)
         VALUES (5, 3, 2, '2026-11-22T08:00:00.000000Z'), (5, 6, 2, '2026-11-22T08:01:00.000000Z'),
                (6, 9, 4, '2026-11-23T09:00:00.000000Z')",
        "UPDATE subscribers SET manage_sent_at = '2026-11-24T10:00:00.000000Z' WHERE id = 4",
        "INSERT INTO daemon_lease (id, holder, pid, host, started_at, heartbeat_at, expires_at)
         VALUES (1, 'abc', 42, 'node1', '2026-11-24T00:00:00.000000Z',
                 '2026-11-24T07:00:00.000000Z', '2026-11-24T07:00:30.000000Z')",
    ];

    /// Every row of every copied table, in the order of its primary key.
    async fn dump(store: &Store) -> BTreeMap<String, Vec<Vec<Value>>> {
        let mut conn = store.pool.acquire().await.unwrap();
        let mut all = BTreeMap::new();
        for table in TABLES {
            let columns = columns(&mut conn, store.backend, Side::Source, table).await.unwrap();
            let list: Vec<String> = columns.iter().map(|c| quoted(&c.name)).collect();
            let mut key: Vec<&Column> = columns.iter().filter(|c| c.key.is_some()).collect();
            key.sort_by_key(|c| c.key);
            let order: Vec<String> = key.iter().map(|c| quoted(&c.name)).collect();
            // By name, so that the two backends' column orders compare.
            let mut by_name: Vec<(usize, &Column)> = columns.iter().enumerate().collect();
            by_name.sort_by(|a, b| a.1.name.cmp(&b.1.name));
            let sql = format!(
                "SELECT {} FROM {} ORDER BY {}",
                list.join(", "),
                quoted(table),
                order.join(", ")
            );
            let rows = sqlx::query(&sql).fetch_all(&mut *conn).await.unwrap();
            let rows = rows
                .iter()
                .map(|row| {
                    by_name
                        .iter()
                        .map(|(i, c)| match c.kind {
                            Kind::Integer => Value::Integer(row.try_get(*i).unwrap()),
                            Kind::Text => Value::Text(row.try_get(*i).unwrap()),
                        })
                        .collect()
                })
                .collect();
            all.insert((*table).to_owned(), rows);
        }
        all
    }

    async fn copy(from: &Store, to: &Store, page: usize) -> Result<CopyReport, CopyError> {
        let mut pages = 0;
        let report = from
            .copy_paged(to, page, &mut |e| {
                if let CopyEvent::Copied { .. } = e {
                    pages += 1;
                }
            })
            .await;
        if report.is_ok() {
            assert!(pages > 900 / page, "{pages} pages of {page} rows");
        }
        report
    }

    async fn next_id(store: &Store, table: &str) -> i64 {
        match store.backend {
            Backend::Postgres => {
                sqlx::query_scalar("SELECT nextval(pg_get_serial_sequence($1, 'id'))")
                    .bind(table)
                    .fetch_one(&store.pool)
                    .await
                    .unwrap()
            }
            Backend::Sqlite => {
                let seq: Option<i64> =
                    sqlx::query_scalar("SELECT seq FROM sqlite_sequence WHERE name = $1")
                        .bind(table)
                        .fetch_optional(&store.pool)
                        .await
                        .unwrap();
                let max: Option<i64> =
                    sqlx::query_scalar(&format!("SELECT MAX(id) FROM {}", quoted(table)))
                        .fetch_one(&store.pool)
                        .await
                        .unwrap();
                seq.unwrap_or(0).max(max.unwrap_or(0)) + 1
            }
        }
    }

    async fn counts(store: &Store) -> Vec<(String, i64)> {
        let mut conn = store.pool.acquire().await.unwrap();
        let mut out = Vec::new();
        for table in TABLES.iter().chain(LEFT_OUT) {
            out.push(((*table).to_owned(), count(&mut conn, table).await.unwrap()));
        }
        out
    }

    #[tokio::test]
    async fn the_copy_names_every_table_of_the_schema_parents_first() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = sqlite(&dir, "a.db").await;
        let mut conn = store.pool.acquire().await.unwrap();
        let found = tables(&mut conn, Backend::Sqlite).await.unwrap();
        let named: BTreeSet<String> =
            TABLES.iter().chain(LEFT_OUT).map(|t| (*t).to_owned()).collect();
        let missing: Vec<&String> = found.difference(&named).collect();
        assert!(
            missing.is_empty(),
            "tables the copy neither copies nor leaves out (add them to store::copy::TABLES, \
             after the tables they refer to, or to LEFT_OUT): {missing:?}"
        );
        assert_eq!(found, named, "TABLES and LEFT_OUT name tables the schema does not have");
        for (at, table) in TABLES.iter().enumerate() {
            let parents: Vec<String> =
                sqlx::query_scalar("SELECT \"table\" FROM pragma_foreign_key_list($1)")
                    .bind(*table)
                    .fetch_all(&mut *conn)
                    .await
                    .unwrap();
            for parent in parents {
                let before = TABLES.iter().position(|t| *t == parent);
                assert!(
                    before.is_some_and(|p| p < at),
                    "`{table}` refers to `{parent}`, which TABLES must list before it"
                );
            }
        }
        drop(conn);
        if let Some(pg) = postgres().await {
            let mut conn = pg.pool.acquire().await.unwrap();
            assert_eq!(tables(&mut conn, Backend::Postgres).await.unwrap(), named);
        }
    }

    #[tokio::test]
    async fn every_row_and_value_is_copied_to_sqlite_and_postgres_and_back() {
        let dir = tempfile::tempdir().unwrap();
        let (source, _) = sqlite(&dir, "source.db").await;
        run(&source, FIXTURE).await;
        let expected = dump(&source).await;
        for (table, rows) in &expected {
            assert!(!rows.is_empty(), "the fixture has no row in `{table}`: add one");
        }
        assert!(expected["deliveries"].len() >= 900);

        let (copy1, _) = sqlite(&dir, "copy.db").await;
        let report = copy(&source, &copy1, 7).await.unwrap();
        assert_eq!(dump(&copy1).await, expected);
        let rows: BTreeMap<String, u64> = report.tables.iter().cloned().collect();
        assert_eq!(rows["deliveries"], 900);
        assert_eq!(rows["subscribers"], 300);
        assert_eq!(rows.len(), TABLES.len());
        assert_eq!(
            count(&mut copy1.pool.acquire().await.unwrap(), "daemon_lease").await.unwrap(),
            0
        );
        assert!(report.next_ids.contains(&("subscribers".to_owned(), 1000)), "{report:?}");
        assert_eq!(next_id(&copy1, "subscribers").await, 1001);

        let Some(pg) = postgres().await else { return };
        let report = copy(&source, &pg, 7).await.unwrap();
        assert_eq!(dump(&pg).await, expected);
        let next: BTreeMap<String, i64> = report.next_ids.iter().cloned().collect();
        assert_eq!(
            next,
            BTreeMap::from([
                ("articles".to_owned(), 90),
                ("bounce_events".to_owned(), 2),
                ("editions".to_owned(), 9),
                ("signups".to_owned(), 11),
                ("subscribers".to_owned(), 1000),
            ])
        );
        for (table, id) in next {
            assert_eq!(next_id(&pg, &table).await, id + 1, "{table}");
        }

        // And back: PostgreSQL into SQLite, with its ids' high-water mark.
        let (back, _) = sqlite(&dir, "back.db").await;
        copy(&pg, &back, 100).await.unwrap();
        assert_eq!(dump(&back).await, expected);
        assert_eq!(next_id(&back, "subscribers").await, 1002, "the copy's own nextval counted");
    }

    #[tokio::test]
    async fn a_target_with_a_row_is_refused_and_left_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let (source, _) = sqlite(&dir, "source.db").await;
        run(&source, FIXTURE).await;
        let (target, _) = sqlite(&dir, "target.db").await;
        run(&target, &["INSERT INTO websub_pending (feed_url) VALUES ('https://x/feed.xml')"])
            .await;
        let before = counts(&target).await;
        let e = copy(&source, &target, 50).await.unwrap_err();
        assert!(
            matches!(&e, CopyError::NotEmpty { table, rows: 1 } if table == "websub_pending"),
            "{e:?}"
        );
        assert!(e.to_string().contains("table `websub_pending` holds 1 row(s)"), "{e}");
        assert_eq!(counts(&target).await, before);
        // The lease counts too: a daemon runs on that store.
        let (leased, _) = sqlite(&dir, "leased.db").await;
        run(&leased, &[FIXTURE[FIXTURE.len() - 1]]).await;
        let e = copy(&source, &leased, 50).await.unwrap_err();
        assert!(
            matches!(&e, CopyError::NotEmpty { table, .. } if table == "daemon_lease"),
            "{e:?}"
        );
    }

    #[tokio::test]
    async fn a_column_or_table_on_one_side_only_is_named_and_nothing_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let (source, _) = sqlite(&dir, "source.db").await;
        run(&source, FIXTURE).await;

        let (target, _) = sqlite(&dir, "wider.db").await;
        run(&target, &["ALTER TABLE editions ADD COLUMN later TEXT"]).await;
        let e = copy(&source, &target, 50).await.unwrap_err();
        assert!(
            matches!(&e, CopyError::Column { table, column, present: Side::Target, .. }
                if table == "editions" && column == "later"),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "column `later` of table `editions` is in the target but not in the source: \
             both must be migrated by the same herald; nothing was copied"
        );
        assert!(counts(&target).await.iter().all(|(_, n)| *n == 0));

        let (narrow, _) = sqlite(&dir, "narrow.db").await;
        run(&source, &["ALTER TABLE signups ADD COLUMN later INTEGER"]).await;
        let e = copy(&source, &narrow, 50).await.unwrap_err();
        assert!(
            matches!(&e, CopyError::Column { table, column, present: Side::Source, .. }
                if table == "signups" && column == "later"),
            "{e:?}"
        );

        let (other, _) = sqlite(&dir, "other.db").await;
        run(&other, &["ALTER TABLE signups ADD COLUMN later TEXT"]).await;
        let e = copy(&source, &other, 50).await.unwrap_err();
        assert!(matches!(&e, CopyError::ColumnKind { .. }), "{e:?}");
        assert!(e.to_string().contains("`later` of table `signups` holds integers"), "{e}");

        // A table the target has beside herald's is none of the copy's business.
        run(&narrow, &["CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)"]).await;
        run(&narrow, &["INSERT INTO notes (body) VALUES ('not herald''s')"]).await;
        let (clean, _) = sqlite(&dir, "clean.db").await;
        run(&clean, FIXTURE).await;
        copy(&clean, &narrow, 50).await.unwrap();
        let (narrow, _) = sqlite(&dir, "narrow2.db").await;

        run(&source, &["CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)"]).await;
        let e = copy(&source, &narrow, 50).await.unwrap_err();
        assert!(matches!(&e, CopyError::UnknownTable { table } if table == "notes"), "{e:?}");
        assert!(counts(&narrow).await.iter().all(|(_, n)| *n == 0));
    }

    #[tokio::test]
    async fn a_value_of_the_wrong_kind_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let (source, _) = sqlite(&dir, "source.db").await;
        run(
            &source,
            &["INSERT INTO feed_aggregators (name, subscribers, seen_at)
                        VALUES ('Feedly', 'many', '2026-11-24T06:00:00.000000Z')"],
        )
        .await;
        let (target, _) = sqlite(&dir, "target.db").await;
        let e = copy(&source, &target, 50).await.unwrap_err();
        assert!(
            matches!(&e, CopyError::Value { table, column, .. }
                if table == "feed_aggregators" && column == "subscribers"),
            "{e:?}"
        );
        assert!(counts(&target).await.iter().all(|(_, n)| *n == 0));
    }
}
