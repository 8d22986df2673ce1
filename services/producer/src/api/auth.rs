use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
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

/// The tenant a request acts for, from its `Authorization: Bearer <key>`.
pub struct Tenant(pub TenantId);

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

/// The active tenant that owns API `key` (HTTP and gRPC share this).
pub async fn tenant_for_key(state: &AppState, key: &str) -> Result<TenantId, ApiError> {
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

fn owner_to_tenant(owner: Option<ApiKeyOwner>) -> Result<TenantId, ApiError> {
    match owner {
        None => Err(ApiError::unauthorized("the API key is not valid")),
        Some(o) if !o.tenant_active => Err(ApiError::forbidden(
            "the tenant of this API key is disabled",
        )),
        Some(o) => Ok(o.tenant_id),
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
