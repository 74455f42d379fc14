//! `GET /health`: unauthenticated, always 200 while the router runs, with a summary of the
//! workers this router can route to.

use auxot_common::mesh::node::Readiness;
use serde_json::json;
use warp::reply::Response;

use super::respond::json_response;
use super::state::AppState;

pub fn health(state: &AppState) -> Response {
    let registry = state.registry();
    let routable = registry.routable();
    let model_workers: Vec<_> = routable
        .iter()
        .filter(|w| !w.advert.models.is_empty())
        .collect();
    let total_slots: u32 = model_workers.iter().map(|w| w.advert.capacity).sum();
    let active: u32 = model_workers.iter().map(|w| w.active()).sum();
    let draining = registry
        .all()
        .iter()
        .filter(|w| w.advert.readiness == Readiness::Draining)
        .count();
    let body = json!({
        "status": if state.is_shutting_down() { "draining" } else { "ok" },
        "router": state.node_id,
        "version": auxot_common::VERSION,
        "workers": model_workers.len(),
        "tools_workers": routable.iter().filter(|w| !w.advert.tools.is_empty()).count(),
        "draining_workers": draining,
        "total_slots": total_slots,
        "active_jobs": active,
        "available": total_slots.saturating_sub(active),
        "models": registry.models().into_iter().map(|m| m.id).collect::<Vec<_>>(),
        "gossip": state.gossip_stats.snapshot(),
        "capacity": model_workers.iter().map(|w| json!({
            "worker": w.advert.node_id,
            "device": w.advert.device,
            "slots": w.advert.capacity,
            "active": w.active(),
            "models": w.advert.models.iter().map(|m| m.id.clone()).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    });
    // A draining router answers 503 so load balancers stop sending it new connections.
    let status = if state.is_shutting_down() { 503 } else { 200 };
    json_response(status, &body)
}
