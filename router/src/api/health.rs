//! `GET /health`: 200 while the router runs (503 while it drains), for load balancers and
//! probes, which send no key: they get the status and counts only. With a valid key the answer
//! also names this router, its version, every routable worker with its device, models, slots
//! and load, and the gossip traffic: a map of the cluster is for operators, not for strangers.

use auxot_common::mesh::node::Readiness;
use serde_json::{json, Value};
use warp::reply::Response;

use super::respond::json_response;
use super::state::AppState;

pub fn health(state: &AppState, detailed: bool) -> Response {
    let registry = state.registry();
    let routable = registry.routable();
    let model_workers: Vec<_> = routable
        .iter()
        .filter(|w| !w.advert.models.is_empty())
        .collect();
    // Summed wide: adverts come from other nodes and must not overflow anything here.
    let total_slots: u64 = model_workers
        .iter()
        .map(|w| u64::from(w.advert.capacity))
        .sum();
    let active: u64 = model_workers.iter().map(|w| u64::from(w.active())).sum();
    let draining = registry
        .all()
        .iter()
        .filter(|w| w.advert.readiness == Readiness::Draining)
        .count();
    let mut body = json!({
        "status": if state.is_shutting_down() { "draining" } else { "ok" },
        "workers": model_workers.len(),
        "tools_workers": routable.iter().filter(|w| !w.advert.tools.is_empty()).count(),
        "draining_workers": draining,
        "total_slots": total_slots,
        "active_jobs": active,
        "available": total_slots.saturating_sub(active),
    });
    if detailed {
        let details = json!({
            "router": state.node_id,
            "version": auxot_common::VERSION,
            "models": registry.models().into_iter().map(|m| m.id).collect::<Vec<_>>(),
            "gossip": state.gossip_stats.snapshot(),
            "request_bodies_bytes": state.bodies.in_use(),
            "capacity": model_workers.iter().map(|w| json!({
                "worker": w.advert.node_id,
                "device": w.advert.device,
                "slots": w.advert.capacity,
                "active": w.active(),
                "models": w.advert.models.iter().map(|m| m.id.clone()).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        });
        if let (Value::Object(body), Value::Object(details)) = (&mut body, details) {
            body.extend(details);
        }
    }
    // A draining router answers 503 so load balancers stop sending it new connections.
    let status = if state.is_shutting_down() { 503 } else { 200 };
    json_response(status, &body)
}
