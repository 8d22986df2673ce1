//! Herald's public contract, written once: every HTTP request and response
//! body as a serde type with its OpenAPI schema (`ToSchema`), the parser that
//! turns a body into one of them with errors naming the field, and (feature
//! `client`) the typed client the CLI, the load test and the tests use.
//! [`sim`] is the provider simulator's control API, shared the same way by
//! the simulator and the programs that drive it.
//!
//! The producer's handlers take and return these types, gRPC converts into
//! them, and `/openapi.json` is generated from them; `docs/API.md` is the
//! guide.

pub mod callbacks;
pub mod dead_letters;
pub mod error;
pub mod messages;
mod object;
pub mod page;
pub mod parse;
pub mod providers;
pub mod queues;
pub mod schema;
pub mod sim;
pub mod suppressions;
pub mod templates;
pub mod tenants;
pub mod webhooks;

#[cfg(feature = "client")]
pub mod client;

pub use callbacks::{CallbackAccepted, ProviderCallback, WeworkQuery};
pub use dead_letters::{ReplayReport, ReplayRequest};
pub use error::{ErrorBody, ErrorDetail};
/// What [`ParseError::Field`] carries: the field's dotted path and a sentence.
pub use herald_domain::FieldError;
pub use messages::{
    Accepted, AdminMessageRecord, BatchAccepted, Cancelled, ListMessages, MessageEvent,
    MessageRecord, SendBatch, SendMessage, MAX_BATCH_ITEMS,
};
pub use page::{Page, PageQuery};
pub use parse::{parse_body, parse_object, ParseError};
pub use providers::{
    NewProvider, Provider, ProviderLoad, ProviderPatch, ProviderScore, ScoreParts, WindowUse,
};
pub use queues::QueueDepth;
pub use suppressions::{
    ChosenReason, NewSuppression, Suppression, SuppressionQuery, SuppressionReason,
};
pub use templates::{
    DeletedTemplate, NewTemplate, Template, TemplateBody, TemplateQuery, TemplateVersion,
};
pub use tenants::{Key, NewTenant, RevokedKey, Tenant, TenantPatch};
pub use webhooks::{
    DeliveryQuery, DeliveryState, WebhookDelivery, WebhookPayload, WebhookSecret, WebhookSettings,
};

#[cfg(feature = "client")]
pub use client::{Client, ClientError};
