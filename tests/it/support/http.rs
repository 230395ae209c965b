//! `herald serve` as a child process on a free loopback port, and a plain
//! HTTP/1.1 client written byte for byte (no client library to normalise
//! paths, add headers or keep cookies on our behalf).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{Site, SECRET};

pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    /// Its standard output and error, for failure messages.
    log: std::path::PathBuf,
}

impl Server {
    pub fn start(site: &Site) -> Self {
        Self::start_env(site, &[])
    }

    /// Starts `herald serve` with extra environment variables.
    pub fn start_env(site: &Site, env: &[(&str, &str)]) -> Self {
        Self::start_env_at(site, super::free_port(), env)
    }

    /// Starts `herald serve` with links in mail pointing at it
    /// (`HERALD_SITE_BASE_URL`), and extra environment variables.
    pub fn start_linked(site: &Site, env: &[(&str, &str)]) -> Self {
        let addr = super::free_port();
        let base = format!("http://{addr}/");
        let mut all = vec![("HERALD_SITE_BASE_URL", base.as_str())];
        all.extend_from_slice(env);
        Self::start_env_at(site, addr, &all)
    }

    /// Starts `herald serve` on `addr` (known in advance, for base_url).
    pub fn start_env_at(site: &Site, addr: SocketAddr, env: &[(&str, &str)]) -> Self {
        Self::start_command(site, "serve", addr, env)
    }

    /// Starts `herald daemon` with links in mail pointing at it, and
    /// `/healthz` and `/metrics` open to [`ADMIN_TOKEN`] (see [`admin_get`];
    /// `("HERALD_ADMIN_TOKEN", "")` in `env` turns that off).
    pub fn start_daemon(site: &Site, env: &[(&str, &str)]) -> Self {
        let addr = super::free_port();
        let base = format!("http://{addr}/");
        let mut all =
            vec![("HERALD_SITE_BASE_URL", base.as_str()), ("HERALD_ADMIN_TOKEN", ADMIN_TOKEN)];
        all.extend_from_slice(env);
        Self::start_command(site, "daemon", addr, &all)
    }

    /// Starts `herald serve` allowed at most `open_files` open files
    /// (`ulimit -n`), as a service with a low LimitNOFILE would be.
    pub fn start_with_open_files(site: &Site, open_files: u32, env: &[(&str, &str)]) -> Self {
        Self::spawn(site, "serve", super::free_port(), env, Some(open_files))
    }

    /// Starts `herald COMMAND --listen ADDR` and waits until it listens.
    pub fn start_command(
        site: &Site,
        command_name: &str,
        addr: SocketAddr,
        env: &[(&str, &str)],
    ) -> Self {
        Self::spawn(site, command_name, addr, env, None)
    }

    fn spawn(
        site: &Site,
        command_name: &str,
        addr: SocketAddr,
        env: &[(&str, &str)],
        open_files: Option<u32>,
    ) -> Self {
        let log = site.file(&format!("{command_name}-{}.log", addr.port()));
        let out = std::fs::File::create(&log).expect("a log file");
        let err = out.try_clone().expect("a log file");
        let herald = env!("CARGO_BIN_EXE_herald");
        let mut command = match open_files {
            // The shell lowers its own limit and becomes herald (same pid).
            Some(n) => {
                let mut sh = Command::new("/bin/sh");
                sh.args(["-c", "ulimit -n \"$0\" && exec \"$@\"", &n.to_string(), herald]);
                sh
            }
            None => Command::new(herald),
        };
        command
            .current_dir(site.path())
            .args([command_name, "--listen", &addr.to_string()])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HERALD_SECRET", SECRET)
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err));
        for (k, v) in env {
            command.env(k, v);
        }
        let child = command.spawn().expect("start herald");
        let server = Self { child, addr, log };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "herald {command_name} did not listen on {addr}:\n{}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    /// The server's base URL, `http://ADDR/`.
    pub fn base(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// What the server has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, and wait for a clean exit.
    pub fn stop(mut self) {
        super::sigterm(&self.child);
        let status = self.child.wait().unwrap();
        assert!(status.success(), "herald exited with {status}:\n{}", self.log());
    }

    /// Sends SIGTERM without waiting for the exit.
    pub fn sigterm(&self) {
        super::sigterm(&self.child);
    }

    /// Waits for the server to exit by itself (after `sigterm`), at most
    /// `within`; whether it exited cleanly.
    pub fn exited_cleanly(mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.success();
            }
            assert!(Instant::now() < deadline, "herald did not exit:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How long a test waits for any one answer.
pub const REPLY_WITHIN: Duration = Duration::from_secs(30);

pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One request without a body.
pub fn request(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    send(addr, method, path, headers, b"")
}

/// One HTTP/1.1 request; a body is sent with its Content-Length.
pub fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let mut stream = TcpStream::connect(addr).unwrap();
    // A server that never answers fails the test instead of hanging it.
    stream.set_read_timeout(Some(REPLY_WITHIN)).unwrap();
    stream.set_write_timeout(Some(REPLY_WITHIN)).unwrap();
    let mut text = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        text.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        text.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    text.push_str("\r\n");
    stream.write_all(text.as_bytes()).unwrap();
    // A server may answer (413) and close before reading all of a large
    // body: what it said still counts.
    let _ = stream.write_all(body);
    let mut raw = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(_) if !raw.is_empty() => break,
            Err(e) => panic!("reading the answer to {method} {path}: {e}"),
        }
    }
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a header block");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines.next().unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Reply { status, headers, body: raw[split + 4..].to_vec() }
}

pub fn get(addr: SocketAddr, path: &str) -> Reply {
    request(addr, "GET", path, &[])
}

/// The admin token `Server::start_daemon` gives the daemon.
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdef";

/// A GET of `/healthz` or `/metrics` with the admin token.
pub fn admin_get(addr: SocketAddr, path: &str) -> Reply {
    request(addr, "GET", path, &[("Authorization", &format!("Bearer {ADMIN_TOKEN}"))])
}
