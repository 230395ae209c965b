//! The processes that share the store (nodes), the delivery rows each one
//! holds, and what the relays' limits need from the whole cluster: today's
//! sends against a daily cap, and the sends of the current time slot against
//! a rate.

use chrono::{DateTime, NaiveDate, Utc};

use super::{parse_ts, ts, During, Result, Store};

/// How many days of relay counts are kept.
const RELAY_DAYS_KEPT: i64 = 7;

/// A node that stopped sending heartbeats is forgotten after this long.
const NODES_KEPT: chrono::TimeDelta = chrono::TimeDelta::days(1);

/// A `nodes` row as read: id, host, boot, pid, role, started, heartbeat,
/// rows held.
type NodeRow = (String, String, String, i64, String, String, String, i64);

/// One herald process working on the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRecord {
    /// Random, one per process.
    pub id: String,
    pub host: String,
    /// The host's boot id: a pid is only meaningful within one boot.
    pub boot: String,
    pub pid: i64,
    /// `daemon`, `run` or `deliver`.
    pub role: String,
    pub started_at: DateTime<Utc>,
    pub heartbeat_at: DateTime<Utc>,
    /// Delivery rows it holds (claimed and not yet recorded).
    pub holding: i64,
}

impl Store {
    /// Records a node as present, and forgets nodes silent for a day.
    pub async fn join_node(&self, node: &NodeRecord) -> Result<()> {
        async move {
            let mut tx = self.write_tx().await?;
            sqlx::query(
                "INSERT INTO nodes (id, host, boot, pid, role, started_at, heartbeat_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
            )
            .bind(&node.id)
            .bind(&node.host)
            .bind(&node.boot)
            .bind(node.pid)
            .bind(&node.role)
            .bind(ts(node.started_at))
            .bind(ts(node.heartbeat_at))
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "DELETE FROM nodes WHERE heartbeat_at < $1
                   AND id NOT IN (SELECT claimed_by FROM deliveries
                                  WHERE state = 'sending' AND claimed_by IS NOT NULL)",
            )
            .bind(ts(node.heartbeat_at - NODES_KEPT))
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        }
        .await
        .during(|| format!("recording node {} ({} pid {})", node.id, node.host, node.pid))
    }

    /// A node's heartbeat: it is alive at `now`, and keeps the rows it
    /// holds until `claims_until`. False when its row was gone (it is put
    /// back by the caller).
    pub async fn heartbeat_node(
        &self,
        id: &str,
        now: DateTime<Utc>,
        claims_until: DateTime<Utc>,
    ) -> Result<bool> {
        async move {
            let seen = sqlx::query("UPDATE nodes SET heartbeat_at = $1 WHERE id = $2")
                .bind(ts(now))
                .bind(id)
                .execute(&self.pool)
                .await?
                .rows_affected();
            // On PostgreSQL the rows another transaction has locked are passed
            // over: they are being recorded (or taken, their claim expired),
            // and a beat that waited for them while that transaction waited
            // for a row the beat had locked was a deadlock, which PostgreSQL
            // ended by failing one of the two (the record, and with it the
            // send). The next beat extends a row passed over.
            let sql = self.backend.pick(
                "UPDATE deliveries SET claim_until = $1 WHERE claimed_by = $2 AND state = 'sending'",
                "UPDATE deliveries SET claim_until = $1
                 WHERE (edition, subscriber) IN (
                     SELECT edition, subscriber FROM deliveries
                     WHERE claimed_by = $2 AND state = 'sending'
                     FOR UPDATE SKIP LOCKED)",
            );
            sqlx::query(sql).bind(ts(claims_until)).bind(id).execute(&self.pool).await?;
            Ok(seen == 1)
        }
        .await
        .during(|| format!("renewing node {id}'s heartbeat"))
    }

    /// A node that stops cleanly: it has given back what it held.
    pub async fn leave_node(&self, id: &str) -> Result<()> {
        async move {
            sqlx::query("DELETE FROM nodes WHERE id = $1").bind(id).execute(&self.pool).await?;
            Ok(())
        }
        .await
        .during(|| format!("removing node {id}"))
    }

    /// Every node the store knows, oldest first, with the rows each holds.
    pub async fn nodes(&self) -> Result<Vec<NodeRecord>> {
        async move {
            let rows: Vec<NodeRow> = sqlx::query_as(
                "SELECT n.id, n.host, n.boot, n.pid, n.role, n.started_at, n.heartbeat_at,
                            COALESCE(h.holding, 0)
                     FROM nodes n LEFT JOIN (
                         SELECT claimed_by, COUNT(*) AS holding FROM deliveries
                         WHERE state = 'sending' AND claimed_by IS NOT NULL GROUP BY claimed_by
                     ) h ON h.claimed_by = n.id
                     ORDER BY n.started_at, n.id",
            )
            .fetch_all(&self.pool)
            .await?;
            rows.into_iter()
                .map(|(id, host, boot, pid, role, started, heartbeat, holding)| {
                    Ok(NodeRecord {
                        id,
                        host,
                        boot,
                        pid,
                        role,
                        started_at: parse_ts(&started)?,
                        heartbeat_at: parse_ts(&heartbeat)?,
                        holding,
                    })
                })
                .collect::<Result<Vec<_>>>()
        }
        .await
        .during(|| "listing the nodes".to_owned())
    }

    /// Gives back at once the rows held by `nodes` (processes known to be
    /// gone) and rows left `sending` by a herald from before nodes; rows of
    /// other nodes come back when their claims expire. The messages may
    /// have reached the server: the resend carries the same Message-ID.
    pub async fn release_claims_of(&self, nodes: &[String]) -> Result<u64> {
        async move {
            let mut released = sqlx::query(
                "UPDATE deliveries SET state = 'pending', claimed_by = NULL, claim_until = NULL
                 WHERE state = 'sending' AND claimed_by IS NULL",
            )
            .execute(&self.pool)
            .await?
            .rows_affected();
            for node in nodes {
                released += sqlx::query(
                    "UPDATE deliveries SET state = 'pending', claimed_by = NULL, claim_until = NULL
                     WHERE state = 'sending' AND claimed_by = $1",
                )
                .bind(node)
                .execute(&self.pool)
                .await?
                .rows_affected();
                sqlx::query("DELETE FROM nodes WHERE id = $1")
                    .bind(node)
                    .execute(&self.pool)
                    .await?;
            }
            Ok(released)
        }
        .await
        .during(|| "returning the deliveries of stopped processes".to_owned())
    }

    /// The messages `relay` sent (or holds slots for) on `day` (UTC), for
    /// the whole cluster.
    pub async fn relay_sent(&self, relay: &str, day: NaiveDate) -> Result<u64> {
        async move {
            let sent: Option<i64> =
                sqlx::query_scalar("SELECT sent FROM relay_days WHERE relay = $1 AND day = $2")
                    .bind(relay)
                    .bind(day.to_string())
                    .fetch_optional(&self.pool)
                    .await?;
            Ok(sent.map_or(0, |n| u64::try_from(n).unwrap_or(0)))
        }
        .await
        .during(|| format!("reading relay {relay}'s count for {day}"))
    }

    /// Takes up to `want` of `relay`'s sends for `day` under the daily
    /// `cap`, for the whole cluster; returns how many it got (0: the cap is
    /// reached). What is taken and not sent goes back with
    /// [`Store::return_relay_sends`]; a process killed before that leaves
    /// its unused sends counted, so the cap errs on the safe side.
    pub async fn reserve_relay_sends(
        &self,
        relay: &str,
        day: NaiveDate,
        want: u64,
        cap: u64,
    ) -> Result<u64> {
        async move {
            let mut tx = self.write_tx().await?;
            let sent: Option<i64> =
                sqlx::query_scalar("SELECT sent FROM relay_days WHERE relay = $1 AND day = $2")
                    .bind(relay)
                    .bind(day.to_string())
                    .fetch_optional(&mut *tx)
                    .await?;
            let sent = sent.map_or(0, |n| u64::try_from(n).unwrap_or(0));
            let granted = want.min(cap.saturating_sub(sent));
            if granted > 0 {
                sqlx::query(
                    "INSERT INTO relay_days (relay, day, sent) VALUES ($1, $2, $3)
                     ON CONFLICT (relay, day) DO UPDATE SET sent = excluded.sent",
                )
                .bind(relay)
                .bind(day.to_string())
                .bind(i64::try_from(sent + granted).unwrap_or(i64::MAX))
                .execute(&mut *tx)
                .await?;
                if sent == 0 {
                    let oldest = day - chrono::Duration::days(RELAY_DAYS_KEPT);
                    sqlx::query("DELETE FROM relay_days WHERE relay = $1 AND day < $2")
                        .bind(relay)
                        .bind(oldest.to_string())
                        .execute(&mut *tx)
                        .await?;
                }
            }
            tx.commit().await?;
            Ok(granted)
        }
        .await
        .during(|| format!("taking {want} of relay {relay}'s sends for {day}"))
    }

    /// Gives back sends taken with [`Store::reserve_relay_sends`] and not used.
    pub async fn return_relay_sends(&self, relay: &str, day: NaiveDate, unused: u64) -> Result<()> {
        if unused == 0 {
            return Ok(());
        }
        async move {
            let max = self.backend.pick("MAX", "GREATEST");
            sqlx::query(&format!(
                "UPDATE relay_days SET sent = {max}(sent - $3, 0) WHERE relay = $1 AND day = $2"
            ))
            .bind(relay)
            .bind(day.to_string())
            .bind(i64::try_from(unused).unwrap_or(0))
            .execute(&self.pool)
            .await?;
            Ok(())
        }
        .await
        .during(|| format!("giving back {unused} of relay {relay}'s sends for {day}"))
    }

    /// Takes one send of `relay`'s time slot `slot` (a number that grows by
    /// one each slot), of which the whole cluster has `per_slot`; false when
    /// they are taken.
    pub async fn take_relay_slot(&self, relay: &str, slot: i64, per_slot: i64) -> Result<bool> {
        async move {
            let used: Option<i64> = sqlx::query_scalar(
                "INSERT INTO relay_slots (relay, slot, used) VALUES ($1, $2, 1)
                 ON CONFLICT (relay, slot) DO UPDATE SET used = relay_slots.used + 1
                 WHERE relay_slots.used < $3
                 RETURNING used",
            )
            .bind(relay)
            .bind(slot)
            .bind(per_slot)
            .fetch_optional(&self.pool)
            .await?;
            if used == Some(1) {
                // The slot's first send clears slots long past.
                sqlx::query("DELETE FROM relay_slots WHERE relay = $1 AND slot < $2")
                    .bind(relay)
                    .bind(slot - 60)
                    .execute(&self.pool)
                    .await?;
            }
            Ok(used.is_some())
        }
        .await
        .during(|| format!("taking a send of relay {relay}'s slot {slot}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{
        test_store, Claimant, DeliveryOutcome, Edition, MembershipStatus, NewEdition, Origin,
    };
    use crate::EmailAddress;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    /// A store with an edition of list `daily` for `readers` readers.
    async fn edition(readers: usize) -> (Store, tempfile::TempDir, Edition) {
        let (store, dir) = test_store().await;
        let now = at("2026-11-24T07:00:00Z");
        let rows: Vec<(EmailAddress, Option<String>)> = (0..readers)
            .map(|i| (EmailAddress::parse(&format!("r{i}@example.com")).unwrap(), None))
            .collect();
        store
            .add_members("daily", &rows, Origin::Csv, MembershipStatus::Confirmed, now)
            .await
            .unwrap();
        let new = NewEdition {
            list: "daily".into(),
            edition_date: now.date_naive(),
            subject: "s".into(),
            html: "h".into(),
            text: "t".into(),
            article_ids: vec![],
            considered: vec![],
            composed_at: now,
        };
        let (edition, n) = store.create_edition(&new, "example.com").await.unwrap().unwrap();
        assert_eq!(n as usize, readers);
        (store, dir, edition)
    }

    #[tokio::test]
    async fn nodes_claiming_at_once_never_get_the_same_row() {
        let (store, _dir, edition) = edition(300).await;
        let now = at("2026-11-24T07:00:01Z");
        let until = at("2026-11-24T07:01:00Z");
        let claim = |node: &'static str| {
            let (store, edition) = (store.clone(), edition.clone());
            tokio::spawn(async move {
                let mut mine = Vec::new();
                let claimant = Claimant { node, wall: now, until };
                loop {
                    let got = store.claim_deliveries(&edition, now, 7, &claimant).await.unwrap();
                    if got.is_empty() {
                        return mine;
                    }
                    mine.extend(got.into_iter().map(|c| c.subscriber));
                }
            })
        };
        let tasks: Vec<_> = ["a", "b", "c", "d"].into_iter().map(claim).collect();
        let mut all = Vec::new();
        for task in tasks {
            all.extend(task.await.unwrap());
        }
        let total = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), total, "a row was handed to two nodes");
        assert_eq!(total, 300, "every row was claimed");
        let holding: i64 = store.nodes().await.unwrap().iter().map(|n| n.holding).sum();
        assert_eq!(holding, 0, "no node row was recorded, so none is listed");
    }

    #[tokio::test]
    async fn a_beat_passes_over_rows_another_transaction_holds() {
        let (store, _dir, edition) = edition(3).await;
        if store.backend() != crate::store::Backend::Postgres {
            return; // SQLite's writers take turns
        }
        let now = at("2026-11-24T07:00:01Z");
        let claimant = Claimant { node: "n", wall: now, until: at("2026-11-24T07:00:31Z") };
        let held = store.claim_deliveries(&edition, now, 3, &claimant).await.unwrap();
        // A transaction of this node recording the first row holds it.
        let mut record = store.pool.begin().await.unwrap();
        sqlx::query("SELECT 1 FROM deliveries WHERE subscriber = $1 FOR UPDATE")
            .bind(held[0].subscriber)
            .execute(&mut *record)
            .await
            .unwrap();
        let beat = {
            let store = store.clone();
            tokio::spawn(
                async move { store.heartbeat_node("n", now, at("2026-11-24T07:01:00Z")).await },
            )
        };
        while !beat.is_finished() {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
            )
            .fetch_one(&store.pool)
            .await
            .unwrap();
            assert_eq!(waiting, 0, "the beat waits for a row another transaction holds");
            tokio::task::yield_now().await;
        }
        beat.await.unwrap().unwrap();
        record.rollback().await.unwrap();
        let until: Vec<String> =
            sqlx::query_scalar("SELECT claim_until FROM deliveries ORDER BY subscriber")
                .fetch_all(&store.pool)
                .await
                .unwrap();
        let (old, new) = (ts(at("2026-11-24T07:00:31Z")), ts(at("2026-11-24T07:01:00Z")));
        assert_eq!(until, [old, new.clone(), new], "the held row is extended by the next beat");
    }

    #[tokio::test]
    async fn a_dead_nodes_rows_come_back_when_its_claims_expire() {
        let (store, _dir, edition) = edition(5).await;
        let now = at("2026-11-24T07:00:01Z");
        let claimant = |node, wall, until| Claimant { node, wall: at(wall), until: at(until) };
        let first = claimant("dead", "2026-11-24T07:00:01Z", "2026-11-24T07:00:31Z");
        let dead = store.claim_deliveries(&edition, now, 10, &first).await.unwrap();
        assert_eq!(dead.len(), 5);
        // While the claim lasts, nobody else gets the rows.
        let soon = claimant("live", "2026-11-24T07:00:20Z", "2026-11-24T07:05:00Z");
        assert!(store.claim_deliveries(&edition, now, 10, &soon).await.unwrap().is_empty());
        assert_eq!(store.due_count(edition.id, now, soon.wall).await.unwrap(), 0);
        assert!(!store.anything_due(now, soon.wall).await.unwrap());
        // Once it expired, another node takes them, with the same Message-ID.
        let after = claimant("live", "2026-11-24T07:00:40Z", "2026-11-24T07:05:00Z");
        assert_eq!(store.due_count(edition.id, now, after.wall).await.unwrap(), 5);
        assert!(store.anything_due(now, after.wall).await.unwrap());
        let live = store.claim_deliveries(&edition, now, 10, &after).await.unwrap();
        assert_eq!(live.len(), 5);
        assert_eq!(
            live.iter().map(|c| &c.message_id).collect::<Vec<_>>(),
            dead.iter().map(|c| &c.message_id).collect::<Vec<_>>()
        );
        // The dead node's late outcome is not written over the live one's.
        let sent = DeliveryOutcome::Sent { reply: "250 live", at: after.wall };
        let retry = DeliveryOutcome::Retry { error: "451 dead", next: after.until };
        let first = dead[0].subscriber;
        store.record_deliveries(edition.id, "live", &[(first, sent)]).await.unwrap();
        store.record_deliveries(edition.id, "dead", &[(first, retry)]).await.unwrap();
        let rows = store.deliveries(Some("daily"), Some("sent"), 10).await.unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].reply.as_deref(), Some("250 live"));
    }

    #[tokio::test]
    async fn a_claim_takes_expired_and_pending_rows_in_order_up_to_its_limit() {
        let (store, _dir, edition) = edition(10).await;
        let now = at("2026-11-24T07:00:01Z");
        let claimant = |node, wall, until| Claimant { node, wall: at(wall), until: at(until) };
        // A dead node held every other row; its claims have expired.
        let dead = claimant("dead", "2026-11-24T07:00:01Z", "2026-11-24T07:00:31Z");
        let held = store.claim_deliveries(&edition, now, 10, &dead).await.unwrap();
        let released: Vec<i64> = held.iter().skip(1).step_by(2).map(|c| c.subscriber).collect();
        store.release_claims(edition.id, "dead", &released).await.unwrap();
        let live = claimant("live", "2026-11-24T07:00:40Z", "2026-11-24T07:05:00Z");
        let mut all: Vec<i64> = held.iter().map(|c| c.subscriber).collect();
        all.sort_unstable();
        for expect in all.chunks(3) {
            let got = store.claim_deliveries(&edition, now, 3, &live).await.unwrap();
            let got: Vec<i64> = got.iter().map(|c| c.subscriber).collect();
            assert_eq!(got, expect, "expired and pending rows together, in subscriber order");
        }
        assert!(store.claim_deliveries(&edition, now, 3, &live).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_starting_node_gives_back_only_the_rows_of_nodes_that_are_gone() {
        let (store, _dir, edition) = edition(4).await;
        let now = at("2026-11-24T07:00:01Z");
        let until = at("2026-11-24T09:00:00Z");
        let claimant = |node| Claimant { node, wall: now, until };
        store.claim_deliveries(&edition, now, 2, &claimant("gone")).await.unwrap();
        store.claim_deliveries(&edition, now, 2, &claimant("alive")).await.unwrap();
        assert_eq!(store.release_claims_of(&["gone".to_owned()]).await.unwrap(), 2);
        let back = store.claim_deliveries(&edition, now, 10, &claimant("new")).await.unwrap();
        assert_eq!(back.len(), 2, "the live node keeps its rows");
    }

    #[tokio::test]
    async fn a_daily_cap_holds_for_all_nodes_together() {
        let (store, _dir) = test_store().await;
        let day = chrono::NaiveDate::from_ymd_opt(2026, 11, 24).unwrap();
        let take = |_: usize| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut got = 0;
                loop {
                    match store.reserve_relay_sends("primary", day, 7, 100).await.unwrap() {
                        0 => return got,
                        n => got += n,
                    }
                }
            })
        };
        let tasks: Vec<_> = (0..4).map(take).collect();
        let mut total = 0;
        for task in tasks {
            total += task.await.unwrap();
        }
        assert_eq!(total, 100);
        store.return_relay_sends("primary", day, 30).await.unwrap();
        assert_eq!(store.relay_sent("primary", day).await.unwrap(), 70);
        assert_eq!(store.reserve_relay_sends("primary", day, 50, 100).await.unwrap(), 30);
    }

    #[tokio::test]
    async fn a_rate_holds_for_all_nodes_together() {
        let (store, _dir) = test_store().await;
        let mut got = 0;
        for _ in 0..5 {
            got += usize::from(store.take_relay_slot("primary", 1000, 3).await.unwrap());
        }
        assert_eq!(got, 3, "three sends in the slot");
        assert!(store.take_relay_slot("primary", 1001, 3).await.unwrap(), "a new slot");
        assert!(store.take_relay_slot("backup", 1000, 3).await.unwrap(), "each relay its own");
    }
}
