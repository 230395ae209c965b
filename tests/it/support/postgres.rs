//! A PostgreSQL server of the tests' own: `initdb` in a temporary folder,
//! `postgres` on a free loopback port, one server for the whole test process
//! and a fresh database for each test that asks. A watcher stops the server
//! and removes its folder within a second of the test process ending.
//!
//! The server comes from Debian's postgresql package; without it, the tests
//! that need one follow the rule for programs from outside
//! (`outside::available`).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::outside::Outside;

pub const POSTGRES: Outside = Outside {
    what: "PostgreSQL's server (initdb and postgres)",
    install: "apt-get install postgresql",
    found: || bin_dir().is_some(),
};

/// Where `initdb` and `postgres` are: on the PATH, or where Debian puts them.
pub fn bin_dir() -> Option<PathBuf> {
    // Through symbolic links to the folder with the rest of the programs.
    if let Some(initdb) = super::outside::program("initdb") {
        let initdb = std::fs::canonicalize(&initdb).unwrap_or(initdb);
        return initdb.parent().map(PathBuf::from);
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("initdb").is_file() && bin.join("postgres").is_file())
        .collect();
    versions.sort();
    versions.pop()
}

/// The test process's server.
pub struct Server {
    port: u16,
    databases: AtomicUsize,
}

/// The server, started on first use. Call `outside::available(&POSTGRES)`
/// first; this panics when the server cannot start.
pub fn server() -> &'static Server {
    static SERVER: OnceLock<Result<Server, String>> = OnceLock::new();
    match SERVER.get_or_init(start) {
        Ok(server) => server,
        Err(e) => panic!("cannot start PostgreSQL: {e}"),
    }
}

impl Server {
    /// A new, empty database on the server, as a store URL.
    pub fn fresh_database(&self) -> String {
        let n = self.databases.fetch_add(1, Ordering::SeqCst);
        let name = format!("herald_{n}");
        self.psql(&format!("CREATE DATABASE {name}"));
        self.url(&name)
    }

    /// The URL of a database on the server.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://herald@127.0.0.1:{}/{database}", self.port)
    }

    /// Runs `sql` in the database of `url` (one of [`Server::fresh_database`]),
    /// failing the test when it fails; what psql printed, unaligned.
    pub fn query(&self, url: &str, sql: &str) -> String {
        let database = url.rsplit('/').next().unwrap_or("postgres");
        self.psql_in(database, sql)
    }

    /// Runs `sql` in the `postgres` database with psql, failing the test
    /// when it fails.
    pub fn psql(&self, sql: &str) -> String {
        self.psql_in("postgres", sql)
    }

    fn psql_in(&self, database: &str, sql: &str) -> String {
        let bin = bin_dir().expect("PostgreSQL is installed");
        let psql = [bin.join("psql"), PathBuf::from("psql")]
            .into_iter()
            .find(|p| p.is_file())
            .unwrap_or_else(|| PathBuf::from("psql"));
        let out = Command::new(psql)
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-U"])
            .args(["herald", "-p", &self.port.to_string(), "-d", database, "-c", sql])
            .output()
            .expect("run psql");
        assert!(out.status.success(), "psql `{sql}`: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

fn start() -> Result<Server, String> {
    let bin = bin_dir().ok_or("initdb and postgres not found")?;
    let dir = tempfile::Builder::new()
        .prefix("herald-test-pg-")
        .tempdir()
        .map_err(|e| e.to_string())?
        .keep();
    let data = dir.join("data");
    // PostgreSQL refuses to run as root: then it runs as Debian's `postgres`.
    let as_postgres = rustix::process::geteuid().is_root();
    let run_as = |program: PathBuf| -> Command {
        if as_postgres {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=postgres", "--regid=postgres", "--init-groups"]).arg(program);
            c
        } else {
            Command::new(program)
        }
    };
    if as_postgres {
        let chown = Command::new("chown").arg("postgres:").arg(&dir).status();
        if !chown.is_ok_and(|s| s.success()) {
            return Err(format!("cannot give {} to the postgres user", dir.display()));
        }
    }
    let initdb = run_as(bin.join("initdb"))
        .arg("-D")
        .arg(&data)
        .args(["-U", "herald", "--auth=trust", "--no-locale", "-E", "UTF8", "--no-sync"])
        .stdout(Stdio::null())
        .output()
        .map_err(|e| format!("initdb: {e}"))?;
    if !initdb.status.success() {
        return Err(format!("initdb: {}", String::from_utf8_lossy(&initdb.stderr)));
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    // Durability is not under test here (herald is killed, never the
    // database), so the server skips its fsyncs.
    let postgres = run_as(bin.join("postgres"));
    let mut command = format!("{:?}", postgres.get_program());
    for arg in postgres.get_args() {
        command.push(' ');
        command.push_str(&format!("{arg:?}"));
    }
    let script = format!(
        "{command} -D '{data}' -p {port} -k '{dir}' -c listen_addresses=127.0.0.1 \
         -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
         -c max_connections=500 -c shared_buffers=128MB >'{dir}/log' 2>&1 &
         pg=$!
         while kill -0 {me} 2>/dev/null && kill -0 $pg 2>/dev/null; do sleep 1; done
         kill -INT $pg 2>/dev/null; wait $pg; rm -rf '{dir}'",
        data = data.display(),
        dir = dir.display(),
        me = std::process::id(),
    );
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("start postgres: {e}"))?;
    let server = Server { port, databases: AtomicUsize::new(0) };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = Command::new(bin.join("pg_isready"))
            .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string()])
            .status()
            .is_ok_and(|s| s.success());
        if ready {
            return Ok(server);
        }
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
            return Err(format!("postgres did not answer on port {port} within 60 s:\n{log}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
