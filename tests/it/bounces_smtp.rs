//! Bounces through a real MTA, end to end: `herald daemon` hands its digest
//! to a Postfix instance of the test's own (`support::postfix`), which
//! relays it to smtp-sink servers standing for the readers' mail systems.
//! One of them refuses its readers (550 5.1.1) or keeps deferring them
//! (450 4.2.1); Postfix itself then writes the RFC 3464 reports and
//! delivers them, to each message's VERP envelope sender at the bounce
//! domain, to herald's inbound SMTP listener (`[bounces] listen`). What the
//! operator then sees: the refused readers suppressed and the others not;
//! a delay changes nothing.

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::support::http::{admin_get, Server};
use crate::support::postfix::Postfix;
use crate::support::{free_port, stdout, Site, SmtpSink};

const BOUNCE_ADDRESS: &str = "bounces@bounce.test";

/// The daemon's clock, a file it follows (see tests/it/daemon.rs).
struct Clock {
    path: PathBuf,
}

impl Clock {
    fn set(&self, at: DateTime<Utc>) {
        let part = self.path.with_extension("part");
        std::fs::write(&part, at.to_rfc3339()).unwrap();
        std::fs::rename(&part, &self.path).unwrap();
    }
}

/// A site whose list `daily` goes to `readers` at 07:00 UTC.
fn site(readers: &[&str]) -> Site {
    let site = Site::init();
    let mut csv = String::from("email,name\n");
    for r in readers {
        csv.push_str(&format!("{r},\n"));
    }
    site.write("subscribers/daily.csv", &csv);
    let config = std::fs::read_to_string(site.file("herald.toml")).unwrap();
    let config = config.replace("timezone = \"Europe/Lisbon\"", "timezone = \"UTC\"");
    std::fs::write(site.file("herald.toml"), config).unwrap();
    site
}

/// Everything one flow needs: Postfix, the readers' servers, and herald's
/// daemon with its listener, sending through Postfix.
struct Flow {
    site: Site,
    postfix: Postfix,
    daemon: Server,
    listen: SocketAddr,
}

impl Flow {
    /// Starts Postfix routing `bounce.test` to herald's listener and each
    /// of `routes` to its server, then the daemon at 06:59 on a test clock,
    /// then moves the clock to 07:00: the digest goes out.
    fn start(
        readers: &[&str],
        routes: &[(&str, SocketAddr)],
        settings: &[(&str, &str)],
    ) -> Option<Self> {
        let site = site(readers);
        let listen = free_port();
        let mut all = vec![("bounce.test", listen)];
        all.extend_from_slice(routes);
        let postfix = Postfix::start(&all, settings)?;
        let clock = Clock { path: site.file("test-clock") };
        let day = (Utc::now() + chrono::Duration::days(1)).date_naive();
        let start: DateTime<Utc> = format!("{day}T06:59:00Z").parse().unwrap();
        clock.set(start);
        let url = postfix.url();
        let listen_text = listen.to_string();
        let clock_path = clock.path.display().to_string();
        let env = [
            ("HERALD_TEST_CLOCK", clock_path.as_str()),
            ("HERALD_MAIL_TRANSPORT", "smtp"),
            ("HERALD_MAIL_SMTP_URL", url.as_str()),
            ("HERALD_MAIL_BOUNCE_ADDRESS", BOUNCE_ADDRESS),
            ("HERALD_BOUNCES_LISTEN", listen_text.as_str()),
        ];
        let daemon = Server::start_daemon(&site, &env);
        let flow = Self { site, postfix, daemon, listen };
        flow.wait_until("the daemon's scheduler and listener to start", || {
            flow.daemon.log().contains("herald daemon started")
                && TcpStream::connect(flow.listen).is_ok()
        });
        clock.set(start + chrono::Duration::minutes(1));
        Some(flow)
    }

    /// `herald bounces`.
    fn bounces(&self) -> String {
        stdout(&self.site.herald(&["bounces"]))
    }

    /// The events `herald bounces` lists about `email`.
    fn events_about(&self, email: &str) -> Vec<String> {
        let out = self.bounces();
        let events = out.split("Latest").nth(1).unwrap_or_default();
        events.lines().filter(|l| l.contains(email)).map(str::to_owned).collect()
    }

    /// Waits for `done`, asking Postfix to retry what it deferred now and
    /// then; fails with both logs after two minutes.
    fn wait_until(&self, what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut flushed = Instant::now();
        while !done() {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}\n--- herald bounces:\n{}\n--- herald's log:\n{}\n--- Postfix's log:\n{}",
                self.bounces(),
                self.daemon.log(),
                self.postfix.log()
            );
            if flushed.elapsed() > Duration::from_secs(3) {
                self.postfix.flush();
                flushed = Instant::now();
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// What `herald subscribers add` says about `email`: whether it is
    /// suppressed (the add is refused) or already a member.
    fn add_again(&self, email: &str) -> String {
        let out = self.site.herald(&["subscribers", "add", email, "--list", "daily"]);
        format!("{}{}", stdout(&out), crate::support::stderr(&out))
    }
}

#[test]
fn readers_a_relay_refuses_are_suppressed_from_the_reports_postfix_sends_back() {
    let Some(ok) = SmtpSink::start() else { return };
    let Some(gone) = SmtpSink::start_with(&[
        "-f",
        "RCPT",
        "-B",
        "550 5.1.1 Recipient address rejected: User unknown in virtual mailbox table",
    ]) else {
        return;
    };
    let readers = ["ana@ok.test", "ben@ok.test", "cy@gone.test", "dee@gone.test"];
    let Some(flow) = Flow::start(&readers, &[("ok.test", ok.addr), ("gone.test", gone.addr)], &[])
    else {
        return;
    };

    flow.wait_until("both refused readers to be suppressed", || {
        ["cy@gone.test", "dee@gone.test"]
            .iter()
            .all(|r| flow.events_about(r).iter().any(|l| l.contains("suppressed")))
    });
    // herald handed all four to Postfix; Postfix delivered two and
    // reported the other two, through the listener.
    assert_eq!(ok.messages(2).len(), 2, "the good readers got the digest");
    for reader in ["cy@gone.test", "dee@gone.test"] {
        let events = flow.events_about(reader);
        assert_eq!(events.len(), 1, "one report for {reader}: {events:?}");
        let event = &events[0];
        for word in [" smtp ", " hard ", " suppressed ", " 5.1.1 ", "[daily]", "User unknown"] {
            assert!(event.contains(word), "{word:?} in {event}");
        }
        let add = flow.add_again(reader);
        assert!(add.contains("is suppressed"), "{reader} gets no more mail: {add}");
    }
    for reader in ["ana@ok.test", "ben@ok.test"] {
        assert!(flow.events_about(reader).is_empty(), "nothing about {reader}");
        let add = flow.add_again(reader);
        assert!(add.contains("already a member"), "{reader} still gets mail: {add}");
    }
    let postfix_log = flow.postfix.log();
    let to_herald = format!("relay=127.0.0.1[127.0.0.1]:{}", flow.listen.port());
    let delivered =
        postfix_log.lines().filter(|l| l.contains(&to_herald) && l.contains("status=sent")).count();
    assert_eq!(delivered, 2, "Postfix handed herald two reports:\n{postfix_log}");
    let metrics = admin_get(flow.daemon.addr, "/metrics").text();
    assert!(
        metrics
            .lines()
            .any(|l| l == "herald_bounce_listener_messages_total{outcome=\"accepted\"} 2"),
        "{metrics}"
    );
    assert!(flow.daemon.log().contains("bounce listener: message taken"));
    flow.daemon.stop();
}

#[test]
fn a_relay_that_keeps_deferring_sends_delay_notices_and_nobody_is_suppressed() {
    let Some(ok) = SmtpSink::start() else { return };
    let Some(slow) =
        SmtpSink::start_with(&["-r", "RCPT", "-b", "450 4.2.1 Mailbox busy, try again later"])
    else {
        return;
    };
    let readers = ["ana@ok.test", "sam@slow.test"];
    // A delay notice after one second; the message is retried for a day.
    let settings = [("delay_warning_time", "1s"), ("maximal_queue_lifetime", "1d")];
    let Some(flow) =
        Flow::start(&readers, &[("ok.test", ok.addr), ("slow.test", slow.addr)], &settings)
    else {
        return;
    };

    flow.wait_until("the delay notice about sam", || {
        !flow.events_about("sam@slow.test").is_empty()
    });
    let events = flow.events_about("sam@slow.test");
    assert_eq!(events.len(), 1, "{events:?}");
    for word in [" smtp ", " delayed ", " none ", " 4.2.1 "] {
        assert!(events[0].contains(word), "{word:?} in {}", events[0]);
    }
    assert!(!flow.bounces().contains("suppressed"), "{}", flow.bounces());
    for reader in readers {
        let add = flow.add_again(reader);
        assert!(add.contains("already a member"), "{reader} still gets mail: {add}");
    }
    assert!(flow.postfix.log().contains("sender delay notification"), "{}", flow.postfix.log());
    assert_eq!(ok.messages(1).len(), 1);
    flow.daemon.stop();
}
