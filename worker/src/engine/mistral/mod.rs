//! The production engine: mistral.rs embedded in the worker.
//!
//! Requests go to the engine as raw `Request::Normal` values with a channel of our own, always
//! in streaming mode: the SDK's streaming helper uses a channel of one, so a slow reader would
//! stall every sequence in the batch, and a non-streaming request cannot be cancelled. Reading
//! the engine's channel promptly and dropping it when the caller goes away gives both.
//!
//! The parts, each its own file: [`source`] (what `--model` names), [`options`] (the model's
//! flags as mistral.rs settings: ISQ, device mapping, adapters, draft model, KV cache), [`cpu`]
//! (whether GGUF weights are expanded on a CPU), [`build`] (loaders, pipelines, scheduler and the
//! capacity they reserved), [`adapters`] (local LoRA directories), [`load`] (what to advertise,
//! grammar end tokens), [`capabilities`] (whether the chat template reasons), [`tokenize`]
//! (prompt sizes through the engine's tokenizer), [`resume`] (the prompt that
//! continues a cut assistant turn) and [`stream`] (engine chunks to canonical events). This file
//! only sends requests and pumps replies.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use auxot_common::chat::{ChatEvent, ChatRequest, FinishReason, Usage};
use auxot_common::embedding::{EmbedRequest, Embeddings};
use auxot_common::error::RemoteError;
use auxot_common::mesh::node::{DeviceInfo, ModelInfo};
use mistralrs::core::RequestMessage;
use mistralrs::{
    Constraint, CustomLogitsProcessor, Model, NormalRequest, Request, Response, SamplingParams,
    StopTokens,
};
use tokio::sync::mpsc::{self, UnboundedSender};

use super::constrain::{self, CloseJson};
use super::continuation::{self, Partial};
use super::convert::{self, Output};
use super::Engine;

mod adapters;
mod build;
mod capabilities;
pub mod cpu;
mod load;
pub mod options;
mod resume;
mod source;
mod stream;
mod tokenize;

pub use load::MistralOptions;
use stream::{EngineChunk, GenerationStream};

/// Replies the engine may queue for one request before it waits for the worker to read.
const REPLY_CHANNEL: usize = 256;

/// mistral.rs serving one model.
pub struct MistralEngine {
    model: Model,
    info: ModelInfo,
    device: DeviceInfo,
    capacity: u32,
    /// Request ids, unique per engine.
    next_id: AtomicUsize,
    /// Token ids that end a constrained (JSON) generation.
    grammar_end_tokens: Vec<u32>,
    /// Token ids that only close JSON, preferred at the end of a constrained generation's budget.
    closing_tokens: Arc<[(u32, f32)]>,
}

impl MistralEngine {
    /// Loads the model; takes from a second (a small GGUF on CPU) to minutes (a hub download).
    pub async fn load(options: &MistralOptions) -> anyhow::Result<Self> {
        let loaded = load::load(options).await?;
        Ok(MistralEngine {
            model: loaded.model,
            info: loaded.info,
            device: loaded.device,
            capacity: loaded.capacity,
            next_id: AtomicUsize::new(1),
            grammar_end_tokens: loaded.grammar_end_tokens,
            closing_tokens: loaded.closing_tokens.into(),
        })
    }

    async fn run_chat(
        &self,
        request: ChatRequest,
        events: &UnboundedSender<ChatEvent>,
    ) -> Result<(), RemoteError> {
        // A continuation: the conversation is prepared as usual, the cut turn appended below.
        let (request, partial) = match continuation::split(&request)? {
            Some((base, partial)) => (base, Some(partial)),
            None => (request, None),
        };
        if let Some(prompt) = &request.prompt {
            return self
                .run_prompt(prompt, &request, partial.as_ref(), events)
                .await;
        }
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
        let mut stream = GenerationStream::new(&request.sampling.stop, prepared.output.clone())
            .constrained(!matches!(prepared.constraint, Constraint::None));
        let resumed = match &partial {
            Some(partial) => Some(resume::prompt(&self.model, &prepared, partial).await?),
            None => None,
        };
        if let Some(resumed) = &resumed {
            stream.continuing(resumed.prompt_tokens, resumed.turn_tokens);
        }
        if request.prompt_tokens_first {
            let tokens = match &resumed {
                Some(resumed) => resumed.prompt_tokens,
                None => tokenize::count_prompt(&self.model, &prepared).await?,
            };
            // A closed channel means the caller left; `pump` notices.
            let _ = events.send(stream.prompt_tokens(tokens));
        }
        let mut request = request;
        if let Some(resumed) = &resumed {
            if turn_is_spent(&mut request, resumed, events) {
                return Ok(());
            }
        }
        let rx = self
            .send_generation(&request, prepared, resumed.map(|r| r.ids))
            .await?;
        pump(rx, stream, events, &self.model).await
    }

    /// A raw prompt with no chat template (legacy completions): the engine's completion request,
    /// its chunks through the same stop and usage handling as a chat. The engine reports no
    /// usage on streamed completions, so the prompt is counted first and the answer's tokens
    /// are its chunks. A continuation (`partial`) sends the prompt followed by the cut text as
    /// tokens, so the model carries on where it was cut.
    async fn run_prompt(
        &self,
        prompt: &str,
        request: &ChatRequest,
        partial: Option<&Partial>,
        events: &UnboundedSender<ChatEvent>,
    ) -> Result<(), RemoteError> {
        if prompt.is_empty() {
            return Err(RemoteError::invalid("prompt: must not be empty"));
        }
        let constraint = convert::constraint(&request.response_format);
        let mut stream = GenerationStream::new(&request.sampling.stop, Output::Text)
            .constrained(!matches!(constraint, Constraint::None));
        let resumed = match partial {
            Some(partial) => {
                Some(resume::raw_prompt(&self.model, prompt, &constraint, partial).await?)
            }
            None => None,
        };
        let event = match &resumed {
            Some(resumed) => {
                stream.continuing(resumed.prompt_tokens, resumed.turn_tokens);
                ChatEvent::PromptTokens {
                    tokens: resumed.prompt_tokens,
                }
            }
            None => stream.prompt_tokens(tokenize::count_text(&self.model, prompt).await?),
        };
        if request.prompt_tokens_first {
            let _ = events.send(event);
        }
        let mut request = request.clone();
        if let Some(resumed) = &resumed {
            if turn_is_spent(&mut request, resumed, events) {
                return Ok(());
            }
        }
        let mut sampling = convert::sampling(&request.sampling);
        let logits_processors = self.constrain(&constraint, &mut sampling);
        let message = match resumed {
            Some(resumed) => RequestMessage::CompletionTokens(resumed.ids),
            None => RequestMessage::Completion {
                text: prompt.to_string(),
                echo_prompt: false,
                best_of: None,
            },
        };
        let rx = self
            .send(
                message,
                sampling,
                constraint,
                None,
                None,
                logits_processors,
                true,
            )
            .await?;
        pump(rx, stream, events, &self.model).await
    }

    /// One text embedded by the engine: its vector and prompt tokens.
    async fn embed_one(&self, text: &str) -> Result<(Vec<f32>, u32), RemoteError> {
        if text.is_empty() {
            return Err(RemoteError::invalid(
                "input: texts to embed must not be empty",
            ));
        }
        let message = RequestMessage::Embedding {
            prompt: text.to_string(),
        };
        let sampling = SamplingParams::deterministic();
        let mut rx = self
            .send(message, sampling, Constraint::None, None, None, None, false)
            .await?;
        match rx.recv().await {
            Some(Response::Embeddings {
                embeddings,
                prompt_tokens,
                ..
            }) => Ok((embeddings, u32::try_from(prompt_tokens).unwrap_or(u32::MAX))),
            Some(Response::ValidationError(e)) => Err(RemoteError::invalid(e.to_string())),
            Some(Response::InternalError(e)) => {
                Err(RemoteError::internal(format!("engine error: {e}")))
            }
            Some(other) => Err(RemoteError::internal(format!(
                "engine answered an embedding with {}",
                response_kind(&other)
            ))),
            None => Err(RemoteError::internal(
                "engine dropped the embedding request",
            )),
        }
    }

    /// Hands the generation to the engine thread; its replies come on the returned channel.
    async fn send_generation(
        &self,
        request: &ChatRequest,
        prepared: convert::Prepared,
        resumed: Option<Vec<u32>>,
    ) -> Result<mpsc::Receiver<Response>, RemoteError> {
        let convert::Prepared {
            chat,
            tools,
            tool_choice,
            constraint,
            output: _,
            enable_thinking,
            reasoning_effort,
        } = prepared;
        let messages = if let Some(ids) = resumed {
            // The prompt is already rendered, the cut turn left open (see `resume`).
            RequestMessage::CompletionTokens(ids)
        } else if chat.images.is_empty() {
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
        let logits_processors = self.constrain(&constraint, &mut sampling_params);
        self.send(
            messages,
            sampling_params,
            constraint,
            tools,
            tool_choice,
            logits_processors,
            true,
        )
        .await
    }

    /// For a JSON constraint: stops at the grammar's end tokens, and the logits processor that
    /// closes the JSON before the token budget runs out ([`CloseJson`]).
    fn constrain(
        &self,
        constraint: &Constraint,
        sampling_params: &mut SamplingParams,
    ) -> Option<Vec<Arc<dyn CustomLogitsProcessor>>> {
        let Constraint::JsonSchema(schema) = constraint else {
            return None;
        };
        if !self.grammar_end_tokens.is_empty() {
            sampling_params.stop_toks = Some(StopTokens::Ids(self.grammar_end_tokens.clone()));
        }
        match (sampling_params.max_len, self.closing_tokens.is_empty()) {
            (Some(budget), false) => {
                let close = CloseJson::new(
                    budget,
                    constrain::closing_reserve(schema),
                    self.closing_tokens.clone(),
                );
                Some(vec![Arc::new(close) as Arc<dyn CustomLogitsProcessor>])
            }
            _ => None,
        }
    }

    /// Sends one request to the engine thread; its replies come on the returned channel.
    #[allow(clippy::too_many_arguments)]
    async fn send(
        &self,
        messages: RequestMessage,
        sampling_params: SamplingParams,
        constraint: Constraint,
        tools: Option<Vec<mistralrs::Tool>>,
        tool_choice: Option<mistralrs::ToolChoice>,
        logits_processors: Option<Vec<Arc<dyn CustomLogitsProcessor>>>,
        is_streaming: bool,
    ) -> Result<mpsc::Receiver<Response>, RemoteError> {
        let (tx, rx) = mpsc::channel(REPLY_CHANNEL);
        // A raw-prompt generation's first text must keep its leading space, which the engine
        // trims off a sequence's first delta; the token's own text comes with its logprob
        // (see `GenerationStream::on_chunk`).
        let raw = matches!(
            messages,
            RequestMessage::Completion { .. } | RequestMessage::CompletionTokens(_)
        );
        let normal = NormalRequest {
            messages,
            sampling_params,
            response: tx,
            return_logprobs: raw,
            is_streaming,
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            constraint,
            suffix: None,
            tools,
            tool_choice,
            logits_processors,
            return_raw_logits: false,
            web_search_options: None,
            model_id: None,
            truncate_sequence: false,
        };
        tokenize::sender(&self.model)?
            .send(Request::Normal(Box::new(normal)))
            .await
            .map_err(|_| RemoteError::internal("engine stopped"))?;
        Ok(rx)
    }
}

/// Reads the engine's replies to a streamed generation into events until it ends, or until the
/// caller goes away (returning drops `rx`: the engine cancels the sequence at its next step).
async fn pump(
    mut rx: mpsc::Receiver<Response>,
    mut stream: GenerationStream,
    events: &UnboundedSender<ChatEvent>,
    model: &Model,
) -> Result<(), RemoteError> {
    let mut pending = Vec::new();
    loop {
        let response = tokio::select! {
            _ = events.closed() => return Ok(()),
            response = rx.recv() => response,
        };
        let Some(response) = response else {
            // mistral.rs 0.8.1 sends a streamed sequence's finish only with a text delta, and
            // holds back a delta that ends inside a multi-byte character: a generation that
            // stops there (max_tokens through an emoji or a CJK character) ends with no last
            // chunk. With the engine still running, that is the answer's end, not a failure.
            let engine_running = tokenize::sender(model).is_ok_and(|s| !s.is_closed());
            if !engine_running {
                return Err(RemoteError::internal(
                    "engine stopped during the generation",
                ));
            }
            let outcome = stream.on_silent_end(&mut pending);
            for event in pending.drain(..) {
                let _ = events.send(event);
            }
            return outcome;
        };
        let chunk = match response {
            Response::Chunk(chunk) => EngineChunk::from_mistral(chunk),
            Response::CompletionChunk(chunk) => EngineChunk::from_completion(chunk),
            Response::ValidationError(e) => return Err(RemoteError::invalid(e.to_string())),
            Response::InternalError(e) => {
                return Err(RemoteError::internal(format!("engine error: {e}")))
            }
            Response::ModelError(message, _) | Response::CompletionModelError(message, _) => {
                return Err(RemoteError::internal(format!("model error: {message}")))
            }
            _ => continue,
        };
        let outcome = stream.on_chunk(chunk, &mut pending);
        for event in pending.drain(..) {
            let _ = events.send(event);
        }
        if outcome? {
            return Ok(());
        }
    }
}

/// For a continuation: takes the cut turn's tokens off `max_tokens` (which covers the whole
/// turn); true when nothing is left, the turn then finished here with its usage.
fn turn_is_spent(
    request: &mut ChatRequest,
    resumed: &resume::Resume,
    events: &UnboundedSender<ChatEvent>,
) -> bool {
    let limit = request.sampling.max_tokens;
    match limit.map(|max| max.saturating_sub(resumed.turn_tokens)) {
        Some(0) => {
            let _ = events.send(ChatEvent::Usage(Usage {
                prompt_tokens: resumed.prompt_tokens,
                completion_tokens: resumed.turn_tokens,
            }));
            let _ = events.send(ChatEvent::Finish {
                reason: FinishReason::Length,
                stop_sequence: None,
            });
            true
        }
        left => {
            request.sampling.max_tokens = left;
            false
        }
    }
}

/// The name of a reply variant, for messages about unexpected ones.
fn response_kind(response: &Response) -> &'static str {
    match response {
        Response::Chunk(_) => "a chat chunk",
        Response::Done(_) => "a chat completion",
        Response::CompletionChunk(_) | Response::CompletionDone(_) => "a text completion",
        Response::ModelError(..) | Response::CompletionModelError(..) => "a model error",
        _ => "another kind of reply",
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
        if let Some(prompt) = &request.prompt {
            return tokenize::count_text(&self.model, prompt).await;
        }
        let prepared = convert::prepare(request)?;
        tokenize::count_prompt(&self.model, &prepared).await
    }

    async fn embed(&self, request: &EmbedRequest) -> Result<Embeddings, RemoteError> {
        if !self.info.kind.is_chat() {
            let embedded =
                futures::future::join_all(request.inputs.iter().map(|text| self.embed_one(text)))
                    .await;
            let mut vectors = Vec::with_capacity(embedded.len());
            let mut prompt_tokens = 0u32;
            for result in embedded {
                let (vector, tokens) = result?;
                vectors.push(vector);
                prompt_tokens = prompt_tokens.saturating_add(tokens);
            }
            return Ok(Embeddings {
                model: self.info.id.clone(),
                vectors,
                prompt_tokens,
            });
        }
        Err(RemoteError::invalid(format!(
            "model `{}` is not an embedding model",
            self.info.id
        )))
    }
}
