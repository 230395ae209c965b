//! A Dovecot IMAP server of a test's own: its own dovecot.conf in a
//! temporary folder (base and state folders, a passwd-file with one user,
//! maildir mail in that folder), listening on 127.0.0.1 with IMAP
//! (STARTTLS) and IMAPS on free ports, with a certificate signed by a CA
//! the test makes with the openssl command. Run in the foreground (`-F`)
//! in its own process group, and stopped when dropped, also when the test
//! fails.
//!
//! Dovecot refuses to serve mail as root and runs its login processes as an
//! unprivileged user: run as root (as CI is), the mail belongs to `nobody`,
//! and the files a test writes into the maildir are given to that user.

use std::net::TcpStream;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::outside;

pub const USER: &str = "herald";
pub const PASSWORD: &str = "a password \"with\" quotes\\ and spaces";

pub struct Dovecot {
    child: Child,
    pub dir: tempfile::TempDir,
    /// The IMAP port (STARTTLS offered).
    pub imap_port: u16,
    /// The IMAPS port (TLS from the first byte).
    pub imaps_port: u16,
    /// Who owns the mail.
    uid: u32,
    gid: u32,
}

impl Dovecot {
    /// Starts a server; `None` when Dovecot or openssl is missing and the
    /// test is skipped (see [`outside::available`]).
    pub fn start() -> Option<Self> {
        Self::start_with("")
    }

    /// Starts a server whose CAPABILITY after login is `capability` (e.g.
    /// without MOVE), or Dovecot's own when empty.
    pub fn start_with(capability: &str) -> Option<Self> {
        if !outside::available(&outside::DOVECOT) {
            return None;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        // Dovecot's processes for the mail user must reach the maildir.
        set_mode(dir.path(), 0o755);
        let root = dir.path().to_path_buf();
        make_certificates(&root);
        let (uid, gid, mail_user) = mail_owner();
        let internal_user =
            if rustix::process::getuid().is_root() { "root".to_owned() } else { mail_user.clone() };
        for sub in ["run", "state", "mail"] {
            std::fs::create_dir_all(root.join(sub)).unwrap();
        }
        std::fs::write(root.join("passwd"), format!("{USER}:{{PLAIN}}{PASSWORD}::::::\n")).unwrap();
        std::fs::create_dir_all(root.join("mail").join(USER)).unwrap();
        chown_all(&root.join("mail"), uid, gid);
        let imap_port = super::free_port().port();
        let imaps_port = super::free_port().port();
        let r = root.display();
        let capability = if capability.is_empty() {
            String::new()
        } else {
            format!("protocol imap {{\n  imap_capability = {capability}\n}}")
        };
        let conf = format!(
            r#"base_dir = {r}/run
state_dir = {r}/state
log_path = {r}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = yes
ssl_cert = <{r}/server.crt
ssl_key = <{r}/server.key
auth_mechanisms = plain login
default_internal_user = {internal_user}
default_internal_group = {internal_user}
default_login_user = {mail_user}
first_valid_uid = 1
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {r}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={r}/mail/%u
}}
mail_location = maildir:{r}/mail/%u
{capability}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps_port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
"#
        );
        std::fs::write(root.join("dovecot.conf"), conf).unwrap();
        let out = std::fs::File::create(root.join("dovecot.out")).unwrap();
        let err = out.try_clone().unwrap();
        let child = Command::new(outside::DOVECOT_BIN)
            .arg("-F")
            .arg("-c")
            .arg(root.join("dovecot.conf"))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .expect("start dovecot");
        let server = Self { child, dir, imap_port, imaps_port, uid, gid };
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(("127.0.0.1", imaps_port)).is_err()
            || TcpStream::connect(("127.0.0.1", imap_port)).is_err()
        {
            assert!(
                Instant::now() < deadline,
                "dovecot did not start listening:\n{}\n{}",
                std::fs::read_to_string(root.join("dovecot.out")).unwrap_or_default(),
                server.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(server)
    }

    /// The CA certificate the server's certificate is signed by.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    /// Dovecot's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dovecot.log")).unwrap_or_default()
    }

    /// The maildir folder of `mailbox` (Maildir++: INBOX is the root, any
    /// other `.NAME`).
    pub fn folder(&self, mailbox: &str) -> PathBuf {
        let home = self.dir.path().join("mail").join(USER);
        if mailbox == "INBOX" {
            home
        } else {
            home.join(format!(".{mailbox}"))
        }
    }

    /// Puts a message into `mailbox` as a mail server delivering it would:
    /// a new file in its `new/` folder.
    pub fn deliver(&self, mailbox: &str, name: &str, message: &[u8]) {
        let folder = self.folder(mailbox);
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(folder.join(sub)).unwrap();
        }
        let file = folder.join("new").join(name);
        std::fs::write(&file, message).unwrap();
        chown_all(&self.dir.path().join("mail"), self.uid, self.gid);
    }

    /// Puts a message into `mailbox` that its user has seen and flagged
    /// (`flags` as Maildir writes them: `S` seen, `T` deleted).
    pub fn deliver_flagged(&self, mailbox: &str, name: &str, flags: &str, message: &[u8]) {
        self.deliver(mailbox, name, message);
        let folder = self.folder(mailbox);
        std::fs::rename(
            folder.join("new").join(name),
            folder.join("cur").join(format!("{name}:2,{flags}")),
        )
        .unwrap();
    }

    /// The messages of `mailbox` (their file names in `cur/` or `new/`,
    /// and their bytes), sorted by bytes.
    pub fn messages(&self, mailbox: &str) -> Vec<Stored> {
        let folder = self.folder(mailbox);
        let mut out = Vec::new();
        for sub in ["cur", "new"] {
            let Ok(entries) = std::fs::read_dir(folder.join(sub)) else { continue };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                out.push(Stored { bytes: std::fs::read(entry.path()).unwrap(), name, sub });
            }
        }
        out.sort_by(|a, b| a.bytes.cmp(&b.bytes));
        out
    }
}

/// One message file of a maildir folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub name: String,
    pub sub: &'static str,
    pub bytes: Vec<u8>,
}

impl Stored {
    /// The message's IMAP flags, from its file name (`...:2,FS`): a file
    /// still in `new/` has none.
    pub fn flags(&self) -> String {
        self.name.split_once(":2,").map(|(_, f)| f.to_owned()).unwrap_or_default()
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        let group = rustix::process::Pid::from_child(&self.child);
        let _ = rustix::process::kill_process_group(group, rustix::process::Signal::TERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                // Its children (login, auth) stop with it; any left get the
                // group's KILL below.
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        let _ = self.child.wait();
    }
}

/// A CA and a certificate for 127.0.0.1 signed by it, with openssl.
fn make_certificates(dir: &Path) {
    let run = |args: &[&str]| {
        let out =
            Command::new("openssl").args(args).current_dir(dir).output().expect("run openssl");
        assert!(
            out.status.success(),
            "openssl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=herald test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    run(&ca);
    let mut req = vec!["req"];
    req.extend(ec);
    req.extend(["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1"]);
    run(&req);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "server.ext",
    ]);
}

/// Who owns the mail: `nobody` when the tests run as root, else the user
/// running them. (uid, gid, user name.)
fn mail_owner() -> (u32, u32, String) {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let entry = |wanted: &dyn Fn(&str, u32) -> bool| {
        passwd.lines().find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            let uid: u32 = fields.get(2)?.parse().ok()?;
            let gid: u32 = fields.get(3)?.parse().ok()?;
            wanted(fields[0], uid).then(|| (uid, gid, fields[0].to_owned()))
        })
    };
    let me = rustix::process::getuid().as_raw();
    if me == 0 {
        entry(&|name, _| name == "nobody").expect("a user `nobody` in /etc/passwd")
    } else {
        entry(&|_, uid| uid == me).expect("the test's user in /etc/passwd")
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Gives `path` and everything in it to `uid`:`gid` (when run as root).
fn chown_all(path: &Path, uid: u32, gid: u32) {
    if !rustix::process::getuid().is_root() {
        return;
    }
    let _ = std::os::unix::fs::chown(path, Some(uid), Some(gid));
    if let Ok(entries) = std::fs::read_dir(path) {
        for entry in entries.flatten() {
            chown_all(&entry.path(), uid, gid);
        }
    }
}
