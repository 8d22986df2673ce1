//! Each provider kind's `config` object (docs/API.md, "Providers"), parsed once when a
//! provider is created or changed, and again by the worker that sends.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{FieldError, ProviderKind};

/// How an SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Plain text (test servers, local relays).
    #[default]
    None,
    /// Plain connect, then `STARTTLS` (required, not opportunistic).
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    #[serde(default)]
    pub tls: TlsMode,
    /// PEM file with the CA that signs the server's certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// For test servers only.
    #[serde(default)]
    pub accept_invalid_certs: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// Default sender when a message has no `from`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Connections kept open to the server (default 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_size: Option<u32>,
    /// Domain of generated Message-IDs (default `herald.local`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id_domain: Option<String>,
    /// Seconds for each SMTP command (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_secret: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeworkConfig {
    /// Default `https://qyapi.weixin.qq.com`.
    #[serde(default = "WeworkConfig::default_base_url")]
    pub base_url: String,
    pub corp_id: String,
    pub corp_secret: String,
    pub agent_id: i64,
    /// Callback settings (URL verification and event decryption).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding_aes_key: Option<String>,
    /// Seconds WeWork dedupes a resend of the same message (default 1800).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicate_check_interval: Option<u32>,
    /// Milliseconds per HTTP request (default 10000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_secret: Option<String>,
}

impl WeworkConfig {
    pub fn default_base_url() -> String {
        "https://qyapi.weixin.qq.com".to_owned()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub signing_secret: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    #[serde(default)]
    pub allow_private_addresses: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_secret: Option<String>,
}

/// A provider's config, parsed for its kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderConfig {
    Smtp(SmtpConfig),
    Wework(WeworkConfig),
    Webhook(WebhookConfig),
}

/// Field names whose values are secrets: never shown in responses or logs.
pub const SECRET_FIELDS: &[&str] = &[
    "password",
    "corp_secret",
    "encoding_aes_key",
    "token",
    "signing_secret",
    "callback_secret",
];

impl ProviderConfig {
    /// The secret that signs this provider's generic callbacks, if set.
    pub fn callback_secret(&self) -> Option<&str> {
        match self {
            ProviderConfig::Smtp(c) => c.callback_secret.as_deref(),
            ProviderConfig::Wework(c) => c.callback_secret.as_deref(),
            ProviderConfig::Webhook(c) => c.callback_secret.as_deref(),
        }
        .filter(|s| !s.is_empty())
    }

    pub fn parse(kind: ProviderKind, value: &Value) -> Result<Self, FieldError> {
        fn de<T: serde::de::DeserializeOwned>(value: &Value) -> Result<T, FieldError> {
            serde_path_to_error::deserialize(value.clone()).map_err(|e| {
                let path = e.path().to_string();
                let text = e.inner().to_string();
                // Missing and unknown fields are named in backticks, at the
                // path of the object that holds them.
                let named = (text.starts_with("missing field")
                    || text.starts_with("unknown field"))
                .then(|| text.split('`').nth(1))
                .flatten();
                // serde_path_to_error's path already ends with an unknown
                // field's name; a missing one is named only in the text.
                let field = match (path.as_str(), named) {
                    (".", Some(name)) => format!("config.{name}"),
                    (".", None) => "config".to_owned(),
                    (p, Some(name)) if p == name || p.ends_with(&format!(".{name}")) => {
                        format!("config.{p}")
                    }
                    (p, Some(name)) => format!("config.{p}.{name}"),
                    (p, None) => format!("config.{p}"),
                };
                FieldError::new(field, text)
            })
        }
        let value = &normalized("config", value)?;
        let config = match kind {
            ProviderKind::Smtp => ProviderConfig::Smtp(de(value)?),
            ProviderKind::Wework => ProviderConfig::Wework(de(value)?),
            ProviderKind::Webhook => ProviderConfig::Webhook(de(value)?),
        };
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), FieldError> {
        match self {
            ProviderConfig::Smtp(c) => {
                if c.host.is_empty() {
                    return Err(FieldError::new("config.host", "is required"));
                }
                if c.port == 0 {
                    return Err(FieldError::new("config.port", "must be 1 to 65535"));
                }
                if c.pool_size == Some(0) || c.pool_size.is_some_and(|p| p > 256) {
                    return Err(FieldError::new("config.pool_size", "must be 1 to 256"));
                }
                if c.username.is_some() != c.password.is_some() {
                    return Err(FieldError::new(
                        "config.password",
                        "username and password go together",
                    ));
                }
                if let Some(from) = &c.from {
                    crate::EmailAddress::parse("config.from", from)?;
                }
            }
            ProviderConfig::Wework(c) => {
                if !(c.base_url.starts_with("https://") || c.base_url.starts_with("http://")) {
                    return Err(FieldError::new("config.base_url", "must be an http(s) URL"));
                }
                if c.corp_id.is_empty() {
                    return Err(FieldError::new("config.corp_id", "is required"));
                }
                if c.corp_secret.is_empty() {
                    return Err(FieldError::new("config.corp_secret", "is required"));
                }
                if let Some(key) = &c.encoding_aes_key {
                    if key.chars().count() != 43 {
                        return Err(FieldError::new(
                            "config.encoding_aes_key",
                            "must have 43 characters",
                        ));
                    }
                }
            }
            ProviderConfig::Webhook(c) => {
                if c.signing_secret.chars().count() < 16 {
                    return Err(FieldError::new(
                        "config.signing_secret",
                        "must have at least 16 characters",
                    ));
                }
            }
        }
        Ok(())
    }

    /// `value` with every secret replaced by `"***"`, for responses.
    pub fn redact(value: &Value) -> Value {
        match value {
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| {
                        if SECRET_FIELDS.contains(&k.as_str()) && !v.is_null() {
                            (k.clone(), Value::String("***".into()))
                        } else {
                            (k.clone(), v.clone())
                        }
                    })
                    .collect(),
            ),
            other => other.clone(),
        }
    }
}

/// `value` as the typed configs read it: an integral float (`25.0`) is the
/// integer it equals, as JSON Schema counts it; a string with a NUL
/// character is refused (PostgreSQL's `jsonb` cannot store one), naming it.
fn normalized(path: &str, value: &Value) -> Result<Value, FieldError> {
    Ok(match value {
        Value::String(s) => {
            crate::check_text(path, s)?;
            value.clone()
        }
        Value::Number(n) if n.is_f64() => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && (0.0..1.8e19).contains(&f) => Value::from(f as u64),
            Some(f) if f.fract() == 0.0 && (-9.2e18..0.0).contains(&f) => Value::from(f as i64),
            _ => value.clone(),
        },
        Value::Array(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| normalized(&format!("{path}[{i}]"), v))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let field = format!("{path}.{k}");
                    crate::check_text(&field, k)?;
                    Ok((k.clone(), normalized(&field, v)?))
                })
                .collect::<Result<_, FieldError>>()?,
        ),
        other => other.clone(),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn an_integral_float_is_an_integer_and_a_nul_is_refused() {
        let c = ProviderConfig::parse(ProviderKind::Smtp, &json!({"host": "h", "port": 25.0}))
            .expect("25.0 is 25");
        assert!(matches!(
            c,
            ProviderConfig::Smtp(SmtpConfig { port: 25, .. })
        ));
        let err = ProviderConfig::parse(ProviderKind::Smtp, &json!({"host": "h\u{0}", "port": 25}))
            .expect_err("NUL");
        assert_eq!(err.field, "config.host");
    }

    #[test]
    fn smtp_config_errors_name_the_config_field() {
        let err = ProviderConfig::parse(
            ProviderKind::Smtp,
            &json!({"host": "h", "port": 25, "tls": "ssl"}),
        )
        .expect_err("bad tls");
        assert_eq!(err.field, "config.tls");
        let err =
            ProviderConfig::parse(ProviderKind::Smtp, &json!({"port": 25})).expect_err("no host");
        assert_eq!(err.field, "config.host");
        let err = ProviderConfig::parse(
            ProviderKind::Webhook,
            &json!({"signing_secret": "0123456789abcdef", "agent_id": 1}),
        )
        .expect_err("not a webhook field");
        assert_eq!(err.field, "config.agent_id");
    }

    #[test]
    fn secrets_are_redacted() {
        let v = ProviderConfig::redact(&json!({"corp_id": "c", "corp_secret": "s"}));
        assert_eq!(v, json!({"corp_id": "c", "corp_secret": "***"}));
    }
}
