//! Compiled versions, shared by the requests of a producer or the sends of
//! a worker. A version never changes once written, so an entry is never
//! stale; the cache is only bounded.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use uuid::Uuid;

use crate::Compiled;

/// A version: tenant, template, version number.
pub type CacheKey = (Uuid, Uuid, u32);

/// At most `capacity` compiled versions; when full, an arbitrary entry
/// makes room (a miss costs one read and one compile).
pub struct Cache {
    entries: Mutex<HashMap<CacheKey, Arc<Compiled>>>,
    capacity: usize,
}

impl Cache {
    pub fn new(capacity: usize) -> Cache {
        Cache {
            entries: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    pub fn get(&self, key: &CacheKey) -> Option<Arc<Compiled>> {
        self.lock().get(key).cloned()
    }

    /// Keeps `compiled` under `key` and hands it back shared.
    pub fn insert(&self, key: CacheKey, compiled: Compiled) -> Arc<Compiled> {
        let compiled = Arc::new(compiled);
        let mut entries = self.lock();
        if entries.len() >= self.capacity && !entries.contains_key(&key) {
            if let Some(victim) = entries.keys().next().copied() {
                entries.remove(&victim);
            }
        }
        entries.insert(key, compiled.clone());
        compiled
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<CacheKey, Arc<Compiled>>> {
        // A panic while holding the lock leaves the map whole (every
        // change is one call), so a poisoned lock is still usable.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Default for Cache {
    fn default() -> Self {
        Cache::new(1024)
    }
}
