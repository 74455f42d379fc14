//! What the per-model flags ask of mistral.rs, decided before anything loads.
//!
//! A worker serves one or more models ([`ModelSpec`]: `--model` and the model options that
//! follow it). Each becomes an [`EnginePlan`] through [`plan`], a pure function of the spec, where
//! its weights come from ([`Source`]) and whether the engine computes on a CPU, so every mapping
//! from flags to mistral.rs settings is unit-tested without loading a model, and every mistake is
//! refused with a message before the worker joins the cluster. [`super::build`] carries a plan
//! out. What each option becomes in mistral.rs 0.8.1:
//!
//! - `--isq TYPE` (safetensors only): the `in_situ_quant` argument of `Loader::load_model_from_hf`,
//!   parsed by mistral.rs's own `parse_isq_value` (`Q4K`, `Q8_0`, `HQQ4`, `FP8`, `4`, `8`, ...).
//!   GGUF files are already quantized: refused.
//! - Several GPUs: by default `DeviceMapSetting::Auto`, which spreads the layers over every GPU
//!   the process sees (`CUDA_VISIBLE_DEVICES` chooses them), sized for `--device-map-max-seq-len`
//!   and `--device-map-max-batch-size` (mistral.rs's `AutoDeviceMapParams`). `--device-layers
//!   0:16;1:16` is a manual `DeviceMapSetting::Map` (mistral.rs's `--num-device-layers` syntax;
//!   layers left over go to the CPU). `--gpu N` puts the whole model on GPU N (the base device,
//!   no spreading), so several models can share a host one GPU each. Tensor parallelism is not
//!   offered: mistral.rs 0.8.1 only does it with its `nccl` feature, by re-executing the current
//!   program once per GPU with the same arguments (a second worker joining the cluster here) and
//!   one IPC name per host (one such model per machine).
//! - KV cache (GPU): PagedAttention sized by `--gpu-memory-utilization` (`MemoryGpuConfig::
//!   Utilization`: mistral.rs fills the KV cache until the GPU's total use reaches that share, so
//!   models loaded later on the same GPU need a higher share) or `--kv-cache-tokens`
//!   (`MemoryGpuConfig::ContextSize`). Capacity then comes from what was reserved: see
//!   [`capacity`].
//! - `--lora ADAPTER` (repeatable): LoRA adapters in mistral.rs 0.8.1 are merged into the weights
//!   while they load (`NormalLoaderBuilder::with_lora`; there is no per-request adapter
//!   activation any more), so each adapter choice is its own engine: give `--model BASE
//!   --model-name ID --lora ADAPTER` once per adapter (and `--model BASE` once more to serve the
//!   plain base), and each id is advertised and routed like any model. Several `--lora` on one
//!   model are all merged into it. A GGUF base takes one adapter repository with an
//!   `--adapter-order` file (`GGUFLoaderBuilder::with_lora`).
//! - `--xlora MODEL --adapter-order FILE [--xlora-target-index N]`: an X-LoRA model (learned
//!   mixing of adapters per token), safetensors or GGUF base (`with_xlora` on either loader).
//! - `--draft-model PATH_OR_ID [--speculative-gamma N]`: mistral.rs's `SpeculativePipeline` over
//!   the target and the draft (same tokenizer required), built from two pipelines loaded as any
//!   other (`TextSpeculativeBuilder` only takes safetensors text models). It does not support
//!   PagedAttention, so a speculative engine has a plain KV cache and `--max-seqs` capacity.
//!   Refused for now: mistral.rs 0.8.1's speculative pipeline deadlocks on its first step (see
//!   [`SPECULATIVE_DECODING_WORKS`]).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use mistralrs::core::{parse_isq_value, IsqType, Ordering};

use super::source::{self, Source};

/// Default share of GPU memory mistral.rs may fill with weights and KV cache, per model.
pub const DEFAULT_GPU_MEMORY_UTILIZATION: f32 = 0.85;
/// Requests run at once on a CPU when `--max-seqs` is not given.
pub const DEFAULT_CPU_MAX_SEQS: usize = 8;
/// Requests run at once on a GPU without PagedAttention (a speculative engine, a model mistral.rs
/// cannot page) when `--max-seqs` is not given: mistral.rs's builders' default.
pub const DEFAULT_GPU_MAX_SEQS: usize = 32;
/// Default `--kv-tokens-per-request`: the prompt plus answer a request is assumed to keep in the
/// KV cache when capacity is derived from the cache's size.
pub const DEFAULT_KV_TOKENS_PER_REQUEST: usize = 4096;
/// Most requests one engine is sized for from its KV cache (vLLM's default `max_num_seqs`): more
/// sequences per step cost activation memory mistral.rs did not reserve.
pub const MAX_DERIVED_SEQS: usize = 256;
/// Default `--speculative-gamma` (mistral.rs's documentation suggests 12-32).
pub const DEFAULT_SPECULATIVE_GAMMA: usize = 16;

/// One model a worker serves: `--model` and the model options given after it.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSpec {
    /// A `.gguf` file, a model directory, or a Hugging Face id.
    pub model: String,
    /// GGUF file(s) to use from a Hugging Face repository named by `model`.
    pub gguf_files: Vec<String>,
    /// Model id to advertise instead of the derived one.
    pub name: Option<String>,
    /// A `.json` or `.jinja` chat template overriding the model's own.
    pub chat_template: Option<PathBuf>,
    /// Requests run at once; `None` derives it (see [`capacity`]).
    pub max_seqs: Option<usize>,
    /// Share of GPU memory mistral.rs may fill for this model (weights and KV cache).
    pub gpu_memory_utilization: f32,
    /// The GPU options.
    pub options: ModelOptions,
}

impl ModelSpec {
    /// A model with every option at its default.
    pub fn new(model: impl Into<String>) -> Self {
        ModelSpec {
            model: model.into(),
            gguf_files: Vec::new(),
            name: None,
            chat_template: None,
            max_seqs: None,
            gpu_memory_utilization: DEFAULT_GPU_MEMORY_UTILIZATION,
            options: ModelOptions::default(),
        }
    }
}

/// The engine options of one model beyond where it comes from (see the module documentation).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelOptions {
    /// `--isq`: in-situ quantization type, as given (checked by [`parse_isq`]).
    pub isq: Option<String>,
    /// `--gpu`: the GPU holding the whole model.
    pub gpu: Option<usize>,
    /// `--device-layers`: repeating layers per GPU.
    pub device_layers: Option<Vec<DeviceLayers>>,
    /// `--device-map-max-seq-len`: sequence length automatic device mapping plans for.
    pub device_map_max_seq_len: Option<usize>,
    /// `--device-map-max-batch-size`: batch size automatic device mapping plans for.
    pub device_map_max_batch_size: Option<usize>,
    /// `--kv-cache-tokens`: KV cache size in tokens instead of a share of GPU memory.
    pub kv_cache_tokens: Option<usize>,
    /// `--kv-tokens-per-request`: tokens a request is assumed to hold when capacity is derived
    /// from the KV cache.
    pub kv_tokens_per_request: Option<usize>,
    /// `--lora`: LoRA adapters merged into the model.
    pub lora: Vec<String>,
    /// `--xlora`: an X-LoRA model over the base.
    pub xlora: Option<String>,
    /// `--adapter-order`: mistral.rs's adapter ordering file (X-LoRA, GGUF LoRA).
    pub adapter_order: Option<PathBuf>,
    /// `--xlora-target-index`: X-LoRA's target non-granular index.
    pub xlora_target_index: Option<usize>,
    /// `--draft-model`: a small model with the same tokenizer drafting tokens.
    pub draft_model: Option<String>,
    /// `--draft-gguf-file`: GGUF file(s) of a Hugging Face draft repository.
    pub draft_gguf_files: Vec<String>,
    /// `--speculative-gamma`: tokens drafted per step.
    pub speculative_gamma: Option<usize>,
}

impl ModelOptions {
    /// The options only a GPU can honour that are set, by flag name.
    pub fn gpu_only_flags(&self) -> Vec<&'static str> {
        let mut flags = Vec::new();
        if self.gpu.is_some() {
            flags.push("--gpu");
        }
        if self.device_layers.is_some() {
            flags.push("--device-layers");
        }
        if self.device_map_max_seq_len.is_some() {
            flags.push("--device-map-max-seq-len");
        }
        if self.device_map_max_batch_size.is_some() {
            flags.push("--device-map-max-batch-size");
        }
        if self.kv_cache_tokens.is_some() {
            flags.push("--kv-cache-tokens");
        }
        flags
    }
}

/// Repeating layers on one GPU (`ORDINAL:LAYERS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceLayers {
    pub ordinal: usize,
    pub layers: usize,
}

/// Parses `--device-layers`: `ORDINAL:LAYERS` pairs separated by `;` (or `,`), as mistral.rs's
/// `--num-device-layers` takes them.
pub fn parse_device_layers(spec: &str) -> Result<Vec<DeviceLayers>, String> {
    let mut out = Vec::new();
    for part in spec
        .split([';', ','])
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        let (ordinal, layers) = part
            .split_once(':')
            .ok_or_else(|| format!("`{part}` is not ORDINAL:LAYERS (e.g. 0:16;1:16)"))?;
        let ordinal = ordinal
            .trim()
            .parse()
            .map_err(|_| format!("`{ordinal}` in `{part}` is not a GPU ordinal"))?;
        let layers = layers
            .trim()
            .parse()
            .map_err(|_| format!("`{layers}` in `{part}` is not a number of layers"))?;
        if out.iter().any(|d: &DeviceLayers| d.ordinal == ordinal) {
            return Err(format!("GPU {ordinal} is named twice"));
        }
        out.push(DeviceLayers { ordinal, layers });
    }
    if out.is_empty() {
        return Err("give ORDINAL:LAYERS pairs, e.g. 0:16;1:16".into());
    }
    Ok(out)
}

/// Parses `--isq` with mistral.rs's own parser (numbers are bit widths, resolved as on CUDA and
/// CPU: `4` is Q4K).
pub fn parse_isq(value: &str) -> Result<IsqType, String> {
    parse_isq_value(value.trim(), None).map_err(|e| format!("--isq {value}: {e}"))
}

/// Reads an `--adapter-order` file (mistral.rs's `Ordering`: `order`, `layers`,
/// `base_model_id`, `preload_adapters`).
pub fn read_adapter_order(path: &Path) -> anyhow::Result<Ordering> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading --adapter-order {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| {
        format!(
            "--adapter-order {} is not a mistral.rs adapter ordering file (JSON with `order`, `layers`, `base_model_id`)",
            path.display()
        )
    })
}

/// Where an engine's weights come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Weights {
    /// GGUF files: `GGUFLoaderBuilder`.
    Gguf {
        model_id: String,
        files: Vec<String>,
        hub: bool,
    },
    /// A safetensors model: `AutoLoaderBuilder` (text, vision or embedding, from its config).
    Safetensors { model_id: String, hub: bool },
}

impl Weights {
    fn of(source: &Source) -> Self {
        match source {
            Source::LocalGguf { dir, files } => Weights::Gguf {
                model_id: dir.display().to_string(),
                files: files.clone(),
                hub: false,
            },
            Source::HubGguf { repo, files } => Weights::Gguf {
                model_id: repo.clone(),
                files: files.clone(),
                hub: true,
            },
            Source::LocalDir(dir) => Weights::Safetensors {
                model_id: dir.display().to_string(),
                hub: false,
            },
            Source::Hub(repo) => Weights::Safetensors {
                model_id: repo.clone(),
                hub: true,
            },
        }
    }

    /// Whether these are GGUF files.
    pub fn is_gguf(&self) -> bool {
        matches!(self, Weights::Gguf { .. })
    }

    /// Whether anything comes from the Hugging Face hub (a token may be needed).
    pub fn hub(&self) -> bool {
        match self {
            Weights::Gguf { hub, .. } | Weights::Safetensors { hub, .. } => *hub,
        }
    }
}

/// Adapters over the base weights.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Adapter {
    None,
    /// LoRA adapters merged at load (safetensors base): `with_lora(adapters)`.
    Lora(Vec<String>),
    /// A LoRA adapter repository with its ordering (GGUF base): `with_lora(adapter, order)`.
    GgufLora {
        adapter: String,
        order: PathBuf,
    },
    /// An X-LoRA model: `with_xlora(model, order, false, target_index)`.
    XLora {
        model: String,
        order: PathBuf,
        target_index: Option<usize>,
    },
}

/// Where the engine computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DevicePlan {
    Cpu,
    /// CUDA, with `ordinal` as the base device (embeddings, head, unmapped layers).
    Gpu {
        ordinal: usize,
    },
}

/// How layers are placed on devices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceMapPlan {
    /// `DeviceMapSetting::Auto(AutoDeviceMapParams::Text { .. })`: mistral.rs spreads the layers
    /// over the visible GPUs (then the CPU) as they fit. On a CPU everything stays on the CPU.
    Auto {
        max_seq_len: usize,
        max_batch_size: usize,
    },
    /// `DeviceMapSetting::Map(DeviceMapMetadata::from_num_device_layers(..))`.
    Layers(Vec<DeviceLayers>),
    /// `DeviceMapSetting::Map(DeviceMapMetadata::dummy())`: the whole model on the base device.
    Whole,
}

/// The KV cache of a GPU engine (PagedAttention).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum KvCachePlan {
    /// `MemoryGpuConfig::Utilization`.
    Utilization(f32),
    /// `MemoryGpuConfig::ContextSize`.
    Tokens(usize),
}

/// Requests the engine runs at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqsPlan {
    /// As configured (or the default where nothing else can be known).
    Fixed(usize),
    /// From the PagedAttention cache reserved at load: its tokens over `tokens_per_request`, at
    /// most [`MAX_DERIVED_SEQS`]; `fallback` if mistral.rs did not page this model.
    FromKvCache {
        tokens_per_request: usize,
        fallback: usize,
    },
}

/// A speculative engine's draft model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DraftPlan {
    pub weights: Weights,
    pub gamma: usize,
}

/// How one engine is loaded: every mistral.rs setting, decided.
#[derive(Debug, Clone, PartialEq)]
pub struct EnginePlan {
    /// The model id advertised and routed by.
    pub id: String,
    pub weights: Weights,
    pub adapter: Adapter,
    pub draft: Option<DraftPlan>,
    /// A `.json`/`.jinja` chat template path overriding the model's.
    pub chat_template: Option<String>,
    pub device: DevicePlan,
    /// F32 activations on a CPU (x86 has no F16/BF16 arithmetic); the model's own on a GPU.
    pub f32: bool,
    pub device_map: DeviceMapPlan,
    pub isq: Option<IsqType>,
    /// PagedAttention and its size; `None` on a CPU and for speculative engines.
    pub kv_cache: Option<KvCachePlan>,
    pub seqs: SeqsPlan,
}

/// Whether mistral.rs's `SpeculativePipeline` can run. In 0.8.1 it cannot: in its `step`, the
/// loop that runs the draft model locks the draft pipeline for `get_metadata().sliding_window`
/// and again for `device_mapper()` within one statement (`pipeline/speculative.rs`), so the
/// second lock (`get_mut_arcmutex!`, a `try_lock` spin) never succeeds and the engine thread
/// spins forever on its first step: the warm-up request at load, so the worker never becomes
/// ready (seen on a CPU; the code path is the same on a GPU). Earlier versions passed `None` for
/// the sliding window there. `--draft-model` is refused until a mistral.rs without the double
/// lock is used; the plan and the build for it stay (tested through [`plan_for`]).
pub const SPECULATIVE_DECODING_WORKS: bool = false;

/// The plan for `spec`, whose weights are `target` (and draft weights `draft`), on a CPU
/// (`on_cpu`) or a GPU. Pure: sources are resolved by the caller.
pub fn plan(
    spec: &ModelSpec,
    target: &Source,
    draft: Option<&Source>,
    on_cpu: bool,
) -> anyhow::Result<EnginePlan> {
    plan_for(spec, target, draft, on_cpu, SPECULATIVE_DECODING_WORKS)
}

/// [`plan`], with speculative decoding allowed or not.
fn plan_for(
    spec: &ModelSpec,
    target: &Source,
    draft: Option<&Source>,
    on_cpu: bool,
    speculative: bool,
) -> anyhow::Result<EnginePlan> {
    let options = &spec.options;
    let weights = Weights::of(target);
    let gpu_only = options.gpu_only_flags();
    if on_cpu && !gpu_only.is_empty() {
        bail!(
            "{} {} a GPU: this worker computes on the CPU ({})",
            gpu_only.join(", "),
            if gpu_only.len() == 1 { "needs" } else { "need" },
            if cfg!(feature = "cuda") {
                "--cpu, or no CUDA device found"
            } else {
                "built without the cuda feature"
            }
        );
    }
    if options.gpu.is_some() && options.device_layers.is_some() {
        bail!(
            "give --gpu (the whole model on one GPU) or --device-layers (layers per GPU), not both"
        );
    }
    if options.device_layers.is_some()
        && (options.device_map_max_seq_len.is_some() || options.device_map_max_batch_size.is_some())
    {
        bail!("--device-map-max-seq-len and --device-map-max-batch-size size automatic device mapping; --device-layers maps by hand");
    }
    let isq = match &options.isq {
        Some(value) if weights.is_gguf() => bail!(
            "--isq {value}: `{}` is GGUF, already quantized; in-situ quantization applies to safetensors models (choose another GGUF file to change the quantization)",
            spec.model
        ),
        Some(value) => Some(parse_isq(value).map_err(anyhow::Error::msg)?),
        None => None,
    };
    let adapter = adapter(spec, &weights)?;
    let draft = match (&options.draft_model, draft) {
        (Some(_), Some(source)) => Some(DraftPlan {
            weights: Weights::of(source),
            gamma: options
                .speculative_gamma
                .unwrap_or(DEFAULT_SPECULATIVE_GAMMA),
        }),
        (Some(model), None) => bail!("the draft model `{model}` was not resolved"),
        (None, _) if options.speculative_gamma.is_some() => {
            bail!("--speculative-gamma needs --draft-model")
        }
        (None, _) if !options.draft_gguf_files.is_empty() => {
            bail!("--draft-gguf-file needs --draft-model")
        }
        (None, _) => None,
    };
    if draft.is_some() && !speculative {
        bail!(
            "--draft-model: speculative decoding is not available with mistral.rs 0.8.1, whose speculative pipeline deadlocks on its first step (it locks the draft model twice in one statement); serve the model without a draft"
        );
    }
    if draft.as_ref().is_some_and(|d| d.gamma == 0) {
        bail!("--speculative-gamma must be at least 1");
    }
    if draft.is_some() && !matches!(adapter, Adapter::None) {
        bail!("speculative decoding (--draft-model) and adapters (--lora, --xlora) cannot be combined on one model");
    }
    if draft.is_some() && options.kv_cache_tokens.is_some() {
        bail!("--kv-cache-tokens sizes PagedAttention, which mistral.rs's speculative decoding does not use");
    }
    if spec.max_seqs == Some(0) {
        bail!("--max-seqs must be at least 1");
    }
    if options.kv_tokens_per_request == Some(0) {
        bail!("--kv-tokens-per-request must be at least 1");
    }
    if options.kv_cache_tokens == Some(0) {
        bail!("--kv-cache-tokens must be at least 1");
    }
    if !(spec.gpu_memory_utilization > 0.0 && spec.gpu_memory_utilization <= 1.0) {
        bail!("--gpu-memory-utilization must be greater than 0 and at most 1");
    }
    let id = spec
        .name
        .clone()
        .unwrap_or_else(|| default_id(target, &adapter));
    let device = if on_cpu {
        DevicePlan::Cpu
    } else {
        DevicePlan::Gpu {
            ordinal: options.gpu.unwrap_or(0),
        }
    };
    let device_map = match (&options.device_layers, options.gpu) {
        (Some(layers), _) => DeviceMapPlan::Layers(layers.clone()),
        (None, Some(_)) => DeviceMapPlan::Whole,
        (None, None) => DeviceMapPlan::Auto {
            max_seq_len: options
                .device_map_max_seq_len
                .unwrap_or(DEFAULT_MAP_SEQ_LEN),
            max_batch_size: options
                .device_map_max_batch_size
                .unwrap_or(DEFAULT_MAP_BATCH_SIZE),
        },
    };
    let kv_cache = match (on_cpu, &draft) {
        (true, _) | (false, Some(_)) => None,
        (false, None) => Some(match options.kv_cache_tokens {
            Some(tokens) => KvCachePlan::Tokens(tokens),
            None => KvCachePlan::Utilization(spec.gpu_memory_utilization),
        }),
    };
    let seqs = match (spec.max_seqs, on_cpu, kv_cache.is_some()) {
        (Some(n), _, _) => SeqsPlan::Fixed(n),
        (None, true, _) => SeqsPlan::Fixed(DEFAULT_CPU_MAX_SEQS),
        (None, false, false) => SeqsPlan::Fixed(DEFAULT_GPU_MAX_SEQS),
        (None, false, true) => SeqsPlan::FromKvCache {
            tokens_per_request: options
                .kv_tokens_per_request
                .unwrap_or(DEFAULT_KV_TOKENS_PER_REQUEST),
            fallback: DEFAULT_GPU_MAX_SEQS,
        },
    };
    Ok(EnginePlan {
        id,
        weights,
        adapter,
        draft,
        chat_template: spec.chat_template.as_ref().map(|p| p.display().to_string()),
        device,
        f32: on_cpu,
        device_map,
        isq,
        kv_cache,
        seqs,
    })
}

/// Checks every model's options before anything starts, so a mistake fails in milliseconds
/// rather than after joining the cluster or loading another model first: flag combinations (with
/// the device this build and `--cpu` allow), adapter ordering files, chat template kinds, and that
/// no two models share an id. Models whose weights cannot be found are left to fail at load with
/// their own message.
pub fn check(specs: &[ModelSpec], force_cpu: bool) -> anyhow::Result<()> {
    let on_cpu = force_cpu || !cfg!(feature = "cuda");
    let mut ids: Vec<String> = Vec::new();
    for spec in specs {
        let context = || format!("model `{}`", spec.name.as_deref().unwrap_or(&spec.model));
        if let Some(template) = &spec.chat_template {
            // mistral.rs panics on any other extension.
            let name = template.to_string_lossy();
            if !(name.ends_with(".json") || name.ends_with(".jinja")) {
                bail!(
                    "{}: --chat-template {name} must be a .json or .jinja file (mistral.rs reads the kind from the extension)",
                    context()
                );
            }
        }
        if let Some(order) = &spec.options.adapter_order {
            read_adapter_order(order).with_context(context)?;
        }
        let target = source::resolve(&spec.model, &spec.gguf_files);
        let draft = spec
            .options
            .draft_model
            .as_ref()
            .map(|d| source::resolve(d, &spec.options.draft_gguf_files))
            .transpose();
        let (Ok(target), Ok(draft)) = (target, draft) else {
            continue;
        };
        let planned = plan(spec, &target, draft.as_ref(), on_cpu).with_context(context)?;
        if ids.contains(&planned.id) {
            bail!(
                "two models are served as `{}`: give each --model its own --model-name",
                planned.id
            );
        }
        ids.push(planned.id);
    }
    Ok(())
}

/// mistral.rs's `AutoDeviceMapParams::DEFAULT_MAX_SEQ_LEN`.
const DEFAULT_MAP_SEQ_LEN: usize = 4096;
/// mistral.rs's `AutoDeviceMapParams::DEFAULT_MAX_BATCH_SIZE`.
const DEFAULT_MAP_BATCH_SIZE: usize = 1;

fn adapter(spec: &ModelSpec, weights: &Weights) -> anyhow::Result<Adapter> {
    let options = &spec.options;
    match (&options.xlora, options.lora.as_slice()) {
        (Some(_), [_, ..]) => bail!("give --lora or --xlora for one model, not both"),
        (Some(model), []) => {
            let Some(order) = &options.adapter_order else {
                bail!("--xlora {model} needs --adapter-order (the X-LoRA ordering file)");
            };
            Ok(Adapter::XLora {
                model: model.clone(),
                order: order.clone(),
                target_index: options.xlora_target_index,
            })
        }
        (None, []) => {
            if options.adapter_order.is_some() {
                bail!("--adapter-order goes with --xlora, or with --lora on a GGUF model");
            }
            if options.xlora_target_index.is_some() {
                bail!("--xlora-target-index needs --xlora");
            }
            Ok(Adapter::None)
        }
        (None, adapters) => {
            if options.xlora_target_index.is_some() {
                bail!("--xlora-target-index needs --xlora");
            }
            if !weights.is_gguf() {
                if options.adapter_order.is_some() {
                    bail!("--adapter-order is for X-LoRA and GGUF LoRA models; LoRA adapters of a safetensors model need none");
                }
                return Ok(Adapter::Lora(adapters.to_vec()));
            }
            let ([adapter], Some(order)) = (adapters, &options.adapter_order) else {
                bail!(
                    "`{}` is GGUF: mistral.rs takes LoRA on GGUF models as one adapter repository with an --adapter-order file",
                    spec.model
                );
            };
            Ok(Adapter::GgufLora {
                adapter: adapter.clone(),
                order: order.clone(),
            })
        }
    }
}

/// The id of a model nobody named: the base's (see [`source::default_model_id`]), with the
/// adapter's last path component after a colon (`SmolLM2-135M:sql-lora`).
fn default_id(source: &Source, adapter: &Adapter) -> String {
    let base = source::default_model_id(source);
    let adapter_name = match adapter {
        Adapter::None => return base,
        Adapter::Lora(adapters) => adapters
            .iter()
            .map(|a| last_component(a))
            .collect::<Vec<_>>()
            .join("+"),
        Adapter::GgufLora { adapter, .. } => last_component(adapter),
        Adapter::XLora { model, .. } => last_component(model),
    };
    format!("{base}:{adapter_name}")
}

fn last_component(id: &str) -> String {
    id.trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(id)
        .to_string()
}

/// The engine's scheduler limit and advertised capacity, from the plan and, for a PagedAttention
/// engine, the cache mistral.rs reserved (`block_size` tokens per block, `blocks` blocks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    /// `max_num_seqs` of the scheduler.
    pub max_seqs: usize,
    /// Tokens the KV cache holds, when mistral.rs paged it.
    pub kv_tokens: Option<usize>,
}

/// See [`Capacity`]: a configured `--max-seqs` is kept; otherwise a paged engine runs as many
/// requests as its cache holds at `tokens_per_request` each (1 to [`MAX_DERIVED_SEQS`]).
pub fn capacity(seqs: SeqsPlan, cache: Option<(usize, usize)>) -> Capacity {
    let kv_tokens = cache.map(|(block_size, blocks)| block_size.saturating_mul(blocks));
    let max_seqs = match (seqs, kv_tokens) {
        (SeqsPlan::Fixed(n), _) => n,
        (
            SeqsPlan::FromKvCache {
                tokens_per_request, ..
            },
            Some(tokens),
        ) => (tokens / tokens_per_request.max(1)).clamp(1, MAX_DERIVED_SEQS),
        (SeqsPlan::FromKvCache { fallback, .. }, None) => fallback,
    };
    Capacity {
        max_seqs,
        kv_tokens,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gguf() -> Source {
        Source::LocalGguf {
            dir: PathBuf::from("models"),
            files: vec!["m.Q4_1.gguf".into()],
        }
    }

    fn safetensors() -> Source {
        Source::LocalDir(PathBuf::from("/models/Qwen3-4B"))
    }

    fn spec() -> ModelSpec {
        ModelSpec::new("models/m.Q4_1.gguf")
    }

    fn with(options: ModelOptions) -> ModelSpec {
        ModelSpec { options, ..spec() }
    }

    fn refused(spec: &ModelSpec, source: &Source, on_cpu: bool, expected: &str) {
        let err = plan(spec, source, None, on_cpu).expect_err(expected);
        assert!(err.to_string().contains(expected), "{err}");
    }

    #[test]
    fn a_plain_gguf_on_a_cpu_and_on_a_gpu() {
        let cpu = plan(&spec(), &gguf(), None, true).expect("plan");
        assert_eq!(cpu.id, "m.Q4_1");
        assert_eq!(cpu.device, DevicePlan::Cpu);
        assert!(cpu.f32);
        assert_eq!(cpu.kv_cache, None);
        assert_eq!(cpu.seqs, SeqsPlan::Fixed(DEFAULT_CPU_MAX_SEQS));
        assert_eq!(cpu.isq, None);
        assert_eq!(cpu.adapter, Adapter::None);
        let gpu = plan(&spec(), &gguf(), None, false).expect("plan");
        assert_eq!(gpu.device, DevicePlan::Gpu { ordinal: 0 });
        assert!(!gpu.f32);
        assert_eq!(
            gpu.device_map,
            DeviceMapPlan::Auto {
                max_seq_len: 4096,
                max_batch_size: 1
            }
        );
        assert_eq!(
            gpu.kv_cache,
            Some(KvCachePlan::Utilization(DEFAULT_GPU_MEMORY_UTILIZATION))
        );
        assert_eq!(
            gpu.seqs,
            SeqsPlan::FromKvCache {
                tokens_per_request: DEFAULT_KV_TOKENS_PER_REQUEST,
                fallback: DEFAULT_GPU_MAX_SEQS
            }
        );
        let named = ModelSpec {
            name: Some("chat".into()),
            max_seqs: Some(3),
            gpu_memory_utilization: 0.5,
            ..spec()
        };
        let gpu = plan(&named, &gguf(), None, false).expect("plan");
        assert_eq!(gpu.id, "chat");
        assert_eq!(gpu.seqs, SeqsPlan::Fixed(3));
        assert_eq!(gpu.kv_cache, Some(KvCachePlan::Utilization(0.5)));
    }

    #[test]
    fn isq_quantizes_safetensors_and_refuses_gguf() {
        let options = ModelOptions {
            isq: Some("Q4K".into()),
            ..Default::default()
        };
        let plan_ = plan(&with(options.clone()), &safetensors(), None, false).expect("plan");
        assert_eq!(plan_.isq, Some(IsqType::Q4K));
        assert!(!plan_.weights.is_gguf());
        for (value, expected) in [
            ("q8_0", IsqType::Q8_0),
            ("Q6K", IsqType::Q6K),
            ("hqq4", IsqType::HQQ4),
            ("4", IsqType::Q4K),
            ("8", IsqType::Q8_0),
        ] {
            assert_eq!(parse_isq(value), Ok(expected), "{value}");
        }
        assert!(parse_isq("Q9K").is_err());
        refused(&with(options), &gguf(), true, "is GGUF, already quantized");
    }

    #[test]
    fn gpu_options_map_layers_and_refuse_a_cpu() {
        let layers = parse_device_layers("0:16;1:12").expect("spec");
        assert_eq!(
            layers,
            [
                DeviceLayers {
                    ordinal: 0,
                    layers: 16
                },
                DeviceLayers {
                    ordinal: 1,
                    layers: 12
                }
            ]
        );
        assert_eq!(parse_device_layers("0:4, 1:4").expect("commas").len(), 2);
        for bad in ["", "0", "a:1", "0:x", "0:1;0:2"] {
            assert!(parse_device_layers(bad).is_err(), "{bad}");
        }
        let mapped = plan(
            &with(ModelOptions {
                device_layers: Some(layers.clone()),
                ..Default::default()
            }),
            &safetensors(),
            None,
            false,
        )
        .expect("plan");
        assert_eq!(mapped.device_map, DeviceMapPlan::Layers(layers.clone()));
        let pinned = plan(
            &with(ModelOptions {
                gpu: Some(1),
                kv_cache_tokens: Some(65_536),
                ..Default::default()
            }),
            &gguf(),
            None,
            false,
        )
        .expect("plan");
        assert_eq!(pinned.device, DevicePlan::Gpu { ordinal: 1 });
        assert_eq!(pinned.device_map, DeviceMapPlan::Whole);
        assert_eq!(pinned.kv_cache, Some(KvCachePlan::Tokens(65_536)));
        let sized = plan(
            &with(ModelOptions {
                device_map_max_seq_len: Some(32_768),
                device_map_max_batch_size: Some(8),
                ..Default::default()
            }),
            &gguf(),
            None,
            false,
        )
        .expect("plan");
        assert_eq!(
            sized.device_map,
            DeviceMapPlan::Auto {
                max_seq_len: 32_768,
                max_batch_size: 8
            }
        );
        refused(
            &with(ModelOptions {
                gpu: Some(0),
                kv_cache_tokens: Some(10),
                ..Default::default()
            }),
            &gguf(),
            true,
            "--gpu, --kv-cache-tokens need a GPU",
        );
        refused(
            &with(ModelOptions {
                gpu: Some(0),
                device_layers: Some(layers.clone()),
                ..Default::default()
            }),
            &gguf(),
            false,
            "not both",
        );
        refused(
            &with(ModelOptions {
                device_layers: Some(layers),
                device_map_max_seq_len: Some(8192),
                ..Default::default()
            }),
            &gguf(),
            false,
            "maps by hand",
        );
    }

    #[test]
    fn adapters_become_their_own_models() {
        let lora = with(ModelOptions {
            lora: vec!["org/sql-lora".into(), "/adapters/style/".into()],
            ..Default::default()
        });
        let planned = plan(&lora, &safetensors(), None, true).expect("plan");
        assert_eq!(
            planned.adapter,
            Adapter::Lora(vec!["org/sql-lora".into(), "/adapters/style/".into()])
        );
        assert_eq!(planned.id, "Qwen3-4B:sql-lora+style");
        let gguf_lora = with(ModelOptions {
            lora: vec!["org/lora".into()],
            adapter_order: Some("order.json".into()),
            ..Default::default()
        });
        let planned = plan(&gguf_lora, &gguf(), None, true).expect("plan");
        assert_eq!(
            planned.adapter,
            Adapter::GgufLora {
                adapter: "org/lora".into(),
                order: "order.json".into()
            }
        );
        assert_eq!(planned.id, "m.Q4_1:lora");
        let xlora = ModelSpec {
            name: Some("mix".into()),
            ..with(ModelOptions {
                xlora: Some("org/xlora".into()),
                adapter_order: Some("order.json".into()),
                xlora_target_index: Some(2),
                ..Default::default()
            })
        };
        let planned = plan(&xlora, &gguf(), None, false).expect("plan");
        assert_eq!(planned.id, "mix");
        assert_eq!(
            planned.adapter,
            Adapter::XLora {
                model: "org/xlora".into(),
                order: "order.json".into(),
                target_index: Some(2)
            }
        );
        let cases = [
            (
                ModelOptions {
                    lora: vec!["a".into()],
                    ..Default::default()
                },
                gguf(),
                "one adapter repository with an --adapter-order",
            ),
            (
                ModelOptions {
                    xlora: Some("x".into()),
                    ..Default::default()
                },
                safetensors(),
                "needs --adapter-order",
            ),
            (
                ModelOptions {
                    xlora: Some("x".into()),
                    lora: vec!["a".into()],
                    ..Default::default()
                },
                safetensors(),
                "not both",
            ),
            (
                ModelOptions {
                    adapter_order: Some("o.json".into()),
                    ..Default::default()
                },
                safetensors(),
                "--adapter-order goes with",
            ),
            (
                ModelOptions {
                    lora: vec!["a".into()],
                    adapter_order: Some("o.json".into()),
                    ..Default::default()
                },
                safetensors(),
                "need none",
            ),
        ];
        for (options, source, expected) in cases {
            refused(&with(options), &source, true, expected);
        }
    }

    #[test]
    fn a_draft_model_makes_a_speculative_engine_without_paging() {
        let options = ModelOptions {
            draft_model: Some("models/small.gguf".into()),
            speculative_gamma: Some(5),
            ..Default::default()
        };
        let draft = Source::HubGguf {
            repo: "org/small-GGUF".into(),
            files: vec!["small.Q8_0.gguf".into()],
        };
        let planned =
            plan_for(&with(options.clone()), &gguf(), Some(&draft), false, true).expect("plan");
        assert_eq!(
            planned.draft,
            Some(DraftPlan {
                weights: Weights::Gguf {
                    model_id: "org/small-GGUF".into(),
                    files: vec!["small.Q8_0.gguf".into()],
                    hub: true
                },
                gamma: 5
            })
        );
        assert_eq!(planned.kv_cache, None, "speculative decoding does not page");
        assert_eq!(planned.seqs, SeqsPlan::Fixed(DEFAULT_GPU_MAX_SEQS));
        let default_gamma = ModelOptions {
            speculative_gamma: None,
            ..options.clone()
        };
        let planned =
            plan_for(&with(default_gamma), &gguf(), Some(&draft), true, true).expect("plan");
        assert_eq!(
            planned.draft.map(|d| d.gamma),
            Some(DEFAULT_SPECULATIVE_GAMMA)
        );
        let err = plan(
            &with(ModelOptions {
                speculative_gamma: Some(4),
                ..Default::default()
            }),
            &gguf(),
            None,
            true,
        )
        .expect_err("gamma alone");
        assert!(err.to_string().contains("needs --draft-model"), "{err}");
        let zero = ModelOptions {
            speculative_gamma: Some(0),
            ..options.clone()
        };
        let err = plan_for(&with(zero), &gguf(), Some(&draft), true, true).expect_err("zero");
        assert!(err.to_string().contains("at least 1"), "{err}");
        let with_lora = ModelOptions {
            lora: vec!["org/lora".into()],
            ..options.clone()
        };
        let err =
            plan_for(&with(with_lora), &safetensors(), Some(&draft), true, true).expect_err("both");
        assert!(err.to_string().contains("cannot be combined"), "{err}");
        // Until mistral.rs's speculative pipeline stops deadlocking, a draft model is refused.
        let err = plan(&with(options), &gguf(), Some(&draft), false).expect_err("refused");
        assert!(
            err.to_string().contains("deadlocks on its first step"),
            "{err}"
        );
    }

    #[test]
    fn capacity_comes_from_the_reserved_kv_cache() {
        let derived = SeqsPlan::FromKvCache {
            tokens_per_request: 4096,
            fallback: 32,
        };
        // 8192 blocks of 32 tokens: 262,144 tokens, 64 requests of 4096.
        assert_eq!(
            capacity(derived, Some((32, 8192))),
            Capacity {
                max_seqs: 64,
                kv_tokens: Some(262_144)
            }
        );
        // A cache smaller than one request still runs one.
        assert_eq!(capacity(derived, Some((32, 10))).max_seqs, 1);
        // A huge cache is capped.
        assert_eq!(
            capacity(derived, Some((32, 10_000_000))).max_seqs,
            MAX_DERIVED_SEQS
        );
        // Not paged after all: the fallback.
        assert_eq!(
            capacity(derived, None),
            Capacity {
                max_seqs: 32,
                kv_tokens: None
            }
        );
        // A configured --max-seqs wins over the cache.
        assert_eq!(
            capacity(SeqsPlan::Fixed(5), Some((32, 8192))),
            Capacity {
                max_seqs: 5,
                kv_tokens: Some(262_144)
            }
        );
    }

    #[test]
    fn models_are_checked_together() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("Tiny.Q4_1.gguf");
        std::fs::write(&file, b"x").expect("write");
        let file = file.display().to_string();
        let one = ModelSpec::new(file.clone());
        check(std::slice::from_ref(&one), true).expect("one model");
        let err = check(&[one.clone(), one.clone()], true).expect_err("same id");
        assert!(
            err.to_string()
                .contains("two models are served as `Tiny.Q4_1`"),
            "{err}"
        );
        let other = ModelSpec {
            name: Some("second".into()),
            ..one.clone()
        };
        check(&[one.clone(), other.clone()], true).expect("two ids");
        let quantized = ModelSpec {
            options: ModelOptions {
                isq: Some("Q4K".into()),
                ..Default::default()
            },
            ..other.clone()
        };
        let err = check(&[one.clone(), quantized], true).expect_err("isq on gguf");
        assert!(
            format!("{err:#}").starts_with("model `second`: --isq Q4K"),
            "{err:#}"
        );
        let template = ModelSpec {
            chat_template: Some("t.txt".into()),
            ..other
        };
        let err = check(&[template], true).expect_err("template");
        assert!(
            err.to_string().contains("must be a .json or .jinja"),
            "{err}"
        );
        // Not found: left to the load, which says so.
        check(&[ModelSpec::new("/nonexistent/m.gguf")], true).expect("unresolved");
    }

    #[test]
    fn adapter_order_files_are_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let good = dir.path().join("order.json");
        std::fs::write(
            &good,
            r#"{"order": ["a", "b"], "layers": {"0": 0}, "base_model_id": "org/base"}"#,
        )
        .expect("write");
        let order = read_adapter_order(&good).expect("parses");
        assert_eq!(order.base_model_id, "org/base");
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, "{}").expect("write");
        let err = read_adapter_order(&bad).expect_err("no base model");
        assert!(
            err.to_string()
                .contains("not a mistral.rs adapter ordering"),
            "{err}"
        );
        assert!(read_adapter_order(&dir.path().join("missing.json")).is_err());
    }
}
