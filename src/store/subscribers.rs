//! Subscribers, their memberships in lists, and suppressions.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{parse_ts, ts, Result, Store, StoreError};
use crate::email::EmailAddress;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Csv,
    Web,
    Cli,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Csv => "csv",
            Origin::Web => "web",
            Origin::Cli => "cli",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MembershipStatus {
    Pending,
    Confirmed,
    Unsubscribed,
}

impl MembershipStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MembershipStatus::Pending => "pending",
            MembershipStatus::Confirmed => "confirmed",
            MembershipStatus::Unsubscribed => "unsubscribed",
        }
    }

    fn parse(s: &str) -> Result<Self> {
        match s {
            "pending" => Ok(Self::Pending),
            "confirmed" => Ok(Self::Confirmed),
            "unsubscribed" => Ok(Self::Unsubscribed),
            other => Err(StoreError::Corrupt(format!("membership status `{other}`"))),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Member {
    pub subscriber_id: i64,
    pub email: String,
    pub name: Option<String>,
    pub list: String,
    pub status: MembershipStatus,
    pub origin: String,
    pub changed_at: DateTime<Utc>,
}

/// What adding one address to a list did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddOutcome {
    Added,
    /// A pending sign-up that the operator's import or command confirmed.
    Confirmed,
    AlreadyMember,
    /// The address left this list; herald never re-subscribes it.
    RefusedUnsubscribed,
    /// The address is suppressed (bounced or complained); it gets no mail.
    RefusedSuppressed {
        reason: String,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportCounts {
    pub added: usize,
    pub confirmed: usize,
    pub already: usize,
    pub refused_unsubscribed: usize,
    pub refused_suppressed: usize,
}

impl ImportCounts {
    fn count(&mut self, outcome: &AddOutcome) {
        match outcome {
            AddOutcome::Added => self.added += 1,
            AddOutcome::Confirmed => self.confirmed += 1,
            AddOutcome::AlreadyMember => self.already += 1,
            AddOutcome::RefusedUnsubscribed => self.refused_unsubscribed += 1,
            AddOutcome::RefusedSuppressed { .. } => self.refused_suppressed += 1,
        }
    }
}

impl Store {
    /// Adds members to `list` in one transaction. `status` is what a new
    /// member gets: operators' imports are confirmed, web sign-ups pending.
    /// Unsubscribed and suppressed addresses are never added back.
    pub async fn add_members(
        &self,
        list: &str,
        members: &[(EmailAddress, Option<String>)],
        origin: Origin,
        status: MembershipStatus,
        now: DateTime<Utc>,
    ) -> Result<(ImportCounts, Vec<AddOutcome>)> {
        let mut tx = self.write_tx().await?;
        let mut counts = ImportCounts::default();
        let mut outcomes = Vec::with_capacity(members.len());
        let now = ts(now);
        for (email, name) in members {
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO subscribers (email, name, created) VALUES (?, ?, ?)
                 ON CONFLICT (email) DO UPDATE SET name = COALESCE(excluded.name, subscribers.name)
                 RETURNING id",
            )
            .bind(email.as_str())
            .bind(name)
            .bind(&now)
            .fetch_one(&mut *tx)
            .await?;
            // The common case, a new member who is not suppressed, takes one
            // statement; anything else is looked at below.
            let inserted = sqlx::query(
                "INSERT INTO memberships (list, subscriber, status, changed_at, origin)
                 SELECT ?, ?, ?, ?, ?
                 WHERE NOT EXISTS (SELECT 1 FROM suppressions WHERE email = ?)
                 ON CONFLICT (list, subscriber) DO NOTHING",
            )
            .bind(list)
            .bind(id)
            .bind(status.as_str())
            .bind(&now)
            .bind(origin.as_str())
            .bind(email.as_str())
            .execute(&mut *tx)
            .await?
            .rows_affected();
            let outcome = if inserted == 1 {
                AddOutcome::Added
            } else if let Some(reason) =
                sqlx::query_scalar::<_, String>("SELECT reason FROM suppressions WHERE email = ?")
                    .bind(email.as_str())
                    .fetch_optional(&mut *tx)
                    .await?
            {
                AddOutcome::RefusedSuppressed { reason }
            } else {
                let current: String = sqlx::query_scalar(
                    "SELECT status FROM memberships WHERE list = ? AND subscriber = ?",
                )
                .bind(list)
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
                match MembershipStatus::parse(&current)? {
                    MembershipStatus::Pending if status == MembershipStatus::Confirmed => {
                        sqlx::query(
                            "UPDATE memberships SET status = 'confirmed', changed_at = ?
                             WHERE list = ? AND subscriber = ?",
                        )
                        .bind(&now)
                        .bind(list)
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                        AddOutcome::Confirmed
                    }
                    MembershipStatus::Unsubscribed => AddOutcome::RefusedUnsubscribed,
                    _ => AddOutcome::AlreadyMember,
                }
            };
            counts.count(&outcome);
            outcomes.push(outcome);
        }
        tx.commit().await?;
        Ok((counts, outcomes))
    }

    /// Marks a membership unsubscribed. Returns false when the address was
    /// not a member of the list (or had already left).
    pub async fn unsubscribe(
        &self,
        list: &str,
        email: &EmailAddress,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE memberships SET status = 'unsubscribed', changed_at = ?
             WHERE list = ? AND status <> 'unsubscribed'
               AND subscriber = (SELECT id FROM subscribers WHERE email = ?)",
        )
        .bind(ts(now))
        .bind(list)
        .bind(email.as_str())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Unsubscribes by subscriber id (the unsubscribe link carries the id).
    pub async fn unsubscribe_id(
        &self,
        list: &str,
        subscriber: i64,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE memberships SET status = 'unsubscribed', changed_at = ?
             WHERE list = ? AND subscriber = ? AND status <> 'unsubscribed'",
        )
        .bind(ts(now))
        .bind(list)
        .bind(subscriber)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn suppress(
        &self,
        email: &EmailAddress,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO suppressions (email, reason, at) VALUES (?, ?, ?)
             ON CONFLICT (email) DO UPDATE SET reason = excluded.reason, at = excluded.at",
        )
        .bind(email.as_str())
        .bind(reason)
        .bind(ts(now))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Counts a hard bounce for a subscriber; at `threshold` bounces the
    /// address is suppressed. Returns whether it is now suppressed.
    pub async fn record_hard_bounce(
        &self,
        subscriber: i64,
        reason: &str,
        threshold: u32,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let mut tx = self.write_tx().await?;
        let (email, bounces): (String, i64) = sqlx::query_as(
            "UPDATE subscribers SET hard_bounces = hard_bounces + 1 WHERE id = ? RETURNING email, hard_bounces",
        )
        .bind(subscriber)
        .fetch_one(&mut *tx)
        .await?;
        let suppressed = bounces >= i64::from(threshold);
        if suppressed {
            sqlx::query(
                "INSERT INTO suppressions (email, reason, at) VALUES (?, ?, ?)
                 ON CONFLICT (email) DO UPDATE SET reason = excluded.reason, at = excluded.at",
            )
            .bind(&email)
            .bind(format!("{bounces} hard bounce(s), last: {reason}"))
            .bind(ts(now))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(suppressed)
    }

    /// Members of `list` (or of every list), ordered by list then address.
    pub async fn members(&self, list: Option<&str>) -> Result<Vec<Member>> {
        let rows = sqlx::query(
            "SELECT s.id, s.email, s.name, m.list, m.status, m.origin, m.changed_at
             FROM memberships m JOIN subscribers s ON s.id = m.subscriber
             WHERE ?1 IS NULL OR m.list = ?1
             ORDER BY m.list, s.email",
        )
        .bind(list)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok(Member {
                    subscriber_id: r.try_get("id")?,
                    email: r.try_get("email")?,
                    name: r.try_get("name")?,
                    list: r.try_get("list")?,
                    status: MembershipStatus::parse(&r.try_get::<String, _>("status")?)?,
                    origin: r.try_get("origin")?,
                    changed_at: parse_ts(&r.try_get::<String, _>("changed_at")?)?,
                })
            })
            .collect()
    }

    /// The number of confirmed, unsuppressed members of `list`.
    pub async fn audience(&self, list: &str) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM memberships m JOIN subscribers s ON s.id = m.subscriber
             WHERE m.list = ? AND m.status = 'confirmed'
               AND NOT EXISTS (SELECT 1 FROM suppressions x WHERE x.email = s.email)",
        )
        .bind(list)
        .fetch_one(&self.pool)
        .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_store;

    fn addr(s: &str) -> EmailAddress {
        EmailAddress::parse(s).unwrap()
    }

    #[tokio::test]
    async fn unsubscribed_and_suppressed_stay_out() {
        let (store, _dir) = test_store().await;
        let now = Utc::now();
        let rows = vec![(addr("a@example.com"), Some("A".into())), (addr("b@example.com"), None)];
        let (counts, _) = store
            .add_members("daily", &rows, Origin::Csv, MembershipStatus::Confirmed, now)
            .await
            .unwrap();
        assert_eq!(counts.added, 2);
        assert_eq!(store.audience("daily").await.unwrap(), 2);

        assert!(store.unsubscribe("daily", &addr("a@example.com"), now).await.unwrap());
        store.suppress(&addr("b@example.com"), "5.1.1 user unknown", now).await.unwrap();
        assert_eq!(store.audience("daily").await.unwrap(), 0);

        let (counts, _) = store
            .add_members("daily", &rows, Origin::Csv, MembershipStatus::Confirmed, now)
            .await
            .unwrap();
        assert_eq!(counts.refused_unsubscribed, 1);
        assert_eq!(counts.refused_suppressed, 1);
        assert_eq!(counts.added, 0);
        assert_eq!(store.audience("daily").await.unwrap(), 0);
    }

    #[tokio::test]
    async fn operator_import_confirms_pending_signups() {
        let (store, _dir) = test_store().await;
        let now = Utc::now();
        let rows = vec![(addr("c@example.com"), None)];
        store
            .add_members("daily", &rows, Origin::Web, MembershipStatus::Pending, now)
            .await
            .unwrap();
        assert_eq!(store.audience("daily").await.unwrap(), 0);
        let (counts, _) = store
            .add_members("daily", &rows, Origin::Csv, MembershipStatus::Confirmed, now)
            .await
            .unwrap();
        assert_eq!(counts.confirmed, 1);
        assert_eq!(store.audience("daily").await.unwrap(), 1);
    }
}
