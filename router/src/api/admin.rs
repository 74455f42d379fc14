//! The admin API (`/api/admin/v1/...`), for admin-scoped keys only: the workers this router
//! sees (role, certificate expiry) and revoking them, and join tokens (list, create, revoke).
//! Changes are records replicated to every router through gossip.

use std::sync::Arc;

use auxot_common::pki::{is_valid_node_id, CertificateAuthority, Role};
use serde::Deserialize;
use serde_json::{json, Value};
use warp::reply::Response;

use super::respond::{error_response, json_response};
use crate::error::{ApiError, DialectKind, Fault};
use crate::membership::SharedView;
use crate::records::{now_millis, now_secs, Body, Record, Records, RevocationRecord};
use crate::store;

const DIALECT: DialectKind = DialectKind::Plain;

/// What the admin API works on.
pub struct Admin {
    pub ca: Arc<CertificateAuthority>,
    pub records: Records,
    pub view: SharedView,
}

fn unix(time: std::time::SystemTime) -> u64 {
    time.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn respond(result: Result<Value, ApiError>) -> Response {
    match result {
        Ok(body) => json_response(200, &body),
        Err(error) => error_response(DIALECT, &error),
    }
}

/// `GET /api/admin/v1/workers`.
pub fn workers(admin: &Admin) -> Response {
    let view = admin.view.read().unwrap_or_else(|p| p.into_inner()).clone();
    let workers: Vec<Value> = view
        .workers
        .iter()
        .map(|w| {
            json!({
                "node_id": w.advert.node_id,
                "role": w.role.as_str(),
                "generation": w.advert.generation,
                "readiness": w.advert.readiness.as_str(),
                "quic_addr": w.advert.quic_addr,
                "models": w.advert.models.iter().map(|m| &m.id).collect::<Vec<_>>(),
                "tools": w.advert.tools.len(),
                "capacity": w.advert.capacity,
                "load": w.advert.load,
                "certificate_expires_at": unix(w.cert_not_after),
            })
        })
        .collect();
    let revoked: Vec<Value> = admin
        .records
        .all()
        .into_iter()
        .filter_map(|r| match r.body {
            Body::Revocation(rev) => {
                Some(json!({"node_id": r.id, "revoked_at": rev.revoked_at, "reason": rev.reason}))
            }
            _ => None,
        })
        .collect();
    json_response(200, &json!({"workers": workers, "revoked": revoked}))
}

#[derive(Debug, Default, Deserialize)]
struct RevokeBody {
    #[serde(default)]
    reason: String,
}

/// `POST /api/admin/v1/workers/{node}/revoke`: out of routing on every router, no renewal.
pub fn revoke_worker(admin: &Admin, node: &str, body: &[u8]) -> Response {
    respond((|| {
        if !is_valid_node_id(node) {
            return Err(ApiError::invalid(format!("`{node}` is not a node id")));
        }
        let body: RevokeBody = if body.is_empty() {
            RevokeBody::default()
        } else {
            serde_json::from_slice(body)
                .map_err(|e| ApiError::invalid(format!("invalid request body: {e}")))?
        };
        let revoked_at = now_secs();
        admin.records.merge([Record {
            id: node.to_string(),
            version: now_millis(),
            body: Body::Revocation(RevocationRecord {
                revoked_at,
                reason: body.reason,
            }),
        }]);
        Ok(json!({"revoked": node, "revoked_at": revoked_at}))
    })())
}

/// `GET /api/admin/v1/tokens`: ids and roles, never secrets.
pub fn tokens(admin: &Admin) -> Response {
    let tokens: Vec<Value> = admin
        .records
        .tokens()
        .into_iter()
        .map(|(id, t)| {
            json!({
                "id": id,
                "name": t.name,
                "role": t.role.as_str(),
                "created_at": t.created_at,
                "expires_at": t.expires_at,
                "revoked_at": t.revoked_at,
            })
        })
        .collect();
    json_response(200, &json!({"tokens": tokens}))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateToken {
    #[serde(default = "default_role")]
    role: String,
    #[serde(default)]
    name: String,
    /// Seconds the token enrolls for; none for no expiry.
    #[serde(default)]
    ttl_secs: Option<u64>,
}

fn default_role() -> String {
    "worker".into()
}

/// `POST /api/admin/v1/tokens`: a new join token, shown once.
pub fn create_token(admin: &Admin, body: &[u8]) -> Response {
    respond((|| {
        let body: CreateToken = serde_json::from_slice(if body.is_empty() { b"{}" } else { body })
            .map_err(|e| ApiError::invalid(format!("invalid request body: {e}")))?;
        let role = match body.role.as_str() {
            "worker" => Role::Worker,
            "tools" => Role::Tools,
            other => {
                return Err(ApiError::invalid(format!(
                    "role: `{other}` is not one of worker, tools"
                )))
            }
        };
        let (token, record) = store::new_token(&admin.ca, role, &body.name, body.ttl_secs)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let id = record.id.clone();
        admin.records.merge([record]);
        Ok(json!({"id": id, "role": role.as_str(), "token": token}))
    })())
}

/// `POST /api/admin/v1/tokens/{id}/revoke`: the token enrolls no more (workers it enrolled keep
/// their certificates; revoke those by node).
pub fn revoke_token(admin: &Admin, id: &str) -> Response {
    respond((|| {
        let mut token = admin
            .records
            .token(id)
            .ok_or_else(|| ApiError::new(Fault::NotFound, format!("no token with id {id}")))?;
        token.revoked_at.get_or_insert(now_secs());
        let revoked_at = token.revoked_at;
        admin.records.merge([Record {
            id: id.to_string(),
            version: now_millis(),
            body: Body::Token(token),
        }]);
        Ok(json!({"revoked": id, "revoked_at": revoked_at}))
    })())
}
