//! Small pieces of state the stages keep between runs, each in a table of
//! its own (a relay's messages per UTC day are with the nodes, in
//! `nodes.rs`): the last fire time each daemon job handled, the lists whose sending is paused, and the feeds a WebSub
//! hub has not been told of yet.

use chrono::{DateTime, Utc};

use super::{parse_ts, ts, During, Result, Store};

impl Store {
    /// The last fire time a run of the daemon job `job` completed.
    pub async fn job_handled(&self, job: &str) -> Result<Option<DateTime<Utc>>> {
        self.time_of("SELECT handled_upto FROM daemon_jobs WHERE job = $1", job)
            .await
            .during(|| format!("reading what the job {job} last handled"))
    }

    /// Records that a run of `job` handled the fire time `at`.
    pub async fn set_job_handled(&self, job: &str, at: DateTime<Utc>) -> Result<()> {
        async move {
            sqlx::query(
                "INSERT INTO daemon_jobs (job, handled_upto) VALUES ($1, $2)
                 ON CONFLICT (job) DO UPDATE SET handled_upto = excluded.handled_upto",
            )
            .bind(job)
            .bind(ts(at))
            .execute(&self.pool)
            .await?;
            Ok(())
        }
        .await
        .during(|| format!("recording that the job {job} handled {at}"))
    }

    /// Stops sending `list`'s editions until [`Store::resume_list`].
    pub async fn pause_list(&self, list: &str, at: DateTime<Utc>) -> Result<()> {
        async move {
            sqlx::query(
                "INSERT INTO paused_lists (list, paused_at) VALUES ($1, $2)
                 ON CONFLICT (list) DO NOTHING",
            )
            .bind(list)
            .bind(ts(at))
            .execute(&self.pool)
            .await?;
            Ok(())
        }
        .await
        .during(|| format!("pausing list `{list}`"))
    }

    /// Sends `list`'s editions again; whether it was paused.
    pub async fn resume_list(&self, list: &str) -> Result<bool> {
        async move {
            let done = sqlx::query("DELETE FROM paused_lists WHERE list = $1")
                .bind(list)
                .execute(&self.pool)
                .await?;
            Ok(done.rows_affected() > 0)
        }
        .await
        .during(|| format!("resuming list `{list}`"))
    }

    /// When `list`'s sending was paused, if it is.
    pub async fn paused_at(&self, list: &str) -> Result<Option<DateTime<Utc>>> {
        self.time_of("SELECT paused_at FROM paused_lists WHERE list = $1", list)
            .await
            .during(|| format!("reading whether list `{list}` is paused"))
    }

    /// The time `sql` (one time column, one `?` for `key`) finds, if any.
    async fn time_of(&self, sql: &str, key: &str) -> Result<Option<DateTime<Utc>>> {
        let at: Option<String> =
            sqlx::query_scalar(sql).bind(key).fetch_optional(&self.pool).await?;
        at.as_deref().map(parse_ts).transpose()
    }

    /// The feed URLs the WebSub hub has not been told of, sorted.
    pub async fn websub_pending(&self) -> Result<Vec<String>> {
        async move {
            Ok(sqlx::query_scalar("SELECT feed_url FROM websub_pending ORDER BY feed_url")
                .fetch_all(&self.pool)
                .await?)
        }
        .await
        .during(|| "reading the feeds the WebSub hub is still to be told of".to_owned())
    }

    /// Adds feed URLs to tell the hub of (kept until it has been told).
    pub async fn add_websub_pending(&self, urls: &[String]) -> Result<()> {
        async move {
            let mut tx = self.write_tx().await?;
            for url in urls {
                sqlx::query(
                    "INSERT INTO websub_pending (feed_url) VALUES ($1) ON CONFLICT DO NOTHING",
                )
                .bind(url)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(())
        }
        .await
        .during(|| format!("recording {} feed(s) to tell the WebSub hub of", urls.len()))
    }

    /// Forgets feed URLs the hub has been told of.
    pub async fn clear_websub_pending(&self, urls: &[String]) -> Result<()> {
        async move {
            let mut tx = self.write_tx().await?;
            for url in urls {
                sqlx::query("DELETE FROM websub_pending WHERE feed_url = $1")
                    .bind(url)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(())
        }
        .await
        .during(|| format!("clearing {} feed(s) the WebSub hub was told of", urls.len()))
    }
}

#[cfg(test)]
mod tests {
    use crate::store::test_store;

    #[tokio::test]
    async fn relay_counts_keep_a_week() {
        let (store, _dir) = test_store().await;
        let day = |d: u32| chrono::NaiveDate::from_ymd_opt(2026, 11, d).unwrap();
        for d in 1..=20 {
            let got = store.reserve_relay_sends("primary", day(d), u64::from(d), 100).await;
            assert_eq!(got.unwrap(), u64::from(d));
        }
        assert_eq!(store.relay_sent("primary", day(20)).await.unwrap(), 20);
        assert_eq!(store.relay_sent("primary", day(13)).await.unwrap(), 13);
        assert_eq!(store.relay_sent("primary", day(12)).await.unwrap(), 0, "pruned");
        assert_eq!(store.relay_sent("backup", day(20)).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn settings_from_before_move_to_their_tables() {
        // A store as it was: the state in `settings`.
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("old.db").display());
        let old = "INSERT INTO settings (key, value) VALUES
             ('relay-sent:primary:2026-11-24', '42'),
             ('relay-sent:back-up:2026-11-23', '7'),
             ('daemon-done:list:daily', '2026-11-24T07:00:00+00:00'),
             ('paused:weekly', '2026-11-20T10:00:00+00:00'),
             ('websub:pending', 'https://a.example/feed.xml\nhttps://a.example/atom.xml'),
             ('secret', 'kept')";
        crate::store::create_at_version(&url, 9, &[old]).await.unwrap();
        let store = crate::Store::open(&url).await.unwrap();
        let day = |d: u32| chrono::NaiveDate::from_ymd_opt(2026, 11, d).unwrap();
        assert_eq!(store.relay_sent("primary", day(24)).await.unwrap(), 42);
        assert_eq!(store.relay_sent("back-up", day(23)).await.unwrap(), 7);
        let handled = store.job_handled("list:daily").await.unwrap().unwrap();
        assert_eq!(handled.to_rfc3339(), "2026-11-24T07:00:00+00:00");
        assert!(store.paused_at("weekly").await.unwrap().is_some());
        assert!(store.paused_at("daily").await.unwrap().is_none());
        assert_eq!(
            store.websub_pending().await.unwrap(),
            ["https://a.example/atom.xml", "https://a.example/feed.xml"]
        );
        assert_eq!(store.setting("secret").await.unwrap().as_deref(), Some("kept"));
        assert_eq!(store.setting("paused:weekly").await.unwrap(), None);
    }
}
