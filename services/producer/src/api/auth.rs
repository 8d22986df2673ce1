use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use herald_capacity::TenantLimits;
use herald_domain::TenantId;
use herald_store::ApiKeyOwner;

use super::error::ApiError;
use super::AppState;

/// How long a key lookup is trusted; a revoked key stops working within it.
const KEY_TTL: Duration = Duration::from_secs(10);

/// A lookup's answer and when it was made.
type CachedOwner = (Option<ApiKeyOwner>, Instant);

/// Recently verified keys, by key hash, so the hot path skips PostgreSQL.
#[derive(Clone, Default)]
pub struct KeyCache {
    inner: Arc<RwLock<HashMap<Vec<u8>, CachedOwner>>>,
    /// Bumped by [`KeyCache::forget_all`]; a lookup that began before a
    /// bump does not put its (possibly stale) answer back.
    generation: Arc<std::sync::atomic::AtomicU64>,
}

impl KeyCache {
    /// Drops every cached lookup, so a revoked key or a disabled tenant is
    /// refused by this producer from the next request on.
    pub fn forget_all(&self) {
        if let Ok(mut m) = self.inner.write() {
            self.generation
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            m.clear();
        }
    }
}

fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Who a request acts for: the tenant and its limits at enqueue.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub tenant: TenantId,
    pub limits: TenantLimits,
    pub tracking: herald_domain::Tracking,
}

/// The tenant a request acts for, from its `Authorization: Bearer <key>`.
pub struct Tenant(pub Caller);

impl FromRequestParts<AppState> for Tenant {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let key = bearer(parts).ok_or_else(|| {
            ApiError::unauthorized("send your API key as Authorization: Bearer <key>")
        })?;
        tenant_for_key(state, key).await.map(Tenant)
    }
}

/// The active tenant that owns API `key`, with its limits (HTTP and gRPC
/// share this). A changed tenant is seen at once by this producer (the
/// admin call forgets the cache) and by the others when they hear the
/// change announced ([`listen_for_changes`]), at worst after `KEY_TTL`.
pub async fn tenant_for_key(state: &AppState, key: &str) -> Result<Caller, ApiError> {
    let hash = herald_store::keys::hash_key(key);
    let cached = state.keys.inner.read().ok().and_then(|m| {
        m.get(&hash)
            .filter(|(_, at)| at.elapsed() < KEY_TTL)
            .map(|(o, _)| *o)
    });
    let owner = match cached {
        Some(owner) => owner,
        None => {
            let generation = state
                .keys
                .generation
                .load(std::sync::atomic::Ordering::SeqCst);
            let owner = state.store.api_key_owner(key).await?;
            if let Ok(mut m) = state.keys.inner.write() {
                if state
                    .keys
                    .generation
                    .load(std::sync::atomic::Ordering::SeqCst)
                    != generation
                {
                    // Forgotten meanwhile: answer, but do not cache.
                    return owner_to_tenant(owner);
                }
                if m.len() > 100_000 {
                    m.clear();
                }
                m.insert(hash, (owner, Instant::now()));
            }
            owner
        }
    };
    owner_to_tenant(owner)
}

fn owner_to_tenant(owner: Option<ApiKeyOwner>) -> Result<Caller, ApiError> {
    match owner {
        None => Err(ApiError::unauthorized("the API key is not valid")),
        Some(o) if !o.tenant_active => Err(ApiError::forbidden(
            "the tenant of this API key is disabled",
        )),
        Some(o) => Ok(Caller {
            tenant: o.tenant_id,
            limits: TenantLimits {
                rate_per_sec: o.rate_limit_per_sec,
                daily_quota: o.daily_quota,
            },
            tracking: o.tracking,
        }),
    }
}

/// Forgets the key cache whenever a tenant changes anywhere (another
/// producer's admin call announces it on PostgreSQL's tenants channel),
/// so new limits and a disabled tenant apply at once on every producer.
/// While the listener is away the cache's TTL bounds how stale it gets.
pub async fn listen_for_changes(store: herald_store::Store, keys: KeyCache) {
    let mut delay = Duration::from_secs(1);
    loop {
        match store.listen(herald_store::TENANTS_CHANNEL).await {
            Ok(mut listener) => {
                delay = Duration::from_secs(1);
                // Whatever changed while nobody listened.
                keys.forget_all();
                // `None`: the connection was lost (and is made again on the
                // next call); what was announced meanwhile is missed.
                while let Ok(_change_or_lost) = listener.try_recv().await {
                    keys.forget_all();
                }
            }
            Err(e) => tracing::warn!(error = %e, "Cannot listen for tenant changes; retrying."),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(10));
    }
}

/// An admin call: `Authorization: Bearer $HERALD_ADMIN_TOKEN`.
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Some(expected) = &state.admin_token else {
            return Err(ApiError::forbidden(
                "the admin API is off: no HERALD_ADMIN_TOKEN is set",
            ));
        };
        let given = bearer(parts).ok_or_else(|| {
            ApiError::unauthorized("send the admin token as Authorization: Bearer <token>")
        })?;
        if constant_time_eq(given.as_bytes(), expected.expose().as_bytes()) {
            Ok(Admin)
        } else {
            Err(ApiError::unauthorized("the admin token is not valid"))
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
