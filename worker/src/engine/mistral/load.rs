//! Loading a model into mistral.rs and learning what to advertise about it.
//!
//! The builder follows the source (GGUF or safetensors, local or hub). On a GPU the KV cache is
//! PagedAttention sized to a share of GPU memory; on the CPU safetensors run in F32. After
//! loading, the engine's own configuration says where it computes, how long a context it takes
//! and whether it sees images, so the advert never claims what the model cannot do.

use std::path::PathBuf;

use anyhow::Context as _;
use auxot_common::mesh::node::{DeviceInfo, ModelInfo, ModelKind};
use mistralrs::core::SupportedModality;
use mistralrs::{
    GgufModelBuilder, MemoryGpuConfig, Model, ModelBuilder, ModelCategory,
    PagedAttentionMetaBuilder, TokenSource,
};
use tracing::info;

use super::capabilities;
use super::source::{self, Source};
use super::tokenize;
use crate::device;

/// How to load the model.
#[derive(Debug, Clone)]
pub struct MistralOptions {
    /// A `.gguf` file, a model directory, or a Hugging Face id.
    pub model: String,
    /// GGUF file(s) inside a Hugging Face repository, when `model` is a hub id of a GGUF repo.
    pub gguf_files: Vec<String>,
    /// Id to advertise instead of the one derived from `model`.
    pub name: Option<String>,
    /// Sequences the engine runs at once.
    pub max_seqs: usize,
    /// Compute on the CPU even when a GPU is available.
    pub force_cpu: bool,
    /// A `.json` or `.jinja` chat template overriding the model's own.
    pub chat_template: Option<PathBuf>,
    /// Share of GPU memory for the KV cache (PagedAttention); unused on CPU.
    pub gpu_memory_utilization: f32,
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
    let source = source::resolve(&options.model, &options.gguf_files)?;
    let id = options
        .name
        .clone()
        .unwrap_or_else(|| source::default_model_id(&source));
    info!(model = %id, source = ?source, "loading model");
    let model = build(&source, options)
        .await
        .with_context(|| format!("loading model `{}`", options.model))?;

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
    // model; such a model only embeds.
    let kind = match config.category {
        ModelCategory::Embedding => ModelKind::Embedding,
        _ => ModelKind::Chat,
    };
    let (reasoning, grammar_end_tokens) = match kind {
        ModelKind::Embedding => (false, Vec::new()),
        ModelKind::Chat => (
            match options.reasoning {
                Some(reasoning) => reasoning,
                None => capabilities::detect_reasoning(&model).await,
            },
            grammar_end_tokens(&model).await,
        ),
    };
    info!(model = %id, ?context_length, vision, reasoning, ?kind, device = %device.name, "model loaded");
    Ok(Loaded {
        model,
        info: ModelInfo {
            id,
            context_length,
            vision,
            reasoning,
            kind,
        },
        device,
        capacity: u32::try_from(options.max_seqs).unwrap_or(u32::MAX),
        grammar_end_tokens,
    })
}

/// Builds the model with the builder its source needs.
async fn build(source: &Source, options: &MistralOptions) -> anyhow::Result<Model> {
    // Hub tokens come from HF_TOKEN or the Hugging Face cache, as the hub tools do.
    let hub_token = TokenSource::CacheToken;
    let template = options
        .chat_template
        .as_ref()
        .map(|p| p.display().to_string());
    let template = template.as_deref();
    match source {
        Source::LocalGguf { dir, files } => {
            let builder = GgufModelBuilder::new(dir.display().to_string(), files.clone())
                .with_token_source(TokenSource::None);
            configure_gguf(builder, options, template)?.build().await
        }
        Source::HubGguf { repo, files } => {
            let builder = GgufModelBuilder::new(repo, files.clone()).with_token_source(hub_token);
            configure_gguf(builder, options, template)?.build().await
        }
        Source::LocalDir(dir) => {
            let builder =
                ModelBuilder::new(dir.display().to_string()).with_token_source(TokenSource::None);
            configure_auto(builder, options, template)?.build().await
        }
        Source::Hub(repo) => {
            let builder = ModelBuilder::new(repo).with_token_source(hub_token);
            configure_auto(builder, options, template)?.build().await
        }
    }
}

/// The ids of the [`GRAMMAR_END_TOKENS`] this tokenizer has as single tokens.
async fn grammar_end_tokens(model: &Model) -> Vec<u32> {
    let mut ids = Vec::new();
    for token in GRAMMAR_END_TOKENS {
        if let Ok(found) = tokenize::tokenize_text(model, token).await {
            if let [id] = found.as_slice() {
                ids.push(*id);
            }
        }
    }
    ids
}

/// PagedAttention with a KV cache sized to a share of GPU memory: continuous batching and
/// prefix caching on GPUs (mistral.rs's default budget of 4096 tokens thrashes). A no-op in
/// builds without a GPU backend.
fn paged_attention(options: &MistralOptions) -> anyhow::Result<mistralrs::PagedAttentionConfig> {
    PagedAttentionMetaBuilder::default()
        .with_gpu_memory(MemoryGpuConfig::Utilization(options.gpu_memory_utilization))
        .build()
}

fn configure_gguf(
    mut builder: GgufModelBuilder,
    options: &MistralOptions,
    template: Option<&str>,
) -> anyhow::Result<GgufModelBuilder> {
    builder = builder.with_max_num_seqs(options.max_seqs);
    if options.force_cpu {
        builder = builder.with_force_cpu();
    } else {
        builder = builder.with_paged_attn(paged_attention(options)?);
    }
    if let Some(t) = template {
        builder = builder.with_chat_template(t);
    }
    Ok(builder)
}

fn configure_auto(
    mut builder: ModelBuilder,
    options: &MistralOptions,
    template: Option<&str>,
) -> anyhow::Result<ModelBuilder> {
    builder = builder.with_max_num_seqs(options.max_seqs);
    if options.force_cpu {
        // Safetensors default to BF16, which CPUs run slowly or not at all.
        builder = builder
            .with_force_cpu()
            .with_dtype(mistralrs::ModelDType::F32);
    } else {
        builder = builder.with_paged_attn(paged_attention(options)?);
    }
    if let Some(t) = template {
        builder = builder.with_chat_template(t);
    }
    Ok(builder)
}
