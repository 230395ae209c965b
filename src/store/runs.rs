//! Stage runs (for `herald status`), source states, and settings.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::articles::{upsert_in, Upserting};
use super::retractions::{withdraw_in, Withdrawal};
use super::{parse_opt_ts, parse_ts, ts, During, Result, Store, Upsert};
use crate::article::Article;

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
    /// The validators of the last fetch, for the next conditional GET.
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// A failing feed is not fetched again before this time.
    pub next_try: Option<DateTime<Utc>>,
    /// Where a permanent redirect (301, 308) moved the feed.
    pub moved_to: Option<String>,
    /// The date the feed answered 410 Gone; it is not fetched again.
    pub gone_since: Option<String>,
}

/// What recording one source did to its articles.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recorded {
    /// Each article's upsert outcome, in the order of its articles.
    pub upserts: Vec<Upsert>,
    /// Articles taken down that were published until now.
    pub withdrawn: usize,
}

/// What collecting one source gave, for [`Store::record_sources`].
#[derive(Debug, Clone)]
pub struct SourceUpdate {
    pub name: String,
    /// `dir` or `feed`.
    pub kind: &'static str,
    pub articles: Vec<Article>,
    /// For a `dir` source, the file that owns each article (relative to
    /// the folder, in the order of `articles`); empty for a feed.
    pub files: Vec<String>,
    /// Articles collect takes down (a `dir` source's deleted and drafted
    /// files).
    pub withdrawals: Vec<Withdrawal>,
    /// Guids kept out of digests: a new feed's back catalogue.
    pub back_catalogue: Vec<String>,
    /// The store held none of this source's articles when its state was
    /// read (`SourceState::articles` was 0), so every article is new and the
    /// store need not be asked. (Should another process have stored some
    /// since, the insert fails on the unique key and nothing is recorded.)
    pub known_empty: bool,
    pub outcome: SourceOutcome,
}

#[derive(Debug, Clone)]
pub enum SourceOutcome {
    /// Read from its folder, or fetched with a body and parsed.
    Collected { etag: Option<String>, last_modified: Option<String>, moved_to: Option<String> },
    /// The feed answered 304 Not Modified.
    NotModified,
    /// Failed; not tried again before `next_try`. `gone`: it answered 410.
    Failed { error: String, next_try: Option<DateTime<Utc>>, gone: bool },
}

/// The settings key of the store's content version.
const CONTENT_VERSION: &str = "content-version";

impl Store {
    pub async fn record_stage(&self, run: &StageRun) -> Result<()> {
        async move {
            sqlx::query(
                "INSERT INTO stage_runs (stage, started_at, finished_at, ok, summary) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (stage) DO UPDATE SET started_at = excluded.started_at,
                   finished_at = excluded.finished_at, ok = excluded.ok, summary = excluded.summary",
            )
            .bind(&run.stage)
            .bind(ts(run.started_at))
            .bind(ts(run.finished_at))
            .bind(i64::from(run.ok))
            .bind(&run.summary)
            .execute(&self.pool)
            .await?;
            Ok(())
        }
        .await
        .during(|| format!("recording the {} run", run.stage))
    }

    pub async fn stage_runs(&self) -> Result<Vec<StageRun>> {
        async move {
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
                        ok: r.try_get::<i64, _>("ok")? != 0,
                        summary: r.try_get("summary")?,
                    })
                })
                .collect::<Result<Vec<_>>>()
        }
        .await
        .during(|| "reading the stage runs".to_owned())
    }

    /// Every source's state, one query: what `herald status` shows and what
    /// a collect needs before it fetches.
    pub async fn source_states(&self) -> Result<Vec<SourceState>> {
        async move {
            let rows = sqlx::query(
                "SELECT s.name, s.kind, s.last_fetch, s.last_success, s.last_error, s.consecutive_failures,
                        s.etag, s.last_modified, s.next_try, s.moved_to, s.gone_since,
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
                        etag: r.try_get("etag")?,
                        last_modified: r.try_get("last_modified")?,
                        next_try: parse_opt_ts(r.try_get("next_try")?)?,
                        moved_to: r.try_get("moved_to")?,
                        gone_since: r.try_get("gone_since")?,
                    })
                })
                .collect::<Result<Vec<_>>>()
        }
        .await
        .during(|| "reading the sources' states".to_owned())
    }

    /// Records what collecting some sources gave, in one transaction: their
    /// articles upserted (a back catalogue inserted out of digests, a `dir`
    /// article with its file), the articles they took down, and each
    /// source's new state. Returns what was done to each update's articles.
    pub async fn record_sources(
        &self,
        updates: &[SourceUpdate],
        now: DateTime<Utc>,
    ) -> Result<Vec<Recorded>> {
        async move {
            let mut tx = self.write_tx().await?;
            let mut all: Vec<Upserting> = Vec::new();
            for u in updates {
                let back: std::collections::HashSet<&str> =
                    u.back_catalogue.iter().map(String::as_str).collect();
                let mut files = u.files.iter().map(|f| Some(f.as_str()));
                all.extend(
                    u.articles
                        .iter()
                        .map(|a| (a, !back.contains(a.guid.as_str()), files.next().flatten())),
                );
            }
            let empty = updates.iter().filter(|u| u.known_empty).map(|u| u.name.as_str()).collect();
            let mut outcomes = upsert_in(&mut tx, &all, &empty, now).await?.into_iter();
            let mut per_update = Vec::with_capacity(updates.len());
            for u in updates {
                per_update.push(Recorded {
                    upserts: outcomes.by_ref().take(u.articles.len()).collect(),
                    withdrawn: withdraw_in(&mut tx, &u.name, &u.withdrawals, now).await?,
                });
            }
            for u in updates {
                let none = (None, None);
                let (success, error, validators, next_try, moved_to, gone) = match &u.outcome {
                    SourceOutcome::Collected { etag, last_modified, moved_to } => (
                        Some(ts(now)),
                        None,
                        Some((etag, last_modified)),
                        None,
                        moved_to.as_ref(),
                        false,
                    ),
                    SourceOutcome::NotModified => (Some(ts(now)), None, None, None, None, false),
                    SourceOutcome::Failed { error, next_try, gone } => {
                        (None, Some(error), None, next_try.map(ts), None, *gone)
                    }
                };
                let (etag, last_modified) = validators.unwrap_or((&none.0, &none.1));
                sqlx::query(
                    "INSERT INTO sources (name, kind, last_fetch, last_success, last_error,
                       consecutive_failures, etag, last_modified, next_try, moved_to, gone_since)
                     VALUES ($1, $2, $3, $4, $5, CASE WHEN $5 IS NULL THEN 0 ELSE 1 END, $6, $7, $8, $9, $10)
                     ON CONFLICT (name) DO UPDATE SET kind = excluded.kind, last_fetch = excluded.last_fetch,
                       last_success = COALESCE(excluded.last_success, sources.last_success),
                       last_error = excluded.last_error,
                       consecutive_failures = CASE WHEN excluded.last_error IS NULL THEN 0
                                                   ELSE sources.consecutive_failures + 1 END,
                       etag = CASE WHEN $11 THEN excluded.etag ELSE sources.etag END,
                       last_modified = CASE WHEN $11 THEN excluded.last_modified
                                            ELSE sources.last_modified END,
                       next_try = excluded.next_try,
                       moved_to = COALESCE(excluded.moved_to, sources.moved_to),
                       gone_since = COALESCE(excluded.gone_since, sources.gone_since)",
                )
                .bind(&u.name)
                .bind(u.kind)
                .bind(ts(now))
                .bind(success)
                .bind(error)
                .bind(etag)
                .bind(last_modified)
                .bind(next_try)
                .bind(moved_to)
                .bind(gone.then(|| now.format("%Y-%m-%d").to_string()))
                .bind(validators.is_some())
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(per_update)
        }
        .await
        .during(|| format!("recording what {} source(s) gave", updates.len()))
    }

    /// The store's content version: it moves each time a node publishes,
    /// so the other nodes know to publish theirs. None before the first.
    pub async fn content_version(&self) -> Result<Option<String>> {
        self.setting(CONTENT_VERSION).await
    }

    /// Moves the content version on; returns the new one.
    pub async fn bump_content_version(&self) -> Result<String> {
        async move {
            Ok(sqlx::query_scalar(
                "INSERT INTO settings (key, value) VALUES ($1, '1')
                 ON CONFLICT (key) DO UPDATE SET value = CAST(CAST(settings.value AS BIGINT) + 1 AS TEXT)
                 RETURNING value",
            )
            .bind(CONTENT_VERSION)
            .fetch_one(&self.pool)
            .await?)
        }
        .await
        .during(|| "moving the content version on".to_owned())
    }

    pub async fn setting(&self, key: &str) -> Result<Option<String>> {
        async move {
            Ok(sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
                .bind(key)
                .fetch_optional(&self.pool)
                .await?)
        }
        .await
        .during(|| format!("reading the setting `{key}`"))
    }

    pub async fn set_setting(&self, key: &str, value: &str) -> Result<()> {
        async move {
            sqlx::query(
                "INSERT INTO settings (key, value) VALUES ($1, $2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )
            .bind(key)
            .bind(value)
            .execute(&self.pool)
            .await?;
            Ok(())
        }
        .await
        .during(|| format!("writing the setting `{key}`"))
    }

    pub async fn delete_setting(&self, key: &str) -> Result<()> {
        async move {
            sqlx::query("DELETE FROM settings WHERE key = $1")
                .bind(key)
                .execute(&self.pool)
                .await?;
            Ok(())
        }
        .await
        .during(|| format!("deleting the setting `{key}`"))
    }

    /// Sets `key` to `value` unless it already has a value; returns the value in force.
    pub async fn setting_or_insert(&self, key: &str, value: &str) -> Result<String> {
        async move {
            sqlx::query(
                "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
            )
            .bind(key)
            .bind(value)
            .execute(&self.pool)
            .await?;
            Ok(self.setting(key).await?.unwrap_or_else(|| value.to_owned()))
        }
        .await
        .during(|| format!("reading or creating the setting `{key}`"))
    }
}
