//! The collect stage: reads every configured source, normalises what it
//! finds into `Article`s and upserts them into the store. This is the one
//! place that decides an article is new: a (source, guid) the store has not
//! seen. A broken file or source is reported and skipped; the rest goes on.

pub mod dir;
pub mod feed;
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

/// Collects every source. Problems in files and failed sources are in the
/// report; only a store failure stops the stage.
pub async fn collect(
    config: &Config,
    store: &Store,
    now: DateTime<Utc>,
) -> Result<CollectReport, CollectError> {
    let mut report = CollectReport::default();
    for source in &config.sources {
        let name = source.name.to_string();
        let read = match &source.kind {
            SourceKind::Dir { path } => {
                let (path, tags, base, task_name) =
                    (path.clone(), source.tags.clone(), config.site.base_url.clone(), name.clone());
                tokio::task::spawn_blocking(move || {
                    dir::read_dir_source(&task_name, &path, &tags, &base)
                })
                .await
                .map_err(|e| CollectError::Task {
                    source_name: name.clone(),
                    message: e.to_string(),
                })?
            }
        };
        let mut source_report = SourceReport { name: name.clone(), ..Default::default() };
        match read {
            Ok((articles, problems)) => {
                for p in &problems {
                    tracing::debug!(source = %name, "skipped {p}");
                }
                report.problems.extend(problems);
                let outcomes = store.upsert_articles(&articles, now).await?;
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
                store.record_source(&name, "dir", now, Ok(())).await?;
                tracing::info!(
                    source = %name,
                    new = source_report.new,
                    updated = source_report.updated,
                    unchanged = source_report.unchanged,
                    "collected"
                );
            }
            Err(message) => {
                tracing::error!(source = %name, "cannot collect: {message}");
                store.record_source(&name, "dir", now, Err(&message)).await?;
                source_report.error = Some(message);
            }
        }
        report.sources.push(source_report);
    }
    Ok(report)
}
