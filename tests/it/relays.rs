//! Several relays: a failing one is set aside while the others carry on,
//! daily caps hold across runs, and the sending is shared in proportion to
//! the relays' rates.

use std::time::Duration;

use crate::support::faulty::FaultySmtp;
use crate::support::{stderr, stdout, Site};

const DAY1: &str = "2026-11-24T07:00:00Z";

fn readers(site: &Site, n: usize) {
    let mut csv = String::from("email,name\n");
    for i in 0..n {
        csv.push_str(&format!("r{i:03}@example.com,\n"));
    }
    site.write("subscribers/daily.csv", &csv);
}

fn relays(site: &Site, relays: &[(&str, &FaultySmtp, &str)]) {
    let mut text = std::fs::read_to_string(site.file("herald.toml")).unwrap();
    text = text.replace("transport = \"outbox\"", "transport = \"smtp\"");
    for (name, server, extra) in relays {
        text.push_str(&format!(
            "\n[[mail.relays]]\nname = \"{name}\"\nurl = \"{}\"\n{extra}\n",
            server.url()
        ));
    }
    std::fs::write(site.file("herald.toml"), text).unwrap();
}

#[test]
fn a_failing_relay_is_set_aside_and_the_others_carry_on() {
    let down = FaultySmtp::start(usize::MAX, Duration::ZERO);
    let up = FaultySmtp::start(0, Duration::ZERO);
    let site = Site::init();
    readers(&site, 40);
    relays(&site, &[("down", &down, "concurrency = 1"), ("up", &up, "concurrency = 2")]);
    let out = site.herald(&["run", "--now", DAY1]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("40 sent, 0 deferred, 0 failed"), "{}", stdout(&out));
    assert!(stdout(&out).contains("the relays down"), "{}", stdout(&out));
    assert_eq!(up.accepted.lock().unwrap().len(), 40, "the working relay carried everything");
    assert!(down.connections.load(std::sync::atomic::Ordering::SeqCst) >= 1);
    assert!(stderr(&out).contains("set aside"), "{}", stderr(&out));
}

/// A relay slow to refuse hands its message back after the others have
/// sent their share: it still goes out through them, and the run ends.
#[test]
fn a_message_handed_back_late_by_a_failing_relay_still_goes_out() {
    let down = FaultySmtp::refusing_after(Duration::from_millis(800));
    let up = FaultySmtp::start(0, Duration::ZERO);
    let site = Site::init();
    readers(&site, 6);
    relays(&site, &[("down", &down, "concurrency = 1"), ("up", &up, "concurrency = 2")]);
    let out = site.herald(&["run", "--now", DAY1]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("6 sent, 0 deferred, 0 failed"), "{}", stdout(&out));
    assert_eq!(up.accepted.lock().unwrap().len(), 6, "the working relay carried everything");
}

#[test]
fn daily_caps_hold_across_runs() {
    let a = FaultySmtp::start(0, Duration::ZERO);
    let b = FaultySmtp::start(0, Duration::ZERO);
    let site = Site::init();
    readers(&site, 8);
    relays(&site, &[("a", &a, "daily_cap = 3"), ("b", &b, "daily_cap = 2\nconcurrency = 1")]);
    let out = site.herald(&["run", "--now", DAY1]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("5 sent, 0 deferred"), "{}", stdout(&out));
    assert!(stdout(&out).contains("daily cap"), "{}", stdout(&out));
    assert_eq!(a.accepted.lock().unwrap().len(), 3);
    assert_eq!(b.accepted.lock().unwrap().len(), 2);
    // The rest waits untouched: no attempt counted against those readers.
    let pending = stdout(&site.herald(&["deliveries", "--state", "pending"]));
    assert_eq!(pending.lines().count(), 3, "{pending}");
    assert!(pending.lines().all(|l| l.contains("0 attempt(s)")), "{pending}");

    // Later the same day: the caps still hold.
    let out = site.herald(&["deliver", "--now", "2026-11-24T18:00:00Z"]);
    assert!(stdout(&out).contains("0 sent"), "{}", stdout(&out));
    // The next day the rest goes out.
    let out = site.herald(&["deliver", "--now", "2026-11-25T07:00:00Z"]);
    assert!(stdout(&out).contains("3 sent, 0 deferred"), "{}{}", stdout(&out), stderr(&out));
    assert_eq!(a.accepted.lock().unwrap().len() + b.accepted.lock().unwrap().len(), 8);
}

#[test]
fn relays_share_the_sending_in_proportion_to_their_rates() {
    let fast = FaultySmtp::start(0, Duration::ZERO);
    let slow = FaultySmtp::start(0, Duration::ZERO);
    let site = Site::init();
    readers(&site, 100);
    relays(
        &site,
        &[("fast", &fast, "rate_per_second = 60"), ("slow", &slow, "rate_per_second = 15")],
    );
    let out = site.herald(&["run", "--now", DAY1]);
    assert!(stdout(&out).contains("100 sent"), "{}{}", stdout(&out), stderr(&out));
    let (f, s) = (fast.accepted.lock().unwrap().len(), slow.accepted.lock().unwrap().len());
    assert_eq!(f + s, 100);
    // 60:15 is 80:20; allow for the first, unpaced message of each worker.
    assert!((65..=90).contains(&f), "fast relay sent {f}, slow {s}");
}
