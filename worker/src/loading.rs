//! Building what a worker serves from its configuration: the engine the configuration names
//! (mistral.rs with a model, the synthetic engine, or none on a tools-only worker) and the
//! tools of its tools file.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tracing::info;

use crate::config::{EngineKind, WorkerConfig};
use crate::engine::mistral::{MistralEngine, MistralOptions};
use crate::engine::synthetic::{SyntheticEngine, SyntheticOptions};
use crate::engine::Engine;
use crate::metrics::Metrics;
use crate::tools::ToolRunner;

/// How often a loading worker says it is still loading.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(10);

/// Loads the engine; `None` on a tools-only worker. Takes from milliseconds to minutes (a hub
/// download): meanwhile the log says every few seconds how long it has been and, for a Hugging
/// Face id, how much of the model is in the cache, and the metrics follow.
pub async fn load_engine(
    config: &WorkerConfig,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<Option<Arc<dyn Engine>>> {
    let started = Instant::now();
    let download = config.model.as_deref().and_then(hub_cache_dir);
    let progress = tokio::spawn(report_progress(started, download.clone(), metrics.clone()));
    let loaded = build_engine(config).await;
    progress.abort();
    metrics.loading(
        started.elapsed(),
        download.as_deref().map_or(0, directory_bytes),
    );
    loaded
}

/// Logs and records loading progress until aborted.
async fn report_progress(started: Instant, download: Option<PathBuf>, metrics: Arc<Metrics>) {
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::now() + PROGRESS_INTERVAL,
        PROGRESS_INTERVAL,
    );
    loop {
        tick.tick().await;
        let elapsed = started.elapsed();
        let downloaded = match &download {
            // Walking the cache is file-system work: keep it off the runtime's threads.
            Some(dir) => {
                let dir = dir.clone();
                tokio::task::spawn_blocking(move || directory_bytes(&dir))
                    .await
                    .unwrap_or(0)
            }
            None => 0,
        };
        metrics.loading(elapsed, downloaded);
        if download.is_some() {
            info!(
                elapsed_secs = elapsed.as_secs(),
                downloaded_mb = downloaded / 1_000_000,
                "still loading the model (downloading from the Hugging Face hub)"
            );
        } else {
            info!(elapsed_secs = elapsed.as_secs(), "still loading the model");
        }
    }
}

/// Where mistral.rs's hub client puts a hub model's files (`HF_HUB_CACHE`, else `HF_HOME/hub`,
/// else `~/.cache/huggingface/hub`); `None` when `model` is a local path.
fn hub_cache_dir(model: &str) -> Option<PathBuf> {
    let looks_like_hub_id = !Path::new(model).exists()
        && model.split('/').count() == 2
        && !model.starts_with(['.', '/']);
    if !looks_like_hub_id {
        return None;
    }
    let hub = std::env::var_os("HF_HUB_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HF_HOME").map(|home| PathBuf::from(home).join("hub")))
        .or_else(|| {
            std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache/huggingface/hub"))
        })?;
    Some(hub.join(format!("models--{}", model.replace('/', "--"))))
}

/// Bytes of the regular files under `dir` (partial downloads included; links not followed).
fn directory_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut total = 0;
    for entry in entries.flatten() {
        match entry.file_type() {
            Ok(kind) if kind.is_dir() => total += directory_bytes(&entry.path()),
            Ok(kind) if kind.is_file() => total += entry.metadata().map_or(0, |m| m.len()),
            _ => {}
        }
    }
    total
}

/// Builds the engine the configuration names, with no progress reports or metrics: what a program
/// that embeds the engine without a worker (the benchmark) calls. `None` on a tools-only
/// configuration.
pub async fn build_engine(config: &WorkerConfig) -> anyhow::Result<Option<Arc<dyn Engine>>> {
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
                prefill_per_token: config.synthetic_prefill_per_token,
                prefix_cache: config.synthetic_prefix_cache,
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
                dequantize: config.dequantize,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_ids_are_watched_in_the_cache_and_local_files_are_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("m.gguf");
        std::fs::write(&file, b"1234").expect("write");
        assert_eq!(hub_cache_dir(&file.display().to_string()), None);
        let watched = hub_cache_dir("Qwen/Qwen3-4B").expect("a hub id");
        assert!(watched.ends_with("models--Qwen--Qwen3-4B"), "{watched:?}");
        std::fs::create_dir_all(dir.path().join("blobs")).expect("mkdir");
        std::fs::write(dir.path().join("blobs/part.incomplete"), b"123456").expect("write");
        assert_eq!(directory_bytes(dir.path()), 10);
    }
}
