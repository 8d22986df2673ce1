//! What a provider's stored `SmtpConfig` becomes: TLS trust, default sender,
//! pool size and timeout.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald_domain::provider_config::{SmtpConfig, TlsMode};
use herald_domain::FieldError;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use rustls::pki_types::ServerName;
use tokio::sync::Semaphore;
use tokio_rustls::TlsConnector;

use super::tls::{tls_client_config, TlsSetup};
use super::SmtpAdapter;
use crate::classify::Classifier;

const DEFAULT_POOL_SIZE: u32 = 4;
const DEFAULT_TIMEOUT_SECS: u64 = 30;
const DEFAULT_MESSAGE_ID_DOMAIN: &str = "herald.local";

impl SmtpAdapter {
    /// Prepares the adapter (TLS trust, default sender) with the built-in
    /// classifier; connects lazily on the first send. Fails when `ca_file`
    /// cannot be read or a field does not parse.
    pub fn new(config: SmtpConfig) -> Result<SmtpAdapter, FieldError> {
        SmtpAdapter::with_classifier(config, Arc::new(Classifier::default()))
    }

    /// As [`SmtpAdapter::new`], with `classifier` deciding what negative
    /// replies mean.
    pub fn with_classifier(
        config: SmtpConfig,
        classifier: Arc<Classifier>,
    ) -> Result<SmtpAdapter, FieldError> {
        let tls = match config.tls {
            TlsMode::None => None,
            mode => Some(TlsSetup {
                connector: TlsConnector::from(Arc::new(tls_client_config(&config)?)),
                server_name: ServerName::try_from(config.host.clone()).map_err(|e| {
                    FieldError::new(
                        "config.host",
                        format!("is not a valid TLS server name: {e}"),
                    )
                })?,
                implicit: mode == TlsMode::Tls,
            }),
        };
        let default_from = config
            .from
            .as_deref()
            .map(|from| {
                from.parse::<Mailbox>().map_err(|e| {
                    FieldError::new("config.from", format!("is not an email address: {e}"))
                })
            })
            .transpose()?;
        let credentials = match (&config.username, &config.password) {
            (Some(username), Some(password)) => {
                Some(Credentials::new(username.clone(), password.clone()))
            }
            _ => None,
        };
        let pool_size = config.pool_size.unwrap_or(DEFAULT_POOL_SIZE).clamp(1, 256);
        Ok(SmtpAdapter {
            server: format!("{}:{}", config.host, config.port),
            host: config.host,
            port: config.port,
            tls,
            credentials,
            default_from,
            message_id_domain: config
                .message_id_domain
                .unwrap_or_else(|| DEFAULT_MESSAGE_ID_DOMAIN.to_owned()),
            timeout: Duration::from_secs(
                config.timeout_secs.unwrap_or(DEFAULT_TIMEOUT_SECS).max(1),
            ),
            permits: Semaphore::new(pool_size as usize),
            idle: Mutex::new(Vec::new()),
            classifier,
        })
    }
}
