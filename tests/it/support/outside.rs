//! Programs from outside that some tests need: Postfix's smtp-sink (a real
//! MTA's SMTP server), Postfix itself (a whole MTA, see `postfix`),
//! Chromium with chromedriver (a real browser), Python's dkimpy with
//! openssl (an independent DKIM verifier), Dovecot with openssl (a real
//! IMAP server with TLS), and openssl alone (a test CA and certificates
//! for the SNS webhook).
//!
//! A test asks with [`available`] before it starts. When the program is
//! missing the test writes one line saying what it skipped and how to
//! install what it needs, and passes; with `HERALD_TEST_REQUIRE_ALL=1` (CI
//! sets it) a missing program fails the test instead, so CI runs them all.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// A program a test needs, and how to get it.
pub struct Outside {
    pub what: &'static str,
    pub install: &'static str,
    pub found: fn() -> bool,
}

pub const SMTP_SINK: Outside = Outside {
    what: "Postfix's smtp-sink",
    install: "apt-get install postfix",
    found: || smtp_sink().is_some(),
};

pub const POSTFIX: Outside = Outside {
    what: "Postfix (a whole instance, started as root)",
    install: "apt-get install postfix, and run the tests as root",
    found: || postfix().is_some() && smtp_sink().is_some() && rustix::process::geteuid().is_root(),
};

pub const CHROMIUM: Outside = Outside {
    what: "Chromium and chromedriver",
    install: "apt-get install chromium chromium-driver",
    found: || program("chromium").is_some() && program("chromedriver").is_some(),
};

pub const DKIMPY: Outside = Outside {
    what: "Python's dkimpy (with PyNaCl, for Ed25519) and openssl",
    install: "pip install dkimpy pynacl; apt-get install openssl",
    found: || {
        let quiet = |cmd: &mut Command| {
            cmd.stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
        };
        quiet(Command::new("python3").args(["-c", "import dkim, nacl"]))
            && quiet(Command::new("openssl").arg("version"))
    },
};

/// Where Debian's dovecot-core puts the server.
pub const DOVECOT_BIN: &str = "/usr/sbin/dovecot";

pub const DOVECOT: Outside = Outside {
    what: "Dovecot's IMAP server and openssl",
    install: "apt-get install dovecot-imapd openssl",
    found: || {
        std::path::Path::new(DOVECOT_BIN).is_file()
            && Command::new("openssl")
                .arg("version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
    },
};

pub const OPENSSL: Outside = Outside {
    what: "the openssl command (to make a test CA and certificates)",
    install: "apt-get install openssl",
    found: || {
        Command::new("openssl")
            .arg("version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    },
};

/// Whether `program` is here. When it is not: with
/// `HERALD_TEST_REQUIRE_ALL=1` the calling test fails; otherwise it gets
/// one line on the terminal naming the test that is skipped, and `false`.
pub fn available(program: &Outside) -> bool {
    if (program.found)() {
        return true;
    }
    let current = std::thread::current();
    let test = current.name().unwrap_or("a test");
    if std::env::var("HERALD_TEST_REQUIRE_ALL").is_ok_and(|v| v == "1") {
        panic!(
            "{test} needs {}, not found here (to install: {}); HERALD_TEST_REQUIRE_ALL=1 makes that a failure",
            program.what, program.install
        );
    }
    // Straight to the terminal: the test harness holds back what tests
    // print through `eprintln!` unless they fail.
    let _ = writeln!(
        std::io::stderr(),
        "skipped {test}: it needs {}, not found here (to install: {})",
        program.what,
        program.install
    );
    false
}

/// Postfix's smtp-sink, where Debian puts it.
pub fn smtp_sink() -> Option<PathBuf> {
    ["/usr/sbin/smtp-sink", "/usr/lib/postfix/sbin/smtp-sink"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .or_else(|| program("smtp-sink"))
}

/// Postfix's `postfix` command, where Debian puts it.
pub fn postfix() -> Option<PathBuf> {
    ["/usr/sbin/postfix"].into_iter().map(PathBuf::from).find(|p| p.exists())
}

/// `name` on the PATH.
pub fn program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|p| p.is_file())
}
