//! Stage runs (for `herald status`), source states, and settings.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{parse_opt_ts, parse_ts, ts, Result, Store};

#[derive(Debug, Clone)]
pub struct StageRun {
    pub stage: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub ok: bool,
    pub summary: String,
}

#[derive(Debug, Clone)]
pub struct SourceState {
    pub name: String,
    pub kind: String,
    pub last_fetch: Option<DateTime<Utc>>,
    pub last_success: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub consecutive_failures: i64,
    pub articles: i64,
}

impl Store {
    pub async fn record_stage(&self, run: &StageRun) -> Result<()> {
        sqlx::query(
            "INSERT INTO stage_runs (stage, started_at, finished_at, ok, summary) VALUES (?, ?, ?, ?, ?)
             ON CONFLICT (stage) DO UPDATE SET started_at = excluded.started_at,
               finished_at = excluded.finished_at, ok = excluded.ok, summary = excluded.summary",
        )
        .bind(&run.stage)
        .bind(ts(run.started_at))
        .bind(ts(run.finished_at))
        .bind(run.ok)
        .bind(&run.summary)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn stage_runs(&self) -> Result<Vec<StageRun>> {
        let rows =
            sqlx::query("SELECT stage, started_at, finished_at, ok, summary FROM stage_runs")
                .fetch_all(&self.pool)
                .await?;
        rows.into_iter()
            .map(|r| {
                Ok(StageRun {
                    stage: r.try_get("stage")?,
                    started_at: parse_ts(&r.try_get::<String, _>("started_at")?)?,
                    finished_at: parse_ts(&r.try_get::<String, _>("finished_at")?)?,
                    ok: r.try_get("ok")?,
                    summary: r.try_get("summary")?,
                })
            })
            .collect()
    }

    /// Records the outcome of collecting one source.
    pub async fn record_source(
        &self,
        name: &str,
        kind: &str,
        now: DateTime<Utc>,
        outcome: std::result::Result<(), &str>,
    ) -> Result<()> {
        let (success, error) = match outcome {
            Ok(()) => (Some(ts(now)), None),
            Err(e) => (None, Some(e.to_owned())),
        };
        sqlx::query(
            "INSERT INTO sources (name, kind, last_fetch, last_success, last_error, consecutive_failures)
             VALUES (?1, ?2, ?3, ?4, ?5, CASE WHEN ?5 IS NULL THEN 0 ELSE 1 END)
             ON CONFLICT (name) DO UPDATE SET kind = excluded.kind, last_fetch = excluded.last_fetch,
               last_success = COALESCE(excluded.last_success, sources.last_success),
               last_error = excluded.last_error,
               consecutive_failures = CASE WHEN excluded.last_error IS NULL THEN 0
                                           ELSE sources.consecutive_failures + 1 END",
        )
        .bind(name)
        .bind(kind)
        .bind(ts(now))
        .bind(success)
        .bind(error)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// (last success, failures in a row) of one source; `None` before its
    /// first collect.
    pub async fn source_health(&self, name: &str) -> Result<Option<(Option<DateTime<Utc>>, i64)>> {
        let row: Option<(Option<String>, i64)> =
            sqlx::query_as("SELECT last_success, consecutive_failures FROM sources WHERE name = ?")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
        row.map(|(success, failures)| Ok((parse_opt_ts(success)?, failures))).transpose()
    }

    /// The ETag and Last-Modified a feed source last answered with.
    pub async fn source_validators(&self, name: &str) -> Result<(Option<String>, Option<String>)> {
        Ok(sqlx::query_as::<_, (Option<String>, Option<String>)>(
            "SELECT etag, last_modified FROM sources WHERE name = ?",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?
        .unwrap_or((None, None)))
    }

    /// Keeps the validators of a fetch for the next conditional GET.
    pub async fn set_source_validators(
        &self,
        name: &str,
        etag: Option<&str>,
        last_modified: Option<&str>,
    ) -> Result<()> {
        sqlx::query("UPDATE sources SET etag = ?, last_modified = ? WHERE name = ?")
            .bind(etag)
            .bind(last_modified)
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn source_states(&self) -> Result<Vec<SourceState>> {
        let rows = sqlx::query(
            "SELECT s.name, s.kind, s.last_fetch, s.last_success, s.last_error, s.consecutive_failures,
                    (SELECT COUNT(*) FROM articles a WHERE a.source = s.name) AS articles
             FROM sources s ORDER BY s.name",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok(SourceState {
                    name: r.try_get("name")?,
                    kind: r.try_get("kind")?,
                    last_fetch: parse_opt_ts(r.try_get("last_fetch")?)?,
                    last_success: parse_opt_ts(r.try_get("last_success")?)?,
                    last_error: r.try_get("last_error")?,
                    consecutive_failures: r.try_get("consecutive_failures")?,
                    articles: r.try_get("articles")?,
                })
            })
            .collect()
    }

    pub async fn setting(&self, key: &str) -> Result<Option<String>> {
        Ok(sqlx::query_scalar("SELECT value FROM settings WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?)
    }

    pub async fn set_setting(&self, key: &str, value: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO settings (key, value) VALUES (?, ?)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn delete_setting(&self, key: &str) -> Result<()> {
        sqlx::query("DELETE FROM settings WHERE key = ?").bind(key).execute(&self.pool).await?;
        Ok(())
    }

    /// Sets `key` to `value` unless it already has a value; returns the value in force.
    pub async fn setting_or_insert(&self, key: &str, value: &str) -> Result<String> {
        sqlx::query("INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING")
            .bind(key)
            .bind(value)
            .execute(&self.pool)
            .await?;
        Ok(self.setting(key).await?.unwrap_or_else(|| value.to_owned()))
    }
}
