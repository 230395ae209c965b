//! Who polls the feeds. Aggregators say in their User-Agent how many of
//! their users subscribe ("Feedly/1.0 (+http://www.feedly.com/fetcher.html;
//! 462 subscribers; )"): herald keeps the latest count per aggregator and
//! feed. Other pollers are counted once a day each, by a hash of address and
//! agent (no address is stored). Counts gather in memory and are written to
//! the store every few seconds, so counting costs requests nothing.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Mutex;

use chrono::Utc;
use sha2::{Digest, Sha256};

use crate::store::Store;

#[derive(Debug, Default)]
pub struct Audience {
    pending: Mutex<Pending>,
}

#[derive(Debug, Default)]
struct Pending {
    aggregators: HashMap<String, i64>,
    /// (day, hash of address and agent), hashed cheaply per request and
    /// turned into an anonymous id only when written.
    pollers: HashSet<(chrono::NaiveDate, IpAddr, u64)>,
}

impl Audience {
    pub fn observe(&self, ip: IpAddr, agent: &str, file: &str) {
        // Most requests come from agents that announce nothing: a quick look
        // before the full parse.
        let announces = agent.contains("ubscriber") || agent.contains("eader");
        match announces.then(|| parse_aggregator(agent)).flatten() {
            Some((name, subscribers)) => {
                let key = format!("{name} ({file})");
                let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                pending.aggregators.insert(key, subscribers);
            }
            None => {
                use std::hash::{Hash, Hasher};
                let mut h = std::collections::hash_map::DefaultHasher::new();
                agent.hash(&mut h);
                let day = Utc::now().date_naive();
                let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                pending.pollers.insert((day, ip, h.finish()));
            }
        }
    }

    /// Writes what gathered since the last flush.
    pub async fn flush(&self, store: &Store) {
        let (aggregators, pollers) = {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            let Pending { aggregators, pollers } = std::mem::take(&mut *pending);
            let pollers = pollers
                .into_iter()
                .map(|(day, ip, agent)| {
                    let day = day.format("%Y-%m-%d").to_string();
                    let mut h = Sha256::new();
                    h.update(day.as_bytes());
                    h.update(ip.to_string().as_bytes());
                    h.update(agent.to_le_bytes());
                    (day, hex::encode(&h.finalize()[..12]))
                })
                .collect::<Vec<_>>();
            (aggregators.into_iter().collect::<Vec<_>>(), pollers)
        };
        if let Err(e) = store.record_feed_audience(&aggregators, &pollers, Utc::now()).await {
            tracing::warn!("cannot record the feed audience: {e}");
        }
    }
}

/// (aggregator, subscribers) from a User-Agent that announces a count:
/// a number followed by "subscriber(s)" or "reader(s)".
pub fn parse_aggregator(agent: &str) -> Option<(String, i64)> {
    let lower = agent.to_ascii_lowercase();
    let words: Vec<&str> =
        lower.split(|c: char| !c.is_ascii_alphanumeric()).filter(|w| !w.is_empty()).collect();
    let count = words.windows(2).find_map(|w| {
        let n: i64 = w[0].parse().ok()?;
        (w[1].starts_with("subscriber") || w[1].starts_with("reader")).then_some(n)
    })?;
    let name = agent
        .split(['/', '(', ';'])
        .next()
        .unwrap_or(agent)
        .split(" - ")
        .next()
        .unwrap_or(agent)
        .trim();
    let name = if name.is_empty() { "unknown aggregator" } else { name };
    Some((name.chars().take(60).collect(), count))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregators_announce_counts() {
        assert_eq!(
            parse_aggregator("Feedly/1.0 (+http://www.feedly.com/fetcher.html; 462 subscribers; like FeedFetcher-Google)"),
            Some(("Feedly".into(), 462))
        );
        assert_eq!(
            parse_aggregator(
                "NewsBlur Feed Fetcher - 8 subscribers - https://www.newsblur.com/site/1/x"
            ),
            Some(("NewsBlur Feed Fetcher".into(), 8))
        );
        assert_eq!(
            parse_aggregator(
                "Inoreader/1.0 (+http://www.inoreader.com/feed-fetcher; 1 subscriber; )"
            ),
            Some(("Inoreader".into(), 1))
        );
        assert_eq!(parse_aggregator("Tiny Tiny RSS/22.08 (https://tt-rss.org/)"), None);
        assert_eq!(parse_aggregator("Mozilla/5.0 (X11; Linux x86_64)"), None);
    }
}
