//! The `message/send` request: its body, the POST and the reply it decodes.

use std::time::Duration;

use herald_domain::Disposition;
use serde::Deserialize;
use serde_json::{json, Value};

use super::outcome::{dead_letter, describe, retry_after, transport_failure};
use super::WeworkAdapter;
use crate::provider::Outgoing;

#[derive(Deserialize)]
pub(super) struct SendReply {
    pub(super) errcode: i64,
    #[serde(default)]
    pub(super) errmsg: String,
    #[serde(default)]
    pub(super) msgid: String,
    #[serde(default)]
    pub(super) invaliduser: String,
    #[serde(default)]
    pub(super) invalidparty: String,
    #[serde(default)]
    pub(super) invalidtag: String,
}

impl WeworkAdapter {
    pub(super) fn request_body(&self, out: &Outgoing<'_>) -> Result<Value, Disposition> {
        let content = out.content;
        if out.recipients.is_empty() {
            return Err(dead_letter("no_recipient", "the message has no recipient"));
        }
        let (msgtype, body) = if let Some(card) = &content.textcard {
            let mut body = json!({
                "title": card.title,
                "description": card.description,
                "url": card.url,
            });
            if !card.btntxt.is_empty() {
                body["btntxt"] = json!(card.btntxt);
            }
            ("textcard", body)
        } else if !content.text.is_empty() {
            ("text", json!({"content": content.text}))
        } else if !content.html.is_empty() {
            ("markdown", json!({"content": content.html}))
        } else {
            return Err(dead_letter(
                "empty_content",
                "the message has neither text nor html",
            ));
        };
        Ok(json!({
            "touser": out.recipients.join("|"),
            "msgtype": msgtype,
            "agentid": self.agent_id,
            msgtype: body,
            "enable_duplicate_check": 1,
            "duplicate_check_interval": self.duplicate_check_interval,
        }))
    }

    /// POSTs to `message/send`; `Err` is the disposition when no errcode came
    /// back.
    pub(super) async fn post(
        &self,
        token: &str,
        out: &Outgoing<'_>,
        body: &Value,
    ) -> Result<SendReply, Disposition> {
        let response = self
            .client
            .post(format!("{}/cgi-bin/message/send", self.base_url))
            .query(&[("access_token", token)])
            .header("X-Herald-Message-Id", out.message_id.to_string())
            .json(body)
            .send()
            .await
            .map_err(|e| transport_failure(out, e))?;
        let status = response.status();
        if !status.is_success() {
            let code = format!("wework_http_{}", status.as_u16());
            let reason = format!("message/send answered HTTP {status}");
            return Err(self.classifier.http(status.as_u16()).disposition(
                out.attempt,
                code,
                reason,
            ));
        }
        response.json::<SendReply>().await.map_err(|e| {
            if e.is_decode() {
                // The request went through but the answer is garbled; WeWork's
                // duplicate check makes a resend safe.
                retry_after(
                    out,
                    Duration::from_secs(30),
                    "wework_invalid_response",
                    format!(
                        "message/send answered something else than JSON: {}",
                        describe(e)
                    ),
                )
            } else {
                transport_failure(out, e)
            }
        })
    }
}
