//! The simulator's control API as the load test uses it: its counters
//! (`GET /sim/stats`, read before and after a run), the ids it received
//! (`GET /sim/messages`) and its fault injection (`PUT /sim/config`). The
//! bodies are `herald_api::sim`'s types, the ones herald-sim serves, so
//! this tool reads exactly what the simulator writes without building it.

use std::time::Duration;

use anyhow::Context;
use serde::de::DeserializeOwned;

pub use herald_api::sim::{
    BehaviourPatch, SimBehaviour, SimIds, SimStats, SmtpPatch, SmtpStats, WebhookStats,
    WeworkPatch, WeworkStats, DEFAULT_WEBHOOK_SECRET,
};

/// How long a read of the counters may take: they are a few numbers.
const STATS_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the id list may take: it holds every id the simulator saw,
/// which in a long run is hundreds of thousands.
const IDS_TIMEOUT: Duration = Duration::from_secs(120);

pub fn stats_url(sim_url: &str) -> String {
    format!("{}/sim/stats", sim_url.trim_end_matches('/'))
}

fn http(timeout: Duration) -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .context("Failed to build the HTTP client")
}

async fn get<T: DeserializeOwned>(url: &str, timeout: Duration) -> anyhow::Result<T> {
    let resp = http(timeout)?
        .get(url)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    let resp = resp
        .error_for_status()
        .with_context(|| format!("GET {url}"))?;
    resp.json::<T>()
        .await
        .with_context(|| format!("GET {url}: unexpected answer"))
}

/// The simulator's counters now.
pub async fn fetch(sim_url: &str) -> anyhow::Result<SimStats> {
    get(&stats_url(sim_url), STATS_TIMEOUT).await
}

/// Every id `channel` (`email`, `wework`, `webhook`) received, with how
/// many times.
pub async fn ids(sim_url: &str, channel: &str) -> anyhow::Result<SimIds> {
    let url = format!(
        "{}/sim/messages?channel={channel}",
        sim_url.trim_end_matches('/')
    );
    get(&url, IDS_TIMEOUT).await
}

/// Tells the simulator where and how often to make provider callbacks.
pub async fn configure_callbacks(
    sim_url: &str,
    settings: &herald_api::sim::SimCallbacks,
) -> anyhow::Result<herald_api::sim::SimCallbackReport> {
    put(sim_url, "/sim/callbacks", settings, "its callback settings").await
}

/// Changes the simulator's fault injection; the answer is the behaviour
/// now in force.
pub async fn configure(sim_url: &str, patch: &BehaviourPatch) -> anyhow::Result<SimBehaviour> {
    put(sim_url, "/sim/config", patch, "its config").await
}

/// PUTs `body` to the simulator's `path`; the answer, or what it refused.
async fn put<B: serde::Serialize, T: serde::de::DeserializeOwned>(
    sim_url: &str,
    path: &str,
    body: &B,
    what: &str,
) -> anyhow::Result<T> {
    let url = format!("{}{path}", sim_url.trim_end_matches('/'));
    let response = http(STATS_TIMEOUT)?
        .put(&url)
        .json(body)
        .send()
        .await
        .context("cannot reach the simulator")?;
    if !response.status().is_success() {
        anyhow::bail!(
            "the simulator refused {what}: {}",
            response.text().await.unwrap_or_default()
        );
    }
    response
        .json()
        .await
        .with_context(|| format!("PUT {url}: unexpected answer"))
}
