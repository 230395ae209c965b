//! Subscribers, their memberships in lists, and suppressions.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{parse_ts, ts, During, Result, Store, StoreError};
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
    /// When the address first came to herald.
    pub created: DateTime<Utc>,
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
        async move {
            let mut tx = self.write_tx().await?;
            let mut counts = ImportCounts::default();
            let mut outcomes = Vec::with_capacity(members.len());
            for (email, name) in members {
                let (_, outcome) =
                    add_member_in(&mut tx, list, email, name.as_deref(), origin, status, now)
                        .await?;
                counts.count(&outcome);
                outcomes.push(outcome);
            }
            tx.commit().await?;
            Ok((counts, outcomes))
        }
        .await
        .during(|| format!("adding {} member(s) to list `{list}`", members.len()))
    }

    /// A subscriber's address and memberships (list, status); `None` when
    /// the subscriber is gone or suppressed.
    pub async fn memberships_of(
        &self,
        subscriber: i64,
    ) -> Result<Option<(String, Vec<(String, MembershipStatus)>)>> {
        async move {
            let mut conn = self.pool.acquire().await?;
            let Some(email) = subscriber_email_in(&mut conn, subscriber).await? else {
                return Ok(None);
            };
            let rows: Vec<(String, String)> = sqlx::query_as(
                "SELECT list, status FROM memberships WHERE subscriber = $1 ORDER BY list",
            )
            .bind(subscriber)
            .fetch_all(&mut *conn)
            .await?;
            let rows = rows
                .into_iter()
                .map(|(list, status)| Ok((list, MembershipStatus::parse(&status)?)))
                .collect::<Result<Vec<_>>>()?;
            Ok(Some((email, rows)))
        }
        .await
        .during(|| format!("reading the lists of subscriber {subscriber}"))
    }

    /// Sets which of `offered` lists a subscriber gets: those in `keep` are
    /// confirmed (the link came to their mailbox), the others unsubscribed.
    pub async fn set_lists(
        &self,
        subscriber: i64,
        offered: &[&str],
        keep: &[&str],
        now: DateTime<Utc>,
    ) -> Result<bool> {
        async move {
            let mut tx = self.write_tx().await?;
            if subscriber_email_in(&mut tx, subscriber).await?.is_none() {
                return Ok(false);
            }
            for list in offered {
                if keep.contains(list) {
                    confirm_in(&mut tx, list, subscriber, now).await?;
                } else {
                    sqlx::query(
                        "UPDATE memberships SET status = 'unsubscribed', changed_at = $3
                         WHERE list = $1 AND subscriber = $2 AND status <> 'unsubscribed'",
                    )
                    .bind(list)
                    .bind(subscriber)
                    .bind(ts(now))
                    .execute(&mut *tx)
                    .await?;
                }
            }
            tx.commit().await?;
            Ok(true)
        }
        .await
        .during(|| format!("setting the lists of subscriber {subscriber}"))
    }

    /// Deletes everything herald holds about an address (the subscriber,
    /// memberships, delivery records) and keeps only a hash of it among the
    /// suppressions, so no later import adds it back. Returns whether there
    /// was anything to delete.
    pub async fn forget(&self, email: &EmailAddress, now: DateTime<Utc>) -> Result<bool> {
        async move {
            if self.backend == super::Backend::Postgres {
                // PostgreSQL's VACUUM reclaims the deleted rows' space.
                let mut tx = self.write_tx().await?;
                let forgotten = forget_in(&mut tx, email, now).await?;
                tx.commit().await?;
                return Ok(forgotten);
            }
            use sqlx::Connection;
            let mut conn = self.pool.acquire().await?;
            // Deleted rows are overwritten with zeros, not left in free space.
            sqlx::query("PRAGMA secure_delete = ON").execute(&mut *conn).await?;
            let forgotten = async {
                let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
                let forgotten = forget_in(&mut tx, email, now).await?;
                tx.commit().await?;
                Ok::<_, super::StoreError>(forgotten)
            }
            .await;
            sqlx::query("PRAGMA secure_delete = OFF").execute(&mut *conn).await?;
            let forgotten = forgotten?;
            // Older copies of the pages are still in the WAL: copy the new ones
            // over and empty it (it waits for no one; a busy WAL is emptied by
            // the next checkpoint).
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&mut *conn).await?;
            Ok(forgotten)
        }
        .await
        .during(|| format!("forgetting {email}"))
    }

    /// Marks a membership unsubscribed. Returns false when the address was
    /// not a member of the list (or had already left).
    pub async fn unsubscribe(
        &self,
        list: &str,
        email: &EmailAddress,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        async move {
            let done = sqlx::query(
                "UPDATE memberships SET status = 'unsubscribed', changed_at = $1
                 WHERE list = $2 AND status <> 'unsubscribed'
                   AND subscriber = (SELECT id FROM subscribers WHERE email = $3)",
            )
            .bind(ts(now))
            .bind(list)
            .bind(email.as_str())
            .execute(&self.pool)
            .await?;
            Ok(done.rows_affected() > 0)
        }
        .await
        .during(|| format!("unsubscribing {email} from list `{list}`"))
    }

    /// Unsubscribes by subscriber id (the unsubscribe link carries the id).
    pub async fn unsubscribe_id(
        &self,
        list: &str,
        subscriber: i64,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        async move {
            let done = sqlx::query(
                "UPDATE memberships SET status = 'unsubscribed', changed_at = $1
                 WHERE list = $2 AND subscriber = $3 AND status <> 'unsubscribed'",
            )
            .bind(ts(now))
            .bind(list)
            .bind(subscriber)
            .execute(&self.pool)
            .await?;
            Ok(done.rows_affected() > 0)
        }
        .await
        .during(|| format!("unsubscribing subscriber {subscriber} from list `{list}`"))
    }

    pub async fn suppress(
        &self,
        email: &EmailAddress,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        async move {
            sqlx::query(
                "INSERT INTO suppressions (email, reason, at) VALUES ($1, $2, $3)
                 ON CONFLICT (email) DO UPDATE SET reason = excluded.reason, at = excluded.at",
            )
            .bind(email.as_str())
            .bind(reason)
            .bind(ts(now))
            .execute(&self.pool)
            .await?;
            Ok(())
        }
        .await
        .during(|| format!("suppressing {email}"))
    }

    /// Sets the time zones of readers (IANA names; `None` clears one, so the
    /// reader's lists' zones apply). Addresses that are not subscribers are
    /// passed over.
    pub async fn set_time_zones(&self, zones: &[(&str, Option<&str>)]) -> Result<()> {
        if zones.is_empty() {
            return Ok(());
        }
        async move {
            let mut tx = self.write_tx().await?;
            for (email, zone) in zones {
                sqlx::query(
                    "UPDATE subscribers SET timezone = $1 WHERE email = $2
                       AND (timezone IS NULL OR $1 IS NULL OR timezone <> $1)",
                )
                .bind(*zone)
                .bind(*email)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(())
        }
        .await
        .during(|| format!("setting the time zones of {} reader(s)", zones.len()))
    }

    /// A reader's time zone, when they have one.
    pub async fn time_zone(&self, subscriber: i64) -> Result<Option<String>> {
        async move {
            Ok(sqlx::query_scalar::<_, Option<String>>(
                "SELECT timezone FROM subscribers WHERE id = $1",
            )
            .bind(subscriber)
            .fetch_optional(&self.pool)
            .await?
            .flatten())
        }
        .await
        .during(|| format!("reading the time zone of subscriber {subscriber}"))
    }

    /// Members of `list` (or of every list), ordered by list then address.
    pub async fn members(&self, list: Option<&str>) -> Result<Vec<Member>> {
        async move {
            let rows = sqlx::query(
                "SELECT s.id, s.email, s.name, s.created, m.list, m.status, m.origin, m.changed_at
                 FROM memberships m JOIN subscribers s ON s.id = m.subscriber
                 WHERE $1 IS NULL OR m.list = $1
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
                        created: parse_ts(&r.try_get::<String, _>("created")?)?,
                        changed_at: parse_ts(&r.try_get::<String, _>("changed_at")?)?,
                    })
                })
                .collect::<Result<Vec<_>>>()
        }
        .await
        .during(|| {
            format!(
                "listing the members of {}",
                list.map_or("every list".to_owned(), |l| format!("list `{l}`"))
            )
        })
    }

    /// The number of confirmed, unsuppressed members of `list`.
    pub async fn audience(&self, list: &str) -> Result<i64> {
        async move {
            Ok(sqlx::query_scalar(
                "SELECT COUNT(*) FROM memberships m JOIN subscribers s ON s.id = m.subscriber
                 WHERE m.list = $1 AND m.status = 'confirmed'
                   AND NOT EXISTS (SELECT 1 FROM suppressions x WHERE x.email = s.email)",
            )
            .bind(list)
            .fetch_one(&self.pool)
            .await?)
        }
        .await
        .during(|| format!("counting the readers of list `{list}`"))
    }
}

/// Deletes a subscriber and what refers to it, inside the caller's transaction.
async fn forget_in(
    tx: &mut sqlx::AnyConnection,
    email: &EmailAddress,
    now: DateTime<Utc>,
) -> Result<bool> {
    let id: Option<i64> = sqlx::query_scalar("SELECT id FROM subscribers WHERE email = $1")
        .bind(email.as_str())
        .fetch_optional(&mut *tx)
        .await?;
    if let Some(id) = id {
        for sql in [
            "DELETE FROM signups WHERE subscriber = $1",
            "DELETE FROM reader_clicks WHERE subscriber = $1",
            "DELETE FROM bounce_events WHERE subscriber = $1",
            "DELETE FROM deliveries WHERE subscriber = $1",
            "DELETE FROM memberships WHERE subscriber = $1",
            "DELETE FROM subscribers WHERE id = $1",
        ] {
            sqlx::query(sql).bind(id).execute(&mut *tx).await?;
        }
    }
    sqlx::query("DELETE FROM bounce_events WHERE email = $1")
        .bind(email.as_str())
        .execute(&mut *tx)
        .await?;
    let suppressed = sqlx::query("DELETE FROM suppressions WHERE email = $1")
        .bind(email.as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected();
    sqlx::query(
        "INSERT INTO suppressions (email, reason, at) VALUES ($1, 'forgotten at their request', $2)
         ON CONFLICT (email) DO NOTHING",
    )
    .bind(forgotten_key(email))
    .bind(ts(now))
    .execute(&mut *tx)
    .await?;
    Ok(id.is_some() || suppressed > 0)
}

/// A fresh key for a new subscriber's links: 128 random bits.
fn new_token_key() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// The key a forgotten address is suppressed under: a hash, not the address.
fn forgotten_key(email: &EmailAddress) -> String {
    use sha2::{Digest, Sha256};
    format!("sha256:{}", hex::encode(Sha256::digest(email.as_str().as_bytes())))
}

/// Makes `subscriber` a confirmed member of `list` (the reader's own
/// consent, through a link only their mailbox got); whether it changed.
pub(super) async fn confirm_in(
    conn: &mut sqlx::AnyConnection,
    list: &str,
    subscriber: i64,
    now: DateTime<Utc>,
) -> Result<bool> {
    let changed = sqlx::query(
        "INSERT INTO memberships (list, subscriber, status, changed_at, origin)
         VALUES ($1, $2, 'confirmed', $3, 'web')
         ON CONFLICT (list, subscriber) DO UPDATE SET status = 'confirmed', changed_at = $3
         WHERE memberships.status <> 'confirmed'",
    )
    .bind(list)
    .bind(subscriber)
    .bind(ts(now))
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(changed == 1)
}

pub(super) async fn subscriber_email_in(
    conn: &mut sqlx::AnyConnection,
    subscriber: i64,
) -> Result<Option<String>> {
    Ok(sqlx::query_scalar(
        "SELECT s.email FROM subscribers s WHERE s.id = $1
           AND NOT EXISTS (SELECT 1 FROM suppressions x WHERE x.email = s.email)",
    )
    .bind(subscriber)
    .fetch_optional(&mut *conn)
    .await?)
}

/// Adds one address to `list` within `tx`: the one subscribe path of the
/// CSV files, the CLI and the web form. Returns the subscriber id and what
/// happened.
pub(super) async fn add_member_in(
    tx: &mut sqlx::AnyConnection,
    list: &str,
    email: &EmailAddress,
    name: Option<&str>,
    origin: Origin,
    status: MembershipStatus,
    now: DateTime<Utc>,
) -> Result<(i64, AddOutcome)> {
    let now = ts(now);
    let forgotten = forgotten_key(email);
    // A new subscriber gets a key for their links; an existing one keeps theirs.
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO subscribers (email, name, created, token_key) VALUES ($1, $2, $3, $4)
         ON CONFLICT (email) DO UPDATE SET name = COALESCE(excluded.name, subscribers.name)
         RETURNING id",
    )
    .bind(email.as_str())
    .bind(name)
    .bind(&now)
    .bind(new_token_key())
    .fetch_one(&mut *tx)
    .await?;
    // The common case, a new member who is not suppressed, takes one
    // statement; anything else is looked at below.
    let inserted = sqlx::query(
        "INSERT INTO memberships (list, subscriber, status, changed_at, origin)
         SELECT $1, $2, $3, $4, $5
         WHERE NOT EXISTS (SELECT 1 FROM suppressions WHERE email IN ($6, $7))
         ON CONFLICT (list, subscriber) DO NOTHING",
    )
    .bind(list)
    .bind(id)
    .bind(status.as_str())
    .bind(&now)
    .bind(origin.as_str())
    .bind(email.as_str())
    .bind(&forgotten)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let outcome = if inserted == 1 {
        AddOutcome::Added
    } else if let Some(reason) = sqlx::query_scalar::<_, String>(
        "SELECT reason FROM suppressions WHERE email IN ($1, $2) LIMIT 1",
    )
    .bind(email.as_str())
    .bind(&forgotten)
    .fetch_optional(&mut *tx)
    .await?
    {
        AddOutcome::RefusedSuppressed { reason }
    } else {
        let current: String = sqlx::query_scalar(
            "SELECT status FROM memberships WHERE list = $1 AND subscriber = $2",
        )
        .bind(list)
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        match MembershipStatus::parse(&current)? {
            MembershipStatus::Pending if status == MembershipStatus::Confirmed => {
                sqlx::query(
                    "UPDATE memberships SET status = 'confirmed', changed_at = $1
                     WHERE list = $2 AND subscriber = $3",
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
    Ok((id, outcome))
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

    #[tokio::test]
    async fn ids_are_never_given_again_and_every_reader_has_a_key() {
        let (store, _dir) = test_store().await;
        let now = Utc::now();
        let rows = vec![(addr("a@example.com"), None), (addr("b@example.com"), None)];
        store
            .add_members("daily", &rows, Origin::Cli, MembershipStatus::Confirmed, now)
            .await
            .unwrap();
        let a = store.token_key(1).await.unwrap().unwrap();
        assert!(!a.legacy && a.key.len() == 32, "{a:?}");
        assert_ne!(a.key, store.token_key(2).await.unwrap().unwrap().key);
        let rows = vec![(addr("c@example.com"), None)];
        store
            .add_members("daily", &rows, Origin::Cli, MembershipStatus::Confirmed, now)
            .await
            .unwrap();
        let c = store.members(Some("daily")).await.unwrap();
        let c = c.iter().find(|m| m.email == "c@example.com").unwrap().subscriber_id;
        assert_eq!(c, 3);
        assert!(!store.token_key(c).await.unwrap().unwrap().legacy);
        // The newest reader is forgotten; the next one does not get the id.
        assert!(store.forget(&addr("c@example.com"), now).await.unwrap());
        let rows = vec![(addr("d@example.com"), None)];
        store
            .add_members("daily", &rows, Origin::Cli, MembershipStatus::Confirmed, now)
            .await
            .unwrap();
        let d = store.members(Some("daily")).await.unwrap();
        let d = d.iter().find(|m| m.email == "d@example.com").unwrap().subscriber_id;
        assert_eq!(d, 4, "a forgotten reader's id is never given to another");
        assert!(store.token_key(c).await.unwrap().is_none());
    }
}
