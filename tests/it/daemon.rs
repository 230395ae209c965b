//! `herald daemon` as an operator runs it: scheduled jobs, catch-up across
//! restarts, one daemon per store, SIGTERM in the middle of a send, and the
//! health and metrics endpoints (behind the admin token or on their own
//! listener). (The schedule computation across clock changes is a unit
//! test beside `types::Schedule`; a simulated year of the daemon's
//! scheduling is a unit test beside `daemon`.)
//!
//! The daemons here run on a test clock ([`Clock`]): a job is made due by
//! moving the clock, never by waiting for a real time, and "nothing more
//! happened" is read from the ledger and the Message-IDs after the daemon
//! has shown it handled a later time (`/healthz`'s `last_wake`).

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::support::faulty::FaultySmtp;
use crate::support::http::{admin_get, get, request, Server};
use crate::support::{stderr, stdout, Mail, Site};
use chrono::{DateTime, Utc};

/// Sets the daily list's schedule (and time zone) in herald.toml.
fn schedule_list(site: &Site, schedule: &str, timezone: &str) {
    let config = std::fs::read_to_string(site.file("herald.toml")).unwrap();
    let config = config
        .replace("schedule = \"0 0 7 * * *\"", &format!("schedule = \"{schedule}\""))
        .replace("timezone = \"Europe/Lisbon\"", &format!("timezone = \"{timezone}\""));
    std::fs::write(site.file("herald.toml"), config).unwrap();
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn sent(site: &Site) -> usize {
    let out = site.herald(&["deliveries", "--state", "sent", "--limit", "1000000"]);
    stdout(&out).lines().filter(|l| l.contains('@')).count()
}

/// The Message-IDs of the mails in the outbox.
fn outbox_ids(site: &Site) -> HashSet<String> {
    site.outbox()
        .iter()
        .filter_map(|p| Mail::read(p).parsed().message_id().map(str::to_owned))
        .collect()
}

/// The daemon's clock: a file holding an RFC 3339 time, which `herald
/// daemon` follows when `HERALD_TEST_CLOCK` names it; each change wakes
/// its scheduler at once.
struct Clock {
    path: PathBuf,
}

impl Clock {
    /// A clock at `hh:mm:ss` UTC tomorrow (by the real clock: a date that
    /// never goes stale).
    fn at(site: &Site, time: &str) -> (Self, DateTime<Utc>) {
        let clock = Self { path: site.file("test-clock") };
        let day = (Utc::now() + chrono::Duration::days(1)).date_naive();
        let at = format!("{day}T{time}Z").parse().unwrap();
        clock.set(at);
        (clock, at)
    }

    fn set(&self, at: DateTime<Utc>) {
        // Written whole, then renamed: never read half written.
        let part = self.path.with_extension("part");
        std::fs::write(&part, at.to_rfc3339()).unwrap();
        std::fs::rename(&part, &self.path).unwrap();
    }

    fn env(&self) -> (&'static str, String) {
        ("HERALD_TEST_CLOCK", self.path.display().to_string())
    }
}

/// Starts `herald daemon` on `clock`, with `env`, and waits until its
/// scheduler has started (so a change of the clock after this is a
/// wake-up, not the time it starts at).
fn start_daemon(site: &Site, clock: &Clock, env: &[(&str, &str)]) -> Server {
    let (name, value) = clock.env();
    let mut all = vec![(name, value.as_str())];
    all.extend_from_slice(env);
    let daemon = Server::start_daemon(site, &all);
    wait_until("the scheduler to start", Duration::from_secs(20), || {
        daemon.log().contains("herald daemon started")
    });
    daemon
}

/// `/healthz`'s document.
fn health(daemon: &Server) -> serde_json::Value {
    let reply = admin_get(daemon.addr, "/healthz");
    serde_json::from_slice(&reply.body).unwrap_or_else(|e| panic!("{e}: {}", reply.text()))
}

/// Waits until the daemon's scheduler has handled the time `at`.
fn wait_for_wake(daemon: &Server, at: DateTime<Utc>) {
    let at = at.to_rfc3339();
    wait_until(&format!("a wake-up at {at}"), Duration::from_secs(20), || {
        health(daemon)["scheduler"]["last_wake"] == at.as_str()
    });
}

/// The value of one metric line (`name` with its labels).
fn metric(daemon: &Server, name: &str) -> Option<String> {
    let text = admin_get(daemon.addr, "/metrics").text();
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ').map(str::to_owned))
}

#[test]
fn scheduled_jobs_run_and_health_and_metrics_say_so() {
    let site = Site::init();
    schedule_list(&site, "0 0 7,8 * * *", "UTC");
    let (clock, start) = Clock::at(&site, "06:59:00");
    let daemon = start_daemon(&site, &clock, &[]);
    // A first start collects and publishes at once.
    wait_until("the first collect", Duration::from_secs(30), || {
        health(&daemon)["jobs"]["collect"]["last_ok"] == true
    });
    assert!(site.file("public/feed.xml").exists(), "collect published the feeds");
    assert!(site.outbox().is_empty(), "the list's time has not come");

    let seven = start + chrono::Duration::minutes(1);
    clock.set(seven);
    wait_until("the digest to go out", Duration::from_secs(30), || site.outbox().len() == 4);
    wait_until("the list job to finish", Duration::from_secs(30), || {
        health(&daemon)["jobs"]["list:daily"]["last_ok"] == true
    });
    assert!(site.file("public/archive/index.html").exists(), "the edition's page");

    let health_reply = admin_get(daemon.addr, "/healthz");
    assert_eq!(health_reply.status, 200, "{}", health_reply.text());
    let body: serde_json::Value = serde_json::from_slice(&health_reply.body).unwrap();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["store"], "ok");
    assert_eq!(body["scheduler"]["alive"], true);
    assert_eq!(body["scheduler"]["last_wake"], seven.to_rfc3339().as_str(), "{body}");
    assert_eq!(body["jobs"]["list:daily"]["last_ok"], true, "{body}");
    assert_eq!(body["jobs"]["list:daily"]["last_start"], seven.to_rfc3339().as_str(), "{body}");
    assert_eq!(body["jobs"]["collect"]["last_ok"], true, "{body}");
    assert!(body["jobs"]["collect"]["next"].is_string(), "{body}");

    let metrics = admin_get(daemon.addr, "/metrics");
    assert_eq!(metrics.status, 200);
    assert!(metrics.header("content-type").unwrap().starts_with("text/plain; version=0.0.4"));
    let text = metrics.text();
    let last_success = format!(
        "herald_job_last_success_timestamp_seconds{{job=\"list:daily\"}} {}",
        seven.timestamp()
    );
    for line in [
        "herald_articles_collected_total 4",
        "herald_sources_failing 0",
        "herald_mails{list=\"daily\",state=\"sent\"} 4",
        "herald_job_runs_total{job=\"list:daily\",outcome=\"failed\"} 0",
        last_success.as_str(),
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in:\n{text}");
    }
    assert!(text.contains("herald_job_duration_seconds{job=\"collect\"}"), "{text}");

    // At 08:00 the list runs again and finds the day's edition made:
    // nobody gets a second copy.
    let ids = outbox_ids(&site);
    clock.set(start + chrono::Duration::minutes(61));
    let runs = "herald_job_runs_total{job=\"list:daily\",outcome=\"ok\"}";
    wait_until("the 08:00 run", Duration::from_secs(30), || {
        metric(&daemon, runs).as_deref() == Some("2")
    });
    assert_eq!(site.outbox().len(), 4);
    assert_eq!(outbox_ids(&site), ids);
    assert_eq!(sent(&site), 4);
    // Also served: the feeds and the subscription pages.
    assert_eq!(get(daemon.addr, "/feed.xml").status, 200);
    assert_eq!(get(daemon.addr, "/subscribe").status, 200);
    let log = daemon.log();
    assert!(log.contains("job=list:daily") && log.contains("finished in"), "{log}");
    assert!(log.contains("test clock"), "the daemon says its clock is a test clock: {log}");
    daemon.stop();
}

#[test]
fn one_daemon_per_store_and_a_killed_daemons_lease_expires() {
    // SQLite's rule: one daemon per store. On PostgreSQL a second daemon
    // follows instead (cluster.rs).
    let site = Site::init_sqlite();
    let env = [("HERALD_DAEMON_LEASE_SECS", "3")];
    let first = Server::start_daemon(&site, &env);
    let status = stdout(&site.herald(&["status"]));
    assert!(status.contains(&format!("herald daemon pid {}", first.pid())), "{status}");
    let second = site.herald_env(&["daemon", "--listen", "127.0.0.1:0"], &env);
    assert_eq!(second.status.code(), Some(1));
    let said = stderr(&second);
    assert!(said.contains(&format!("herald daemon pid {}", first.pid())), "{said}");
    assert!(said.contains("holds this store"), "{said}");
    // Nor does a `herald run` from cron do the daemon's work behind its back.
    let run = site.herald(&["run"]);
    assert_eq!(run.status.code(), Some(1));

    // Killed without a word: its lease runs out (on the real clock, which
    // it shares with other processes), then another takes over.
    let pid = first.pid();
    first.kill9();
    let refused = site.herald_env(&["daemon", "--listen", "127.0.0.1:0"], &env);
    assert_eq!(refused.status.code(), Some(1), "the lease is still live");
    assert!(stderr(&refused).contains(&format!("pid {pid}")), "{}", stderr(&refused));
    wait_until("the lease to expire", Duration::from_secs(20), || {
        stdout(&site.herald(&["status"])).contains("stopped without a word")
    });
    let next = Server::start_daemon(&site, &env);
    assert_eq!(admin_get(next.addr, "/healthz").status, 200);
    next.stop();
    // A clean stop gives the lease back at once.
    let out = site.herald(&["run"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn a_missed_edition_goes_out_once_across_restarts() {
    let site = Site::init();
    assert!(site.herald(&["collect"]).status.success());
    schedule_list(&site, "0 0 7 * * *", "UTC");
    // Started and stopped before the edition's time: herald is then down
    // when it comes.
    let (clock, start) = Clock::at(&site, "06:00:00");
    start_daemon(&site, &clock, &[]).stop();
    assert!(site.outbox().is_empty());
    let later = start + chrono::Duration::minutes(90);
    clock.set(later);
    let daemon = start_daemon(&site, &clock, &[]);
    wait_until("the missed digest", Duration::from_secs(30), || sent(&site) == 4);
    let log = daemon.log();
    daemon.stop();
    assert!(log.contains("missed its run"), "{log}");
    assert_eq!(site.outbox().len(), 4);
    let ids = outbox_ids(&site);
    assert_eq!(ids.len(), 4);
    // Started again, and on to a later time: the edition is done; nothing
    // goes out twice.
    let again = start_daemon(&site, &clock, &[]);
    let then = later + chrono::Duration::minutes(1);
    clock.set(then);
    wait_for_wake(&again, then);
    let log = again.log();
    again.stop();
    assert!(!log.contains("missed its run"), "{log}");
    assert_eq!(sent(&site), 4);
    assert_eq!(outbox_ids(&site), ids);
}

#[test]
fn an_edition_later_than_max_lateness_is_skipped_and_said_so() {
    let site = Site::init();
    assert!(site.herald(&["collect"]).status.success());
    schedule_list(&site, "0 0 7 * * *", "UTC");
    let env = [("HERALD_DAEMON_MAX_LATENESS_MINUTES", "0")];
    let (clock, start) = Clock::at(&site, "06:00:00");
    start_daemon(&site, &clock, &env).stop();
    let later = start + chrono::Duration::minutes(61);
    clock.set(later);
    let daemon = start_daemon(&site, &clock, &env);
    wait_until("the skip", Duration::from_secs(30), || daemon.log().contains("skipped its run"));
    let then = later + chrono::Duration::seconds(1);
    clock.set(then);
    wait_for_wake(&daemon, then);
    let log = daemon.log();
    daemon.stop();
    assert!(log.contains("max_lateness_minutes = 0"), "{log}");
    assert!(site.outbox().is_empty(), "a stale digest does not go out late");
    assert_eq!(sent(&site), 0);
}

/// `n` readers in the daily list.
fn readers(site: &Site, n: usize) {
    let mut csv = String::from("email,name\n");
    for i in 0..n {
        csv.push_str(&format!("reader{i:04}@example.com,Reader {i}\n"));
    }
    site.write("subscribers/daily.csv", &csv);
}

#[test]
fn sigterm_during_a_send_loses_nothing() {
    const READERS: usize = 1_500;
    let smtp = FaultySmtp::start(0, Duration::from_secs(30));
    let site = Site::init();
    readers(&site, READERS);
    assert!(site.herald(&["collect"]).status.success());
    schedule_list(&site, "0 0 7 * * *", "UTC");
    let url = smtp.url();
    let env = [
        ("HERALD_MAIL_TRANSPORT", "smtp"),
        ("HERALD_MAIL_SMTP_URL", url.as_str()),
        ("HERALD_MAIL_RATE_PER_SECOND", "300"),
    ];
    let (clock, start) = Clock::at(&site, "06:59:00");
    let daemon = start_daemon(&site, &clock, &env);
    clock.set(start + chrono::Duration::minutes(1));
    let accepted = || smtp.accepted.lock().unwrap().len();
    wait_until("the send to start", Duration::from_secs(30), || accepted() >= 50);
    daemon.stop(); // SIGTERM: exits 0 after the messages in flight
    let during = sent(&site);
    assert!(during < READERS, "stopped in the middle ({during} sent)");
    // The rest goes out on the next run, and nobody is missing.
    let out = site.herald_env(&["deliver"], &env);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(sent(&site), READERS);
    let messages = smtp.accepted.lock().unwrap().clone();
    let ids: HashSet<String> = messages
        .iter()
        .filter_map(|(_, m)| {
            let mail = Mail { raw: m.clone().into_bytes() };
            mail.parsed().message_id().map(str::to_owned)
        })
        .collect();
    assert_eq!(ids.len(), READERS, "every reader got the digest");
    assert!(messages.len() <= READERS + 8, "duplicates only from in flight: {}", messages.len());
}

#[test]
fn logs_can_be_json_lines() {
    let site = Site::init();
    let out = site.herald(&["--log-format", "json", "-v", "collect"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<serde_json::Value> = stderr(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    let collected = lines
        .iter()
        .find(|l| l["fields"]["message"] == "collected")
        .expect("a line per source collected");
    assert_eq!(collected["fields"]["source"], "blog");
    assert_eq!(collected["level"], "INFO");
}

#[test]
fn deferred_mail_is_retried_when_due_without_waiting_for_the_next_edition() {
    let smtp = FaultySmtp::start(0, Duration::from_secs(30));
    let site = Site::init();
    site.write(
        "subscribers/daily.csv",
        "email,name\nrcpt451@example.com,Busy\nok@example.com,Fine\n",
    );
    assert!(site.herald(&["collect"]).status.success());
    // The list fires once; its next time is tomorrow.
    schedule_list(&site, "0 0 7 * * *", "UTC");
    let url = smtp.url();
    let (clock, start) = Clock::at(&site, "06:59:00");
    let daemon = start_daemon(
        &site,
        &clock,
        &[
            ("HERALD_MAIL_TRANSPORT", "smtp"),
            ("HERALD_MAIL_SMTP_URL", url.as_str()),
            ("HERALD_MAIL_RETRY_BASE_SECS", "1"),
            ("HERALD_MAIL_MAX_ATTEMPTS", "3"),
        ],
    );
    let mut now = start + chrono::Duration::minutes(1);
    clock.set(now);
    wait_until("the first send", Duration::from_secs(30), || smtp.accepted_for("ok") == 1);
    // 451 three times (the first send, then two retries when due): failed.
    // The clock moves a minute at a time, far less than a day.
    let failed = "herald_mails{list=\"daily\",state=\"failed\"}";
    wait_until("the retries", Duration::from_secs(40), || {
        if metric(&daemon, failed).as_deref() == Some("1") {
            return true;
        }
        now += chrono::Duration::minutes(1);
        clock.set(now);
        false
    });
    assert_eq!(smtp.accepted_for("ok"), 1, "the other reader got it once");
    let log = daemon.log();
    assert!(log.contains("job=deliver"), "the retries ran as the deliver job: {log}");
    daemon.stop();
}

#[test]
fn a_job_still_running_at_its_next_tick_is_not_started_twice() {
    const READERS: usize = 200;
    let smtp = FaultySmtp::start(0, Duration::from_secs(30));
    let site = Site::init();
    readers(&site, READERS);
    assert!(site.herald(&["collect"]).status.success());
    schedule_list(&site, "0 0 7 * * *", "UTC");
    let url = smtp.url();
    // One send takes about four seconds.
    let (clock, start) = Clock::at(&site, "06:59:00");
    let daemon = start_daemon(
        &site,
        &clock,
        &[
            ("HERALD_MAIL_TRANSPORT", "smtp"),
            ("HERALD_MAIL_SMTP_URL", url.as_str()),
            ("HERALD_MAIL_RATE_PER_SECOND", "50"),
        ],
    );
    clock.set(start + chrono::Duration::minutes(1));
    let accepted = || smtp.accepted.lock().unwrap().len();
    wait_until("the send to start", Duration::from_secs(30), || accepted() >= 1);
    // The next day's time comes while the send still runs.
    clock.set(start + chrono::Duration::minutes(1) + chrono::Duration::days(1));
    wait_until("the skipped run", Duration::from_secs(30), || {
        daemon.log().contains("still running at its next time")
    });
    assert!(accepted() < READERS, "the first send was still running");
    wait_until("the send", Duration::from_secs(40), || sent(&site) == READERS);
    daemon.stop();
    let recipients: HashSet<String> =
        smtp.accepted.lock().unwrap().iter().map(|(r, _)| r.clone()).collect();
    assert_eq!(accepted(), READERS, "each reader once");
    assert_eq!(recipients.len(), READERS);
}

#[test]
fn health_and_metrics_need_their_own_listener_or_the_token() {
    let site = Site::init();
    // Neither: not served to the public, and the daemon says how to turn them on.
    let daemon = Server::start_daemon(&site, &[("HERALD_ADMIN_TOKEN", "")]);
    assert_eq!(get(daemon.addr, "/healthz").status, 404);
    assert_eq!(get(daemon.addr, "/metrics").status, 404);
    wait_until("the start message", Duration::from_secs(10), || {
        daemon.log().contains("health and metrics are off")
    });
    assert!(daemon.log().contains("web.admin_listen"), "{}", daemon.log());
    daemon.stop();

    // A bearer token: the public listener answers only with it.
    let token = "an-admin-token-of-enough-length";
    let daemon = Server::start_daemon(&site, &[("HERALD_ADMIN_TOKEN", token)]);
    let bearer = format!("Bearer {token}");
    for path in ["/healthz", "/metrics"] {
        let r = get(daemon.addr, path);
        assert_eq!(r.status, 401, "{path}");
        assert!(!r.text().contains("herald_"), "{path}: {}", r.text());
        assert_eq!(r.header("www-authenticate"), Some("Bearer"));
        let wrong = request(
            daemon.addr,
            "GET",
            path,
            &[("Authorization", "Bearer an-admin-token-of-enough-lengtH")],
        );
        assert_eq!(wrong.status, 401, "{path}");
        let right = request(daemon.addr, "GET", path, &[("Authorization", &bearer)]);
        assert_eq!(right.status, 200, "{path}: {}", right.text());
    }
    daemon.stop();

    // Their own listener: served there, not on the public one.
    let admin = crate::support::free_port();
    let daemon = Server::start_daemon(
        &site,
        &[("HERALD_ADMIN_TOKEN", ""), ("HERALD_WEB_ADMIN_LISTEN", &admin.to_string())],
    );
    wait_until("the admin listener", Duration::from_secs(10), || {
        std::net::TcpStream::connect(admin).is_ok()
    });
    assert_eq!(get(admin, "/healthz").status, 200);
    assert!(get(admin, "/metrics").text().contains("herald_job_running"));
    assert_eq!(get(admin, "/feed.xml").status, 404, "only health and metrics there");
    assert_eq!(get(daemon.addr, "/healthz").status, 404);
    assert_eq!(get(daemon.addr, "/metrics").status, 404);
    assert!(daemon.log().contains(&format!("http://{admin}/healthz")), "{}", daemon.log());
    daemon.stop();

    // A token that could be guessed is refused before anything starts.
    let out =
        site.herald_env(&["daemon", "--listen", "127.0.0.1:0"], &[("HERALD_ADMIN_TOKEN", "short")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("HERALD_ADMIN_TOKEN is shorter than 16"), "{}", stderr(&out));
}

#[test]
fn a_list_at_each_readers_hour_wakes_the_daemon_for_each_zone() {
    use chrono::TimeZone;
    let site = Site::init();
    site.write(
        "subscribers/daily.csv",
        "email,name,timezone\nlisbon@example.com,Lis,\nnew-york@example.com,Ny,America/New_York\n",
    );
    assert!(site.herald(&["collect"]).status.success());
    schedule_list(&site, "0 0 7 * * *", "Europe/Lisbon");
    let config = std::fs::read_to_string(site.file("herald.toml")).unwrap();
    let config = config.replacen(
        "timezone = \"Europe/Lisbon\"",
        "timezone = \"Europe/Lisbon\"\nlocal_time = true",
        1,
    );
    std::fs::write(site.file("herald.toml"), config).unwrap();
    // 07:00 tomorrow in Lisbon, and 07:00 the same day in New York.
    let day = (Utc::now() + chrono::Duration::days(1)).date_naive();
    let seven = |tz: chrono_tz::Tz| {
        tz.from_local_datetime(&day.and_hms_opt(7, 0, 0).unwrap()).unwrap().to_utc()
    };
    let (lisbon, new_york) =
        (seven(chrono_tz::Europe::Lisbon), seven(chrono_tz::America::New_York));
    let clock = Clock { path: site.file("test-clock") };
    clock.set(lisbon - chrono::Duration::minutes(1));
    let daemon = start_daemon(&site, &clock, &[]);
    clock.set(lisbon);
    wait_until("the Lisbon reader's mail", Duration::from_secs(30), || site.outbox().len() == 1);
    let to = |i: usize| {
        let mail = Mail::read(&site.outbox()[i]);
        mail.parsed().to().and_then(|t| t.first()).and_then(|a| a.address()).unwrap().to_owned()
    };
    assert_eq!(to(0), "lisbon@example.com");
    let status = stdout(&site.herald(&["status"]));
    assert!(status.contains("waiting for their hour"), "status shows the batch to go: {status}");
    // A minute before New York's hour, nothing more.
    let before = new_york - chrono::Duration::minutes(1);
    clock.set(before);
    wait_for_wake(&daemon, before);
    assert_eq!(site.outbox().len(), 1, "the New York reader waits for their 07:00");
    clock.set(new_york);
    wait_until("the New York reader's mail", Duration::from_secs(30), || site.outbox().len() == 2);
    let mails: Vec<String> = (0..2).map(to).collect();
    assert!(mails.contains(&"new-york@example.com".to_owned()), "{mails:?}");
    daemon.stop();
}
