//! WeWork adapter: the real API's `gettoken` and `message/send`, with the
//! access token cached and one refresh shared by every in-flight send.

mod client;
mod config;
mod outcome;
#[cfg(test)]
mod test_server;
#[cfg(test)]
mod tests;
mod token;

use std::fmt;
use std::sync::{Arc, Mutex};

use herald_domain::Disposition;

use self::outcome::sent;
use self::token::TokenState;
use crate::classify::{Action, Classifier};
use crate::provider::Outgoing;

/// Sends WeWork app messages for one app (corp id, secret, agent id).
pub struct WeworkAdapter {
    client: reqwest::Client,
    base_url: String,
    corp_id: String,
    corp_secret: String,
    agent_id: i64,
    duplicate_check_interval: u32,
    token: Mutex<TokenState>,
    /// Held while a token is fetched, so concurrent sends wait for one fetch.
    refresh: tokio::sync::Mutex<()>,
    /// Says what an errcode or a non-200 HTTP status means.
    classifier: Arc<Classifier>,
}

impl WeworkAdapter {
    /// Sends one message and says what happens next.
    pub async fn send(&self, out: Outgoing<'_>) -> Disposition {
        let disposition = self.try_send(&out).await;
        tracing::debug!(
            message_id = %out.message_id,
            agent_id = self.agent_id,
            attempt = out.attempt,
            outcome = ?disposition,
            "WeWork send finished."
        );
        disposition
    }

    async fn try_send(&self, out: &Outgoing<'_>) -> Disposition {
        let body = match self.request_body(out) {
            Ok(body) => body,
            Err(disposition) => return disposition,
        };
        let mut refreshed = false;
        loop {
            let token = match self.access_token().await {
                Ok(token) => token,
                Err(disposition) => return disposition,
            };
            let reply = match self.post(&token, out, &body).await {
                Ok(reply) => reply,
                Err(disposition) => return disposition,
            };
            if reply.errcode == 0 {
                return sent(out, reply);
            }
            return match self.classifier.wework(reply.errcode) {
                Action::Sent => sent(out, reply),
                // The token expired or was revoked: refresh and resend once.
                Action::RefreshToken { .. } if !refreshed => {
                    self.invalidate(&token);
                    refreshed = true;
                    continue;
                }
                action => action.disposition(
                    out.attempt,
                    format!("wework_{}", reply.errcode),
                    reply.errmsg,
                ),
            };
        }
    }
}

impl fmt::Debug for WeworkAdapter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeworkAdapter")
            .field("base_url", &self.base_url)
            .field("corp_id", &self.corp_id)
            .field("agent_id", &self.agent_id)
            .finish_non_exhaustive()
    }
}
