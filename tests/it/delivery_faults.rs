//! Every SMTP failure branch, against a fault-injecting server: what is
//! retried, what fails for good, what gets suppressed, and that one bad
//! transaction never holds up the others.

use std::time::Duration;

use crate::support::faulty::FaultySmtp;
use crate::support::{stderr, stdout, Site};

const DAY1: &str = "2026-11-24T07:00:00Z";

const READERS: &str = "email,name
ok1@example.com,One
rcpt450@example.com,
rcpt451@example.com,
rcpt452@example.com,
rcpt454@example.com,
rcpt550@example.com,
data550@example.com,
data552@example.com,
drop@example.com,
slow@example.com,
ok2@example.com,Two
";

pub(crate) fn env(url: &str) -> Vec<(&'static str, String)> {
    vec![
        ("HERALD_MAIL_TRANSPORT", "smtp".into()),
        ("HERALD_MAIL_SMTP_URL", url.into()),
        ("HERALD_MAIL_TIMEOUT_SECS", "1".into()),
        // One connection, so the branches run one after the other on it and
        // a broken connection is seen to be replaced.
        ("HERALD_MAIL_CONCURRENCY", "1".into()),
    ]
}

pub(crate) fn herald(site: &Site, args: &[&str], url: &str) -> std::process::Output {
    let env = env(url);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    site.herald_env(args, &env)
}

/// (email → (state, attempts, detail)) from `herald deliveries`.
pub(crate) fn ledger(site: &Site) -> Vec<(String, String, String)> {
    let out = site.herald(&["deliveries"]);
    stdout(&out)
        .lines()
        .map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            (cols[2].to_string(), cols[3].to_string(), l.to_string())
        })
        .collect()
}

pub(crate) fn row<'a>(
    rows: &'a [(String, String, String)],
    email: &str,
) -> &'a (String, String, String) {
    rows.iter()
        .find(|(e, _, _)| e == email)
        .unwrap_or_else(|| panic!("no row for {email}: {rows:?}"))
}

#[test]
fn each_failure_branch_lands_where_it_should() {
    let server = FaultySmtp::start(1, Duration::from_secs(3));
    let site = Site::init();
    site.write("subscribers/daily.csv", READERS);
    let out = herald(&site, &["run", "--now", DAY1], &server.url());
    let summary = stdout(&out);
    // 5xx make the exit code 1; everything else still went through.
    assert_eq!(out.status.code(), Some(1), "{summary}{}", stderr(&out));
    assert!(summary.contains("1 sent, 7 deferred, 3 failed"), "{summary}");
    assert!(summary.contains("1 address(es) suppressed"), "{summary}");

    let rows = ledger(&site);
    // The first connection is greeted with 421: the message it was for (the
    // first reader's) is deferred, and the next connection carries on.
    let (_, state, line) = row(&rows, "ok1@example.com");
    assert_eq!(state, "pending", "{line}");
    assert!(line.contains("421"), "{line}");
    // 250 after the refused, dropped and slow transactions broke earlier
    // connections: sent, once.
    let (_, state, line) = row(&rows, "ok2@example.com");
    assert_eq!(state, "sent", "{line}");
    assert!(line.contains("250 2.0.0 queued"), "the server's reply is recorded: {line}");
    assert_eq!(server.accepted_for("ok2"), 1);
    // 4xx on RCPT, a dropped connection, a reply past the timeout: pending,
    // with one attempt and the reason.
    for (email, reason) in [
        ("rcpt450@example.com", "450"),
        ("rcpt451@example.com", "451"),
        ("rcpt452@example.com", "452"),
        ("rcpt454@example.com", "454"),
        ("drop@example.com", ""),
        ("slow@example.com", "no reply within 1s"),
    ] {
        let (_, state, line) = row(&rows, email);
        assert_eq!(state, "pending", "{line}");
        assert!(line.contains("1 attempt(s)") && line.contains("retry after"), "{line}");
        assert!(line.contains(reason), "{line}");
    }
    // 5xx: failed with the reply, no retry.
    for (email, code) in [
        ("rcpt550@example.com", "5.1.1"),
        ("data550@example.com", "5.7.1"),
        ("data552@example.com", "5.3.4"),
    ] {
        let (_, state, line) = row(&rows, email);
        assert_eq!(state, "failed", "{line}");
        assert!(line.contains(code), "{line}");
    }
    assert!(server.connections.load(std::sync::atomic::Ordering::SeqCst) >= 2);

    // Later runs: deferred rows retry after their backoff (ok1 now goes
    // through), failed rows never, and nothing is sent twice.
    let out = herald(&site, &["deliver", "--now", "2026-11-24T09:00:00Z"], &server.url());
    assert!(
        stdout(&out).contains("1 sent, 6 deferred, 0 failed"),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert_eq!(server.accepted_for("ok1"), 1);
    assert_eq!(server.accepted_for("ok2"), 1);
    let rows = ledger(&site);
    assert!(row(&rows, "rcpt451@example.com").2.contains("2 attempt(s)"));

    // The user-unknown address is suppressed: a new edition does not include it,
    // and an import cannot bring it back.
    site.write("content/extra.md", "+++\ntitle = \"Extra\"\ndate = 2026-11-25\n+++\nMore.\n");
    let out = herald(&site, &["run", "--now", "2026-11-25T07:00:00Z"], &server.url());
    assert!(stdout(&out).contains("for 10 reader(s)"), "{}", stdout(&out));
    let out = site.herald(&["subscribers", "add", "rcpt550@example.com", "--list", "daily"]);
    assert!(stderr(&out).contains("suppressed"), "{}", stderr(&out));
}

#[test]
fn attempts_run_out_into_failed() {
    let server = FaultySmtp::start(0, Duration::from_secs(0));
    let site = Site::init();
    site.write("subscribers/daily.csv", "email,name\nrcpt451@example.com,\nok1@example.com,\n");
    let mut env = env(&server.url());
    env.push(("HERALD_MAIL_MAX_ATTEMPTS", "2".into()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = site.herald_env(&["run", "--now", DAY1], &env);
    assert!(stdout(&out).contains("1 sent, 1 deferred, 0 failed"), "{}", stdout(&out));
    let out = site.herald_env(&["deliver", "--now", "2026-11-25T07:00:00Z"], &env);
    assert!(stdout(&out).contains("0 sent, 0 deferred, 1 failed"), "{}", stdout(&out));
    let rows = ledger(&site);
    assert!(row(&rows, "rcpt451@example.com").2.contains("gave up after 2 attempts"), "{rows:?}");
}

#[test]
fn a_server_that_keeps_refusing_stops_the_run_early() {
    // Every connection is greeted with 421: after a few deferrals in a row,
    // herald stops claiming instead of burning an attempt on every reader.
    let server = FaultySmtp::start(usize::MAX, Duration::from_secs(0));
    let site = Site::init();
    let readers: String = std::iter::once("email,name\n".to_string())
        .chain((0..40).map(|i| format!("r{i}@example.com,\n")))
        .collect();
    site.write("subscribers/daily.csv", &readers);
    let out = herald(&site, &["run", "--now", DAY1], &server.url());
    let summary = stdout(&out);
    assert!(summary.contains("0 sent"), "{summary}");
    assert!(summary.contains("stopped early"), "{summary}");
    let rows = ledger(&site);
    let deferred = rows.iter().filter(|(_, _, l)| l.contains("1 attempt(s)")).count();
    let untouched = rows.iter().filter(|(_, _, l)| l.contains("0 attempt(s)")).count();
    assert!(deferred < 40 && untouched > 0, "deferred {deferred}, untouched {untouched}");
    assert_eq!(deferred + untouched, 40, "every row is pending, none lost: {rows:?}");
}

#[test]
fn connections_are_reused_up_to_messages_per_connection() {
    let server = FaultySmtp::start(0, Duration::ZERO);
    let site = Site::init();
    let readers: String = std::iter::once("email,name\n".to_string())
        .chain((0..6).map(|i| format!("r{i}@example.com,\n")))
        .collect();
    site.write("subscribers/daily.csv", &readers);
    let mut env = env(&server.url());
    env.push(("HERALD_MAIL_MESSAGES_PER_CONNECTION", "2".into()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = site.herald_env(&["run", "--now", DAY1], &env);
    assert!(stdout(&out).contains("6 sent"), "{}{}", stdout(&out), stderr(&out));
    // One worker: 6 messages, 2 per connection.
    assert_eq!(server.connections.load(std::sync::atomic::Ordering::SeqCst), 3);

    // Without the limit, one connection carries them all.
    let server = FaultySmtp::start(0, Duration::ZERO);
    let site = Site::init();
    site.write("subscribers/daily.csv", &readers);
    let out = herald(&site, &["run", "--now", DAY1], &server.url());
    assert!(stdout(&out).contains("6 sent"), "{}", stdout(&out));
    assert_eq!(server.connections.load(std::sync::atomic::Ordering::SeqCst), 1);
}
