//! Provider adapters, one per kind. Each maps every outcome of a send to one
//! [`Disposition`]; the worker acts on the disposition, never on strings.

mod smtp;
pub mod webhook;
mod wework;

use std::collections::HashMap;
use std::sync::Arc;

use herald_domain::provider_config::ProviderConfig;
use herald_domain::{Disposition, FieldError, MessageId};
use herald_proto::v1;

use crate::classify::Classifier;

pub use smtp::SmtpAdapter;
pub use webhook::WebhookAdapter;
pub use wework::WeworkAdapter;

/// One message as an adapter sends it.
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    pub message_id: MessageId,
    /// One email address, WeWork user ids, or one URL.
    pub recipients: &'a [String],
    pub content: &'a v1::Content,
    pub metadata: &'a HashMap<String, String>,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// The one-click unsubscribe link (emails carry it as
    /// `List-Unsubscribe`, RFC 8058).
    pub unsubscribe: Option<&'a str>,
    /// The envelope sender (VERP return path) bounces go to, when Herald
    /// has a bounce domain; else the From address.
    pub return_path: Option<&'a str>,
}

/// A ready-to-send provider: its connections, pools and token caches live
/// here and are reused across sends.
pub enum Adapter {
    Smtp(SmtpAdapter),
    Wework(WeworkAdapter),
    Webhook(WebhookAdapter),
}

impl Adapter {
    /// Builds the adapter for a provider's decoded `config`; `classifier`
    /// says what the provider's refusals mean.
    pub fn build(
        config: &ProviderConfig,
        classifier: Arc<Classifier>,
    ) -> Result<Adapter, FieldError> {
        match config.clone() {
            ProviderConfig::Smtp(c) => {
                Ok(Adapter::Smtp(SmtpAdapter::with_classifier(c, classifier)?))
            }
            ProviderConfig::Wework(c) => Ok(Adapter::Wework(WeworkAdapter::with_classifier(
                c, classifier,
            )?)),
            ProviderConfig::Webhook(c) => Ok(Adapter::Webhook(WebhookAdapter::with_classifier(
                c, classifier,
            )?)),
        }
    }

    pub async fn send(&self, out: Outgoing<'_>) -> Disposition {
        match self {
            Adapter::Smtp(a) => a.send(out).await,
            Adapter::Wework(a) => a.send(out).await,
            Adapter::Webhook(a) => a.send(out).await,
        }
    }
}
