//! The deliver stage: the delivery ledger's worker. It claims due rows,
//! builds each reader's message, sends it, and records the outcome:
//! `sent` right after the server accepts the message, `pending` with a later
//! `next_attempt_at` on a temporary failure, `failed` on a permanent one or
//! after `mail.max_attempts`. A rerun sends only what is still due, so it
//! never mails anyone twice; after a crash only the messages that were in
//! flight can go again, with the same Message-ID.

mod mailer;
pub mod smtp;

pub use mailer::{send_test, MailQueue, Mailer};

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rand::Rng;
use tokio::sync::{mpsc, oneshot, Mutex};

use crate::compose::{ComposeError, Digest, Recipient};
use crate::config::Config;
use crate::store::{ClaimedDelivery, DeliveryOutcome, Edition, Store, StoreError};
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
    /// Rows returned to pending at start: left `sending` by a process that died.
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
    report.released = store.release_in_flight().await?;
    if report.released > 0 {
        tracing::warn!(
            "{} message(s) were being sent when herald last stopped; sending them again with the same Message-ID",
            report.released
        );
    }
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
        let run = Run { config, store, templates, secret, clock, options, transport: &transport };
        deliver_edition(run, &edition, &mut report).await?;
    }
    Ok(report)
}

/// A claimed row on its way to a worker.
struct Job {
    claim: ClaimedDelivery,
    now: DateTime<Utc>,
}

/// A worker's result, acknowledged once it is in the ledger.
struct Done {
    claim: ClaimedDelivery,
    outcome: SendOutcome,
    lane: usize,
    recorded: oneshot::Sender<()>,
}

/// One way out (a relay, or the outbox) and its share of the sending.
struct Lane {
    name: String,
    concurrency: usize,
    /// Spaces this lane's sends at its `rate_per_second`; none without a limit.
    limiter: Option<governor::DefaultDirectRateLimiter>,
    /// Failed connections in a row; reset by any transaction that reached
    /// the server.
    failures_in_row: AtomicUsize,
    /// While set and in the future, the lane takes no messages.
    aside_until: std::sync::Mutex<Option<Instant>>,
    /// How long the next setting aside lasts (doubles each time, up to 10 min).
    aside_for: std::sync::Mutex<Duration>,
    /// Messages sent today (UTC), counting earlier runs.
    sent_today: AtomicU64,
    /// Messages per day at most (0: no limit).
    cap: u64,
}

impl Lane {
    fn capped(&self) -> bool {
        self.cap > 0 && self.sent_today.load(Ordering::Relaxed) >= self.cap
    }

    /// Takes one of today's slots before a send (given back if the send
    /// fails), so concurrent workers never go past the cap.
    fn reserve(&self) -> bool {
        if self.cap == 0 {
            self.sent_today.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        self.sent_today
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| (n < self.cap).then_some(n + 1))
            .is_ok()
    }

    fn unreserve(&self) {
        self.sent_today.fetch_sub(1, Ordering::Relaxed);
    }

    fn aside(&self) -> Option<Duration> {
        let until = *self.aside_until.lock().unwrap_or_else(|e| e.into_inner());
        until.and_then(|t| t.checked_duration_since(Instant::now()))
    }

    fn available(&self) -> bool {
        !self.capped() && self.aside().is_none()
    }

    /// Counts a failed connection; sets the lane aside after too many in a
    /// row. Returns true when it was just set aside.
    fn connection_failed(&self) -> bool {
        let failures = self.failures_in_row.fetch_add(1, Ordering::Relaxed) + 1;
        if failures < (self.concurrency * 3).max(5) {
            return false;
        }
        self.failures_in_row.store(0, Ordering::Relaxed);
        let mut for_ = self.aside_for.lock().unwrap_or_else(|e| e.into_inner());
        *self.aside_until.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now() + *for_);
        tracing::warn!(relay = %self.name, "{failures} failed connections in a row; set aside for {}s", for_.as_secs());
        *for_ = (*for_ * 2).min(Duration::from_secs(600));
        true
    }
}

/// What the workers share.
struct Shared {
    digest: Digest,
    transport: Arc<Transport>,
    jobs: Mutex<mpsc::Receiver<Job>>,
    /// Messages a failing relay handed back for another relay to send.
    requeued: std::sync::Mutex<VecDeque<Job>>,
    lanes: Vec<Lane>,
    /// Set to stop taking jobs: a signal, or no relay can take any.
    halt: AtomicBool,
    halt_reason: std::sync::Mutex<Option<String>>,
}

impl Shared {
    fn stop(&self, why: String) {
        if !self.halt.swap(true, Ordering::Relaxed) {
            *self.halt_reason.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
        }
    }

    fn next_requeued(&self) -> Option<Job> {
        self.requeued.lock().unwrap_or_else(|e| e.into_inner()).pop_front()
    }

    fn requeue(&self, job: Job) {
        self.requeued.lock().unwrap_or_else(|e| e.into_inner()).push_back(job);
    }

    /// No job is left: nothing requeued, and the claim queue is closed and empty.
    fn drained(&self) -> bool {
        self.requeued.lock().unwrap_or_else(|e| e.into_inner()).is_empty()
            && self.jobs.try_lock().is_ok_and(|rx| rx.is_closed() && rx.is_empty())
    }
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
}

#[tracing::instrument(skip_all, fields(list = %edition.list, date = %edition.edition_date))]
async fn deliver_edition(
    run: Run<'_>,
    edition: &Edition,
    report: &mut DeliverReport,
) -> Result<(), DeliverError> {
    let Run { config, store, templates, secret, clock, options, transport } = run;
    let digest = Digest::load(config, store, templates.clone(), secret.clone(), edition).await?;
    let due = store.due_count(edition.id, clock()).await?;
    let progress = Progress::new(options.progress, &edition.list, u64::try_from(due).unwrap_or(0));
    let today = clock();
    let mut lanes = Vec::new();
    for (name, concurrency, rate, cap) in transport.lanes() {
        let sent = store.relay_sent(&name, today.date_naive()).await?;
        lanes.push(Lane {
            name,
            concurrency,
            limiter: rate_limiter(rate),
            failures_in_row: AtomicUsize::new(0),
            aside_until: std::sync::Mutex::new(None),
            aside_for: std::sync::Mutex::new(Duration::from_secs(30)),
            sent_today: AtomicU64::new(sent),
            cap,
        });
    }
    let concurrency: usize = lanes.iter().map(|l| l.concurrency).sum();
    // Claimed rows wait in a bounded queue, so memory stays flat whatever
    // the list size, and a kill leaves at most this many rows claimed.
    let batch = (concurrency * 16).max(64);
    let (jobs_tx, jobs_rx) = mpsc::channel::<Job>(batch * 2);
    let (done_tx, mut done_rx) = mpsc::channel::<Done>(concurrency * 2);
    let shared = Arc::new(Shared {
        digest,
        transport: Arc::clone(transport),
        jobs: Mutex::new(jobs_rx),
        requeued: std::sync::Mutex::new(VecDeque::new()),
        lanes,
        halt: AtomicBool::new(false),
        halt_reason: std::sync::Mutex::new(None),
    });

    let mut workers = tokio::task::JoinSet::new();
    for (lane, l) in shared.lanes.iter().enumerate() {
        for _ in 0..l.concurrency {
            workers.spawn(worker(Arc::clone(&shared), lane, done_tx.clone()));
        }
    }
    drop(done_tx);

    let feeder = {
        let (store, edition, shared, clock, stop) = (
            store.clone(),
            edition.clone(),
            Arc::clone(&shared),
            Arc::clone(clock),
            options.stop.clone(),
        );
        tokio::spawn(async move {
            loop {
                if stop.as_ref().is_some_and(|s| s.load(Ordering::Relaxed)) {
                    shared.stop("stopped by a signal".into());
                    return Ok::<_, StoreError>(());
                }
                if shared.halt.load(Ordering::Relaxed) {
                    return Ok(());
                }
                let Ok(permits) = jobs_tx.reserve_many(batch).await else { return Ok(()) };
                let now = clock();
                let claimed = store.claim_deliveries(&edition, now, batch).await?;
                if claimed.is_empty() {
                    return Ok(());
                }
                for (permit, claim) in permits.zip(claimed) {
                    permit.send(Job { claim, now });
                }
            }
        })
    };

    // The recorder: commits outcomes in groups and acknowledges them.
    let (mut sent, mut deferred, mut failed) = (0usize, 0usize, 0usize);
    let max_attempts = i64::from(config.mail.max_attempts);
    let mut result: Result<(), DeliverError> = Ok(());
    let mut sent_by_lane = vec![0u64; shared.lanes.len()];
    let mut counts_saved = Instant::now();
    while let Some(first) = done_rx.recv().await {
        let mut group = vec![first];
        while group.len() < 256 {
            match done_rx.try_recv() {
                Ok(more) => group.push(more),
                Err(_) => break,
            }
        }
        let now = clock();
        let mut rows: Vec<(i64, String, Option<DateTime<Utc>>, &'static str)> =
            Vec::with_capacity(group.len());
        let mut bounces = Vec::new();
        for d in &group {
            let c = &d.claim;
            match &d.outcome {
                SendOutcome::Sent { reply } => {
                    sent += 1;
                    sent_by_lane[d.lane] += 1;
                    rows.push((c.subscriber, reply.clone(), Some(now), "sent"));
                }
                SendOutcome::Retry { error, .. } if c.attempts < max_attempts => {
                    let next = now + backoff(c.attempts, config.mail.retry_base_secs);
                    tracing::warn!(to = %c.email, attempt = c.attempts, "deferred until {next}: {error}");
                    report.next_retry = Some(report.next_retry.map_or(next, |t| t.min(next)));
                    deferred += 1;
                    rows.push((c.subscriber, error.clone(), Some(next), "retry"));
                }
                SendOutcome::Retry { error, .. } => {
                    let error = format!("gave up after {} attempts: {error}", c.attempts);
                    tracing::error!(to = %c.email, "{error}");
                    failed += 1;
                    rows.push((c.subscriber, error, None, "failed"));
                }
                SendOutcome::Failed { error } => {
                    tracing::error!(to = %c.email, "refused: {error}");
                    failed += 1;
                    if is_hard_bounce(error) {
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
        if let Err(e) = store.record_deliveries(edition.id, &outcomes).await {
            // Nothing more is sent; what was not recorded is sent again (same
            // Message-ID) by the next run.
            shared.stop(format!("the store failed: {e}"));
            result = Err(e.into());
            break;
        }
        for (subscriber, email, reason) in bounces {
            match store
                .record_hard_bounce(subscriber, &reason, config.mail.suppress_after, now)
                .await
            {
                Ok(true) => {
                    tracing::warn!(to = %email, "suppressed after hard bounces: {reason}");
                    report.suppressed += 1;
                }
                Ok(false) => {}
                Err(e) => tracing::error!(to = %email, "cannot record a hard bounce: {e}"),
            }
        }
        for d in group {
            let _ = d.recorded.send(());
        }
        if counts_saved.elapsed() > Duration::from_secs(5) {
            save_lane_counts(store, &shared, today).await;
            counts_saved = Instant::now();
        }
        progress.update(sent, deferred, failed);
    }
    // Workers are done (or halted). Closing the queue wakes a feeder that
    // waits for room; then whatever was claimed and not sent goes back.
    while workers.join_next().await.is_some() {}
    shared.halt.store(true, Ordering::Relaxed);
    shared.jobs.lock().await.close();
    let fed = feeder.await;
    let mut unsent: Vec<i64> = Vec::new();
    {
        let mut jobs = shared.jobs.lock().await;
        while let Ok(job) = jobs.try_recv() {
            unsent.push(job.claim.subscriber);
        }
    }
    while let Some(job) = shared.next_requeued() {
        unsent.push(job.claim.subscriber);
    }
    if !unsent.is_empty() {
        store.release_claims(edition.id, &unsent).await?;
    }
    save_lane_counts(store, &shared, today).await;
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
    progress.finish(sent, deferred, failed);
    let done = store.finish_edition_if_done(edition.id).await?;
    for (lane, n) in shared.lanes.iter().zip(&sent_by_lane) {
        if shared.lanes.len() > 1 {
            tracing::info!(relay = %lane.name, sent = n, "relay share");
        }
    }
    tracing::info!(sent, deferred, failed, done, "delivered");
    report.sent += sent;
    report.deferred += deferred;
    report.failed += failed;
    Ok(())
}

/// Keeps each relay's count for today, so daily caps hold across runs.
async fn save_lane_counts(store: &Store, shared: &Shared, today: DateTime<Utc>) {
    for lane in shared.lanes.iter().filter(|l| l.cap > 0) {
        let n = lane.sent_today.load(Ordering::Relaxed);
        if let Err(e) = store.set_relay_sent(&lane.name, today.date_naive(), n).await {
            tracing::warn!(relay = %lane.name, "cannot record today's count: {e}");
        }
    }
}

/// One delivery worker: takes claimed rows, builds each message, and sends it
/// on its own connection through its lane (relay). It waits until its
/// previous outcome is recorded before the next send, so a crash can repeat
/// at most one message per worker.
async fn worker(shared: Arc<Shared>, lane: usize, done: mpsc::Sender<Done>) {
    let mut sender = Sender::new(Arc::clone(&shared.transport), lane);
    let mut last: Option<oneshot::Receiver<()>> = None;
    let me = &shared.lanes[lane];
    loop {
        if shared.halt.load(Ordering::Relaxed) || me.capped() {
            break;
        }
        if let Some(wait) = me.aside() {
            if !shared.lanes.iter().any(Lane::available) {
                shared.stop(
                    "every relay failed to connect repeatedly; the rest waits for the next run"
                        .into(),
                );
                break;
            }
            if shared.drained() {
                break;
            }
            tokio::time::sleep(wait.min(Duration::from_millis(200))).await;
            continue;
        }
        let job = match shared.next_requeued() {
            Some(job) => Some(job),
            None => {
                let next = shared.jobs.lock().await.recv().await;
                next.or_else(|| shared.next_requeued())
            }
        };
        let Some(job) = job else { break };
        if me.aside().is_some() {
            // Set aside while this worker waited for the job: leave it to
            // the others.
            shared.requeue(job);
            continue;
        }
        if !me.reserve() {
            // Today's cap is reached: another relay may still take it.
            shared.requeue(job);
            break;
        }
        let recipient = Recipient {
            subscriber: job.claim.subscriber,
            email: job.claim.email.clone(),
            name: job.claim.name.clone(),
            token_key: job.claim.token_key.clone(),
            message_id: job.claim.message_id.clone(),
        };
        let message = shared.digest.message(&recipient, job.now);
        if let Some(recorded) = last.take() {
            if recorded.await.is_err() {
                break; // the recorder stopped
            }
        }
        if let Some(limiter) = &me.limiter {
            limiter.until_ready().await;
        }
        let outcome = match message {
            Ok(message) => sender.send(&message, &file_name(&job.claim.message_id)).await,
            // A message that cannot be built now will not build later either.
            Err(e) => SendOutcome::Failed { error: e.to_string() },
        };
        if !matches!(outcome, SendOutcome::Sent { .. }) {
            me.unreserve();
        }
        match &outcome {
            SendOutcome::Retry { unreachable: true, .. } => {
                me.connection_failed();
                // Another relay that works takes the message, without an
                // attempt counted against the reader.
                let others =
                    shared.lanes.iter().enumerate().any(|(i, l)| i != lane && l.available());
                if others {
                    shared.requeue(job);
                    continue;
                }
                if !shared.lanes.iter().any(Lane::available) {
                    shared.stop(
                        "every relay failed to connect repeatedly; the rest waits for the next run"
                            .into(),
                    );
                }
            }
            SendOutcome::Sent { .. } => me.failures_in_row.store(0, Ordering::Relaxed),
            _ => me.failures_in_row.store(0, Ordering::Relaxed),
        }
        let (recorded, wait_recorded) = oneshot::channel();
        if done.send(Done { claim: job.claim, outcome, lane, recorded }).await.is_err() {
            break;
        }
        last = Some(wait_recorded);
    }
    if let Some(recorded) = last {
        let _ = recorded.await;
    }
    sender.close().await;
}

/// A permanent failure that says the address does not exist (RFC 3463
/// 5.1.x: bad destination mailbox or system; 5.2.1: mailbox disabled).
fn is_hard_bounce(error: &str) -> bool {
    error
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .any(|word| word.starts_with("5.1.") && word.len() > 4 || word == "5.2.1")
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
/// A limiter that lets one message through every `1 / rate` seconds (no
/// bursts), or none for a rate of 0.
fn rate_limiter(rate: f64) -> Option<governor::DefaultDirectRateLimiter> {
    let period = Duration::try_from_secs_f64(1.0 / rate).ok().filter(|p| !p.is_zero())?;
    Some(governor::RateLimiter::direct(governor::Quota::with_period(period)?))
}

/// A progress bar on a terminal; a log line every few seconds otherwise.
struct Progress {
    bar: Option<ProgressBar>,
    list: String,
    total: u64,
    started: Instant,
    last_log: std::sync::Mutex<Instant>,
}

impl Progress {
    fn new(terminal: bool, list: &str, total: u64) -> Self {
        let bar = terminal.then(|| {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix:.bold} [{bar:30.cyan/blue}] {pos}/{len} {msg} · {per_sec} · ETA {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_prefix(list.to_owned());
            bar
        });
        Self {
            bar,
            list: list.to_owned(),
            total,
            started: Instant::now(),
            last_log: std::sync::Mutex::new(Instant::now()),
        }
    }

    fn update(&self, sent: usize, deferred: usize, failed: usize) {
        let done = (sent + deferred + failed) as u64;
        if let Some(bar) = &self.bar {
            bar.set_position(done);
            bar.set_message(format!("sent {sent} · deferred {deferred} · failed {failed}"));
            return;
        }
        let mut last = self.last_log.lock().unwrap_or_else(|e| e.into_inner());
        if last.elapsed() >= Duration::from_secs(5) {
            *last = Instant::now();
            let rate = done as f64 / self.started.elapsed().as_secs_f64().max(0.001);
            let eta =
                if rate > 0.0 { (self.total.saturating_sub(done)) as f64 / rate } else { 0.0 };
            tracing::info!(
                list = %self.list,
                "{done}/{} · sent {sent} · deferred {deferred} · failed {failed} · {rate:.0}/s · ETA {eta:.0}s",
                self.total
            );
        }
    }

    fn finish(&self, sent: usize, deferred: usize, failed: usize) {
        if let Some(bar) = &self.bar {
            bar.finish_with_message(format!("sent {sent} · deferred {deferred} · failed {failed}"));
        }
    }
}

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
    fn hard_bounces_are_user_unknown_class() {
        assert!(is_hard_bounce(
            "permanent error (550): 5.1.1 <x@example.com>: Recipient address rejected"
        ));
        assert!(is_hard_bounce("permanent error (550): 5.2.1 mailbox disabled"));
        assert!(!is_hard_bounce("permanent error (552): 5.3.4 message too big"));
        assert!(!is_hard_bounce("permanent error (554): 5.7.1 spam"));
        assert!(!is_hard_bounce("permanent error (550): 5.1"));
    }

    #[test]
    fn outbox_names_are_file_safe() {
        assert_eq!(
            file_name("<herald.daily.20261124.42@news.example.com>"),
            "herald.daily.20261124.42"
        );
        assert_eq!(file_name("<a/b\\c@x>"), "a_b_c");
    }

    #[test]
    fn rate_limits_space_sends() {
        let limiter = rate_limiter(10.0).unwrap();
        assert!(limiter.check().is_ok());
        let wait = limiter
            .check()
            .unwrap_err()
            .wait_time_from(governor::clock::Clock::now(&governor::clock::DefaultClock::default()));
        assert!(wait > Duration::from_millis(50) && wait <= Duration::from_millis(100), "{wait:?}");
        assert!(rate_limiter(0.0).is_none());
    }
}
