//! The WeWork (企业微信) API as Herald uses it: `GET /cgi-bin/gettoken` and
//! `POST /cgi-bin/message/send`, with the real API's shapes and errcodes.
//! Sends are counted by the `X-Herald-Message-Id` request header.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Json, Router};
use rand::Rng;
use serde_json::{json, Value};

use crate::counters::SimChannel;
use crate::SimState;

/// How long a token lives, as the real API answers.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(7200);

/// The header a send is counted by.
pub const MESSAGE_ID_HEADER: &str = "x-herald-message-id";

/// The access tokens issued and not yet expired.
#[derive(Default)]
pub(crate) struct Tokens {
    live: Mutex<HashMap<String, Instant>>,
}

impl Tokens {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Instant>> {
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn issue(&self) -> String {
        let token = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let now = Instant::now();
        let mut live = self.lock();
        if live.len() >= 1024 {
            live.retain(|_, expires| *expires > now);
        }
        live.insert(token.clone(), now + TOKEN_LIFETIME);
        token
    }

    fn is_valid(&self, token: &str) -> bool {
        self.lock()
            .get(token)
            .is_some_and(|expires| *expires > Instant::now())
    }

    /// Forgets every token, as if all had expired; returns how many.
    pub(crate) fn expire_all(&self) -> usize {
        std::mem::take(&mut *self.lock()).len()
    }
}

pub(crate) fn router(state: Arc<SimState>) -> Router {
    Router::new()
        .route("/cgi-bin/gettoken", get(get_token))
        .route("/cgi-bin/message/send", post(send))
        .with_state(state)
}

fn errcode(code: i64, message: &str) -> Json<Value> {
    Json(json!({"errcode": code, "errmsg": message}))
}

fn non_empty<'a>(params: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    params
        .get(name)
        .map(String::as_str)
        .filter(|value| !value.is_empty())
}

async fn get_token(
    State(state): State<Arc<SimState>>,
    Query(params): Query<HashMap<String, String>>,
) -> Json<Value> {
    state.counters.record_token_request();
    if non_empty(&params, "corpid").is_none() {
        return errcode(40013, "invalid corpid");
    }
    if non_empty(&params, "corpsecret").is_none() {
        return errcode(40001, "invalid credential");
    }
    let token = state.tokens.issue();
    Json(json!({
        "errcode": 0,
        "errmsg": "ok",
        "access_token": token,
        "expires_in": TOKEN_LIFETIME.as_secs(),
    }))
}

async fn send(
    State(state): State<Arc<SimState>>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Json<Value> {
    let answer = decide(&state, &params, &body).await;
    match answer {
        Ok((users, message)) => {
            let id = headers
                .get(MESSAGE_ID_HEADER)
                .and_then(|value| value.to_str().ok())
                .map(str::trim)
                .filter(|id| !id.is_empty());
            state.counters.record_wework_cost(users);
            let touser = message
                .get("touser")
                .and_then(|t| t.as_str())
                .map(str::to_owned);
            let detail = json!({"users": users, "body": message});
            if state
                .counters
                .record_received(SimChannel::Wework, id, detail)
            {
                state
                    .callbacks
                    .accepted(SimChannel::Wework, id, touser.as_deref(), None);
            }
            Json(json!({
                "errcode": 0,
                "errmsg": "ok",
                "invaliduser": "",
                "msgid": uuid::Uuid::new_v4().simple().to_string(),
            }))
        }
        Err(refusal) => {
            state.counters.record_rejected(SimChannel::Wework);
            refusal
        }
    }
}

/// Accepts a send (the users it reaches and the parsed body) or answers its
/// errcode: token first, then injected faults, then the body.
async fn decide(
    state: &SimState,
    params: &HashMap<String, String>,
    body: &[u8],
) -> Result<(u64, Value), Json<Value>> {
    let Some(token) = non_empty(params, "access_token") else {
        return Err(errcode(41001, "access_token missing"));
    };
    if !state.tokens.is_valid(token) {
        return Err(errcode(40014, "invalid access_token"));
    }
    let behaviour = state.behaviour().wework;
    if behaviour.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(behaviour.latency_ms)).await;
    }
    let (fail, limited) = {
        let mut rng = rand::thread_rng();
        (
            rng.gen::<f64>() < behaviour.fail_rate,
            rng.gen::<f64>() < behaviour.rate_limit_rate,
        )
    };
    if fail {
        return Err(errcode(-1, "system busy"));
    }
    if limited || over_rate(state, behaviour.rate_limit_per_sec) {
        return Err(errcode(45009, "api freq out of limit"));
    }
    let message: Value =
        serde_json::from_slice(body).map_err(|_| errcode(47001, "data format error"))?;
    let users = validate(&message)?;
    Ok((users, message))
}

/// Whether a send now exceeds `limit` sends in any second (0: no limit);
/// a send within it is counted.
fn over_rate(state: &SimState, limit: u32) -> bool {
    if limit == 0 {
        return false;
    }
    let now = std::time::Instant::now();
    let mut recent = state
        .wework_recent
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    while recent
        .front()
        .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
    {
        recent.pop_front();
    }
    if recent.len() >= limit as usize {
        return true;
    }
    recent.push_back(now);
    false
}

/// Checks a message body as the real API does; returns the number of users.
fn validate(message: &Value) -> Result<u64, Json<Value>> {
    if !message.is_object() {
        return Err(errcode(47001, "data format error"));
    }
    let users = message
        .get("touser")
        .and_then(Value::as_str)
        .map(|touser| {
            touser
                .split('|')
                .filter(|user| !user.trim().is_empty())
                .count() as u64
        })
        .unwrap_or(0);
    if users == 0 {
        return Err(errcode(40031, "invalid user list"));
    }
    let agent = message.get("agentid");
    let agent_ok = agent.is_some_and(|agent| {
        agent.as_i64().is_some() || agent.as_str().is_some_and(|s| s.parse::<i64>().is_ok())
    });
    if !agent_ok {
        return Err(errcode(40056, "invalid agentid"));
    }
    let text = |section: &str, field: &str| {
        message
            .get(section)
            .and_then(|section| section.get(field))
            .and_then(Value::as_str)
            .is_some_and(|value| !value.is_empty())
    };
    let complete = match message.get("msgtype").and_then(Value::as_str) {
        Some("text") => text("text", "content"),
        Some("markdown") => text("markdown", "content"),
        Some("textcard") => {
            text("textcard", "title") && text("textcard", "description") && text("textcard", "url")
        }
        _ => return Err(errcode(40008, "invalid message type")),
    };
    if !complete {
        return Err(errcode(44004, "empty content"));
    }
    Ok(users)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(result: Result<u64, Json<Value>>) -> i64 {
        match result {
            Ok(_) => 0,
            Err(Json(answer)) => answer["errcode"].as_i64().unwrap_or(i64::MIN),
        }
    }

    #[test]
    fn a_text_message_to_three_users_costs_three() {
        let message =
            json!({"touser": "a|b|c", "msgtype": "text", "agentid": 1, "text": {"content": "hi"}});
        assert_eq!(validate(&message).ok(), Some(3));
    }

    #[test]
    fn a_textcard_needs_title_description_and_url() {
        let message = json!({"touser": "a", "msgtype": "textcard", "agentid": "7",
            "textcard": {"title": "t", "description": "d"}});
        assert_eq!(code(validate(&message)), 44004);
    }

    #[test]
    fn an_unknown_message_type_is_40008() {
        let message = json!({"touser": "a", "msgtype": "voice", "agentid": 1});
        assert_eq!(code(validate(&message)), 40008);
    }

    #[test]
    fn expired_tokens_are_invalid() {
        let tokens = Tokens::default();
        let token = tokens.issue();
        assert!(tokens.is_valid(&token));
        assert_eq!(tokens.expire_all(), 1);
        assert!(!tokens.is_valid(&token));
    }
}
