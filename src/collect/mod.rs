//! The collect stage: reads every configured source, normalises what it
//! finds into `Article`s and upserts them into the store. This is the one
//! place that decides an article is new: a (source, guid) the store has not
//! seen. A broken file or source is reported and skipped; the rest goes on.

pub mod dir;
pub mod feed;
pub mod fetch;
mod front_matter;
pub mod sanitize;

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use chrono::{DateTime, Utc};

use crate::config::{Config, SourceKind};
use crate::store::{SourceOutcome, SourceState, SourceUpdate, Store, StoreError, Upsert};

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
    /// Articles taken down because their file was deleted or made a draft.
    pub retracted: usize,
    /// Articles taken down earlier whose file is back.
    pub restored: usize,
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
    pub fn retracted_articles(&self) -> usize {
        self.sources.iter().map(|s| s.retracted).sum()
    }
    pub fn restored_articles(&self) -> usize {
        self.sources.iter().map(|s| s.restored).sum()
    }
    /// Whether the published site needs a publish to show what changed.
    pub fn changed(&self) -> bool {
        self.new_articles()
            + self.updated_articles()
            + self.retracted_articles()
            + self.restored_articles()
            > 0
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
///
/// Every source's state is read in one query first. Fetching and parsing
/// run concurrently (parsing on the blocking pool); one writer records what
/// they give, committing whatever has arrived in one transaction, so the
/// store is not what the sources wait on.
pub async fn collect(
    config: &Config,
    store: &Store,
    now: DateTime<Utc>,
) -> Result<CollectReport, CollectError> {
    let mut report = CollectReport::default();
    let states: HashMap<String, SourceState> =
        store.source_states().await?.into_iter().map(|s| (s.name.clone(), s)).collect();
    for source in &config.sources {
        let SourceKind::Dir { path } = &source.kind else { continue };
        let name = source.name.to_string();
        // Which file owns each stored article: a slug stays with the file
        // that claimed it first, and an article whose file is gone is taken
        // down.
        let owners = store.dir_owners(&name).await?;
        let (path, tags, base, task_name) =
            (path.clone(), source.tags.clone(), config.site.base_url.clone(), name.clone());
        let read = tokio::task::spawn_blocking(move || {
            dir::read_dir_files(&task_name, &path, &tags, &base)
                .map(|read| dir::resolve(read, &owners))
        })
        .await
        .map_err(|e| CollectError::Task { source_name: name.clone(), message: e.to_string() })?;
        let done = match read {
            Ok(resolved) => {
                for p in &resolved.problems {
                    tracing::debug!(source = %name, "skipped {p}");
                }
                report.problems.extend(resolved.problems);
                let (articles, files): (Vec<_>, Vec<_>) =
                    resolved.articles.into_iter().filter(|(a, _)| source.keeps(a)).unzip();
                let outcome =
                    SourceOutcome::Collected { etag: None, last_modified: None, moved_to: None };
                let mut done = Done::update(&name, "dir", articles, outcome, None);
                if let Done::Update { update, .. } = &mut done {
                    update.files = files;
                    update.withdrawals = resolved.withdrawals;
                }
                done
            }
            Err(message) => {
                tracing::error!(source = %name, "cannot collect: {message}");
                let outcome =
                    SourceOutcome::Failed { error: message.clone(), next_try: None, gone: false };
                Done::update(&name, "dir", Vec::new(), outcome, Some(message))
            }
        };
        report.sources.extend(record(store, vec![done], now).await?);
    }

    let feeds: Vec<&crate::config::Source> =
        config.sources.iter().filter(|s| matches!(s.kind, SourceKind::Feed { .. })).collect();
    if feeds.is_empty() {
        return Ok(report);
    }
    let agent = format!("herald/{} (+{})", env!("CARGO_PKG_VERSION"), config.site.base_url);
    let fetcher = fetch::Fetcher::new(&config.collect, &agent)
        .map_err(|message| CollectError::Task { source_name: "feeds".into(), message })?;
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<Done>(256);
    let fetching = async {
        use futures_util::stream::{self, StreamExt};
        let sender = sender; // dropped at the end, which ends the writer
                             // The futures are made by a plain iterator, not a stream's closure,
                             // so the whole collect stays Send (the daemon spawns it).
        let fetches: Vec<_> = feeds
            .iter()
            .map(|source| {
                collect_feed(config, &fetcher, source, states.get(source.name.as_str()), now)
            })
            .collect();
        let mut results = stream::iter(fetches).buffer_unordered(config.collect.concurrency);
        while let Some(done) = results.next().await {
            // The writer is gone only after a store error: stop fetching.
            if sender.send(done).await.is_err() {
                break;
            }
        }
    };
    let writing = async {
        let mut reports = Vec::new();
        while let Some(first) = receiver.recv().await {
            let mut batch = vec![first];
            let mut articles = batch[0].articles();
            while articles < 10_000 {
                let Ok(more) = receiver.try_recv() else { break };
                articles += more.articles();
                batch.push(more);
            }
            reports.extend(record(store, batch, now).await?);
        }
        Ok::<_, CollectError>(reports)
    };
    let (_, written) = tokio::join!(fetching, writing);
    let mut feed_reports = written?;
    feed_reports.sort_by(|a, b| a.name.cmp(&b.name));
    report.sources.extend(feed_reports);
    Ok(report)
}

/// What one source gave: an update for the store, or only a report (a
/// source skipped while it backs off or after a 410).
enum Done {
    Update { update: SourceUpdate, error: Option<String> },
    Skipped(SourceReport),
}

impl Done {
    fn update(
        name: &str,
        kind: &'static str,
        articles: Vec<crate::article::Article>,
        outcome: SourceOutcome,
        error: Option<String>,
    ) -> Self {
        let update = SourceUpdate {
            name: name.to_owned(),
            kind,
            articles,
            files: Vec::new(),
            withdrawals: Vec::new(),
            back_catalogue: Vec::new(),
            known_empty: false,
            outcome,
        };
        Done::Update { update, error }
    }

    fn articles(&self) -> usize {
        match self {
            Done::Update { update, .. } => update.articles.len(),
            Done::Skipped(_) => 0,
        }
    }
}

/// Records some sources' outcomes in one transaction; their reports.
async fn record(
    store: &Store,
    batch: Vec<Done>,
    now: DateTime<Utc>,
) -> Result<Vec<SourceReport>, CollectError> {
    let mut reports = Vec::with_capacity(batch.len());
    let mut updates = Vec::with_capacity(batch.len());
    let mut errors = Vec::with_capacity(batch.len());
    for done in batch {
        match done {
            Done::Skipped(report) => reports.push(report),
            Done::Update { update, error } => {
                updates.push(update);
                errors.push(error);
            }
        }
    }
    let outcomes = store.record_sources(&updates, now).await?;
    for ((update, error), recorded) in updates.iter().zip(errors).zip(outcomes) {
        let mut r = SourceReport {
            name: update.name.clone(),
            error,
            retracted: recorded.withdrawn,
            ..Default::default()
        };
        for w in &update.withdrawals {
            tracing::debug!(source = %r.name, guid = %w.guid, reason = w.reason.as_str(), "withdrawn");
        }
        for (article, outcome) in update.articles.iter().zip(recorded.upserts) {
            match outcome {
                Upsert::Inserted => {
                    tracing::debug!(source = %r.name, guid = %article.guid, "new article");
                    r.new += 1;
                }
                Upsert::Updated => {
                    tracing::debug!(source = %r.name, guid = %article.guid, "updated article");
                    r.updated += 1;
                }
                Upsert::Restored => {
                    tracing::debug!(source = %r.name, guid = %article.guid, "article back");
                    r.restored += 1;
                }
                Upsert::Unchanged => r.unchanged += 1,
            }
        }
        if r.error.is_none() {
            tracing::info!(
                source = %r.name,
                new = r.new,
                updated = r.updated,
                unchanged = r.unchanged,
                retracted = r.retracted,
                restored = r.restored,
                "collected"
            );
        }
        reports.push(r);
    }
    Ok(reports)
}

/// Fetches and parses one feed source. A failure is reported on the source
/// (and backs it off); it never stops the others.
async fn collect_feed(
    config: &Config,
    fetcher: &fetch::Fetcher,
    source: &crate::config::Source,
    state: Option<&SourceState>,
    now: DateTime<Utc>,
) -> Done {
    let name = source.name.to_string();
    let SourceKind::Feed { url, allow_private } = &source.kind else {
        return Done::Skipped(SourceReport { name, ..Default::default() });
    };
    if let Some(when) = state.and_then(|s| s.gone_since.as_ref()) {
        return Done::Skipped(SourceReport {
            error: Some(format!(
                "disabled: the feed answered 410 Gone on {when}; remove the source from the config"
            )),
            name,
            ..Default::default()
        });
    }
    if let Some(next) = state.and_then(|s| s.next_try).filter(|next| *next > now) {
        tracing::info!(source = %name, "backing off until {next}");
        return Done::Skipped(SourceReport { name, ..Default::default() });
    }
    // A permanent redirect (301, 308) moved the feed: use where it went.
    let moved = state.and_then(|s| s.moved_to.as_deref()).and_then(|u| url::Url::parse(u).ok());
    let target = moved.as_ref().unwrap_or(url);
    let (etag, last_modified) =
        state.map_or((None, None), |s| (s.etag.as_deref(), s.last_modified.as_deref()));
    let failure = |error: String, next_try: Option<DateTime<Utc>>, gone: bool| {
        let outcome = SourceOutcome::Failed { error: error.clone(), next_try, gone };
        Done::update(&name, "feed", Vec::new(), outcome, Some(error))
    };
    let error = match fetcher.fetch(target, *allow_private, etag, last_modified).await {
        Ok(fetch::Fetched::NotModified) => {
            return Done::update(&name, "feed", Vec::new(), SourceOutcome::NotModified, None);
        }
        Ok(fetch::Fetched::Body { bytes, etag, last_modified, moved_to }) => {
            let (source_name, feed_url, tags) = (name.clone(), target.clone(), source.tags.clone());
            let base_url = config.site.base_url.clone();
            let parsed = tokio::task::spawn_blocking(move || {
                let options = feed::ParseOptions {
                    source: &source_name,
                    feed_url: &feed_url,
                    source_tags: &tags,
                    base_url: &base_url,
                    now,
                };
                feed::parse_feed(&bytes, &options).map_err(|e| e.to_string())
            })
            .await
            .unwrap_or_else(|e| Err(format!("parsing stopped unexpectedly: {e}")));
            match parsed {
                Ok(mut articles) => {
                    articles.retain(|a| source.keeps(a));
                    if let Some(moved_to) = &moved_to {
                        tracing::warn!(source = %name, "the feed moved permanently to {moved_to}; fetching it there from now on");
                    }
                    let outcome = SourceOutcome::Collected {
                        etag,
                        last_modified,
                        moved_to: moved_to.map(|u| u.to_string()),
                    };
                    // The first time, only the newest `backfill` entries are
                    // news; the back catalogue goes to the feeds alone.
                    let back_catalogue = if state.is_none_or(|s| s.last_success.is_none()) {
                        back_catalogue(&articles, source.backfill)
                    } else {
                        Vec::new()
                    };
                    if !back_catalogue.is_empty() {
                        tracing::info!(source = %name, "first collect: {} older entries go to the feeds, not the next digest (backfill = {})", back_catalogue.len(), source.backfill);
                    }
                    let update = SourceUpdate {
                        name: name.clone(),
                        kind: "feed",
                        articles,
                        files: Vec::new(),
                        withdrawals: Vec::new(),
                        back_catalogue,
                        known_empty: state.is_none_or(|s| s.articles == 0),
                        outcome,
                    };
                    return Done::Update { update, error: None };
                }
                Err(e) => e,
            }
        }
        Ok(fetch::Fetched::Gone) => {
            let error = "410 Gone: the feed was removed upstream; the source is disabled";
            tracing::error!(source = %name, "{error}");
            return failure(error.to_owned(), None, true);
        }
        Ok(fetch::Fetched::RetryAfter { seconds, status }) => {
            let next = now + chrono::Duration::seconds(i64::try_from(seconds).unwrap_or(3600));
            tracing::warn!(source = %name, "HTTP {status}: the server asked to come back after {next}");
            return failure(format!("HTTP {status}: retrying after {next}"), Some(next), false);
        }
        Err(e) => e.to_string(),
    };
    // Back off exponentially: 1 min, 2, 4, … up to 6 h.
    let failures = state.map_or(0, |s| s.consecutive_failures) + 1;
    let wait = (60i64 << (failures - 1).clamp(0, 9)).min(6 * 3600);
    let next = now + chrono::Duration::seconds(wait);
    let message =
        format!("{error} (fetching {target}; failure {failures} in a row, next try after {next})");
    if failures >= config.collect.error_after {
        tracing::error!(source = %name, "{message}");
    } else {
        tracing::warn!(source = %name, "{message}");
    }
    let outcome = SourceOutcome::Failed { error, next_try: Some(next), gone: false };
    Done::update(&name, "feed", Vec::new(), outcome, Some(message))
}

/// The guids of a new feed's entries beyond its newest `backfill`.
fn back_catalogue(articles: &[crate::article::Article], backfill: usize) -> Vec<String> {
    let mut by_date: Vec<&crate::article::Article> = articles.iter().collect();
    by_date.sort_by(|a, b| b.published.cmp(&a.published).then(a.url.cmp(&b.url)));
    by_date.iter().skip(backfill).map(|a| a.guid.clone()).collect()
}
