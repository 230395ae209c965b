//! Delivery over SMTP to a real MTA's server: Postfix's smtp-sink, started
//! per test on a free loopback port, dumping every accepted message into a
//! folder. Skipped, saying so, where Postfix is not installed (the other
//! SMTP tests talk to `support::faulty`, a server of our own).

use crate::support::{stderr, stdout, Site, SmtpSink};

const DAY1: &str = "2026-11-24T07:00:00Z";

fn smtp_env(url: &str) -> Vec<(&'static str, String)> {
    vec![("HERALD_MAIL_TRANSPORT", "smtp".to_string()), ("HERALD_MAIL_SMTP_URL", url.to_string())]
}

fn herald(site: &Site, args: &[&str], url: &str) -> std::process::Output {
    let env = smtp_env(url);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    site.herald_env(args, &env)
}

#[test]
fn delivers_every_reader_once_over_smtp() {
    let Some(sink) = SmtpSink::start() else { return };
    let site = Site::init();
    let out = herald(&site, &["run", "--now", DAY1], &sink.url());
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("4 sent, 0 deferred, 0 failed"), "{}", stdout(&out));
    assert!(site.outbox().is_empty(), "nothing goes to the outbox when the transport is smtp");

    let messages = sink.messages(4);
    assert_eq!(messages.len(), 4);
    let mut envelope = Vec::new();
    for mail in &messages {
        let m = mail.parsed();
        // smtp-sink records the envelope recipient as a header of its own.
        let rcpt = m.header_raw("X-Rcpt-Args").unwrap_or_default().trim().to_string();
        let to = m.to().and_then(|a| a.first()).and_then(|a| a.address()).unwrap().to_string();
        assert!(rcpt.contains(&to), "envelope {rcpt} matches To {to}");
        envelope.push(to);
        assert_eq!(m.subject(), Some("The Morning Digest, 2026-11-24: 4 new articles"));
        assert!(m.message_id().unwrap().starts_with("herald.daily.20261124."));
        assert!(m
            .header_raw("List-Unsubscribe")
            .unwrap()
            .contains("https://news.example.com/unsubscribe?token=daily."));
        assert_eq!(
            m.header_raw("List-Unsubscribe-Post").map(str::trim),
            Some("List-Unsubscribe=One-Click")
        );
        assert_eq!(m.text_body_count(), 1);
        assert_eq!(m.html_body_count(), 1);
        assert!(m.body_text(0).unwrap().contains("Market day: chestnuts, quinces"));
    }
    envelope.sort();
    assert_eq!(
        envelope,
        ["ada@example.com", "grace@example.org", "joao@example.net", "mei@example.com"]
    );

    // Rerunning deliver sends nothing twice. Once herald has exited, all it
    // sent has been accepted: the server holds one message per reader, each
    // with its own Message-ID, and the ledger one attempt per reader.
    let out = herald(&site, &["deliver", "--now", DAY1], &sink.url());
    assert!(out.status.success());
    assert!(stdout(&out).contains("0 sent"), "{}", stdout(&out));
    let ids: std::collections::HashSet<String> =
        sink.messages(4).iter().map(|m| m.parsed().message_id().unwrap().to_string()).collect();
    assert_eq!((sink.count(), ids.len()), (4, 4), "{ids:?}");
    let ledger = stdout(&site.herald(&["deliveries", "--state", "sent"]));
    assert_eq!(ledger.lines().filter(|l| l.contains(" 1 attempt(s)")).count(), 4, "{ledger}");
}

#[test]
fn temporary_failures_are_deferred_then_sent() {
    let site = Site::init();
    // DATA answered with a 4xx: every message stays pending with a retry time.
    let Some(refusing) = SmtpSink::start_with(&["-r", "DATA"]) else { return };
    let out = herald(&site, &["run", "--now", DAY1], &refusing.url());
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("0 sent, 4 deferred, 0 failed"), "{}", stdout(&out));
    assert!(stdout(&out).contains("next retry after 2026-11-24"), "{}", stdout(&out));
    let status = stdout(&site.herald(&["status"]));
    assert!(status.contains("0 sent, 4 pending, 0 failed"), "{status}");
    drop(refusing);

    let Some(sink) = SmtpSink::start() else { return };
    // Not due yet: nothing is sent before the backoff has passed.
    let out = herald(&site, &["deliver", "--now", DAY1], &sink.url());
    assert!(stdout(&out).contains("0 sent, 0 deferred"), "{}", stdout(&out));
    // An hour later the retries are due and go out.
    let out = herald(&site, &["deliver", "--now", "2026-11-24T08:00:00Z"], &sink.url());
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("4 sent, 0 deferred, 0 failed"), "{}", stdout(&out));
    assert_eq!(sink.messages(4).len(), 4);
    let status = stdout(&site.herald(&["status"]));
    assert!(status.contains("4 sent, 0 pending, 0 failed"), "{status}");
}

#[test]
fn an_unreachable_server_loses_nothing() {
    let site = Site::init();
    let nobody = format!("smtp://{}", crate::support::free_port());
    let out = herald(&site, &["run", "--now", DAY1], &nobody);
    assert!(stdout(&out).contains("0 sent, 4 deferred"), "{}{}", stdout(&out), stderr(&out));
    let Some(sink) = SmtpSink::start() else { return };
    let out = herald(&site, &["deliver", "--now", "2026-11-24T09:00:00Z"], &sink.url());
    assert!(stdout(&out).contains("4 sent"), "{}{}", stdout(&out), stderr(&out));
    assert_eq!(sink.messages(4).len(), 4);
}

#[test]
fn permanent_failures_fail_without_retry() {
    let site = Site::init();
    // RCPT answered with a 5xx: the server will never take these messages.
    let Some(sink) = SmtpSink::start_with(&["-f", "RCPT"]) else { return };
    let out = herald(&site, &["run", "--now", DAY1], &sink.url());
    assert_eq!(out.status.code(), Some(1), "failed messages make the exit code 1");
    assert!(stdout(&out).contains("0 sent, 0 deferred, 4 failed"), "{}", stdout(&out));
    let out = herald(&site, &["deliver", "--now", "2026-11-30T07:00:00Z"], &sink.url());
    assert!(stdout(&out).contains("0 sent, 0 deferred, 0 failed"), "{}", stdout(&out));
    let status = stdout(&site.herald(&["status"]));
    assert!(status.contains("0 sent, 0 pending, 4 failed"), "{status}");
}

#[test]
fn credentials_come_from_the_environment() {
    let site = Site::init();
    let Some(sink) = SmtpSink::start_with(&["-v"]) else { return };
    let url = format!("smtp://news%2Bbot@{}", sink.addr);
    // A user without a password is refused before anything is sent.
    let out = herald(&site, &["run", "--now", DAY1], &url);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("HERALD_MAIL_SMTP_PASSWORD is not set"), "{}", stderr(&out));

    let env = [
        ("HERALD_MAIL_TRANSPORT", "smtp"),
        ("HERALD_MAIL_SMTP_URL", url.as_str()),
        ("HERALD_MAIL_SMTP_PASSWORD", "s3cret pass"),
    ];
    let out = site.herald_env(&["deliver", "--now", DAY1], &env);
    assert!(stdout(&out).contains("4 sent"), "{}{}", stdout(&out), stderr(&out));
    // smtp-sink logs the AUTH command: the user is percent-decoded and the
    // password is the environment's.
    let log = sink.log();
    let plain = log
        .lines()
        .find_map(|l| l.split("AUTH PLAIN ").nth(1))
        .unwrap_or_else(|| panic!("no AUTH in the conversation:\n{log}"));
    assert_eq!(decode_base64(plain.trim()), b"\0news+bot\0s3cret pass");
}

fn decode_base64(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut count = 0;
    let mut out = Vec::new();
    for c in text.bytes().filter(|c| *c != b'=') {
        let v = ALPHABET.iter().position(|a| *a == c).expect("base64") as u32;
        bits = (bits << 6) | v;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    out
}
