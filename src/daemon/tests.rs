//! The year simulation: the daemon's own scheduling (`Daemon::schedule`,
//! hence `catch_up` and `dispatch`, `Schedule::next_fire`/`last_fire`) on a
//! [`TestClock`], for lists
//! in five time zones (Europe/Berlin, America/New_York, Australia/Sydney,
//! Australia/Lord_Howe with its 30-minute shift, Asia/Kolkata without
//! clock changes), each at 07:00, at 02:30 (skipped one night and repeated
//! another where the clock changes at 02:00-03:00) and every 15 minutes.
//!
//! Real: the daemon's scheduling loop, its wake-ups from the clock, the
//! catch-up policy, and `compose::edition_date` for the day an edition
//! belongs to; in the restart test also the store's `daemon_jobs` records
//! (a SQLite file), which the 400-day run keeps in memory instead, as the
//! store's write per run would make it thirty seconds long. Stubbed: the
//! jobs' work: a recorder (`Daemon::recorder`) stands where the stages run
//! (no collect, compose or delivery), noting the job, the fire time it was
//! given, and the clock when it ran.
//!
//! The clock moves as a daemon that sleeps until its next job would see
//! it: from one fire time to the next, each wake-up waiting until the
//! dispatch and the jobs it started are done.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{NaiveDate, NaiveTime, TimeZone as _};
use chrono_tz::Tz;

use super::*;

/// A job run the recorder saw.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Ran {
    pub job: String,
    pub scheduled: DateTime<Utc>,
    pub at: DateTime<Utc>,
}

const ZONES: [(&str, &str); 5] = [
    ("berlin", "Europe/Berlin"),
    ("new-york", "America/New_York"),
    ("sydney", "Australia/Sydney"),
    ("lord-howe", "Australia/Lord_Howe"),
    ("kolkata", "Asia/Kolkata"),
];

const SCHEDULES: [(&str, &str); 3] =
    [("seven", "0 0 7 * * *"), ("half-two", "0 30 2 * * *"), ("quarter", "0 */15 * * * *")];

fn config(catch_up: &str, max_lateness_minutes: i64) -> Config {
    let mut text = format!(
        r#"
[site]
title = "Simulated"
base_url = "https://news.example.com"

[[sources]]
name = "blog"
kind = "dir"
path = "content"

[collect]
schedule = "0 0 0 1 1 *"

[daemon]
catch_up = "{catch_up}"
max_lateness_minutes = {max_lateness_minutes}

[mail]
from = "News <news@example.com>"
"#
    );
    for (zone, tz) in ZONES {
        for (name, schedule) in SCHEDULES {
            text.push_str(&format!(
                "\n[[lists]]\nslug = \"{zone}-{name}\"\nname = \"{zone} {name}\"\nschedule = \"{schedule}\"\ntimezone = \"{tz}\"\n"
            ));
        }
    }
    crate::config::parse(std::path::Path::new("/site/herald.toml"), &text, &[]).unwrap()
}

fn utc(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

/// A store, a test clock and daemons started and stopped on them.
struct Sim {
    _dir: tempfile::TempDir,
    config: Config,
    store: Store,
    clock: TestClock,
    ran: Arc<Mutex<Vec<Ran>>>,
    daemon: Option<Running>,
    /// The handled records in memory rather than in the store.
    in_memory: bool,
}

struct Running {
    daemon: Arc<Daemon>,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), DaemonError>>,
}

impl Sim {
    async fn new(config: Config, start: DateTime<Utc>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("herald.db").display());
        let store = Store::open(&url).await.unwrap();
        let clock = TestClock::new(start);
        Self {
            _dir: dir,
            config,
            store,
            clock,
            ran: Arc::default(),
            daemon: None,
            in_memory: false,
        }
    }

    /// Starts a daemon and waits for its catch-up.
    async fn start(&mut self) {
        let secret = Secret::resolve(&self.store).await.unwrap();
        let templates = crate::templates::load(std::path::Path::new("/nonexistent"));
        let mut daemon = Daemon::new(
            self.config.clone(),
            self.store.clone(),
            templates,
            secret,
            self.clock.clock(),
        );
        let hooks = Arc::get_mut(&mut daemon).unwrap();
        hooks.recorder = Some(Arc::clone(&self.ran));
        if self.in_memory {
            hooks.handled_in_memory = Some(Mutex::default());
        }
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn({
            let daemon = Arc::clone(&daemon);
            async move {
                daemon
                    .schedule(async move {
                        let _ = stopped.await;
                    })
                    .await
            }
        });
        settled(&daemon, |(woke, _)| woke >= 1).await;
        self.daemon = Some(Running { daemon, stop, task });
    }

    async fn stop(&mut self) {
        let running = self.daemon.take().expect("a daemon");
        let _ = running.stop.send(());
        running.task.await.unwrap().unwrap();
    }

    /// Sets the clock to `at`; with a daemon running, waits until it has
    /// dispatched that time and the jobs it started are done.
    async fn tick(&mut self, at: DateTime<Utc>) {
        self.clock.set(at);
        if let Some(running) = &self.daemon {
            let daemon = &running.daemon;
            settled(daemon, |_| daemon.last_wake.load(Ordering::Acquire) == at.timestamp()).await;
        }
    }

    /// Runs the clock to `until`, stopping at each fire time on the way.
    async fn run_until(&mut self, until: DateTime<Utc>) {
        loop {
            let next = {
                let daemon = &self.daemon.as_ref().expect("a daemon").daemon;
                let states = daemon.states.lock().unwrap();
                states.values().filter_map(|s| s.next).min()
            };
            match next {
                Some(at) if at <= until => self.tick(at).await,
                _ => break,
            }
        }
        self.tick(until).await;
    }

    fn ran(&self) -> Vec<Ran> {
        self.ran.lock().unwrap().clone()
    }
}

/// Waits until `done` (given the wake-ups handled and the jobs finished)
/// holds and no job runs.
async fn settled(daemon: &Daemon, done: impl Fn((u64, u64)) -> bool) {
    let mut progress = daemon.progress.subscribe();
    let idle = || daemon.states.lock().unwrap().values().all(|s| !s.running);
    let waited =
        tokio::time::timeout(Duration::from_secs(10), progress.wait_for(|n| done(*n) && idle()))
            .await;
    assert!(waited.is_ok(), "the daemon did not settle");
}

/// The first instant at or after local time `local` in `tz` (the end of
/// the gap when the clock skips it), found a minute at a time.
fn first_at_or_after(tz: Tz, local: chrono::NaiveDateTime) -> DateTime<Utc> {
    (0..24 * 60)
        .find_map(|m| tz.from_local_datetime(&(local + chrono::Duration::minutes(m))).earliest())
        .unwrap()
        .to_utc()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

#[test]
fn a_year_of_fire_times_in_five_time_zones() {
    let started = std::time::Instant::now();
    let (from, days) = (utc("2026-01-01T00:00:00Z"), 400);
    let until = from + chrono::Duration::days(days);
    let ran = runtime().block_on(async {
        let mut sim = Sim::new(config("once_if_late", 360), from).await;
        sim.in_memory = true;
        sim.start().await;
        sim.run_until(until).await;
        sim.stop().await;
        (sim.ran(), sim.config.clone())
    });
    let (ran, config) = ran;
    eprintln!("{} runs in {:.1?}", ran.len(), started.elapsed());
    // Nothing was late, and nothing ran twice.
    let late: Vec<&Ran> =
        ran.iter().filter(|r| r.at != r.scheduled && r.job != "collect").collect();
    assert!(late.is_empty(), "all on time: {:?}", &late[..late.len().min(5)]);
    let unique: BTreeSet<(&str, DateTime<Utc>)> =
        ran.iter().map(|r| (r.job.as_str(), r.scheduled)).collect();
    assert_eq!(unique.len(), ran.len(), "nothing ran twice");

    let (mut skipped_nights, mut repeated_nights) = (0, 0);
    for (zone, tz_name) in ZONES {
        let tz: Tz = tz_name.parse().unwrap();
        let list_runs = |name: &str| -> Vec<DateTime<Utc>> {
            let job = format!("list:{zone}-{name}");
            ran.iter().filter(|r| r.job == job).map(|r| r.scheduled).collect()
        };
        // The daily lists: one edition each local day, at its local time.
        for (name, hour, minute) in [("seven", 7, 0), ("half-two", 2, 30)] {
            let list = config.list(&format!("{zone}-{name}")).unwrap();
            let runs = list_runs(name);
            let mut by_day: BTreeMap<NaiveDate, Vec<DateTime<Utc>>> = BTreeMap::new();
            for t in &runs {
                by_day.entry(crate::compose::edition_date(list, *t)).or_default().push(*t);
            }
            let first = *by_day.keys().next().unwrap();
            let last = *by_day.keys().last().unwrap();
            assert!((last - first).num_days() >= days - 2, "{zone} {name}: {first}..{last}");
            let mut day = first;
            while day <= last {
                let times = by_day.get(&day).cloned().unwrap_or_default();
                assert_eq!(times.len(), 1, "{zone} {name}: one edition on {day}: {times:?}");
                let local = day.and_time(NaiveTime::from_hms_opt(hour, minute, 0).unwrap());
                let expected = match tz.from_local_datetime(&local) {
                    chrono::LocalResult::None => {
                        skipped_nights += 1;
                        first_at_or_after(tz, local)
                    }
                    chrono::LocalResult::Ambiguous(first, _) => {
                        repeated_nights += 1;
                        first.to_utc()
                    }
                    chrono::LocalResult::Single(t) => t.to_utc(),
                };
                assert_eq!(times[0], expected, "{zone} {name} on {day}");
                day = day.succ_opt().unwrap();
            }
        }
        // Every 15 minutes: each quarter hour once, through skipped and
        // repeated hours (every zone's offsets are whole quarter hours).
        let runs = list_runs("quarter");
        assert_eq!(runs[0], from + chrono::Duration::minutes(15), "{zone}");
        for (i, t) in runs.iter().enumerate() {
            assert_eq!(*t, runs[0] + chrono::Duration::minutes(15 * i as i64), "{zone} quarter");
        }
        assert_eq!(*runs.last().unwrap(), until, "{zone} quarter");
    }
    // 02:30 was skipped once in Berlin, New York and Sydney, and repeated
    // once in Berlin and Sydney (New York repeats 01:00-02:00, Lord Howe
    // changes between 01:30 and 02:30, Kolkata never); 07:00 never was.
    assert_eq!((skipped_nights, repeated_nights), (3, 2), "skipped and repeated 02:30s");
}

/// Each fire time of `list` in `(from, to]`.
fn fires(list: &crate::config::List, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    std::iter::successors(list.schedule.next_fire(list.timezone, from), |t| {
        list.schedule.next_fire(list.timezone, *t)
    })
    .take_while(|t| *t <= to)
    .collect()
}

#[test]
fn restarts_and_downtime_follow_the_catch_up_policy() {
    let started = std::time::Instant::now();
    // (what, stopped at, started again at)
    let downtimes = [
        ("3 hours across Berlin's 07:00", "2026-02-10T04:50:00Z", "2026-02-10T07:50:00Z"),
        ("2 days", "2026-05-05T10:07:00Z", "2026-05-07T10:07:00Z"),
        ("clocks going forward in Berlin", "2026-03-28T23:07:00Z", "2026-03-29T02:07:00Z"),
        ("clocks going back in Berlin", "2026-10-25T00:10:00Z", "2026-10-25T01:40:00Z"),
    ];
    let max_lateness = chrono::Duration::minutes(360);
    let runtime = runtime();
    let (mut caught_up, mut skipped) = (BTreeSet::new(), BTreeSet::new());
    for policy in ["always", "once_if_late", "skip"] {
        for (what, down, up) in downtimes {
            let (down, up) = (utc(down), utc(up));
            let (from, to) = (down - chrono::Duration::hours(6), up + chrono::Duration::days(1));
            let (ran, config) = runtime.block_on(async {
                let mut sim = Sim::new(config(policy, max_lateness.num_minutes()), from).await;
                sim.start().await;
                sim.run_until(down).await;
                sim.stop().await;
                sim.tick(up).await;
                sim.start().await;
                sim.run_until(to).await;
                sim.stop().await;
                // Started once more: everything is handled; nothing runs.
                let before = sim.ran();
                sim.start().await;
                sim.tick(to + chrono::Duration::seconds(1)).await;
                sim.stop().await;
                assert_eq!(sim.ran(), before, "{policy}, {what}: a restart runs nothing again");
                (before, sim.config.clone())
            });
            for list in &config.lists {
                let job = format!("list:{}", list.slug);
                let mut expected: Vec<(DateTime<Utc>, DateTime<Utc>)> =
                    fires(list, from, down).into_iter().map(|t| (t, t)).collect();
                // Missed while down: the last one, once, at the restart, as
                // the policy says.
                if let Some(&last) = fires(list, down, up).last() {
                    let run = match policy {
                        "always" => true,
                        "once_if_late" => up - last <= max_lateness,
                        _ => false,
                    };
                    if run {
                        expected.push((last, up));
                        caught_up.insert((policy, what, list.slug.to_string()));
                    } else {
                        skipped.insert((policy, what, list.slug.to_string()));
                    }
                }
                expected.extend(fires(list, up, to).into_iter().map(|t| (t, t)));
                let got: Vec<(DateTime<Utc>, DateTime<Utc>)> =
                    ran.iter().filter(|r| r.job == job).map(|r| (r.scheduled, r.at)).collect();
                assert_eq!(got, expected, "{policy}, down for {what}: {job}");
            }
            // The edition caught up after the clock change is that night's.
            if policy != "skip" && what == "clocks going forward in Berlin" {
                let list = config.list("berlin-half-two").unwrap();
                let run = ran.iter().find(|r| r.job == "list:berlin-half-two" && r.at == up);
                let date = crate::compose::edition_date(list, run.unwrap().scheduled);
                assert_eq!(date.to_string(), "2026-03-29");
            }
        }
    }
    // Each policy had something to decide: once_if_late both ways.
    let count = |set: &BTreeSet<(&str, &str, String)>, policy: &str| {
        set.iter().filter(|(p, ..)| *p == policy).count()
    };
    assert!(count(&caught_up, "always") > 0 && count(&skipped, "always") == 0);
    assert!(count(&caught_up, "once_if_late") > 0 && count(&skipped, "once_if_late") > 0);
    assert!(count(&caught_up, "skip") == 0 && count(&skipped, "skip") > 0);
    eprintln!("12 restarts simulated in {:.1?}", started.elapsed());
}
