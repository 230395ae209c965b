//! Crash safety: kill -9 `herald deliver` at random moments while it sends
//! to an SMTP server (`support::faulty`, which keeps a message only when its
//! DATA has ended), rerun it until done, then count what the server
//! got: nobody is missing, and the only duplicates are messages that were in
//! flight at a kill, sent again with the same Message-ID.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::support::faulty::FaultySmtp;
use crate::support::{stderr, stdout, Rng, Site, SECRET};

const READERS: usize = 2_000;
const KILLS: usize = 5;
const CONCURRENCY: usize = 8;
const NOW: &str = "2026-11-24T07:00:00Z";

/// A message the server accepted whole: its MIME structure is closed.
fn complete(raw: &[u8]) -> bool {
    let text = String::from_utf8_lossy(raw);
    let Some(boundary) = text.split("boundary=\"").nth(1).and_then(|b| b.split('"').next()) else {
        return false;
    };
    text.contains(&format!("--{boundary}--"))
}

#[test]
fn kill_9_during_delivery_loses_nothing_and_duplicates_only_in_flight() {
    let sink = FaultySmtp::start(0, Duration::from_secs(30));
    let site = Site::init();
    let mut csv = String::from("email,name\n");
    for i in 0..READERS {
        csv.push_str(&format!("reader{i:04}@example.com,Reader {i}\n"));
    }
    site.write("subscribers/daily.csv", &csv);
    for stage in ["collect", "compose"] {
        let out = site.herald(&[stage, "--now", NOW]);
        assert!(out.status.success(), "{stage}: {}", stderr(&out));
    }

    let url = sink.url();
    let deliver = || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_herald"));
        cmd.current_dir(site.path())
            .args(["deliver", "--now", NOW])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HERALD_SECRET", SECRET)
            .env("HERALD_MAIL_TRANSPORT", "smtp")
            .env("HERALD_MAIL_SMTP_URL", &url)
            .env("HERALD_MAIL_CONCURRENCY", CONCURRENCY.to_string());
        cmd
    };

    // Kill points: random progress marks, in order, each past the last.
    let seed = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
    eprintln!("kill points drawn with seed {seed}");
    let mut rng = Rng(seed);
    let mut marks: Vec<usize> = (0..KILLS).map(|_| 50 + rng.below(READERS - 100)).collect();
    marks.sort_unstable();
    let mut kills = 0;
    for mark in marks {
        let mut child =
            deliver().stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("start deliver");
        let deadline = Instant::now() + Duration::from_secs(120);
        let finished = loop {
            if sink.count() >= mark {
                break false;
            }
            if child.try_wait().unwrap().is_some() {
                break true;
            }
            assert!(Instant::now() < deadline, "deliver made no progress to {mark}");
            std::thread::sleep(Duration::from_millis(1));
        };
        if finished {
            break;
        }
        child.kill().expect("kill -9"); // SIGKILL: no chance to clean up
        child.wait().unwrap();
        kills += 1;
    }
    assert!(kills >= 1, "no kill happened before the send finished");

    // Rerun until the ledger is done; a second rerun sends nothing.
    let out = deliver().output().unwrap();
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let out = deliver().output().unwrap();
    assert!(stdout(&out).contains("0 sent, 0 deferred, 0 failed"), "{}", stdout(&out));
    let status = stdout(&site.herald(&["status"]));
    assert!(status.contains(&format!("{READERS} sent, 0 pending, 0 failed")), "{status}");

    // Count what the server accepted, per recipient.
    let mut seen: HashMap<String, Vec<String>> = HashMap::new();
    for mail in sink.messages(READERS) {
        if !complete(&mail.raw) {
            continue; // a transaction cut by the kill: never accepted
        }
        let m = mail.parsed();
        let to = m.to().and_then(|a| a.first()).and_then(|a| a.address()).unwrap().to_string();
        seen.entry(to).or_default().push(m.message_id().unwrap().to_string());
    }
    let missing: Vec<String> = (0..READERS)
        .map(|i| format!("reader{i:04}@example.com"))
        .filter(|a| !seen.contains_key(a))
        .collect();
    assert!(
        missing.is_empty(),
        "{} reader(s) got nothing: {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    let duplicates: usize = seen.values().map(|ids| ids.len() - 1).sum();
    eprintln!("{kills} kill(s), {duplicates} duplicate(s)");
    assert!(
        duplicates <= kills * CONCURRENCY,
        "{duplicates} duplicates after {kills} kills: more than the {CONCURRENCY} in flight per kill"
    );
    for (to, ids) in &seen {
        assert!(ids.iter().all(|id| id == &ids[0]), "{to} got different Message-IDs: {ids:?}");
    }
}

#[test]
fn sigterm_finishes_what_is_in_flight_and_exits_cleanly() {
    sigterm_during_a_send(READERS, 200, &[]);
}

/// A list small enough to be claimed in one go: the signal still stops the
/// sending, though no more rows are left to claim.
#[test]
fn sigterm_stops_a_send_whose_rows_are_all_claimed() {
    sigterm_during_a_send(40, 3, &[("HERALD_MAIL_RATE_PER_SECOND", "4")]);
}

/// Sends SIGTERM to `herald deliver` once the server has `after` of the
/// `readers` messages, then checks that it stopped cleanly and that the
/// next run sends the rest without duplicates.
fn sigterm_during_a_send(readers: usize, after: usize, extra: &[(&str, &str)]) {
    let sink = FaultySmtp::start(0, Duration::from_secs(30));
    let site = Site::init();
    let mut csv = String::from("email,name\n");
    for i in 0..readers {
        csv.push_str(&format!("reader{i:04}@example.com,\n"));
    }
    site.write("subscribers/daily.csv", &csv);
    for stage in ["collect", "compose"] {
        assert!(site.herald(&[stage, "--now", NOW]).status.success());
    }
    let url = sink.url();
    let mut env = vec![("HERALD_MAIL_TRANSPORT", "smtp"), ("HERALD_MAIL_SMTP_URL", url.as_str())];
    env.extend_from_slice(extra);
    let child = Command::new(env!("CARGO_BIN_EXE_herald"))
        .current_dir(site.path())
        .args(["deliver", "--now", NOW])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HERALD_SECRET", SECRET)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while sink.count() < after {
        assert!(Instant::now() < deadline, "no progress");
        std::thread::sleep(Duration::from_millis(1));
    }
    crate::support::sigterm(&child);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "SIGTERM exits 0: {}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("stopped by a signal"), "{}", stdout(&out));
    // Nothing is left half-done: no row is `sending`, and what the server got
    // is exactly what the ledger says was sent.
    let sending = stdout(&site.herald(&["deliveries", "--state", "sending"]));
    assert!(sending.is_empty(), "{sending}");
    let sent = stdout(&site.herald(&["deliveries", "--state", "sent", "--limit", "100000"]))
        .lines()
        .count();
    assert!(sent < readers, "the signal came before the end, yet all {sent} were sent");
    assert_eq!(sink.count(), sent, "the server has exactly what the ledger says was sent");

    // The rest goes out on the next run, with no duplicates at all.
    let out = site.herald_env(&["deliver", "--now", NOW], &env);
    assert!(out.status.success());
    assert_eq!(sink.messages(readers).len(), readers);
}
