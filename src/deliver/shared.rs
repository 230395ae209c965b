//! What the workers of one edition's delivery share: the claimed rows on
//! their way (`Job`, and `Done` once sent), the lanes (a relay, or the
//! outbox, with its rate, daily cap and failure count) and the queue.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot, Mutex};

use super::{SendOutcome, Transport};
use crate::compose::Digest;
use crate::store::{ClaimedDelivery, Store};

/// A claimed row on its way to a worker.
pub(super) struct Job {
    pub(super) claim: ClaimedDelivery,
    pub(super) now: DateTime<Utc>,
}

/// A worker's result, acknowledged once it is in the ledger.
pub(super) struct Done {
    pub(super) claim: ClaimedDelivery,
    pub(super) outcome: SendOutcome,
    pub(super) lane: usize,
    pub(super) recorded: oneshot::Sender<()>,
}

/// One way out (a relay, or the outbox) and its share of the sending.
pub(super) struct Lane {
    pub(super) name: String,
    pub(super) concurrency: usize,
    /// Spaces this lane's sends at its `rate_per_second`; none without a limit.
    pub(super) limiter: Option<governor::DefaultDirectRateLimiter>,
    /// Failed connections in a row; reset by any transaction that reached
    /// the server.
    pub(super) failures_in_row: AtomicUsize,
    /// While set and in the future, the lane takes no messages.
    pub(super) aside_until: std::sync::Mutex<Option<Instant>>,
    /// How long the next setting aside lasts (doubles each time, up to 10 min).
    pub(super) aside_for: std::sync::Mutex<Duration>,
    /// Messages sent today (UTC), counting earlier runs.
    pub(super) sent_today: AtomicU64,
    /// Messages per day at most (0: no limit).
    pub(super) cap: u64,
}

impl Lane {
    /// One lane per relay of the transport (or the outbox), with what it
    /// already sent today.
    pub(super) async fn all(
        store: &Store,
        transport: &Transport,
        today: DateTime<Utc>,
    ) -> Result<Vec<Lane>, crate::store::StoreError> {
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
        Ok(lanes)
    }

    pub(super) fn capped(&self) -> bool {
        self.cap > 0 && self.sent_today.load(Ordering::Relaxed) >= self.cap
    }

    /// Takes one of today's slots before a send (given back if the send
    /// fails), so concurrent workers never go past the cap.
    pub(super) fn reserve(&self) -> bool {
        if self.cap == 0 {
            self.sent_today.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        self.sent_today
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| (n < self.cap).then_some(n + 1))
            .is_ok()
    }

    pub(super) fn unreserve(&self) {
        self.sent_today.fetch_sub(1, Ordering::Relaxed);
    }

    pub(super) fn aside(&self) -> Option<Duration> {
        let until = *self.aside_until.lock().unwrap_or_else(|e| e.into_inner());
        until.and_then(|t| t.checked_duration_since(Instant::now()))
    }

    pub(super) fn available(&self) -> bool {
        !self.capped() && self.aside().is_none()
    }

    /// Counts a failed connection; sets the lane aside after too many in a
    /// row. Returns true when it was just set aside.
    pub(super) fn connection_failed(&self) -> bool {
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
pub(super) struct Shared {
    pub(super) digest: Digest,
    pub(super) transport: Arc<Transport>,
    pub(super) jobs: Mutex<mpsc::Receiver<Job>>,
    /// Messages a failing relay handed back for another relay to send.
    pub(super) requeued: std::sync::Mutex<VecDeque<Job>>,
    /// Workers holding a job, or about to take one ([`Shared::hold`]): a job
    /// held may still come back to `requeued`.
    in_hand: AtomicUsize,
    pub(super) lanes: Vec<Lane>,
    /// Set to stop taking jobs: a signal, or no relay can take any.
    pub(super) halt: AtomicBool,
    /// Set by a signal (`DeliverOptions::stop`); turned into `halt`.
    signal: Option<Arc<AtomicBool>>,
    pub(super) halt_reason: std::sync::Mutex<Option<String>>,
}

impl Shared {
    pub(super) fn new(
        digest: Digest,
        transport: Arc<Transport>,
        jobs: mpsc::Receiver<Job>,
        lanes: Vec<Lane>,
        signal: Option<Arc<AtomicBool>>,
    ) -> Self {
        Self {
            digest,
            transport,
            jobs: Mutex::new(jobs),
            requeued: std::sync::Mutex::new(VecDeque::new()),
            in_hand: AtomicUsize::new(0),
            lanes,
            halt: AtomicBool::new(false),
            signal,
            halt_reason: std::sync::Mutex::new(None),
        }
    }

    /// Whether to stop taking jobs: the sending halted, or a signal asked
    /// to stop (also once every row is claimed, with jobs still queued).
    pub(super) fn halted(&self) -> bool {
        if self.signal.as_ref().is_some_and(|s| s.load(Ordering::Relaxed)) {
            self.stop("stopped by a signal".into());
        }
        self.halt.load(Ordering::Relaxed)
    }

    /// The subscribers of the rows claimed but not sent: still queued, or
    /// handed back by a failing relay. Called once the workers are done.
    pub(super) async fn take_unsent(&self) -> Vec<i64> {
        let mut unsent = Vec::new();
        let mut jobs = self.jobs.lock().await;
        while let Ok(job) = jobs.try_recv() {
            unsent.push(job.claim.subscriber);
        }
        while let Some(job) = self.next_requeued() {
            unsent.push(job.claim.subscriber);
        }
        unsent
    }

    pub(super) fn stop(&self, why: String) {
        if !self.halt.swap(true, Ordering::Relaxed) {
            *self.halt_reason.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
        }
    }

    pub(super) fn next_requeued(&self) -> Option<Job> {
        self.requeued.lock().unwrap_or_else(|e| e.into_inner()).pop_front()
    }

    pub(super) fn requeue(&self, job: Job) {
        self.requeued.lock().unwrap_or_else(|e| e.into_inner()).push_back(job);
    }

    /// Counts the calling worker as holding a job until the guard drops:
    /// taken before the worker takes one and dropped once the job is handed
    /// on (to the recorder, or back to `requeued`).
    pub(super) fn hold(&self) -> Held<'_> {
        self.in_hand.fetch_add(1, Ordering::SeqCst);
        Held(&self.in_hand)
    }

    /// No job is left nor can come back: nothing requeued, the claim queue
    /// closed and empty, and no worker holding one.
    pub(super) fn finished(&self) -> bool {
        self.in_hand.load(Ordering::SeqCst) == 0 && self.drained()
    }

    /// No job is left: nothing requeued, and the claim queue is closed and empty.
    fn drained(&self) -> bool {
        self.requeued.lock().unwrap_or_else(|e| e.into_inner()).is_empty()
            && self.jobs.try_lock().is_ok_and(|rx| rx.is_closed() && rx.is_empty())
    }
}

/// A worker's hold on a job (see [`Shared::hold`]).
pub(super) struct Held<'a>(&'a AtomicUsize);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Keeps each relay's count for today, so daily caps hold across runs.
pub(super) async fn save_lane_counts(store: &Store, shared: &Shared, today: DateTime<Utc>) {
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
/// A limiter that lets one message through every `1 / rate` seconds (no
/// bursts), or none for a rate of 0.
pub(super) fn rate_limiter(rate: f64) -> Option<governor::DefaultDirectRateLimiter> {
    let period = Duration::try_from_secs_f64(1.0 / rate).ok().filter(|p| !p.is_zero())?;
    Some(governor::RateLimiter::direct(governor::Quota::with_period(period)?))
}

#[cfg(test)]
mod tests {
    use super::*;

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
