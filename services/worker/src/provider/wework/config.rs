//! What a provider's stored `WeworkConfig` becomes: the HTTP client, the app
//! and the duplicate-check window.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald_domain::provider_config::WeworkConfig;
use herald_domain::FieldError;

use super::token::TokenState;
use super::WeworkAdapter;
use crate::classify::Classifier;

const DEFAULT_TIMEOUT_MS: u64 = 10_000;
const DEFAULT_DUPLICATE_CHECK_INTERVAL: u32 = 1800;

impl WeworkAdapter {
    /// Builds the HTTP client, with the built-in classifier; fetches no
    /// token until the first send.
    pub fn new(config: WeworkConfig) -> Result<WeworkAdapter, FieldError> {
        WeworkAdapter::with_classifier(config, Arc::new(Classifier::default()))
    }

    /// As [`WeworkAdapter::new`], with `classifier` deciding what errcodes
    /// and HTTP statuses mean.
    pub fn with_classifier(
        config: WeworkConfig,
        classifier: Arc<Classifier>,
    ) -> Result<WeworkAdapter, FieldError> {
        let base_url = config.base_url.trim_end_matches('/').to_owned();
        reqwest::Url::parse(&base_url)
            .map_err(|e| FieldError::new("config.base_url", format!("is not a URL: {e}")))?;
        let timeout = Duration::from_millis(config.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS).max(1));
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_keepalive(Duration::from_secs(60))
            .user_agent(concat!("herald-worker/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| FieldError::new("config", format!("cannot build an HTTP client: {e}")))?;
        Ok(WeworkAdapter {
            client,
            base_url,
            corp_id: config.corp_id,
            corp_secret: config.corp_secret,
            agent_id: config.agent_id,
            duplicate_check_interval: config
                .duplicate_check_interval
                .unwrap_or(DEFAULT_DUPLICATE_CHECK_INTERVAL),
            token: Mutex::new(TokenState::default()),
            refresh: tokio::sync::Mutex::new(()),
            classifier,
        })
    }
}
