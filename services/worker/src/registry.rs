//! Adapters for the providers in the live catalog. An adapter keeps its
//! connection pool and token cache for as long as its provider row is
//! unchanged; a PATCH rebuilds it. Its pacer (decision 0013) lasts as long
//! as its quota: a PATCH that changes the quota rebuilds it. The catalog holds only providers whose
//! row decodes (the store reports the others), so a broken row has no
//! entry here: a job assigned to it fails over.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use herald_capacity::Limits;
use herald_store::catalog::ProviderCatalog;
use uuid::Uuid;

use crate::classify::Classifier;
use crate::pace::{self, Pacer};
use crate::provider::Adapter;

/// One provider, ready to send.
pub struct Entry {
    pub name: String,
    updated_at: DateTime<Utc>,
    /// The adapter, or why it could not be built (a bad config).
    pub adapter: Result<Adapter, String>,
    pub limits: Limits,
    /// The provider's pace inside this worker, `None` if it is not paced
    /// (no per-minute limit). Kept across a change that leaves the quota
    /// as it was; rebuilt when the quota changes.
    pub pacer: Option<Arc<Pacer>>,
}

type Entries = HashMap<Uuid, Arc<Entry>>;

pub struct Registry {
    catalog: ProviderCatalog,
    /// Shared by every adapter the registry builds.
    classifier: Arc<Classifier>,
    entries: RwLock<(u64, Arc<Entries>)>,
}

impl Registry {
    pub fn new(catalog: ProviderCatalog, classifier: Arc<Classifier>) -> Registry {
        let registry = Registry {
            catalog,
            classifier,
            entries: RwLock::new((u64::MAX, Arc::new(HashMap::new()))),
        };
        registry.refresh();
        registry
    }

    /// The provider's entry, `None` if it is unknown or deleted.
    pub fn get(&self, id: Uuid) -> Option<Arc<Entry>> {
        let version = *self.catalog.subscribe().borrow();
        let stale = self.entries.read().map(|g| g.0 != version).unwrap_or(true);
        if stale {
            self.refresh();
        }
        self.entries.read().ok().and_then(|g| g.1.get(&id).cloned())
    }

    fn refresh(&self) {
        let version = *self.catalog.subscribe().borrow();
        let old = self.entries.read().map(|g| g.1.clone()).unwrap_or_default();
        let mut fresh: Entries = HashMap::new();
        for provider in self.catalog.snapshot().iter() {
            let id = provider.id.as_uuid();
            if let Some(existing) = old.get(&id).filter(|e| e.updated_at == provider.updated_at) {
                fresh.insert(id, existing.clone());
                continue;
            }
            // The config decoded; building can still fail on what it
            // points at (an unreadable CA file).
            let adapter = Adapter::build(&provider.config, Arc::clone(&self.classifier))
                .map_err(|e| e.to_string());
            if let Err(e) = &adapter {
                tracing::warn!(provider = %provider.name, provider_id = %id, error = %e, "A provider's adapter cannot be built; its sends fail over.");
            }
            fresh.insert(
                id,
                Arc::new(Entry {
                    name: provider.name.clone(),
                    updated_at: provider.updated_at,
                    adapter,
                    // The scheduler's limits exactly, so refunds hit the
                    // windows the reservation charged.
                    limits: herald_scoring::limits_for(&provider.quota, provider.channel),
                    pacer: pace::carry_over(
                        old.get(&id).and_then(|e| e.pacer.as_ref()),
                        &provider.quota,
                    ),
                }),
            );
        }
        if let Ok(mut g) = self.entries.write() {
            *g = (version, Arc::new(fresh));
        }
    }
}
