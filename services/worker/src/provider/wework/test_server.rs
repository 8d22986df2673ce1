//! A WeWork API stand-in for the adapter's tests: `gettoken` and scripted
//! `message/send` replies.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Json, Router};
use herald_domain::provider_config::WeworkConfig;
use serde_json::{json, Value};

use super::WeworkAdapter;
use crate::classify::Classifier;

/// A WeWork API stand-in: tokens `token-1`, `token-2`, ... one per
/// `gettoken`, and scripted `message/send` replies.
#[derive(Default)]
pub(super) struct FakeWework {
    pub(super) token_calls: AtomicUsize,
    /// `gettoken` answers this errcode instead of a token.
    pub(super) token_errcode: Option<i64>,
    /// Replies to `message/send` in order; errcode 0 once they run out.
    pub(super) replies: Mutex<VecDeque<Value>>,
    pub(super) sends: Mutex<Vec<Seen>>,
}

pub(super) struct Seen {
    pub(super) token: String,
    pub(super) herald_message_id: Option<String>,
    pub(super) body: Value,
}

impl FakeWework {
    pub(super) fn replying(replies: &[Value]) -> FakeWework {
        FakeWework {
            replies: Mutex::new(replies.iter().cloned().collect()),
            ..FakeWework::default()
        }
    }

    pub(super) async fn start(self) -> (Arc<FakeWework>, WeworkAdapter) {
        self.start_classified(Classifier::default()).await
    }

    pub(super) async fn start_classified(
        self,
        classifier: Classifier,
    ) -> (Arc<FakeWework>, WeworkAdapter) {
        let fake = Arc::new(self);
        let app = Router::new()
            .route("/cgi-bin/gettoken", get(gettoken))
            .route("/cgi-bin/message/send", post(message_send))
            .with_state(Arc::clone(&fake));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        let adapter = WeworkAdapter::with_classifier(
            WeworkConfig {
                base_url: format!("http://{addr}/"),
                corp_id: "corp".to_owned(),
                corp_secret: "secret".to_owned(),
                agent_id: 1000002,
                token: None,
                encoding_aes_key: None,
                duplicate_check_interval: None,
                timeout_ms: Some(5000),
                callback_secret: None,
            },
            Arc::new(classifier),
        )
        .expect("adapter");
        (fake, adapter)
    }

    pub(super) fn token_calls(&self) -> usize {
        self.token_calls.load(Ordering::SeqCst)
    }

    pub(super) fn sends(&self) -> std::sync::MutexGuard<'_, Vec<Seen>> {
        self.sends.lock().expect("sends")
    }
}

pub(super) async fn gettoken(
    State(fake): State<Arc<FakeWework>>,
    Query(query): Query<HashMap<String, String>>,
) -> Json<Value> {
    assert_eq!(query.get("corpid").map(String::as_str), Some("corp"));
    assert_eq!(query.get("corpsecret").map(String::as_str), Some("secret"));
    let n = fake.token_calls.fetch_add(1, Ordering::SeqCst) + 1;
    // Slow enough that concurrent sends all find this fetch in flight.
    tokio::time::sleep(Duration::from_millis(100)).await;
    if let Some(errcode) = fake.token_errcode {
        return Json(json!({"errcode": errcode, "errmsg": "invalid credential"}));
    }
    Json(json!({
        "errcode": 0, "errmsg": "ok", "access_token": format!("token-{n}"), "expires_in": 7200
    }))
}

pub(super) async fn message_send(
    State(fake): State<Arc<FakeWework>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Json<Value> {
    fake.sends().push(Seen {
        token: query.get("access_token").cloned().unwrap_or_default(),
        herald_message_id: headers
            .get("x-herald-message-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        body,
    });
    let reply = fake.replies.lock().expect("replies").pop_front();
    Json(reply.unwrap_or_else(|| json!({"errcode": 0, "errmsg": "ok", "msgid": "msg-1"})))
}
