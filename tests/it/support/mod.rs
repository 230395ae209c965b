//! Shared helpers for the integration tests: a temporary site made by
//! `herald init`, a way to run the real binary in it, and, where a test
//! checks herald against a real MTA, Postfix's smtp-sink on a free loopback
//! port that dumps every message it accepts into a folder.
//!
//! The sites' stores are SQLite files by default; with
//! `HERALD_TEST_STORE=postgres` each site gets a fresh database on the tests'
//! own PostgreSQL server (`postgres`) instead.

pub mod dns;
pub mod dovecot;
pub mod faulty;
pub mod http;
pub mod outside;
pub mod postfix;
pub mod postgres;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const SECRET: &str = "test-secret-0123456789abcdef0123456789";

/// Whether the tests run on PostgreSQL: `HERALD_TEST_STORE=postgres`, and
/// the server is installed (see `outside::available`).
pub fn on_postgres() -> bool {
    std::env::var("HERALD_TEST_STORE").is_ok_and(|v| v == "postgres")
        && outside::available(&postgres::POSTGRES)
}

/// The URL of a new, empty store for a test: a fresh database on the tests'
/// PostgreSQL server under `HERALD_TEST_STORE=postgres`, else the SQLite
/// file `herald.db` in `dir`.
pub fn fresh_store_url(dir: &Path) -> String {
    if on_postgres() {
        postgres::server().fresh_database()
    } else {
        sqlite_url(dir)
    }
}

fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("herald.db").display())
}

/// A site folder written by `herald init`.
pub struct Site {
    pub dir: tempfile::TempDir,
    store_url: String,
}

impl Site {
    /// A site on the store the tests run on: its herald.toml names a fresh
    /// PostgreSQL database under `HERALD_TEST_STORE=postgres`.
    pub fn init() -> Self {
        let site = Self::init_sqlite();
        if !on_postgres() {
            return site;
        }
        let url = postgres::server().fresh_database();
        let path = site.file("herald.toml");
        let config = std::fs::read_to_string(&path).expect("herald.toml");
        let default = "[store]\nurl = \"sqlite://herald.db\"\n";
        assert!(config.contains(default), "herald init wrote no `{default}`:\n{config}");
        std::fs::write(&path, config.replace(default, &format!("[store]\nurl = \"{url}\"\n")))
            .expect("write herald.toml");
        Self { store_url: url, ..site }
    }

    /// A site whose store is the SQLite file `herald.db` whatever
    /// `HERALD_TEST_STORE` says, for the tests of SQLite's own file.
    pub fn init_sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let site = Self { store_url: sqlite_url(dir.path()), dir };
        let out = site.herald(&["init", "."]);
        assert!(out.status.success(), "herald init failed: {}", stderr(&out));
        site
    }

    /// The URL of the site's store, as herald opens it.
    pub fn store_url(&self) -> &str {
        &self.store_url
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn file(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn write(&self, rel: &str, text: &str) {
        let path = self.file(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    /// Runs herald in the site with a clean environment.
    pub fn herald(&self, args: &[&str]) -> Output {
        self.herald_env(args, &[])
    }

    pub fn herald_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        herald_in(self.path(), args, env)
    }

    /// The outbox's .eml files, sorted by name.
    pub fn outbox(&self) -> Vec<PathBuf> {
        files_in(&self.file("outbox"), "eml")
    }
}

/// How long one herald command may take in a test before it counts as hung.
const HERALD_LIMIT: Duration = Duration::from_secs(120);

/// Runs the herald binary in `dir` with only PATH and the given variables:
/// the tests' own (`HERALD_TEST_STORE`, `HERALD_TEST_REQUIRE_ALL`) never
/// reach herald, which would take them for config overrides and refuse them.
/// A run that does not finish within two minutes is killed and fails the
/// test with what it printed, rather than hang the suite.
pub fn herald_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_herald"));
    cmd.current_dir(dir)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    cmd.env("HERALD_SECRET", SECRET);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = cmd.spawn().expect("run herald");
    let pid = rustix::process::Pid::from_child(&child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output().expect("run herald")));
    match rx.recv_timeout(HERALD_LIMIT) {
        Ok(out) => out,
        Err(_) => {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            let out = rx.recv().expect("herald's output");
            panic!(
                "`herald {}` did not finish within {HERALD_LIMIT:?} and was killed:\n{}{}",
                args.join(" "),
                stdout(&out),
                stderr(&out)
            );
        }
    }
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn files_in(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == ext))
            .collect(),
        Err(_) => Vec::new(),
    };
    files.sort();
    files
}

/// A small xorshift generator: random kill points, reproducible from the seed
/// printed by the test.
pub struct Rng(pub u64);

impl Rng {
    pub fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// Sends SIGTERM to `child` (what an init system does to stop a service).
pub fn sigterm(child: &Child) {
    signal(child, rustix::process::Signal::TERM);
}

/// Sends `signal` to `child`.
pub fn signal(child: &Child, signal: rustix::process::Signal) {
    let pid = rustix::process::Pid::from_child(child);
    rustix::process::kill_process(pid, signal).expect("signal the child");
}

/// Sends `signal` to the process group `child` leads.
pub fn signal_group(child: &Child, signal: rustix::process::Signal) {
    let pid = rustix::process::Pid::from_child(child);
    let _ = rustix::process::kill_process_group(pid, signal);
}

/// A parsed message, owning its bytes.
pub struct Mail {
    pub raw: Vec<u8>,
}

impl Mail {
    pub fn read(path: &Path) -> Self {
        Self { raw: std::fs::read(path).unwrap() }
    }

    pub fn parsed(&self) -> mail_parser::Message<'_> {
        mail_parser::MessageParser::default().parse(&self.raw).expect("a MIME message")
    }
}

/// Postfix's smtp-sink on a free loopback port, dumping each message into
/// its own file. Stopped when dropped.
pub struct SmtpSink {
    child: Child,
    pub addr: SocketAddr,
    pub dump: tempfile::TempDir,
    /// smtp-sink's own output (the SMTP conversation when started with `-v`).
    pub log: PathBuf,
}

impl SmtpSink {
    /// Starts a sink that accepts everything; `None` when smtp-sink is not
    /// installed and the test is skipped (see [`outside`]).
    pub fn start() -> Option<Self> {
        Self::start_with(&[])
    }

    /// Starts a sink with extra smtp-sink options (e.g. `-r DATA` to answer
    /// DATA with a 4xx, `-f RCPT` to reject RCPT with a 5xx).
    pub fn start_with(options: &[&str]) -> Option<Self> {
        if !outside::available(&outside::SMTP_SINK) {
            return None;
        }
        let bin = outside::smtp_sink()?;
        let dump = tempfile::tempdir().expect("temp dir");
        // smtp-sink drops root privileges to `nobody`, who must be able to write here.
        set_mode_777(dump.path());
        let addr = free_port();
        let template = format!("{}/msg.", dump.path().display());
        let mut cmd = Command::new(bin);
        cmd.arg("-u").arg("nobody").arg("-d").arg(&template);
        cmd.args(options);
        cmd.arg(addr.to_string()).arg("64");
        let log = std::env::temp_dir().join(format!("herald-smtp-sink-{}.log", addr.port()));
        let out = std::fs::File::create(&log).expect("sink log");
        let err = out.try_clone().expect("sink log");
        let child = cmd.stdout(out).stderr(err).spawn().expect("start smtp-sink");
        let sink = Self { child, addr, dump, log };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "smtp-sink did not start listening on {addr}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(sink)
    }

    pub fn url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    /// The messages dumped so far, waiting until at least `n` are complete.
    pub fn messages(&self, n: usize) -> Vec<Mail> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let files: Vec<PathBuf> = match std::fs::read_dir(self.dump.path()) {
                Ok(entries) => entries.filter_map(|e| e.ok().map(|e| e.path())).collect(),
                Err(_) => Vec::new(),
            };
            // smtp-sink writes the dump as the message arrives; a complete
            // message ends with the blank line the dump format appends.
            let complete: Vec<Mail> = files
                .iter()
                .map(|p| Mail::read(p))
                .filter(|m| m.raw.ends_with(b"\n\n") || m.raw.ends_with(b"\r\n\r\n"))
                .collect();
            if complete.len() >= n || Instant::now() > deadline {
                return complete;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// How many dump files exist (complete or not).
    pub fn count(&self) -> usize {
        std::fs::read_dir(self.dump.path()).map(|d| d.count()).unwrap_or(0)
    }
}

impl SmtpSink {
    /// What smtp-sink printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

fn set_mode_777(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o777)).unwrap();
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    listener.local_addr().unwrap()
}

/// Runs `f` on the site's store, through the library (for what no command
/// shows, such as the key a reader's links are made with).
pub fn with_store<T>(site: &Site, f: impl AsyncFnOnce(&herald::Store) -> T) -> T {
    let url = site.store_url();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let store = herald::Store::open(url).await.expect("open the store");
        let out = f(&store).await;
        store.close().await;
        out
    })
}

/// The key subscriber `id`'s links are made with.
pub fn token_key(site: &Site, id: i64) -> String {
    with_store(site, async |store| store.token_key(id).await.unwrap().expect("a subscriber").key)
}

/// The key the confirmation link of sign-up `id` is made with.
pub fn signup_key(site: &Site, id: i64) -> String {
    with_store(site, async |store| store.signup(id).await.unwrap().expect("a sign-up").key)
}
