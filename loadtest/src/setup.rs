//! Makes the demo's tenant, its API key and the simulator's providers exist
//! through the admin API. Re-running is safe: existing ones are reused and
//! the providers' config is brought up to date.

use std::path::Path;

use anyhow::{bail, Context};
use herald_api::{Client, NewProvider, NewTenant, ProviderPatch};
use herald_domain::provider_config::{
    ProviderConfig, SmtpConfig, TlsMode, WebhookConfig, WeworkConfig,
};
use herald_domain::{ProviderKind, Quota};
use serde_json::{Map, Value};

pub const DEMO_TENANT_CODE: &str = "demo";
pub const EMAIL_PROVIDER: &str = "sim-email";
pub const WEWORK_PROVIDER: &str = "sim-wework";
pub const WEBHOOK_PROVIDER: &str = "sim-webhook";
/// The simulator's providers sign their callbacks with this (a demo's
/// secret: the simulator is told it by `PUT /sim/callbacks`).
pub const DEMO_CALLBACK_SECRET: &str = "herald-sim-callback-secret";
/// The simulated WeWork app's callback token and EncodingAESKey.
pub const DEMO_WEWORK_TOKEN: &str = "heraldSimToken";
pub const DEMO_WEWORK_AES_KEY: &str = "aGVyYWxkLXNpbS13ZXdvcmstY2FsbGJhY2sta2V5MDE";

#[derive(Debug, Clone)]
pub struct Tenant {
    pub id: String,
    pub created: bool,
}

/// The demo tenant: found by code, or created.
pub async fn ensure_tenant(admin: &Client) -> anyhow::Result<Tenant> {
    if let Some(id) = find_tenant(admin).await? {
        return Ok(Tenant { id, created: false });
    }
    let new = NewTenant {
        code: DEMO_TENANT_CODE.to_owned(),
        name: "Herald demo".to_owned(),
        weight: None,
        daily_quota: None,
        rate_limit_per_sec: None,
        webhook_url: None,
        webhook_events: None,
        tracking: None,
    };
    // Not retried: a second create after a lost answer would be refused as
    // a duplicate code; the lookup below covers that case.
    match admin.create_tenant(&new).await {
        Ok(t) => Ok(Tenant {
            id: t.id.to_string(),
            created: true,
        }),
        // Another run created it meanwhile.
        Err(e) => match find_tenant(admin).await? {
            Some(id) => Ok(Tenant { id, created: false }),
            None => Err(anyhow::Error::new(e).context("Failed to create the demo tenant")),
        },
    }
}

async fn find_tenant(admin: &Client) -> anyhow::Result<Option<String>> {
    let tenants = admin
        .with_retries()
        .tenants()
        .await
        .context("Failed to list tenants")?;
    Ok(tenants
        .into_iter()
        .find(|t| t.code == DEMO_TENANT_CODE)
        .map(|t| t.id.to_string()))
}

/// A fresh API key for the tenant (shown once by the API).
pub async fn create_key(admin: &Client, tenant_id: &str) -> anyhow::Result<String> {
    // Not retried: each call makes another key.
    let key = admin
        .create_key(tenant_id)
        .await
        .context("Failed to create an API key")?;
    Ok(key.key)
}

/// What a provider should look like.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderSpec {
    pub name: &'static str,
    pub config: ProviderConfig,
}

impl ProviderSpec {
    pub fn kind(&self) -> ProviderKind {
        match self.config {
            ProviderConfig::Smtp(_) => ProviderKind::Smtp,
            ProviderConfig::Wework(_) => ProviderKind::Wework,
            ProviderConfig::Webhook(_) => ProviderKind::Webhook,
        }
    }

    /// The config as the API takes it: a JSON object whose fields depend
    /// on the kind (the contract keeps `config` an object for that reason).
    pub fn config_object(&self) -> anyhow::Result<Map<String, Value>> {
        let value = match &self.config {
            ProviderConfig::Smtp(c) => serde_json::to_value(c),
            ProviderConfig::Wework(c) => serde_json::to_value(c),
            ProviderConfig::Webhook(c) => serde_json::to_value(c),
        }
        .with_context(|| format!("Failed to encode the config of {}", self.name))?;
        match value {
            Value::Object(map) => Ok(map),
            other => bail!("the config of {} is not an object: {other}", self.name),
        }
    }
}

/// The SMTP provider pointing at the simulator. With a CA file, STARTTLS
/// verifies the simulator's certificate; without one it accepts any.
pub fn email_provider(host: &str, port: u16, ca_file: Option<&Path>) -> ProviderSpec {
    ProviderSpec {
        name: EMAIL_PROVIDER,
        config: ProviderConfig::Smtp(SmtpConfig {
            host: host.to_owned(),
            port,
            tls: TlsMode::Starttls,
            ca_file: ca_file.map(|path| path.display().to_string()),
            accept_invalid_certs: ca_file.is_none(),
            username: None,
            password: None,
            from: Some("demo@herald.local".to_owned()),
            pool_size: Some(8),
            message_id_domain: None,
            timeout_secs: None,
            callback_secret: Some(DEMO_CALLBACK_SECRET.to_owned()),
        }),
    }
}

pub fn wework_provider(base_url: &str) -> ProviderSpec {
    ProviderSpec {
        name: WEWORK_PROVIDER,
        config: ProviderConfig::Wework(WeworkConfig {
            base_url: base_url.trim_end_matches('/').to_owned(),
            corp_id: "demo-corp".to_owned(),
            corp_secret: "demo-secret".to_owned(),
            agent_id: 1_000_002,
            token: Some(DEMO_WEWORK_TOKEN.to_owned()),
            encoding_aes_key: Some(DEMO_WEWORK_AES_KEY.to_owned()),
            duplicate_check_interval: None,
            timeout_ms: None,
            callback_secret: Some(DEMO_CALLBACK_SECRET.to_owned()),
        }),
    }
}

/// The webhook provider signing with the simulator's secret (the simulator
/// answers 401 to any other signature).
pub fn webhook_provider(signing_secret: &str) -> ProviderSpec {
    ProviderSpec {
        name: WEBHOOK_PROVIDER,
        config: ProviderConfig::Webhook(WebhookConfig {
            signing_secret: signing_secret.to_owned(),
            timeout_ms: Some(10_000),
            // The simulator listens on loopback, which the worker refuses as
            // a webhook target (SSRF guard) unless the provider allows it.
            allow_private_addresses: true,
            callback_secret: Some(DEMO_CALLBACK_SECRET.to_owned()),
        }),
    }
}

/// The simulator's callback settings for the three demo providers (ids in
/// order email, WeWork, webhook), at the simulator's default rates.
pub fn sim_callbacks(
    producer_url: &str,
    email: &str,
    wework: &str,
    webhook: &str,
) -> herald_api::sim::SimCallbacks {
    use herald_api::sim::{GenericTarget, SimCallbacks, WeworkTarget};
    let generic = |id: &str| GenericTarget {
        provider_id: id.to_owned(),
        callback_secret: DEMO_CALLBACK_SECRET.to_owned(),
    };
    SimCallbacks {
        herald_url: Some(producer_url.trim_end_matches('/').to_owned()),
        email: Some(generic(email)),
        webhook: Some(generic(webhook)),
        wework: Some(WeworkTarget {
            provider_id: wework.to_owned(),
            token: DEMO_WEWORK_TOKEN.to_owned(),
            encoding_aes_key: DEMO_WEWORK_AES_KEY.to_owned(),
            corp_id: "demo-corp".to_owned(),
            agent_id: 1_000_002,
        }),
        rates: Default::default(),
        delay_ms: 50,
        // Herald's return-path listener, when this shell's Herald has one:
        // bounces and complaints then come back as DSN and ARF mail.
        return_path_smtp: std::env::var("HERALD_BOUNCE_SMTP_ADDR")
            .ok()
            .filter(|a| !a.is_empty()),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ensured {
    Created,
    Updated,
}

/// Creates the shared provider, or PATCHes an existing one (by name) to the
/// spec's config and enables it.
pub async fn ensure_provider(
    admin: &Client,
    spec: &ProviderSpec,
) -> anyhow::Result<(String, Ensured)> {
    let providers = admin
        .with_retries()
        .providers()
        .await
        .context("Failed to list providers")?;
    let config = spec.config_object()?;
    if let Some(existing) = providers.into_iter().find(|p| p.name == spec.name) {
        if existing.kind != spec.kind() {
            bail!(
                "a provider named {} exists with kind {}, not {}: rename or delete it",
                spec.name,
                existing.kind,
                spec.kind()
            );
        }
        let patch = ProviderPatch {
            config: Some(config),
            enabled: Some(true),
            ..ProviderPatch::default()
        };
        // A PATCH to the same state is safe to repeat.
        admin
            .with_retries()
            .update_provider(existing.id, &patch)
            .await
            .with_context(|| format!("Failed to update provider {}", spec.name))?;
        return Ok((existing.id.to_string(), Ensured::Updated));
    }
    let new = NewProvider {
        name: spec.name.to_owned(),
        channel: None,
        kind: spec.kind(),
        config: Value::Object(config),
        quota: Some(Quota::default()),
        send_window: None,
        weight: None,
        enabled: None,
        tenant_id: None,
    };
    let created = admin
        .create_provider(&new)
        .await
        .with_context(|| format!("Failed to create provider {}", spec.name))?;
    Ok((created.id.to_string(), Ensured::Created))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn email_provider_verifies_with_a_ca_file_or_accepts_any_without() {
        let with = email_provider("127.0.0.1", 2525, Some(Path::new("/x/ca.pem")))
            .config_object()
            .expect("an object");
        assert_eq!(with["ca_file"], "/x/ca.pem");
        assert_eq!(with["tls"], "starttls");
        assert_eq!(with["pool_size"], 8);
        assert_eq!(with["accept_invalid_certs"], false);
        let without = email_provider("127.0.0.1", 2525, None)
            .config_object()
            .expect("an object");
        assert_eq!(without["accept_invalid_certs"], true);
        assert!(without.get("ca_file").is_none());
    }

    #[test]
    fn wework_provider_points_at_the_simulator() {
        let p = wework_provider("http://127.0.0.1:8090/");
        assert_eq!(p.kind(), ProviderKind::Wework);
        let config = p.config_object().expect("an object");
        assert_eq!(config["base_url"], "http://127.0.0.1:8090");
        assert_eq!(config["agent_id"], 1_000_002);
    }

    #[test]
    fn webhook_provider_signs_with_the_given_secret_and_may_reach_loopback() {
        let p = webhook_provider("whsec_0123456789abcdef");
        assert_eq!(p.name, "sim-webhook");
        assert_eq!(p.kind(), ProviderKind::Webhook);
        assert_eq!(
            Value::Object(p.config_object().expect("an object")),
            json!({
                "signing_secret": "whsec_0123456789abcdef",
                "allow_private_addresses": true,
                "timeout_ms": 10_000,
                "callback_secret": DEMO_CALLBACK_SECRET,
            })
        );
    }

    #[test]
    fn every_spec_is_a_config_the_producer_accepts() {
        // The producer parses `config` with the same types: what the load
        // test sends must come back as the spec it was made from.
        for spec in [
            email_provider("127.0.0.1", 2525, None),
            wework_provider("http://127.0.0.1:8090"),
            webhook_provider(crate::sim::DEFAULT_WEBHOOK_SECRET),
        ] {
            let object = Value::Object(spec.config_object().expect("an object"));
            let parsed = ProviderConfig::parse(spec.kind(), &object).expect("valid");
            assert_eq!(parsed, spec.config, "{}", spec.name);
        }
    }
}
