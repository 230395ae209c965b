//! The collect stage: reads every configured source, normalises what it
//! finds into `Article`s and upserts them into the store. This is the one
//! place that decides an article is new: a (source, guid) the store has not
//! seen. A broken file or source is reported and skipped; the rest goes on.

pub mod dir;
pub mod feed;
pub mod fetch;
pub mod sanitize;

use std::fmt;
use std::path::Path;

use chrono::{DateTime, Utc};

use crate::config::{Config, SourceKind};
use crate::store::{Store, StoreError, Upsert};

/// Something in a source that was skipped, with its place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub line: Option<usize>,
    pub message: String,
}

impl Problem {
    pub fn new(path: &Path, line: Option<usize>, message: String) -> Self {
        Self { path: path.display().to_string(), line, message }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.path, self.message),
            None => write!(f, "{}: {}", self.path, self.message),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct SourceReport {
    pub name: String,
    pub new: usize,
    pub updated: usize,
    pub unchanged: usize,
    /// Set when the whole source failed (its folder is missing, …).
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct CollectReport {
    pub sources: Vec<SourceReport>,
    pub problems: Vec<Problem>,
}

impl CollectReport {
    pub fn new_articles(&self) -> usize {
        self.sources.iter().map(|s| s.new).sum()
    }
    pub fn updated_articles(&self) -> usize {
        self.sources.iter().map(|s| s.updated).sum()
    }
    pub fn failed_sources(&self) -> usize {
        self.sources.iter().filter(|s| s.error.is_some()).count()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("reading source `{source_name}` stopped unexpectedly: {message}")]
    Task { source_name: String, message: String },
}

/// Collects every source: folders one after the other, feeds concurrently
/// (`collect.concurrency`). Problems in files and failed sources are in the
/// report; only a store failure stops the stage.
pub async fn collect(
    config: &Config,
    store: &Store,
    now: DateTime<Utc>,
) -> Result<CollectReport, CollectError> {
    let mut report = CollectReport::default();
    let feeds: Vec<&crate::config::Source> =
        config.sources.iter().filter(|s| matches!(s.kind, SourceKind::Feed { .. })).collect();
    let fetcher = if feeds.is_empty() {
        None
    } else {
        let agent = format!("herald/{} (+{})", env!("CARGO_PKG_VERSION"), config.site.base_url);
        Some(
            fetch::Fetcher::new(&config.collect, &agent)
                .map_err(|message| CollectError::Task { source_name: "feeds".into(), message })?,
        )
    };
    for source in &config.sources {
        let SourceKind::Dir { path } = &source.kind else { continue };
        let name = source.name.to_string();
        let (path, tags, base, task_name) =
            (path.clone(), source.tags.clone(), config.site.base_url.clone(), name.clone());
        let read = tokio::task::spawn_blocking(move || {
            dir::read_dir_source(&task_name, &path, &tags, &base)
        })
        .await
        .map_err(|e| CollectError::Task { source_name: name.clone(), message: e.to_string() })?;
        let source_report = match read {
            Ok((mut articles, problems)) => {
                articles.retain(|a| source.keeps(a));
                for p in &problems {
                    tracing::debug!(source = %name, "skipped {p}");
                }
                report.problems.extend(problems);
                store_articles(store, &name, "dir", &articles, now).await?
            }
            Err(message) => {
                tracing::error!(source = %name, "cannot collect: {message}");
                store.record_source(&name, "dir", now, Err(&message)).await?;
                SourceReport { name: name.clone(), error: Some(message), ..Default::default() }
            }
        };
        report.sources.push(source_report);
    }
    if let Some(fetcher) = &fetcher {
        use futures_util::stream::{self, StreamExt};
        let results: Vec<Result<SourceReport, CollectError>> = stream::iter(feeds)
            .map(|source| collect_feed(config, store, fetcher, source, now))
            .buffer_unordered(config.collect.concurrency)
            .collect()
            .await;
        let mut feed_reports = results.into_iter().collect::<Result<Vec<_>, _>>()?;
        feed_reports.sort_by(|a, b| a.name.cmp(&b.name));
        report.sources.extend(feed_reports);
    }
    Ok(report)
}

/// Upserts one source's articles and records its success.
async fn store_articles(
    store: &Store,
    name: &str,
    kind: &str,
    articles: &[crate::article::Article],
    now: DateTime<Utc>,
) -> Result<SourceReport, CollectError> {
    let mut source_report = SourceReport { name: name.to_owned(), ..Default::default() };
    let outcomes = store.upsert_articles(articles, now).await?;
    for (article, outcome) in articles.iter().zip(&outcomes) {
        match outcome {
            Upsert::Inserted => {
                tracing::debug!(source = %name, guid = %article.guid, "new article");
                source_report.new += 1;
            }
            Upsert::Updated => {
                tracing::debug!(source = %name, guid = %article.guid, "updated article");
                source_report.updated += 1;
            }
            Upsert::Unchanged => source_report.unchanged += 1,
        }
    }
    store.record_source(name, kind, now, Ok(())).await?;
    tracing::info!(
        source = %name,
        new = source_report.new,
        updated = source_report.updated,
        unchanged = source_report.unchanged,
        "collected"
    );
    Ok(source_report)
}

/// The settings keys of a feed source's fetch state.
fn key(what: &str, source: &str) -> String {
    format!("source-{what}:{source}")
}

/// Fetches, parses and stores one feed source. A failure is recorded on the
/// source (and backs it off); it never stops the others.
async fn collect_feed(
    config: &Config,
    store: &Store,
    fetcher: &fetch::Fetcher,
    source: &crate::config::Source,
    now: DateTime<Utc>,
) -> Result<SourceReport, CollectError> {
    let name = source.name.to_string();
    let SourceKind::Feed { url, allow_private } = &source.kind else {
        return Ok(SourceReport { name, ..Default::default() });
    };
    let failed = |message: String| SourceReport {
        name: name.clone(),
        error: Some(message),
        ..Default::default()
    };
    if let Some(when) = store.setting(&key("gone", &name)).await? {
        return Ok(failed(format!(
            "disabled: the feed answered 410 Gone on {when}; remove the source from the config"
        )));
    }
    if let Some(next) = store.setting(&key("next-try", &name)).await? {
        if next.as_str() > crate::store::ts_text(now).as_str() {
            tracing::info!(source = %name, "backing off until {next}");
            return Ok(SourceReport { name, ..Default::default() });
        }
    }
    // A permanent redirect (301, 308) moved the feed: use where it went.
    let moved = store.setting(&key("url", &name)).await?.and_then(|u| url::Url::parse(&u).ok());
    let target = moved.as_ref().unwrap_or(url);
    let (etag, last_modified) = store.source_validators(&name).await?;
    let outcome =
        fetcher.fetch(target, *allow_private, etag.as_deref(), last_modified.as_deref()).await;
    let error = match outcome {
        Ok(fetch::Fetched::NotModified) => {
            store.record_source(&name, "feed", now, Ok(())).await?;
            store.delete_setting(&key("next-try", &name)).await?;
            return Ok(SourceReport { name, ..Default::default() });
        }
        Ok(fetch::Fetched::Body { bytes, etag, last_modified, moved_to }) => {
            let options = feed::ParseOptions {
                source: &name,
                feed_url: target,
                source_tags: &source.tags,
                now,
            };
            match feed::parse_feed(&bytes, &options) {
                Ok(mut articles) => {
                    articles.retain(|a| source.keeps(a));
                    // The first time, only the newest `backfill` entries are
                    // news; the back catalogue goes to the feeds alone.
                    let first = store
                        .source_health(&name)
                        .await?
                        .is_none_or(|(success, _)| success.is_none());
                    let report = store_articles(store, &name, "feed", &articles, now).await?;
                    if first {
                        let mut by_date: Vec<&crate::article::Article> = articles.iter().collect();
                        by_date
                            .sort_by(|a, b| b.published.cmp(&a.published).then(a.url.cmp(&b.url)));
                        let back: Vec<String> =
                            by_date.iter().skip(source.backfill).map(|a| a.guid.clone()).collect();
                        if !back.is_empty() {
                            tracing::info!(source = %name, "first collect: {} older entries go to the feeds, not the next digest (backfill = {})", back.len(), source.backfill);
                            store.exclude_from_digests(&name, &back).await?;
                        }
                    }
                    store
                        .set_source_validators(&name, etag.as_deref(), last_modified.as_deref())
                        .await?;
                    store.delete_setting(&key("next-try", &name)).await?;
                    if let Some(moved_to) = moved_to {
                        tracing::warn!(source = %name, "the feed moved permanently to {moved_to}; fetching it there from now on");
                        store.set_setting(&key("url", &name), moved_to.as_str()).await?;
                    }
                    return Ok(report);
                }
                Err(e) => e.to_string(),
            }
        }
        Ok(fetch::Fetched::Gone) => {
            store.set_setting(&key("gone", &name), &now.format("%Y-%m-%d").to_string()).await?;
            "410 Gone: the feed was removed upstream; the source is disabled".to_string()
        }
        Ok(fetch::Fetched::RetryAfter { seconds, status }) => {
            let next = now + chrono::Duration::seconds(i64::try_from(seconds).unwrap_or(3600));
            store.set_setting(&key("next-try", &name), &crate::store::ts_text(next)).await?;
            store
                .record_source(
                    &name,
                    "feed",
                    now,
                    Err(&format!("HTTP {status}: retrying after {next}")),
                )
                .await?;
            return Ok(failed(format!(
                "HTTP {status}: the server asked to come back after {next}"
            )));
        }
        Err(e) => e.to_string(),
    };
    // Back off exponentially: 1 min, 2, 4, … up to 6 h.
    let failures = store.source_health(&name).await?.map_or(0, |(_, failures)| failures) + 1;
    let wait = (60i64 << (failures - 1).clamp(0, 9)).min(6 * 3600);
    let next = now + chrono::Duration::seconds(wait);
    store.set_setting(&key("next-try", &name), &crate::store::ts_text(next)).await?;
    store.record_source(&name, "feed", now, Err(&error)).await?;
    let message =
        format!("{error} (fetching {target}; failure {failures} in a row, next try after {next})");
    if failures >= config.collect.error_after {
        tracing::error!(source = %name, "{message}");
    } else {
        tracing::warn!(source = %name, "{message}");
    }
    Ok(failed(message))
}
