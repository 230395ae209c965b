//! The deliver stage: the delivery ledger's worker. It claims due rows,
//! builds each reader's message, sends it, and records the outcome:
//! `sent` right after the server accepts the message, `pending` with a later
//! `next_attempt_at` on a temporary failure, `failed` on a permanent one or
//! after `mail.max_attempts`. A rerun sends only what is still due, so it
//! never mails anyone twice; after a crash only the messages that were in
//! flight can go again, with the same Message-ID.

mod mailer;
mod progress;
mod shared;
pub mod smtp;
mod worker;

pub use mailer::{send_test, MailQueue, Mailer};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;
use tokio::sync::mpsc;

use progress::Progress;
use shared::{give_back_lanes, Done, Job, Lane, Shared};

use crate::cluster::Node;
use crate::compose::{ComposeError, Digest, Recipient};
use crate::config::Config;
use crate::store::{Claimant, DeliveryOutcome, Edition, Store, StoreError};
use crate::subscribe::Secret;
use crate::templates::Templates;

pub use smtp::{Relay, SendOutcome, Sender, SmtpServer, TlsMode, Transport, TransportError};

/// A source of the current time: the system clock in production, a fixed
/// clock in tests and replays.
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

#[derive(Debug, Clone, Default)]
pub struct DeliverOptions {
    /// Draw a progress bar on the terminal.
    pub progress: bool,
    /// When set, stop claiming new messages; those in flight still finish.
    pub stop: Option<Arc<AtomicBool>>,
    /// The node that claims the rows (a daemon's); without one, the run
    /// joins the store as a node of its own for its duration.
    pub node: Option<Arc<Node>>,
}

#[derive(Debug, Clone, Default)]
pub struct DeliverReport {
    pub transport: String,
    pub editions: usize,
    pub sent: usize,
    /// Temporary failures left pending for a later run.
    pub deferred: usize,
    pub failed: usize,
    /// Addresses suppressed after hard bounces during this run.
    pub suppressed: usize,
    /// Rows returned to pending at start: left `sending` by a process of
    /// this host that died.
    pub released: u64,
    /// The earliest time a deferred message is due again.
    pub next_retry: Option<DateTime<Utc>>,
    /// Set when sending stopped early (a signal, or a server that kept failing).
    pub stopped: Option<String>,
    /// Lists whose sending is paused.
    pub paused: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum DeliverError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Compose(#[from] ComposeError),
    #[error(transparent)]
    Transport(#[from] TransportError),
}

/// Sends every due message of every edition still in progress.
pub async fn deliver(
    config: &Config,
    store: &Store,
    templates: &Templates,
    secret: &Secret,
    clock: &Clock,
    options: &DeliverOptions,
) -> Result<DeliverReport, DeliverError> {
    let transport = Arc::new(Transport::from_config(&config.mail)?);
    let mut report = DeliverReport { transport: transport.describe(), ..Default::default() };
    let (node, own) = match &options.node {
        Some(node) => (Arc::clone(node), false),
        None => {
            let lease = Duration::from_secs(config.daemon.lease_secs);
            let node = Node::join(store, "deliver", lease).await?;
            report.released = node.released();
            (node, true)
        }
    };
    if report.released > 0 {
        tracing::warn!(
            "{} message(s) were being sent when herald last stopped; sending them again with the same Message-ID",
            report.released
        );
    }
    let run = Run {
        config,
        store,
        templates,
        secret,
        clock,
        options,
        transport: &transport,
        node: &node,
    };
    let delivered = deliver_all(run, &mut report).await;
    if own {
        node.leave().await;
    }
    delivered.map(|()| report)
}

/// Every edition in progress whose list is not paused, in turn.
async fn deliver_all(run: Run<'_>, report: &mut DeliverReport) -> Result<(), DeliverError> {
    let store = run.store;
    for edition in store.editions_in_progress().await? {
        if store.paused_at(&edition.list).await?.is_some() {
            if !report.paused.contains(&edition.list) {
                tracing::warn!(list = %edition.list, "sending is paused; `herald deliver --resume {}` resumes it", edition.list);
                report.paused.push(edition.list.clone());
            }
            continue;
        }
        if report.stopped.is_some() {
            break;
        }
        report.editions += 1;
        deliver_edition(run, &edition, report).await?;
    }
    Ok(())
}

/// What one run of the stage works with.
#[derive(Clone, Copy)]
struct Run<'a> {
    config: &'a Config,
    store: &'a Store,
    templates: &'a Templates,
    secret: &'a Secret,
    clock: &'a Clock,
    options: &'a DeliverOptions,
    transport: &'a Arc<Transport>,
    node: &'a Node,
}

#[tracing::instrument(skip_all, fields(list = %edition.list, date = %edition.edition_date))]
async fn deliver_edition(
    run: Run<'_>,
    edition: &Edition,
    report: &mut DeliverReport,
) -> Result<(), DeliverError> {
    let Run { config, store, templates, secret, clock, options, transport, node } = run;
    let digest = Digest::load(config, store, templates.clone(), secret.clone(), edition).await?;
    // Readers whose hour has come (a list sent at each reader's local time).
    let released = store.release_waiting(edition.id, clock()).await?;
    if released > 0 {
        tracing::info!(readers = released, "their local time has come");
    }
    let due = store.due_count(edition.id, clock(), Utc::now()).await?;
    let progress = Progress::new(options.progress, &edition.list, u64::try_from(due).unwrap_or(0));
    let today = clock().date_naive();
    let lanes = Lane::all(transport);
    let concurrency: usize = lanes.iter().map(|l| l.concurrency).sum();
    // Claimed rows wait in a bounded queue, so memory stays flat whatever
    // the list size, and a kill leaves at most this many rows claimed.
    let batch = (concurrency * 16).max(64);
    let (jobs_tx, jobs_rx) = mpsc::channel::<Job>(batch * 2);
    let (done_tx, mut done_rx) = mpsc::channel::<Done>(concurrency * 2);
    let signal = run.options.stop.clone();
    let shared = Arc::new(Shared::new(
        digest,
        Arc::clone(transport),
        jobs_rx,
        lanes,
        signal,
        store.clone(),
        today,
    ));

    let mut workers = tokio::task::JoinSet::new();
    for (lane, l) in shared.lanes.iter().enumerate() {
        for _ in 0..l.concurrency {
            workers.spawn(worker::worker(Arc::clone(&shared), lane, done_tx.clone()));
        }
    }
    drop(done_tx);
    let feeder = feed(run, edition, Arc::clone(&shared), jobs_tx, batch);

    // The recorder: commits outcomes in groups and acknowledges them.
    let mut recorder = Recorder::new(run, edition, &shared);
    let mut result: Result<(), DeliverError> = Ok(());
    while let Some(first) = done_rx.recv().await {
        let mut group = vec![first];
        while group.len() < 256 {
            match done_rx.try_recv() {
                Ok(more) => group.push(more),
                Err(_) => break,
            }
        }
        if let Err(e) = recorder.record(group).await {
            // Nothing more is sent; what was not recorded is sent again (same
            // Message-ID) by the next run.
            shared.stop(format!("the store failed: {e}"));
            result = Err(e.into());
            break;
        }
        progress.update(recorder.sent, recorder.deferred, recorder.failed);
    }
    // Workers are done (or halted). Closing the queue wakes a feeder that
    // waits for room; then whatever was claimed and not sent goes back.
    while workers.join_next().await.is_some() {}
    shared.halt.store(true, Ordering::Relaxed);
    shared.jobs.lock().await.close();
    let fed = feeder.await;
    let unsent = shared.take_unsent().await;
    if !unsent.is_empty() {
        store.release_claims(edition.id, node.id(), &unsent).await?;
    }
    give_back_lanes(store, &shared, today).await;
    if let Some(why) = shared.halt_reason.lock().unwrap_or_else(|e| e.into_inner()).take() {
        report.stopped = Some(why);
    } else if !unsent.is_empty() && shared.lanes.iter().all(Lane::capped) {
        report.stopped =
            Some("every relay reached its daily cap; the rest goes out tomorrow".into());
    }
    match fed {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e.into()),
        Err(e) => tracing::error!("the claiming task stopped unexpectedly: {e}"),
    }
    result?;
    let (sent, deferred, failed) = (recorder.sent, recorder.deferred, recorder.failed);
    progress.finish(sent, deferred, failed);
    let done = store.finish_edition_if_done(edition.id).await?;
    if shared.lanes.len() > 1 {
        for (lane, n) in shared.lanes.iter().zip(&recorder.sent_by_lane) {
            tracing::info!(relay = %lane.name, sent = n, "relay share");
        }
    }
    tracing::info!(sent, deferred, failed, done, "delivered");
    report.sent += sent;
    report.deferred += deferred;
    report.failed += failed;
    report.suppressed += recorder.suppressed;
    // The next batch of readers waiting for their hour is due like a retry.
    let waiting = if done { None } else { store.next_waiting(edition.id).await? };
    for next in [recorder.next_retry, waiting].into_iter().flatten() {
        report.next_retry = Some(report.next_retry.map_or(next, |t| t.min(next)));
    }
    Ok(())
}

/// The feeder: claims due rows in batches into the workers' bounded queue,
/// until none is due, a signal asks it to stop, or the sending halted.
fn feed(
    run: Run<'_>,
    edition: &Edition,
    shared: Arc<Shared>,
    jobs: mpsc::Sender<Job>,
    batch: usize,
) -> tokio::task::JoinHandle<Result<(), StoreError>> {
    let (store, edition, clock) = (run.store.clone(), edition.clone(), Arc::clone(run.clock));
    let (node, lease) = (run.node.id().to_owned(), run.node.lease());
    tokio::spawn(async move {
        loop {
            if shared.halted() {
                return Ok(());
            }
            let Ok(permits) = jobs.reserve_many(batch).await else { return Ok(()) };
            let now = clock();
            // The claim's lease runs on the system clock, as the nodes'
            // heartbeats do.
            let wall = Utc::now();
            let claimant = Claimant { node: &node, wall, until: wall + lease };
            let claimed = store.claim_deliveries(&edition, now, batch, &claimant).await?;
            if claimed.is_empty() {
                return Ok(());
            }
            for (permit, claim) in permits.zip(claimed) {
                permit.send(Job { claim, now });
            }
        }
    })
}

/// Turns the workers' outcomes into ledger rows: `sent`, `pending` with a
/// backoff, or `failed` (with hard bounces counted towards suppression).
struct Recorder<'a> {
    run: Run<'a>,
    edition: i64,
    sent: usize,
    deferred: usize,
    failed: usize,
    /// Addresses suppressed after hard bounces.
    suppressed: usize,
    /// The earliest time a deferred message is due again.
    next_retry: Option<DateTime<Utc>>,
    sent_by_lane: Vec<u64>,
}

impl<'a> Recorder<'a> {
    fn new(run: Run<'a>, edition: &Edition, shared: &Shared) -> Self {
        Self {
            run,
            edition: edition.id,
            sent: 0,
            deferred: 0,
            failed: 0,
            suppressed: 0,
            next_retry: None,
            sent_by_lane: vec![0; shared.lanes.len()],
        }
    }

    /// Records a group of outcomes in one statement, then acknowledges each
    /// to its worker.
    async fn record(&mut self, group: Vec<Done>) -> Result<(), StoreError> {
        let (config, store) = (self.run.config, self.run.store);
        let now = (self.run.clock)();
        let max_attempts = i64::from(config.mail.max_attempts);
        let mut rows: Vec<(i64, String, Option<DateTime<Utc>>, &'static str)> =
            Vec::with_capacity(group.len());
        let mut bounces = Vec::new();
        for d in &group {
            let c = &d.claim;
            match &d.outcome {
                SendOutcome::Sent { reply } => {
                    self.sent += 1;
                    self.sent_by_lane[d.lane] += 1;
                    rows.push((c.subscriber, reply.clone(), Some(now), "sent"));
                }
                SendOutcome::Retry { error, .. } if c.attempts < max_attempts => {
                    let next = now + backoff(c.attempts, config.mail.retry_base_secs);
                    tracing::warn!(to = %c.email, attempt = c.attempts, "deferred until {next}: {error}");
                    self.next_retry = Some(self.next_retry.map_or(next, |t| t.min(next)));
                    self.deferred += 1;
                    rows.push((c.subscriber, error.clone(), Some(next), "retry"));
                }
                SendOutcome::Retry { error, .. } => {
                    let error = format!("gave up after {} attempts: {error}", c.attempts);
                    tracing::error!(to = %c.email, "{error}");
                    self.failed += 1;
                    rows.push((c.subscriber, error, None, "failed"));
                }
                SendOutcome::Failed { error, bounce } => {
                    tracing::error!(to = %c.email, "refused: {error}");
                    self.failed += 1;
                    if *bounce {
                        bounces.push((c.subscriber, c.email.clone(), error.clone()));
                    }
                    rows.push((c.subscriber, error.clone(), None, "failed"));
                }
            }
        }
        let outcomes: Vec<(i64, DeliveryOutcome<'_>)> = rows
            .iter()
            .map(|(subscriber, text, at, kind)| {
                let outcome = match (*kind, at) {
                    ("sent", Some(at)) => DeliveryOutcome::Sent { reply: text, at: *at },
                    ("retry", Some(next)) => DeliveryOutcome::Retry { error: text, next: *next },
                    _ => DeliveryOutcome::Failed { error: text },
                };
                (*subscriber, outcome)
            })
            .collect();
        store.record_deliveries(self.edition, self.run.node.id(), &outcomes).await?;
        // A permanent refusal is a bounce, hard or soft by its status.
        for (subscriber, email, error) in bounces {
            let tag = crate::bounces::verp::Tag { edition: self.edition, subscriber };
            match crate::bounces::record_refusal(store, config, tag, &email, &error, now).await {
                Ok(recorded) if recorded.action == crate::store::BounceAction::Suppressed => {
                    self.suppressed += 1;
                }
                Ok(_) => {}
                Err(e) => tracing::error!(to = %email, "cannot record a bounce: {e}"),
            }
        }
        for d in group {
            let _ = d.recorded.send(());
        }
        Ok(())
    }
}

/// A file-safe name from a Message-ID: `<herald.daily.20261124.42@x>` →
/// `herald.daily.20261124.42`.
fn file_name(message_id: &str) -> String {
    let inner = message_id.trim_matches(['<', '>']);
    let local = inner.split('@').next().unwrap_or(inner);
    local
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '_' })
        .collect()
}

/// Exponential backoff with ±20 % jitter: base, 2×base, 4×base, … capped at six hours.
pub fn backoff(attempts: i64, base_secs: u64) -> chrono::Duration {
    let exp = u32::try_from(attempts.saturating_sub(1).clamp(0, 20)).unwrap_or(20);
    let secs = base_secs.saturating_mul(2u64.saturating_pow(exp)).min(6 * 3600) as f64;
    let jitter = rand::thread_rng().gen_range(0.8..1.2);
    chrono::Duration::milliseconds((secs * jitter * 1000.0) as i64)
}

/// Spaces sends evenly at `rate` per second (0 = no limit).
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let first = backoff(1, 60).num_seconds();
        assert!((48..=72).contains(&first), "{first}");
        let third = backoff(3, 60).num_seconds();
        assert!((192..=288).contains(&third), "{third}");
        assert!(backoff(40, 60).num_seconds() <= 6 * 3600 * 12 / 10);
    }

    #[test]
    fn outbox_names_are_file_safe() {
        assert_eq!(
            file_name("<herald.daily.20261124.42@news.example.com>"),
            "herald.daily.20261124.42"
        );
        assert_eq!(file_name("<a/b\\c@x>"), "a_b_c");
    }
}
