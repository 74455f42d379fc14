//! The production engine: mistral.rs embedded in the worker.
//!
//! Requests go to the engine as raw `Request::Normal` values with a channel of our own, always
//! in streaming mode: the SDK's streaming helper uses a channel of one, so a slow reader would
//! stall every sequence in the batch, and a non-streaming request cannot be cancelled. Reading
//! the engine's channel promptly and dropping it when the caller goes away gives both.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{bail, Context as _};
use async_trait::async_trait;
use auxot_common::chat::{ChatEvent, ChatRequest, FinishReason, Usage};
use auxot_common::error::RemoteError;
use auxot_common::mesh::node::{DeviceInfo, ModelInfo};
use either::Either;
use mistralrs::core::{RequestMessage, SupportedModality, TokenizationRequest};
use mistralrs::{
    Constraint, GgufModelBuilder, MemoryGpuConfig, Model, ModelBuilder, NormalRequest,
    PagedAttentionMetaBuilder, Request, Response, StopTokens, TokenSource,
};
use tokio::sync::mpsc::{self, UnboundedSender};
use tracing::info;

use super::convert::{self, Output};
use super::stops::StopMatcher;
use super::Engine;
use crate::device;

/// Chunks the engine may still send after a stop string matched before the worker gives up
/// waiting for its usage figures and cancels.
const MAX_CHUNKS_AFTER_STOP: usize = 16;

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
}

/// Where the weights come from.
#[derive(Debug, PartialEq, Eq)]
enum Source {
    /// Local GGUF files in one directory.
    LocalGguf { dir: PathBuf, files: Vec<String> },
    /// A local directory with `config.json` and safetensors.
    LocalDir(PathBuf),
    /// A Hugging Face repository of GGUF files.
    HubGguf { repo: String, files: Vec<String> },
    /// A Hugging Face repository of safetensors.
    Hub(String),
}

fn gguf_files_in(dir: &Path) -> anyhow::Result<Vec<String>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name.ends_with(".gguf") {
            files.push(name);
        }
    }
    files.sort();
    Ok(files)
}

fn resolve(options: &MistralOptions) -> anyhow::Result<Source> {
    let path = Path::new(&options.model);
    if path.is_file() {
        let (Some(dir), Some(file)) = (path.parent(), path.file_name()) else {
            bail!("model path {} has no file name", path.display());
        };
        if !file.to_string_lossy().ends_with(".gguf") {
            bail!(
                "model file {} is not a .gguf file; pass a .gguf file, a model directory or a Hugging Face id",
                path.display()
            );
        }
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        return Ok(Source::LocalGguf {
            dir: dir.to_path_buf(),
            files: vec![file.to_string_lossy().into_owned()],
        });
    }
    if path.is_dir() {
        let files = gguf_files_in(path)?;
        if !files.is_empty() {
            return Ok(Source::LocalGguf {
                dir: path.to_path_buf(),
                files,
            });
        }
        if path.join("config.json").is_file() {
            return Ok(Source::LocalDir(path.to_path_buf()));
        }
        bail!(
            "model directory {} holds neither .gguf files nor a config.json",
            path.display()
        );
    }
    let looks_like_hub_id = options.model.split('/').count() == 2
        && !options.model.starts_with('.')
        && !options.model.starts_with('/')
        && !options.model.ends_with(".gguf");
    if !looks_like_hub_id {
        bail!(
            "model `{}` is not an existing file or directory, nor a Hugging Face id like `org/name`",
            options.model
        );
    }
    Ok(if options.gguf_files.is_empty() {
        Source::Hub(options.model.clone())
    } else {
        Source::HubGguf {
            repo: options.model.clone(),
            files: options.gguf_files.clone(),
        }
    })
}

/// The id callers use for this model unless `--model-name` overrides it.
fn default_model_id(source: &Source) -> String {
    match source {
        Source::LocalGguf { files, .. } | Source::HubGguf { files, .. } => files
            .first()
            .map(|f| f.trim_end_matches(".gguf").to_string())
            .unwrap_or_default(),
        Source::LocalDir(dir) => dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| dir.display().to_string()),
        Source::Hub(id) => id.clone(),
    }
}

/// mistral.rs serving one model.
pub struct MistralEngine {
    model: Model,
    info: ModelInfo,
    device: DeviceInfo,
    capacity: u32,
    next_id: AtomicUsize,
    /// Token ids that end a constrained (JSON) generation; see [`GRAMMAR_END_TOKENS`].
    grammar_end_tokens: Vec<u32>,
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

impl MistralEngine {
    /// Loads the model; takes from a second (a small GGUF on CPU) to minutes (a hub download).
    pub async fn load(options: &MistralOptions) -> anyhow::Result<Self> {
        let source = resolve(options)?;
        let id = options
            .name
            .clone()
            .unwrap_or_else(|| default_model_id(&source));
        info!(model = %id, source = ?source, "loading model");
        // Hub tokens come from HF_TOKEN or the Hugging Face cache, as the hub tools do.
        let hub_token = TokenSource::CacheToken;
        let template = options
            .chat_template
            .as_ref()
            .map(|p| p.display().to_string());
        let model = match &source {
            Source::LocalGguf { dir, files } => {
                let builder = GgufModelBuilder::new(dir.display().to_string(), files.clone())
                    .with_token_source(TokenSource::None);
                configure_gguf(builder, options, template.as_deref())?
                    .build()
                    .await
            }
            Source::HubGguf { repo, files } => {
                let builder =
                    GgufModelBuilder::new(repo, files.clone()).with_token_source(hub_token);
                configure_gguf(builder, options, template.as_deref())?
                    .build()
                    .await
            }
            Source::LocalDir(dir) => {
                let builder = ModelBuilder::new(dir.display().to_string())
                    .with_token_source(TokenSource::None);
                configure_auto(builder, options, template.as_deref())?
                    .build()
                    .await
            }
            Source::Hub(repo) => {
                let builder = ModelBuilder::new(repo).with_token_source(hub_token);
                configure_auto(builder, options, template.as_deref())?
                    .build()
                    .await
            }
        }
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
        info!(model = %id, ?context_length, vision, device = %device.name, "model loaded");
        let mut engine = MistralEngine {
            model,
            info: ModelInfo {
                id,
                context_length,
                vision,
                reasoning: false,
            },
            device,
            capacity: options.max_seqs as u32,
            next_id: AtomicUsize::new(1),
            grammar_end_tokens: Vec::new(),
        };
        engine.grammar_end_tokens = engine.find_grammar_end_tokens().await;
        Ok(engine)
    }

    fn sender(&self) -> Result<tokio::sync::mpsc::Sender<Request>, RemoteError> {
        self.model
            .inner()
            .get_sender(None)
            .map_err(|e| RemoteError::internal(format!("engine unavailable: {e}")))
    }

    async fn run_chat(
        &self,
        request: ChatRequest,
        events: &UnboundedSender<ChatEvent>,
    ) -> Result<(), RemoteError> {
        // Decoding images is CPU work: keep it off the async threads.
        let prepared = if request.has_images() {
            let owned = request.clone();
            tokio::task::spawn_blocking(move || convert::prepare(&owned))
                .await
                .map_err(|_| RemoteError::internal("preparing the request failed"))??
        } else {
            convert::prepare(&request)?
        };
        if !prepared.chat.images.is_empty() && !self.info.vision {
            return Err(RemoteError::invalid(format!(
                "model `{}` does not accept images",
                self.info.id
            )));
        }
        let mut known_prompt_tokens = None;
        if request.usage_first {
            let prompt_tokens = self.count_prepared(&prepared).await?;
            known_prompt_tokens = Some(prompt_tokens);
            let _ = events.send(ChatEvent::Usage(Usage {
                prompt_tokens,
                completion_tokens: 0,
            }));
        }
        let convert::Prepared {
            chat,
            tools,
            tool_choice,
            constraint,
            output,
            enable_thinking,
            reasoning_effort,
        } = prepared;
        let messages = if chat.images.is_empty() {
            RequestMessage::Chat {
                messages: chat.messages,
                enable_thinking,
                reasoning_effort,
            }
        } else {
            RequestMessage::MultimodalChat {
                images: chat.images,
                audios: Vec::new(),
                videos: Vec::new(),
                messages: chat.messages,
                enable_thinking,
                reasoning_effort,
            }
        };
        let mut sampling_params = convert::sampling(&request.sampling);
        if !matches!(constraint, Constraint::None) && !self.grammar_end_tokens.is_empty() {
            sampling_params.stop_toks = Some(StopTokens::Ids(self.grammar_end_tokens.clone()));
        }
        let (tx, mut rx) = mpsc::channel(256);
        let normal = NormalRequest {
            messages,
            sampling_params,
            response: tx,
            return_logprobs: false,
            is_streaming: true,
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            constraint,
            suffix: None,
            tools,
            tool_choice,
            logits_processors: None,
            return_raw_logits: false,
            web_search_options: None,
            model_id: None,
            truncate_sequence: false,
        };
        self.sender()?
            .send(Request::Normal(Box::new(normal)))
            .await
            .map_err(|_| RemoteError::internal("engine stopped"))?;

        let mut stream = GenerationStream::new(&request, output, events);
        stream.prompt_tokens = known_prompt_tokens;
        loop {
            let response = tokio::select! {
                // Returning drops `rx`: the engine cancels the sequence at its next step.
                _ = events.closed() => return Ok(()),
                response = rx.recv() => response,
            };
            let Some(response) = response else {
                return Err(RemoteError::internal(
                    "engine ended the generation without finishing it",
                ));
            };
            match response {
                Response::Chunk(chunk) => {
                    let finished = stream.on_chunk(chunk)?;
                    if finished {
                        return Ok(());
                    }
                }
                Response::ValidationError(e) => return Err(RemoteError::invalid(e.to_string())),
                Response::InternalError(e) => {
                    return Err(RemoteError::internal(format!("engine error: {e}")))
                }
                Response::ModelError(message, _) => {
                    return Err(RemoteError::internal(format!("model error: {message}")))
                }
                _ => {}
            }
        }
    }

    /// Tokenizes `text` (no special tokens added), via a detached receiver as the engine
    /// requires.
    async fn tokenize_text(&self, text: &str) -> Result<Vec<u32>, RemoteError> {
        let (tx, mut rx) = mpsc::channel(1);
        let tokenize = Request::Tokenize(TokenizationRequest {
            text: Either::Right(text.to_string()),
            tools: None,
            add_generation_prompt: false,
            add_special_tokens: false,
            enable_thinking: None,
            reasoning_effort: None,
            response: tx,
        });
        self.sender()?
            .send(tokenize)
            .await
            .map_err(|_| RemoteError::internal("engine stopped"))?;
        let reply = tokio::spawn(async move { rx.recv().await });
        match reply.await {
            Ok(Some(Ok(ids))) => Ok(ids),
            Ok(Some(Err(e))) => Err(RemoteError::internal(format!("tokenization failed: {e}"))),
            _ => Err(RemoteError::internal(
                "engine dropped the tokenization request",
            )),
        }
    }

    /// The ids of the [`GRAMMAR_END_TOKENS`] this tokenizer has as single tokens.
    async fn find_grammar_end_tokens(&self) -> Vec<u32> {
        let mut ids = Vec::new();
        for token in GRAMMAR_END_TOKENS {
            if let Ok(found) = self.tokenize_text(token).await {
                if let [id] = found.as_slice() {
                    ids.push(*id);
                }
            }
        }
        ids
    }

    /// Prompt tokens of a prepared request, exactly as the engine will build the prompt.
    async fn count_prepared(&self, prepared: &convert::Prepared) -> Result<u32, RemoteError> {
        let (tx, mut rx) = mpsc::channel(1);
        let tokenize = Request::Tokenize(TokenizationRequest {
            text: Either::Left(prepared.chat.messages.clone()),
            tools: prepared.tools.clone(),
            add_generation_prompt: true,
            // Exactly what the engine does when it prepares a chat prompt.
            add_special_tokens: true,
            enable_thinking: prepared.enable_thinking,
            reasoning_effort: prepared.reasoning_effort,
            response: tx,
        });
        self.sender()?
            .send(tokenize)
            .await
            .map_err(|_| RemoteError::internal("engine stopped"))?;
        // The engine panics if the reply receiver is gone when it answers, so the receiver lives
        // in a detached task that outlives a caller who gives up.
        let reply = tokio::spawn(async move { rx.recv().await });
        match reply.await {
            Ok(Some(Ok(ids))) => Ok(ids.len() as u32),
            Ok(Some(Err(e))) => Err(RemoteError::invalid(format!("tokenization failed: {e}"))),
            _ => Err(RemoteError::internal(
                "engine dropped the tokenization request",
            )),
        }
    }
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

/// Turns engine chunks into canonical events for one generation.
struct GenerationStream<'a> {
    events: &'a UnboundedSender<ChatEvent>,
    output: Output,
    stops: StopMatcher,
    /// Set once a stop string matched; later text is dropped.
    stopped_by: Option<String>,
    chunks_after_stop: usize,
    chunks: u32,
    tool_calls: u32,
    /// Constrained text of a tool selection, parsed when the generation ends.
    selection: String,
    /// The prompt size, when it was counted before generating.
    prompt_tokens: Option<u32>,
}

/// A fresh tool-call id, in OpenAI's `call_` form.
fn call_id() -> String {
    format!("call_{}", uuid::Uuid::new_v4().simple())
}

impl<'a> GenerationStream<'a> {
    fn new(request: &ChatRequest, output: Output, events: &'a UnboundedSender<ChatEvent>) -> Self {
        // Stop strings apply to answers, not to the JSON of a forced tool call.
        let stops = match output {
            Output::Text => StopMatcher::new(&request.sampling.stop),
            _ => StopMatcher::new(&[]),
        };
        GenerationStream {
            events,
            output,
            stops,
            stopped_by: None,
            chunks_after_stop: 0,
            chunks: 0,
            tool_calls: 0,
            selection: String::new(),
            prompt_tokens: None,
        }
    }

    fn send(&self, event: ChatEvent) {
        // A closed channel means the caller left; the select in `run_chat` notices.
        let _ = self.events.send(event);
    }

    fn on_text(&mut self, text: String) {
        match &self.output {
            Output::Text => {
                let step = self.stops.push(&text);
                if !step.emit.is_empty() {
                    self.send(ChatEvent::Text { text: step.emit });
                }
                self.stopped_by = step.matched;
            }
            Output::ToolArguments { name } => {
                let first = self.tool_calls == 0;
                let name = name.clone();
                self.send(ChatEvent::ToolCall {
                    index: 0,
                    id: first.then(call_id),
                    name: first.then_some(name),
                    arguments: text,
                });
                self.tool_calls = 1;
            }
            Output::ToolSelection => self.selection.push_str(&text),
        }
    }

    /// Emits the call chosen in a tool selection.
    fn finish_selection(&mut self) -> Result<(), RemoteError> {
        let parsed: serde_json::Value = serde_json::from_str(&self.selection).map_err(|e| {
            RemoteError::internal(format!(
                "the model did not complete its tool call (raise max_tokens?): {e}"
            ))
        })?;
        let name = parsed["name"].as_str().unwrap_or_default().to_string();
        self.send(ChatEvent::ToolCall {
            index: 0,
            id: Some(call_id()),
            name: Some(name),
            arguments: parsed["arguments"].to_string(),
        });
        self.tool_calls = 1;
        Ok(())
    }

    /// Handles one chunk; true when the generation is over.
    fn on_chunk(
        &mut self,
        chunk: mistralrs::ChatCompletionChunkResponse,
    ) -> Result<bool, RemoteError> {
        self.chunks += 1;
        let mut engine_finish = None;
        for choice in chunk.choices {
            if self.stopped_by.is_none() {
                if let Some(text) = choice.delta.reasoning_content.filter(|t| !t.is_empty()) {
                    self.send(ChatEvent::Reasoning { text });
                }
                if let Some(text) = choice.delta.content.filter(|t| !t.is_empty()) {
                    self.on_text(text);
                }
                for call in choice.delta.tool_calls.unwrap_or_default() {
                    self.send(ChatEvent::ToolCall {
                        index: self.tool_calls,
                        id: Some(call.id),
                        name: Some(call.function.name),
                        arguments: call.function.arguments,
                    });
                    self.tool_calls += 1;
                }
            } else {
                self.chunks_after_stop += 1;
            }
            if let Some(reason) = choice.finish_reason {
                engine_finish = Some(reason);
            }
        }
        let usage = chunk.usage.map(|u| Usage {
            prompt_tokens: u.prompt_tokens as u32,
            completion_tokens: u.completion_tokens as u32,
        });
        let gave_up_waiting = self.chunks_after_stop > MAX_CHUNKS_AFTER_STOP;
        if engine_finish.is_none() && !gave_up_waiting {
            return Ok(false);
        }
        let length = engine_finish.as_deref() == Some("length");
        if engine_finish.as_deref() == Some("canceled") {
            return Err(RemoteError::internal("the engine cancelled the generation"));
        }
        match self.output {
            Output::Text if self.stopped_by.is_none() => {
                let rest = self.stops.finish();
                if !rest.is_empty() {
                    self.send(ChatEvent::Text { text: rest });
                }
            }
            Output::ToolSelection if !length => self.finish_selection()?,
            Output::ToolSelection => {
                return Err(RemoteError::invalid(
                    "max_tokens ran out before the model completed its tool call",
                ))
            }
            _ => {}
        }
        // Without the engine's figures (it did not finish within the grace after a stop string),
        // count the chunks that were part of the answer.
        let fallback = Usage {
            prompt_tokens: self.prompt_tokens.unwrap_or(0),
            completion_tokens: self.chunks - self.chunks_after_stop as u32,
        };
        self.send(ChatEvent::Usage(usage.unwrap_or(fallback)));
        let reason = if self.stopped_by.is_some() {
            FinishReason::StopSequence
        } else if length {
            FinishReason::Length
        } else if self.tool_calls > 0 || engine_finish.as_deref() == Some("tool_calls") {
            FinishReason::ToolCalls
        } else {
            FinishReason::Stop
        };
        let stop_sequence = self.stopped_by.take();
        self.send(ChatEvent::Finish {
            reason,
            stop_sequence,
        });
        Ok(true)
    }
}

#[async_trait]
impl Engine for MistralEngine {
    fn model(&self) -> &ModelInfo {
        &self.info
    }

    fn device(&self) -> DeviceInfo {
        self.device.clone()
    }

    fn capacity(&self) -> u32 {
        self.capacity
    }

    async fn chat(&self, request: ChatRequest, events: UnboundedSender<ChatEvent>) {
        if let Err(err) = self.run_chat(request, &events).await {
            let _ = events.send(ChatEvent::Error(err));
        }
    }

    async fn count_tokens(&self, request: &ChatRequest) -> Result<u32, RemoteError> {
        let prepared = convert::prepare(request)?;
        self.count_prepared(&prepared).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(model: &str) -> MistralOptions {
        MistralOptions {
            model: model.to_string(),
            gguf_files: Vec::new(),
            name: None,
            max_seqs: 4,
            force_cpu: true,
            chat_template: None,
            gpu_memory_utilization: 0.85,
        }
    }

    #[test]
    fn sources_are_recognised() {
        let dir = tempfile::tempdir().expect("tempdir");
        let gguf = dir.path().join("Tiny-Model.Q4.gguf");
        std::fs::write(&gguf, b"x").expect("write");
        let file_source = resolve(&options(&gguf.display().to_string())).expect("file");
        assert_eq!(default_model_id(&file_source), "Tiny-Model.Q4");
        let dir_source = resolve(&options(&dir.path().display().to_string())).expect("dir");
        assert!(
            matches!(dir_source, Source::LocalGguf { ref files, .. } if files == &["Tiny-Model.Q4.gguf"])
        );
        assert_eq!(
            resolve(&options("HuggingFaceTB/SmolLM2-135M-Instruct")).expect("hub"),
            Source::Hub("HuggingFaceTB/SmolLM2-135M-Instruct".into())
        );
        let err = resolve(&options("./missing.gguf")).expect_err("missing");
        assert!(err.to_string().contains("not an existing file"), "{err}");
        let not_gguf = dir.path().join("weights.bin");
        std::fs::write(&not_gguf, b"x").expect("write");
        assert!(resolve(&options(&not_gguf.display().to_string())).is_err());
    }
}
