//! Makes the demo's tenant, its API key and the simulator's providers exist
//! through the admin API. Re-running is safe: existing ones are reused and
//! the providers' config is brought up to date.

use std::path::Path;

use anyhow::{anyhow, bail, Context};
use reqwest::Method;
use serde_json::{json, Value};

use crate::api::ApiClient;

pub const DEMO_TENANT_CODE: &str = "demo";
pub const EMAIL_PROVIDER: &str = "sim-email";
pub const WEWORK_PROVIDER: &str = "sim-wework";
pub const WEBHOOK_PROVIDER: &str = "sim-webhook";

#[derive(Debug, Clone)]
pub struct Tenant {
    pub id: String,
    pub created: bool,
}

/// The demo tenant: found by code, or created.
pub async fn ensure_tenant(admin: &ApiClient) -> anyhow::Result<Tenant> {
    if let Some(id) = find_tenant(admin).await? {
        return Ok(Tenant { id, created: false });
    }
    let body = json!({"code": DEMO_TENANT_CODE, "name": "Herald demo"});
    match admin
        .once(Method::POST, "/v1/admin/tenants", Some(&body))
        .await
    {
        Ok(t) => {
            let id = t["id"]
                .as_str()
                .ok_or_else(|| anyhow!("the created tenant has no id: {t}"))?;
            Ok(Tenant {
                id: id.to_owned(),
                created: true,
            })
        }
        // Another run created it meanwhile.
        Err(e) => match find_tenant(admin).await? {
            Some(id) => Ok(Tenant { id, created: false }),
            None => Err(e.context("Failed to create the demo tenant")),
        },
    }
}

async fn find_tenant(admin: &ApiClient) -> anyhow::Result<Option<String>> {
    let tenants = admin
        .list_all("/v1/admin/tenants")
        .await
        .context("Failed to list tenants")?;
    Ok(tenants
        .iter()
        .find(|t| t["code"].as_str() == Some(DEMO_TENANT_CODE))
        .and_then(|t| t["id"].as_str())
        .map(str::to_owned))
}

/// A fresh API key for the tenant (shown once by the API).
pub async fn create_key(admin: &ApiClient, tenant_id: &str) -> anyhow::Result<String> {
    let path = format!("/v1/admin/tenants/{tenant_id}/keys");
    let answer = admin
        .once(Method::POST, &path, None)
        .await
        .context("Failed to create an API key")?;
    answer["key"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("the new API key's answer has no `key`"))
}

/// What a provider should look like.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderSpec {
    pub name: &'static str,
    pub kind: &'static str,
    pub config: Value,
}

/// The SMTP provider pointing at the simulator. With a CA file, STARTTLS
/// verifies the simulator's certificate; without one it accepts any.
pub fn email_provider(host: &str, port: u16, ca_file: Option<&Path>) -> ProviderSpec {
    let mut config = json!({
        "host": host,
        "port": port,
        "tls": "starttls",
        "from": "demo@herald.local",
        "pool_size": 8,
    });
    match ca_file {
        Some(path) => config["ca_file"] = json!(path.display().to_string()),
        None => config["accept_invalid_certs"] = json!(true),
    }
    ProviderSpec {
        name: EMAIL_PROVIDER,
        kind: "smtp",
        config,
    }
}

pub fn wework_provider(base_url: &str) -> ProviderSpec {
    ProviderSpec {
        name: WEWORK_PROVIDER,
        kind: "wework",
        config: json!({
            "base_url": base_url.trim_end_matches('/'),
            "corp_id": "demo-corp",
            "corp_secret": "demo-secret",
            "agent_id": 1_000_002,
        }),
    }
}

/// The webhook provider signing with the simulator's secret (the simulator
/// answers 401 to any other signature).
pub fn webhook_provider(signing_secret: &str) -> ProviderSpec {
    ProviderSpec {
        name: WEBHOOK_PROVIDER,
        kind: "webhook",
        config: json!({
            "signing_secret": signing_secret,
            // The simulator listens on loopback, which the worker refuses as
            // a webhook target (SSRF guard) unless the provider allows it.
            "allow_private_addresses": true,
            "timeout_ms": 10_000,
        }),
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
    admin: &ApiClient,
    spec: &ProviderSpec,
) -> anyhow::Result<(String, Ensured)> {
    let providers = admin
        .list_all("/v1/admin/providers")
        .await
        .context("Failed to list providers")?;
    if let Some(existing) = providers
        .iter()
        .find(|p| p["name"].as_str() == Some(spec.name))
    {
        let id = existing["id"]
            .as_str()
            .ok_or_else(|| anyhow!("provider {} has no id", spec.name))?;
        if existing["kind"].as_str() != Some(spec.kind) {
            bail!(
                "a provider named {} exists with kind {}, not {}: rename or delete it",
                spec.name,
                existing["kind"],
                spec.kind
            );
        }
        let patch = json!({"config": spec.config, "enabled": true});
        admin
            .call(
                Method::PATCH,
                &format!("/v1/admin/providers/{id}"),
                Some(&patch),
            )
            .await
            .with_context(|| format!("Failed to update provider {}", spec.name))?;
        return Ok((id.to_owned(), Ensured::Updated));
    }
    let body = json!({
        "name": spec.name,
        "kind": spec.kind,
        "config": spec.config,
        "quota": {},
    });
    let created = admin
        .once(Method::POST, "/v1/admin/providers", Some(&body))
        .await
        .with_context(|| format!("Failed to create provider {}", spec.name))?;
    let id = created["id"]
        .as_str()
        .ok_or_else(|| anyhow!("the created provider has no id"))?;
    Ok((id.to_owned(), Ensured::Created))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_provider_verifies_with_a_ca_file_or_accepts_any_without() {
        let with = email_provider("127.0.0.1", 2525, Some(Path::new("/x/ca.pem")));
        assert_eq!(with.config["ca_file"], "/x/ca.pem");
        assert_eq!(with.config["tls"], "starttls");
        assert_eq!(with.config["pool_size"], 8);
        assert!(with.config.get("accept_invalid_certs").is_none());
        let without = email_provider("127.0.0.1", 2525, None);
        assert_eq!(without.config["accept_invalid_certs"], true);
        assert!(without.config.get("ca_file").is_none());
    }

    #[test]
    fn wework_provider_points_at_the_simulator() {
        let p = wework_provider("http://127.0.0.1:8090/");
        assert_eq!(p.config["base_url"], "http://127.0.0.1:8090");
        assert_eq!(p.config["agent_id"], 1_000_002);
        assert_eq!(p.kind, "wework");
    }

    #[test]
    fn webhook_provider_signs_with_the_given_secret_and_may_reach_loopback() {
        let p = webhook_provider("whsec_0123456789abcdef");
        assert_eq!(p.name, "sim-webhook");
        assert_eq!(p.kind, "webhook");
        assert_eq!(
            p.config,
            json!({
                "signing_secret": "whsec_0123456789abcdef",
                "allow_private_addresses": true,
                "timeout_ms": 10_000,
            })
        );
    }
}
