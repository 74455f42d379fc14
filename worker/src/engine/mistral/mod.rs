//! The production engine: mistral.rs embedded in the worker.
//!
//! Requests go to the engine as raw `Request::Normal` values with a channel of our own, always
//! in streaming mode: the SDK's streaming helper uses a channel of one, so a slow reader would
//! stall every sequence in the batch, and a non-streaming request cannot be cancelled. Reading
//! the engine's channel promptly and dropping it when the caller goes away gives both.
//!
//! The parts, each its own file: [`source`] (what `--model` names), [`cpu`] (whether GGUF
//! weights are expanded on a CPU), [`load`] (builders, device, capacity, grammar end tokens),
//! [`tokenize`] (prompt sizes through the engine's tokenizer), [`resume`] (the prompt that
//! continues a cut assistant turn) and [`stream`] (engine chunks to canonical events). This file
//! only sends requests and pumps replies.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use auxot_common::chat::{ChatEvent, ChatRequest, FinishReason, Usage};
use auxot_common::error::RemoteError;
use auxot_common::mesh::node::{DeviceInfo, ModelInfo};
use mistralrs::core::RequestMessage;
use mistralrs::{
    Constraint, CustomLogitsProcessor, Model, NormalRequest, Request, Response, StopTokens,
};
use tokio::sync::mpsc::{self, UnboundedSender};

use super::constrain::{self, CloseJson};
use super::continuation;
use super::convert;
use super::Engine;

pub mod cpu;
mod load;
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
            // A closed channel means the caller left; the select below notices.
            let _ = events.send(stream.prompt_tokens(tokens));
        }
        let mut request = request;
        if let Some(resumed) = &resumed {
            // `max_tokens` covers the whole turn, the cut part included.
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
                    return Ok(());
                }
                left => request.sampling.max_tokens = left,
            }
        }
        let mut rx = self
            .send_generation(&request, prepared, resumed.map(|r| r.ids))
            .await?;
        let mut pending = Vec::new();
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
            let chunk = match response {
                Response::Chunk(chunk) => EngineChunk::from_mistral(chunk),
                // A continued turn is a raw-token completion.
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
        let mut logits_processors = None;
        if let Constraint::JsonSchema(schema) = &constraint {
            if !self.grammar_end_tokens.is_empty() {
                sampling_params.stop_toks = Some(StopTokens::Ids(self.grammar_end_tokens.clone()));
            }
            if let (Some(budget), false) = (sampling_params.max_len, self.closing_tokens.is_empty())
            {
                let close = CloseJson::new(
                    budget,
                    constrain::closing_reserve(schema),
                    self.closing_tokens.clone(),
                );
                logits_processors = Some(vec![Arc::new(close) as Arc<dyn CustomLogitsProcessor>]);
            }
        }
        let (tx, rx) = mpsc::channel(REPLY_CHANNEL);
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
        tokenize::count_prompt(&self.model, &prepared).await
    }
}
