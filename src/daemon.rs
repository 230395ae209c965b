//! `herald daemon`: the stages on their schedules, and the web routes, in one
//! process. It also says what `/healthz` and `/metrics` report; `web::admin`
//! serves them.
//!
//! The daemon's time comes from a [`DaemonClock`]: the system clock, with
//! tokio-cron-scheduler waking the dispatcher every second, or a
//! [`TestClock`] that tests set and advance, each change waking the
//! dispatcher at once. Either way the same code decides what runs: catch-up
//! at start, then on each wake-up the dispatcher starts what is due from
//! each job's own schedule, computed on the wall clock of its time zone
//! (`Schedule::next_fire`), so a list at 07:00 Europe/Berlin fires at 07:00
//! on both sides of a clock change. (The scheduler's own time-zone jobs fix
//! the UTC offset when they are created, which would move such a list by an
//! hour twice a year.) Job start times, the fire times they are given, the
//! edition dates, the handled records, `last_wake` and the log lines all
//! come from that clock; only the lease runs on the system clock, as it is
//! shared with other processes.
//!
//! Jobs: `collect` (then publish when anything changed), one `list:SLUG` per
//! list (compose its edition, publish its archive page, deliver), and
//! `deliver`, which retries deferred mail when its time comes. A job still
//! running at its next tick is not started twice, and deliveries never run
//! two at a time. Each scheduled job keeps in the store the last fire time
//! it handled, so a restart knows which editions were missed while no daemon
//! ran (`daemon.catch_up`, `daemon.max_lateness_minutes`).
//!
//! One daemon leads the scheduled work of a store: it holds a lease row,
//! renewed by a heartbeat. On SQLite that makes one daemon per store: a
//! second one is refused. On PostgreSQL several daemons (nodes) share the
//! store: the others follow, and the first to find the lease expired takes
//! the lead, catching up as a restarted daemon does. Every node, leading or
//! following, delivers (claims keep two nodes off one row, see
//! `cluster`), serves the web routes, and publishes its own public/ again
//! whenever the store's content version moves, so every node serves the
//! same bytes. SIGTERM or SIGINT stops the scheduling, lets running jobs finish (deliveries stop
//! claiming and record what is in flight) for up to `daemon.grace_secs`,
//! and exits 0.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use serde_json::json;
use tokio::sync::Notify;

use crate::cluster::Node;
use crate::config::{CatchUp, Config};
use crate::deliver::{self, DeliverOptions};
use crate::pipeline::{Pipeline, Summary};
use crate::store::{Lease, Store, StoreError};
use crate::subscribe::Secret;
use crate::templates::Templates;
use crate::types::Schedule;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("{0} holds this store; stop it first (a daemon killed without stopping lets its lease expire after daemon.lease_secs)")]
    Held(Lease),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Web(#[from] crate::web::WebError),
    #[error("the scheduler failed: {0}")]
    Scheduler(String),
    #[error(transparent)]
    Secret(#[from] crate::subscribe::token::SecretError),
    #[error("the test clock {}: {reason}", path.display())]
    TestClock { path: PathBuf, reason: String },
}

/// Where the daemon's time comes from, and what wakes its dispatcher.
#[derive(Clone)]
pub struct DaemonClock {
    now: deliver::Clock,
    /// A test clock's: notified each time it is set. None for the system
    /// clock, which tokio-cron-scheduler's ticker wakes for every second.
    set: Option<Arc<Notify>>,
}

impl DaemonClock {
    /// The system clock; the dispatcher wakes every second.
    pub fn system() -> Self {
        Self { now: Arc::new(Utc::now), set: None }
    }

    pub fn now(&self) -> DateTime<Utc> {
        (self.now)()
    }
}

/// A clock the tests set and advance; setting it wakes the dispatcher at
/// once, and nothing else does. Reached only through the library, or
/// through `herald daemon --test-clock FILE`, a hidden option for the
/// integration tests ([`TestClock::follow_file`]).
#[derive(Clone)]
pub struct TestClock {
    time: Arc<Mutex<DateTime<Utc>>>,
    set: Arc<Notify>,
}

impl TestClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        Self { time: Arc::new(Mutex::new(start)), set: Arc::new(Notify::new()) }
    }

    pub fn now(&self) -> DateTime<Utc> {
        *self.time.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets the time and wakes the dispatcher.
    pub fn set(&self, at: DateTime<Utc>) {
        *self.time.lock().unwrap_or_else(|e| e.into_inner()) = at;
        // notify_one keeps the wake-up for a dispatcher not yet waiting.
        self.set.notify_one();
    }

    pub fn advance(&self, by: chrono::Duration) {
        self.set(self.now() + by);
    }

    /// The daemon's view of this clock.
    pub fn clock(&self) -> DaemonClock {
        let time = Arc::clone(&self.time);
        DaemonClock {
            now: Arc::new(move || *time.lock().unwrap_or_else(|e| e.into_inner())),
            set: Some(Arc::clone(&self.set)),
        }
    }

    /// A clock that reads its time from `path`, an RFC 3339 time such as
    /// `2026-11-24T07:00:00Z`, now and whenever the file changes (looked
    /// at every 10 ms, from a task that lives as long as the runtime). For
    /// the integration tests, which drive a `herald daemon` child process
    /// this way (`--test-clock`, hidden from `--help`).
    pub fn follow_file(path: PathBuf) -> Result<Self, DaemonError> {
        let read = |path: &std::path::Path| -> Result<DateTime<Utc>, String> {
            let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
            DateTime::parse_from_rfc3339(text.trim())
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| format!("`{}` is not an RFC 3339 time: {e}", text.trim()))
        };
        let start =
            read(&path).map_err(|reason| DaemonError::TestClock { path: path.clone(), reason })?;
        let clock = Self::new(start);
        let follower = clock.clone();
        tokio::spawn(async move {
            let mut seen = start;
            loop {
                tokio::time::sleep(Duration::from_millis(10)).await;
                // A file caught half written is read again next time.
                if let Ok(at) = read(&path) {
                    if at != seen {
                        seen = at;
                        follower.set(at);
                    }
                }
            }
        });
        Ok(clock)
    }
}

/// What a job does.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Collect,
    List(String),
    Deliver,
    /// Publishes public/ again from the store, when another node changed it.
    Publish,
}

/// A job and, for the scheduled ones, when it fires.
struct Job {
    name: String,
    kind: Kind,
    schedule: Option<(Schedule, chrono_tz::Tz)>,
}

impl Job {
    /// The daemon's jobs: collect on `collect.schedule` (UTC), each list on
    /// its schedule in its time zone, and deliver when a retry is due.
    fn all(config: &Config) -> Vec<Job> {
        let collect = Job {
            name: "collect".into(),
            kind: Kind::Collect,
            schedule: Some((config.collect.schedule.clone(), chrono_tz::UTC)),
        };
        let lists = config.lists.iter().map(|list| Job {
            name: format!("list:{}", list.slug),
            kind: Kind::List(list.slug.to_string()),
            schedule: Some((list.schedule.clone(), list.timezone)),
        });
        let deliver = Job { name: "deliver".into(), kind: Kind::Deliver, schedule: None };
        let publish = Job { name: "publish".into(), kind: Kind::Publish, schedule: None };
        std::iter::once(collect).chain(lists).chain([deliver, publish]).collect()
    }
}

/// What `/healthz` and `/metrics` show of a job.
#[derive(Debug, Clone, Default)]
struct JobState {
    running: bool,
    next: Option<DateTime<Utc>>,
    last_start: Option<DateTime<Utc>>,
    last_finish: Option<DateTime<Utc>>,
    last_ok: Option<bool>,
    last_success: Option<DateTime<Utc>>,
    last_duration: f64,
    last_summary: String,
    runs_ok: u64,
    runs_failed: u64,
}

struct Daemon {
    config: Config,
    store: Store,
    templates: Templates,
    secret: Secret,
    clock: DaemonClock,
    jobs: Vec<Job>,
    states: Mutex<HashMap<String, JobState>>,
    /// Set on SIGTERM: deliveries stop claiming.
    stopping: Arc<AtomicBool>,
    /// Deliveries run one at a time.
    delivering: tokio::sync::Mutex<()>,
    /// When a deferred message is next due.
    retry_at: Mutex<Option<DateTime<Utc>>>,
    /// Unix seconds (on the daemon's clock) of the scheduler's last wake-up.
    last_wake: AtomicI64,
    articles_collected: AtomicU64,
    /// Wake-ups handled (the catch-up at start being the first) and jobs
    /// finished, for a caller that waits until the daemon has caught up
    /// with its clock.
    progress: tokio::sync::watch::Sender<(u64, u64)>,
    /// The year simulation keeps the handled records in memory: a store
    /// write a run makes it ten times slower.
    #[cfg(test)]
    handled_in_memory: Option<Mutex<HashMap<String, DateTime<Utc>>>>,
    /// The simulation's jobs: noted here instead of running the stages.
    #[cfg(test)]
    recorder: Option<Arc<Mutex<Vec<tests::Ran>>>>,
    /// This process as a node of the store; none in the schedule
    /// simulations, which then leave the cluster alone.
    node: Option<Arc<Node>>,
    /// Whether this daemon leads the scheduled work (holds the lease).
    leader: Arc<AtomicBool>,
    /// The store's content version that this node's public/ shows.
    shown: Mutex<Option<String>>,
    /// When this node last looked for work other nodes left it.
    looked: Mutex<Option<Instant>>,
    /// What the inbound SMTP listener did, when it runs.
    bounce_listener: Option<Arc<crate::bounces::listener::Counters>>,
}

/// Takes the store's lease for this process, unless another daemon holds
/// it and has not let it expire. Returns the lease and whether this daemon
/// leads: on PostgreSQL a daemon that finds the lease held follows (and
/// takes the lead when the leader's lease expires); on SQLite it is refused.
pub async fn take_lease(config: &Config, store: &Store) -> Result<(Lease, bool), DaemonError> {
    let now = Utc::now();
    let me = Lease {
        holder: format!("{:016x}", rand::random::<u64>()),
        pid: i64::from(std::process::id()),
        host: crate::cluster::host_name(),
        started_at: now,
        heartbeat_at: now,
        expires_at: now + lease_ttl(config),
    };
    match store.acquire_lease(&me, now).await? {
        Ok(()) => {
            tracing::info!(pid = me.pid, host = %me.host, "took the store's lease: this daemon leads the scheduled work");
            Ok((me, true))
        }
        Err(held) if store.backend() == crate::store::Backend::Postgres => {
            tracing::info!("{held} leads the scheduled work; this daemon follows: it delivers, serves and publishes, and takes the lead if that daemon stops");
            Ok((me, false))
        }
        Err(held) => Err(DaemonError::Held(held)),
    }
}

/// Completes `stop` on SIGTERM or SIGINT.
async fn stop_on_signal(shutdown: crate::pipeline::Shutdown, stop: Arc<Notify>) {
    shutdown.wait().await;
    tracing::info!("stopping: no new jobs; running ones get to finish");
    // notify_one keeps the wake-up for a loop not yet waiting.
    stop.notify_one();
}

/// Every third of the lease: the leader renews it; a follower tries to take
/// it, which succeeds once the leader's lease expired. A leader that lost
/// the lease follows on PostgreSQL, and stops on SQLite (`stop`).
async fn heartbeat(
    store: Store,
    stop: Arc<Notify>,
    me: Lease,
    ttl: chrono::Duration,
    leader: Arc<AtomicBool>,
) {
    let every = Duration::from_secs((ttl.num_seconds() as u64 / 3).max(1));
    let clustered = store.backend() == crate::store::Backend::Postgres;
    loop {
        tokio::time::sleep(every).await;
        let now = Utc::now();
        if leader.load(Ordering::Acquire) {
            match store.renew_lease(&me.holder, now, now + ttl).await {
                Ok(true) => {}
                Ok(false) if clustered => {
                    tracing::warn!("another daemon took the lead; this one follows");
                    leader.store(false, Ordering::Release);
                }
                Ok(false) => {
                    tracing::error!("another daemon took the store's lease; stopping");
                    stop.notify_one();
                    return;
                }
                Err(e) => tracing::warn!("cannot renew the store's lease: {e}"),
            }
        } else {
            let mine = Lease { heartbeat_at: now, expires_at: now + ttl, ..me.clone() };
            match store.acquire_lease(&mine, now).await {
                Ok(Ok(())) => {
                    tracing::info!("took the lead of the scheduled work");
                    leader.store(true, Ordering::Release);
                }
                Ok(Err(_)) => {}
                Err(e) => tracing::warn!("cannot read the store's lease: {e}"),
            }
        }
    }
}

/// What wakes the dispatcher: tokio-cron-scheduler's ticker every second
/// (with the system clock; which job runs when is decided by the dispatcher
/// from each schedule's fire times), or each setting of a test clock.
enum Wakes {
    Ticker(tokio_cron_scheduler::JobScheduler, tokio::sync::mpsc::Receiver<()>),
    TestClock(Arc<Notify>),
}

impl Wakes {
    async fn start(clock: &DaemonClock) -> Result<Self, DaemonError> {
        if let Some(set) = &clock.set {
            return Ok(Self::TestClock(Arc::clone(set)));
        }
        let failed =
            |e: tokio_cron_scheduler::JobSchedulerError| DaemonError::Scheduler(e.to_string());
        let (wake_tx, wake) = tokio::sync::mpsc::channel::<()>(1);
        let scheduler = tokio_cron_scheduler::JobScheduler::new().await.map_err(failed)?;
        let ticker =
            tokio_cron_scheduler::Job::new_repeated_async(Duration::from_secs(1), move |_, _| {
                let wake_tx = wake_tx.clone();
                Box::pin(async move {
                    let _ = wake_tx.try_send(());
                })
            })
            .map_err(failed)?;
        scheduler.add(ticker).await.map_err(failed)?;
        scheduler.start().await.map_err(failed)?;
        Ok(Self::Ticker(scheduler, wake))
    }

    /// The next wake-up; false when there will be none.
    async fn next(&mut self) -> bool {
        match self {
            Self::Ticker(_, wake) => wake.recv().await.is_some(),
            Self::TestClock(set) => {
                set.notified().await;
                true
            }
        }
    }

    async fn stop(self) {
        if let Self::Ticker(mut scheduler, _) = self {
            let _ = scheduler.shutdown().await;
        }
    }
}

fn lease_ttl(config: &Config) -> chrono::Duration {
    chrono::Duration::seconds(i64::try_from(config.daemon.lease_secs).unwrap_or(30))
}

/// Runs the daemon until SIGTERM or SIGINT, holding the lease `me`, on
/// `clock` ([`DaemonClock::system`] but in tests). `listener` serves the
/// feeds and the subscription pages; `/healthz` and `/metrics` are served
/// as `admin` says (their own listener, the token). `bounces`, bound to
/// `bounces.listen`, takes delivery reports over SMTP.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    config: Config,
    store: Store,
    templates: Templates,
    listener: tokio::net::TcpListener,
    bounces: Option<tokio::net::TcpListener>,
    admin: crate::web::admin::Access,
    (me, leading): (Lease, bool),
    shutdown: crate::pipeline::Shutdown,
    clock: DaemonClock,
) -> Result<(), DaemonError> {
    let ttl = lease_ttl(&config);
    let secret = Secret::resolve(&store).await?;
    let node = Node::join(&store, "daemon", Duration::from_secs(config.daemon.lease_secs)).await?;
    if node.released() > 0 {
        tracing::warn!(
            "{} message(s) were being sent when herald last stopped here; sending them again with the same Message-ID",
            node.released()
        );
    }
    let intake = crate::bounces::Intake::new(store.clone(), secret.clone(), &config);
    let mut daemon = Daemon::new(config, store.clone(), templates.clone(), secret, clock);
    let counters = bounces.as_ref().map(|_| Arc::default());
    {
        let fresh = Arc::get_mut(&mut daemon).expect("no other handle yet");
        fresh.node = Some(Arc::clone(&node));
        fresh.leader.store(leading, Ordering::Release);
        fresh.bounce_listener.clone_from(&counters);
    }

    // The inbound SMTP listener for delivery reports, on every node,
    // stopped with the web side.
    let bounces_stop = Arc::new(Notify::new());
    let bounces = match (bounces, counters) {
        (Some(listener), Some(counters)) => {
            let limits = crate::bounces::listener::Limits::from_config(&daemon.config.bounces);
            let (clock, stop) = (Arc::clone(&daemon.clock.now), Arc::clone(&bounces_stop));
            if let Ok(addr) = listener.local_addr() {
                tracing::info!(%addr, "taking delivery reports over SMTP");
            }
            Some(tokio::spawn(crate::bounces::listener::serve(
                listener,
                intake.clone(),
                limits,
                clock,
                counters,
                async move { stop.notified().await },
            )))
        }
        _ => None,
    };

    // Stop on a signal, or when another daemon took the lease.
    let stop = Arc::new(Notify::new());
    let signals = tokio::spawn(stop_on_signal(shutdown, Arc::clone(&stop)));
    let heartbeat = tokio::spawn(heartbeat(
        store.clone(),
        Arc::clone(&stop),
        me.clone(),
        ttl,
        Arc::clone(&daemon.leader),
    ));

    // The web side, stopped after the jobs.
    let web_stop = Arc::new(Notify::new());
    let web = {
        let (config, store, web_stop) =
            (daemon.config.clone(), store.clone(), Arc::clone(&web_stop));
        let admin = crate::web::admin::Admin { health: Arc::clone(&daemon) as _, access: admin };
        tokio::spawn(async move {
            let shutdown = async move { web_stop.notified().await };
            crate::web::serve(&config, store, templates, listener, shutdown, Some(admin)).await
        })
    };

    // The bounce mailbox, polled while this daemon leads.
    let (imap_stop, imap_stopped) = tokio::sync::watch::channel(false);
    let imap = match &daemon.config.bounces.imap {
        Some(imap) => match crate::bounces::imap::Poller::new(intake, &daemon.config.bounces, imap)
        {
            Ok(poller) => Some(tokio::spawn(poller.run(
                Arc::clone(&daemon.leader),
                Arc::clone(&daemon.stopping),
                imap_stopped,
                Arc::clone(&daemon.clock.now),
            ))),
            Err(e) => {
                tracing::error!("the bounce mailbox is not polled: {e}");
                None
            }
        },
        None => None,
    };

    let scheduled = daemon.schedule(async move { stop.notified().await }).await;

    let _ = imap_stop.send(true);
    if let Some(mut imap) = imap {
        let grace = Duration::from_secs(daemon.config.daemon.grace_secs);
        if tokio::time::timeout(grace, &mut imap).await.is_err() {
            tracing::warn!("the bounce mailbox poll still running after daemon.grace_secs was stopped; its messages are read again next time");
            imap.abort();
        }
    }

    web_stop.notify_one();
    bounces_stop.notify_one();
    if let Some(Err(e)) = match bounces {
        Some(task) => Some(task.await),
        None => None,
    } {
        tracing::error!("the bounce listener stopped: {e}");
    }
    match web.await {
        Ok(Err(e)) => tracing::error!("the web server stopped: {e}"),
        Err(e) => tracing::error!("the web server stopped: {e}"),
        Ok(Ok(())) => {}
    }
    heartbeat.abort();
    signals.abort();
    if daemon.leader.load(Ordering::Acquire) {
        if let Err(e) = store.release_lease(&me.holder).await {
            tracing::warn!("cannot release the store's lease (it expires by itself): {e}");
        }
    }
    node.leave().await;
    scheduled?;
    tracing::info!("herald daemon stopped");
    Ok(())
}

impl Daemon {
    fn new(
        config: Config,
        store: Store,
        templates: Templates,
        secret: Secret,
        clock: DaemonClock,
    ) -> Arc<Self> {
        let jobs = Job::all(&config);
        let states = jobs.iter().map(|j| (j.name.clone(), JobState::default())).collect();
        let started = clock.now();
        Arc::new(Daemon {
            config,
            store,
            templates,
            secret,
            clock,
            jobs,
            states: Mutex::new(states),
            stopping: Arc::new(AtomicBool::new(false)),
            delivering: tokio::sync::Mutex::new(()),
            retry_at: Mutex::new(None),
            last_wake: AtomicI64::new(started.timestamp()),
            articles_collected: AtomicU64::new(0),
            progress: tokio::sync::watch::Sender::new((0, 0)),
            #[cfg(test)]
            handled_in_memory: None,
            #[cfg(test)]
            recorder: None,
            node: None,
            leader: Arc::new(AtomicBool::new(true)),
            shown: Mutex::new(None),
            looked: Mutex::new(None),
            bounce_listener: None,
        })
    }

    /// The scheduling, the one code path of production and tests: catch-up
    /// at start, then on each wake-up the jobs whose time has come, until
    /// `stop` completes; then running jobs get to finish.
    async fn schedule(
        self: &Arc<Self>,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<(), DaemonError> {
        let mut wakes = Wakes::start(&self.clock).await?;
        let mut running = tokio::task::JoinSet::new();
        let mut next = HashMap::new();
        let mut led = false;
        if let Err(e) = self.lead_or_follow(&mut running, &mut next, &mut led).await {
            wakes.stop().await;
            self.wind_down(running).await;
            return Err(e.into());
        }
        tracing::info!(
            jobs = self.jobs.len(),
            "herald daemon started; {}",
            if led {
                next.iter()
                    .map(|(job, at)| {
                        format!("{job} next at {}", at.format("%Y-%m-%d %H:%M:%S UTC"))
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            } else {
                "following: the scheduled work is another daemon's".to_owned()
            }
        );
        self.woke();
        tokio::pin!(stop);
        // The cluster is looked at every second of the system clock, whatever
        // clock the schedule follows: the lead can change hands, and other
        // nodes change the store, at any time.
        let mut cluster = tokio::time::interval(Duration::from_secs(1));
        cluster.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = &mut stop => break,
                woke = wakes.next() => {
                    if !woke {
                        break;
                    }
                    if let Err(e) = self.lead_or_follow(&mut running, &mut next, &mut led).await {
                        tracing::warn!("cannot catch up after taking the lead: {e}");
                    }
                    self.dispatch(&mut running, &mut next, self.clock.now());
                    while running.try_join_next().is_some() {}
                    self.woke();
                }
                _ = cluster.tick(), if self.node.is_some() => {
                    if let Err(e) = self.lead_or_follow(&mut running, &mut next, &mut led).await {
                        tracing::warn!("cannot catch up after taking the lead: {e}");
                    }
                    self.look_around(&mut running).await;
                    while running.try_join_next().is_some() {}
                }
            }
        }
        // Stop: no new jobs, deliveries stop claiming, running jobs finish.
        wakes.stop().await;
        self.wind_down(running).await;
        Ok(())
    }

    /// Follows the lease: on taking the lead (at start, or when the leader
    /// stopped), catches up as a restarted daemon does and schedules the
    /// jobs; on losing it, schedules nothing more (running jobs finish).
    async fn lead_or_follow(
        self: &Arc<Self>,
        running: &mut tokio::task::JoinSet<()>,
        next: &mut HashMap<String, DateTime<Utc>>,
        led: &mut bool,
    ) -> Result<(), StoreError> {
        let leading = self.leader.load(Ordering::Acquire);
        if leading && !*led {
            *next = self.catch_up(running, self.clock.now()).await?;
        } else if !leading && *led {
            next.clear();
            let mut states = self.states.lock().unwrap_or_else(|e| e.into_inner());
            states.values_mut().for_each(|s| s.next = None);
        }
        *led = leading;
        Ok(())
    }

    /// What a node does beyond its schedule, every two seconds: delivers
    /// what is due that no node is sending (an edition another node
    /// composed, rows a dead node held), and publishes public/ again when
    /// the store's content moved.
    async fn look_around(self: &Arc<Self>, running: &mut tokio::task::JoinSet<()>) {
        if self.node.is_none() || self.stopping.load(Ordering::Relaxed) {
            return;
        }
        {
            let mut looked = self.looked.lock().unwrap_or_else(|e| e.into_inner());
            if looked.is_some_and(|t| t.elapsed() < Duration::from_secs(2)) {
                return;
            }
            *looked = Some(Instant::now());
        }
        let now = self.clock.now();
        if !self.is_running("deliver") {
            match self.store.anything_due(now, Utc::now()).await {
                Ok(true) => {
                    if let Some(job) = self.jobs.iter().find(|j| j.kind == Kind::Deliver) {
                        self.start(running, job, now);
                    }
                }
                Ok(false) => {}
                Err(e) => tracing::warn!("cannot look for due deliveries: {e}"),
            }
        }
        if !self.is_running("publish") && !self.is_running("collect") {
            let version = match self.store.content_version().await {
                Ok(version) => version,
                Err(e) => {
                    tracing::warn!("cannot read the store's content version: {e}");
                    return;
                }
            };
            let shown = self.shown.lock().unwrap_or_else(|e| e.into_inner()).clone();
            if version.is_some() && version != shown {
                if let Some(job) = self.jobs.iter().find(|j| j.kind == Kind::Publish) {
                    self.start(running, job, now);
                }
            }
        }
    }

    /// The last fire time a run of `job` handled (the store's
    /// `daemon_jobs`).
    async fn handled(&self, job: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        #[cfg(test)]
        if let Some(memory) = &self.handled_in_memory {
            return Ok(memory.lock().unwrap().get(job).copied());
        }
        self.store.job_handled(job).await
    }

    async fn set_handled(&self, job: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        #[cfg(test)]
        if let Some(memory) = &self.handled_in_memory {
            memory.lock().unwrap().insert(job.to_owned(), at);
            return Ok(());
        }
        self.store.set_job_handled(job, at).await
    }

    fn woke(&self) {
        self.progress.send_modify(|(woke, _)| *woke += 1);
    }

    fn finished(&self) {
        self.progress.send_modify(|(_, finished)| *finished += 1);
    }

    /// Stops: no new jobs, deliveries stop claiming, and running jobs get
    /// `daemon.grace_secs` to finish.
    async fn wind_down(&self, mut running: tokio::task::JoinSet<()>) {
        self.stopping.store(true, Ordering::Relaxed);
        let grace = Duration::from_secs(self.config.daemon.grace_secs);
        if tokio::time::timeout(grace, async { while running.join_next().await.is_some() {} })
            .await
            .is_err()
        {
            tracing::warn!(
                "jobs still running after daemon.grace_secs = {}s were stopped; messages they had claimed go out on the next run",
                grace.as_secs()
            );
            running.abort_all();
        }
    }

    /// Works out what was missed while no daemon ran, starts what is due,
    /// and returns each scheduled job's next fire time.
    async fn catch_up(
        self: &Arc<Self>,
        running: &mut tokio::task::JoinSet<()>,
        now: DateTime<Utc>,
    ) -> Result<HashMap<String, DateTime<Utc>>, StoreError> {
        let mut next = HashMap::new();
        for job in &self.jobs {
            let Some((schedule, tz)) = &job.schedule else { continue };
            if let Some(at) = schedule.next_fire(*tz, now) {
                next.insert(job.name.clone(), at);
                self.state(&job.name, |s| s.next = Some(at));
            }
            let Some(last) = schedule.last_fire(*tz, now) else { continue };
            let Some(done) = self.handled(&job.name).await? else {
                // The first start: no edition was missed, but the feeds
                // are collected and published at once.
                self.set_handled(&job.name, last).await?;
                if job.kind == Kind::Collect {
                    self.start(running, job, now);
                }
                continue;
            };
            if last <= done {
                continue;
            }
            let late = now - last;
            let run = match (&job.kind, self.config.daemon.catch_up) {
                (Kind::Collect, _) | (_, CatchUp::Always) => true,
                (_, CatchUp::OnceIfLate) => late <= self.config.daemon.max_lateness,
                (_, CatchUp::Skip) => false,
            };
            if run {
                tracing::info!(job = %job.name, "missed its run at {last} while herald was down; running it now, {} late", human(late));
                self.start(running, job, last);
            } else {
                tracing::warn!(
                    job = %job.name,
                    "skipped its run at {last}: herald was down and it is now {} late (daemon.catch_up = {:?}, max_lateness_minutes = {}); the next one is at {}",
                    human(late),
                    self.config.daemon.catch_up,
                    self.config.daemon.max_lateness.num_minutes(),
                    next.get(&job.name).map_or("never".into(), |t| t.to_string())
                );
                self.set_handled(&job.name, last).await?;
            }
        }
        // Editions a stopped daemon left half sent.
        if !self.store.editions_in_progress().await?.is_empty() {
            *self.retry_at.lock().unwrap_or_else(|e| e.into_inner()) = Some(now);
        }
        Ok(next)
    }

    /// Starts every job whose time has come.
    fn dispatch(
        self: &Arc<Self>,
        running: &mut tokio::task::JoinSet<()>,
        next: &mut HashMap<String, DateTime<Utc>>,
        now: DateTime<Utc>,
    ) {
        for job in &self.jobs {
            let Some((schedule, tz)) = &job.schedule else { continue };
            let Some(&due) = next.get(&job.name) else { continue };
            if due > now {
                continue;
            }
            if self.is_running(&job.name) {
                tracing::warn!(job = %job.name, "still running at its next time ({due}); that run is skipped");
            } else {
                self.start(running, job, due);
            }
            if let Some(at) = schedule.next_fire(*tz, now) {
                next.insert(job.name.clone(), at);
                self.state(&job.name, |s| s.next = Some(at));
            }
        }
        let retry_due = {
            let mut retry = self.retry_at.lock().unwrap_or_else(|e| e.into_inner());
            match *retry {
                Some(at) if at <= now && !self.is_running("deliver") => retry.take().is_some(),
                _ => false,
            }
        };
        if retry_due {
            if let Some(job) = self.jobs.iter().find(|j| j.kind == Kind::Deliver) {
                self.start(running, job, now);
            }
        }
        // Last: whoever sees this wake-up sees the jobs it started running.
        self.last_wake.store(now.timestamp(), Ordering::Release);
    }

    fn is_running(&self, job: &str) -> bool {
        self.states.lock().unwrap_or_else(|e| e.into_inner()).get(job).is_some_and(|s| s.running)
    }

    fn state(&self, job: &str, change: impl FnOnce(&mut JobState)) {
        let mut states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        change(states.entry(job.to_owned()).or_default());
    }

    fn start(
        self: &Arc<Self>,
        running: &mut tokio::task::JoinSet<()>,
        job: &Job,
        scheduled: DateTime<Utc>,
    ) {
        let (daemon, name, kind, scheduled_job) =
            (Arc::clone(self), job.name.clone(), job.kind.clone(), job.schedule.is_some());
        let started = self.clock.now();
        self.state(&name, |s| {
            s.running = true;
            s.last_start = Some(started);
        });
        running.spawn(async move {
            let clock = Instant::now();
            tracing::info!(job = %name, "started (scheduled for {scheduled})");
            let outcome = daemon.work(&name, &kind, scheduled).await;
            // Recorded once done: a run cut short by a crash is a missed run
            // for the next start (composing and delivering are idempotent).
            if scheduled_job && outcome.is_ok() {
                if let Err(e) = daemon.set_handled(&name, scheduled).await {
                    tracing::warn!(job = %name, "cannot record the run in the store: {e}");
                }
            }
            let seconds = clock.elapsed().as_secs_f64();
            let now = daemon.clock.now();
            match &outcome {
                Ok(summary) => {
                    tracing::info!(job = %name, seconds, "finished in {seconds:.2}s: {summary}")
                }
                Err(e) => tracing::error!(job = %name, seconds, "failed after {seconds:.2}s: {e}"),
            }
            daemon.state(&name, |s| {
                s.running = false;
                s.last_finish = Some(now);
                s.last_duration = seconds;
                s.last_ok = Some(outcome.is_ok());
                match &outcome {
                    Ok(summary) => {
                        s.runs_ok += 1;
                        s.last_success = Some(now);
                        s.last_summary = summary.clone();
                    }
                    Err(e) => {
                        s.runs_failed += 1;
                        s.last_summary = e.clone();
                    }
                }
            });
            daemon.finished();
        });
    }

    /// One run of a job; a summary of what it did, or what failed. The
    /// stages of a job run whatever happened to the one before: a list's
    /// mail goes out even when its archive page could not be written.
    async fn work(
        &self,
        name: &str,
        kind: &Kind,
        scheduled: DateTime<Utc>,
    ) -> Result<String, String> {
        #[cfg(test)]
        if let Some(ran) = &self.recorder {
            let at = self.clock.now();
            ran.lock().unwrap().push(tests::Ran { job: name.to_owned(), scheduled, at });
            return Ok("recorded".into());
        }
        let _ = name;
        match kind {
            Kind::Collect => self.collect().await,
            Kind::List(slug) => {
                let composed = self.compose(slug, scheduled).await;
                let delivered = self.deliver().await;
                match (composed, delivered) {
                    (Ok(c), Ok(d)) => Ok(format!("{c}; {d}")),
                    (c, d) => {
                        Err(format!("{}; {}", c.unwrap_or_else(|e| e), d.unwrap_or_else(|e| e)))
                    }
                }
            }
            Kind::Deliver => self.deliver().await,
            Kind::Publish => self.mirror().await,
        }
    }

    fn pipeline(&self) -> Pipeline<'_> {
        Pipeline { config: &self.config, store: &self.store, templates: &self.templates }
    }

    async fn collect(&self) -> Result<String, String> {
        let ran = self.pipeline().collect(self.clock.now()).await;
        for problem in &ran.problems {
            tracing::warn!("{problem}");
        }
        let report = ran.report?;
        self.articles_collected.fetch_add(report.new_articles() as u64, Ordering::Relaxed);
        let mut summary = report.summary(&self.config);
        // An operator's `herald articles unpublish` while the daemon runs
        // waits in the store for a publish.
        let due = self.store.publish_due().await.map_err(|e| e.to_string())?.is_some();
        if report.changed() || due || !self.config.feeds.output_dir.join("feed.xml").exists() {
            summary.push_str("; ");
            summary.push_str(&self.publish().await?);
        }
        Ok(summary)
    }

    /// Publishes as the leader: public/ from the store, the hub told, and
    /// the store's content version moved on, so that the other nodes
    /// publish theirs.
    async fn publish(&self) -> Result<String, String> {
        let ran = self.pipeline().publish(self.clock.now()).await;
        let summary = ran.report.map(|r| r.summary(&self.config))?;
        if let Ok(version) = self.store.content_version().await {
            *self.shown.lock().unwrap_or_else(|e| e.into_inner()) = version;
        }
        Ok(summary)
    }

    /// Publishes this node's public/ from the store as it is now, as the
    /// leader did: the same bytes, without telling the hub again.
    async fn mirror(&self) -> Result<String, String> {
        let version = self.store.content_version().await.map_err(|e| e.to_string())?;
        let report =
            crate::publish::mirror(&self.config, &self.store, &self.templates, self.clock.now())
                .await
                .map_err(|e| e.to_string())?;
        *self.shown.lock().unwrap_or_else(|e| e.into_inner()) = version;
        Ok(report.summary(&self.config))
    }

    /// Composes `slug`'s edition for the day of `scheduled` (in its time
    /// zone), and publishes its archive page before any mail links to it.
    async fn compose(&self, slug: &str, scheduled: DateTime<Utc>) -> Result<String, String> {
        let ran = self.pipeline().compose(scheduled, Some(slug)).await;
        for problem in &ran.problems {
            tracing::warn!(list = %slug, "{problem}");
        }
        let report = ran.report?;
        let summary = report.summary(&self.config);
        if !report.composed.is_empty() {
            self.publish().await.map_err(|e| format!("{summary}; {e}"))?;
        }
        Ok(summary)
    }

    async fn deliver(&self) -> Result<String, String> {
        let _one_at_a_time = self.delivering.lock().await;
        let clock: deliver::Clock = Arc::clone(&self.clock.now);
        let options = DeliverOptions {
            progress: false,
            stop: Some(Arc::clone(&self.stopping)),
            node: self.node.clone(),
        };
        let ran = self.pipeline().deliver(Ok(&self.secret), &clock, &options).await;
        let report = ran.report?;
        if let Some(at) = report.next_retry {
            let mut retry = self.retry_at.lock().unwrap_or_else(|e| e.into_inner());
            *retry = Some(retry.map_or(at, |r| r.min(at)));
        }
        let summary = report.summary(&self.config);
        if report.failed > 0 {
            return Err(format!("{summary} ({} message(s) failed for good)", report.failed));
        }
        Ok(summary)
    }
}

/// Writes a metric family's HELP and TYPE lines; returns its name.
fn family(out: &mut String, name: &str, kind: &str, help: &str) -> String {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    name.to_owned()
}

fn human(d: chrono::Duration) -> String {
    let s = d.num_seconds();
    match s {
        ..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

fn when(t: Option<DateTime<Utc>>) -> serde_json::Value {
    t.map_or(serde_json::Value::Null, |t| json!(t.to_rfc3339()))
}

/// What `/healthz` and `/metrics` show (`web::admin` serves them).
impl crate::web::admin::Health for Daemon {
    fn health(&self) -> BoxFuture<'_, (bool, serde_json::Value)> {
        Box::pin(health(self))
    }

    fn metrics(&self) -> BoxFuture<'_, String> {
        Box::pin(metrics(self))
    }
}

/// Healthy when the store answers and the scheduler is awake; the document
/// says which, and each job's last run.
async fn health(daemon: &Daemon) -> (bool, serde_json::Value) {
    let store = daemon.store.ping().await;
    let last_wake = daemon.last_wake.load(Ordering::Relaxed);
    let alive = daemon.clock.now().timestamp() - last_wake <= 5;
    let jobs: serde_json::Map<String, serde_json::Value> = {
        let states = daemon.states.lock().unwrap_or_else(|e| e.into_inner());
        daemon
            .jobs
            .iter()
            .map(|j| {
                let s = states.get(&j.name).cloned().unwrap_or_default();
                (
                    j.name.clone(),
                    json!({
                        "running": s.running,
                        "next": when(s.next),
                        "last_start": when(s.last_start),
                        "last_finish": when(s.last_finish),
                        "last_ok": s.last_ok,
                        "last_success": when(s.last_success),
                        "last_summary": s.last_summary,
                    }),
                )
            })
            .collect()
    };
    let healthy = store.is_ok() && alive;
    let cluster = cluster(daemon).await;
    let body = json!({
        "status": if healthy { "ok" } else { "unhealthy" },
        "store": match &store { Ok(()) => "ok".to_string(), Err(e) => e.to_string() },
        "scheduler": {
            "alive": alive,
            "last_wake": DateTime::from_timestamp(last_wake, 0).map(|t| t.to_rfc3339()),
        },
        "jobs": jobs,
        "cluster": cluster,
    });
    (healthy, body)
}

/// The nodes of the store as `/healthz` shows them: this one, whether it
/// leads, and every node seen with its last heartbeat and the rows it holds.
async fn cluster(daemon: &Daemon) -> serde_json::Value {
    let Some(me) = &daemon.node else { return serde_json::Value::Null };
    let nodes = match daemon.store.nodes().await {
        Ok(nodes) => nodes,
        Err(e) => return json!({ "error": e.to_string() }),
    };
    let lease = daemon.store.lease().await.ok().flatten().filter(|l| l.expires_at > Utc::now());
    let nodes: Vec<serde_json::Value> = nodes
        .iter()
        .map(|n| {
            json!({
                "id": n.id,
                "host": n.host,
                "pid": n.pid,
                "role": n.role,
                "started": n.started_at.to_rfc3339(),
                "last_heartbeat": n.heartbeat_at.to_rfc3339(),
                "leads": lease.as_ref().is_some_and(|l| l.host == n.host && l.pid == n.pid),
                "holding": n.holding,
            })
        })
        .collect();
    json!({
        "node": me.id(),
        "leader": daemon.leader.load(Ordering::Acquire),
        "nodes": nodes,
    })
}

/// The metrics in the Prometheus text format.
async fn metrics(daemon: &Daemon) -> String {
    let mut out = String::new();
    let collected = family(
        &mut out,
        "herald_articles_collected_total",
        "counter",
        "New articles collected since the daemon started.",
    );
    let _ = writeln!(out, "{collected} {}", daemon.articles_collected.load(Ordering::Relaxed));
    let failing = daemon
        .store
        .source_states()
        .await
        .map(|s| s.iter().filter(|s| s.last_error.is_some()).count())
        .unwrap_or(0);
    let name =
        family(&mut out, "herald_sources_failing", "gauge", "Sources whose last collect failed.");
    let _ = writeln!(out, "{name} {failing}");
    let name = family(
        &mut out,
        "herald_mails",
        "gauge",
        "Mails in the delivery ledger per list and state (sent, deferred, failed, pending).",
    );
    for (list, state, count) in daemon.store.mail_totals().await.unwrap_or_default() {
        let _ = writeln!(out, "{name}{{list=\"{list}\",state=\"{state}\"}} {count}");
    }
    let name = family(
        &mut out,
        "herald_bounce_events",
        "gauge",
        "Reports that came back after the handoff, in the store, by list, way in, kind and action.",
    );
    for c in daemon.store.bounce_counts(None).await.unwrap_or_default() {
        let _ = writeln!(
            out,
            "{name}{{list=\"{}\",via=\"{}\",kind=\"{}\",action=\"{}\"}} {}",
            c.list.as_deref().unwrap_or(""),
            c.via,
            c.kind,
            c.action,
            c.count
        );
    }
    if let Some(counters) = &daemon.bounce_listener {
        let name = family(
            &mut out,
            "herald_bounce_listener_messages_total",
            "counter",
            "Messages the inbound SMTP listener answered after DATA since the daemon started: accepted (stored), refused (too big), deferred (451: the store could not take them; the sender tries again).",
        );
        for (outcome, counter) in [
            ("accepted", &counters.accepted),
            ("refused", &counters.refused),
            ("deferred", &counters.deferred),
        ] {
            let _ = writeln!(
                out,
                "{name}{{outcome=\"{outcome}\"}} {}",
                counter.load(Ordering::Relaxed)
            );
        }
        let name = family(
            &mut out,
            "herald_bounce_listener_refused_total",
            "counter",
            "What the inbound SMTP listener refused before DATA since the daemon started: recipients (another domain, or an address herald did not make) and connections over bounces.max_connections.",
        );
        let _ = writeln!(
            out,
            "{name}{{what=\"recipient\"}} {}",
            counters.recipients_refused.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "{name}{{what=\"connection\"}} {}",
            counters.connections_refused.load(Ordering::Relaxed)
        );
    }
    let states: Vec<(String, JobState)> = {
        let states = daemon.states.lock().unwrap_or_else(|e| e.into_inner());
        daemon
            .jobs
            .iter()
            .map(|j| (j.name.clone(), states.get(&j.name).cloned().unwrap_or_default()))
            .collect()
    };
    let name = family(
        &mut out,
        "herald_job_duration_seconds",
        "gauge",
        "How long each job's last run took.",
    );
    for (job, s) in &states {
        let _ = writeln!(out, "{name}{{job=\"{job}\"}} {}", s.last_duration);
    }
    let name = family(
        &mut out,
        "herald_job_last_success_timestamp_seconds",
        "gauge",
        "When each job last succeeded (Unix time; 0: not yet).",
    );
    for (job, s) in &states {
        let _ = writeln!(
            out,
            "{name}{{job=\"{job}\"}} {}",
            s.last_success.map_or(0, |t| t.timestamp())
        );
    }
    let name = family(
        &mut out,
        "herald_job_runs_total",
        "counter",
        "Job runs since the daemon started, by outcome.",
    );
    for (job, s) in &states {
        let _ = writeln!(out, "{name}{{job=\"{job}\",outcome=\"ok\"}} {}", s.runs_ok);
        let _ = writeln!(out, "{name}{{job=\"{job}\",outcome=\"failed\"}} {}", s.runs_failed);
    }
    let name = family(&mut out, "herald_job_running", "gauge", "1 while the job runs.");
    for (job, s) in &states {
        let _ = writeln!(out, "{name}{{job=\"{job}\"}} {}", u8::from(s.running));
    }
    out
}

#[cfg(test)]
mod tests;
