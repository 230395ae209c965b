//! The deliver stage: the delivery ledger's worker. It claims due rows,
//! builds each reader's message, sends it, and records the outcome:
//! `sent` right after the server accepts the message, `pending` with a later
//! `next_attempt_at` on a temporary failure, `failed` on a permanent one or
//! after `mail.max_attempts`. A rerun sends only what is still due, so it
//! never mails anyone twice; after a crash only the messages that were in
//! flight can go again, with the same Message-ID.

pub mod smtp;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures_util::stream::{self, StreamExt};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rand::Rng;

use crate::compose::{ComposeError, Digest, Recipient};
use crate::config::Config;
use crate::store::{ClaimedDelivery, DeliveryOutcome, Edition, Store, StoreError};
use crate::subscribe::Secret;
use crate::templates::Templates;

pub use smtp::{SendOutcome, Transport, TransportError};

/// A source of the current time: the system clock in production, a fixed
/// or stepping clock in tests.
pub type Clock = dyn Fn() -> DateTime<Utc> + Send + Sync;

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
    /// Rows returned to pending at start: left `sending` by a process that died.
    pub released: u64,
    /// The earliest time a deferred message is due again.
    pub next_retry: Option<DateTime<Utc>>,
    pub stopped: bool,
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
        if stopped(options) {
            report.stopped = true;
            break;
        }
        report.editions += 1;
        deliver_edition(
            config,
            store,
            templates,
            secret,
            clock,
            options,
            &transport,
            &edition,
            &mut report,
        )
        .await?;
    }
    Ok(report)
}

#[allow(clippy::too_many_arguments)]
#[tracing::instrument(skip_all, fields(list = %edition.list, date = %edition.edition_date))]
async fn deliver_edition(
    config: &Config,
    store: &Store,
    templates: &Templates,
    secret: &Secret,
    clock: &Clock,
    options: &DeliverOptions,
    transport: &Arc<Transport>,
    edition: &Edition,
    report: &mut DeliverReport,
) -> Result<(), DeliverError> {
    let digest =
        Arc::new(Digest::load(config, store, templates.clone(), secret.clone(), edition).await?);
    let due = store.due_count(edition.id, clock()).await?;
    let progress = Progress::new(options.progress, &edition.list, u64::try_from(due).unwrap_or(0));
    let concurrency = config.mail.concurrency;
    let batch = (concurrency * 32).max(64);
    let mut limiter = RateLimiter::new(config.mail.rate_per_second);
    let (mut sent, mut deferred, mut failed) = (0usize, 0usize, 0usize);

    loop {
        if stopped(options) {
            report.stopped = true;
            break;
        }
        let now = clock();
        let claimed = store.claim_deliveries(edition, now, batch).await?;
        if claimed.is_empty() {
            break;
        }
        let results = stream::iter(claimed)
            .then(|claim| {
                let wait = limiter.next_wait();
                async move {
                    if let Some(wait) = wait {
                        tokio::time::sleep(wait).await;
                    }
                    claim
                }
            })
            .map(|claim| {
                let digest = Arc::clone(&digest);
                let transport = Arc::clone(transport);
                tokio::spawn(async move {
                    let outcome = send_one(&digest, &transport, &claim, now).await;
                    (claim, outcome)
                })
            })
            .buffer_unordered(concurrency);
        let mut results = std::pin::pin!(results);
        while let Some(joined) = results.next().await {
            let (claim, outcome) = match joined {
                Ok(done) => done,
                Err(e) => {
                    // The row stays `sending` and is retried on the next run.
                    tracing::error!("a send task stopped unexpectedly: {e}");
                    continue;
                }
            };
            let now = clock();
            match outcome {
                SendOutcome::Sent { reply } => {
                    store
                        .record_delivery(
                            edition.id,
                            claim.subscriber,
                            DeliveryOutcome::Sent { reply: &reply, at: now },
                        )
                        .await?;
                    sent += 1;
                }
                SendOutcome::Retry { error }
                    if claim.attempts < i64::from(config.mail.max_attempts) =>
                {
                    let next = now + backoff(claim.attempts, config.mail.retry_base_secs);
                    tracing::warn!(to = %claim.email, attempt = claim.attempts, "deferred until {next}: {error}");
                    store
                        .record_delivery(
                            edition.id,
                            claim.subscriber,
                            DeliveryOutcome::Retry { error: &error, next },
                        )
                        .await?;
                    report.next_retry = Some(report.next_retry.map_or(next, |t| t.min(next)));
                    deferred += 1;
                }
                SendOutcome::Retry { error } => {
                    let error = format!("gave up after {} attempts: {error}", claim.attempts);
                    tracing::error!(to = %claim.email, "{error}");
                    store
                        .record_delivery(
                            edition.id,
                            claim.subscriber,
                            DeliveryOutcome::Failed { error: &error },
                        )
                        .await?;
                    failed += 1;
                }
                SendOutcome::Failed { error } => {
                    tracing::error!(to = %claim.email, "refused: {error}");
                    store
                        .record_delivery(
                            edition.id,
                            claim.subscriber,
                            DeliveryOutcome::Failed { error: &error },
                        )
                        .await?;
                    failed += 1;
                }
            }
            progress.update(sent, deferred, failed);
        }
    }
    progress.finish(sent, deferred, failed);
    let done = store.finish_edition_if_done(edition.id).await?;
    tracing::info!(sent, deferred, failed, done, "delivered");
    report.sent += sent;
    report.deferred += deferred;
    report.failed += failed;
    Ok(())
}

async fn send_one(
    digest: &Digest,
    transport: &Transport,
    claim: &ClaimedDelivery,
    now: DateTime<Utc>,
) -> SendOutcome {
    let recipient = Recipient {
        subscriber: claim.subscriber,
        email: claim.email.clone(),
        name: claim.name.clone(),
        message_id: claim.message_id.clone(),
    };
    match digest.message(&recipient, now) {
        Ok(message) => transport.send(message, &file_name(&claim.message_id)).await,
        // A message that cannot be built now will not build later either.
        Err(e) => SendOutcome::Failed { error: e.to_string() },
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

fn stopped(options: &DeliverOptions) -> bool {
    options.stop.as_ref().is_some_and(|s| s.load(Ordering::Relaxed))
}

/// Exponential backoff with ±20 % jitter: base, 2×base, 4×base, … capped at six hours.
pub fn backoff(attempts: i64, base_secs: u64) -> chrono::Duration {
    let exp = u32::try_from(attempts.saturating_sub(1).clamp(0, 20)).unwrap_or(20);
    let secs = base_secs.saturating_mul(2u64.saturating_pow(exp)).min(6 * 3600) as f64;
    let jitter = rand::thread_rng().gen_range(0.8..1.2);
    chrono::Duration::milliseconds((secs * jitter * 1000.0) as i64)
}

/// Spaces sends evenly at `rate` per second (0 = no limit).
struct RateLimiter {
    interval: Option<Duration>,
    next: Instant,
}

impl RateLimiter {
    fn new(rate: f64) -> Self {
        let interval = (rate > 0.0).then(|| Duration::from_secs_f64(1.0 / rate));
        Self { interval, next: Instant::now() }
    }

    /// How long to wait before the next send.
    fn next_wait(&mut self) -> Option<Duration> {
        let interval = self.interval?;
        let now = Instant::now();
        let slot = self.next.max(now);
        self.next = slot + interval;
        (slot > now).then(|| slot - now)
    }
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
    fn outbox_names_are_file_safe() {
        assert_eq!(
            file_name("<herald.daily.20261124.42@news.example.com>"),
            "herald.daily.20261124.42"
        );
        assert_eq!(file_name("<a/b\\c@x>"), "a_b_c");
    }

    #[test]
    fn rate_limiter_spaces_sends() {
        let mut limiter = RateLimiter::new(10.0);
        assert_eq!(limiter.next_wait(), None);
        let wait = limiter.next_wait().unwrap();
        assert!(wait > Duration::from_millis(50) && wait <= Duration::from_millis(100), "{wait:?}");
        assert_eq!(RateLimiter::new(0.0).next_wait(), None);
    }
}
