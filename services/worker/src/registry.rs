//! Adapters for the providers in the live catalog. An adapter keeps its
//! connection pool and token cache for as long as its provider row is
//! unchanged; a PATCH rebuilds it.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use herald_capacity::Limits;
use herald_domain::{Channel, ProviderKind, Quota};
use herald_store::catalog::ProviderCatalog;
use uuid::Uuid;

use crate::classify::Classifier;
use crate::provider::Adapter;

/// One provider, ready to send.
pub struct Entry {
    pub name: String,
    updated_at: DateTime<Utc>,
    /// The adapter, or why it could not be built (a bad config).
    pub adapter: Result<Adapter, String>,
    pub limits: Limits,
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
        for row in self.catalog.snapshot().iter() {
            if let Some(existing) = old.get(&row.id).filter(|e| e.updated_at == row.updated_at) {
                fresh.insert(row.id, existing.clone());
                continue;
            }
            let adapter = row
                .kind
                .parse::<ProviderKind>()
                .map_err(|e| e.to_string())
                .and_then(|kind| {
                    Adapter::build(kind, &row.config, Arc::clone(&self.classifier))
                        .map_err(|e| e.to_string())
                });
            if let Err(e) = &adapter {
                tracing::warn!(provider = %row.name, error = %e, "A provider's config cannot be used; its sends fail over.");
            }
            let quota: Quota = serde_json::from_value(row.quota.clone()).unwrap_or_default();
            fresh.insert(
                row.id,
                Arc::new(Entry {
                    name: row.name.clone(),
                    updated_at: row.updated_at,
                    adapter,
                    // The scheduler's limits exactly, so refunds hit the
                    // windows the reservation charged.
                    limits: herald_scoring::limits_for(
                        &quota,
                        row.channel.parse::<Channel>().unwrap_or(Channel::Email),
                    ),
                }),
            );
        }
        if let Ok(mut g) = self.entries.write() {
            *g = (version, Arc::new(fresh));
        }
    }
}
