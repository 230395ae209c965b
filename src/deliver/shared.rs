//! What the workers of one edition's delivery share: the claimed rows on
//! their way (`Job`, and `Done` once sent), the lanes (a relay, or the
//! outbox, with its rate, daily cap and failure count) and the queue.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, Utc};
use tokio::sync::{mpsc, oneshot, Mutex};

use super::{SendOutcome, Transport};
use crate::compose::Digest;
use crate::store::{ClaimedDelivery, Store, StoreError};

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
    /// The rate for the whole cluster: sends per time slot of so many
    /// seconds, taken from the store; none without a limit.
    slots: Option<Slots>,
    /// Failed connections in a row; reset by any transaction that reached
    /// the server.
    pub(super) failures_in_row: AtomicUsize,
    /// While set and in the future, the lane takes no messages.
    pub(super) aside_until: std::sync::Mutex<Option<Instant>>,
    /// How long the next setting aside lasts (doubles each time, up to 10 min).
    pub(super) aside_for: std::sync::Mutex<Duration>,
    /// Sends taken from the cluster's count for today and not used yet.
    allowance: AtomicU64,
    /// The cluster's count for today reached the cap.
    cap_reached: AtomicBool,
    /// One reservation from the store at a time.
    reserving: Mutex<()>,
    /// Messages per day at most, for the whole cluster (0: no limit).
    pub(super) cap: u64,
}

/// A relay's rate as the cluster shares it: `per_slot` sends in each slot
/// of `seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slots {
    seconds: i64,
    per_slot: i64,
}

impl Slots {
    fn of_rate(rate: f64) -> Option<Self> {
        if !(rate.is_finite() && rate > 0.0) {
            return None;
        }
        Some(if rate >= 1.0 {
            Self { seconds: 1, per_slot: rate.floor() as i64 }
        } else {
            Self { seconds: (1.0 / rate).ceil() as i64, per_slot: 1 }
        })
    }
}

impl Lane {
    /// One lane per relay of the transport (or the outbox).
    pub(super) fn all(transport: &Transport) -> Vec<Lane> {
        transport
            .lanes()
            .into_iter()
            .map(|(name, concurrency, rate, cap)| Lane {
                name,
                concurrency,
                limiter: rate_limiter(rate),
                slots: Slots::of_rate(rate),
                failures_in_row: AtomicUsize::new(0),
                aside_until: std::sync::Mutex::new(None),
                aside_for: std::sync::Mutex::new(Duration::from_secs(30)),
                allowance: AtomicU64::new(0),
                cap_reached: AtomicBool::new(false),
                reserving: Mutex::new(()),
                cap,
            })
            .collect()
    }

    pub(super) fn capped(&self) -> bool {
        self.cap_reached.load(Ordering::Relaxed) && self.allowance.load(Ordering::Relaxed) == 0
    }

    /// Takes one of today's sends before a send (given back if the send
    /// fails). With a daily cap the sends come from the cluster's count in
    /// the store, a few at a time, so all the nodes together never go past
    /// the cap. False when the cap is reached.
    pub(super) async fn reserve(&self, store: &Store, day: NaiveDate) -> Result<bool, StoreError> {
        if self.cap == 0 {
            return Ok(true);
        }
        loop {
            let taken = self
                .allowance
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
            if taken.is_ok() {
                return Ok(true);
            }
            if self.cap_reached.load(Ordering::Relaxed) {
                return Ok(false);
            }
            let _one = self.reserving.lock().await;
            if self.allowance.load(Ordering::Relaxed) > 0 {
                continue;
            }
            let want = u64::try_from(self.concurrency.clamp(1, 64)).unwrap_or(1);
            let got = store.reserve_relay_sends(&self.name, day, want, self.cap).await?;
            if got == 0 {
                self.cap_reached.store(true, Ordering::Relaxed);
                return Ok(false);
            }
            self.allowance.fetch_add(got, Ordering::Relaxed);
        }
    }

    pub(super) fn unreserve(&self) {
        if self.cap > 0 {
            self.allowance.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Waits for a send of the relay's current time slot, shared by the
    /// whole cluster (none to wait for without a rate).
    pub(super) async fn take_slot(&self, store: &Store) -> Result<(), StoreError> {
        let Some(Slots { seconds, per_slot }) = self.slots else { return Ok(()) };
        loop {
            let now = chrono::Utc::now();
            let slot = now.timestamp() / seconds;
            if store.take_relay_slot(&self.name, slot, per_slot).await? {
                return Ok(());
            }
            let next = (slot + 1) * seconds * 1000;
            let wait = u64::try_from(next - now.timestamp_millis()).unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(wait.max(1))).await;
        }
    }

    /// Gives today's unused sends back to the cluster's count.
    async fn give_back(&self, store: &Store, day: NaiveDate) {
        let unused = self.allowance.swap(0, Ordering::Relaxed);
        if let Err(e) = store.return_relay_sends(&self.name, day, unused).await {
            tracing::warn!(relay = %self.name, "cannot give back {unused} unused sends of today's cap: {e}");
        }
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
    /// The store, for the relays' shares of the cluster's limits.
    pub(super) store: Store,
    /// Today (UTC), for the daily caps.
    pub(super) day: NaiveDate,
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
        store: Store,
        day: NaiveDate,
    ) -> Self {
        Self {
            digest,
            transport,
            jobs: Mutex::new(jobs),
            requeued: std::sync::Mutex::new(VecDeque::new()),
            in_hand: AtomicUsize::new(0),
            lanes,
            store,
            day,
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

/// Gives the relays' unused sends of today back to the cluster's count.
pub(super) async fn give_back_lanes(store: &Store, shared: &Shared, day: NaiveDate) {
    for lane in &shared.lanes {
        lane.give_back(store, day).await;
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
