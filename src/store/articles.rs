//! Articles: upserted by collect (keyed by source and guid), read by publish
//! and compose. An article is published unless collect withdrew it (its
//! file was deleted or made a draft) or an operator unpublished it; the two
//! are kept apart, since collect undoes only its own.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{parse_opt_ts, parse_ts, ts, During, Result, Store, StoreError};
use crate::article::{Article, StoredArticle};

/// What an upsert did to one article.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upsert {
    /// First time herald sees it: it counts as new for the next digest.
    Inserted,
    /// Its content changed: stored anew, but not new for digests.
    Updated,
    /// Withdrawn by an earlier collect, its file is back (with any edits):
    /// published again, not new for digests.
    Restored,
    Unchanged,
}

/// An article a list has not considered yet, as much of it as choosing an
/// edition's articles needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unconsidered {
    pub id: i64,
    pub url: String,
    /// Published and meant for digests: it may go into an edition.
    pub eligible: bool,
}

/// The SQL condition of a published article.
pub(super) const PUBLISHED: &str = "withdrawn IS NULL AND unpublished_at IS NULL";

const COLUMNS: &str =
    "id, source, guid, url, title, author, published, updated, summary, content_html, \
                       tags, content_hash, first_seen";

pub(super) fn from_row(r: &AnyRow) -> Result<StoredArticle> {
    let tags: String = r.try_get("tags")?;
    Ok(StoredArticle {
        id: r.try_get("id")?,
        article: Article {
            source: r.try_get("source")?,
            guid: r.try_get("guid")?,
            url: r.try_get("url")?,
            title: r.try_get("title")?,
            author: r.try_get("author")?,
            published: parse_ts(&r.try_get::<String, _>("published")?)?,
            updated: parse_opt_ts(r.try_get("updated")?)?,
            summary: r.try_get("summary")?,
            content_html: r.try_get("content_html")?,
            tags: serde_json::from_str(&tags)
                .map_err(|_| StoreError::Corrupt(format!("tags `{tags}`")))?,
        },
        content_hash: r.try_get("content_hash")?,
        first_seen: parse_ts(&r.try_get::<String, _>("first_seen")?)?,
    })
}

impl Store {
    /// Inserts new articles and updates changed ones, in one transaction.
    pub async fn upsert_articles(
        &self,
        articles: &[Article],
        now: DateTime<Utc>,
    ) -> Result<Vec<Upsert>> {
        async move {
            let mut tx = self.write_tx().await?;
            let refs: Vec<Upserting> = articles.iter().map(|a| (a, true, None)).collect();
            let outcomes = upsert_in(&mut tx, &refs, &Default::default(), now).await?;
            tx.commit().await?;
            Ok(outcomes)
        }
        .await
        .during(|| format!("storing {} article(s)", articles.len()))
    }

    /// The newest `limit` published articles by publication date (ties
    /// broken by URL, so the order, and so the feeds' bytes, never depend
    /// on insertion).
    pub async fn latest_articles(&self, limit: usize) -> Result<Vec<StoredArticle>> {
        async move {
            let rows = sqlx::query(&format!(
                "SELECT {COLUMNS} FROM articles WHERE {PUBLISHED} ORDER BY published DESC, url ASC LIMIT $1"
            ))
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await?;
            rows.iter().map(from_row).collect::<Result<Vec<_>>>()
        }
        .await
        .during(|| format!("reading the newest {limit} article(s)"))
    }

    /// The articles `list` has not considered yet (no edition of it read
    /// them: see `create_edition`), newest first by publication date (ties
    /// broken by URL). Those taken down or not for digests come too, so that
    /// the edition marks them considered: one taken down before its edition
    /// never goes into one, and put back later it is not new. One statement:
    /// an article committed after it is not among them, whatever its id.
    pub async fn unconsidered_articles(&self, list: &str) -> Result<Vec<Unconsidered>> {
        async move {
            let rows = sqlx::query_as::<_, (i64, String, i64)>(&format!(
                "SELECT id, url, CASE WHEN in_digest = 1 AND {PUBLISHED} THEN 1 ELSE 0 END
                 FROM articles a
                 WHERE NOT EXISTS (SELECT 1 FROM list_articles l WHERE l.list = $1 AND l.article = a.id)
                 ORDER BY published DESC, url ASC"
            ))
            .bind(list)
            .fetch_all(&self.pool)
            .await?;
            Ok(rows
                .into_iter()
                .map(|(id, url, eligible)| Unconsidered { id, url, eligible: eligible != 0 })
                .collect())
        }
        .await
        .during(|| format!("reading the articles list `{list}` has not considered"))
    }

    pub async fn articles_by_ids(&self, ids: &[i64]) -> Result<Vec<StoredArticle>> {
        async move {
            let mut out = Vec::with_capacity(ids.len());
            for chunk in ids.chunks(500) {
                let marks = super::params(1, chunk.len());
                let sql = format!("SELECT {COLUMNS} FROM articles WHERE id IN ({marks})");
                let mut q = sqlx::query(&sql);
                for id in chunk {
                    q = q.bind(id);
                }
                for row in q.fetch_all(&self.pool).await? {
                    out.push(from_row(&row)?);
                }
            }
            // Keep the caller's order.
            out.sort_by_key(|a| ids.iter().position(|id| *id == a.id));
            Ok(out)
        }
        .await
        .during(|| format!("reading {} article(s) by id", ids.len()))
    }

    pub async fn article_count(&self) -> Result<i64> {
        async move {
            Ok(sqlx::query_scalar("SELECT COUNT(*) FROM articles").fetch_one(&self.pool).await?)
        }
        .await
        .during(|| "counting the articles".to_owned())
    }

    /// Calls `f` with every published article, in batches, oldest id first.
    pub async fn for_each_article(
        &self,
        batch: usize,
        mut f: impl FnMut(Vec<StoredArticle>) -> std::result::Result<(), StoreError>,
    ) -> Result<()> {
        async move {
            let mut after = 0i64;
            loop {
                let rows = sqlx::query(&format!(
                    "SELECT {COLUMNS} FROM articles WHERE id > $1 AND {PUBLISHED} ORDER BY id LIMIT $2"
                ))
                .bind(after)
                .bind(i64::try_from(batch).unwrap_or(500))
                .fetch_all(&self.pool)
                .await?;
                if rows.is_empty() {
                    return Ok(());
                }
                let articles = rows.iter().map(from_row).collect::<Result<Vec<_>>>()?;
                after = articles.last().map_or(after, |a| a.id);
                f(articles)?;
            }
        }
        .await
        .during(|| "reading every article".to_owned())
    }
}

/// For the tests: stores a new article under the id `id`, as a collect
/// that took its id before another one yet committed after it leaves it.
#[cfg(test)]
impl Store {
    pub(crate) async fn insert_article_with_id(
        &self,
        id: i64,
        a: &Article,
        now: DateTime<Utc>,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO articles (id, source, guid, url, title, author, published, updated,
               summary, content_html, tags, content_hash, first_seen, in_digest)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 1)",
        )
        .bind(id)
        .bind(&a.source)
        .bind(&a.guid)
        .bind(&a.url)
        .bind(&a.title)
        .bind(&a.author)
        .bind(ts(a.published))
        .bind(a.updated.map(ts))
        .bind(&a.summary)
        .bind(&a.content_html)
        .bind(serde_json::to_string(&a.tags).unwrap_or_else(|_| "[]".into()))
        .bind(a.content_hash())
        .bind(ts(now))
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

/// One article to upsert: whether it is new for digests (a new feed's back
/// catalogue is not), and for a `dir` article the file that owns it.
pub(super) type Upserting<'a> = (&'a Article, bool, Option<&'a str>);

/// Inserts new articles and updates changed ones, within `tx`. Each article
/// comes with whether a new one counts for digests (a new feed's back
/// catalogue does not) and, for a `dir` article, the file that owns it. An
/// edited article keeps its id and `first_seen`, so it is not new again;
/// when the source gives no `updated` time, the edit is dated `now`. An
/// article collect had withdrawn is published again (an operator's
/// unpublish stays). The store is not asked about sources in `empty`
/// (known to hold no article yet): all their articles are new.
pub(super) async fn upsert_in(
    tx: &mut sqlx::AnyConnection,
    articles: &[Upserting<'_>],
    empty: &std::collections::HashSet<&str>,
    now: DateTime<Utc>,
) -> Result<Vec<Upsert>> {
    // What the store already holds, a few queries for the whole batch
    // (each statement is a round trip to the database thread).
    let mut existing: HashMap<(String, String), Existing> = Default::default();
    let mut by_source: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for (a, _, _) in articles.iter().filter(|(a, _, _)| !empty.contains(a.source.as_str())) {
        by_source.entry(&a.source).or_default().push(&a.guid);
    }
    for (source, guids) in &by_source {
        for chunk in guids.chunks(500) {
            let marks = super::params(2, chunk.len());
            let sql = format!(
                "SELECT guid, id, content_hash, path,
                        CASE WHEN withdrawn IS NULL THEN 0 ELSE 1 END FROM articles
                 WHERE source = $1 AND guid IN ({marks})"
            );
            let mut q =
                sqlx::query_as::<_, (String, i64, String, Option<String>, i64)>(&sql).bind(*source);
            for guid in chunk {
                q = q.bind(*guid);
            }
            for (guid, id, hash, path, withdrawn) in q.fetch_all(&mut *tx).await? {
                existing.insert(
                    (source.to_string(), guid),
                    Existing { id, hash, path, withdrawn: withdrawn != 0 },
                );
            }
        }
    }
    let mut outcomes = Vec::with_capacity(articles.len());
    let mut inserts: Vec<(&Article, String, bool, Option<&str>)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for &(a, in_digest, path) in articles {
        let hash = a.content_hash();
        if !seen.insert((a.source.as_str(), a.guid.as_str())) {
            // The same entry twice in one batch: the first one counts.
            outcomes.push(Upsert::Unchanged);
            continue;
        }
        let Some(old) = existing.get(&(a.source.clone(), a.guid.clone())) else {
            outcomes.push(Upsert::Inserted);
            inserts.push((a, hash, in_digest, path));
            continue;
        };
        let moved = path.is_some() && old.path.as_deref() != path;
        if old.hash != hash {
            let tags = serde_json::to_string(&a.tags).unwrap_or_else(|_| "[]".into());
            sqlx::query(
                "UPDATE articles SET url = $1, title = $2, author = $3, published = $4, updated = $5,
                   summary = $6, content_html = $7, tags = $8, content_hash = $9,
                   path = COALESCE($10, path), withdrawn = NULL, withdrawn_at = NULL WHERE id = $11",
            )
            .bind(&a.url)
            .bind(&a.title)
            .bind(&a.author)
            .bind(ts(a.published))
            .bind(ts(a.updated.unwrap_or(now)))
            .bind(&a.summary)
            .bind(&a.content_html)
            .bind(tags)
            .bind(&hash)
            .bind(path)
            .bind(old.id)
            .execute(&mut *tx)
            .await?;
        } else if old.withdrawn || moved {
            sqlx::query(
                "UPDATE articles SET path = COALESCE($1, path), withdrawn = NULL, withdrawn_at = NULL
                 WHERE id = $2",
            )
            .bind(path)
            .bind(old.id)
            .execute(&mut *tx)
            .await?;
        }
        outcomes.push(if old.withdrawn {
            Upsert::Restored
        } else if old.hash != hash {
            Upsert::Updated
        } else {
            Upsert::Unchanged
        });
    }
    // New articles, many rows a statement, in the batch's order (ids
    // grow in the order articles were first seen).
    let first_seen = ts(now);
    for chunk in inserts.chunks(400) {
        let rows = super::rows(1, chunk.len(), 14);
        let sql = format!(
            "INSERT INTO articles (source, guid, url, title, author, published, updated, summary,
               content_html, tags, content_hash, first_seen, in_digest, path) VALUES {rows}"
        );
        let mut q = sqlx::query(&sql);
        for (a, hash, in_digest, path) in chunk {
            let tags = serde_json::to_string(&a.tags).unwrap_or_else(|_| "[]".into());
            q = q
                .bind(&a.source)
                .bind(&a.guid)
                .bind(&a.url)
                .bind(&a.title)
                .bind(&a.author)
                .bind(ts(a.published))
                .bind(a.updated.map(ts))
                .bind(&a.summary)
                .bind(&a.content_html)
                .bind(tags)
                .bind(hash)
                .bind(&first_seen)
                .bind(i64::from(*in_digest))
                .bind(path);
        }
        q.execute(&mut *tx).await?;
    }
    Ok(outcomes)
}

/// What the store holds of an article an upsert meets again.
struct Existing {
    id: i64,
    hash: String,
    path: Option<String>,
    withdrawn: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{test_article, test_edition, test_store};

    async fn unconsidered(store: &Store) -> Vec<i64> {
        store.unconsidered_articles("daily").await.unwrap().iter().map(|a| a.id).collect()
    }

    #[tokio::test]
    async fn edits_update_without_becoming_new() {
        let (store, _dir) = test_store().await;
        let t1: DateTime<Utc> = "2026-11-21T00:00:00Z".parse().unwrap();
        let t2: DateTime<Utc> = "2026-11-22T00:00:00Z".parse().unwrap();
        let out = store
            .upsert_articles(&[test_article("a", "1"), test_article("b", "1")], t1)
            .await
            .unwrap();
        assert_eq!(out, vec![Upsert::Inserted, Upsert::Inserted]);
        test_edition(&store, "daily", "2026-11-21", unconsidered(&store).await).await;

        let out = store
            .upsert_articles(&[test_article("a", "2"), test_article("b", "1")], t2)
            .await
            .unwrap();
        assert_eq!(out, vec![Upsert::Updated, Upsert::Unchanged]);
        assert!(unconsidered(&store).await.is_empty(), "not new");

        let a = store
            .latest_articles(10)
            .await
            .unwrap()
            .into_iter()
            .find(|a| a.article.guid == "a")
            .unwrap();
        assert_eq!(a.article.content_html, "2");
        assert_eq!(a.first_seen, t1);
        assert_eq!(a.article.updated, Some(t2));
        assert_eq!(a.article.tags, vec!["x".to_string()]);
    }

    #[tokio::test]
    async fn a_batch_with_the_same_entry_twice_stores_it_once() {
        let (store, _dir) = test_store().await;
        let now: DateTime<Utc> = "2026-11-21T00:00:00Z".parse().unwrap();
        let many: Vec<Article> = (0..200).map(|i| test_article(&format!("p{i}"), "x")).collect();
        let mut batch = many.clone();
        batch.push(test_article("p7", "other"));
        let out = store.upsert_articles(&batch, now).await.unwrap();
        assert_eq!(out.iter().filter(|o| **o == Upsert::Inserted).count(), 200);
        assert_eq!(out[200], Upsert::Unchanged);
        assert_eq!(store.article_count().await.unwrap(), 200);
        assert_eq!(unconsidered(&store).await.len(), 200);
    }

    #[tokio::test]
    async fn a_store_from_before_keeps_what_its_editions_covered() {
        let (url, _dir) = crate::store::test_store_url();
        let rows: Vec<String> = (1..=6)
            .map(|id| {
                format!(
                    "({id}, 'blog', 'p{id}', 'https://example.com/blog/p{id}/', 'p{id}',
                      '2026-11-20T08:00:00.000000Z', '', 'h', '2026-11-20T08:00:00.000000Z')"
                )
            })
            .collect();
        let articles = format!(
            "INSERT INTO articles (id, source, guid, url, title, published, content_html,
               content_hash, first_seen) VALUES {}",
            rows.join(", ")
        );
        let editions = "INSERT INTO editions (list, edition_date, subject, html, text,
               article_ids, article_cursor, composed_at) VALUES
             ('daily', '2026-11-20', 'One', '', '', '[1, 2]', 2, '2026-11-20T07:00:00.000000Z'),
             ('daily', '2026-11-21', 'Two', '', '', '[4]', 4, '2026-11-21T07:00:00.000000Z'),
             ('weekly', '2026-11-16', 'Week', '', '', '[1]', 1, '2026-11-16T07:00:00.000000Z')";
        crate::store::create_at_version(&url, 10, &[&articles, editions]).await.unwrap();

        let store = Store::open(&url).await.unwrap();
        for (list, new) in
            [("daily", &[5, 6][..]), ("weekly", &[2, 3, 4, 5, 6]), ("monthly", &[1, 2, 3, 4, 5, 6])]
        {
            let ids: Vec<i64> =
                store.unconsidered_articles(list).await.unwrap().iter().map(|a| a.id).collect();
            assert_eq!(ids, new, "new for {list}");
        }
        let last = store.last_edition("daily").await.unwrap().unwrap();
        assert_eq!((last.article_ids, last.article_cursor), (vec![4], 4));
    }
}
