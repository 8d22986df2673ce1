//! `/v1/callbacks`: what providers tell Herald after a send (docs/API.md,
//! "Callbacks"). The WeWork route takes WeWork's own XML protocol
//! (`herald_callbacks::wework`); the generic route takes this JSON, signed.

use chrono::{DateTime, Utc};
use herald_domain::{EventKind, MessageId};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;
use uuid::Uuid;

/// `POST /v1/callbacks/{provider_id}`: one event about a message the
/// provider sent, signed with the provider's `callback_secret`
/// (`X-Herald-Signature: sha256=<hex HMAC-SHA256 of the body>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderCallback {
    /// The message's id, as Herald gave it (the `X-Herald-Message-Id`
    /// header of a webhook send, the Message-ID's local part of an email).
    pub message_id: MessageId,
    pub event: EventKind,
    /// When it happened. Events older than the replay window (24 hours)
    /// or more than 5 minutes ahead are refused 401.
    pub at: DateTime<Utc>,
    /// Anything else the provider says (a bounce's status code and
    /// diagnostic, a click's URL), kept with the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<Map<String, Value>>,
}

/// `202`: the event is queued (stored and applied by a worker). A provider's
/// retry of an event already taken is answered the same and changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CallbackAccepted {
    /// The event's id.
    pub id: Uuid,
}

/// The WeWork route's query: `msg_signature`, `timestamp` and `nonce`
/// always; `echostr` on the URL verification (GET).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::IntoParams)]
pub struct WeworkQuery {
    pub msg_signature: Option<String>,
    pub timestamp: Option<String>,
    pub nonce: Option<String>,
    pub echostr: Option<String>,
}
