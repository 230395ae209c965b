//! A whole Postfix instance for a test: its own main.cf and master.cf,
//! queue and data directories in a temporary folder, an SMTP server on a
//! free loopback port, and a transport table that sends each test domain
//! to a server on loopback. Everything else goes to Postfix's `error:`
//! transport, so nothing can leave the machine. The queue runs every
//! second and retries after one, so what Postfix would do over hours
//! happens within seconds.
//!
//! Postfix's master runs as root and its daemons as `postfix`, as in a real
//! installation; the tests run as root in CI. [`Postfix`] stops the
//! instance when dropped, also when the test fails.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::outside;

fn daemon_directory() -> Option<PathBuf> {
    ["/usr/lib/postfix/sbin", "/usr/libexec/postfix"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.join("master").exists())
}

/// A running Postfix instance.
pub struct Postfix {
    dir: tempfile::TempDir,
    /// Its SMTP server, for herald's `mail.smtp_url`.
    pub addr: SocketAddr,
}

impl Postfix {
    /// Starts Postfix with `routes` (a domain and the loopback server its
    /// mail goes to) and extra main.cf settings; `None` when Postfix is not
    /// installed or this is not root, and the test is skipped (see
    /// [`outside`]).
    pub fn start(routes: &[(&str, SocketAddr)], settings: &[(&str, &str)]) -> Option<Self> {
        if !outside::available(&outside::POSTFIX) {
            return None;
        }
        let postfix = outside::postfix()?;
        let daemons = daemon_directory()?;
        let dir = tempfile::tempdir().expect("temp dir");
        // Postfix's daemons run as `postfix` and must reach the queue.
        set_mode(dir.path(), 0o755);
        for sub in ["conf", "queue"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
            set_mode(&dir.path().join(sub), 0o755);
        }
        let addr = super::free_port();
        let root = dir.path().display().to_string();
        let transport: Vec<String> = routes
            .iter()
            .map(|(domain, to)| format!("{domain}=smtp:[{}]:{}", to.ip(), to.port()))
            .collect();
        let mut main = format!(
            "compatibility_level = 3.6
config_directory = {root}/conf
queue_directory = {root}/queue
data_directory = {root}/data
daemon_directory = {daemons}
mail_owner = postfix
setgid_group = postdrop
maillog_file = {root}/maillog
maillog_file_prefixes = {root}
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = mta.test
mydomain = mta.test
myorigin = mta.test
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
transport_maps = inline:{{ {} }}
default_transport = error:5.1.2 this test sends nowhere else
relay_transport = error:5.1.2 this test sends nowhere else
smtp_dns_support_level = disabled
smtp_tls_security_level = none
smtpd_tls_security_level = none
biff = no
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
",
            transport.join(", "),
            daemons = daemons.display(),
        );
        for (key, value) in settings {
            main.push_str(&format!("{key} = {value}\n"));
        }
        std::fs::write(dir.path().join("conf/main.cf"), main).unwrap();
        // No chroot: the daemons use the machine's files as they are.
        let master = format!(
            "{addr} inet n - n - - smtpd
pickup unix n - n 60 1 pickup
cleanup unix n - n - 0 cleanup
qmgr unix n - n 300 1 qmgr
rewrite unix - - n - - trivial-rewrite
bounce unix - - n - 0 bounce
defer unix - - n - 0 bounce
trace unix - - n - 0 bounce
verify unix - - n - 1 verify
flush unix n - n 1000? 0 flush
proxymap unix - - n - - proxymap
smtp unix - - n - - smtp
showq unix n - n - - showq
error unix - - n - - error
retry unix - - n - - error
discard unix - - n - - discard
anvil unix - - n - 1 anvil
scache unix - - n - 1 scache
postlog unix-dgram n - n - 1 postlogd
"
        );
        std::fs::write(dir.path().join("conf/master.cf"), master).unwrap();
        let instance = Self { dir, addr };
        let out = instance.postfix(&postfix, "start");
        assert!(
            out.status.success(),
            "postfix start failed ({}): {}{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            instance.log()
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "Postfix did not listen on {addr}:\n{}",
                instance.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(instance)
    }

    fn conf(&self) -> PathBuf {
        self.dir.path().join("conf")
    }

    fn postfix(&self, postfix: &Path, action: &str) -> Output {
        Command::new(postfix)
            .arg("-c")
            .arg(self.conf())
            .arg(action)
            .stdin(Stdio::null())
            .output()
            .expect("run postfix")
    }

    /// The SMTP URL herald sends to.
    pub fn url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    /// Postfix's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("maillog")).unwrap_or_default()
    }

    /// Tries every deferred message again now (`postqueue -f`).
    pub fn flush(&self) {
        let _ = Command::new("postqueue")
            .arg("-c")
            .arg(self.conf())
            .arg("-f")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    /// The master's process id, from its pid file.
    fn master_pid(&self) -> Option<i32> {
        let text = std::fs::read_to_string(self.dir.path().join("queue/pid/master.pid")).ok()?;
        text.trim().parse().ok()
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let pid = self.master_pid();
        if let Some(postfix) = outside::postfix() {
            // `stop` asks the master to end its daemons and waits for it.
            let _ = self.postfix(&postfix, "stop");
        }
        // A master that did not stop is killed; its daemons end when they
        // find it gone.
        if let Some(pid) = pid {
            let deadline = Instant::now() + Duration::from_secs(5);
            while alive(pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            if alive(pid) {
                if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                }
            }
        }
    }
}

/// Whether process `pid` runs (exists and has not exited: a zombie no one
/// has reaped yet counts as gone).
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which is in parentheses.
        Ok(stat) => {
            stat.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
        }
        Err(_) => false,
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}
