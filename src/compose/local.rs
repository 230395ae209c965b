//! Lists sent at each reader's own hour (`[[lists]] local_time = true`).
//! One edition per list and date, composed at the list's time on the
//! list's clock as always; each reader gets it at the first moment, from
//! then on, when the reader's own clock shows that time. A reader west of
//! the list's zone gets it later the same day; a reader east of it, whose
//! hour had already passed, the next morning by their own calendar. So
//! every reader gets every edition once, at their hour, and what it holds
//! is what the list had at its own hour.

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

use crate::config::List;

/// When a reader in `zone` gets the edition of `list` composed for the
/// fire time `at`: the first instant at or after `at` at which `zone`'s
/// clock shows the time of day `at` shows on the list's clock. A time the
/// reader's clock skips that night (the change to summer time) comes at
/// the end of the gap; a time it shows twice, the first time.
pub fn due_for(list: &List, at: DateTime<Utc>, zone: Tz) -> DateTime<Utc> {
    let time = at.with_timezone(&list.timezone).time();
    let mut day = at.with_timezone(&zone).date_naive();
    // Two days always reach a later instant; three guard against a zone
    // that skipped a whole day (Samoa, 2011).
    for _ in 0..3 {
        let instant = first_at_or_after(zone, day.and_time(time));
        if instant >= at {
            return instant;
        }
        day = day.succ_opt().unwrap_or(day);
    }
    at
}

/// The hold of each of an edition's time zones for [`Store::create_edition_held`]:
/// readers of `zone` (`None`, or a name that is not a zone: the list's)
/// wait until their hour when it is after `at`.
///
/// [`Store::create_edition_held`]: crate::store::Store::create_edition_held
pub fn hold(
    list: &List,
    at: DateTime<Utc>,
) -> impl Fn(Option<&str>) -> Option<DateTime<Utc>> + Sync + '_ {
    move |zone| {
        let zone = zone.and_then(|z| z.parse::<Tz>().ok()).unwrap_or(list.timezone);
        let due = due_for(list, at, zone);
        (due > at).then_some(due)
    }
}

fn first_at_or_after(zone: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    match zone.from_local_datetime(&local) {
        chrono::LocalResult::Single(t) => t.to_utc(),
        chrono::LocalResult::Ambiguous(first, _) => first.to_utc(),
        // In a gap: the first minute after it (gaps are at most a few hours
        // here; a day at most anywhere).
        chrono::LocalResult::None => (1..=24 * 60)
            .find_map(|m| {
                zone.from_local_datetime(&(local + chrono::Duration::minutes(m))).earliest()
            })
            .map_or_else(|| local.and_utc(), |t| t.to_utc()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(tz: &str) -> List {
        let text = format!(
            "[[lists]]\nslug = \"daily\"\nname = \"Daily\"\ntimezone = \"{tz}\"\nlocal_time = true\n"
        );
        let config =
            crate::config::parse(std::path::Path::new("/site/herald.toml"), &text, &[]).unwrap();
        config.lists[0].clone()
    }

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn each_reader_gets_the_edition_at_their_own_hour() {
        let lisbon = list("Europe/Lisbon");
        // 07:00 in Lisbon on 30 November is 07:00 UTC.
        let at = utc("2026-11-30T07:00:00Z");
        let due = |zone: &str| due_for(&lisbon, at, zone.parse().unwrap());
        assert_eq!(due("Europe/Lisbon"), at);
        assert_eq!(due("America/New_York"), utc("2026-11-30T12:00:00Z"), "later the same day");
        assert_eq!(due("America/Los_Angeles"), utc("2026-11-30T15:00:00Z"));
        // Sydney's 07:00 on the 30th was 20:00 UTC on the 29th: the next one.
        assert_eq!(due("Australia/Sydney"), utc("2026-11-30T20:00:00Z"), "the next morning");
        assert_eq!(due("Asia/Kolkata"), utc("2026-12-01T01:30:00Z"));
        let hold = hold(&lisbon, at);
        assert_eq!(hold(None), None, "readers without a zone are the list's: due at once");
        assert_eq!(hold(Some("Europe/Lisbon")), None);
        assert_eq!(hold(Some("not a zone")), None, "a zone that does not parse is the list's");
        assert_eq!(hold(Some("America/New_York")), Some(utc("2026-11-30T12:00:00Z")));
    }

    #[test]
    fn clock_changes_move_the_instant_not_the_hour() {
        let lisbon = list("Europe/Lisbon");
        // 29 March 2026: Europe goes to summer time at 01:00 UTC; New York
        // changed on 8 March. Lisbon 07:00 is 06:00 UTC, New York 07:00 11:00 UTC.
        let at = utc("2026-03-29T06:00:00Z");
        assert_eq!(
            due_for(&lisbon, at, "America/New_York".parse().unwrap()),
            utc("2026-03-29T11:00:00Z")
        );
        // Between the two changes (15 to 28 March), New York is four hours behind Lisbon.
        let at = utc("2026-03-20T07:00:00Z");
        assert_eq!(
            due_for(&lisbon, at, "America/New_York".parse().unwrap()),
            utc("2026-03-20T11:00:00Z")
        );
        // A list at 02:30 and a reader whose clock skips 02:30 that night
        // (New York, 8 March 2026): at the end of the gap, 03:00 EDT.
        let list = {
            let mut l = list("UTC");
            l.timezone = "UTC".parse().unwrap();
            l
        };
        let at = utc("2026-03-08T02:30:00Z");
        assert_eq!(
            due_for(&list, at, "America/New_York".parse().unwrap()),
            utc("2026-03-08T07:00:00Z")
        );
    }

    /// A year of a daily 07:00 list in Lisbon, sent at each reader's hour
    /// to readers in five zones and one without: the compose and deliver
    /// stages as the daemon runs them (compose at the list's fire times,
    /// deliver again at the next time a report names), on a fixed clock.
    #[tokio::test]
    async fn a_year_of_editions_reaches_each_reader_once_at_their_hour() {
        use crate::store::{test_article, test_store, MembershipStatus, Origin};
        if crate::store::testing_on_postgres() {
            // The calendar is the same on both stores, and 2,000 runs of
            // the stages take minutes on PostgreSQL: the store's part is
            // `waiting_rows_are_held_released_and_counted` on both.
            return;
        }
        let (store, _store_dir) = test_store().await;
        let site = tempfile::tempdir().unwrap();
        let text = format!(
            "[site]\ntitle = \"News\"\nbase_url = \"https://news.example.com\"\n\n\
             [mail]\nfrom = \"News <news@example.com>\"\noutbox_dir = \"{}\"\n\n\
             [[lists]]\nslug = \"daily\"\nname = \"Daily\"\nschedule = \"0 0 7 * * *\"\n\
             timezone = \"Europe/Lisbon\"\nlocal_time = true\n",
            site.path().join("outbox").display()
        );
        let config = crate::config::parse(&site.path().join("herald.toml"), &text, &[]).unwrap();
        let list = &config.lists[0];
        let templates = crate::templates::load(&site.path().join("templates"));
        let secret =
            crate::subscribe::Secret::new(b"a secret of at least thirty-two bytes".to_vec());
        let readers = [
            ("lisbon@example.org", None),
            ("new-york@example.org", Some("America/New_York")),
            ("sydney@example.org", Some("Australia/Sydney")),
            ("lord-howe@example.org", Some("Australia/Lord_Howe")),
            ("kolkata@example.org", Some("Asia/Kolkata")),
            ("berlin@example.org", Some("Europe/Berlin")),
        ];
        let start = utc("2026-01-01T00:00:00Z");
        let rows: Vec<_> =
            readers.iter().map(|(e, _)| (crate::EmailAddress::parse(e).unwrap(), None)).collect();
        store
            .add_members("daily", &rows, Origin::Cli, MembershipStatus::Confirmed, start)
            .await
            .unwrap();
        let zones: Vec<(&str, Option<&str>)> = readers.to_vec();
        store.set_time_zones(&zones).await.unwrap();

        let node =
            crate::cluster::Node::join(&store, "deliver", std::time::Duration::from_secs(30))
                .await
                .unwrap();
        let end = utc("2027-01-01T00:00:00Z");
        let mut fire = list.schedule.next_fire(list.timezone, start).unwrap();
        let mut retry: Option<DateTime<Utc>> = None;
        let mut day = 0;
        loop {
            let now = match retry {
                Some(r) if r < fire => r,
                _ => fire,
            };
            if now >= end {
                break;
            }
            if now == fire {
                day += 1;
                store
                    .upsert_articles(&[test_article(&format!("a{day}"), "text")], now)
                    .await
                    .unwrap();
                let report = crate::compose::compose_lists(&config, &store, &templates, now, None)
                    .await
                    .unwrap();
                assert_eq!(report.composed.len(), 1, "an edition at {now}: {:?}", report.skipped);
                fire = list.schedule.next_fire(list.timezone, now).unwrap();
            }
            let clock: crate::deliver::Clock = std::sync::Arc::new(move || now);
            let options =
                crate::deliver::DeliverOptions { node: Some(node.clone()), ..Default::default() };
            let report =
                crate::deliver::deliver(&config, &store, &templates, &secret, &clock, &options)
                    .await
                    .unwrap();
            assert_eq!(report.failed + report.deferred, 0);
            assert!(
                report.next_retry.is_none_or(|r| r > now),
                "{now}: next {:?}",
                report.next_retry
            );
            retry = report.next_retry;
        }
        node.leave().await;

        let sent = store.deliveries(Some("daily"), None, 100_000).await.unwrap();
        for (email, zone) in readers {
            let tz: Tz = zone.unwrap_or("Europe/Lisbon").parse().unwrap();
            let mut days: Vec<chrono::NaiveDate> = Vec::new();
            for row in sent.iter().filter(|r| r.email == email) {
                if row.state != "sent" {
                    // Only the last editions, still waiting for an hour past the end.
                    assert_eq!(row.state, "waiting", "{email}: {row:?}");
                    assert!(row.edition_date.as_str() >= "2026-12-30", "{email}: {row:?}");
                    continue;
                }
                assert_eq!(row.attempts, 1, "{email}: sent once: {row:?}");
                let at: DateTime<Utc> = row.sent_at.as_deref().unwrap().parse().unwrap();
                let local = at.with_timezone(&tz);
                assert_eq!(local.format("%H:%M:%S").to_string(), "07:00:00", "{email}: {row:?}");
                days.push(local.date_naive());
            }
            days.sort();
            assert!(days.len() >= 364, "{email}: {} editions", days.len());
            for pair in days.windows(2) {
                assert_eq!(
                    (pair[1] - pair[0]).num_days(),
                    1,
                    "{email}: one edition each local day"
                );
            }
        }
    }

    #[tokio::test]
    async fn waiting_rows_are_held_released_and_counted() {
        use crate::store::{test_store, MembershipStatus, NewEdition, Origin};
        let (store, _dir) = test_store().await;
        let lisbon = list("Europe/Lisbon");
        let at = utc("2026-11-30T07:00:00Z");
        let rows: Vec<_> = ["a@example.org", "b@example.org", "c@example.org"]
            .iter()
            .map(|e| (crate::EmailAddress::parse(e).unwrap(), None))
            .collect();
        store
            .add_members("daily", &rows, Origin::Cli, MembershipStatus::Confirmed, at)
            .await
            .unwrap();
        store
            .set_time_zones(&[
                ("b@example.org", Some("America/New_York")),
                ("c@example.org", Some("Australia/Sydney")),
            ])
            .await
            .unwrap();
        let new = NewEdition {
            list: "daily".into(),
            edition_date: at.date_naive(),
            subject: "s".into(),
            html: "h".into(),
            text: "t".into(),
            article_ids: vec![],
            considered: vec![],
            composed_at: at,
        };
        let hold = hold(&lisbon, at);
        let (edition, n) =
            store.create_edition_held(&new, "example.com", Some(&hold)).await.unwrap().unwrap();
        assert_eq!(n, 3);
        let (new_york, sydney) = (utc("2026-11-30T12:00:00Z"), utc("2026-11-30T20:00:00Z"));
        let batches: Vec<_> =
            store.waiting_batches().await.unwrap().into_iter().map(|b| (b.2, b.3)).collect();
        assert_eq!(batches, vec![(new_york, 1), (sydney, 1)]);
        assert_eq!(store.due_count(edition.id, at, at).await.unwrap(), 1, "only Lisbon is due");
        assert!(!store.finish_edition_if_done(edition.id).await.unwrap());
        assert_eq!(store.next_waiting(edition.id).await.unwrap(), Some(new_york));
        assert_eq!(
            store
                .release_waiting(edition.id, new_york - chrono::Duration::seconds(1))
                .await
                .unwrap(),
            0
        );
        assert_eq!(store.release_waiting(edition.id, new_york).await.unwrap(), 1);
        assert_eq!(store.next_waiting(edition.id).await.unwrap(), Some(sydney));
        assert_eq!(store.due_count(edition.id, new_york, new_york).await.unwrap(), 2);
        assert!(store.anything_due(new_york, new_york).await.unwrap());
    }
}
