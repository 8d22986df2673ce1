//! Rendering a job's template before its send: the version pinned at
//! enqueue, read once per worker and compiled once (versions never change).
//! The producer rendered the same version with the same variables when it
//! accepted the message, so a failure here means the version's row is gone
//! or unreadable, not a bad message.

use std::time::Duration;

use herald_domain::{Disposition, TemplateId, TenantId};
use herald_proto::v1;
use herald_store::Store;
use herald_templates::Cache;

/// How long a job waits when its template cannot be read (the database is
/// unavailable) before it is tried again.
const UNAVAILABLE_RETRY: Duration = Duration::from_secs(10);

/// The worker's compiled template versions.
#[derive(Default)]
pub struct Renderer {
    cache: Cache,
}

impl Renderer {
    /// The content to send: the job's own, or its template rendered.
    /// `Err` is the disposition of a job that cannot be rendered.
    pub async fn content(&self, store: &Store, job: &v1::Job) -> Result<v1::Content, Disposition> {
        let content = job.content.clone().unwrap_or_default();
        if content.template_id.is_empty() {
            return Ok(content);
        }
        let invalid = |reason: String| Disposition::DeadLetter {
            code: "template_invalid".into(),
            reason,
        };
        let tenant: TenantId = job
            .tenant_id
            .parse()
            .map_err(|_| invalid(format!("tenant id {:?} does not parse", job.tenant_id)))?;
        let id: TemplateId = content.template_id.parse().map_err(|_| {
            invalid(format!(
                "template id {:?} does not parse",
                content.template_id
            ))
        })?;
        let version = content.template_version;
        if version == 0 {
            return Err(invalid(format!(
                "template {id} has no version pinned (a producer older than templates?)"
            )));
        }
        let key = (tenant.as_uuid(), id.as_uuid(), version);
        let compiled = match self.cache.get(&key) {
            Some(c) => c,
            None => {
                let stored = match store.template_version(tenant, id, version).await {
                    Ok(Some(s)) => s,
                    Ok(None) => {
                        return Err(Disposition::DeadLetter {
                            code: "template_missing".into(),
                            reason: format!("template {id} has no version {version}"),
                        })
                    }
                    Err(e) => {
                        return Err(Disposition::RetryAfter {
                            after: UNAVAILABLE_RETRY,
                            code: "template_unavailable".into(),
                            reason: format!("template {id} v{version} could not be read: {e}"),
                        })
                    }
                };
                let compiled =
                    herald_templates::compile(stored.channel, &stored.parts).map_err(|e| {
                        invalid(format!("template {id} v{version} does not compile: {e}"))
                    })?;
                self.cache.insert(key, compiled)
            }
        };
        let rendered =
            compiled
                .render(&content.variables)
                .map_err(|e| Disposition::DeadLetter {
                    code: "template_render".into(),
                    reason: format!("template {id} v{version}: {}", e.message),
                })?;
        Ok(herald_templates::into_content(rendered, content))
    }
}
