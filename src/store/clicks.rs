//! Click counts of the lists that track them (`[[lists]] track_clicks`):
//! where a click on an edition's article link goes, counting it, and the
//! figures `herald status` shows. Without `individual`, a click is a plain
//! counter per edition and article (`link_clicks`); with it, one row per
//! reader and link (`reader_clicks`), so a reader counts once however often
//! they click.

use chrono::{DateTime, NaiveDate, Utc};

use super::{ts, During, Result, Store, StoreError};

/// Where a click on an edition's article link goes: the article's URL as
/// the store holds it, and the list of the edition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClickTarget {
    pub list: String,
    pub url: String,
}

/// The clicks on one edition's article links.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EditionClicks {
    pub list: String,
    pub date: NaiveDate,
    /// Each article of the edition in its order: title and clicks.
    pub articles: Vec<(String, i64)>,
    /// Readers who clicked any link of it (recorded only with `individual`).
    pub readers: i64,
}

impl Store {
    /// The target of a click on `article` in `edition`: `None` when the
    /// edition does not exist or does not hold that article, so a link can
    /// only ever lead to an article of its own edition.
    pub async fn click_target(&self, edition: i64, article: i64) -> Result<Option<ClickTarget>> {
        async move {
            let row: Option<(String, String)> =
                sqlx::query_as("SELECT list, article_ids FROM editions WHERE id = $1")
                    .bind(edition)
                    .fetch_optional(&self.pool)
                    .await?;
            let Some((list, ids)) = row else { return Ok(None) };
            let ids: Vec<i64> = serde_json::from_str(&ids)
                .map_err(|_| StoreError::Corrupt(format!("article ids `{ids}`")))?;
            if !ids.contains(&article) {
                return Ok(None);
            }
            let url: Option<String> = sqlx::query_scalar("SELECT url FROM articles WHERE id = $1")
                .bind(article)
                .fetch_optional(&self.pool)
                .await?;
            Ok(url.map(|url| ClickTarget { list, url }))
        }
        .await
        .during(|| format!("reading the link to article {article} of edition {edition}"))
    }

    /// Counts a click on `article` in `edition`: with a `reader`, once per
    /// reader and link (true when this was their first click on it);
    /// without, one more on the link's counter.
    pub async fn record_click(
        &self,
        edition: i64,
        article: i64,
        reader: Option<i64>,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        async move {
            let done = match reader {
                Some(reader) => {
                    sqlx::query(
                        "INSERT INTO reader_clicks (edition, article, subscriber, at)
                         VALUES ($1, $2, $3, $4)
                         ON CONFLICT (edition, article, subscriber) DO NOTHING",
                    )
                    .bind(edition)
                    .bind(article)
                    .bind(reader)
                    .bind(ts(now))
                    .execute(&self.pool)
                    .await?
                }
                None => {
                    sqlx::query(
                        "INSERT INTO link_clicks (edition, article, clicks) VALUES ($1, $2, 1)
                         ON CONFLICT (edition, article)
                         DO UPDATE SET clicks = link_clicks.clicks + 1",
                    )
                    .bind(edition)
                    .bind(article)
                    .execute(&self.pool)
                    .await?
                }
            };
            Ok(done.rows_affected() == 1)
        }
        .await
        .during(|| format!("counting a click on article {article} of edition {edition}"))
    }

    /// The clicks on the article links of the newest `per_list` editions of
    /// each of `lists`, newest first.
    pub async fn edition_clicks(
        &self,
        lists: &[&str],
        per_list: usize,
    ) -> Result<Vec<EditionClicks>> {
        async move {
            let mut out = Vec::new();
            for list in lists {
                let editions: Vec<(i64, String, String)> = sqlx::query_as(
                    "SELECT id, edition_date, article_ids FROM editions WHERE list = $1
                     ORDER BY edition_date DESC LIMIT $2",
                )
                .bind(*list)
                .bind(i64::try_from(per_list).unwrap_or(i64::MAX))
                .fetch_all(&self.pool)
                .await?;
                for (id, date, ids) in editions {
                    let date = date
                        .parse()
                        .map_err(|_| StoreError::Corrupt(format!("edition date `{date}`")))?;
                    let ids: Vec<i64> = serde_json::from_str(&ids)
                        .map_err(|_| StoreError::Corrupt(format!("article ids `{ids}`")))?;
                    let mut counts: std::collections::HashMap<i64, i64> =
                        sqlx::query_as::<_, (i64, i64)>(
                            "SELECT article, clicks FROM link_clicks WHERE edition = $1",
                        )
                        .bind(id)
                        .fetch_all(&self.pool)
                        .await?
                        .into_iter()
                        .collect();
                    let by_reader: Vec<(i64, i64)> = sqlx::query_as(
                        "SELECT article, COUNT(*) FROM reader_clicks WHERE edition = $1
                         GROUP BY article",
                    )
                    .bind(id)
                    .fetch_all(&self.pool)
                    .await?;
                    for (article, n) in by_reader {
                        *counts.entry(article).or_default() += n;
                    }
                    let readers: i64 = sqlx::query_scalar(
                        "SELECT COUNT(DISTINCT subscriber) FROM reader_clicks WHERE edition = $1",
                    )
                    .bind(id)
                    .fetch_one(&self.pool)
                    .await?;
                    let titles = self.articles_by_ids(&ids).await?;
                    let articles = ids
                        .iter()
                        .map(|article| {
                            let title = titles.iter().find(|a| a.id == *article).map_or_else(
                                || format!("article {article}"),
                                |a| a.article.title.clone(),
                            );
                            (title, counts.get(article).copied().unwrap_or(0))
                        })
                        .collect();
                    out.push(EditionClicks { list: (*list).to_owned(), date, articles, readers });
                }
            }
            Ok(out)
        }
        .await
        .during(|| "reading the click counts of the latest editions".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{test_article, test_store, MembershipStatus, Origin};

    #[tokio::test]
    async fn clicks_count_once_per_reader_and_only_for_the_editions_articles() {
        let (store, _dir) = test_store().await;
        let now = Utc::now();
        store
            .upsert_articles(
                &[test_article("one", "<p>1</p>"), test_article("two", "<p>2</p>")],
                now,
            )
            .await
            .unwrap();
        let ids: Vec<i64> =
            store.unconsidered_articles("daily").await.unwrap().iter().map(|u| u.id).collect();
        let (a, b) = (ids[0].min(ids[1]), ids[0].max(ids[1]));
        let email = crate::email::EmailAddress::parse("ann@example.org").unwrap();
        store
            .add_members("daily", &[(email, None)], Origin::Cli, MembershipStatus::Confirmed, now)
            .await
            .unwrap();
        let new = crate::store::NewEdition {
            list: "daily".into(),
            edition_date: "2026-11-20".parse().unwrap(),
            subject: "Today".into(),
            html: String::new(),
            text: String::new(),
            article_ids: vec![a],
            considered: vec![a],
            composed_at: now,
        };
        let (edition, _) = store.create_edition(&new, "example.com").await.unwrap().unwrap();
        let edition = edition.id;
        let target = store.click_target(edition, a).await.unwrap().unwrap();
        assert!(target.url.starts_with("https://example.com/blog/"), "{target:?}");
        assert_eq!(target.list, "daily");
        // An article of the store, but not of this edition; an edition that is not.
        assert_eq!(store.click_target(edition, b).await.unwrap(), None);
        assert_eq!(store.click_target(edition + 1, a).await.unwrap(), None);

        let reader = store.members(Some("daily")).await.unwrap()[0].subscriber_id;
        assert!(store.record_click(edition, a, Some(reader), now).await.unwrap());
        assert!(!store.record_click(edition, a, Some(reader), now).await.unwrap());
        let figures = store.edition_clicks(&["daily"], 3).await.unwrap();
        assert_eq!(figures.len(), 1);
        assert_eq!(figures[0].articles.iter().map(|(_, n)| *n).collect::<Vec<_>>(), [1]);
        assert_eq!(figures[0].readers, 1);
        // Without a reader: a plain counter.
        store.record_click(edition, a, None, now).await.unwrap();
        store.record_click(edition, a, None, now).await.unwrap();
        let figures = store.edition_clicks(&["daily"], 3).await.unwrap();
        assert_eq!(figures[0].articles[0].1, 3);
        // Forgetting the reader takes their clicks with them.
        let email = crate::email::EmailAddress::parse("ann@example.org").unwrap();
        assert!(store.forget(&email, now).await.unwrap());
        let figures = store.edition_clicks(&["daily"], 3).await.unwrap();
        assert_eq!((figures[0].articles[0].1, figures[0].readers), (2, 0));
    }
}
