//! ESMTP PIPELINING (RFC 2920) against the fault-injecting server: with a
//! server that offers it, MAIL, RCPT and DATA go in one write; without, one
//! command at a time; either way every refusal is recorded against its own
//! reader with the command that was refused, and the connection carries on.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use herald::deliver::{SendOutcome, Sender, Transport};

use crate::delivery_faults::{herald, ledger, row};
use crate::support::faulty::{FaultySmtp, Options};
use crate::support::{stderr, stdout, Site};

const DAY1: &str = "2026-11-24T07:00:00Z";
const LATER: &str = "2026-11-24T09:00:00Z";

fn readers(emails: &[&str]) -> String {
    std::iter::once("email,name\n".to_string())
        .chain(emails.iter().map(|e| format!("{e},\n")))
        .collect()
}

/// Each fault, the state it leaves its reader in after the first run, and
/// what the ledger says about it.
const FAULTS: &[(&str, &str, &str)] = &[
    (
        "rcpt550@example.com",
        "failed",
        "RCPT TO:<rcpt550@example.com> refused: 550 5.1.1 user unknown",
    ),
    (
        "rcpt451-once@example.com",
        "pending",
        "RCPT TO:<rcpt451-once@example.com> refused: 451 4.3.0 temporary failure",
    ),
    ("datacmd554@example.com", "failed", "DATA refused: 554 5.7.1 transaction refused"),
    ("datacmd451-once@example.com", "pending", "DATA refused: 451 4.3.0 cannot take data now"),
    (
        "data550@example.com",
        "failed",
        "the message was refused at the end of DATA: 550 5.7.1 message refused",
    ),
    (
        "data451-once@example.com",
        "pending",
        "the message was refused at the end of DATA: 451 4.3.0 local error",
    ),
];

/// Every refusal lands on its own reader, named by its command; the others
/// are sent; the 4xx ones go through on the next run; the 5.1.1 on RCPT is
/// a hard bounce of that reader; and one connection carries it all.
fn refusals_land_on_their_own_reader(pipelining: bool) {
    let server = FaultySmtp::with(Options { pipelining, ..Options::default() });
    let site = Site::init();
    let mut emails = vec!["ok1@example.com"];
    emails.extend(FAULTS.iter().map(|(email, _, _)| *email));
    emails.push("ok2@example.com");
    site.write("subscribers/daily.csv", &readers(&emails));
    let out = herald(&site, &["run", "--now", DAY1], &server.url());
    let summary = stdout(&out);
    assert!(summary.contains("2 sent, 3 deferred, 3 failed"), "{summary}{}", stderr(&out));

    let rows = ledger(&site);
    for email in ["ok1@example.com", "ok2@example.com"] {
        let (_, state, line) = row(&rows, email);
        assert_eq!(state, "sent", "{line}");
    }
    for (email, state, error) in FAULTS {
        let (_, got, line) = row(&rows, email);
        assert_eq!(got, state, "{line}");
        assert!(line.contains(error), "{email}: expected «{error}» in\n{line}");
        let local = email.split('@').next().unwrap();
        assert_eq!(server.accepted_for(local), 0, "{email}");
    }
    // Every refusal left the session in a known state (RSET, or the data
    // phase over): nothing needed a new connection.
    assert_eq!(server.connections.load(Ordering::SeqCst), 1);

    // The user-unknown reply to RCPT is that reader's hard bounce; the 5.7.1
    // refusals are soft ones of their own readers.
    let events = stdout(&site.herald(&["bounces"]));
    let event = |email: &str| {
        let lines: Vec<&str> = events.lines().filter(|l| l.contains(email)).collect();
        assert_eq!(lines.len(), 1, "one event about {email}:\n{events}");
        lines[0].to_string()
    };
    let rcpt = event("rcpt550@example.com");
    assert!(rcpt.contains("hard") && rcpt.contains("suppressed"), "{rcpt}");
    assert!(rcpt.contains("RCPT TO:<rcpt550@example.com> refused: 550 5.1.1"), "{rcpt}");
    let data = event("datacmd554@example.com");
    assert!(data.contains("soft") && data.contains("DATA refused: 554 5.7.1"), "{data}");
    let end = event("data550@example.com");
    assert!(end.contains("soft") && end.contains("end of DATA: 550 5.7.1"), "{end}");
    assert!(!events.contains("-once@"), "4xx replies are no bounces:\n{events}");

    // Later, the 4xx ones are sent, once each; the 5xx ones are not tried.
    let out = herald(&site, &["deliver", "--now", LATER], &server.url());
    let summary = stdout(&out);
    assert!(summary.contains("3 sent, 0 deferred, 0 failed"), "{summary}{}", stderr(&out));
    let rows = ledger(&site);
    for local in ["rcpt451-once", "datacmd451-once", "data451-once"] {
        let (_, state, line) = row(&rows, &format!("{local}@example.com"));
        assert_eq!(state, "sent", "{line}");
        assert!(line.contains("2 attempt(s)"), "{line}");
        assert_eq!(server.accepted_for(local), 1, "{local}");
    }
    for local in ["ok1", "ok2"] {
        assert_eq!(server.accepted_for(local), 1, "{local}");
    }
}

#[test]
fn pipelined_refusals_land_on_their_own_reader() {
    refusals_land_on_their_own_reader(true);
}

#[test]
fn refusals_one_command_at_a_time_land_on_their_own_reader() {
    refusals_land_on_their_own_reader(false);
}

/// A refused sender (MAIL FROM) is about the sender, not the readers: the
/// messages fail, naming MAIL, and no reader is taken for a bounce.
#[test]
fn a_refused_sender_is_no_bounce_of_the_readers() {
    let server = FaultySmtp::with(Options::default());
    let site = Site::init();
    let config = std::fs::read_to_string(site.file("herald.toml")).unwrap();
    site.write(
        "herald.toml",
        &config.replace("digest@news.example.com", "mail553@news.example.com"),
    );
    site.write("subscribers/daily.csv", &readers(&["ok1@example.com", "ok2@example.com"]));
    let out = herald(&site, &["run", "--now", DAY1], &server.url());
    assert!(
        stdout(&out).contains("0 sent, 0 deferred, 2 failed"),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    for email in ["ok1@example.com", "ok2@example.com"] {
        let rows = ledger(&site);
        let (_, state, line) = row(&rows, email);
        assert_eq!(state, "failed", "{line}");
        assert!(line.contains("MAIL FROM:<mail553@news.example.com> refused: 553 5.1.8"), "{line}");
    }
    let events = stdout(&site.herald(&["bounces"]));
    assert!(!events.contains("ok1@example.com") && !events.contains("ok2@example.com"), "{events}");
    let readers = stdout(&site.herald(&["subscribers", "list"]));
    assert!(!readers.contains("suppressed"), "{readers}");
}

#[test]
fn mail_rcpt_and_data_go_in_one_write_when_the_server_pipelines() {
    let server = FaultySmtp::start(0, Duration::ZERO);
    let site = Site::init();
    site.write("subscribers/daily.csv", &readers(&["a@example.com", "b@example.com"]));
    let out = herald(&site, &["run", "--now", DAY1], &server.url());
    assert!(stdout(&out).contains("2 sent, 0 deferred"), "{}{}", stdout(&out), stderr(&out));

    let heard = server.heard();
    let mails: Vec<_> = heard.iter().filter(|h| h.command.starts_with("MAIL FROM:")).collect();
    assert_eq!(mails.len(), 2, "{heard:#?}");
    for mail in mails {
        // When the server read MAIL, RCPT and DATA had come with it, and
        // nothing more: the message waits for DATA's 354.
        let rest: Vec<&str> = mail.early.split_terminator("\r\n").collect();
        assert_eq!(rest.len(), 2, "{mail:?}");
        assert!(rest[0].starts_with("RCPT TO:<") && rest[1] == "DATA", "{mail:?}");
    }
    for data in heard.iter().filter(|h| h.command == "DATA") {
        assert_eq!(data.early, "", "the message was sent before 354: {data:?}");
    }
}

#[test]
fn a_server_without_pipelining_gets_one_command_at_a_time() {
    let server = FaultySmtp::with(Options { pipelining: false, ..Options::default() });
    let site = Site::init();
    site.write(
        "subscribers/daily.csv",
        &readers(&["a@example.com", "rcpt550@example.com", "b@example.com"]),
    );
    let out = herald(&site, &["run", "--now", DAY1], &server.url());
    assert!(
        stdout(&out).contains("2 sent, 0 deferred, 1 failed"),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let heard = server.heard();
    assert!(heard.iter().filter(|h| h.command.starts_with("MAIL FROM:")).count() == 3);
    for h in &heard {
        assert_eq!(h.early, "", "sent before the reply to the previous command: {heard:#?}");
    }
}

#[test]
fn data_accepted_with_no_recipient_is_ended_empty() {
    // RFC 2920 section 3.1: a server may answer a pipelined DATA with 354
    // although it refused every RCPT; the client ends the data phase with a
    // lone "." and reports the RCPT refusal.
    let server = FaultySmtp::with(Options { data_without_recipients: true, ..Options::default() });
    let site = Site::init();
    site.write("subscribers/daily.csv", &readers(&["rcpt550@example.com", "ok1@example.com"]));
    let out = herald(&site, &["run", "--now", DAY1], &server.url());
    assert!(
        stdout(&out).contains("1 sent, 0 deferred, 1 failed"),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let rows = ledger(&site);
    let (_, state, line) = row(&rows, "rcpt550@example.com");
    assert_eq!(state, "failed", "{line}");
    assert!(line.contains("RCPT TO:<rcpt550@example.com> refused: 550 5.1.1"), "{line}");
    assert!(!line.contains("no valid recipients"), "{line}");
    assert_eq!(row(&rows, "ok1@example.com").1, "sent");
    assert_eq!(server.count(), 1, "the empty data is no message");
    assert_eq!(server.connections.load(Ordering::SeqCst), 1);
}

#[test]
fn a_421_in_the_group_costs_the_connection_and_nothing_else() {
    // 421: the server is closing the session; the client reads no more
    // replies, defers that reader and goes on on a new connection.
    let server = FaultySmtp::start(0, Duration::ZERO);
    let site = Site::init();
    site.write("subscribers/daily.csv", &readers(&["rcpt421-once@example.com", "ok1@example.com"]));
    let out = herald(&site, &["run", "--now", DAY1], &server.url());
    assert!(
        stdout(&out).contains("1 sent, 1 deferred, 0 failed"),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let rows = ledger(&site);
    let (_, state, line) = row(&rows, "rcpt421-once@example.com");
    assert_eq!(state, "pending", "{line}");
    assert!(line.contains("RCPT TO:<rcpt421-once@example.com> refused: 421 4.3.2"), "{line}");
    assert_eq!(row(&rows, "ok1@example.com").1, "sent");
    assert_eq!(server.connections.load(Ordering::SeqCst), 2);
    let out = herald(&site, &["deliver", "--now", LATER], &server.url());
    assert!(
        stdout(&out).contains("1 sent, 0 deferred, 0 failed"),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert_eq!(server.accepted_for("rcpt421-once"), 1);
}

/// A sender on the library's SMTP transport to `server`.
fn sender(server: &FaultySmtp, dir: &std::path::Path) -> Sender {
    let toml = format!(
        "[site]\ntitle = \"T\"\nbase_url = \"https://news.example.com/\"\n\n[mail]\nfrom = \"News <news@example.com>\"\ntransport = \"smtp\"\nsmtp_url = \"{}\"\ntimeout_secs = 2\n",
        server.url()
    );
    let config = herald::config::parse(&dir.join("herald.toml"), &toml, &[]).unwrap();
    let transport = Transport::from_config(&config.mail).unwrap();
    Sender::new(Arc::new(transport), 0)
}

fn message(to: &[&str]) -> herald::compose::Outgoing {
    let mut builder = lettre::Message::builder().from("news@example.com".parse().unwrap());
    for to in to {
        builder = builder.to(to.parse().unwrap());
    }
    let message = builder.subject("Hello").body("Hello.\r\n".to_string()).unwrap();
    herald::compose::Outgoing { envelope: message.envelope().clone(), bytes: message.formatted() }
}

#[tokio::test]
async fn a_message_to_several_recipients_goes_to_all_or_none() {
    let dir = tempfile::tempdir().unwrap();
    for (pipelining, data_without_recipients) in [(true, false), (true, true), (false, false)] {
        let server =
            FaultySmtp::with(Options { pipelining, data_without_recipients, ..Options::default() });
        let mut sender = sender(&server, dir.path());
        let case =
            format!("pipelining {pipelining}, 354 with no recipient {data_without_recipients}");

        // One recipient refused: nobody gets the message, and the refusal
        // named is that recipient's.
        let outcome = sender.send(&message(&["a@example.com", "rcpt550@example.com"]), "m1").await;
        let SendOutcome::Failed { error, .. } = outcome else { panic!("{case}: {outcome:?}") };
        assert_eq!(
            error, "RCPT TO:<rcpt550@example.com> refused: 550 5.1.1 user unknown",
            "{case}"
        );
        // Every recipient refused: the first refusal is reported.
        let outcome =
            sender.send(&message(&["rcpt451@example.com", "rcpt550@example.com"]), "m2").await;
        let SendOutcome::Retry { error, unreachable: false } = outcome else {
            panic!("{case}: {outcome:?}")
        };
        assert!(
            error.starts_with("RCPT TO:<rcpt451@example.com> refused: 451 4.3.0"),
            "{case}: {error}"
        );
        assert_eq!(server.count(), 0, "{case}");

        // All accepted: all get it.
        let outcome = sender.send(&message(&["a@example.com", "b@example.com"]), "m3").await;
        assert!(matches!(outcome, SendOutcome::Sent { .. }), "{case}: {outcome:?}");
        assert_eq!(server.count(), 2, "{case}");
        sender.close().await;
        // Only a 354 after a partial refusal costs the connection: then the
        // accepted recipients would get whatever ended the data phase.
        let connections = if pipelining { 2 } else { 1 };
        assert_eq!(server.connections.load(Ordering::SeqCst), connections, "{case}");
    }
}
