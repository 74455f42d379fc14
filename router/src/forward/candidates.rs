//! Which workers could serve a request: the model (or any, for `auto`), chats only on chat
//! models and embeddings only on embedding models, images only on vision models, thinking only
//! on reasoning models (`auto` prefers those), continuations only on engines that continue,
//! tools only on tools workers that have the tool.

use std::collections::HashSet;
use std::sync::Arc;

use auxot_common::chat::{ChatRequest, AUTO_MODEL};
use auxot_common::mesh::node::{ModelInfo, ModelKind};

use super::error::ForwardError;
use crate::registry::{Registry, WorkerView};

/// Routable workers that serve `request`, minus those already `tried`; an error when no
/// routable worker could ever serve it.
pub fn for_chat(
    registry: &Registry,
    request: &ChatRequest,
    tried: &HashSet<String>,
) -> Result<Vec<Arc<WorkerView>>, ForwardError> {
    let mut fitting = with_model(registry, &request.model, ModelKind::Chat)?;
    // The model itself when named, or every chat model of the worker for `auto`.
    let serving = |m: &ModelInfo| {
        m.kind == ModelKind::Chat && (request.model == AUTO_MODEL || m.id == request.model)
    };
    if request.reasoning.requested() {
        let reasoning: Vec<Arc<WorkerView>> = fitting
            .iter()
            .filter(|w| w.advert.models.iter().any(|m| m.reasoning && serving(m)))
            .cloned()
            .collect();
        if !reasoning.is_empty() {
            fitting = reasoning;
        } else if request.model != AUTO_MODEL {
            return Err(ForwardError::NoReasoning(request.model.clone()));
        }
    }
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

/// Routable workers that serve `model` (any model of `kind` for `auto`); an error when none
/// does: no worker, an unknown model, or a model of the other kind.
fn with_model(
    registry: &Registry,
    model: &str,
    kind: ModelKind,
) -> Result<Vec<Arc<WorkerView>>, ForwardError> {
    let routable = registry.routable();
    if routable.iter().all(|w| w.advert.models.is_empty()) {
        return Err(ForwardError::NoWorkers);
    }
    let fits = |m: &ModelInfo| m.kind == kind && (model == AUTO_MODEL || m.id == model);
    let serving: Vec<Arc<WorkerView>> = routable
        .iter()
        .filter(|w| w.advert.models.iter().any(fits))
        .cloned()
        .collect();
    if !serving.is_empty() {
        return Ok(serving);
    }
    let models = registry.models();
    if let Some(other) = models.iter().find(|m| m.id == model) {
        return Err(ForwardError::WrongKind {
            model: model.to_string(),
            kind: other.kind,
        });
    }
    let of_kind: Vec<String> = models
        .into_iter()
        .filter(|m| m.kind == kind)
        .map(|m| m.id)
        .collect();
    if model == AUTO_MODEL {
        return Err(ForwardError::NoModelOfKind(kind));
    }
    Err(ForwardError::UnknownModel {
        requested: model.to_string(),
        available: of_kind.join(", "),
    })
}

/// Untried routable workers that serve embedding model `model` (any, for `auto`).
pub fn for_embedding(
    registry: &Registry,
    model: &str,
    tried: &HashSet<String>,
) -> Result<Vec<Arc<WorkerView>>, ForwardError> {
    let mut fitting = with_model(registry, model, ModelKind::Embedding)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use auxot_common::chat::Reasoning;
    use auxot_common::mesh::node::{DeviceInfo, Readiness, WorkerAdvert};

    fn model(id: &str, kind: ModelKind, reasoning: bool) -> ModelInfo {
        ModelInfo {
            id: id.into(),
            reasoning,
            kind,
            ..Default::default()
        }
    }

    fn registry(workers: &[(&str, ModelInfo)]) -> Registry {
        let registry = Registry::new();
        registry.update(
            workers
                .iter()
                .map(|(id, model)| WorkerAdvert {
                    node_id: id.to_string(),
                    generation: 1,
                    quic_addr: "127.0.0.1:1".parse().expect("addr"),
                    readiness: Readiness::Ready,
                    models: vec![model.clone()],
                    tools: Vec::new(),
                    device: DeviceInfo::cpu(),
                    capacity: 4,
                    load: 0,
                })
                .collect(),
        );
        registry
    }

    fn ids(workers: &[Arc<WorkerView>]) -> Vec<&str> {
        workers.iter().map(|w| w.advert.node_id.as_str()).collect()
    }

    fn chat(model: &str, reasoning: Reasoning) -> ChatRequest {
        ChatRequest {
            model: model.into(),
            reasoning,
            ..Default::default()
        }
    }

    #[test]
    fn chats_go_to_chat_models_and_embeddings_to_embedding_models() {
        let registry = registry(&[
            ("w-chat", model("chat", ModelKind::Chat, false)),
            ("w-embed", model("embed", ModelKind::Embedding, false)),
        ]);
        let none = HashSet::new();
        let auto = chat(AUTO_MODEL, Reasoning::default());
        assert_eq!(
            ids(&for_chat(&registry, &auto, &none).expect("auto")),
            ["w-chat"]
        );
        assert_eq!(
            ids(&for_embedding(&registry, AUTO_MODEL, &none).expect("auto")),
            ["w-embed"]
        );
        let err = for_embedding(&registry, "chat", &none).expect_err("chat model");
        assert_eq!(err.to_string(), "model `chat` is not an embedding model");
        let err = for_chat(&registry, &chat("embed", Reasoning::default()), &none)
            .expect_err("embedding model");
        assert_eq!(
            err.to_string(),
            "model `embed` is an embedding model: use the embeddings endpoint"
        );
        let err = for_embedding(&registry, "nope", &none).expect_err("unknown");
        assert!(
            matches!(&err, ForwardError::UnknownModel { available, .. } if available == "embed"),
            "{err}"
        );
        let only_chat = super::tests::registry(&[("w", model("chat", ModelKind::Chat, false))]);
        let err = for_embedding(&only_chat, AUTO_MODEL, &none).expect_err("no embedding model");
        assert_eq!(err, ForwardError::NoModelOfKind(ModelKind::Embedding));
    }

    #[test]
    fn thinking_goes_to_reasoning_models_and_a_named_model_without_it_is_refused() {
        let registry = registry(&[
            ("w-plain", model("plain", ModelKind::Chat, false)),
            ("w-thinker", model("thinker", ModelKind::Chat, true)),
        ]);
        let none = HashSet::new();
        let think = Reasoning {
            effort: Some("high".into()),
            ..Default::default()
        };
        let auto = chat(AUTO_MODEL, think.clone());
        assert_eq!(
            ids(&for_chat(&registry, &auto, &none).expect("auto")),
            ["w-thinker"]
        );
        let err = for_chat(&registry, &chat("plain", think.clone()), &none).expect_err("plain");
        assert_eq!(err, ForwardError::NoReasoning("plain".into()));
        // Turning thinking off is never refused.
        let off = Reasoning {
            enabled: Some(false),
            ..Default::default()
        };
        assert!(for_chat(&registry, &chat("plain", off), &none).is_ok());
        // With no reasoning model at all, `auto` still routes (the setting has no effect).
        let plain_only = super::tests::registry(&[("w", model("plain", ModelKind::Chat, false))]);
        assert_eq!(
            ids(&for_chat(&plain_only, &auto, &none).expect("auto")),
            ["w"]
        );
    }
}
