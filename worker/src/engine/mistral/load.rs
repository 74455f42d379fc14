//! Loading a model into mistral.rs and learning what to advertise about it.
//!
//! How a model is built is decided first, from its flags, source and device alone
//! ([`super::options::plan`], unit-tested without a model), then carried out by [`super::build`]
//! with mistral.rs's loaders:
//! - GGUF on a CPU runs with `ModelDType::F32` activations: `GgufModelBuilder` always asks for
//!   `ModelDType::Auto` (mistral.rs 0.8.1 `model_builder_trait.rs`), which on a CPU picks F16
//!   (the first type a test matmul accepts), which x86 has no arithmetic for: RoPE, the KV cache
//!   and the attention kernel convert every element. F32 decodes about 1.3x faster; small models
//!   are also expanded to F32 weights (see [`super::cpu`]). Safetensors on a CPU also run in F32
//!   (Auto picks BF16).
//! - On a GPU the KV cache is PagedAttention sized to a share of GPU memory (continuous
//!   batching), and the engine's capacity comes from the cache it reserved.
//!
//! After loading, the engine's own configuration says where it computes, how long a context it
//! takes and whether it sees images, so the advert never claims what the model cannot do.

use anyhow::Context as _;
use auxot_common::mesh::node::{DeviceInfo, ModelInfo, ModelKind};
use mistralrs::core::SupportedModality;
use mistralrs::{Model, ModelCategory};
use tracing::info;

use super::build;
use super::capabilities;
use super::cpu::{self, Dequantize};
use super::options::{self, ModelSpec};
use super::source;
use super::tokenize;
use crate::device;
use crate::engine::constrain;

/// How to load the model.
#[derive(Debug, Clone)]
pub struct MistralOptions {
    /// The model and its options (`--model` and what follows it).
    pub spec: ModelSpec,
    /// Compute on the CPU even when a GPU is available.
    pub force_cpu: bool,
    /// Whether GGUF weights are expanded to F32 on a CPU; acted on by
    /// [`cpu::prepare_engine_environment`] before the process starts threads, only checked here.
    pub dequantize: Dequantize,
    /// Whether the model reasons; `None` detects it from the chat template.
    pub reasoning: Option<bool>,
}

/// A loaded model and what is known about it.
pub struct Loaded {
    pub model: Model,
    /// What the worker advertises.
    pub info: ModelInfo,
    pub device: DeviceInfo,
    /// Sequences run at once.
    pub capacity: u32,
    /// Token ids that end a constrained (JSON) generation; see [`GRAMMAR_END_TOKENS`].
    pub grammar_end_tokens: Vec<u32>,
    /// Token ids that only close JSON (see [`constrain::CLOSING_TEXTS`]), with their
    /// [`constrain::closing_bias`].
    pub closing_tokens: Vec<(u32, f32)>,
}

/// The end-of-text tokens llguidance may force once a grammar is complete. mistral.rs stops
/// only on the chat template's end-of-turn token, which for many models (SmolLM2, Qwen) is a
/// different one, so without these a finished JSON answer would run on to `max_tokens`.
const GRAMMAR_END_TOKENS: &[&str] = &[
    "</s>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<｜end▁of▁sentence｜>",
    "<eos>",
    "<|im_end|>",
    "<|eot_id|>",
    "<|end|>",
];

/// Loads the model; takes from a second (a small GGUF on CPU) to minutes (a hub download).
pub async fn load(options: &MistralOptions) -> anyhow::Result<Loaded> {
    let spec = &options.spec;
    let source = source::resolve(&spec.model, &spec.gguf_files)?;
    let draft = spec
        .options
        .draft_model
        .as_ref()
        .map(|draft| source::resolve(draft, &spec.options.draft_gguf_files))
        .transpose()
        .context("the draft model")?;
    let on_cpu = cpu::runs_on_cpu(options.force_cpu);
    let plan = options::plan(spec, &source, draft.as_ref(), on_cpu)?;
    let id = plan.id.clone();
    info!(model = %id, source = ?source, "loading model");
    if on_cpu && plan.weights.is_gguf() {
        log_cpu_weights(options, &source);
    }
    let built = build::build(&plan)
        .await
        .with_context(|| format!("loading model `{}`", spec.model))?;
    let model = built.model;

    let config = model.config().map_err(|e| anyhow::anyhow!("{e}"))?;
    let vision = config
        .modalities
        .input
        .iter()
        .any(|m| matches!(m, SupportedModality::Vision));
    let context_length = config.max_seq_len.and_then(|n| u32::try_from(n).ok());
    let device = if config.device.is_cuda() {
        device::detect_gpu()
    } else {
        DeviceInfo::cpu()
    };
    // mistral.rs loads a directory with `config_sentence_transformers.json` as an embedding
    // model; such a model only embeds (no reasoning, constraints or continuations).
    let kind = match config.category {
        ModelCategory::Embedding => ModelKind::Embedding,
        _ => ModelKind::Chat,
    };
    info!(model = %id, ?context_length, vision, ?kind, device = %device.name, "model loaded");
    let (reasoning, grammar_end_tokens, closing_tokens) = match kind {
        ModelKind::Embedding => (false, Vec::new(), Vec::new()),
        ModelKind::Chat => {
            let reasoning = match options.reasoning {
                Some(reasoning) => reasoning,
                None => capabilities::detect_reasoning(&model).await,
            };
            let grammar_end_tokens: Vec<u32> = single_tokens(&model, GRAMMAR_END_TOKENS)
                .await
                .into_iter()
                .map(|(id, _)| id)
                .collect();
            let closing_tokens = single_tokens(&model, constrain::CLOSING_TEXTS)
                .await
                .into_iter()
                .map(|(id, text)| (id, constrain::closing_bias(text)))
                .collect::<Vec<_>>();
            info!(
                reasoning,
                end_tokens = ?grammar_end_tokens,
                closing_tokens = closing_tokens.len(),
                "chat model: reasoning and tokens for constrained generations"
            );
            (reasoning, grammar_end_tokens, closing_tokens)
        }
    };
    Ok(Loaded {
        model,
        info: ModelInfo {
            id,
            context_length,
            vision,
            reasoning,
            continues: kind.is_chat(),
            kind,
        },
        device,
        capacity: u32::try_from(built.capacity.max_seqs).unwrap_or(u32::MAX),
        grammar_end_tokens,
        closing_tokens,
    })
}

/// Says how GGUF weights run on the CPU (decided before the process started threads).
fn log_cpu_weights(options: &MistralOptions, source: &source::Source) {
    let operator = std::env::var(cpu::CANDLE_DEQUANTIZE_ALL).ok();
    let wanted = cpu::decide(
        options.dequantize,
        operator.as_deref(),
        cpu::target(source, true),
    )
    .dequantize;
    let expanded = cpu::switch_is_on();
    if wanted && !expanded {
        info!("weights stay quantized: the process did not call prepare_engine_environment before starting threads");
    }
    info!(
        weights = if expanded { "f32" } else { "quantized" },
        activations = "f32",
        "loading GGUF on the CPU"
    );
}

/// Those `texts` this tokenizer has as single tokens, with their ids.
async fn single_tokens<'a>(model: &Model, texts: &[&'a str]) -> Vec<(u32, &'a str)> {
    let mut ids = Vec::new();
    for &token in texts {
        if let Ok(found) = tokenize::tokenize_text(model, token).await {
            if let [id] = found.as_slice() {
                ids.push((*id, token));
            }
        }
    }
    ids
}
