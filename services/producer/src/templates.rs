//! Templates at enqueue: each message that names a template is pinned to
//! the version current now (or the one it asks for) and rendered once, so a
//! message that could not be rendered — a missing variable, a card without
//! a link, content over the cap — is refused with 422 instead of being
//! accepted and then dead-lettered. The worker renders the pinned version
//! again when it sends (decision 0026).

use std::collections::HashMap;
use std::sync::Arc;

use herald_domain::{FieldError, TemplateId, TenantId};
use herald_store::Store;
use herald_templates::{Cache, Compiled};

use crate::api::error::ApiError;
use crate::enqueue::Item;

/// The producer's compiled versions.
#[derive(Default)]
pub struct Templates {
    cache: Cache,
}

impl Templates {
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
                    let c = store.current_template(tenant, id).await?;
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
