//! Feed audience: aggregators' announced subscriber counts and unique
//! pollers per day, recorded by the web server in batches.

use chrono::{DateTime, Utc};

use super::{ts, During, Result, Store};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeedAudience {
    /// (aggregator, subscribers), largest first.
    pub aggregators: Vec<(String, i64)>,
    /// Distinct other pollers on the latest day seen.
    pub pollers_today: i64,
}

impl FeedAudience {
    /// Aggregators' readers plus direct pollers (each roughly one reader).
    pub fn estimate(&self) -> i64 {
        self.aggregators.iter().map(|(_, n)| n).sum::<i64>() + self.pollers_today
    }
}

impl Store {
    /// Records what the server saw since the last call, in one transaction.
    pub async fn record_feed_audience(
        &self,
        aggregators: &[(String, i64)],
        pollers: &[(String, String)],
        now: DateTime<Utc>,
    ) -> Result<()> {
        async move {
            if aggregators.is_empty() && pollers.is_empty() {
                return Ok(());
            }
            let mut tx = self.write_tx().await?;
            for (name, subscribers) in aggregators {
                sqlx::query(
                    "INSERT INTO feed_aggregators (name, subscribers, seen_at) VALUES ($1, $2, $3)
                     ON CONFLICT (name) DO UPDATE SET subscribers = excluded.subscribers, seen_at = excluded.seen_at",
                )
                .bind(name)
                .bind(subscribers)
                .bind(ts(now))
                .execute(&mut *tx)
                .await?;
            }
            for (day, poller) in pollers {
                sqlx::query("INSERT INTO feed_pollers (day, poller) VALUES ($1, $2) ON CONFLICT (day, poller) DO NOTHING")
                    .bind(day)
                    .bind(poller)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(())
        }
        .await
        .during(|| "recording the feed audience".to_owned())
    }

    /// Aggregators seen in the last 30 days, and pollers on the latest day.
    pub async fn feed_audience(&self, now: DateTime<Utc>) -> Result<FeedAudience> {
        async move {
            let since = ts(now - chrono::Duration::days(30));
            let aggregators: Vec<(String, i64)> = sqlx::query_as(
                "SELECT name, subscribers FROM feed_aggregators WHERE seen_at >= $1 ORDER BY subscribers DESC, name",
            )
            .bind(since)
            .fetch_all(&self.pool)
            .await?;
            let pollers_today: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM feed_pollers WHERE day = (SELECT MAX(day) FROM feed_pollers)",
            )
            .fetch_one(&self.pool)
            .await?;
            Ok(FeedAudience { aggregators, pollers_today })
        }
        .await
        .during(|| "reading the feed audience".to_owned())
    }
}
