//! Which articles go into a list's edition, however the ids and commits of
//! concurrent collects interleave with compose.

use std::path::Path;

use chrono::{TimeZone, Utc};

use super::*;
use crate::store::{test_article, test_store};

fn config() -> Config {
    crate::config::parse(Path::new("/site/herald.toml"), crate::config::GOOD, &[]).unwrap()
}

/// 07:00 UTC on the `d`th of November 2026.
fn day(d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, d, 7, 0, 0).unwrap()
}

/// Composes the editions of the day `d` with the built-in templates.
async fn compose_on(store: &Store, d: u32) -> ComposeReport {
    let dir = tempfile::tempdir().unwrap();
    compose(&config(), store, &templates::load(dir.path()), day(d)).await.unwrap()
}

/// The guids in the `daily` edition of the day `d`, in the edition's order.
async fn edition_of(store: &Store, d: u32) -> Vec<String> {
    let date = day(d).date_naive();
    let Some(edition) = store.edition("daily", date).await.unwrap() else {
        return Vec::new();
    };
    let articles = store.articles_by_ids(&edition.article_ids).await.unwrap();
    articles.into_iter().map(|a| a.article.guid).collect()
}

#[tokio::test]
async fn an_article_committed_after_an_edition_under_a_lower_id_is_in_the_next() {
    let (store, _dir) = test_store().await;
    // Two collects at once: the one that took id 2 commits after the one
    // that took id 3, and after the edition was composed.
    store.insert_article_with_id(1, &test_article("one", "1"), day(1)).await.unwrap();
    store.insert_article_with_id(3, &test_article("three", "3"), day(1)).await.unwrap();
    compose_on(&store, 1).await;
    assert_eq!(edition_of(&store, 1).await, ["one", "three"]);

    store.insert_article_with_id(2, &test_article("two", "2"), day(1)).await.unwrap();
    let report = compose_on(&store, 2).await;
    assert_eq!(report.composed.len(), 1, "skipped: {:?}", report.skipped);
    assert_eq!(edition_of(&store, 2).await, ["two"]);
}
