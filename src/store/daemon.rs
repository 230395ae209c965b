//! The daemon's lease on the store (one daemon per store), and the figures
//! its health and metrics endpoints read.

use chrono::{DateTime, Utc};

use super::{parse_ts, ts, During, Result, Store};

/// Who holds the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// A random id of the holding process.
    pub holder: String,
    pub pid: i64,
    pub host: String,
    pub started_at: DateTime<Utc>,
    pub heartbeat_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

impl std::fmt::Display for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "herald daemon pid {} on {} (since {}, last heartbeat {})",
            self.pid,
            self.host,
            self.started_at.format("%Y-%m-%d %H:%M:%S UTC"),
            self.heartbeat_at.format("%Y-%m-%d %H:%M:%S UTC")
        )
    }
}

impl Store {
    /// Takes the lease for `me` unless another daemon holds it and has not
    /// let it expire; returns that daemon then.
    pub async fn acquire_lease(
        &self,
        me: &Lease,
        now: DateTime<Utc>,
    ) -> Result<std::result::Result<(), Lease>> {
        async move {
            let mut tx = self.write_tx().await?;
            if let Some(current) = lease_in(&mut tx).await? {
                if current.holder != me.holder && current.expires_at > now {
                    return Ok(Err(current));
                }
            }
            sqlx::query(
                "INSERT INTO daemon_lease (id, holder, pid, host, started_at, heartbeat_at, expires_at)
                 VALUES (1, $1, $2, $3, $4, $5, $6)
                 ON CONFLICT (id) DO UPDATE SET holder = excluded.holder, pid = excluded.pid,
                   host = excluded.host, started_at = excluded.started_at,
                   heartbeat_at = excluded.heartbeat_at, expires_at = excluded.expires_at",
            )
            .bind(&me.holder)
            .bind(me.pid)
            .bind(&me.host)
            .bind(ts(me.started_at))
            .bind(ts(me.heartbeat_at))
            .bind(ts(me.expires_at))
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(Ok(()))
        }
        .await
        .during(|| format!("taking the daemon lease for {}", me.holder))
    }

    /// Extends `holder`'s lease; false when it no longer holds it.
    pub async fn renew_lease(
        &self,
        holder: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<bool> {
        async move {
            let done = sqlx::query(
                "UPDATE daemon_lease SET heartbeat_at = $1, expires_at = $2 WHERE id = 1 AND holder = $3",
            )
            .bind(ts(now))
            .bind(ts(expires_at))
            .bind(holder)
            .execute(&self.pool)
            .await?;
            Ok(done.rows_affected() == 1)
        }
        .await
        .during(|| format!("renewing the daemon lease of {holder}"))
    }

    pub async fn release_lease(&self, holder: &str) -> Result<()> {
        async move {
            sqlx::query("DELETE FROM daemon_lease WHERE id = 1 AND holder = $1")
                .bind(holder)
                .execute(&self.pool)
                .await?;
            Ok(())
        }
        .await
        .during(|| format!("releasing the daemon lease of {holder}"))
    }

    /// The daemon holding the store, if any, whether or not its lease expired.
    pub async fn lease(&self) -> Result<Option<Lease>> {
        async move {
            let mut conn = self.pool.acquire().await?;
            lease_in(&mut conn).await
        }
        .await
        .during(|| "reading the daemon lease".to_owned())
    }

    /// Whether the store answers.
    pub async fn ping(&self) -> Result<()> {
        async move {
            sqlx::query("SELECT 1").execute(&self.pool).await?;
            Ok(())
        }
        .await
        .during(|| "answering a ping".to_owned())
    }

    /// Mails per list and state: `sent`, `failed`, `deferred` (waiting for a
    /// retry after a temporary failure) and `pending` (not tried yet).
    pub async fn mail_totals(&self) -> Result<Vec<(String, String, i64)>> {
        async move {
            Ok(sqlx::query_as(
                "SELECT e.list,
                        CASE WHEN d.state IN ('pending', 'sending') AND d.attempts > 0 THEN 'deferred'
                             WHEN d.state = 'sending' THEN 'pending'
                             ELSE d.state END AS state,
                        COUNT(*)
                 FROM deliveries d JOIN editions e ON e.id = d.edition
                 GROUP BY 1, 2 ORDER BY 1, 2",
            )
            .fetch_all(&self.pool)
            .await?)
        }
        .await
        .during(|| "counting the mails per list and state".to_owned())
    }
}

async fn lease_in(conn: &mut sqlx::AnyConnection) -> Result<Option<Lease>> {
    let row: Option<(String, i64, String, String, String, String)> = sqlx::query_as(
        "SELECT holder, pid, host, started_at, heartbeat_at, expires_at FROM daemon_lease WHERE id = 1",
    )
    .fetch_optional(&mut *conn)
    .await?;
    row.map(|(holder, pid, host, started, heartbeat, expires)| {
        Ok(Lease {
            holder,
            pid,
            host,
            started_at: parse_ts(&started)?,
            heartbeat_at: parse_ts(&heartbeat)?,
            expires_at: parse_ts(&expires)?,
        })
    })
    .transpose()
}
