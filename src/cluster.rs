//! The herald processes that work on one store: nodes. Every process that
//! delivers (a daemon, `herald run`, `herald deliver`) joins as a node with
//! a random id, beats its heartbeat every third of `daemon.lease_secs`, and
//! with each beat extends the claims on the delivery rows it holds. A node
//! that dies stops beating: its claims expire and another node takes the
//! rows. A node that starts gives back at once only the rows of nodes it
//! knows to be gone: those of its own host and boot whose process no longer
//! exists; it never touches rows that a live node holds.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::store::{NodeRecord, Store, StoreError};

/// This process, as a node of the store.
#[derive(Debug)]
pub struct Node {
    record: NodeRecord,
    lease: chrono::Duration,
    store: Store,
    beat: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Rows given back at join: left by processes of this host that are gone.
    released: u64,
}

impl Node {
    /// Joins the store as a node doing `role`, whose claims last `lease`,
    /// and starts its heartbeat.
    pub async fn join(store: &Store, role: &str, lease: Duration) -> Result<Arc<Self>, StoreError> {
        let now = Utc::now();
        let record = NodeRecord {
            id: format!("{:016x}", rand::random::<u64>()),
            host: host_name(),
            boot: boot_id(),
            pid: i64::from(std::process::id()),
            role: role.to_owned(),
            started_at: now,
            heartbeat_at: now,
            holding: 0,
        };
        store.join_node(&record).await?;
        let gone: Vec<String> = store
            .nodes()
            .await?
            .into_iter()
            .filter(|n| {
                n.id != record.id
                    && n.host == record.host
                    && n.boot == record.boot
                    && !process_alive(n.pid)
            })
            .map(|n| n.id)
            .collect();
        let released = store.release_claims_of(&gone).await?;
        let lease = chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::seconds(30));
        let node = Arc::new(Self {
            record,
            lease,
            store: store.clone(),
            beat: std::sync::Mutex::new(None),
            released,
        });
        let beat = tokio::spawn(heartbeat(Arc::downgrade(&node)));
        *node.beat.lock().unwrap_or_else(|e| e.into_inner()) = Some(beat);
        Ok(node)
    }

    pub fn id(&self) -> &str {
        &self.record.id
    }

    pub fn record(&self) -> &NodeRecord {
        &self.record
    }

    /// How long a claim lasts without a heartbeat.
    pub fn lease(&self) -> chrono::Duration {
        self.lease
    }

    /// How long a claim made at `now` lasts without a heartbeat.
    pub fn claims_until(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now + self.lease
    }

    /// Rows returned to pending when this node joined, left `sending` by
    /// processes of this host that are gone.
    pub fn released(&self) -> u64 {
        self.released
    }

    /// Stops the heartbeat and removes the node from the store. Its claims
    /// were given back by the stage that made them.
    pub async fn leave(&self) {
        if let Some(beat) = self.beat.lock().unwrap_or_else(|e| e.into_inner()).take() {
            beat.abort();
        }
        if let Err(e) = self.store.leave_node(self.id()).await {
            tracing::warn!(
                "cannot remove this node from the store (it is forgotten after a day): {e}"
            );
        }
    }

    fn every(&self) -> Duration {
        Duration::from_secs((self.lease.num_seconds().max(3) / 3) as u64)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(beat) = self.beat.get_mut().unwrap_or_else(|e| e.into_inner()).take() {
            beat.abort();
        }
    }
}

/// Beats every third of the lease while the node lives.
async fn heartbeat(node: std::sync::Weak<Node>) {
    loop {
        let Some(every) = node.upgrade().map(|n| n.every()) else { return };
        tokio::time::sleep(every).await;
        let Some(node) = node.upgrade() else { return };
        let now = Utc::now();
        match node.store.heartbeat_node(node.id(), now, node.claims_until(now)).await {
            Ok(true) => {}
            Ok(false) => {
                // Forgotten (silent for too long): present again.
                let mut again = node.record.clone();
                again.heartbeat_at = now;
                if let Err(e) = node.store.join_node(&again).await {
                    tracing::warn!("cannot record this node in the store again: {e}");
                }
            }
            Err(e) => tracing::warn!("cannot renew this node's heartbeat and claims: {e}"),
        }
    }
}

/// This host's name, as the nodes list shows it.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "an unknown host".into())
}

/// The id of this boot of the host: the same pid on another boot is
/// another process.
fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|b| b.trim().to_owned())
        .unwrap_or_default()
}

/// Whether a process with this pid exists here (one of another user
/// counts).
fn process_alive(pid: i64) -> bool {
    let Some(pid) = i32::try_from(pid).ok().and_then(rustix::process::Pid::from_raw) else {
        return false;
    };
    match rustix::process::test_kill_process(pid) {
        Ok(()) => true,
        Err(e) => e != rustix::io::Errno::SRCH,
    }
}
