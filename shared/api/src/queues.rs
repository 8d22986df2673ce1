//! `/v1/admin/queues`: the deployment's queues and their depths.

use herald_domain::{Channel, TenantId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One of the deployment's queues.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct QueueDepth {
    pub name: String,
    /// user, central, express, return, delay, dead_letter, callbacks.
    pub kind: String,
    pub tenant_id: Option<TenantId>,
    pub channel: Option<Channel>,
    pub exists: bool,
    /// Ready messages; null when the queue does not exist.
    pub messages: Option<u32>,
    pub consumers: Option<u32>,
}
