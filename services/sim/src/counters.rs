//! What the simulator received: totals per channel and a count per
//! `X-Herald-Message-Id`, cheap enough for millions of ids (sharded maps).

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use serde::{Deserialize, Serialize};

/// How many ids share one lock: enough that concurrent sessions rarely wait.
const SHARDS: usize = 32;

/// The last-received summary is kept for this many most recent ids per
/// channel, so memory stays bounded under load tests with millions of ids.
pub const RECENT_DETAILS: usize = 10_000;

/// The channel a message arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SimChannel {
    Email,
    Wework,
    Webhook,
}

impl SimChannel {
    pub fn parse(value: &str) -> Option<SimChannel> {
        match value {
            "email" => Some(SimChannel::Email),
            "wework" => Some(SimChannel::Wework),
            "webhook" => Some(SimChannel::Webhook),
            _ => None,
        }
    }
}

pub use herald_api::sim::{SimStats, SmtpStats, WebhookStats, WeworkStats};

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while counting leaves the counts usable; keep serving them.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The summaries of the most recent receptions, oldest evicted first.
#[derive(Default)]
struct Recent {
    details: HashMap<String, (u64, serde_json::Value)>,
    order: VecDeque<(String, u64)>,
    sequence: u64,
}

impl Recent {
    fn insert(&mut self, id: &str, detail: serde_json::Value) {
        self.sequence += 1;
        let sequence = self.sequence;
        self.details.insert(id.to_owned(), (sequence, detail));
        self.order.push_back((id.to_owned(), sequence));
        while self.order.len() > RECENT_DETAILS {
            if let Some((old, old_sequence)) = self.order.pop_front() {
                // Only the entry's latest reception evicts it.
                if self
                    .details
                    .get(&old)
                    .is_some_and(|(s, _)| *s == old_sequence)
                {
                    self.details.remove(&old);
                }
            }
        }
    }
}

/// One channel's receptions.
struct Ledger {
    received: AtomicU64,
    unique: AtomicU64,
    duplicates: AtomicU64,
    rejected: AtomicU64,
    hasher: RandomState,
    shards: Vec<Mutex<HashMap<String, u32>>>,
    recent: Mutex<Recent>,
}

impl Ledger {
    fn new() -> Self {
        Ledger {
            received: AtomicU64::new(0),
            unique: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            recent: Mutex::new(Recent::default()),
        }
    }

    fn shard(&self, id: &str) -> &Mutex<HashMap<String, u32>> {
        let index = (self.hasher.hash_one(id) as usize) % self.shards.len();
        &self.shards[index]
    }

    /// Counts a reception; `true` for the first of its id.
    fn record(&self, id: Option<&str>, detail: serde_json::Value) -> bool {
        self.received.fetch_add(1, Ordering::Relaxed);
        let Some(id) = id else { return false };
        let first = {
            let mut shard = lock(self.shard(id));
            match shard.get_mut(id) {
                Some(count) => {
                    *count = count.saturating_add(1);
                    false
                }
                None => {
                    shard.insert(id.to_owned(), 1);
                    true
                }
            }
        };
        if first {
            self.unique.fetch_add(1, Ordering::Relaxed);
        } else {
            self.duplicates.fetch_add(1, Ordering::Relaxed);
        }
        lock(&self.recent).insert(id, detail);
        first
    }

    fn count(&self, id: &str) -> u32 {
        lock(self.shard(id)).get(id).copied().unwrap_or(0)
    }

    fn ids(&self) -> HashMap<String, u32> {
        let mut all = HashMap::new();
        for shard in &self.shards {
            all.extend(lock(shard).iter().map(|(id, count)| (id.clone(), *count)));
        }
        all
    }

    fn last(&self, id: &str) -> Option<serde_json::Value> {
        lock(&self.recent)
            .details
            .get(id)
            .map(|(_, detail)| detail.clone())
    }

    fn reset(&self) {
        for shard in &self.shards {
            // A fresh map gives back the memory of millions of ids.
            *lock(shard) = HashMap::new();
        }
        *lock(&self.recent) = Recent::default();
        self.received.store(0, Ordering::Relaxed);
        self.unique.store(0, Ordering::Relaxed);
        self.duplicates.store(0, Ordering::Relaxed);
        self.rejected.store(0, Ordering::Relaxed);
    }
}

/// All of the simulator's counters, shared by its servers.
pub struct Counters {
    email: Ledger,
    wework: Ledger,
    webhook: Ledger,
    signature_failures: AtomicU64,
    smtp_connections: AtomicU64,
    token_requests: AtomicU64,
    wework_cost: AtomicU64,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            email: Ledger::new(),
            wework: Ledger::new(),
            webhook: Ledger::new(),
            signature_failures: AtomicU64::new(0),
            smtp_connections: AtomicU64::new(0),
            token_requests: AtomicU64::new(0),
            wework_cost: AtomicU64::new(0),
        }
    }
}

impl Counters {
    fn ledger(&self, channel: SimChannel) -> &Ledger {
        match channel {
            SimChannel::Email => &self.email,
            SimChannel::Wework => &self.wework,
            SimChannel::Webhook => &self.webhook,
        }
    }

    /// A message the simulator accepted; `id` is its `X-Herald-Message-Id`.
    /// `true` the first time `id` is seen.
    pub fn record_received(
        &self,
        channel: SimChannel,
        id: Option<&str>,
        detail: serde_json::Value,
    ) -> bool {
        self.ledger(channel).record(id, detail)
    }

    /// A message answered with a failure.
    pub fn record_rejected(&self, channel: SimChannel) {
        self.ledger(channel)
            .rejected
            .fetch_add(1, Ordering::Relaxed);
    }

    /// A webhook refused for its signature.
    pub fn record_signature_failure(&self) {
        self.signature_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub fn record_smtp_connection(&self) {
        self.smtp_connections.fetch_add(1, Ordering::Relaxed);
    }

    pub fn record_token_request(&self) {
        self.token_requests.fetch_add(1, Ordering::Relaxed);
    }

    pub fn record_wework_cost(&self, users: u64) {
        self.wework_cost.fetch_add(users, Ordering::Relaxed);
    }

    /// How many times the message `id` was accepted on `channel`.
    pub fn count(&self, channel: SimChannel, id: &str) -> u32 {
        self.ledger(channel).count(id)
    }

    /// Every id received on `channel` with its count.
    pub fn ids(&self, channel: SimChannel) -> HashMap<String, u32> {
        self.ledger(channel).ids()
    }

    /// The summary of the last accepted reception of `id`, if recent.
    pub fn last(&self, channel: SimChannel, id: &str) -> Option<serde_json::Value> {
        self.ledger(channel).last(id)
    }

    pub fn stats(&self) -> SimStats {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        SimStats {
            smtp: SmtpStats {
                received: load(&self.email.received),
                unique: load(&self.email.unique),
                duplicates: load(&self.email.duplicates),
                rejected: load(&self.email.rejected),
                connections: load(&self.smtp_connections),
            },
            wework: WeworkStats {
                received: load(&self.wework.received),
                unique: load(&self.wework.unique),
                duplicates: load(&self.wework.duplicates),
                rejected: load(&self.wework.rejected),
                token_requests: load(&self.token_requests),
                cost: load(&self.wework_cost),
            },
            webhook: WebhookStats {
                received: load(&self.webhook.received),
                unique: load(&self.webhook.unique),
                duplicates: load(&self.webhook.duplicates),
                rejected: load(&self.webhook.rejected),
                signature_failures: load(&self.signature_failures),
            },
        }
    }

    /// Zeroes every counter and forgets every id.
    pub fn reset(&self) {
        self.email.reset();
        self.wework.reset();
        self.webhook.reset();
        self.signature_failures.store(0, Ordering::Relaxed);
        self.smtp_connections.store(0, Ordering::Relaxed);
        self.token_requests.store(0, Ordering::Relaxed);
        self.wework_cost.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_second_reception_of_an_id_is_a_duplicate() {
        let counters = Counters::default();
        counters.record_received(SimChannel::Email, Some("a"), json!({}));
        counters.record_received(SimChannel::Email, Some("a"), json!({}));
        counters.record_received(SimChannel::Email, Some("b"), json!({}));
        let stats = counters.stats().smtp;
        assert_eq!((stats.received, stats.unique, stats.duplicates), (3, 2, 1));
        assert_eq!(counters.count(SimChannel::Email, "a"), 2);
        assert_eq!(counters.count(SimChannel::Wework, "a"), 0);
    }

    #[test]
    fn a_message_without_an_id_counts_as_received_only() {
        let counters = Counters::default();
        counters.record_received(SimChannel::Wework, None, json!({}));
        let stats = counters.stats().wework;
        assert_eq!((stats.received, stats.unique, stats.duplicates), (1, 0, 0));
    }

    #[test]
    fn reset_forgets_everything() {
        let counters = Counters::default();
        counters.record_received(SimChannel::Email, Some("a"), json!({"x": 1}));
        counters.record_smtp_connection();
        counters.record_received(SimChannel::Webhook, Some("w"), json!({}));
        counters.record_signature_failure();
        counters.reset();
        assert_eq!(counters.stats(), SimStats::default());
        assert_eq!(counters.count(SimChannel::Email, "a"), 0);
        assert!(counters.last(SimChannel::Email, "a").is_none());
    }

    #[test]
    fn details_are_kept_only_for_recent_ids() {
        let mut recent = Recent::default();
        recent.insert("first", json!(1));
        for i in 0..RECENT_DETAILS {
            recent.insert(&i.to_string(), json!(i));
        }
        assert!(!recent.details.contains_key("first"));
        assert_eq!(recent.details.len(), RECENT_DETAILS);
    }

    #[test]
    fn a_received_again_id_is_not_evicted_by_its_older_reception() {
        let mut recent = Recent::default();
        recent.insert("kept", json!(1));
        for i in 0..RECENT_DETAILS - 1 {
            recent.insert(&i.to_string(), json!(i));
        }
        recent.insert("kept", json!(2));
        recent.insert("one-more", json!(3));
        assert_eq!(
            recent.details.get("kept").map(|(_, d)| d.clone()),
            Some(json!(2))
        );
    }
}
