//! `herald daemon` as an operator runs it: schedules of a second, catch-up
//! across restarts, one daemon per store, SIGTERM in the middle of a send,
//! and the health and metrics endpoints (behind the admin token or on their
//! own listener). (The schedule computation across
//! clock changes is a unit test beside `types::Schedule`.)

use std::collections::HashSet;
use std::time::{Duration, Instant};

use crate::support::http::{admin_get, get, request, Server};
use crate::support::{stderr, stdout, Site};
use chrono::{Timelike, Utc};

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

#[test]
fn scheduled_jobs_run_and_health_and_metrics_say_so() {
    let site = Site::init();
    schedule_list(&site, "*/2 * * * * *", "UTC");
    let daemon = Server::start_daemon(&site, &[("HERALD_COLLECT_SCHEDULE", "*/2 * * * * *")]);
    wait_until("the digest to go out", Duration::from_secs(30), || site.outbox().len() == 4);
    assert!(site.file("public/feed.xml").exists(), "collect published the feeds");
    assert!(site.file("public/archive/index.html").exists(), "the edition's page");

    let health = admin_get(daemon.addr, "/healthz");
    assert_eq!(health.status, 200, "{}", health.text());
    let body: serde_json::Value = serde_json::from_slice(&health.body).unwrap();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["store"], "ok");
    assert_eq!(body["scheduler"]["alive"], true);
    assert_eq!(body["jobs"]["list:daily"]["last_ok"], true, "{body}");
    assert_eq!(body["jobs"]["collect"]["last_ok"], true, "{body}");
    assert!(body["jobs"]["collect"]["next"].is_string(), "{body}");

    let metrics = admin_get(daemon.addr, "/metrics");
    assert_eq!(metrics.status, 200);
    assert!(metrics.header("content-type").unwrap().starts_with("text/plain; version=0.0.4"));
    let text = metrics.text();
    for line in [
        "herald_articles_collected_total 4",
        "herald_sources_failing 0",
        "herald_mails{list=\"daily\",state=\"sent\"} 4",
        "herald_job_runs_total{job=\"list:daily\",outcome=\"failed\"} 0",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in:\n{text}");
    }
    assert!(text.contains("herald_job_duration_seconds{job=\"collect\"}"), "{text}");
    assert!(
        text.contains("herald_job_last_success_timestamp_seconds{job=\"list:daily\"} 17"),
        "{text}"
    );

    // The next ticks find the edition made: nobody gets a second copy.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(site.outbox().len(), 4);
    // Also served: the feeds and the subscription pages.
    assert_eq!(get(daemon.addr, "/feed.xml").status, 200);
    assert_eq!(get(daemon.addr, "/subscribe").status, 200);
    let log = daemon.log();
    assert!(log.contains("job=list:daily") && log.contains("finished in"), "{log}");
    daemon.stop();
}

#[test]
fn one_daemon_per_store_and_a_killed_daemons_lease_expires() {
    let site = Site::init();
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

    // Killed without a word: its lease runs out, then another takes over.
    let pid = first.pid();
    first.kill9();
    let refused = site.herald_env(&["daemon", "--listen", "127.0.0.1:0"], &env);
    assert_eq!(refused.status.code(), Some(1), "the lease is still live");
    assert!(stderr(&refused).contains(&format!("pid {pid}")), "{}", stderr(&refused));
    std::thread::sleep(Duration::from_secs(4));
    let next = Server::start_daemon(&site, &env);
    assert_eq!(admin_get(next.addr, "/healthz").status, 200);
    next.stop();
    // A clean stop gives the lease back at once.
    let out = site.herald(&["run"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// A schedule firing once a day at the UTC second `at` seconds from now.
fn daily_at(in_seconds: i64) -> (String, chrono::DateTime<Utc>) {
    let at = Utc::now() + chrono::Duration::seconds(in_seconds);
    (format!("{} {} {} * * *", at.second(), at.minute(), at.hour()), at)
}

#[test]
fn a_missed_edition_goes_out_once_across_restarts() {
    let site = Site::init();
    assert!(site.herald(&["collect"]).status.success());
    let (schedule, at) = daily_at(5);
    schedule_list(&site, &schedule, "UTC");
    // Started and stopped before the edition's time: herald is then down
    // when it comes.
    Server::start_daemon(&site, &[]).stop();
    assert!(site.outbox().is_empty());
    while Utc::now() < at + chrono::Duration::seconds(1) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let daemon = Server::start_daemon(&site, &[]);
    wait_until("the missed digest", Duration::from_secs(20), || sent(&site) == 4);
    daemon.stop();
    assert_eq!(site.outbox().len(), 4);
    let log = std::fs::read_dir(site.path())
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().contains("daemon-"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect::<String>();
    assert!(log.contains("missed its run"), "{log}");
    // Started again: the edition is done; nothing goes out twice.
    let again = Server::start_daemon(&site, &[]);
    std::thread::sleep(Duration::from_secs(3));
    again.stop();
    assert_eq!(site.outbox().len(), 4);
    assert_eq!(sent(&site), 4);
}

#[test]
fn an_edition_later_than_max_lateness_is_skipped_and_said_so() {
    let site = Site::init();
    assert!(site.herald(&["collect"]).status.success());
    let (schedule, at) = daily_at(4);
    schedule_list(&site, &schedule, "UTC");
    let env = [("HERALD_DAEMON_MAX_LATENESS_MINUTES", "0")];
    Server::start_daemon(&site, &env).stop();
    while Utc::now() < at + chrono::Duration::seconds(1) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let daemon = Server::start_daemon(&site, &env);
    std::thread::sleep(Duration::from_secs(2));
    let log = daemon.log();
    daemon.stop();
    assert!(log.contains("skipped its run") && log.contains("max_lateness_minutes = 0"), "{log}");
    assert!(site.outbox().is_empty(), "a stale digest does not go out late");
}

#[test]
fn sigterm_during_a_send_loses_nothing() {
    const READERS: usize = 1_500;
    let sink = crate::support::faulty::FaultySmtp::start(0, Duration::from_secs(30));
    let site = Site::init();
    let mut csv = String::from("email,name\n");
    for i in 0..READERS {
        csv.push_str(&format!("reader{i:04}@example.com,Reader {i}\n"));
    }
    site.write("subscribers/daily.csv", &csv);
    assert!(site.herald(&["collect"]).status.success());
    schedule_list(&site, "*/2 * * * * *", "UTC");
    let url = sink.url();
    let env = [
        ("HERALD_MAIL_TRANSPORT", "smtp"),
        ("HERALD_MAIL_SMTP_URL", url.as_str()),
        ("HERALD_MAIL_RATE_PER_SECOND", "300"),
    ];
    let daemon = Server::start_daemon(&site, &env);
    wait_until("the send to start", Duration::from_secs(30), || sink.count() >= 50);
    daemon.stop(); // SIGTERM: exits 0 after the messages in flight
    let during = sent(&site);
    assert!(during < READERS, "stopped in the middle ({during} sent)");
    // The rest goes out on the next run, and nobody is missing.
    let out = site.herald_env(&["deliver"], &env);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(sent(&site), READERS);
    let messages = sink.messages(READERS);
    let ids: HashSet<String> =
        messages.iter().filter_map(|m| m.parsed().message_id().map(str::to_owned)).collect();
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
    let smtp = crate::support::faulty::FaultySmtp::start(0, Duration::from_secs(30));
    let site = Site::init();
    site.write(
        "subscribers/daily.csv",
        "email,name\nrcpt451@example.com,Busy\nok@example.com,Fine\n",
    );
    assert!(site.herald(&["collect"]).status.success());
    // The list fires once, in a few seconds; its next time is tomorrow.
    let (schedule, _) = daily_at(4);
    schedule_list(&site, &schedule, "UTC");
    let url = smtp.url();
    let daemon = Server::start_daemon(
        &site,
        &[
            ("HERALD_MAIL_TRANSPORT", "smtp"),
            ("HERALD_MAIL_SMTP_URL", url.as_str()),
            ("HERALD_MAIL_RETRY_BASE_SECS", "1"),
            ("HERALD_MAIL_MAX_ATTEMPTS", "3"),
        ],
    );
    // 451 three times (the first send, then two retries when due): failed.
    let failed = "herald_mails{list=\"daily\",state=\"failed\"} 1";
    wait_until("the retries", Duration::from_secs(40), || {
        admin_get(daemon.addr, "/metrics").text().lines().any(|l| l == failed)
    });
    assert_eq!(smtp.accepted_for("ok"), 1, "the other reader got it once");
    let log = daemon.log();
    assert!(log.contains("job=deliver"), "the retries ran as the deliver job: {log}");
    daemon.stop();
}

#[test]
fn a_job_still_running_at_its_next_tick_is_not_started_twice() {
    const READERS: usize = 200;
    let sink = crate::support::faulty::FaultySmtp::start(0, Duration::from_secs(30));
    let site = Site::init();
    let mut csv = String::from("email,name\n");
    for i in 0..READERS {
        csv.push_str(&format!("reader{i:03}@example.com,Reader {i}\n"));
    }
    site.write("subscribers/daily.csv", &csv);
    assert!(site.herald(&["collect"]).status.success());
    // Every second, while one send takes about four.
    schedule_list(&site, "* * * * * *", "UTC");
    let url = sink.url();
    let daemon = Server::start_daemon(
        &site,
        &[
            ("HERALD_MAIL_TRANSPORT", "smtp"),
            ("HERALD_MAIL_SMTP_URL", url.as_str()),
            ("HERALD_MAIL_RATE_PER_SECOND", "50"),
        ],
    );
    wait_until("the send", Duration::from_secs(40), || sent(&site) == READERS);
    std::thread::sleep(Duration::from_secs(2));
    let log = daemon.log();
    daemon.stop();
    assert!(log.contains("still running at its next time"), "{log}");
    assert_eq!(sink.messages(READERS).len(), READERS, "each reader once");
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
