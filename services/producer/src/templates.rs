//! Templates at enqueue: each message that names a template is pinned to
//! the version current now (or the one it asks for) and rendered once, so a
//! message that could not be rendered — a missing variable, a card without
//! a link, content over the cap — is refused with 422 instead of being
//! accepted and then dead-lettered. The worker renders the pinned version
//! again when it sends (decision 0026).
//!
//! Which version is current is cached too, while this producer hears every
//! write announced on PostgreSQL's templates channel (a write here forgets
//! it at once; one on another producer within the notification's delay, a
//! millisecond or two). While the listener is away every request reads it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use herald_domain::{Channel, FieldError, TemplateId, TenantId};
use herald_store::Store;
use herald_templates::{Cache, Compiled};

use crate::api::error::ApiError;
use crate::enqueue::Item;

/// Most current versions remembered; past it the map starts over.
const MAX_CURRENT: usize = 100_000;

/// A template's channel and current version.
type Current = (Channel, u32);

/// The producer's compiled versions and current version numbers.
#[derive(Default)]
pub struct Templates {
    cache: Cache,
    current: Mutex<HashMap<(TenantId, TemplateId), Current>>,
    /// Bumped by every forget: a read that began before one is not kept.
    generation: AtomicU64,
    /// Whether the listener hears every write (else `current` is not used).
    live: AtomicBool,
}

impl Templates {
    fn current_map(&self) -> MutexGuard<'_, HashMap<(TenantId, TemplateId), Current>> {
        self.current.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The template's channel and current version: remembered, or read.
    async fn current(
        &self,
        store: &Store,
        tenant: TenantId,
        id: TemplateId,
    ) -> Result<Option<Current>, ApiError> {
        let live = self.live.load(Ordering::Acquire);
        if live {
            if let Some(c) = self.current_map().get(&(tenant, id)) {
                return Ok(Some(*c));
            }
        }
        let generation = self.generation.load(Ordering::Acquire);
        let read = store.current_template(tenant, id).await?;
        if let Some(c) = read {
            let mut map = self.current_map();
            // Kept only if nothing was forgotten since the read began.
            if live && self.generation.load(Ordering::Acquire) == generation {
                if map.len() >= MAX_CURRENT {
                    map.clear();
                }
                map.insert((tenant, id), c);
            }
        }
        Ok(read)
    }

    /// A write of this template: its current version is read again.
    pub fn forget(&self, tenant: TenantId, id: TemplateId) {
        let mut map = self.current_map();
        self.generation.fetch_add(1, Ordering::AcqRel);
        map.remove(&(tenant, id));
    }

    fn forget_all(&self) {
        let mut map = self.current_map();
        self.generation.fetch_add(1, Ordering::AcqRel);
        map.clear();
    }

    /// Listens on the templates channel for as long as the producer runs:
    /// each announced write is forgotten; while the connection is lost
    /// nothing is remembered.
    pub async fn listen(&self, store: Store) {
        let mut delay = Duration::from_secs(1);
        loop {
            match store.listen(herald_store::TEMPLATES_CHANNEL).await {
                Ok(mut listener) => {
                    delay = Duration::from_secs(1);
                    self.forget_all();
                    self.live.store(true, Ordering::Release);
                    while let Ok(note) = listener.try_recv().await {
                        let Some(note) = note else { break };
                        match parse_note(note.payload()) {
                            Some((tenant, id)) => self.forget(tenant, id),
                            None => self.forget_all(),
                        }
                    }
                    self.live.store(false, Ordering::Release);
                    self.forget_all();
                }
                Err(e) => {
                    tracing::warn!(error = %e, "Cannot listen for template writes; reading current versions every time.")
                }
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(10));
        }
    }

    /// Pins and checks the template of every item that has one. One read
    /// per distinct template of the request (its current version), and one
    /// more per version not compiled yet. A refusal names the item's index.
    pub async fn pin(
        &self,
        store: &Store,
        tenant: TenantId,
        items: &mut [Item],
    ) -> Result<(), ApiError> {
        let mut found: HashMap<TemplateId, Option<(herald_domain::Channel, u32)>> = HashMap::new();
        for (index, item) in items.iter_mut().enumerate() {
            let content = &mut item.message.content;
            let Some(id) = content.template_id else {
                continue;
            };
            let refuse = |field: &str, message: String| {
                ApiError::invalid_field(FieldError::new(field, message)).at(index)
            };
            let current = match found.get(&id) {
                Some(c) => *c,
                None => {
                    let c = self.current(store, tenant, id).await?;
                    found.insert(id, c);
                    c
                }
            };
            let Some((channel, current)) = current else {
                return Err(refuse(
                    "template_id",
                    format!("no template {id} of this tenant"),
                ));
            };
            if channel != item.message.channel {
                return Err(refuse(
                    "template_id",
                    format!(
                        "template {id} is a {} template; this message is {}",
                        channel.as_str(),
                        item.message.channel.as_str()
                    ),
                ));
            }
            let version = match content.template_version {
                Some(v) if v > current => {
                    return Err(refuse(
                        "template_version",
                        format!("template {id} has versions 1 to {current}; there is no {v}"),
                    ))
                }
                Some(v) => v,
                None => current,
            };
            let compiled = self.compiled(store, tenant, id, version).await?;
            compiled
                .render(&content.variables)
                .map_err(|e| ApiError::invalid_field(e).at(index))?;
            content.template_version = Some(version);
        }
        Ok(())
    }

    async fn compiled(
        &self,
        store: &Store,
        tenant: TenantId,
        id: TemplateId,
        version: u32,
    ) -> Result<Arc<Compiled>, ApiError> {
        let key = (tenant.as_uuid(), id.as_uuid(), version);
        if let Some(c) = self.cache.get(&key) {
            return Ok(c);
        }
        let stored = store
            .template_version(tenant, id, version)
            .await?
            .ok_or_else(|| {
                ApiError::invalid_field(FieldError::new(
                    "template_version",
                    format!("template {id} has no version {version}"),
                ))
            })?;
        // Stored versions were compiled when written; one that no longer
        // compiles (an engine upgrade) is the operator's to fix.
        let compiled = herald_templates::compile(stored.channel, &stored.parts)
            .map_err(|e| ApiError::internal("A stored template version does not compile", e))?;
        Ok(self.cache.insert(key, compiled))
    }
}

/// `<tenant>/<template>`, as the store announces a write.
fn parse_note(payload: &str) -> Option<(TenantId, TemplateId)> {
    let (tenant, id) = payload.split_once('/')?;
    Some((tenant.parse().ok()?, id.parse().ok()?))
}
