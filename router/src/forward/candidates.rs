//! Which workers could serve a request: the model (or any, for `auto`), images only on vision
//! models, continuations only on engines that continue, tools only on tools workers that have
//! the tool.

use std::collections::HashSet;
use std::sync::Arc;

use auxot_common::chat::{ChatRequest, AUTO_MODEL};

use super::error::ForwardError;
use crate::registry::{Registry, WorkerView};

/// Routable workers that serve `request`, minus those already `tried`; an error when no
/// routable worker could ever serve it.
pub fn for_chat(
    registry: &Registry,
    request: &ChatRequest,
    tried: &HashSet<String>,
) -> Result<Vec<Arc<WorkerView>>, ForwardError> {
    let routable = registry.routable();
    let with_model: Vec<Arc<WorkerView>> = routable
        .iter()
        .filter(|w| !w.advert.models.is_empty())
        .filter(|w| request.model == AUTO_MODEL || w.advert.serves(&request.model))
        .cloned()
        .collect();
    if with_model.is_empty() {
        if routable.iter().all(|w| w.advert.models.is_empty()) {
            return Err(ForwardError::NoWorkers);
        }
        let available: Vec<String> = registry.models().into_iter().map(|m| m.id).collect();
        return Err(ForwardError::UnknownModel {
            requested: request.model.clone(),
            available: available.join(", "),
        });
    }
    let mut fitting = with_model;
    if request.has_images() {
        fitting.retain(|w| {
            w.advert
                .models
                .iter()
                .any(|m| m.vision && (request.model == AUTO_MODEL || m.id == request.model))
        });
        if fitting.is_empty() {
            return Err(ForwardError::NoVision(request.model.clone()));
        }
    }
    if request.continue_final {
        // Only an engine that says it can continue a cut turn gets one: another would answer
        // it as a new turn, and the caller would read the answer twice.
        fitting.retain(|w| {
            w.advert
                .models
                .iter()
                .any(|m| m.continues && m.id == request.model)
        });
    }
    fitting.retain(|w| !tried.contains(&w.advert.node_id));
    Ok(fitting)
}

/// Routable workers that serve tools.
pub fn tools_workers(registry: &Registry) -> Vec<Arc<WorkerView>> {
    registry
        .routable()
        .into_iter()
        .filter(|w| !w.advert.tools.is_empty())
        .collect()
}

/// Untried tools workers that have tool `name`: those that can run it first, then the least
/// loaded.
pub fn for_tool(registry: &Registry, name: &str, tried: &HashSet<String>) -> Vec<Arc<WorkerView>> {
    let mut candidates: Vec<Arc<WorkerView>> = tools_workers(registry)
        .into_iter()
        .filter(|w| !tried.contains(&w.advert.node_id))
        .filter(|w| w.advert.tools.iter().any(|t| t.name == name))
        .collect();
    let unavailable =
        |w: &WorkerView| !w.advert.tools.iter().any(|t| t.name == name && t.available);
    candidates.sort_by_key(|w| (unavailable(w), w.load()));
    candidates
}
