//! Articles taken down: by collect when a file is deleted or a draft
//! (`withdrawn`), or by an operator (`unpublished_at`, which collect never
//! touches), what `herald articles` lists, and the mark that says a publish
//! is due to show an operator's change.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::Row;

use super::articles::PUBLISHED;
use super::{parse_opt_ts, parse_ts, ts, During, Result, Store, StoreError};
use crate::types::Slug;

/// The settings key that says a publish is due: an operator took an
/// article down or put it back, and the site does not show it yet.
const PUBLISH_DUE: &str = "publish-due";

/// Why collect took an article down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Withdrawn {
    /// The file that owned it is gone (deleted, or renamed without its slug).
    Deleted,
    /// Its file says `draft = true`.
    Draft,
}

impl Withdrawn {
    pub fn as_str(self) -> &'static str {
        match self {
            Withdrawn::Deleted => "deleted",
            Withdrawn::Draft => "draft",
        }
    }

    fn parse(text: &str) -> Result<Self> {
        match text {
            "deleted" => Ok(Withdrawn::Deleted),
            "draft" => Ok(Withdrawn::Draft),
            other => Err(StoreError::Corrupt(format!("withdrawn `{other}`"))),
        }
    }
}

/// An article collect takes down: its source's update names it by guid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Withdrawal {
    pub guid: String,
    pub reason: Withdrawn,
}

/// An article as `herald articles` shows it: what it is, and whether and
/// why it is not published.
#[derive(Debug, Clone, PartialEq)]
pub struct ArticleEntry {
    pub id: i64,
    pub source: String,
    pub guid: String,
    pub url: String,
    pub title: String,
    pub published: DateTime<Utc>,
    /// Taken down by collect, why and when.
    pub withdrawn: Option<(Withdrawn, DateTime<Utc>)>,
    /// Taken down by an operator, when.
    pub unpublished_at: Option<DateTime<Utc>>,
}

impl ArticleEntry {
    /// The slug that names it within its source (`SOURCE/SLUG`).
    pub fn slug(&self) -> Slug {
        Slug::of_guid(&self.guid)
    }

    pub fn is_published(&self) -> bool {
        self.withdrawn.is_none() && self.unpublished_at.is_none()
    }
}

/// What an operator's `unpublish` or `republish` found.
#[derive(Debug, Clone, PartialEq)]
pub enum Marked {
    /// No article of that source has that slug.
    NotFound,
    /// Marked now; the entry as it is after.
    Changed(ArticleEntry),
    /// It was already so; nothing changed.
    Unchanged(ArticleEntry),
}

const ENTRY_COLUMNS: &str =
    "id, source, guid, url, title, published, withdrawn, withdrawn_at, unpublished_at";

fn entry_from_row(r: &AnyRow) -> Result<ArticleEntry> {
    let withdrawn = match (
        r.try_get::<Option<String>, _>("withdrawn")?,
        parse_opt_ts(r.try_get("withdrawn_at")?)?,
    ) {
        (Some(reason), Some(at)) => Some((Withdrawn::parse(&reason)?, at)),
        (Some(reason), None) => {
            return Err(StoreError::Corrupt(format!("withdrawn `{reason}` without a time")))
        }
        (None, _) => None,
    };
    Ok(ArticleEntry {
        id: r.try_get("id")?,
        source: r.try_get("source")?,
        guid: r.try_get("guid")?,
        url: r.try_get("url")?,
        title: r.try_get("title")?,
        published: parse_ts(&r.try_get::<String, _>("published")?)?,
        withdrawn,
        unpublished_at: parse_opt_ts(r.try_get("unpublished_at")?)?,
    })
}

impl Store {
    /// Articles as `herald articles list` shows them, newest first (ties by
    /// URL): the published ones, or with `all` every one, of one source or
    /// of all.
    pub async fn article_entries(
        &self,
        source: Option<&str>,
        all: bool,
    ) -> Result<Vec<ArticleEntry>> {
        async move {
            let rows = sqlx::query(&format!(
                "SELECT {ENTRY_COLUMNS} FROM articles
                 WHERE ($1 IS NULL OR source = $1) AND ($2 OR ({PUBLISHED}))
                 ORDER BY published DESC, url ASC"
            ))
            .bind(source)
            .bind(all)
            .fetch_all(&self.pool)
            .await?;
            rows.iter().map(entry_from_row).collect::<Result<Vec<_>>>()
        }
        .await
        .during(|| {
            format!(
                "listing the articles of {}",
                source.map_or("every source".to_owned(), |s| format!("source `{s}`"))
            )
        })
    }

    /// Every article taken down (by collect or by an operator), for publish
    /// to remove their pages and list them as gone.
    pub async fn retracted_articles(&self) -> Result<Vec<ArticleEntry>> {
        async move {
            let rows = sqlx::query(&format!(
                "SELECT {ENTRY_COLUMNS} FROM articles WHERE NOT ({PUBLISHED}) ORDER BY id"
            ))
            .fetch_all(&self.pool)
            .await?;
            rows.iter().map(entry_from_row).collect::<Result<Vec<_>>>()
        }
        .await
        .during(|| "listing the retracted articles".to_owned())
    }

    /// Which file owns each article of a `dir` source, by guid (`None`:
    /// not known, or its file was deleted).
    pub async fn dir_owners(&self, source: &str) -> Result<HashMap<String, Option<String>>> {
        async move {
            Ok(sqlx::query_as::<_, (String, Option<String>)>(
                "SELECT guid, path FROM articles WHERE source = $1",
            )
            .bind(source)
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .collect())
        }
        .await
        .during(|| format!("reading which files own the articles of source `{source}`"))
    }

    /// An operator takes `source/slug` down, for good: no collect brings it
    /// back. A publish is due until the next one runs.
    pub async fn unpublish(&self, source: &str, slug: &Slug, now: DateTime<Utc>) -> Result<Marked> {
        async move { self.mark(source, slug, Some(now)).await }
            .await
            .during(|| format!("unpublishing {source}/{slug}"))
    }

    /// Undoes [`Store::unpublish`]. An article collect withdrew (its file is
    /// gone or a draft) stays down until its file comes back.
    pub async fn republish(&self, source: &str, slug: &Slug) -> Result<Marked> {
        async move { self.mark(source, slug, None).await }
            .await
            .during(|| format!("republishing {source}/{slug}"))
    }

    async fn mark(
        &self,
        source: &str,
        slug: &Slug,
        unpublished_at: Option<DateTime<Utc>>,
    ) -> Result<Marked> {
        let mut tx = self.write_tx().await?;
        // A slug is the guid itself for `dir` articles and most upstream
        // ids; any other guid is found by computing each one's slug.
        let mut id: Option<i64> =
            sqlx::query_scalar("SELECT id FROM articles WHERE source = $1 AND guid = $2")
                .bind(source)
                .bind(slug.as_str())
                .fetch_optional(&mut *tx)
                .await?;
        if id.is_none() {
            let guids: Vec<(i64, String)> =
                sqlx::query_as("SELECT id, guid FROM articles WHERE source = $1")
                    .bind(source)
                    .fetch_all(&mut *tx)
                    .await?;
            id = guids.into_iter().find(|(_, guid)| Slug::of_guid(guid) == *slug).map(|(id, _)| id);
        }
        let Some(id) = id else { return Ok(Marked::NotFound) };
        let changed = sqlx::query(
            "UPDATE articles SET unpublished_at = $1 WHERE id = $2
               AND (unpublished_at IS NULL) <> ($1 IS NULL)",
        )
        .bind(unpublished_at.map(ts))
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            > 0;
        if changed {
            // A counter, so a publish that started before this mark cannot
            // clear it (see `publish_done`).
            sqlx::query(
                "INSERT INTO settings (key, value) VALUES ($1, '1')
                 ON CONFLICT (key) DO UPDATE SET value = CAST(CAST(settings.value AS BIGINT) + 1 AS TEXT)",
            )
            .bind(PUBLISH_DUE)
            .execute(&mut *tx)
            .await?;
        }
        let row = sqlx::query(&format!("SELECT {ENTRY_COLUMNS} FROM articles WHERE id = $1"))
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        let entry = entry_from_row(&row)?;
        tx.commit().await?;
        Ok(if changed { Marked::Changed(entry) } else { Marked::Unchanged(entry) })
    }

    /// Set when an operator took an article down or put it back and no
    /// publish has shown it yet: the value to hand [`Store::publish_done`].
    pub async fn publish_due(&self) -> Result<Option<String>> {
        async move { self.setting(PUBLISH_DUE).await }
            .await
            .during(|| "reading whether a publish is due".to_owned())
    }

    /// A publish that started when [`Store::publish_due`] said `due` is
    /// done. A mark made since stays due.
    pub async fn publish_done(&self, due: &str) -> Result<()> {
        async move {
            sqlx::query("DELETE FROM settings WHERE key = $1 AND value = $2")
                .bind(PUBLISH_DUE)
                .bind(due)
                .execute(&self.pool)
                .await?;
            Ok(())
        }
        .await
        .during(|| "recording that the publish is done".to_owned())
    }
}

/// Withdraws articles whose files are gone or drafts, within `tx`; how many
/// were published until now. An article already withdrawn keeps its time
/// (its reason follows its file). A deleted article's file is forgotten, so
/// its slug is free for the next file that claims it.
pub(super) async fn withdraw_in(
    tx: &mut sqlx::AnyConnection,
    source: &str,
    withdrawals: &[Withdrawal],
    now: DateTime<Utc>,
) -> Result<usize> {
    let mut newly = 0;
    for w in withdrawals {
        let before: Option<(Option<String>, Option<String>)> = sqlx::query_as(
            "SELECT withdrawn, unpublished_at FROM articles WHERE source = $1 AND guid = $2",
        )
        .bind(source)
        .bind(&w.guid)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((withdrawn, unpublished_at)) = before else { continue };
        sqlx::query(
            "UPDATE articles SET withdrawn = $1, withdrawn_at = COALESCE(withdrawn_at, $2),
               path = CASE WHEN $1 = 'deleted' THEN NULL ELSE path END
             WHERE source = $3 AND guid = $4",
        )
        .bind(w.reason.as_str())
        .bind(ts(now))
        .bind(source)
        .bind(&w.guid)
        .execute(&mut *tx)
        .await?;
        if withdrawn.is_none() && unpublished_at.is_none() {
            newly += 1;
        }
    }
    Ok(newly)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::article::Article;
    use crate::store::Upsert;
    use crate::store::{test_article, test_edition, test_store};

    fn dir_update(
        articles: Vec<Article>,
        withdrawals: Vec<Withdrawal>,
    ) -> crate::store::SourceUpdate {
        crate::store::SourceUpdate {
            name: "blog".into(),
            kind: "dir",
            files: articles.iter().map(|a| format!("{}.md", a.guid)).collect(),
            articles,
            withdrawals,
            back_catalogue: Vec::new(),
            known_empty: false,
            outcome: crate::store::SourceOutcome::NotModified,
        }
    }

    fn published(entries: &[ArticleEntry]) -> Vec<&str> {
        entries.iter().filter(|e| e.is_published()).map(|e| e.guid.as_str()).collect()
    }

    #[tokio::test]
    async fn a_withdrawn_article_leaves_until_its_file_is_back() {
        let (store, _dir) = test_store().await;
        let t1: DateTime<Utc> = "2026-11-21T00:00:00Z".parse().unwrap();
        let t2: DateTime<Utc> = "2026-11-22T00:00:00Z".parse().unwrap();
        let t3: DateTime<Utc> = "2026-11-23T00:00:00Z".parse().unwrap();
        let both = vec![test_article("a", "1"), test_article("b", "1")];
        store.record_sources(&[dir_update(both, vec![])], t1).await.unwrap();
        let owners = store.dir_owners("blog").await.unwrap();
        assert_eq!(owners.get("a"), Some(&Some("a.md".to_string())));

        let gone = Withdrawal { guid: "a".into(), reason: Withdrawn::Deleted };
        let done = store
            .record_sources(&[dir_update(vec![test_article("b", "1")], vec![gone.clone()])], t2)
            .await
            .unwrap();
        assert_eq!(done[0].withdrawn, 1);
        // Out of everything publish and compose read.
        assert_eq!(store.latest_articles(10).await.unwrap().len(), 1);
        let unconsidered = store.unconsidered_articles("daily").await.unwrap();
        assert_eq!(unconsidered.iter().filter(|a| a.eligible).count(), 1);
        // An edition composed now considers it all the same.
        let ids = unconsidered.iter().map(|a| a.id).collect();
        test_edition(&store, "daily", "2026-11-22", ids).await;
        let mut seen = 0;
        store
            .for_each_article(10, |batch| {
                seen += batch.len();
                Ok(())
            })
            .await
            .unwrap();
        assert_eq!(seen, 1);
        let retracted = store.retracted_articles().await.unwrap();
        assert_eq!(retracted.len(), 1);
        assert_eq!(retracted[0].withdrawn, Some((Withdrawn::Deleted, t2)));
        // A deleted article's file is forgotten: its slug is free.
        assert_eq!(store.dir_owners("blog").await.unwrap().get("a"), Some(&None));
        // Withdrawn again: not counted twice, and it keeps its time.
        let done = store.record_sources(&[dir_update(vec![], vec![gone])], t3).await.unwrap();
        assert_eq!(done[0].withdrawn, 0);
        assert_eq!(
            store.retracted_articles().await.unwrap()[0].withdrawn,
            Some((Withdrawn::Deleted, t2))
        );

        // Its file is back: published again, not new.
        let done = store
            .record_sources(&[dir_update(vec![test_article("a", "1")], vec![])], t3)
            .await
            .unwrap();
        assert_eq!(done[0].upserts, [Upsert::Restored]);
        assert_eq!(published(&store.article_entries(None, true).await.unwrap()), ["a", "b"]);
        assert_eq!(store.unconsidered_articles("daily").await.unwrap(), []);
    }

    #[tokio::test]
    async fn an_unpublished_article_stays_down_through_collects() {
        let (store, _dir) = test_store().await;
        let t1: DateTime<Utc> = "2026-11-21T00:00:00Z".parse().unwrap();
        let mut feed_entry = test_article("tag:x,2026:Odd Guid", "1");
        feed_entry.source = "up".into();
        store.upsert_articles(&[feed_entry.clone(), test_article("b", "1")], t1).await.unwrap();
        let slug = Slug::of_guid("tag:x,2026:Odd Guid");
        assert_eq!(store.publish_due().await.unwrap(), None);

        let Marked::Changed(e) = store.unpublish("up", &slug, t1).await.unwrap() else {
            panic!("found by its slug")
        };
        assert_eq!((e.unpublished_at, e.slug()), (Some(t1), slug.clone()));
        assert!(matches!(store.unpublish("up", &slug, t1).await.unwrap(), Marked::Unchanged(_)));
        let missing = Slug::parse("missing").unwrap();
        assert_eq!(store.unpublish("up", &missing, t1).await.unwrap(), Marked::NotFound);
        assert_eq!(store.unpublish("blog", &slug, t1).await.unwrap(), Marked::NotFound);
        let due = store.publish_due().await.unwrap().expect("a publish is due");

        // The next collect of the same entry, edited or not, does not bring it back.
        feed_entry.content_html = "2".into();
        let out = store.upsert_articles(&[feed_entry.clone()], t1).await.unwrap();
        assert_eq!(out, [Upsert::Updated]);
        assert_eq!(
            published(&store.article_entries(Some("up"), true).await.unwrap()),
            Vec::<&str>::new()
        );
        assert_eq!(store.article_entries(Some("up"), false).await.unwrap(), []);

        // A mark made while a publish ran stays due after it.
        assert!(matches!(store.republish("up", &slug).await.unwrap(), Marked::Changed(_)));
        store.publish_done(&due).await.unwrap();
        let later = store.publish_due().await.unwrap().expect("still due");
        store.publish_done(&later).await.unwrap();
        assert_eq!(store.publish_due().await.unwrap(), None);
        assert_eq!(published(&store.article_entries(Some("up"), false).await.unwrap()).len(), 1);
    }
}
