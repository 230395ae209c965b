//! The bounce mailbox over IMAP, against a real Dovecot the test starts
//! (`support::dovecot`): readers herald mailed bounce and complain, a
//! reader's vacation notice and a person's mail land in the mailbox, and
//! `herald bounces --poll` acts on the reports, moves them to the
//! processed folder and leaves the person's mail as it was.

use std::time::{Duration, Instant};

use crate::support::dovecot::{Dovecot, PASSWORD, USER};
use crate::support::http::Server;
use crate::support::{stderr, stdout, Site};

const DAY1: &str = "2026-11-24T07:00:00Z";
const LATER: &str = "2026-11-24T09:00:00Z";

/// Ada's address does not exist (5.1.1): a hard bounce.
const HARD: &str = "Return-Path: <>
From: Mail Delivery System <MAILER-DAEMON@mx.example.com>
To: bounces@news.example.com
Subject: Undelivered Mail Returned to Sender
Date: Tue, 24 Nov 2026 07:05:00 +0000
Message-ID: <hard-1@mx.example.com>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary=\"=hard=\"

--=hard=
Content-Type: text/plain; charset=us-ascii

Your message to ada@example.com could not be delivered: no such mailbox.

--=hard=
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.com

Final-Recipient: rfc822; ada@example.com
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 <ada@example.com>: Recipient address rejected: User unknown

--=hard=
Content-Type: text/rfc822-headers

From: The Harbour Gazette <digest@news.example.com>
To: ada@example.com
Subject: The Morning Digest

--=hard=--
";

/// João's mailbox is full (5.2.2): a soft bounce, counted.
const SOFT: &str = "Return-Path: <>
From: Mail Delivery System <MAILER-DAEMON@mx.example.net>
To: bounces@news.example.com
Subject: Delivery Status Notification (Failure)
Date: Tue, 24 Nov 2026 07:06:00 +0000
Message-ID: <soft-1@mx.example.net>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary=\"=soft=\"

--=soft=
Content-Type: text/plain; charset=us-ascii

The recipient's mailbox is full.

--=soft=
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net

Final-Recipient: rfc822; joao@example.net
Action: failed
Status: 5.2.2
Diagnostic-Code: smtp; 552 5.2.2 Mailbox full

--=soft=--
";

/// Grace marked the digest as spam: an RFC 5965 feedback report.
const COMPLAINT: &str = "From: Feedback Loop <fbl@isp.example.org>
To: bounces@news.example.com
Subject: Abuse report
Date: Tue, 24 Nov 2026 08:00:00 +0000
Message-ID: <arf-1@isp.example.org>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary=\"=arf=\"

--=arf=
Content-Type: text/plain; charset=us-ascii

A user of ours reported this message as spam.

--=arf=
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: ExampleFBL/1.0
Version: 1
Original-Rcpt-To: <grace@example.org>

--=arf=
Content-Type: message/rfc822

From: The Harbour Gazette <digest@news.example.com>
To: grace@example.org
Subject: The Morning Digest

Today's articles.
--=arf=--
";

/// Mei is on holiday.
const VACATION: &str = "From: Mei <mei@example.com>
To: bounces@news.example.com
Subject: Out of office: The Morning Digest
Date: Tue, 24 Nov 2026 07:10:00 +0000
Message-ID: <away-1@example.com>
Auto-Submitted: auto-replied

I am away until 1 December, with no access to my mail.
";

/// A person writing to the bounce address: not herald's business.
const PERSON: &str = "From: Rui Costa <rui@example.net>
To: bounces@news.example.com
Subject: Lunch on Friday?
Date: Tue, 24 Nov 2026 08:30:00 +0000
Message-ID: <lunch-1@example.net>

Are you free for lunch on Friday, by the quay?
Rui
";

fn crlf(text: &str) -> Vec<u8> {
    text.replace('\n', "\r\n").into_bytes()
}

/// The site of `herald init` with a second list (Grace is on both), the
/// bounce address set, and today's digests in the outbox: every reader has
/// been mailed.
fn mailed_site() -> Site {
    let site = Site::init();
    let path = site.file("herald.toml");
    let mut config = std::fs::read_to_string(&path).unwrap();
    config = config.replace("[mail]\n", "[mail]\nbounce_address = \"bounces@news.example.com\"\n");
    config.push_str(
        "\n[[lists]]\nslug = \"weekly\"\nname = \"The Weekly\"\nschedule = \"0 0 7 * * *\"\ntimezone = \"Europe/Lisbon\"\n",
    );
    std::fs::write(&path, config).unwrap();
    site.write("subscribers/weekly.csv", "email,name\ngrace@example.org,Grace Hopper\n");
    let out = site.herald(&["run", "--now", DAY1]);
    assert!(out.status.success(), "herald run failed:\n{}\n{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("5 sent"), "{}", stdout(&out));
    site
}

/// Points the site at the server's mailbox `Bounces`.
fn configure(site: &Site, url: &str, ca_file: Option<&std::path::Path>) {
    let path = site.file("herald.toml");
    let mut config = std::fs::read_to_string(&path).unwrap();
    if let Some(at) = config.find("\n[bounces.imap]") {
        config.truncate(at);
    }
    config.push_str(&format!("\n[bounces.imap]\nurl = \"{url}\"\n"));
    if let Some(ca) = ca_file {
        config.push_str(&format!("ca_file = \"{}\"\n", ca.display()));
    }
    std::fs::write(&path, config).unwrap();
}

fn poll(site: &Site, password: &str) -> std::process::Output {
    site.herald_env(
        &["bounces", "--poll", "--now", LATER],
        &[("HERALD_BOUNCES_IMAP_PASSWORD", password)],
    )
}

/// `herald bounces`' line about `email`.
fn event<'a>(events: &'a str, email: &str) -> &'a str {
    let lines: Vec<&str> = events.lines().filter(|l| l.contains(email)).collect();
    assert_eq!(lines.len(), 1, "one event about {email}:\n{events}");
    lines[0]
}

#[test]
fn a_poll_acts_on_the_reports_moves_them_and_leaves_other_mail_alone() {
    let Some(server) = Dovecot::start() else { return };
    let site = mailed_site();
    let reports =
        [("hard", HARD), ("soft", SOFT), ("complaint", COMPLAINT), ("vacation", VACATION)];
    for (n, (name, text)) in reports.iter().enumerate() {
        server.deliver("Bounces", &format!("17642000{n:02}.M{n}P1.{name}"), &crlf(text));
    }
    server.deliver("Bounces", "1764200099.M9P1.person", &crlf(PERSON));
    configure(
        &site,
        &format!("imaps://{USER}@127.0.0.1:{}/Bounces", server.imaps_port),
        Some(&server.ca_file()),
    );

    let out = poll(&site, PASSWORD);
    assert!(
        out.status.success(),
        "herald bounces --poll failed:\n{}\n{}\n{}",
        stdout(&out),
        stderr(&out),
        server.log()
    );
    assert!(
        stdout(&out).contains("5 messages read: 2 bounces, 1 complaint, 1 auto-reply, 1 left alone; 4 moved to herald-processed; 1 reader suppressed, 1 unsubscribed from every list"),
        "{}",
        stdout(&out)
    );

    // What happened to each reader, as `herald bounces` shows it.
    let events = stdout(&site.herald(&["bounces"]));
    let ada = event(&events, "ada@example.com");
    assert!(
        ada.contains("imap")
            && ada.contains("hard")
            && ada.contains("suppressed")
            && ada.contains("5.1.1"),
        "{ada}"
    );
    let joao = event(&events, "joao@example.net");
    assert!(joao.contains("soft") && joao.contains("counted"), "{joao}");
    let grace = event(&events, "grace@example.org");
    assert!(grace.contains("complaint") && grace.contains("unsubscribed"), "{grace}");
    // Suppressed addresses cannot be added back; João still can get mail.
    for email in ["ada@example.com", "grace@example.org"] {
        let out = site.herald(&["subscribers", "add", email, "--list", "daily"]);
        assert!(
            !out.status.success() && stderr(&out).contains("suppressed"),
            "{email}: {}{}",
            stdout(&out),
            stderr(&out)
        );
    }
    let out = site.herald(&["subscribers", "add", "joao@example.net", "--list", "daily"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // Grace left both lists; the others are still members.
    let members = stdout(&site.herald(&["subscribers", "list"]));
    let grace: Vec<&str> = members.lines().filter(|l| l.contains("grace@example.org")).collect();
    assert_eq!(grace.len(), 2, "{members}");
    assert!(grace.iter().all(|l| l.contains("unsubscribed")), "{members}");
    assert!(
        members.lines().any(|l| l.contains("ada@example.com") && l.contains("confirmed")),
        "{members}"
    );

    // The person's mail is where it was, unread and unchanged; the reports
    // are in the processed folder, unchanged; nothing was deleted.
    let left = server.messages("Bounces");
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0].bytes, crlf(PERSON));
    assert!(!left[0].flags().contains('S'), "the person's mail was marked seen: {}", left[0].name);
    let moved = server.messages("herald-processed");
    let mut expected: Vec<Vec<u8>> = reports.iter().map(|(_, text)| crlf(text)).collect();
    expected.sort();
    assert_eq!(moved.iter().map(|m| m.bytes.clone()).collect::<Vec<_>>(), expected);
    assert!(
        moved.iter().all(|m| !m.flags().contains('T')),
        "a moved message is flagged deleted: {moved:?}"
    );

    // A second poll reads the person's mail again and changes nothing.
    let out = poll(&site, PASSWORD);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains(
            "1 message read: 0 bounces, 0 complaints, 0 auto-replies, 1 left alone; 0 moved"
        ),
        "{}",
        stdout(&out)
    );
    assert_eq!(stdout(&site.herald(&["bounces"])), events);
    assert_eq!(server.messages("Bounces"), left);
    assert_eq!(server.messages("herald-processed"), moved);
}

#[test]
fn starttls_with_a_certificate_it_cannot_trust_or_a_wrong_password_changes_nothing() {
    let Some(server) = Dovecot::start() else { return };
    let site = mailed_site();
    server.deliver("Bounces", "1764200000.M0P1.hard", &crlf(HARD));
    let url = format!("imap://{USER}@127.0.0.1:{}/Bounces", server.imap_port);

    // Without the CA, the server's certificate is not trusted: no password
    // is sent.
    configure(&site, &url, None);
    let out = poll(&site, PASSWORD);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("TLS") && stderr(&out).contains("certificate"),
        "{}",
        stderr(&out)
    );
    // A wrong password: LOGIN is refused, and herald says so.
    configure(&site, &url, Some(&server.ca_file()));
    let out = poll(&site, "not the password");
    assert!(!out.status.success());
    assert!(stderr(&out).contains(&format!("logging in as {USER}")), "{}", stderr(&out));
    // No password at all: herald says where it goes.
    let out = site.herald(&["bounces", "--poll"]);
    assert!(
        !out.status.success() && stderr(&out).contains("HERALD_BOUNCES_IMAP_PASSWORD"),
        "{}",
        stderr(&out)
    );
    assert_eq!(server.messages("Bounces").len(), 1);
    assert!(!stdout(&site.herald(&["bounces"])).contains("ada@example.com"));

    // With both, over STARTTLS: the report is read and moved, and Dovecot
    // saw the login inside TLS.
    let out = poll(&site, PASSWORD);
    assert!(out.status.success(), "{}{}\n{}", stdout(&out), stderr(&out), server.log());
    assert!(stdout(&out).contains("1 message read: 1 bounce"), "{}", stdout(&out));
    assert!(server.messages("Bounces").is_empty());
    assert_eq!(server.messages("herald-processed").len(), 1);
    let logins: Vec<String> = server
        .log()
        .lines()
        .filter(|l| l.contains("Login: user=<herald>"))
        .map(str::to_owned)
        .collect();
    assert!(!logins.is_empty() && logins.iter().all(|l| l.contains("TLS")), "{logins:?}");
}

/// Dovecot's capabilities after login, less MOVE (and UIDPLUS).
const WITHOUT_MOVE: &str = "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ UIDPLUS";
const WITHOUT_MOVE_OR_UIDPLUS: &str = "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+";

/// A mailbox with a report, and a message its user already flagged
/// deleted but did not expunge: herald's poll through `server`.
fn poll_beside_a_deleted_message(server: &Dovecot) -> Site {
    let site = mailed_site();
    server.deliver("Bounces", "1764200000.M0P1.hard", &crlf(HARD));
    server.deliver_flagged("Bounces", "1764100000.M0P1.person", "ST", &crlf(PERSON));
    configure(
        &site,
        &format!("imaps://{USER}@127.0.0.1:{}/Bounces", server.imaps_port),
        Some(&server.ca_file()),
    );
    let out = poll(&site, PASSWORD);
    assert!(out.status.success(), "{}{}\n{}", stdout(&out), stderr(&out), server.log());
    assert!(stdout(&out).contains("1 message read: 1 bounce"), "{}", stdout(&out));
    assert!(stdout(&out).contains("1 moved to herald-processed"), "{}", stdout(&out));
    site
}

#[test]
fn without_move_the_report_is_copied_and_expunged_alone() {
    let Some(server) = Dovecot::start_with(WITHOUT_MOVE) else { return };
    let site = poll_beside_a_deleted_message(&server);
    assert_eq!(
        server.messages("herald-processed").iter().map(|m| m.bytes.clone()).collect::<Vec<_>>(),
        [crlf(HARD)]
    );
    // Only the report was expunged: the message its user flagged deleted
    // is still there, for its user to expunge or not.
    let left = server.messages("Bounces");
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0].bytes, crlf(PERSON));
    assert!(stdout(&site.herald(&["bounces"])).contains("ada@example.com"));
}

#[test]
fn without_move_or_uidplus_the_report_is_copied_and_only_flagged() {
    let Some(server) = Dovecot::start_with(WITHOUT_MOVE_OR_UIDPLUS) else { return };
    let site = poll_beside_a_deleted_message(&server);
    assert_eq!(server.messages("herald-processed").len(), 1);
    // herald expunges nothing: the report stays flagged deleted beside the
    // user's own deleted message.
    let left = server.messages("Bounces");
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(left.iter().all(|m| m.flags().contains('T')), "{left:?}");
    // The next poll does not read or copy it again.
    let out = poll(&site, PASSWORD);
    assert!(stdout(&out).contains("0 messages read"), "{}{}", stdout(&out), stderr(&out));
    assert_eq!(server.messages("herald-processed").len(), 1);
}

#[test]
fn the_daemon_polls_the_mailbox_by_itself() {
    let Some(server) = Dovecot::start() else { return };
    let site = mailed_site();
    server.deliver("Bounces", "1764200000.M0P1.hard", &crlf(HARD));
    server.deliver("Bounces", "1764200099.M9P1.person", &crlf(PERSON));
    configure(
        &site,
        &format!("imaps://{USER}@127.0.0.1:{}/Bounces", server.imaps_port),
        Some(&server.ca_file()),
    );
    let daemon = Server::start_daemon(&site, &[("HERALD_BOUNCES_IMAP_PASSWORD", PASSWORD)]);
    // It polls at start, then every every_secs.
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.messages("herald-processed").is_empty() {
        assert!(
            Instant::now() < deadline,
            "the daemon moved no report:\n{}\n{}",
            daemon.log(),
            server.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    daemon.stop();
    assert_eq!(
        server.messages("Bounces").iter().map(|m| m.bytes.clone()).collect::<Vec<_>>(),
        [crlf(PERSON)]
    );
    let events = stdout(&site.herald(&["bounces"]));
    let ada = event(&events, "ada@example.com");
    assert!(ada.contains("imap") && ada.contains("suppressed"), "{ada}");
}

#[test]
fn herald_check_warns_about_a_password_sent_in_clear() {
    let site = Site::init();
    configure(&site, "imap://bounces@mail.example.com/Bounces", None);
    let out = site.herald(&["check"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(!stdout(&out).contains("in clear"), "{}", stdout(&out));
    let path = site.file("herald.toml");
    let config = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, format!("{config}tls = \"none\"\n")).unwrap();
    let out = site.herald(&["check"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("warning: ")
            && stdout(&out).contains("cross the network to mail.example.com in clear"),
        "{}",
        stdout(&out)
    );
}
