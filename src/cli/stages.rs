//! `herald collect`, `publish`, `compose`, `deliver` and `run`: the stages
//! through the pipeline, a line each, and the exit code.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Result;

use crate::config::Config;
use crate::deliver;
use crate::deliver::DeliverOptions;
use crate::pipeline::{Pipeline, Ran, Summary};
use crate::store::Store;
use crate::subscribe::Secret;

use super::{load_templates, Command};

pub(super) async fn stages(
    config: &Config,
    store: &Store,
    command: &Command,
    clock: &deliver::Clock,
) -> Result<ExitCode> {
    let all = matches!(command, Command::Run);
    let templates = load_templates(config);
    let pipeline = Pipeline { config, store, templates: &templates };
    let mut out = Report::default();

    if all || matches!(command, Command::Collect) {
        out.add("collected", config, pipeline.collect(clock()).await);
    }
    if all || matches!(command, Command::Publish) {
        out.add("published", config, pipeline.publish(clock()).await);
    }
    if all || matches!(command, Command::Compose { .. }) {
        let composed = pipeline.compose(clock(), None).await;
        let new_editions = composed.report.as_ref().is_ok_and(|r| !r.composed.is_empty());
        out.add("composed", config, composed);
        if all && new_editions {
            // The new edition's web page, which its mail links to, exists
            // before the mail goes out.
            let published = pipeline.publish(clock()).await;
            if let Err(e) = published.report {
                out.problems.push(e);
            }
        }
    }
    if all || matches!(command, Command::Deliver { .. }) {
        let secret = Secret::resolve(store).await.map_err(|e| e.to_string());
        let stop = Arc::new(AtomicBool::new(false));
        let on_signal = Arc::clone(&stop);
        let signals = tokio::spawn(async move {
            // SIGINT (Ctrl-C) or SIGTERM (systemd, kill): stop claiming,
            // finish and record what is in flight, exit with the summary.
            crate::pipeline::shutdown_signal().await;
            eprintln!(
                "herald: stopping after the messages in flight (press Ctrl-C again to abort)"
            );
            on_signal.store(true, Ordering::Relaxed);
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(130);
            }
        });
        let options = DeliverOptions {
            progress: std::io::stderr().is_terminal(),
            stop: Some(stop),
            node: None,
        };
        let delivered =
            pipeline.deliver(secret.as_ref().map_err(Clone::clone), clock, &options).await;
        signals.abort();
        out.add("delivered", config, delivered);
    }
    Ok(out.finish())
}

/// What the stages of one command did: a line each, and every problem.
#[derive(Default)]
pub(super) struct Report {
    lines: Vec<(&'static str, String)>,
    /// Why stages failed, each a line on standard error.
    errors: Vec<String>,
    problems: Vec<String>,
}

impl Report {
    pub(super) fn add<R: Summary>(&mut self, verb: &'static str, config: &Config, ran: Ran<R>) {
        match &ran.report {
            Ok(report) => self.lines.push((verb, report.summary(config))),
            Err(e) => {
                self.lines.push((verb, "FAILED (see below)".into()));
                self.errors.push(e.clone());
            }
        }
        self.problems.extend(ran.problems);
    }

    /// Prints the lines and the problems; exit code 1 when anything failed
    /// or was skipped (everything else was still done).
    pub(super) fn finish(self) -> ExitCode {
        let mut out = String::new();
        for (stage, line) in &self.lines {
            let _ = writeln!(out, "{stage:<10} {line}");
        }
        print!("{out}");
        let _ = std::io::stdout().flush();
        for e in &self.errors {
            eprintln!("error: {e}");
        }
        for p in &self.problems {
            eprintln!("warning: {p}");
        }
        match (self.errors.len(), self.problems.len()) {
            (0, 0) => ExitCode::SUCCESS,
            (0, n) => {
                eprintln!("herald: finished with {n} problem(s); everything else was done");
                ExitCode::FAILURE
            }
            (failed, n) => {
                eprintln!(
                    "herald: {failed} stage(s) failed and {n} other problem(s); the other stages ran"
                );
                ExitCode::FAILURE
            }
        }
    }
}
