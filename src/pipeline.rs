//! The stage runner that the stage commands, `herald run` and the daemon
//! share: it runs one stage with what that stage needs, records the outcome
//! for `herald status`, and says in one line what the stage did.
//!
//! A stage runs when its own inputs are sound, whatever happened to the
//! others: a typo in the digest template fails compose and deliver, not
//! collect and publish; a public/ folder that cannot be written fails
//! publish, not compose and deliver. Each stage's failure is reported on
//! its own ([`Ran`]), and the caller goes on to the next stage.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use crate::collect::{self, CollectReport};
use crate::compose::{self, ComposeReport};
use crate::config::Config;
use crate::deliver::{self, DeliverOptions, DeliverReport};
use crate::publish::{self, PublishReport};
use crate::store::{StageRun, Store};
use crate::subscribe::{self, Secret};
use crate::templates::{self, Templates};

/// One run of one stage: its report or why it failed, and what it skipped
/// on the way (the stage still did the rest).
#[derive(Debug)]
pub struct Ran<R> {
    pub stage: &'static str,
    pub report: Result<R, String>,
    pub problems: Vec<String>,
}

impl<R> Ran<R> {
    fn new(stage: &'static str, report: Result<R, String>, problems: Vec<String>) -> Self {
        Self { stage, report, problems }
    }

    pub fn ok(&self) -> bool {
        self.report.is_ok()
    }
}

/// What every stage needs: the configuration, the store and the templates.
#[derive(Clone, Copy)]
pub struct Pipeline<'a> {
    pub config: &'a Config,
    pub store: &'a Store,
    pub templates: &'a Templates,
}

impl Pipeline<'_> {
    /// Reads every source and stores new and changed articles.
    pub async fn collect(&self, now: DateTime<Utc>) -> Ran<CollectReport> {
        let report = collect::collect(self.config, self.store, now).await;
        let report = self.record("collect", now, report.map_err(|e| e.to_string())).await;
        let problems =
            match &report {
                Ok(report) => report
                    .problems
                    .iter()
                    .map(ToString::to_string)
                    .chain(report.sources.iter().filter_map(|s| {
                        s.error.as_ref().map(|e| format!("source `{}`: {e}", s.name))
                    }))
                    .collect(),
                Err(_) => Vec::new(),
            };
        Ran::new("collect", report, problems)
    }

    /// Writes the feeds, the article pages and the edition archive.
    pub async fn publish(&self, now: DateTime<Utc>) -> Ran<PublishReport> {
        let report = match self.templates.require(templates::PAGES) {
            Ok(()) => publish::publish(self.config, self.store, self.templates, now)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(format!("publish: {e}")),
        };
        Ran::new("publish", self.record("publish", now, report).await, Vec::new())
    }

    /// Syncs the list files, then composes the edition of the day of `at`
    /// for every list (or only the list `only`).
    pub async fn compose(&self, at: DateTime<Utc>, only: Option<&str>) -> Ran<ComposeReport> {
        let mut problems = Vec::new();
        let report = match self.templates.require(templates::DIGEST) {
            Err(e) => Err(format!("compose: {e}")),
            Ok(()) => match subscribe::sync_list_files(self.config, self.store, at).await {
                Err(e) => Err(format!("compose: cannot sync the subscriber files: {e}")),
                Ok(sync) => {
                    problems.extend(sync.problems.iter().map(ToString::to_string));
                    compose::compose_lists(self.config, self.store, self.templates, at, only)
                        .await
                        .map_err(|e| e.to_string())
                }
            },
        };
        Ran::new("compose", self.record("compose", at, report).await, problems)
    }

    /// Sends every due message of the editions in progress.
    pub async fn deliver(
        &self,
        secret: Result<&Secret, String>,
        clock: &deliver::Clock,
        options: &DeliverOptions,
    ) -> Ran<DeliverReport> {
        let started = clock();
        let report = match (self.templates.require(templates::DIGEST), secret) {
            (Err(e), _) => Err(format!("deliver: {e}")),
            (_, Err(e)) => Err(format!("deliver: {e}")),
            (Ok(()), Ok(secret)) => {
                deliver::deliver(self.config, self.store, self.templates, secret, clock, options)
                    .await
                    .map_err(|e| e.to_string())
            }
        };
        let report = self.record("deliver", started, report).await;
        let problems = match &report {
            Ok(r) if r.failed > 0 => vec![format!(
                "{} message(s) failed for good; `herald status` shows them per list",
                r.failed
            )],
            _ => Vec::new(),
        };
        Ran::new("deliver", report, problems)
    }

    /// Records a stage's outcome for `herald status`. A failure to record is
    /// logged, not fatal: the stage's own work is already stored.
    async fn record<R: Summary>(
        &self,
        stage: &str,
        started: DateTime<Utc>,
        report: Result<R, String>,
    ) -> Result<R, String> {
        let (ok, summary) = match &report {
            Ok(r) => (true, r.summary(self.config)),
            Err(e) => (false, e.clone()),
        };
        let run = StageRun {
            stage: stage.to_owned(),
            started_at: started,
            finished_at: Utc::now().max(started),
            ok,
            summary,
        };
        if let Err(e) = self.store.record_stage(&run).await {
            tracing::warn!("cannot record the {stage} run: {e}");
        }
        report
    }
}

/// A stage's report in one line, as `herald run`, `herald status` and the
/// daemon's logs show it.
pub trait Summary {
    fn summary(&self, config: &Config) -> String;
}

impl Summary for CollectReport {
    fn summary(&self, _: &Config) -> String {
        let unchanged: usize = self.sources.iter().map(|s| s.unchanged).sum();
        let mut line = format!(
            "{} new, {} updated, {} unchanged article(s) from {} source(s)",
            self.new_articles(),
            self.updated_articles(),
            unchanged,
            self.sources.len()
        );
        if self.retracted_articles() + self.restored_articles() > 0 {
            let _ = write!(
                line,
                "; {} retracted, {} back",
                self.retracted_articles(),
                self.restored_articles()
            );
        }
        if !self.problems.is_empty() {
            let _ = write!(line, "; {} file(s) skipped", self.problems.len());
        }
        if self.failed_sources() > 0 {
            let _ = write!(line, "; {} source(s) failed", self.failed_sources());
        }
        line
    }
}

impl Summary for PublishReport {
    fn summary(&self, config: &Config) -> String {
        let feeds = match self.feeds_written.len() {
            0 => "feeds unchanged".to_string(),
            1..=3 => format!("{} written", self.feeds_written.join(", ")),
            n => format!(
                "{} and {} more feed file(s) written",
                self.feeds_written[..3].join(", "),
                n - 3
            ),
        };
        let removed = match self.pages_removed {
            0 => String::new(),
            n => format!(", {n} removed"),
        };
        format!(
            "{feeds} ({} article(s)); {} page(s) written, {} unchanged{removed}; {} asset(s) copied; {} edition page(s) written → {}",
            self.articles,
            self.pages_written,
            self.pages_unchanged,
            self.assets_copied,
            self.editions_written,
            config.feeds.output_dir.display()
        )
    }
}

impl Summary for ComposeReport {
    fn summary(&self, _: &Config) -> String {
        let mut parts: Vec<String> = self
            .composed
            .iter()
            .map(|e| {
                let mut line = format!(
                    "{} {}: {} article(s) for {} reader(s)",
                    e.list, e.date, e.articles, e.recipients
                );
                for note in &e.notes {
                    let _ = write!(line, " (warning: {note})");
                }
                line
            })
            .collect();
        parts.extend(self.skipped.iter().map(|(list, why)| format!("{list}: no edition ({why})")));
        if parts.is_empty() {
            "no lists configured".into()
        } else {
            format!("{} edition(s) — {}", self.composed.len(), parts.join("; "))
        }
    }
}

impl Summary for DeliverReport {
    fn summary(&self, _: &Config) -> String {
        let mut line = format!(
            "{} sent, {} deferred, {} failed → {}",
            self.sent, self.deferred, self.failed, self.transport
        );
        if let Some(next) = self.next_retry {
            let _ = write!(line, "; next retry after {}", next.format("%Y-%m-%d %H:%M:%S UTC"));
        }
        if self.suppressed > 0 {
            let _ = write!(line, "; {} address(es) suppressed after hard bounces", self.suppressed);
        }
        if let Some(why) = &self.stopped {
            let _ = write!(line, "; stopped early ({why}): rerun `herald deliver` to finish");
        }
        if !self.paused.is_empty() {
            let _ = write!(line, "; paused: {}", self.paused.join(", "));
        }
        line
    }
}

/// SIGINT (Ctrl-C) and SIGTERM, listened for from the moment this is made:
/// a signal that comes before anyone waits for it is kept (and does not end
/// the process the default way), so a service can be stopped as soon as it
/// is up.
pub struct Shutdown {
    term: Option<tokio::signal::unix::Signal>,
    int: Option<tokio::signal::unix::Signal>,
}

impl Shutdown {
    pub fn listen() -> Self {
        use tokio::signal::unix::{signal, SignalKind};
        Self {
            term: signal(SignalKind::terminate()).ok(),
            int: signal(SignalKind::interrupt()).ok(),
        }
    }

    /// Completes on the first of the two signals.
    pub async fn wait(mut self) {
        async fn next(signal: &mut Option<tokio::signal::unix::Signal>) {
            match signal {
                Some(signal) => {
                    signal.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        }
        tokio::select! {
            _ = next(&mut self.term) => {}
            _ = next(&mut self.int) => {}
        }
    }
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM sent from now on.
pub async fn shutdown_signal() {
    Shutdown::listen().wait().await
}
