//! `herald store copy --to URL`: a store moved into another, empty one
//! (PostgreSQL, or a SQLite file) keeps every reader, every ledger row and
//! the secret the links are signed with, so a half-sent edition finishes
//! from the copy without sending anyone anything twice, and an unsubscribe
//! link mailed before the move still works after it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::faulty::FaultySmtp;
use crate::support::http::send;
use crate::support::postgres::{self, POSTGRES};
use crate::support::{outside, stderr, stdout, Site};

const NOW: &str = "2026-11-24T07:00:00Z";
const NEXT_DAY: &str = "2026-11-25T07:00:00Z";
const READERS: usize = 40;

/// Runs herald in the site with only PATH and `env`: no `HERALD_SECRET`,
/// so the links are signed with the secret herald keeps in its store, the
/// one the copy has to carry.
fn herald(site: &Site, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_herald"))
        .current_dir(site.path())
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run herald")
}

/// Fails the test with what herald printed unless it succeeded.
fn ok(out: Output, what: &str) -> Output {
    assert!(out.status.success(), "{what}: {}{}", stdout(&out), stderr(&out));
    out
}

/// The rows per table of a copy's summary: its lines `TABLE  ROWS`.
fn summary(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let (table, rows) = (words.next()?, words.next()?);
            let rows = rows.parse().ok()?;
            words.next().is_none().then(|| (table.to_owned(), rows))
        })
        .collect()
}

/// `herald store copy` of the site's store to `to`.
fn copy(site: &Site, to: &str) -> Output {
    herald(site, &["store", "copy", "--to", to], &[])
}

/// The readers of the list, as `subscribers/daily.csv`.
fn readers() -> Vec<String> {
    (0..READERS).map(|i| format!("reader{i:02}@example.com")).collect()
}

/// A site whose edition of the day was sent to some readers: a send stopped
/// by SIGTERM after the server took `sent` messages, then a claim of two more
/// rows that the process "died" with, left `sending` as a crash leaves them.
fn half_sent(sink: &FaultySmtp, sent: usize) -> Site {
    let site = Site::init();
    let mut csv = String::from("email,name\n");
    for r in readers() {
        csv.push_str(&format!("{r},\n"));
    }
    site.write("subscribers/daily.csv", &csv);
    for stage in ["collect", "compose"] {
        ok(herald(&site, &[stage, "--now", NOW], &[]), stage);
    }
    let url = sink.url();
    let child = Command::new(env!("CARGO_BIN_EXE_herald"))
        .current_dir(site.path())
        .args(["deliver", "--now", NOW])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HERALD_MAIL_TRANSPORT", "smtp")
        .env("HERALD_MAIL_SMTP_URL", &url)
        .env("HERALD_MAIL_RATE_PER_SECOND", "4")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start deliver");
    let deadline = Instant::now() + Duration::from_secs(60);
    while sink.count() < sent {
        assert!(Instant::now() < deadline, "deliver sent nothing");
        std::thread::sleep(Duration::from_millis(1));
    }
    crate::support::sigterm(&child);
    let out = ok(child.wait_with_output().unwrap(), "deliver stopped by SIGTERM");
    assert!(stdout(&out).contains("stopped by a signal"), "{}", stdout(&out));
    let now = NOW.parse().unwrap();
    let claimed = crate::support::with_store(&site, async |store| {
        let edition = store.editions_in_progress().await.unwrap().remove(0);
        // Claimed by a process that died long ago: the claims have expired.
        let claimant = herald::store::Claimant { node: "crashed", wall: now, until: now };
        store.claim_deliveries(&edition, now, 2, &claimant).await.unwrap().len()
    });
    assert_eq!(claimed, 2);
    site
}

/// Who the server got a message for, in order.
fn recipients(sink: &FaultySmtp) -> Vec<String> {
    sink.accepted.lock().unwrap().iter().map(|(to, _)| to.clone()).collect()
}

/// The ledger rows in `state`, one line each.
fn ledger(site: &Site, state: &str, env: &[(&str, &str)]) -> usize {
    let out =
        ok(herald(site, &["deliveries", "--state", state, "--limit", "100000"], env), "deliveries");
    stdout(&out).lines().count()
}

/// `herald serve` without `HERALD_SECRET` on a free loopback port; killed
/// when dropped.
struct Serve(Child, SocketAddr);

impl Serve {
    fn start(site: &Site, env: &[(&str, &str)]) -> Self {
        let addr = crate::support::free_port();
        let log = std::fs::File::create(site.file("serve.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_herald"))
            .current_dir(site.path())
            .args(["serve", "--listen", &addr.to_string()])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env.iter().copied())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start herald serve");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(addr).is_err() {
            let log = std::fs::read_to_string(site.file("serve.log")).unwrap_or_default();
            assert!(Instant::now() < deadline, "herald serve did not listen on {addr}:\n{log}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self(child, addr)
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The path and query of the one-click unsubscribe link in a message's
/// List-Unsubscribe header.
fn unsubscribe_link(raw: &str) -> String {
    let at = raw.find("/unsubscribe?token=").expect("an unsubscribe link");
    raw[at..].split(['>', '\r', '\n', ' ']).next().unwrap().to_owned()
}

/// A member's status on the list, as `subscribers export --all` says.
fn status_of(site: &Site, email: &str, env: &[(&str, &str)]) -> Option<String> {
    let out = ok(
        herald(site, &["subscribers", "export", "--list", "daily", "--all"], env),
        "subscribers export",
    );
    stdout(&out)
        .lines()
        .find(|l| l.starts_with(&format!("{email},")))
        .map(|l| l.split(',').nth(2).unwrap().to_owned())
}

#[test]
fn a_half_sent_edition_finishes_from_postgres_without_a_duplicate_or_a_miss() {
    if !outside::available(&POSTGRES) {
        return;
    }
    let sink = FaultySmtp::start(0, Duration::from_secs(30));
    let site = half_sent(&sink, 5);
    let before = recipients(&sink);
    assert!(before.len() >= 5 && before.len() < READERS - 2, "{before:?}");
    assert_eq!(ledger(&site, "sent", &[]), before.len());
    assert_eq!(ledger(&site, "sending", &[]), 2);
    // A link mailed before the move, with the secret the store made itself.
    let first = String::from_utf8(sink.messages(1)[0].raw.clone()).unwrap();
    let link = unsubscribe_link(&first);
    let leaver = before[0].clone();

    let pg = postgres::server().fresh_database();
    // The server trusts loopback, so a password in the URL is only there to
    // be kept out of what herald prints.
    let with_password = pg.replacen("postgres://herald@", "postgres://herald:s3cret@", 1);
    let out = ok(copy(&site, &with_password), "store copy");
    assert!(!format!("{}{}", stdout(&out), stderr(&out)).contains("s3cret"), "{}", stdout(&out));
    assert!(stdout(&out).contains("postgres://herald:***@"), "{}", stdout(&out));
    let counts = summary(&stdout(&out));
    assert_eq!(counts.get("subscribers"), Some(&(READERS as u64)), "{}", stdout(&out));
    assert_eq!(counts.get("memberships"), Some(&(READERS as u64)), "{}", stdout(&out));
    assert_eq!(counts.get("deliveries"), Some(&(READERS as u64)), "{}", stdout(&out));
    assert_eq!(counts.get("editions"), Some(&1), "{}", stdout(&out));
    assert_eq!(counts.get("settings").map(|n| *n >= 1), Some(true), "{}", stdout(&out));
    assert!(!counts.contains_key("daemon_lease"), "{}", stdout(&out));

    // From now on the site runs on PostgreSQL.
    let on_pg = [("HERALD_STORE_URL", pg.as_str())];
    assert_eq!(ledger(&site, "sent", &on_pg), before.len());
    assert_eq!(ledger(&site, "sending", &on_pg), 2);
    let url = sink.url();
    let smtp = [
        ("HERALD_STORE_URL", pg.as_str()),
        ("HERALD_MAIL_TRANSPORT", "smtp"),
        ("HERALD_MAIL_SMTP_URL", url.as_str()),
    ];
    let out = ok(herald(&site, &["deliver", "--now", NOW], &smtp), "deliver from PostgreSQL");
    let rest = READERS - before.len();
    assert!(
        stdout(&out).contains(&format!("{rest} sent, 0 deferred, 0 failed")),
        "{}",
        stdout(&out)
    );
    let out = ok(herald(&site, &["deliver", "--now", NOW], &smtp), "deliver again");
    assert!(stdout(&out).contains("0 sent, 0 deferred, 0 failed"), "{}", stdout(&out));

    // Everyone got the edition once: the server's recipients are the list.
    let all = recipients(&sink);
    let mut per_reader: BTreeMap<&str, usize> = BTreeMap::new();
    for to in &all {
        *per_reader.entry(to.as_str()).or_default() += 1;
    }
    let twice: Vec<_> = per_reader.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "sent twice: {twice:?}");
    let got: BTreeSet<String> = all.iter().cloned().collect();
    let expected: BTreeSet<String> = readers().into_iter().collect();
    assert_eq!(got, expected, "the readers who got it are the list");
    assert_eq!(ledger(&site, "sent", &on_pg), READERS);
    // The original is as it was: the copy only read it.
    assert_eq!(ledger(&site, "sent", &[]), before.len());

    // The link mailed before the move unsubscribes its reader on the copy.
    let server = Serve::start(&site, &on_pg);
    let r = send(
        server.1,
        "POST",
        &link,
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"List-Unsubscribe=One-Click",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("You are unsubscribed"), "{}", r.text());
    drop(server);
    assert_eq!(status_of(&site, &leaver, &on_pg).as_deref(), Some("unsubscribed"));

    // New rows get ids past the copied ones: a new reader, article and edition.
    ok(
        herald(&site, &["subscribers", "add", "new@example.com", "--list", "daily"], &on_pg),
        "subscribers add on the copy",
    );
    site.write(
        "content/after-the-move.md",
        "---\ntitle: \"After the move\"\ndate: 2026-11-25T06:00:00Z\n---\n\nOn PostgreSQL now.\n",
    );
    for stage in ["collect", "compose"] {
        ok(herald(&site, &[stage, "--now", NEXT_DAY], &on_pg), stage);
    }
    let out = ok(herald(&site, &["deliver", "--now", NEXT_DAY], &smtp), "next day's deliver");
    assert!(
        stdout(&out).contains(&format!("{} sent, 0 deferred, 0 failed", READERS)),
        "{}",
        stdout(&out)
    );

    // A second copy into the same database is refused, naming a table and
    // the database, without its password.
    let out = copy(&site, &with_password);
    assert_eq!(out.status.code(), Some(1), "{}{}", stdout(&out), stderr(&out));
    let said = stderr(&out);
    assert!(said.contains("is not empty") && said.contains("table `"), "{said}");
    assert!(said.contains("postgres://herald:***@") && !said.contains("s3cret"), "{said}");
}

/// Runs every stage of a fresh site on the given day (mail into the outbox).
fn run(site: &Site, now: &str) {
    ok(herald(site, &["run", "--now", now], &[]), "herald run");
}

/// What the commands show of a store: the ledger, every member and every
/// article.
fn contents(site: &Site, url: &str) -> String {
    let env = [("HERALD_STORE_URL", url)];
    let mut all = String::new();
    for args in [
        &["deliveries", "--limit", "100000"][..],
        &["subscribers", "export", "--list", "daily", "--all"],
        &["articles", "list", "--all"],
    ] {
        all.push_str(&stdout(&ok(herald(site, args, &env), &args.join(" "))));
    }
    all
}

fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}", path.display())
}

#[test]
fn a_copy_holds_what_the_original_holds_and_its_summary_counts_it() {
    // A SQLite store copied into SQLite files, in both passes of the suite.
    let site = Site::init_sqlite();
    run(&site, NOW);
    ok(herald(&site, &["deliver", "--pause", "daily"], &[]), "pause");
    let original = sqlite_url(&site.file("herald.db"));
    let dir = tempfile::tempdir().unwrap();
    let first = sqlite_url(&dir.path().join("copy.db"));

    let out = ok(copy(&site, &first), "store copy");
    let counts = summary(&stdout(&out));
    let articles = stdout(&herald(&site, &["articles", "list", "--all"], &[])).lines().count();
    assert!(articles > 0);
    for (table, rows) in [
        ("articles", articles as u64),
        ("subscribers", 4),
        ("memberships", 4),
        ("editions", 1),
        ("deliveries", 4),
        ("paused_lists", 1),
        ("sources", 1),
    ] {
        assert_eq!(counts.get(table), Some(&rows), "{table}: {}", stdout(&out));
    }
    assert!(!counts.contains_key("daemon_lease"), "{}", stdout(&out));
    assert_eq!(contents(&site, &first), contents(&site, &original));

    // A copy of the copy says the same.
    let second = sqlite_url(&dir.path().join("copy2.db"));
    let out = ok(
        herald(&site, &["store", "copy", "--to", &second], &[("HERALD_STORE_URL", &first)]),
        "copy of the copy",
    );
    assert_eq!(summary(&stdout(&out)), counts);
    assert_eq!(contents(&site, &second), contents(&site, &original));
}

#[test]
fn a_target_that_holds_rows_is_refused_and_left_as_it_was() {
    let first = Site::init();
    run(&first, NOW);
    let other = Site::init();
    other.write("subscribers/daily.csv", "email,name\nsomeone@example.com,Someone\n");
    run(&other, NOW);
    let dir = tempfile::tempdir().unwrap();
    let target = sqlite_url(&dir.path().join("target.db"));
    ok(copy(&first, &target), "store copy");
    let before = contents(&first, &target);

    let out = copy(&other, &target);
    assert_eq!(out.status.code(), Some(1), "{}{}", stdout(&out), stderr(&out));
    let said = stderr(&out);
    assert!(said.contains("is not empty") && said.contains("table `"), "{said}");
    assert!(said.contains(&target), "the error names the target: {said}");
    assert_eq!(contents(&first, &target), before, "nothing was written");
}

#[test]
fn store_copy_help_says_what_it_does() {
    let site = Site::init();
    let out = ok(herald(&site, &["store", "copy", "--help"], &[]), "help");
    let help = stdout(&out);
    for needle in ["--to", "empty", "postgres://", "count"] {
        assert!(help.contains(needle), "{needle}: {help}");
    }
}
