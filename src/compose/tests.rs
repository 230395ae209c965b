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

#[tokio::test]
async fn an_article_stored_while_an_edition_is_composed_is_in_the_next() {
    let (store, _dir) = test_store().await;
    store.upsert_articles(&[test_article("one", "1")], day(1)).await.unwrap();
    let config = config();
    let list = &config.lists[0];
    let Selection::New { articles, considered } =
        select(&store, list, day(1).date_naive()).await.unwrap()
    else {
        panic!("an edition is due")
    };
    // A collect commits between compose's read and its write.
    store.upsert_articles(&[test_article("two", "2")], day(1)).await.unwrap();
    let new = NewEdition {
        list: "daily".into(),
        edition_date: day(1).date_naive(),
        subject: "Today".into(),
        html: String::new(),
        text: String::new(),
        article_ids: articles.iter().map(|a| a.id).collect(),
        considered,
        composed_at: day(1),
    };
    store.create_edition(&new, "example.com").await.unwrap().unwrap();
    assert_eq!(edition_of(&store, 1).await, ["one"]);

    compose_on(&store, 2).await;
    assert_eq!(edition_of(&store, 2).await, ["two"]);
}

#[tokio::test]
async fn what_an_edition_left_out_is_not_new_for_the_next() {
    let (store, _dir) = test_store().await;
    let at = |h: u32, mut a: crate::article::Article| {
        a.published = Utc.with_ymd_and_hms(2026, 11, 1, h, 0, 0).unwrap();
        a
    };
    // The same story through another source, an older copy.
    let mut copy = at(3, test_article("c", "elsewhere"));
    copy.source = "mirror".into();
    let articles = [
        at(1, test_article("a", "1")),
        at(2, test_article("b", "1")),
        copy,
        at(4, test_article("c", "1")),
        at(5, test_article("down", "1")),
    ];
    store.upsert_articles(&articles, day(1)).await.unwrap();
    let slug = crate::types::Slug::of_guid("down");
    store.unpublish("blog", &slug, day(1)).await.unwrap();
    let text =
        crate::config::GOOD.replace("name = \"Daily\"", "name = \"Daily\"\nmax_articles = 2");
    let config = crate::config::parse(Path::new("/site/herald.toml"), &text, &[]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let templates = templates::load(dir.path());
    compose(&config, &store, &templates, day(1)).await.unwrap();
    assert_eq!(edition_of(&store, 1).await, ["c", "b"]);

    // Beyond max_articles, the same story again, taken down and put back:
    // none of them is new the next day.
    store.republish("blog", &slug).await.unwrap();
    store.upsert_articles(&[at(0, test_article("d", "1"))], day(2)).await.unwrap();
    compose(&config, &store, &templates, day(2)).await.unwrap();
    assert_eq!(edition_of(&store, 2).await, ["d"]);
}

#[tokio::test]
async fn a_new_lists_first_edition_considers_every_stored_article() {
    let (store, _dir) = test_store().await;
    let many: Vec<_> = (0..1200).map(|i| test_article(&format!("p{i:04}"), "x")).collect();
    store.upsert_articles(&many, day(1)).await.unwrap();
    let report = compose_on(&store, 1).await;
    assert_eq!(report.composed[0].articles, 50, "the newest max_articles");
    assert!(store.unconsidered_articles("daily").await.unwrap().is_empty());
    assert_eq!(
        store.edition("daily", day(1).date_naive()).await.unwrap().unwrap().article_cursor,
        1200
    );
}

#[test]
fn every_image_in_a_digest_has_an_alt() {
    assert_eq!(
        images_with_alt(r#"<p><img src="a.png"> <IMG src="b.png" alt="B"/><img alt src="c"></p>"#),
        r#"<p><img alt="" src="a.png"> <IMG src="b.png" alt="B"/><img alt src="c"></p>"#
    );
    // A `>` or ` alt=` inside a quoted value is not the tag's.
    assert_eq!(
        images_with_alt(r#"<img title="x > y alt=z" src="d">"#),
        r#"<img alt="" title="x > y alt=z" src="d">"#
    );
    assert_eq!(images_with_alt("<imgs><img"), "<imgs><img", "unfinished tags stay");
}

#[test]
fn the_preheader_is_the_lists_or_the_first_titles() {
    let mut config = config();
    let a = |title: &str| crate::article::StoredArticle {
        id: 1,
        article: test_article(title, ""),
        content_hash: String::new(),
        first_seen: day(1),
    };
    let articles = [a("One"), a("Two"), a("Three"), a("Four")];
    let list = config.lists[0].clone();
    let context = digest_context(&config, &list, day(1).date_naive(), &articles);
    assert_eq!(context.get("preheader").unwrap(), "One · Two · Three");
    config.lists[0].preheader = Some("Today: the harbour".into());
    let context = digest_context(&config, &config.lists[0], day(1).date_naive(), &articles);
    assert_eq!(context.get("preheader").unwrap(), "Today: the harbour");
}
