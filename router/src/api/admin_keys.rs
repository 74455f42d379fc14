//! `/api/admin/v1/keys`: API and admin keys, live on every router.
//!
//! A key made here is a [`KeyRecord`] (its Argon2id hash, never the key) replicated to every
//! router through gossip and kept in each one's `records.json`, so it works on every router
//! within a gossip round and survives restarts. The plaintext is in the one response that
//! creates it. Revoking or changing the limits of a key that came from `keys.json` writes a
//! record for it too, which then overrides the file on every router.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{json, Value};
use warp::reply::Response;

use super::respond::{error_response, json_response};
use super::state::AppState;
use crate::error::{ApiError, DialectKind, Fault};
use crate::keys::{self, KeyLimits, NewKey, Scope, StoredKey};
use crate::records::{now_millis, now_secs, Body, KeyRecord, Record};

fn respond(result: Result<Value, ApiError>) -> Response {
    match result {
        Ok(body) => json_response(200, &body),
        Err(error) => error_response(DialectKind::Plain, &error),
    }
}

fn parse<'a, T: Deserialize<'a> + Default>(body: &'a [u8]) -> Result<T, ApiError> {
    if body.is_empty() {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid(format!("invalid request body: {e}")))
}

/// What the API shows of a key (never its hash).
fn describe(state: &AppState, key: &StoredKey, revoked_at: Option<u64>) -> Value {
    json!({
        "id": key.id,
        "name": key.name,
        "scope": key.scope,
        "created_at": key.created_at,
        "revoked_at": revoked_at,
        "limits": key.limits,
        "usage": state.quotas.summary(&key.id, now_secs()),
    })
}

/// The key with this id as routers know it now: a record, or an entry of `keys.json`.
fn find(state: &AppState, id: &str) -> Result<(StoredKey, Option<u64>), ApiError> {
    if let Some(record) = state.admin.records.key(id) {
        return Ok((record.key, record.revoked_at));
    }
    state
        .auth
        .key(id)
        .map(|key| (key, None))
        .ok_or_else(|| ApiError::new(Fault::NotFound, format!("no key with id {id}")))
}

fn save(state: &AppState, key: StoredKey, revoked_at: Option<u64>) {
    state.admin.records.merge([Record {
        id: key.id.clone(),
        version: now_millis(),
        body: Body::Key(KeyRecord { key, revoked_at }),
    }]);
}

/// `GET /api/admin/v1/keys`: every key routers accept or revoked through the API.
pub fn list(state: &Arc<AppState>) -> Response {
    let mut keys: Vec<Value> = state
        .auth
        .keys()
        .iter()
        .map(|key| describe(state, key, None))
        .collect();
    keys.extend(
        state
            .admin
            .records
            .keys()
            .iter()
            .filter(|r| r.revoked_at.is_some())
            .map(|r| describe(state, &r.key, r.revoked_at)),
    );
    json_response(200, &json!({"keys": keys}))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateKey {
    #[serde(default)]
    name: String,
    #[serde(default)]
    scope: Scope,
    #[serde(default)]
    limits: KeyLimits,
}

/// `POST /api/admin/v1/keys`: a new key, its plaintext shown in this response only.
pub fn create(state: &Arc<AppState>, body: &[u8]) -> Response {
    respond((|| {
        let body: CreateKey = parse(body)?;
        let name = if body.name.is_empty() {
            "default".to_string()
        } else {
            body.name
        };
        let NewKey { key, mut stored } =
            keys::generate(&name, body.scope).map_err(|e| ApiError::internal(e.to_string()))?;
        stored.limits = body.limits;
        let mut answer = describe(state, &stored, None);
        answer["key"] = json!(key);
        save(state, stored, None);
        Ok(answer)
    })())
}

/// `GET /api/admin/v1/keys/{id}`: the key, its limits and its usage on every router.
pub fn get(state: &Arc<AppState>, id: &str) -> Response {
    respond(find(state, id).map(|(key, revoked_at)| describe(state, &key, revoked_at)))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateKey {
    #[serde(default)]
    name: Option<String>,
    /// Replaces the key's limits as a whole.
    #[serde(default)]
    limits: Option<KeyLimits>,
}

/// `PATCH /api/admin/v1/keys/{id}`: a new name or new limits.
pub fn update(state: &Arc<AppState>, id: &str, body: &[u8]) -> Response {
    respond((|| {
        let body: UpdateKey = parse(body)?;
        let (mut key, revoked_at) = find(state, id)?;
        if revoked_at.is_some() {
            return Err(ApiError::invalid(format!("key {id} is revoked")));
        }
        if let Some(name) = body.name {
            key.name = name;
        }
        if let Some(limits) = body.limits {
            key.limits = limits;
        }
        let answer = describe(state, &key, None);
        save(state, key, None);
        Ok(answer)
    })())
}

/// `POST /api/admin/v1/keys/{id}/revoke`: refused on every router within a gossip round,
/// verifications already cached included.
pub fn revoke(state: &Arc<AppState>, id: &str) -> Response {
    respond((|| {
        let (key, revoked_at) = find(state, id)?;
        let revoked_at = revoked_at.unwrap_or_else(now_secs);
        save(state, key, Some(revoked_at));
        Ok(json!({"revoked": id, "revoked_at": revoked_at}))
    })())
}
