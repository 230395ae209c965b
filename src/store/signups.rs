//! Web sign-ups and the keys of readers' links: a sign-up from the form
//! (pending memberships, and a `signups` row when a confirmation mail may
//! go), each subscriber's link key, and confirming a sign-up once.

use chrono::{DateTime, Utc};

use super::subscribers::{
    add_member_in, confirm_in, subscriber_email_in, AddOutcome, MembershipStatus, Origin,
};
use super::{parse_opt_ts, parse_ts, ts, During, Result, Store};
use crate::email::EmailAddress;

/// What a web sign-up came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signup {
    /// Mail a confirmation link for the sign-up `signup`, made with the
    /// subscriber's token `key`.
    Confirm { signup: i64, subscriber: i64, key: String },
    /// Send nothing, for this reason (never shown to the visitor).
    Quiet { why: &'static str },
}

/// What following a confirmation link did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Confirmed {
    pub email: String,
    /// The name the reader gave, if any.
    pub name: Option<String>,
    pub subscriber: i64,
    /// Lists confirmed now.
    pub newly: Vec<String>,
    /// Lists that were confirmed already.
    pub already: Vec<String>,
    /// Lists the reader left (or was removed from) after signing up: the
    /// link does not bring them back.
    pub left: Vec<String>,
}

/// A manage link that may be mailed now: to whom, and the key the link is
/// made with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManageMail {
    pub subscriber: i64,
    pub key: String,
}

/// The key a subscriber's links are made with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenKey {
    pub key: String,
    /// The subscriber existed before keys did: unsubscribe links mailed
    /// then (without the key) still work for them.
    pub legacy: bool,
}

/// A web sign-up that was mailed a confirmation link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignupRecord {
    pub id: i64,
    pub subscriber: i64,
    /// The subscriber's token key, which the link was made with.
    pub key: String,
    pub lists: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub confirmed_at: Option<DateTime<Utc>>,
}

impl Store {
    /// A sign-up from the web form: pending memberships of `lists` (through
    /// the same path as imports, so an unsubscribed or suppressed address is
    /// not added back), and whether a confirmation mail may go out now: not
    /// to a suppressed address, and not twice within `interval`.
    pub async fn web_signup(
        &self,
        email: &EmailAddress,
        name: Option<&str>,
        lists: &[&str],
        interval: chrono::Duration,
        now: DateTime<Utc>,
    ) -> Result<Signup> {
        async move {
            let mut tx = self.write_tx().await?;
            let mut subscriber = 0;
            for list in lists {
                let (id, outcome) = add_member_in(
                    &mut tx,
                    list,
                    email,
                    name,
                    Origin::Web,
                    MembershipStatus::Pending,
                    now,
                )
                .await?;
                subscriber = id;
                if let AddOutcome::RefusedSuppressed { .. } = outcome {
                    tx.commit().await?;
                    return Ok(Signup::Quiet { why: "the address is suppressed" });
                }
            }
            let may_send = sqlx::query(
                "UPDATE subscribers SET confirm_sent_at = $1
                 WHERE id = $2 AND (confirm_sent_at IS NULL OR confirm_sent_at <= $3)",
            )
            .bind(ts(now))
            .bind(subscriber)
            .bind(ts(now - interval))
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            if !may_send {
                tx.commit().await?;
                return Ok(Signup::Quiet {
                    why: "a confirmation mail went to the address recently",
                });
            }
            // The sign-up the link will name: it acts on these lists, once.
            let signup: i64 = sqlx::query_scalar(
                "INSERT INTO signups (subscriber, lists, created_at) VALUES ($1, $2, $3) RETURNING id",
            )
            .bind(subscriber)
            .bind(lists.join(","))
            .bind(ts(now))
            .fetch_one(&mut *tx)
            .await?;
            let key: String = sqlx::query_scalar("SELECT token_key FROM subscribers WHERE id = $1")
                .bind(subscriber)
                .fetch_one(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(Signup::Confirm { signup, subscriber, key })
        }
        .await
        .during(|| format!("recording the sign-up of {email}"))
    }

    /// Whether a manage link ("email me a link to manage my subscription")
    /// may be mailed to `email` now, marking it mailed when so: only to a
    /// subscriber herald knows, whose address is not suppressed, and not
    /// twice within `interval` (kept in the store, so it holds on every
    /// node). `None` in every other case, without saying which.
    pub async fn manage_mail(
        &self,
        email: &EmailAddress,
        interval: chrono::Duration,
        now: DateTime<Utc>,
    ) -> Result<Option<ManageMail>> {
        async move {
            let row: Option<(i64, String)> = sqlx::query_as(
                "UPDATE subscribers SET manage_sent_at = $1
                 WHERE email = $2 AND (manage_sent_at IS NULL OR manage_sent_at <= $3)
                   AND NOT EXISTS (SELECT 1 FROM suppressions x WHERE x.email = subscribers.email)
                 RETURNING id, token_key",
            )
            .bind(ts(now))
            .bind(email.as_str())
            .bind(ts(now - interval))
            .fetch_optional(&self.pool)
            .await?;
            Ok(row.map(|(subscriber, key)| ManageMail { subscriber, key }))
        }
        .await
        .during(|| format!("rationing the manage-link mail to {email}"))
    }

    /// The key of a subscriber's links; `None` when there is no such
    /// subscriber (never was, or forgotten).
    pub async fn token_key(&self, subscriber: i64) -> Result<Option<TokenKey>> {
        async move {
            let row: Option<(String, i64)> =
                sqlx::query_as("SELECT token_key, legacy_tokens FROM subscribers WHERE id = $1")
                    .bind(subscriber)
                    .fetch_optional(&self.pool)
                    .await?;
            Ok(row.map(|(key, legacy)| TokenKey { key, legacy: legacy != 0 }))
        }
        .await
        .during(|| format!("reading the link key of subscriber {subscriber}"))
    }

    /// A sign-up and the key of its subscriber; `None` when it is gone
    /// (the subscriber was forgotten) or never was.
    pub async fn signup(&self, id: i64) -> Result<Option<SignupRecord>> {
        async move {
            let row: Option<(i64, i64, String, String, String, Option<String>)> = sqlx::query_as(
                "SELECT g.id, g.subscriber, s.token_key, g.lists, g.created_at, g.confirmed_at
                 FROM signups g JOIN subscribers s ON s.id = g.subscriber WHERE g.id = $1",
            )
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
            row.map(|(id, subscriber, key, lists, created_at, confirmed_at)| {
                Ok(SignupRecord {
                    id,
                    subscriber,
                    key,
                    lists: lists.split(',').filter(|l| !l.is_empty()).map(str::to_owned).collect(),
                    created_at: parse_ts(&created_at)?,
                    confirmed_at: parse_opt_ts(confirmed_at)?,
                })
            })
            .transpose()
        }
        .await
        .during(|| format!("reading sign-up {id}"))
    }

    /// Confirms a sign-up's lists: the reader followed a link only their
    /// mailbox received. A list the reader had left *before* signing up is
    /// joined again (signing up is new consent); one they left or were
    /// removed from *after* it stays left. A sign-up confirms once: later
    /// uses change nothing. `None` when the subscriber is gone or suppressed.
    pub async fn confirm_signup(
        &self,
        signup: &SignupRecord,
        lists: &[&str],
        now: DateTime<Utc>,
    ) -> Result<Option<Confirmed>> {
        async move {
            let mut tx = self.write_tx().await?;
            let Some(email) = subscriber_email_in(&mut tx, signup.subscriber).await? else {
                return Ok(None);
            };
            let name: Option<String> =
                sqlx::query_scalar("SELECT name FROM subscribers WHERE id = $1")
                    .bind(signup.subscriber)
                    .fetch_one(&mut *tx)
                    .await?;
            let mut done =
                Confirmed { email, name, subscriber: signup.subscriber, ..Default::default() };
            let first_use = sqlx::query(
                "UPDATE signups SET confirmed_at = $1 WHERE id = $2 AND confirmed_at IS NULL",
            )
            .bind(ts(now))
            .bind(signup.id)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            for list in lists {
                let current: Option<(String, String)> = sqlx::query_as(
                    "SELECT status, changed_at FROM memberships WHERE list = $1 AND subscriber = $2",
                )
                .bind(list)
                .bind(signup.subscriber)
                .fetch_optional(&mut *tx)
                .await?;
                let joins = match &current {
                    Some((status, _)) if status == "confirmed" => {
                        done.already.push((*list).to_owned());
                        continue;
                    }
                    Some((status, _)) if status == "pending" => first_use,
                    // Left before this sign-up: the sign-up brings them back.
                    Some((_, changed_at)) => first_use && *changed_at <= ts(signup.created_at),
                    None => false,
                };
                if joins && confirm_in(&mut tx, list, signup.subscriber, now).await? {
                    done.newly.push((*list).to_owned());
                } else {
                    done.left.push((*list).to_owned());
                }
            }
            tx.commit().await?;
            Ok(Some(done))
        }
        .await
        .during(|| format!("confirming sign-up {} of subscriber {}", signup.id, signup.subscriber))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_store;

    #[tokio::test]
    async fn manage_mails_go_to_known_unsuppressed_readers_once_per_interval() {
        let (store, _dir) = test_store().await;
        let now: DateTime<Utc> = "2026-11-20T08:00:00Z".parse().unwrap();
        let hour = chrono::Duration::hours(1);
        let ann = EmailAddress::parse("ann@example.org").unwrap();
        let bob = EmailAddress::parse("bob@example.org").unwrap();
        for who in [&ann, &bob] {
            store
                .add_members(
                    "daily",
                    &[(who.clone(), None)],
                    Origin::Cli,
                    MembershipStatus::Confirmed,
                    now,
                )
                .await
                .unwrap();
        }
        let stranger = EmailAddress::parse("stranger@example.org").unwrap();
        assert_eq!(store.manage_mail(&stranger, hour, now).await.unwrap(), None);
        let first = store.manage_mail(&ann, hour, now).await.unwrap().expect("a known reader");
        assert_eq!(first.key, store.token_key(first.subscriber).await.unwrap().unwrap().key);
        // Within the interval: nothing; after it: again.
        let later = now + chrono::Duration::minutes(59);
        assert_eq!(store.manage_mail(&ann, hour, later).await.unwrap(), None);
        assert!(store.manage_mail(&ann, hour, now + hour).await.unwrap().is_some());
        // A suppressed address gets none, and its rationing is untouched.
        store.suppress(&bob, "hard bounce", now).await.unwrap();
        assert_eq!(store.manage_mail(&bob, hour, now).await.unwrap(), None);
    }
}
