//! The producer's admin API as the CLI calls it: the typed client of
//! `herald-api`, with every failure said as what went wrong and what to
//! check — the producer's address, the admin token, or the API's own error
//! (its code, field and message).

use anyhow::anyhow;
use herald_api::{Client, ClientError};
use reqwest::StatusCode;

pub struct Admin {
    pub api: Client,
    base: String,
    /// Which credential the calls carry, for the refusals' advice.
    credential: Credential,
}

/// The admin token, or a tenant's API key (`herald templates`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Credential {
    AdminToken,
    ApiKey,
}

impl Admin {
    pub fn new(base: &str, token: Option<&str>) -> anyhow::Result<Admin> {
        let token = token.filter(|t| !t.is_empty()).ok_or_else(|| {
            anyhow!("no admin token: pass --admin-token or set HERALD_ADMIN_TOKEN (the producer's admin token)")
        })?;
        Admin::with(base, token, Credential::AdminToken)
    }

    /// The tenant API, with a tenant's key.
    pub fn for_tenant(base: &str, key: Option<&str>) -> anyhow::Result<Admin> {
        let key = key.filter(|t| !t.is_empty()).ok_or_else(|| {
            anyhow!("no API key: pass --api-key or set HERALD_API_KEY (the tenant's key, from `herald keys create`)")
        })?;
        Admin::with(base, key, Credential::ApiKey)
    }

    fn with(base: &str, token: &str, credential: Credential) -> anyhow::Result<Admin> {
        let base = base.trim_end_matches('/').to_owned();
        anyhow::ensure!(
            base.starts_with("http://") || base.starts_with("https://"),
            "the producer URL {base:?} must start with http:// or https:// (--producer-url or HERALD_PRODUCER_URL)"
        );
        let api = Client::new(&base, token)
            .map_err(|e| anyhow!("Failed to build the HTTP client: {e}"))?;
        Ok(Admin {
            api,
            base,
            credential,
        })
    }

    /// A failed call as a sentence that says what to do.
    pub fn explain(&self, e: ClientError) -> anyhow::Error {
        match e {
            ClientError::Unreachable {
                method,
                url,
                cause,
                connect,
                timeout,
            } => {
                if connect {
                    anyhow!(
                        "cannot reach the producer at {}: {cause} — is it running? set --producer-url or HERALD_PRODUCER_URL",
                        self.base
                    )
                } else if timeout {
                    anyhow!(
                        "the producer at {} did not answer {method} {url} in time — is it overloaded or stuck? set --producer-url or HERALD_PRODUCER_URL to try another",
                        self.base
                    )
                } else {
                    anyhow!("{method} {url} failed: {cause}")
                }
            }
            ClientError::Decode {
                method,
                path,
                cause,
            } => anyhow!(
                "{method} {}{path} answered with a body that is not what the API describes: {cause}",
                self.base
            ),
            ClientError::Refused {
                status,
                error,
                text,
                retry_after,
                ..
            } => match (self.credential, status) {
                (Credential::ApiKey, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) => {
                    let said = error.map(|e| e.message).unwrap_or(text);
                    anyhow!("the producer refused the API key ({}: {said}): check --api-key or HERALD_API_KEY, and that the tenant is enabled", status.as_u16())
                }
                _ => refusal(status, error.as_ref(), &text, retry_after.map(|d| d.as_secs())),
            },
        }
    }
}

/// Results of the admin API, explained.
pub trait Explain<T> {
    fn explained(self, admin: &Admin) -> anyhow::Result<T>;
}

impl<T> Explain<T> for Result<T, ClientError> {
    fn explained(self, admin: &Admin) -> anyhow::Result<T> {
        self.map_err(|e| admin.explain(e))
    }
}

/// The error for a refused call, from the API's error body (`None` when the
/// answer was not in its shape: then its text is shown).
fn refusal(
    status: StatusCode,
    error: Option<&herald_api::ErrorDetail>,
    text: &str,
    retry_after: Option<u64>,
) -> anyhow::Error {
    let Some(error) = error else {
        let text: String = text.trim().chars().take(200).collect();
        return anyhow!("the producer answered {status}: {text}");
    };
    let code = &error.code;
    let field = error.field.as_deref();
    let mut message = error.message.clone();
    // The API's message for a field starts with its name; it is said apart.
    if let Some(rest) = field.and_then(|f| message.strip_prefix(&format!("{f}: "))) {
        message = rest.to_owned();
    }
    match status {
        StatusCode::UNAUTHORIZED => anyhow!(
            "the producer refused the admin token ({code}: {message}): check --admin-token or HERALD_ADMIN_TOKEN"
        ),
        StatusCode::FORBIDDEN => anyhow!(
            "the producer refused the admin call ({code}: {message}): the producer needs HERALD_ADMIN_TOKEN set, and this command the same token (--admin-token or HERALD_ADMIN_TOKEN)"
        ),
        _ => {
            let mut at = String::new();
            if let Some(index) = error.index {
                at.push_str(&format!("item {index}, "));
            }
            if let Some(field) = field {
                at.push_str(&format!("field `{field}`: "));
            }
            let retry = retry_after
                .map(|s| format!(" (retry after {s} s)"))
                .unwrap_or_default();
            anyhow!(
                "the producer refused the request ({} {code}): {at}{message}{retry}",
                status.as_u16()
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use herald_api::ErrorDetail;

    use super::*;

    fn detail(code: &str, message: &str, field: Option<&str>) -> ErrorDetail {
        ErrorDetail {
            code: code.into(),
            message: message.into(),
            field: field.map(Into::into),
            index: None,
        }
    }

    #[test]
    fn a_field_error_names_the_code_and_the_field_once() {
        let d = detail(
            "invalid_field",
            "config.host: is required",
            Some("config.host"),
        );
        let e = refusal(StatusCode::UNPROCESSABLE_ENTITY, Some(&d), "", None).to_string();
        assert_eq!(
            e,
            "the producer refused the request (422 invalid_field): field `config.host`: is required"
        );
    }

    #[test]
    fn a_refused_token_says_which_variable_to_set() {
        let d = detail("unauthorized", "the admin token is not valid", None);
        let e = refusal(StatusCode::UNAUTHORIZED, Some(&d), "", None).to_string();
        assert!(e.contains("HERALD_ADMIN_TOKEN"), "{e}");
    }

    #[test]
    fn an_answer_that_is_not_the_api_shows_its_status_and_text() {
        let e = refusal(StatusCode::BAD_GATEWAY, None, "upstream down\n", Some(5)).to_string();
        assert_eq!(e, "the producer answered 502 Bad Gateway: upstream down");
    }
}
