//! Loading a model into mistral.rs and learning what to advertise about it.
//!
//! How a model is built is decided first, from its source and device alone ([`plan`], unit-tested
//! without a model), then carried out:
//! - GGUF on a CPU goes one level below `GgufModelBuilder`, which always asks for
//!   `ModelDType::Auto` (mistral.rs 0.8.1 `model_builder_trait.rs`); on a CPU that picks F16 (the
//!   first type a test matmul accepts), which x86 has no arithmetic for: RoPE, the KV cache and
//!   the attention kernel convert every element. `GGUFLoaderBuilder` with `ModelDType::F32` decodes
//!   about 1.3x faster; small models are also expanded to F32 weights (see [`super::cpu`]).
//! - GGUF on a GPU, and safetensors anywhere, use the builders. On a GPU the KV cache is
//!   PagedAttention sized to a share of GPU memory (continuous batching); on a CPU safetensors run
//!   in F32 (the builder's Auto picks BF16).
//!
//! After loading, the engine's own configuration says where it computes, how long a context it
//! takes and whether it sees images, so the advert never claims what the model cannot do.

use std::path::PathBuf;

use anyhow::Context as _;
use auxot_common::mesh::node::{DeviceInfo, ModelInfo, ModelKind};
use mistralrs::core::{
    AutoDeviceMapParams, DefaultSchedulerMethod, DeviceMapSetting, GGUFLoaderBuilder,
    GGUFSpecificConfig, MistralRsBuilder, ModelDType, SchedulerConfig, SupportedModality,
};
use mistralrs::{
    Device, GgufModelBuilder, MemoryGpuConfig, Model, ModelBuilder, ModelCategory,
    PagedAttentionMetaBuilder, TokenSource,
};
use tracing::info;

use super::capabilities;
use super::cpu::{self, Dequantize};
use super::source::{self, Source};
use super::tokenize;
use crate::device;
use crate::engine::constrain;

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
        capacity: u32::try_from(options.max_seqs).unwrap_or(u32::MAX),
        grammar_end_tokens,
        closing_tokens,
    })
}

/// How a model is built.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Plan {
    /// GGUF files on a CPU: `GGUFLoaderBuilder` with F32 activations.
    GgufCpu {
        model_id: String,
        files: Vec<String>,
        hub: bool,
    },
    /// GGUF files on a GPU: `GgufModelBuilder` with PagedAttention.
    GgufGpu {
        model_id: String,
        files: Vec<String>,
        hub: bool,
    },
    /// Safetensors: `ModelBuilder`; F32 on a CPU, PagedAttention on a GPU.
    Safetensors {
        model_id: String,
        hub: bool,
        on_cpu: bool,
    },
}

/// The plan for `source` on a CPU (`on_cpu`) or a GPU.
fn plan(source: &Source, on_cpu: bool) -> Plan {
    let (model_id, files, hub) = match source {
        Source::LocalGguf { dir, files } => (dir.display().to_string(), files, false),
        Source::HubGguf { repo, files } => (repo.clone(), files, true),
        Source::LocalDir(dir) => {
            return Plan::Safetensors {
                model_id: dir.display().to_string(),
                hub: false,
                on_cpu,
            }
        }
        Source::Hub(repo) => {
            return Plan::Safetensors {
                model_id: repo.clone(),
                hub: true,
                on_cpu,
            }
        }
    };
    let files = files.clone();
    if on_cpu {
        Plan::GgufCpu {
            model_id,
            files,
            hub,
        }
    } else {
        Plan::GgufGpu {
            model_id,
            files,
            hub,
        }
    }
}

/// Builds the model as [`plan`] says.
async fn build(source: &Source, options: &MistralOptions) -> anyhow::Result<Model> {
    let on_cpu = cpu::runs_on_cpu(options.force_cpu);
    let plan = plan(source, on_cpu);
    // Hub tokens come from HF_TOKEN or the Hugging Face cache, as the hub tools do.
    let token = |hub: bool| {
        if hub {
            TokenSource::CacheToken
        } else {
            TokenSource::None
        }
    };
    let template = options
        .chat_template
        .as_ref()
        .map(|p| p.display().to_string());
    let template = template.as_deref();
    match plan {
        Plan::GgufCpu {
            model_id,
            files,
            hub,
        } => {
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
            load_gguf_cpu(model_id, files, token(hub), options, template).await
        }
        Plan::GgufGpu {
            model_id,
            files,
            hub,
        } => {
            let builder = GgufModelBuilder::new(model_id, files).with_token_source(token(hub));
            configure_gguf(builder, options, template)?.build().await
        }
        Plan::Safetensors {
            model_id,
            hub,
            on_cpu,
        } => {
            let builder = ModelBuilder::new(model_id).with_token_source(token(hub));
            configure_auto(builder, options, on_cpu, template)?
                .build()
                .await
        }
    }
}

/// A GGUF model on the CPU, built as `GgufModelBuilder::build` does (same scheduler, prefix cache
/// of 16 sequences, KV cache on) but with F32 activations.
async fn load_gguf_cpu(
    model_id: String,
    files: Vec<String>,
    token_source: TokenSource,
    options: &MistralOptions,
    template: Option<&str>,
) -> anyhow::Result<Model> {
    let loader = GGUFLoaderBuilder::new(
        template.map(str::to_string),
        None,
        model_id,
        files,
        GGUFSpecificConfig { topology: None },
        false,
        None,
    )
    .build();
    let pipeline = loader.load_model_from_hf(
        None,
        token_source,
        &ModelDType::F32,
        &Device::Cpu,
        true,
        DeviceMapSetting::Auto(AutoDeviceMapParams::default_text()),
        None,
        None,
    )?;
    let max_seqs = options
        .max_seqs
        .try_into()
        .context("max_seqs must be at least 1")?;
    let scheduler = SchedulerConfig::DefaultScheduler {
        method: DefaultSchedulerMethod::Fixed(max_seqs),
    };
    let runner = MistralRsBuilder::new(pipeline, scheduler, false, None)
        .with_prefix_cache_n(PREFIX_CACHE_SEQUENCES)
        .build()
        .await;
    Ok(Model::new(runner))
}

/// Sequences the prefix cache keeps (the builders' default): a new prompt that extends a cached
/// one (the next turn of a chat, a shared system prompt) only computes what is new.
const PREFIX_CACHE_SEQUENCES: usize = 16;

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
    builder = builder
        .with_max_num_seqs(options.max_seqs)
        .with_paged_attn(paged_attention(options)?);
    if let Some(t) = template {
        builder = builder.with_chat_template(t);
    }
    Ok(builder)
}

fn configure_auto(
    mut builder: ModelBuilder,
    options: &MistralOptions,
    on_cpu: bool,
    template: Option<&str>,
) -> anyhow::Result<ModelBuilder> {
    builder = builder.with_max_num_seqs(options.max_seqs);
    if on_cpu {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_follow_source_and_device() {
        let local = Source::LocalGguf {
            dir: PathBuf::from("models"),
            files: vec!["m.Q4_1.gguf".into()],
        };
        let hub_gguf = Source::HubGguf {
            repo: "org/m-GGUF".into(),
            files: vec!["m.Q4_K_M.gguf".into()],
        };
        let dir = Source::LocalDir(PathBuf::from("/models/m"));
        let hub = Source::Hub("org/m".into());
        let cases = [
            (
                &local,
                true,
                Plan::GgufCpu {
                    model_id: "models".into(),
                    files: vec!["m.Q4_1.gguf".into()],
                    hub: false,
                },
            ),
            (
                &local,
                false,
                Plan::GgufGpu {
                    model_id: "models".into(),
                    files: vec!["m.Q4_1.gguf".into()],
                    hub: false,
                },
            ),
            (
                &hub_gguf,
                true,
                Plan::GgufCpu {
                    model_id: "org/m-GGUF".into(),
                    files: vec!["m.Q4_K_M.gguf".into()],
                    hub: true,
                },
            ),
            (
                &hub_gguf,
                false,
                Plan::GgufGpu {
                    model_id: "org/m-GGUF".into(),
                    files: vec!["m.Q4_K_M.gguf".into()],
                    hub: true,
                },
            ),
            (
                &dir,
                true,
                Plan::Safetensors {
                    model_id: "/models/m".into(),
                    hub: false,
                    on_cpu: true,
                },
            ),
            (
                &hub,
                false,
                Plan::Safetensors {
                    model_id: "org/m".into(),
                    hub: true,
                    on_cpu: false,
                },
            ),
        ];
        for (source, on_cpu, expected) in cases {
            assert_eq!(plan(source, on_cpu), expected, "{source:?} on_cpu={on_cpu}");
        }
    }
}
