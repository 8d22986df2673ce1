//! The providers as every service sees them: loaded once, refreshed when
//! PostgreSQL announces a change (`LISTEN`/`NOTIFY`) and by a slow poll as a
//! backstop, so a PATCH applies without a restart. It holds decoded
//! [`Provider`]s only: a row that does not decode is reported and left out
//! at each refresh (see [`crate::decode`]), so no service can use it.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use sqlx::postgres::PgListener;
use tokio::sync::watch;

use herald_domain::Provider;

use crate::{Result, Store, PROVIDERS_CHANNEL};

/// A shared, live list of providers; `changed()` wakes on each refresh.
#[derive(Clone)]
pub struct ProviderCatalog {
    rows: Arc<RwLock<Arc<Vec<Provider>>>>,
    version: watch::Receiver<u64>,
}

impl ProviderCatalog {
    /// Loads the providers and keeps them fresh until `stop` fires.
    pub async fn start(
        store: Store,
        poll: Duration,
        mut stop: watch::Receiver<bool>,
    ) -> Result<ProviderCatalog> {
        // Listen before loading: a change between the two would otherwise
        // go unheard until the next poll.
        let mut listener = connect_listener(&store).await;
        let rows = Arc::new(RwLock::new(Arc::new(store.all_providers().await?)));
        let (tx, version) = watch::channel(0u64);
        let catalog = ProviderCatalog {
            rows: rows.clone(),
            version,
        };
        tokio::spawn(async move {
            let mut counter = 0u64;
            loop {
                let wake = async {
                    match listener.as_mut() {
                        Some(l) => l.recv().await.map(|_| ()).map_err(|e| e.to_string()),
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = async { let _ = stop.wait_for(|s| *s).await; } => return,
                    r = wake => if let Err(e) = r {
                        tracing::warn!(error = %e, "Lost the provider change feed; relying on polling until it is back.");
                        listener = None;
                    },
                    _ = tokio::time::sleep(poll) => {
                        if listener.is_none() {
                            listener = connect_listener(&store).await;
                        }
                    },
                }
                match store.all_providers().await {
                    Ok(fresh) => {
                        if let Ok(mut guard) = rows.write() {
                            *guard = Arc::new(fresh);
                        }
                        counter += 1;
                        let _ = tx.send(counter);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "Failed to refresh providers; keeping the last list.")
                    }
                }
            }
        });
        Ok(catalog)
    }

    /// The current list.
    pub fn snapshot(&self) -> Arc<Vec<Provider>> {
        self.rows.read().map(|g| g.clone()).unwrap_or_default()
    }

    /// A receiver whose value changes after each refresh.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.clone()
    }
}

async fn connect_listener(store: &Store) -> Option<PgListener> {
    let mut listener = PgListener::connect_with(&store.pool).await.ok()?;
    listener.listen(PROVIDERS_CHANNEL).await.ok()?;
    Some(listener)
}
