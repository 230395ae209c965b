//! Editions (one per list and date) and the delivery ledger (one row per
//! edition and subscriber). The ledger is what makes delivery resumable: a
//! row is `sent` only after the server accepted the message.

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{parse_ts, ts, During, Result, Store, StoreError};

#[derive(Debug, Clone)]
pub struct NewEdition {
    pub list: String,
    pub edition_date: NaiveDate,
    pub subject: String,
    /// The edition rendered for the web (no subscriber): the archive copy.
    pub html: String,
    pub text: String,
    pub article_ids: Vec<i64>,
    /// Every article compose read for the edition (see
    /// `Store::unconsidered_articles`), `article_ids` among them: stored
    /// with the edition, they are never new for the list again.
    pub considered: Vec<i64>,
    pub composed_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct Edition {
    pub id: i64,
    pub list: String,
    pub edition_date: NaiveDate,
    pub subject: String,
    pub html: String,
    pub text: String,
    pub article_ids: Vec<i64>,
    /// The highest article id the edition considered (0 when none), for
    /// information: what is new for a list is what it has not considered.
    /// Editions from before that rule hold the highest article id stored
    /// when they were composed.
    pub article_cursor: i64,
    pub done: bool,
    pub composed_at: DateTime<Utc>,
}

/// What became of one send attempt, as the ledger records it.
#[derive(Debug, Clone, Copy)]
pub enum DeliveryOutcome<'a> {
    /// The server accepted the message at `at` with `reply`.
    Sent { reply: &'a str, at: DateTime<Utc> },
    /// A temporary failure: due again at `next`.
    Retry { error: &'a str, next: DateTime<Utc> },
    /// A permanent failure, or attempts exhausted.
    Failed { error: &'a str },
}

/// A delivery row claimed for sending, with what the message needs.
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    pub subscriber: i64,
    pub email: String,
    pub name: Option<String>,
    /// The key the reader's links are made with.
    pub token_key: String,
    pub message_id: String,
    /// Attempts including this one.
    pub attempts: i64,
}

/// One ledger row, for people.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeliveryRow {
    pub list: String,
    pub edition_date: String,
    pub email: String,
    pub state: String,
    pub attempts: i64,
    pub next_attempt_at: Option<String>,
    pub last_error: Option<String>,
    pub reply: Option<String>,
    pub sent_at: Option<String>,
    pub message_id: String,
}

#[derive(Debug, Clone, Default, sqlx::FromRow)]
pub struct DeliveryCounts {
    pub list: String,
    pub edition_date: String,
    pub pending: i64,
    pub sending: i64,
    pub sent: i64,
    pub failed: i64,
    pub skipped: i64,
    pub next_attempt_at: Option<String>,
}

/// Whether a delivery row `d` may be claimed at the time `at` of the run's
/// clock, the system clock reading `wall` (both placeholders): pending (or
/// waiting for the reader's hour) and due, or claimed by a node whose claim expired (it died, or lost the
/// store). Claims run on the system clock, as the nodes' heartbeats do.
/// (`claim_deliveries` reads the two halves apart, to read them in order.)
fn due(at: &str, wall: &str) -> String {
    format!(
        "((d.state IN ('pending', 'waiting') AND (d.next_attempt_at IS NULL OR d.next_attempt_at <= {at}))
          OR (d.state = 'sending' AND d.claim_until < {wall}))"
    )
}

/// For each time zone of an edition's readers (`None`: readers without
/// one), until when their rows wait (`None`: due at once).
pub type Hold<'a> = dyn Fn(Option<&str>) -> Option<DateTime<Utc>> + Sync + 'a;

/// Who claims delivery rows, and for how long.
#[derive(Debug, Clone, Copy)]
pub struct Claimant<'a> {
    /// The node's id.
    pub node: &'a str,
    /// The system clock now.
    pub wall: DateTime<Utc>,
    /// When the claims expire unless the node's heartbeat extends them.
    pub until: DateTime<Utc>,
}

const COLUMNS: &str =
    "id, list, edition_date, subject, html, text, article_ids, article_cursor, state, composed_at";

fn from_row(r: &AnyRow) -> Result<Edition> {
    let date: String = r.try_get("edition_date")?;
    let ids: String = r.try_get("article_ids")?;
    Ok(Edition {
        id: r.try_get("id")?,
        list: r.try_get("list")?,
        edition_date: date
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("edition date `{date}`")))?,
        subject: r.try_get("subject")?,
        html: r.try_get("html")?,
        text: r.try_get("text")?,
        article_ids: serde_json::from_str(&ids)
            .map_err(|_| StoreError::Corrupt(format!("article ids `{ids}`")))?,
        article_cursor: r.try_get("article_cursor")?,
        done: r.try_get::<String, _>("state")? == "done",
        composed_at: parse_ts(&r.try_get::<String, _>("composed_at")?)?,
    })
}

impl Store {
    /// Stores a new edition, the articles it considered as considered by
    /// the list, and its delivery ledger (one pending row per confirmed,
    /// unsuppressed member) in one transaction. Returns `None` when the list
    /// already has an edition for that date. An article the list has
    /// considered already (another edition of it was stored since compose
    /// read) fails the call, and nothing is stored: no article goes into
    /// two editions of a list.
    pub async fn create_edition(
        &self,
        new: &NewEdition,
        message_id_domain: &str,
    ) -> Result<Option<(Edition, u64)>> {
        self.create_edition_held(new, message_id_domain, None).await
    }

    /// [`Store::create_edition`], where `hold` says, for each time zone of
    /// the edition's readers (`None`: readers without one), until when
    /// their rows wait (`None`: due at once). Held rows are `waiting`, due
    /// at `next_attempt_at`, and become pending then
    /// ([`Store::release_waiting`]); all in the edition's transaction.
    pub async fn create_edition_held(
        &self,
        new: &NewEdition,
        message_id_domain: &str,
        hold: Option<&Hold<'_>>,
    ) -> Result<Option<(Edition, u64)>> {
        async move {
            let mut tx = self.write_tx().await?;
            let date = new.edition_date.to_string();
            let id: Option<i64> = sqlx::query_scalar(
                "INSERT INTO editions (list, edition_date, subject, html, text, article_ids, article_cursor, state, composed_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 'sending', $8)
                 ON CONFLICT (list, edition_date) DO NOTHING
                 RETURNING id",
            )
            .bind(&new.list)
            .bind(&date)
            .bind(&new.subject)
            .bind(&new.html)
            .bind(&new.text)
            .bind(serde_json::to_string(&new.article_ids).unwrap_or_else(|_| "[]".into()))
            .bind(new.considered.iter().copied().max().unwrap_or(0))
            .bind(ts(new.composed_at))
            .fetch_optional(&mut *tx)
            .await?;
            let Some(id) = id else {
                return Ok(None);
            };
            // Many rows a statement: a list's first edition considers every
            // stored article.
            for chunk in new.considered.chunks(500) {
                let rows = super::rows(1, chunk.len(), 2);
                let sql = format!("INSERT INTO list_articles (list, article) VALUES {rows}");
                let mut q = sqlx::query(&sql);
                for article in chunk {
                    q = q.bind(&new.list).bind(article);
                }
                q.execute(&mut *tx).await?;
            }
            // The Message-ID is derived from edition and subscriber, so every
            // attempt (and a resend after a crash) carries the same one.
            let recipients = sqlx::query(
                "INSERT INTO deliveries (edition, subscriber, state, message_id)
                 SELECT $1, m.subscriber, 'pending',
                        '<herald.' || $2 || '.' || $3 || '.' || m.subscriber || '@' || $4 || '>'
                 FROM memberships m JOIN subscribers s ON s.id = m.subscriber
                 WHERE m.list = $5 AND m.status = 'confirmed'
                   AND NOT EXISTS (SELECT 1 FROM suppressions x WHERE x.email = s.email)
                 ON CONFLICT (edition, subscriber) DO NOTHING",
            )
            .bind(id)
            .bind(&new.list)
            .bind(new.edition_date.format("%Y%m%d").to_string())
            .bind(message_id_domain)
            .bind(&new.list)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if let Some(hold) = hold {
                let zones: Vec<Option<String>> = sqlx::query_scalar(
                    "SELECT DISTINCT s.timezone FROM deliveries d JOIN subscribers s ON s.id = d.subscriber
                     WHERE d.edition = $1",
                )
                .bind(id)
                .fetch_all(&mut *tx)
                .await?;
                for zone in zones {
                    let Some(until) = hold(zone.as_deref()) else { continue };
                    let readers = match zone {
                        Some(_) => "SELECT id FROM subscribers WHERE timezone = $3",
                        None => "SELECT id FROM subscribers WHERE timezone IS NULL",
                    };
                    let sql = format!(
                        "UPDATE deliveries SET state = 'waiting', next_attempt_at = $2
                         WHERE edition = $1 AND state = 'pending' AND subscriber IN ({readers})"
                    );
                    let mut q = sqlx::query(&sql).bind(id).bind(ts(until));
                    if let Some(zone) = &zone {
                        q = q.bind(zone);
                    }
                    q.execute(&mut *tx).await?;
                }
            }
            tx.commit().await?;
            if self.backend == super::Backend::Postgres {
                // PostgreSQL plans the claims from its statistics of these
                // tables, which are from before the new ledger rows (and before
                // the readers just imported) until autovacuum comes by: it would
                // take a new edition of a million rows, or a list of a million
                // readers, for a few rows, and read and sort them all for each
                // claim.
                let analyze = "ANALYZE deliveries, memberships, subscribers";
                if let Err(e) = sqlx::query(analyze).execute(&self.pool).await {
                    tracing::warn!("cannot refresh the statistics of the delivery ledger: {e}");
                }
            }
            let edition = self.edition_by_id(id).await?;
            Ok(Some((edition, recipients)))
        }
        .await
        .during(|| format!("storing the edition {} of list `{}` and its deliveries", new.edition_date, new.list))
    }

    pub async fn edition_by_id(&self, id: i64) -> Result<Edition> {
        async move {
            let row = sqlx::query(&format!("SELECT {COLUMNS} FROM editions WHERE id = $1"))
                .bind(id)
                .fetch_one(&self.pool)
                .await?;
            from_row(&row)
        }
        .await
        .during(|| format!("reading edition {id}"))
    }

    pub async fn edition(&self, list: &str, date: NaiveDate) -> Result<Option<Edition>> {
        async move {
            let row = sqlx::query(&format!(
                "SELECT {COLUMNS} FROM editions WHERE list = $1 AND edition_date = $2"
            ))
            .bind(list)
            .bind(date.to_string())
            .fetch_optional(&self.pool)
            .await?;
            row.as_ref().map(from_row).transpose()
        }
        .await
        .during(|| format!("reading the edition {date} of list `{list}`"))
    }

    /// The list's most recent edition.
    pub async fn last_edition(&self, list: &str) -> Result<Option<Edition>> {
        async move {
            let row = sqlx::query(&format!(
                "SELECT {COLUMNS} FROM editions WHERE list = $1 ORDER BY edition_date DESC LIMIT 1"
            ))
            .bind(list)
            .fetch_optional(&self.pool)
            .await?;
            row.as_ref().map(from_row).transpose()
        }
        .await
        .during(|| format!("reading the last edition of list `{list}`"))
    }

    /// Editions whose sending is not finished, oldest first.
    pub async fn editions_in_progress(&self) -> Result<Vec<Edition>> {
        async move {
            let rows = sqlx::query(&format!(
                "SELECT {COLUMNS} FROM editions WHERE state = 'sending' ORDER BY edition_date, id"
            ))
            .fetch_all(&self.pool)
            .await?;
            rows.iter().map(from_row).collect::<Result<Vec<_>>>()
        }
        .await
        .during(|| "listing the editions still being sent".to_owned())
    }

    /// The ids of every edition, newest first (by date, then list): the
    /// order of the public edition archive. Ids only, so the archive holds
    /// one edition's HTML in memory at a time.
    pub async fn edition_ids_newest_first(&self) -> Result<Vec<i64>> {
        async move {
            Ok(sqlx::query_scalar("SELECT id FROM editions ORDER BY edition_date DESC, list ASC")
                .fetch_all(&self.pool)
                .await?)
        }
        .await
        .during(|| "listing the editions".to_owned())
    }

    /// Claims up to `limit` due rows of an edition for sending, for the
    /// node `node` until `until`: marks them `sending` and counts the
    /// attempt. Due are pending rows whose time has come, and rows whose
    /// claim expired (their node died). Members who left the list or were
    /// suppressed since the edition was composed are marked `skipped`.
    ///
    /// Never hands one row to two nodes: on SQLite the claim holds the
    /// write lock; on PostgreSQL it locks the rows it reads and passes over
    /// rows another node is claiming (`FOR UPDATE SKIP LOCKED`), so nodes
    /// claim side by side without waiting for each other.
    pub async fn claim_deliveries(
        &self,
        edition: &Edition,
        now: DateTime<Utc>,
        limit: usize,
        claimant: &Claimant<'_>,
    ) -> Result<Vec<ClaimedDelivery>> {
        let Claimant { node, wall, until } = *claimant;
        async move {
            let mut tx = match self.backend {
                super::Backend::Sqlite => self.write_tx().await?,
                super::Backend::Postgres => self.pool.begin().await?,
            };
            let lock = self.backend.pick("", "FOR UPDATE OF d SKIP LOCKED");
            // A batch of only departed readers is marked and the next one read,
            // so an empty result always means nothing is due.
            loop {
                // Only the rows claimed now are looked at, so a claim costs the same
                // at the first and at the millionth reader: the two kinds of due
                // rows (`due`) are read apart, each from an index of its own
                // (`deliveries_pending` in subscriber order, `deliveries_expiry`),
                // and only the rows picked are joined. Read with one OR, they
                // came from no index in order, and every due row of the edition
                // was read and sorted for each claim.
                //
                // On PostgreSQL a row that a half locked and the outer LIMIT
                // leaves out stays pending; it is only locked until the commit.
                let rows = sqlx::query(&format!(
                    "SELECT d.subscriber, s.email, s.name, s.token_key, d.message_id, d.attempts,
                        CASE WHEN m.status = 'confirmed'
                              AND NOT EXISTS (SELECT 1 FROM suppressions x WHERE x.email = s.email)
                             THEN 1 ELSE 0 END AS eligible
                 FROM (
                     SELECT subscriber, message_id, attempts FROM (
                         SELECT d.subscriber, d.message_id, d.attempts FROM deliveries d
                         WHERE d.edition = $2 AND d.state = 'pending'
                           AND (d.next_attempt_at IS NULL OR d.next_attempt_at <= $3)
                         ORDER BY d.subscriber LIMIT $4 {lock}
                     ) pending
                     UNION ALL
                     SELECT subscriber, message_id, attempts FROM (
                         SELECT d.subscriber, d.message_id, d.attempts FROM deliveries d
                         WHERE d.edition = $2 AND d.state = 'sending' AND d.claim_until < $5
                         ORDER BY d.subscriber LIMIT $4 {lock}
                     ) expired
                     ORDER BY subscriber LIMIT $4
                 ) d
                 JOIN subscribers s ON s.id = d.subscriber
                 LEFT JOIN memberships m ON m.subscriber = d.subscriber AND m.list = $1
                 ORDER BY d.subscriber"
                ))
                .bind(&edition.list)
                .bind(edition.id)
                .bind(ts(now))
                .bind(i64::try_from(limit).unwrap_or(500))
                .bind(ts(wall))
                .fetch_all(&mut *tx)
                .await?;
                let mut claimed = Vec::with_capacity(rows.len());
                let mut gone = Vec::new();
                for r in rows {
                    let subscriber: i64 = r.try_get("subscriber")?;
                    if r.try_get::<i64, _>("eligible")? == 0 {
                        // Left the list or was suppressed since the edition was composed.
                        gone.push(subscriber);
                        continue;
                    }
                    claimed.push(ClaimedDelivery {
                        subscriber,
                        email: r.try_get("email")?,
                        name: r.try_get("name")?,
                        token_key: r.try_get("token_key")?,
                        message_id: r.try_get("message_id")?,
                        attempts: r.try_get::<i64, _>("attempts")? + 1,
                    });
                }
                let sending: Vec<i64> = claimed.iter().map(|c| c.subscriber).collect();
                let until = ts(until);
                for (ids, set, claim) in [
                    (
                        &sending,
                        "state = 'sending', attempts = attempts + 1, claimed_by = $2, claim_until = $3",
                        true,
                    ),
                    (
                        &gone,
                        "state = 'skipped', last_error = 'left the list or suppressed before sending',
                         claimed_by = NULL, claim_until = NULL",
                        false,
                    ),
                ] {
                    let first = if claim { 4 } else { 2 };
                    for chunk in ids.chunks(500) {
                        let marks = super::params(first, chunk.len());
                        let sql = format!(
                            "UPDATE deliveries SET {set} WHERE edition = $1 AND subscriber IN ({marks})"
                        );
                        let mut q = sqlx::query(&sql).bind(edition.id);
                        if claim {
                            q = q.bind(node).bind(&until);
                        }
                        for id in chunk {
                            q = q.bind(*id);
                        }
                        q.execute(&mut *tx).await?;
                    }
                }
                if !claimed.is_empty() || gone.is_empty() {
                    tx.commit().await?;
                    return Ok(claimed);
                }
            }
        }
        .await
        .during(|| format!("claiming deliveries of edition {} (list `{}`)", edition.id, edition.list))
    }

    /// How many rows of an edition are due for sending at `now`, claims
    /// expired at `wall` (the system clock) included.
    pub async fn due_count(
        &self,
        edition: i64,
        now: DateTime<Utc>,
        wall: DateTime<Utc>,
    ) -> Result<i64> {
        async move {
            Ok(sqlx::query_scalar(&format!(
                "SELECT COUNT(*) FROM deliveries d WHERE d.edition = $1 AND {}",
                due("$2", "$3")
            ))
            .bind(edition)
            .bind(ts(now))
            .bind(ts(wall))
            .fetch_one(&self.pool)
            .await?)
        }
        .await
        .during(|| format!("counting the due deliveries of edition {edition}"))
    }

    /// Whether any edition of a list that is not paused has a row due at
    /// `now` (claims expired at `wall`, the system clock, included): work
    /// for a node that is not delivering.
    pub async fn anything_due(&self, now: DateTime<Utc>, wall: DateTime<Utc>) -> Result<bool> {
        async move {
            let due: Option<i64> = sqlx::query_scalar(&format!(
                "SELECT 1 FROM editions e JOIN deliveries d ON d.edition = e.id
                 WHERE e.state = 'sending' AND {}
                   AND NOT EXISTS (SELECT 1 FROM paused_lists p WHERE p.list = e.list)
                 LIMIT 1",
                due("$1", "$2")
            ))
            .bind(ts(now))
            .bind(ts(wall))
            .fetch_optional(&self.pool)
            .await?;
            Ok(due.is_some())
        }
        .await
        .during(|| "looking for due deliveries".to_owned())
    }

    /// Records many outcomes in one transaction (group commit): the delivery
    /// workers wait for it before their next send, so at most one message
    /// per worker is ever sent but not yet recorded.
    ///
    /// Only rows that `node` still holds are written: a row whose claim
    /// expired and went to another node is that node's to record.
    pub async fn record_deliveries(
        &self,
        edition: i64,
        node: &str,
        outcomes: &[(i64, DeliveryOutcome<'_>)],
    ) -> Result<()> {
        async move {
            // One statement per group of up to 256 rows (each statement is a
            // round trip to the database thread); a single statement is atomic
            // on its own and needs no BEGIN and COMMIT around it.
            const ROWS: usize = 256;
            if outcomes.len() <= ROWS {
                let sql = record_sql(outcomes.len());
                record_statement(&sql, edition, node, outcomes).execute(&self.pool).await?;
                return Ok(());
            }
            let mut tx = self.write_tx().await?;
            for chunk in outcomes.chunks(ROWS) {
                let sql = record_sql(chunk.len());
                record_statement(&sql, edition, node, chunk).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok(())
        }
        .await
        .during(|| format!("recording {} delivery outcome(s) of edition {edition}", outcomes.len()))
    }

    /// Gives rows `node` claimed and never sent back to pending, without
    /// counting the attempt (a graceful stop, a server that is down).
    pub async fn release_claims(
        &self,
        edition: i64,
        node: &str,
        subscribers: &[i64],
    ) -> Result<()> {
        async move {
            let mut tx = self.write_tx().await?;
            for chunk in subscribers.chunks(500) {
                let marks = super::params(3, chunk.len());
                let max = self.backend.pick("MAX", "GREATEST");
                let sql = format!(
                    "UPDATE deliveries SET state = 'pending', attempts = {max}(attempts - 1, 0),
                       claimed_by = NULL, claim_until = NULL
                     WHERE edition = $1 AND state = 'sending' AND claimed_by = $2
                       AND subscriber IN ({marks})"
                );
                let mut q = sqlx::query(&sql).bind(edition).bind(node);
                for s in chunk {
                    q = q.bind(*s);
                }
                q.execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok(())
        }
        .await
        .during(|| {
            format!("releasing {} claimed deliveries of edition {edition}", subscribers.len())
        })
    }

    /// Makes the waiting rows of `edition` whose time has come at `now`
    /// pending. Returns how many.
    pub async fn release_waiting(&self, edition: i64, now: DateTime<Utc>) -> Result<u64> {
        async move {
            Ok(sqlx::query(
                "UPDATE deliveries SET state = 'pending'
                 WHERE edition = $1 AND state = 'waiting' AND next_attempt_at <= $2",
            )
            .bind(edition)
            .bind(ts(now))
            .execute(&self.pool)
            .await?
            .rows_affected())
        }
        .await
        .during(|| format!("releasing the waiting deliveries of edition {edition}"))
    }

    /// When the next waiting rows of `edition` are due.
    pub async fn next_waiting(&self, edition: i64) -> Result<Option<DateTime<Utc>>> {
        async move {
            let next: Option<String> = sqlx::query_scalar(
                "SELECT MIN(next_attempt_at) FROM deliveries WHERE edition = $1 AND state = 'waiting'",
            )
            .bind(edition)
            .fetch_one(&self.pool)
            .await?;
            super::parse_opt_ts(next)
        }
        .await
        .during(|| format!("finding the next waiting deliveries of edition {edition}"))
    }

    /// The batches of readers still waiting for their hour, per edition:
    /// (list, edition date, due at, readers), soonest first.
    pub async fn waiting_batches(&self) -> Result<Vec<(String, String, DateTime<Utc>, i64)>> {
        async move {
            let rows: Vec<(String, String, String, i64)> = sqlx::query_as(
                "SELECT e.list, e.edition_date, d.next_attempt_at, COUNT(*)
                 FROM deliveries d JOIN editions e ON e.id = d.edition
                 WHERE d.state = 'waiting'
                 GROUP BY e.list, e.edition_date, d.next_attempt_at
                 ORDER BY d.next_attempt_at, e.list",
            )
            .fetch_all(&self.pool)
            .await?;
            rows.into_iter()
                .map(|(list, date, at, n)| Ok((list, date, super::parse_ts(&at)?, n)))
                .collect::<Result<Vec<_>>>()
        }
        .await
        .during(|| "listing the readers waiting for their hour".to_owned())
    }

    /// Marks the edition done when no row is waiting, pending or sending.
    /// Returns whether it is done.
    pub async fn finish_edition_if_done(&self, edition: i64) -> Result<bool> {
        async move {
            let open: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM deliveries WHERE edition = $1 AND state IN ('waiting', 'pending', 'sending')",
            )
            .bind(edition)
            .fetch_one(&self.pool)
            .await?;
            if open == 0 {
                sqlx::query("UPDATE editions SET state = 'done' WHERE id = $1")
                    .bind(edition)
                    .execute(&self.pool)
                    .await?;
            }
            Ok(open == 0)
        }
        .await
        .during(|| format!("finishing edition {edition}"))
    }

    /// Ledger rows, newest edition first, optionally for one list and one
    /// state, at most `limit`.
    pub async fn deliveries(
        &self,
        list: Option<&str>,
        state: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DeliveryRow>> {
        async move {
            Ok(sqlx::query_as::<_, DeliveryRow>(
                "SELECT e.list, e.edition_date, s.email, d.state, d.attempts, d.next_attempt_at, d.last_error,
                        d.reply, d.sent_at, d.message_id
                 FROM deliveries d JOIN editions e ON e.id = d.edition JOIN subscribers s ON s.id = d.subscriber
                 WHERE ($1 IS NULL OR e.list = $1) AND ($2 IS NULL OR d.state = $2)
                 ORDER BY e.edition_date DESC, e.list, s.email LIMIT $3",
            )
            .bind(list)
            .bind(state)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await?)
        }
        .await
        .during(|| format!("listing the deliveries of {}", list.map_or("every list".to_owned(), |l| format!("list `{l}`"))))
    }

    /// Delivery figures per edition, newest edition first.
    pub async fn delivery_counts(&self, limit: usize) -> Result<Vec<DeliveryCounts>> {
        async move {
            Ok(sqlx::query_as::<_, DeliveryCounts>(
                "SELECT e.list, e.edition_date,
                        COALESCE(SUM(CASE WHEN d.state = 'pending' THEN 1 ELSE 0 END), 0) AS pending,
                        COALESCE(SUM(CASE WHEN d.state = 'sending' THEN 1 ELSE 0 END), 0) AS sending,
                        COALESCE(SUM(CASE WHEN d.state = 'sent' THEN 1 ELSE 0 END), 0) AS sent,
                        COALESCE(SUM(CASE WHEN d.state = 'failed' THEN 1 ELSE 0 END), 0) AS failed,
                        COALESCE(SUM(CASE WHEN d.state = 'skipped' THEN 1 ELSE 0 END), 0) AS skipped,
                        MIN(CASE WHEN d.state = 'pending' THEN d.next_attempt_at END) AS next_attempt_at
                 FROM editions e LEFT JOIN deliveries d ON d.edition = e.id
                 GROUP BY e.id, e.list, e.edition_date
                 ORDER BY e.edition_date DESC, e.list LIMIT $1",
            )
            .bind(i64::try_from(limit).unwrap_or(100))
            .fetch_all(&self.pool)
            .await?)
        }
        .await
        .during(|| "counting the deliveries per edition".to_owned())
    }
}

/// The UPDATE that records `rows` outcomes at once.
///
/// The rows are found by their key, and only then is it checked that the
/// node still holds them (`sending`, claimed by it), inside a CASE that
/// PostgreSQL's planner does not look into. Written as plain conditions,
/// they let it read the node's rows from an index of `sending` rows
/// (`deliveries_claimed`, `deliveries_expiry`, `deliveries_by_state`),
/// which it counts as a handful; but such an index keeps an entry for
/// every row that was ever `sending` until a vacuum, and each record then
/// walked past every row sent so far.
fn record_sql(rows: usize) -> String {
    let values = super::rows(3, rows, 6);
    format!(
        "WITH v (subscriber, state, reply, sent_at, last_error, next_attempt_at) AS (VALUES {values})
         UPDATE deliveries SET state = v.state, reply = COALESCE(v.reply, deliveries.reply),
           sent_at = v.sent_at, last_error = v.last_error, next_attempt_at = v.next_attempt_at
         FROM v WHERE deliveries.edition = $1 AND deliveries.subscriber = v.subscriber
           AND CASE WHEN deliveries.state = 'sending' THEN deliveries.claimed_by = $2 END"
    )
}

/// `record_sql` with a group's values bound.
fn record_statement<'q>(
    sql: &'q str,
    edition: i64,
    node: &'q str,
    outcomes: &'q [(i64, DeliveryOutcome<'q>)],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    let mut q = sqlx::query(sql).bind(edition).bind(node);
    for (subscriber, outcome) in outcomes {
        // (state, reply, sent_at, last_error, next_attempt_at)
        let (state, reply, sent_at, error, next) = match *outcome {
            DeliveryOutcome::Sent { reply, at } => ("sent", Some(reply), Some(ts(at)), None, None),
            DeliveryOutcome::Retry { error, next } => {
                ("pending", None, None, Some(error), Some(ts(next)))
            }
            DeliveryOutcome::Failed { error } => ("failed", None, None, Some(error), None),
        };
        q = q.bind(*subscriber).bind(state).bind(reply).bind(sent_at).bind(error).bind(next);
    }
    q
}
