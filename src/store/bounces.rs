//! What came back after the handoff: bounce events, and what each did to
//! its reader (counted, suppressed, unsubscribed). One transaction per
//! event, so a report is either wholly recorded and acted on or not at all,
//! and a report seen twice (the same `reference`) is acted on once.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{parse_ts, ts, During, Result, Store};

/// A report about one recipient, as `bounces::` read it.
#[derive(Debug, Clone, Default)]
pub struct NewBounce {
    /// `smtp`, `imap`, `session`, `ses`, `postmark`, `mailgun`, `sendgrid`,
    /// `webhook`.
    pub via: String,
    /// `hard`, `soft`, `delayed`, `complaint`, `auto_reply`.
    pub kind: String,
    /// The address the report names, normalised when it parsed.
    pub email: Option<String>,
    /// The reader and edition a VERP token (or the delivery itself) names:
    /// authoritative, so the address is not needed to find the reader.
    pub subscriber: Option<i64>,
    pub edition: Option<i64>,
    /// Message-IDs of the original message, to find the edition when no
    /// token names it.
    pub message_ids: Vec<String>,
    pub status: Option<String>,
    pub diagnostic: Option<String>,
    /// Names the report, so it is acted on once.
    pub reference: Option<String>,
}

/// When bounces suppress an address.
#[derive(Debug, Clone, Copy)]
pub struct BouncePolicy {
    pub hard_after: u32,
    pub soft_after: u32,
    pub soft_window: chrono::TimeDelta,
}

/// What herald did about one report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BounceAction {
    /// Recorded; nothing to do (a delay, an auto-reply).
    None,
    /// Counted towards suppression.
    Counted,
    /// The address is now suppressed.
    Suppressed,
    /// A complaint: the reader left every list and is suppressed.
    Unsubscribed,
    /// Recorded but acted on no one: the report names no reader herald
    /// mailed (or a reader since forgotten).
    Ignored,
    /// The same report came in before; nothing recorded.
    Duplicate,
}

impl BounceAction {
    pub fn as_str(&self) -> &'static str {
        match self {
            BounceAction::None => "none",
            BounceAction::Counted => "counted",
            BounceAction::Suppressed => "suppressed",
            BounceAction::Unsubscribed => "unsubscribed",
            BounceAction::Ignored => "ignored",
            BounceAction::Duplicate => "duplicate",
        }
    }
}

/// The outcome of recording one report.
#[derive(Debug, Clone)]
pub struct BounceRecorded {
    pub action: BounceAction,
    /// The reader's address, when the report named a reader.
    pub email: Option<String>,
    pub list: Option<String>,
}

/// A stored event, as `herald bounces` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BounceEvent {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub via: String,
    pub kind: String,
    pub email: Option<String>,
    pub list: Option<String>,
    pub status: Option<String>,
    pub diagnostic: Option<String>,
    pub action: String,
    pub note: String,
}

/// Counts of events by list, kind and action.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BounceCount {
    pub list: Option<String>,
    pub via: String,
    pub kind: String,
    pub action: String,
    pub count: i64,
}

impl Store {
    /// Records one report and acts on it, in one transaction.
    pub async fn record_bounce(
        &self,
        bounce: &NewBounce,
        policy: BouncePolicy,
        now: DateTime<Utc>,
    ) -> Result<BounceRecorded> {
        async move {
            let mut tx = self.write_tx().await?;
            if let Some(reference) = &bounce.reference {
                let seen: Option<i64> =
                    sqlx::query_scalar("SELECT id FROM bounce_events WHERE reference = $1")
                        .bind(reference)
                        .fetch_optional(&mut *tx)
                        .await?;
                if seen.is_some() {
                    return Ok(BounceRecorded {
                        action: BounceAction::Duplicate,
                        email: bounce.email.clone(),
                        list: None,
                    });
                }
            }

            // The reader: the one the token names, else the address's
            // subscriber, but only one herald has mailed.
            let reader: Option<(i64, String)> = match bounce.subscriber {
                Some(id) => sqlx::query_as("SELECT id, email FROM subscribers WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?,
                None => match &bounce.email {
                    Some(email) => sqlx::query_as(
                        "SELECT s.id, s.email FROM subscribers s WHERE s.email = $1
                           AND EXISTS (SELECT 1 FROM deliveries d
                                       WHERE d.subscriber = s.id AND d.state IN ('sent', 'failed'))",
                    )
                    .bind(email)
                    .fetch_optional(&mut *tx)
                    .await?,
                    None => None,
                },
            };
            // The edition: the token's, else the one whose Message-ID the
            // report quotes, when it was this reader's.
            let mut edition = bounce.edition.filter(|&e| e > 0);
            if edition.is_none() {
                if let Some((id, _)) = &reader {
                    for message_id in &bounce.message_ids {
                        edition = sqlx::query_scalar(
                            "SELECT edition FROM deliveries WHERE subscriber = $1 AND message_id = $2",
                        )
                        .bind(id)
                        .bind(format!("<{message_id}>"))
                        .fetch_optional(&mut *tx)
                        .await?;
                        if edition.is_some() {
                            break;
                        }
                    }
                }
            }
            let list: Option<String> = match edition {
                Some(e) => sqlx::query_scalar("SELECT list FROM editions WHERE id = $1")
                    .bind(e)
                    .fetch_optional(&mut *tx)
                    .await?,
                None => None,
            };

            let mut note = String::new();
            let action = match &reader {
                None => {
                    note = match (bounce.subscriber, &bounce.email) {
                        (Some(_), _) => "the reader it names is gone".into(),
                        (None, Some(_)) => "names no reader herald has mailed".into(),
                        (None, None) => "names no recipient".into(),
                    };
                    BounceAction::Ignored
                }
                Some((id, email)) => {
                    act(&mut tx, bounce, policy, *id, email, &mut note, now).await?
                }
            };
            let email = reader.as_ref().map(|(_, e)| e.clone()).or_else(|| bounce.email.clone());
            sqlx::query(
                "INSERT INTO bounce_events
                   (at, via, kind, email, subscriber, edition, list, status, diagnostic, action, note, reference)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            )
            .bind(ts(now))
            .bind(&bounce.via)
            .bind(&bounce.kind)
            .bind(&email)
            .bind(reader.as_ref().map(|(id, _)| *id))
            .bind(edition)
            .bind(&list)
            .bind(&bounce.status)
            .bind(&bounce.diagnostic)
            .bind(action.as_str())
            .bind(&note)
            .bind(&bounce.reference)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(BounceRecorded { action, email, list })
        }
        .await
        .during(|| format!("recording a {} report via {}", bounce.kind, bounce.via))
    }

    /// Lifts the suppression of `email`, resets its bounce counts, and
    /// records that it was done. Memberships a complaint ended stay ended:
    /// the reader signs up again. Returns whether it was suppressed.
    pub async fn unsuppress(&self, email: &str, now: DateTime<Utc>) -> Result<bool> {
        async move {
            let mut tx = self.write_tx().await?;
            let removed = sqlx::query("DELETE FROM suppressions WHERE email = $1")
                .bind(email)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            let subscriber: Option<i64> =
                sqlx::query_scalar("UPDATE subscribers SET hard_bounces = 0 WHERE email = $1 RETURNING id")
                    .bind(email)
                    .fetch_optional(&mut *tx)
                    .await?;
            if removed > 0 {
                sqlx::query(
                    "INSERT INTO bounce_events (at, via, kind, email, subscriber, action, note)
                     VALUES ($1, 'cli', 'unsuppress', $2, $3, 'unsuppressed', 'herald subscribers unsuppress')",
                )
                .bind(ts(now))
                .bind(email)
                .bind(subscriber)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(removed > 0)
        }
        .await
        .during(|| format!("lifting the suppression of {email}"))
    }

    /// Why `email` is suppressed, when it is.
    pub async fn suppression(&self, email: &str) -> Result<Option<String>> {
        async move {
            Ok(sqlx::query_scalar("SELECT reason FROM suppressions WHERE email = $1")
                .bind(email)
                .fetch_optional(&self.pool)
                .await?)
        }
        .await
        .during(|| format!("reading the suppression of {email}"))
    }

    /// The id of the subscriber with `email`.
    pub async fn subscriber_id(&self, email: &crate::EmailAddress) -> Result<Option<i64>> {
        async move {
            Ok(sqlx::query_scalar("SELECT id FROM subscribers WHERE email = $1")
                .bind(email.as_str())
                .fetch_optional(&self.pool)
                .await?)
        }
        .await
        .during(|| format!("finding subscriber {email}"))
    }

    /// Marks every row of `edition` sent, for tests that need readers herald
    /// mailed.
    #[cfg(test)]
    pub(crate) async fn mark_all_sent_for_tests(&self, edition: i64) {
        sqlx::query("UPDATE deliveries SET state = 'sent', sent_at = $1 WHERE edition = $2")
            .bind(ts(Utc::now()))
            .bind(edition)
            .execute(&self.pool)
            .await
            .unwrap();
    }

    /// The latest `limit` events, newest first.
    pub async fn bounce_events(&self, limit: i64) -> Result<Vec<BounceEvent>> {
        async move {
            let rows = sqlx::query(
                "SELECT id, at, via, kind, email, list, status, diagnostic, action, note
                 FROM bounce_events ORDER BY id DESC LIMIT $1",
            )
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
            rows.into_iter()
                .map(|r| {
                    Ok(BounceEvent {
                        id: r.try_get("id")?,
                        at: parse_ts(&r.try_get::<String, _>("at")?)?,
                        via: r.try_get("via")?,
                        kind: r.try_get("kind")?,
                        email: r.try_get("email")?,
                        list: r.try_get("list")?,
                        status: r.try_get("status")?,
                        diagnostic: r.try_get("diagnostic")?,
                        action: r.try_get("action")?,
                        note: r.try_get("note")?,
                    })
                })
                .collect::<Result<Vec<_>>>()
        }
        .await
        .during(|| "reading the bounce events".to_owned())
    }

    /// Counts of events since `since` (all when `None`), by list, way in,
    /// kind and action.
    pub async fn bounce_counts(&self, since: Option<DateTime<Utc>>) -> Result<Vec<BounceCount>> {
        async move {
            let rows = sqlx::query(
                "SELECT list, via, kind, action, COUNT(*) AS n FROM bounce_events
                 WHERE $1 IS NULL OR at >= $1
                 GROUP BY list, via, kind, action ORDER BY list, via, kind, action",
            )
            .bind(since.map(ts))
            .fetch_all(&self.pool)
            .await?;
            rows.into_iter()
                .map(|r| {
                    Ok(BounceCount {
                        list: r.try_get("list")?,
                        via: r.try_get("via")?,
                        kind: r.try_get("kind")?,
                        action: r.try_get("action")?,
                        count: r.try_get("n")?,
                    })
                })
                .collect::<Result<Vec<_>>>()
        }
        .await
        .during(|| "counting the bounce events".to_owned())
    }
}

/// What a report does to its reader `id`.
async fn act(
    tx: &mut sqlx::AnyConnection,
    bounce: &NewBounce,
    policy: BouncePolicy,
    id: i64,
    email: &str,
    note: &mut String,
    now: DateTime<Utc>,
) -> Result<BounceAction> {
    let what = format!(
        "{} via {}{}",
        bounce.kind,
        bounce.via,
        bounce.status.as_deref().map(|s| format!(" ({s})")).unwrap_or_default()
    );
    Ok(match bounce.kind.as_str() {
        "hard" => {
            let count: i64 = sqlx::query_scalar(
                "UPDATE subscribers SET hard_bounces = hard_bounces + 1 WHERE id = $1 RETURNING hard_bounces",
            )
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
            *note = format!("hard bounce {count} of {}", policy.hard_after);
            if count >= i64::from(policy.hard_after) {
                suppress(tx, email, &format!("{count} hard bounce(s), last: {what}"), now).await?;
                BounceAction::Suppressed
            } else {
                BounceAction::Counted
            }
        }
        "soft" => {
            // Soft bounces in the window, this one included, since the last
            // time the address was unsuppressed.
            let since = ts(now - policy.soft_window);
            let before: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM bounce_events
                 WHERE subscriber = $1 AND kind = 'soft' AND at >= $2
                   AND at > COALESCE((SELECT MAX(at) FROM bounce_events
                                      WHERE subscriber = $1 AND kind = 'unsuppress'), '')",
            )
            .bind(id)
            .bind(&since)
            .fetch_one(&mut *tx)
            .await?;
            let count = before + 1;
            *note = format!(
                "soft bounce {count} of {} within {} days",
                policy.soft_after,
                policy.soft_window.num_days()
            );
            if count >= i64::from(policy.soft_after) {
                suppress(tx, email, &format!("{count} soft bounce(s), last: {what}"), now).await?;
                BounceAction::Suppressed
            } else {
                BounceAction::Counted
            }
        }
        "complaint" => {
            let left = sqlx::query(
                "UPDATE memberships SET status = 'unsubscribed', changed_at = $1
                 WHERE subscriber = $2 AND status <> 'unsubscribed'",
            )
            .bind(ts(now))
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            suppress(tx, email, &format!("complained: {what}"), now).await?;
            *note = format!("left {left} list(s)");
            BounceAction::Unsubscribed
        }
        _ => BounceAction::None,
    })
}

async fn suppress(
    tx: &mut sqlx::AnyConnection,
    email: &str,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO suppressions (email, reason, at) VALUES ($1, $2, $3)
         ON CONFLICT (email) DO UPDATE SET reason = excluded.reason, at = excluded.at",
    )
    .bind(email)
    .bind(reason)
    .bind(ts(now))
    .execute(&mut *tx)
    .await?;
    Ok(())
}
