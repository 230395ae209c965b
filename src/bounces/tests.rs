//! The way in as a whole: reports read, their reader found, and the actions
//! taken in the store.

use chrono::{DateTime, Utc};

use super::*;
use crate::store::{test_store, MembershipStatus, NewEdition, Origin};

fn at(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

fn secret() -> Secret {
    Secret::new(b"a secret of at least thirty-two bytes".to_vec())
}

fn bounce_address() -> EmailAddress {
    EmailAddress::parse("bounces@bounce.test").unwrap()
}

/// A store where `daily` and `weekly` have the readers `emails`, and
/// `daily`'s edition 1 was sent to all of them; the intake with hard_after
/// 1, soft_after 3 in 14 days.
async fn mailed(emails: &[&str]) -> (Intake, tempfile::TempDir, Vec<i64>) {
    let (store, dir) = test_store().await;
    let now = at("2026-11-30T07:00:00Z");
    let rows: Vec<(EmailAddress, Option<String>)> =
        emails.iter().map(|e| (EmailAddress::parse(e).unwrap(), None)).collect();
    for list in ["daily", "weekly"] {
        store
            .add_members(list, &rows, Origin::Csv, MembershipStatus::Confirmed, now)
            .await
            .unwrap();
    }
    let new = NewEdition {
        list: "daily".into(),
        edition_date: now.date_naive(),
        subject: "s".into(),
        html: "h".into(),
        text: "t".into(),
        article_ids: vec![],
        considered: vec![],
        composed_at: now,
    };
    let (edition, _) = store.create_edition(&new, "news.example.com").await.unwrap().unwrap();
    assert_eq!(edition.id, 1);
    store.mark_all_sent_for_tests(edition.id).await;
    let mut ids = Vec::new();
    for e in emails {
        ids.push(store.subscriber_id(&EmailAddress::parse(e).unwrap()).await.unwrap().unwrap());
    }
    let policy =
        BouncePolicy { hard_after: 1, soft_after: 3, soft_window: chrono::TimeDelta::days(14) };
    (Intake::with(store, secret(), Some(bounce_address()), policy), dir, ids)
}

/// A sample with its VERP placeholder made the address of `tag`.
fn sample(name: &str, tag: Tag) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/bounces/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
    text.replace("BOUNCE_TO", &verp::envelope_sender(&secret(), &bounce_address(), tag))
        .into_bytes()
}

async fn suppressed(intake: &Intake, email: &str) -> bool {
    intake.store().suppression(email).await.unwrap().is_some()
}

#[tokio::test]
async fn a_hard_bounce_suppresses_the_reader_its_token_names() {
    // The report names gone@example.org, but the token names reader 2:
    // the token is what herald trusts.
    let (intake, _dir, ids) = mailed(&["first@example.org", "gone@example.org"]).await;
    let tag = Tag { edition: 1, subscriber: ids[0] };
    let raw = sample("dsn-hard-verp.eml", tag);
    let now = at("2026-11-30T08:00:00Z");
    let outcome = intake.message(&raw, Via::Smtp, &[], now).await.unwrap();
    assert_eq!(outcome.taken.len(), 1);
    assert_eq!(outcome.taken[0].action, BounceAction::Suppressed);
    assert_eq!(outcome.taken[0].list.as_deref(), Some("daily"));
    assert!(suppressed(&intake, "first@example.org").await);
    assert!(!suppressed(&intake, "gone@example.org").await);

    // The same report again (another way in, or a retry) is acted on once.
    let again = intake.message(&raw, Via::Smtp, &[], now).await.unwrap();
    assert_eq!(again.taken[0].action, BounceAction::Duplicate);
    let events = intake.store().bounce_events(10).await.unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].email.as_deref(), Some("first@example.org"));
    assert_eq!(events[0].status.as_deref(), Some("5.1.1"));
}

#[tokio::test]
async fn the_envelope_recipient_names_the_reader_before_the_headers() {
    let (intake, _dir, ids) = mailed(&["a@example.org", "gone@example.org"]).await;
    let quoted = Tag { edition: 1, subscriber: ids[0] };
    let enveloped = Tag { edition: 1, subscriber: ids[1] };
    let raw = sample("dsn-hard-verp.eml", quoted);
    let rcpt = verp::envelope_sender(&secret(), &bounce_address(), enveloped);
    intake.message(&raw, Via::Smtp, &[rcpt], at("2026-11-30T08:00:00Z")).await.unwrap();
    assert!(suppressed(&intake, "gone@example.org").await);
    assert!(!suppressed(&intake, "a@example.org").await);
}

#[tokio::test]
async fn without_a_token_the_address_counts_only_when_herald_mailed_it() {
    let (intake, _dir, _) =
        mailed(&["nobody@example.org", "full@example.org", "slow@example.org"]).await;
    let outcome = intake
        .message(
            &sample("dsn-several.eml", Tag { edition: 0, subscriber: 1 }),
            Via::Imap,
            &[],
            at("2026-11-30T08:00:00Z"),
        )
        .await
        .unwrap();
    let actions: Vec<_> = outcome.taken.iter().map(|t| t.action.clone()).collect();
    assert_eq!(actions, vec![BounceAction::Suppressed, BounceAction::Counted, BounceAction::None]);
    assert_eq!(outcome.taken[0].list.as_deref(), Some("daily"), "found by the quoted Message-ID");
    assert!(suppressed(&intake, "nobody@example.org").await);
    assert!(!suppressed(&intake, "full@example.org").await, "one soft bounce of three");
    assert!(!suppressed(&intake, "slow@example.org").await, "a delay is no failure");

    // An address herald never mailed: recorded, and nothing done.
    let stranger = String::from_utf8(sample("dsn-several.eml", Tag { edition: 0, subscriber: 1 }))
        .unwrap()
        .replace("nobody@example.org", "stranger@example.org")
        .replace("dsn-several-1", "dsn-several-2");
    let outcome = intake
        .message(stranger.as_bytes(), Via::Imap, &[], at("2026-11-30T08:01:00Z"))
        .await
        .unwrap();
    assert_eq!(outcome.taken[0].action, BounceAction::Ignored);
    assert!(!suppressed(&intake, "stranger@example.org").await);
}

#[tokio::test]
async fn soft_bounces_suppress_after_their_count_within_the_window() {
    let (intake, _dir, ids) = mailed(&["full@example.org"]).await;
    let tag = Some(Tag { edition: 1, subscriber: ids[0] });
    let soft = Finding {
        kind: Kind::Soft,
        address: Some("full@example.org".into()),
        status: Some("5.2.2".into()),
        diagnostic: None,
    };
    // Two within the window, one long before it.
    for (n, when) in
        ["2026-10-01T07:00:00Z", "2026-11-25T07:00:00Z", "2026-11-29T07:00:00Z"].iter().enumerate()
    {
        let r = intake
            .finding(Via::Webhook, &soft, tag, Some(format!("e{n}")), at(when))
            .await
            .unwrap();
        assert_eq!(r.action, BounceAction::Counted, "soft bounce {n}");
    }
    let r = intake
        .finding(Via::Webhook, &soft, tag, Some("e3".into()), at("2026-11-30T07:00:00Z"))
        .await
        .unwrap();
    assert_eq!(r.action, BounceAction::Suppressed, "the third within 14 days");
    assert!(suppressed(&intake, "full@example.org").await);

    // Lifted by hand: the count starts over.
    assert!(intake
        .store()
        .unsuppress("full@example.org", at("2026-11-30T07:30:00Z"))
        .await
        .unwrap());
    assert!(!suppressed(&intake, "full@example.org").await);
    let r = intake
        .finding(Via::Webhook, &soft, tag, Some("e4".into()), at("2026-11-30T08:00:00Z"))
        .await
        .unwrap();
    assert_eq!(r.action, BounceAction::Counted);
}

#[tokio::test]
async fn a_complaint_unsubscribes_from_every_list_and_suppresses() {
    let (intake, _dir, ids) = mailed(&["angry@example.org", "calm@example.org"]).await;
    let raw = sample("arf.eml", Tag { edition: 1, subscriber: ids[0] });
    let outcome = intake.message(&raw, Via::Imap, &[], at("2026-11-30T09:00:00Z")).await.unwrap();
    assert_eq!(outcome.taken[0].action, BounceAction::Unsubscribed);
    assert!(suppressed(&intake, "angry@example.org").await);
    let members = intake.store().members(None).await.unwrap();
    for m in &members {
        let expected = if m.email == "angry@example.org" {
            MembershipStatus::Unsubscribed
        } else {
            MembershipStatus::Confirmed
        };
        assert_eq!(m.status, expected, "{} on {}", m.email, m.list);
    }
}

#[tokio::test]
async fn auto_replies_and_ordinary_mail_change_nothing() {
    let (intake, _dir, ids) = mailed(&["away@example.org"]).await;
    let tag = Tag { edition: 1, subscriber: ids[0] };
    let now = at("2026-11-30T09:00:00Z");
    let outcome = intake.message(&sample("vacation.eml", tag), Via::Imap, &[], now).await.unwrap();
    assert!(outcome.understood());
    assert_eq!(outcome.taken[0].action, BounceAction::None);
    let outcome = intake.message(&sample("ordinary.eml", tag), Via::Imap, &[], now).await.unwrap();
    assert!(!outcome.understood());
    assert!(outcome.taken.is_empty());
    assert!(!suppressed(&intake, "away@example.org").await);
    let events = intake.store().bounce_events(10).await.unwrap();
    assert_eq!(events.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(), vec!["auto_reply"]);
}

#[tokio::test]
async fn a_forged_token_acts_on_no_one() {
    let (intake, _dir, ids) = mailed(&["first@example.org", "gone@example.org"]).await;
    // A token made with another secret, naming reader 1.
    let forged = verp::envelope_sender(
        &Secret::new(b"not the site's secret, but just as long".to_vec()),
        &bounce_address(),
        Tag { edition: 1, subscriber: ids[0] },
    );
    assert_eq!(intake.recipient(&forged), verp::Recipient::Unknown);
    let raw = String::from_utf8_lossy(&sample(
        "dsn-hard-verp.eml",
        Tag { edition: 1, subscriber: ids[0] },
    ))
    .replace(
        &verp::envelope_sender(
            &secret(),
            &bounce_address(),
            Tag { edition: 1, subscriber: ids[0] },
        ),
        &forged,
    );
    intake.message(raw.as_bytes(), Via::Smtp, &[forged], at("2026-11-30T08:00:00Z")).await.unwrap();
    assert!(!suppressed(&intake, "first@example.org").await, "the forged token's reader");
    // Without a trusted token, the report's own address counts, as herald mailed it.
    assert!(suppressed(&intake, "gone@example.org").await);
}
