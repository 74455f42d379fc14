//! Building what a worker serves from its configuration: the engine the configuration names
//! (mistral.rs with a model, the synthetic engine, or none on a tools-only worker) and the
//! tools of its tools file.

use std::sync::Arc;

use anyhow::Context as _;

use crate::config::{EngineKind, WorkerConfig};
use crate::engine::mistral::{MistralEngine, MistralOptions};
use crate::engine::synthetic::{SyntheticEngine, SyntheticOptions};
use crate::engine::Engine;
use crate::tools::ToolRunner;

/// Loads the engine; `None` on a tools-only worker. Takes from milliseconds to minutes.
pub async fn load_engine(config: &WorkerConfig) -> anyhow::Result<Option<Arc<dyn Engine>>> {
    let max_seqs = config.max_seqs();
    match config.engine {
        EngineKind::Synthetic => {
            let engine = SyntheticEngine::new(SyntheticOptions {
                model_id: config
                    .model_name
                    .clone()
                    .unwrap_or_else(|| "synthetic".into()),
                time_to_first_token: config.synthetic_ttft,
                tokens_per_second: config.synthetic_tokens_per_sec,
                tokens: config.synthetic_tokens,
                capacity: u32::try_from(max_seqs).unwrap_or(u32::MAX),
            })
            .map_err(anyhow::Error::msg)?;
            Ok(Some(Arc::new(engine)))
        }
        EngineKind::Mistralrs => {
            // `WorkerConfig::check` made sure a worker without a model serves tools.
            let Some(model) = &config.model else {
                return Ok(None);
            };
            let engine = MistralEngine::load(&MistralOptions {
                model: model.clone(),
                gguf_files: config.gguf_files.clone(),
                name: config.model_name.clone(),
                max_seqs,
                force_cpu: config.cpu,
                chat_template: config.chat_template.clone(),
                gpu_memory_utilization: config.gpu_memory_utilization,
                reasoning: config.reasoning.forced(),
            })
            .await?;
            Ok(Some(Arc::new(engine)))
        }
    }
}

/// Loads the tools file, starting its MCP servers; `None` when the worker serves no tools.
pub async fn load_tools(config: &WorkerConfig) -> anyhow::Result<Option<Arc<ToolRunner>>> {
    let Some(path) = &config.tools else {
        return Ok(None);
    };
    let runner = crate::tools::config::load(path)
        .await
        .with_context(|| format!("loading tools configuration {}", path.display()))?;
    Ok(Some(Arc::new(runner)))
}
