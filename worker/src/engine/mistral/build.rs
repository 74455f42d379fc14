//! Carrying out an [`EnginePlan`]: mistral.rs's loaders, one level below its model builders.
//!
//! The builders (`GgufModelBuilder`, `ModelBuilder`, `LoraModelBuilder`, `TextSpeculativeBuilder`,
//! ...) each cover one combination and hide what the engine reserved. Below them every option is
//! reachable on one path: a `Loader` (`GGUFLoaderBuilder` or `AutoLoaderBuilder`, with LoRA or
//! X-LoRA), `Loader::load_model_from_hf` with the device, dtype, device map, ISQ type and
//! PagedAttention settings, a `SpeculativePipeline` over two pipelines when there is a draft, then
//! the scheduler and `MistralRsBuilder` as the builders set them up (prefix cache of 16
//! sequences). Reading the pipeline's metadata before the scheduler is made gives the KV cache
//! mistral.rs actually reserved, from which capacity is sized ([`options::capacity`]).
//!
//! Each pipeline loads on a thread of its own that ends with the load. mistral.rs keeps load
//! state in thread-locals it never clears (the LoRA adapters to merge, the immediate-ISQ type):
//! loaded on a shared thread, a second model would get the first one's adapters merged into its
//! weights, or be quantized like it.

use std::num::NonZeroUsize;
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context as _};
use mistralrs::core::{
    paged_attn_supported, AutoDeviceMapParams, AutoLoaderBuilder, DefaultSchedulerMethod,
    DeviceLayerMapMetadata, DeviceMapMetadata, DeviceMapSetting, EmbeddingSpecificConfig,
    GGUFLoaderBuilder, GGUFSpecificConfig, Loader, MemoryGpuConfig, MistralRsBuilder, ModelDType,
    MultimodalSpecificConfig, NormalSpecificConfig, PagedAttentionConfig, PagedCacheType, Pipeline,
    SchedulerConfig, SpeculativeConfig, SpeculativePipeline, TokenSource,
};
use mistralrs::{Device, Model};
use tokio::sync::Mutex;
use tracing::info;

use super::adapters;
use super::options::{
    self, Adapter, Capacity, DeviceMapPlan, DevicePlan, EnginePlan, KvCachePlan, Weights,
};

/// Sequences the prefix cache keeps (the builders' default): a new prompt that extends a cached
/// one (the next turn of a chat, a shared system prompt) only computes what is new.
const PREFIX_CACHE_SEQUENCES: usize = 16;

/// A loaded engine and what it reserved.
pub struct Built {
    pub model: Model,
    pub capacity: Capacity,
}

type LoadedPipeline = Arc<Mutex<dyn Pipeline + Send + Sync>>;

/// Loads the model as `plan` says.
pub async fn build(plan: &EnginePlan) -> anyhow::Result<Built> {
    let adapter = stage_local_adapters(&plan.adapter)?;
    let target = load_pipeline(plan, plan.weights.clone(), adapter)
        .await
        .context("loading the model")?;
    let pipeline: Arc<Mutex<dyn Pipeline>> = match &plan.draft {
        None => target,
        Some(draft) => {
            let draft_pipeline = load_pipeline(plan, draft.weights.clone(), Adapter::None)
                .await
                .context("loading the draft model")?;
            info!(
                gamma = draft.gamma,
                "speculative decoding with a draft model"
            );
            let speculative = SpeculativePipeline::new(
                target,
                draft_pipeline,
                SpeculativeConfig { gamma: draft.gamma },
            )
            .context("pairing the model with its draft")?;
            Arc::new(Mutex::new(speculative))
        }
    };
    let cache_config = pipeline.lock().await.get_metadata().cache_config.clone();
    let capacity = options::capacity(
        plan.seqs,
        cache_config
            .as_ref()
            .map(|cache| (cache.block_size, cache.num_gpu_blocks)),
    );
    info!(
        model = %plan.id,
        max_seqs = capacity.max_seqs,
        kv_cache_tokens = capacity.kv_tokens,
        "engine capacity"
    );
    let scheduler = match (plan.kv_cache.is_some(), cache_config) {
        (true, Some(config)) => SchedulerConfig::PagedAttentionMeta {
            max_num_seqs: capacity.max_seqs,
            config,
        },
        _ => SchedulerConfig::DefaultScheduler {
            method: DefaultSchedulerMethod::Fixed(
                NonZeroUsize::new(capacity.max_seqs).context("max_seqs must be at least 1")?,
            ),
        },
    };
    let runner = MistralRsBuilder::new(pipeline, scheduler, false, None)
        .with_no_kv_cache(false)
        .with_no_prefix_cache(false)
        .with_prefix_cache_n(PREFIX_CACHE_SEQUENCES)
        .build()
        .await;
    Ok(Built {
        model: Model::new(runner),
        capacity,
    })
}

/// Links local LoRA adapter directories into the Hugging Face cache (see [`adapters`]).
fn stage_local_adapters(adapter: &Adapter) -> anyhow::Result<Adapter> {
    if let Adapter::Lora(ids) = adapter {
        let local: Vec<&String> = ids.iter().filter(|id| Path::new(id).is_dir()).collect();
        if !local.is_empty() {
            let Some(cache) = mistralrs::core::hf_hub_cache_dir() else {
                bail!("no Hugging Face cache directory (set HF_HOME) to read local LoRA adapters through");
            };
            for id in local {
                adapters::stage(Path::new(id), id, &cache)?;
            }
        }
    }
    Ok(adapter.clone())
}

/// Loads one pipeline on a thread of its own (see the module documentation).
async fn load_pipeline(
    plan: &EnginePlan,
    weights: Weights,
    adapter: Adapter,
) -> anyhow::Result<LoadedPipeline> {
    let loader = loader(&weights, &adapter, plan.chat_template.clone())?;
    let token_source = if weights.hub() || adapter_from_hub(&adapter) {
        // Hub tokens come from HF_TOKEN or the Hugging Face cache, as the hub tools do.
        TokenSource::CacheToken
    } else {
        TokenSource::None
    };
    let device = match plan.device {
        DevicePlan::Cpu => Device::Cpu,
        DevicePlan::Gpu { ordinal } => {
            Device::new_cuda(ordinal).with_context(|| format!("opening CUDA device {ordinal}"))?
        }
    };
    let dtype = if plan.f32 {
        ModelDType::F32
    } else {
        ModelDType::Auto
    };
    let mapper = device_map(&plan.device_map);
    let isq = plan.isq;
    let paged_attention = match plan.kv_cache {
        Some(kv) if paged_attn_supported() => Some(PagedAttentionConfig::new(
            None,
            match kv {
                KvCachePlan::Utilization(share) => MemoryGpuConfig::Utilization(share),
                KvCachePlan::Tokens(tokens) => MemoryGpuConfig::ContextSize(tokens),
            },
            PagedCacheType::Auto,
        )?),
        _ => None,
    };
    info!(
        weights = ?weights,
        ?adapter,
        device = ?plan.device,
        ?dtype,
        device_map = ?plan.device_map,
        ?isq,
        paged_attention = paged_attention.is_some(),
        "loading pipeline"
    );
    on_own_thread(move || {
        loader.load_model_from_hf(
            None,
            token_source,
            &dtype,
            &device,
            true,
            mapper,
            isq,
            paged_attention,
        )
    })
    .await
}

/// Runs a model load on a new thread, inside the caller's runtime context.
async fn on_own_thread(
    job: impl FnOnce() -> anyhow::Result<LoadedPipeline> + Send + 'static,
) -> anyhow::Result<LoadedPipeline> {
    let runtime = tokio::runtime::Handle::current();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("model-load".into())
        .spawn(move || {
            let _runtime = runtime.enter();
            // The receiver only goes away when the worker stops loading.
            let _ = tx.send(job());
        })
        .context("starting a thread to load the model")?;
    rx.await
        .map_err(|_| anyhow::anyhow!("mistral.rs panicked while loading (see the log)"))?
}

fn adapter_from_hub(adapter: &Adapter) -> bool {
    let remote = |id: &String| !Path::new(id).exists();
    match adapter {
        Adapter::None => false,
        Adapter::Lora(ids) => ids.iter().any(remote),
        Adapter::GgufLora { adapter, .. } => remote(adapter),
        Adapter::XLora { model, .. } => remote(model),
    }
}

/// The mistral.rs device map for a plan's.
fn device_map(plan: &DeviceMapPlan) -> DeviceMapSetting {
    match plan {
        DeviceMapPlan::Auto {
            max_seq_len,
            max_batch_size,
        } => DeviceMapSetting::Auto(AutoDeviceMapParams::Text {
            max_seq_len: *max_seq_len,
            max_batch_size: *max_batch_size,
        }),
        DeviceMapPlan::Layers(layers) => {
            DeviceMapSetting::Map(DeviceMapMetadata::from_num_device_layers(
                layers
                    .iter()
                    .map(|l| DeviceLayerMapMetadata {
                        ordinal: l.ordinal,
                        layers: l.layers,
                    })
                    .collect(),
            ))
        }
        DeviceMapPlan::Whole => DeviceMapSetting::Map(DeviceMapMetadata::dummy()),
    }
}

/// The loader for `weights` with `adapter`.
fn loader(
    weights: &Weights,
    adapter: &Adapter,
    chat_template: Option<String>,
) -> anyhow::Result<Box<dyn Loader>> {
    match weights {
        Weights::Gguf {
            model_id, files, ..
        } => {
            let mut builder = GGUFLoaderBuilder::new(
                chat_template,
                None,
                model_id.clone(),
                files.clone(),
                GGUFSpecificConfig { topology: None },
                false,
                None,
            );
            match adapter {
                Adapter::None => {}
                Adapter::GgufLora { adapter, order } => {
                    builder =
                        builder.with_lora(adapter.clone(), options::read_adapter_order(order)?)
                }
                Adapter::XLora {
                    model,
                    order,
                    target_index,
                } => {
                    builder = builder.with_xlora(
                        model.clone(),
                        options::read_adapter_order(order)?,
                        false,
                        *target_index,
                    )
                }
                Adapter::Lora(_) => {
                    bail!("LoRA adapters on a GGUF model need an --adapter-order file")
                }
            }
            Ok(builder.build())
        }
        Weights::Safetensors { model_id, .. } => {
            let mut builder = AutoLoaderBuilder::new(
                NormalSpecificConfig::default(),
                MultimodalSpecificConfig::default(),
                EmbeddingSpecificConfig::default(),
                chat_template,
                None,
                model_id.clone(),
                false,
                None,
            );
            match adapter {
                Adapter::None => {}
                Adapter::Lora(ids) => builder = builder.with_lora(ids.clone()),
                Adapter::XLora {
                    model,
                    order,
                    target_index,
                } => {
                    builder = builder.with_xlora(
                        model.clone(),
                        options::read_adapter_order(order)?,
                        false,
                        *target_index,
                    )
                }
                Adapter::GgufLora { .. } => {
                    bail!("an --adapter-order LoRA repository goes with a GGUF model")
                }
            }
            Ok(builder.build())
        }
    }
}
