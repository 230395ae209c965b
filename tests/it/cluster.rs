//! Several herald nodes on one PostgreSQL store: three daemons send one
//! edition together through kill -9s of any of them (the leader among them,
//! during its compose), two `herald run`s started at once from two crons,
//! and every node publishing the same public/ from the store.
//!
//! They run in the suite's PostgreSQL pass (`HERALD_TEST_STORE=postgres`),
//! once, and say so in the SQLite pass.

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Utc};

use crate::support::faulty::FaultySmtp;
use crate::support::http::{admin_get, Server, ADMIN_TOKEN};
use crate::support::postgres;
use crate::support::{stderr, stdout, Rng, Site, SECRET};

/// Readers of the three-node test.
const READERS: usize = 100_000;
/// Workers per node: each relay's concurrency, summed.
const IN_FLIGHT_PER_NODE: usize = 8;
/// Relay `a`'s daily cap: a third of the list, so `b` sends the rest.
const CAP_A: usize = READERS / 3;

/// Whether this is the PostgreSQL pass; the SQLite pass says where the
/// test runs instead.
fn postgres_pass() -> bool {
    if crate::support::on_postgres() {
        return true;
    }
    if std::env::var("HERALD_TEST_STORE").is_ok_and(|v| v == "postgres") {
        return false; // on_postgres said what is missing
    }
    let current = std::thread::current();
    let _ = writeln!(
        std::io::stderr(),
        "{} runs in the PostgreSQL pass: HERALD_TEST_STORE=postgres cargo test",
        current.name().unwrap_or("a test")
    );
    false
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A site that is a node of the store at `url`, sending through `relays`.
fn node_site(url: &str, relays: &[(&str, &FaultySmtp, &str)]) -> Site {
    // Made as a SQLite site, then pointed at the shared store.
    let site = Site::init_sqlite();
    let mut text = std::fs::read_to_string(site.file("herald.toml")).unwrap();
    assert!(text.contains("url = \"sqlite://herald.db\""), "{text}");
    text = text
        .replace("url = \"sqlite://herald.db\"", &format!("url = \"{url}\""))
        .replace("transport = \"outbox\"", "transport = \"smtp\"")
        .replace("timezone = \"Europe/Lisbon\"", "timezone = \"UTC\"");
    for (name, server, extra) in relays {
        text.push_str(&format!(
            "\n[[mail.relays]]\nname = \"{name}\"\nurl = \"{}\"\n{extra}\n",
            server.url()
        ));
    }
    std::fs::write(site.file("herald.toml"), text).unwrap();
    // The members come from the store, not from each node's file.
    std::fs::remove_file(site.file("subscribers/daily.csv")).unwrap();
    site
}

fn csv(readers: usize) -> String {
    let mut csv = String::from("email,name\n");
    for i in 0..readers {
        csv.push_str(&format!("reader{i:06}@example.com,Reader {i}\n"));
    }
    csv
}

/// The clock every node follows (`HERALD_TEST_CLOCK`).
struct Clock(std::path::PathBuf);

impl Clock {
    fn set(&self, at: DateTime<Utc>) {
        let part = self.0.with_extension("part");
        std::fs::write(&part, at.to_rfc3339()).unwrap();
        std::fs::rename(&part, &self.0).unwrap();
    }
}

/// One node: a site and the daemon running in it.
struct Node {
    site: Site,
    addr: std::net::SocketAddr,
    daemon: Option<Server>,
}

impl Node {
    fn start(&mut self, env: &[(&str, &str)]) {
        let daemon = Server::start_command(&self.site, "daemon", self.addr, env);
        wait_until("the daemon to start", Duration::from_secs(60), || {
            daemon.log().contains("herald daemon started")
        });
        self.daemon = Some(daemon);
    }

    fn log(&self) -> String {
        self.daemon.as_ref().map(Server::log).unwrap_or_default()
    }

    fn leads(&self) -> bool {
        let log = self.log();
        log.contains("this daemon leads the scheduled work") || log.contains("took the lead")
    }

    fn kill9(&mut self) {
        if let Some(daemon) = self.daemon.take() {
            daemon.kill9();
        }
    }
}

/// The nodes' logs, for a failure message.
fn logs(nodes: &[Node]) -> String {
    nodes.iter().enumerate().map(|(i, n)| format!("--- node {i}:\n{}", n.log())).collect()
}

/// The Message-ID header of a raw message.
fn message_id(raw: &str) -> Option<String> {
    raw.lines()
        .take_while(|l| !l.is_empty())
        .find_map(|l| l.strip_prefix("Message-ID: ").map(|v| v.trim().to_owned()))
}

/// What each recipient got from the relays: their Message-IDs.
fn received(relays: &[&FaultySmtp]) -> HashMap<String, Vec<String>> {
    let mut seen: HashMap<String, Vec<String>> = HashMap::new();
    for relay in relays {
        for (to, raw) in relay.accepted.lock().unwrap().iter() {
            let id = message_id(raw).unwrap_or_else(|| panic!("a message without an id to {to}"));
            seen.entry(to.clone()).or_default().push(id);
        }
    }
    seen
}

fn sent_in_store(site: &Site) -> Option<usize> {
    let status = stdout(&site.herald(&["status"]));
    let line = status.lines().find(|l| l.contains(" sent, ") && l.contains("pending"))?;
    let before = line.split(" sent,").next()?;
    before.split_whitespace().last()?.parse().ok()
}

/// Every file under `dir` with its bytes.
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    walk(dir)
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(dir).unwrap().display().to_string();
            (rel, std::fs::read(&p).unwrap())
        })
        .collect()
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn three_nodes_send_one_edition_through_kill_9s_and_serve_the_same_site() {
    if !postgres_pass() {
        return;
    }
    let url = postgres::server().fresh_database();
    let a = FaultySmtp::start(0, Duration::from_secs(30));
    let b = FaultySmtp::start(0, Duration::from_secs(30));
    let relays = [
        ("a", &a, format!("daily_cap = {CAP_A}\nconcurrency = 4")),
        ("b", &b, "concurrency = 4".to_owned()),
    ];
    let relays: Vec<(&str, &FaultySmtp, &str)> =
        relays.iter().map(|(n, s, e)| (*n, *s, e.as_str())).collect();
    let mut nodes: Vec<Node> = (0..3)
        .map(|_| Node {
            site: node_site(&url, &relays),
            addr: crate::support::free_port(),
            daemon: None,
        })
        .collect();
    let first = &nodes[0].site;
    first.write("readers.csv", &csv(READERS));
    let out = first.herald(&["subscribers", "import", "readers.csv", "--list", "daily"]);
    assert!(out.status.success(), "{}", stderr(&out));

    // One clock for the three, a minute before the list's time, tomorrow.
    let clock = Clock(nodes[0].site.file("test-clock"));
    let day = (Utc::now() + chrono::Duration::days(1)).date_naive();
    let start: DateTime<Utc> = format!("{day}T06:59:00Z").parse().unwrap();
    clock.set(start);
    let clock_path = clock.0.display().to_string();
    let base = format!("http://{}/", nodes[0].addr);
    let env = [
        ("HERALD_TEST_CLOCK", clock_path.as_str()),
        ("HERALD_SITE_BASE_URL", base.as_str()),
        ("HERALD_ADMIN_TOKEN", ADMIN_TOKEN),
        ("HERALD_DAEMON_LEASE_SECS", "3"),
    ];
    for node in &mut nodes {
        node.start(&env);
    }
    assert!(nodes[0].leads(), "the first node leads:\n{}", nodes[0].log());
    assert!(!nodes[1].leads() && !nodes[2].leads(), "the others follow");
    wait_until("the first collect", Duration::from_secs(60), || {
        nodes[0].site.file("public/feed.xml").exists()
    });

    // The list's time: the leader dies as soon as its job starts.
    clock.set(start + chrono::Duration::minutes(1));
    wait_until("the leader's list job", Duration::from_secs(60), || {
        nodes[0].log().contains("job=list:daily")
    });
    nodes[0].kill9();
    let mut kills = 1;
    nodes[0].start(&env);

    // Three more kills of any node at random points of the sending.
    let seed = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
    eprintln!("nodes and kill points drawn with seed {seed}");
    let mut rng = Rng(seed);
    let mut marks: Vec<usize> =
        (0..3).map(|_| READERS / 10 + rng.below(READERS * 7 / 10)).collect();
    marks.sort_unstable();
    let delivered = || a.count() + b.count();
    for mark in marks {
        let deadline = Instant::now() + Duration::from_secs(300);
        while delivered() < mark {
            assert!(Instant::now() < deadline, "{mark} messages not sent:\n{}", logs(&nodes));
            std::thread::sleep(Duration::from_millis(20));
        }
        let victim = rng.below(3);
        eprintln!("kill -9 node {victim} at {} messages", delivered());
        nodes[victim].kill9();
        kills += 1;
        nodes[victim].start(&env);
    }
    wait_until("every reader's message", Duration::from_secs(600), || {
        sent_in_store(&nodes[1].site) == Some(READERS)
    });

    // The cluster as /healthz shows it: three live nodes, one leading (once
    // the lease of a leader killed last has expired and been taken).
    let health = || -> serde_json::Value {
        serde_json::from_slice(&admin_get(nodes[1].addr, "/healthz").body).unwrap()
    };
    let leaders = |h: &serde_json::Value| {
        h["cluster"]["nodes"]
            .as_array()
            .map_or(0, |n| n.iter().filter(|n| n["leads"] == true).count())
    };
    wait_until("a leader", Duration::from_secs(30), || leaders(&health()) == 1);
    let health = health();
    let listed = health["cluster"]["nodes"].as_array().unwrap();
    assert_eq!(listed.len(), 3, "the killed nodes' rows are gone: {health}");
    assert!(listed.iter().all(|n| n["holding"] == 0), "{health}");
    let status = stdout(&nodes[2].site.herald(&["status"]));
    let node_lines = status.lines().filter(|l| l.contains("(daemon")).count();
    assert_eq!(node_lines, 3, "herald status lists the nodes: {status}");
    assert!(status.contains("(daemon, leads)"), "{status}");

    // Every node's public/ is the same, byte for byte, once each published.
    wait_until("the same public/ on every node", Duration::from_secs(60), || {
        let trees: Vec<_> = nodes.iter().map(|n| tree(&n.site.file("public"))).collect();
        trees[0].keys().any(|k| k.starts_with("archive/")) && trees.iter().all(|t| t == &trees[0])
    });
    for node in &mut nodes {
        if let Some(daemon) = node.daemon.take() {
            daemon.stop();
        }
    }

    let seen = received(&[&a, &b]);
    let missing: Vec<String> = (0..READERS)
        .map(|i| format!("reader{i:06}@example.com"))
        .filter(|r| !seen.contains_key(r))
        .collect();
    assert!(
        missing.is_empty(),
        "{} reader(s) got nothing: {:?}",
        missing.len(),
        &missing[..5.min(missing.len())]
    );
    let duplicates: usize = seen.values().map(|ids| ids.len() - 1).sum();
    eprintln!("{kills} kill(s), {duplicates} duplicate(s)");
    assert!(
        duplicates <= kills * IN_FLIGHT_PER_NODE,
        "{duplicates} duplicates after {kills} kills: more than {IN_FLIGHT_PER_NODE} in flight per kill"
    );
    for (to, ids) in &seen {
        assert!(ids.iter().all(|id| id == &ids[0]), "{to} got different Message-IDs: {ids:?}");
    }
    assert!(a.count() <= CAP_A, "relay a sent {} past its cap of {CAP_A}", a.count());
    let editions = postgres::server().query(&url, "SELECT COUNT(*) FROM editions");
    assert_eq!(editions.trim(), "1", "one edition for the list and date");
}

#[test]
fn two_crons_running_at_once_send_one_edition_to_every_reader_once() {
    if !postgres_pass() {
        return;
    }
    const N: usize = 2_000;
    let url = postgres::server().fresh_database();
    let sink = FaultySmtp::start(0, Duration::from_secs(30));
    let relays = [("sink", &sink, "concurrency = 4")];
    let sites: Vec<Site> = (0..2).map(|_| node_site(&url, &relays)).collect();
    for site in &sites {
        // Each cron's machine has the list's file, as an operator would.
        site.write("subscribers/daily.csv", &csv(N));
    }
    let run = |site: &Site| -> Child {
        Command::new(env!("CARGO_BIN_EXE_herald"))
            .current_dir(site.path())
            .args(["run", "--now", "2026-11-24T07:00:00Z"])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HERALD_SECRET", SECRET)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start herald run")
    };
    let children: Vec<Child> = sites.iter().map(run).collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    }
    let seen = received(&[&sink]);
    let readers: Vec<&String> = seen.keys().filter(|r| r.starts_with("reader")).collect();
    assert_eq!(readers.len(), N, "every reader");
    let twice: Vec<_> = seen.iter().filter(|(_, ids)| ids.len() > 1).collect();
    assert!(twice.is_empty(), "{} reader(s) got it twice: {:?}", twice.len(), twice.first());
    let editions = postgres::server().query(&url, "SELECT COUNT(*) FROM editions");
    assert_eq!(editions.trim(), "1", "one edition for the list and date");
}
