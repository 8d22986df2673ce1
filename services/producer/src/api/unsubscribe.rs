//! `/u/{token}`: the one-click unsubscribe link every email carries
//! (`List-Unsubscribe` and `List-Unsubscribe-Post`, RFC 8058). A POST — the
//! mailbox provider's button, or the form on the GET page — puts the
//! message's recipient on its tenant's suppression list (`unsubscribe`).
//! The token is signed (`herald_callbacks::links`): a tampered or made-up
//! one is 404, and none names anything but its own message's recipient.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use herald_domain::{Channel, MessageRecord};

use super::AppState;

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><title>{title}</title></head><body style=\"font-family:sans-serif;max-width:32em;margin:4em auto\"><h1>{title}</h1>{body}</body></html>"
    );
    (status, Html(html)).into_response()
}

fn not_found() -> Response {
    page(
        StatusCode::NOT_FOUND,
        "Link not valid",
        "<p>This unsubscribe link is not valid.</p>",
    )
}

/// `a***@example.com`: enough to recognise, not enough to harvest.
fn masked(address: &str) -> String {
    match address.split_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        None => "***".to_owned(),
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The email the token names, when the token holds and the message exists.
async fn message(state: &AppState, token: &str) -> Result<Option<MessageRecord>, Response> {
    let Some(id) = state.links.verify_unsubscribe(token) else {
        return Ok(None);
    };
    match state.store.any_message(herald_domain::MessageId(id)).await {
        Ok(m) => Ok(m.filter(|m| m.channel == Channel::Email)),
        Err(e) => {
            tracing::error!(error = %e, "The database could not be reached for an unsubscribe.");
            Err(page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again",
                "<p>We could not take your request just now. Please try again in a minute.</p>",
            ))
        }
    }
}

/// `GET /u/{token}`: a page that asks to confirm (mail clients and
/// scanners fetch links; only a POST unsubscribes).
#[utoipa::path(
    get, path = "/u/{token}", tag = "unsubscribe", operation_id = "unsubscribe_page",
    summary = "The unsubscribe link's confirmation page",
    params(("token" = String, Path, description = "The signed token of the email's List-Unsubscribe link")),
    responses(
        (status = 200, description = "A page with a button that unsubscribes", content_type = "text/html", body = String),
        (status = 404, description = "The token is not valid", content_type = "text/html", body = String),
        (status = 503, description = "The database is unavailable", content_type = "text/html", body = String),
    )
)]
pub async fn unsubscribe_page(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> Response {
    match message(&state, &token).await {
        Ok(Some(m)) => page(
            StatusCode::OK,
            "Unsubscribe",
            &format!(
                "<p>Stop emails to <b>{}</b> from this sender?</p><form method=\"post\"><button type=\"submit\">Unsubscribe</button></form>",
                escape(&masked(&m.recipient.to_lowercase()))
            ),
        ),
        Ok(None) => not_found(),
        Err(r) => r,
    }
}

/// `POST /u/{token}`: unsubscribes (RFC 8058 one-click: the body is
/// `List-Unsubscribe=One-Click`, any body is taken). Repeating it is fine.
#[utoipa::path(
    post, path = "/u/{token}", tag = "unsubscribe", operation_id = "unsubscribe",
    summary = "One-click unsubscribe (RFC 8058)",
    params(("token" = String, Path, description = "The signed token of the email's List-Unsubscribe link")),
    responses(
        (status = 200, description = "Unsubscribed: the address is on the sender's suppression list", content_type = "text/html", body = String),
        (status = 404, description = "The token is not valid", content_type = "text/html", body = String),
        (status = 503, description = "The database is unavailable", content_type = "text/html", body = String),
    )
)]
pub async fn unsubscribe(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    let m = match message(&state, &token).await {
        Ok(Some(m)) => m,
        Ok(None) => return not_found(),
        Err(r) => return r,
    };
    let address = m.recipient.to_lowercase();
    match state
        .store
        .add_suppression(m.tenant_id, &address, "unsubscribe", Some(m.id.as_uuid()))
        .await
    {
        Ok(_) => {
            metrics::counter!("herald_producer_unsubscribes_total").increment(1);
            page(
                StatusCode::OK,
                "Unsubscribed",
                &format!(
                    "<p><b>{}</b> will get no more emails from this sender.</p>",
                    escape(&masked(&address))
                ),
            )
        }
        Err(e) => {
            tracing::error!(error = %e, "The database could not be reached for an unsubscribe.");
            page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again",
                "<p>We could not take your request just now. Please try again in a minute.</p>",
            )
        }
    }
}
