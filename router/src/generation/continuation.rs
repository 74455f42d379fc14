//! Mid-stream continuation: a generation whose worker dies or stalls after output reached the
//! caller goes on on another worker, and the caller sees one uninterrupted answer.
//!
//! Before the first output a retry on another worker is free (the forwarder does it). After it,
//! the alternative to continuing is ending the stream with an error, which is what every router
//! but NVIDIA Dynamo does. Dynamo migrates token-exactly inside its own engine; auxot's workers
//! run engines it does not own, so the continuation is asked for in the protocol instead: the
//! router keeps what it handed out (text, reasoning, tool-call fragments) and sends the original
//! request plus that output as a cut assistant turn ([`ChatRequest::continue_final`]) to another
//! worker serving the same model whose engine says it can continue one
//! ([`ModelInfo::continues`](auxot_common::mesh::node::ModelInfo::continues)). That worker
//! emits only what follows, reports usage for the whole turn, and finishes it once.
//!
//! What the caller sees stays consistent: the continuation's prompt count is not repeated, a
//! `Usage` is held until the `Finish` after it (a worker lost in between would otherwise leave
//! the caller with the usage of a generation that goes on), and a generation is continued at most
//! `--max-continuations` times. When no worker can continue (none left, the engine refuses the
//! request, the limit is reached) the stream ends with the error of the lost worker, as before.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use auxot_common::chat::{ChatEvent, ChatRequest, Message, Part, Role};
use auxot_common::completion::Completion;
use tracing::{info, warn};

use super::generator::Generator;
use super::source::EventSource;
use crate::forward::stream::{ChatStream, Trace};

/// A generation that continues on another worker when its worker is lost mid-way.
pub struct Continuing {
    generator: Arc<Generator>,
    /// The request as it was forwarded the first time.
    request: ChatRequest,
    current: ChatStream,
    /// The model serving it (the real id, where the caller asked for `auto`).
    model: String,
    /// The first worker, and how the request reached it, for the request's record.
    worker: String,
    trace: Trace,
    /// The output handed out so far: the cut turn of a continuation.
    sent: Completion,
    /// Set when the output outgrew what the router holds for one answer: no continuation then.
    untracked: bool,
    /// Workers lost on this generation: not asked again.
    lost: HashSet<String>,
    continuations_left: u32,
    /// A `Usage` waiting for the `Finish` after it.
    held_usage: Option<ChatEvent>,
    ready: VecDeque<ChatEvent>,
}

impl Continuing {
    pub fn new(generator: Arc<Generator>, request: ChatRequest, stream: ChatStream) -> Self {
        let continuations_left = generator.max_continuations;
        Continuing {
            model: stream.model.clone(),
            worker: stream.worker.clone(),
            trace: stream.trace,
            sent: Completion::default(),
            untracked: false,
            lost: HashSet::new(),
            continuations_left,
            held_usage: None,
            ready: VecDeque::new(),
            generator,
            request,
            current: stream,
        }
    }

    /// The first worker.
    pub fn worker(&self) -> &str {
        &self.worker
    }

    /// How the request reached its first worker.
    pub fn trace(&self) -> Trace {
        self.trace
    }

    /// Whether the generation ended because its worker was lost and could not be continued.
    pub fn worker_lost(&self) -> bool {
        self.current.worker_lost()
    }

    /// The request that continues the generation after what was sent.
    fn continuation(&self) -> ChatRequest {
        let mut cut = Vec::new();
        if !self.sent.reasoning.is_empty() {
            cut.push(Part::Thinking {
                text: self.sent.reasoning.clone(),
                signature: None,
            });
        }
        if !self.sent.text.is_empty() {
            cut.push(Part::Text {
                text: self.sent.text.clone(),
            });
        }
        for call in &self.sent.tool_calls {
            cut.push(Part::ToolCall {
                id: call.id.clone(),
                name: call.name.clone(),
                arguments: call.arguments.clone(),
            });
        }
        let mut request = self.request.clone();
        request.model = self.model.clone();
        request.messages.push(Message {
            role: Role::Assistant,
            content: cut,
        });
        request.continue_final = true;
        // The caller has the prompt count from the first worker.
        request.prompt_tokens_first = false;
        request
    }

    /// Moves the generation to another worker after its worker was lost; false when it cannot
    /// go on (the caller then gets the loss as an error).
    async fn continue_elsewhere(&mut self) -> bool {
        let lost = self.current.worker.clone();
        self.lost.insert(lost.clone());
        let nothing_sent = self.sent.text.is_empty()
            && self.sent.reasoning.is_empty()
            && self.sent.tool_calls.is_empty();
        // A `Usage` already came: the generation was over bar its `Finish`, which cannot be
        // told from here.
        if self.continuations_left == 0
            || self.untracked
            || nothing_sent
            || self.held_usage.is_some()
        {
            return false;
        }
        let request = self.continuation();
        match self
            .generator
            .forwarder
            .chat_excluding(&request, &self.lost)
            .await
        {
            Ok(stream) => {
                self.continuations_left -= 1;
                info!(from = %lost, to = %stream.worker, "worker lost mid-generation: continuing on another worker");
                self.generator.metrics.continuation("continued");
                self.current = stream;
                true
            }
            Err(error) => {
                warn!(from = %lost, %error, "worker lost mid-generation and no worker could continue");
                self.generator.metrics.continuation("failed");
                false
            }
        }
    }

    /// Handles one event of the current worker; the event to hand out, if any.
    fn on_event(&mut self, event: ChatEvent) -> Option<ChatEvent> {
        match event {
            // The caller had the prompt count from the first worker.
            ChatEvent::PromptTokens { .. } if !self.lost.is_empty() => None,
            ChatEvent::Usage(_) => {
                self.held_usage = Some(event);
                None
            }
            ChatEvent::Finish { .. } => match self.held_usage.take() {
                Some(usage) => {
                    self.ready.push_back(event);
                    Some(usage)
                }
                None => Some(event),
            },
            event => {
                if event.is_output() && !self.untracked && self.sent.apply(&event).is_err() {
                    self.untracked = true;
                    self.sent = Completion::default();
                }
                Some(event)
            }
        }
    }
}

impl EventSource for Continuing {
    fn model(&self) -> &str {
        &self.model
    }

    async fn next(&mut self) -> Option<ChatEvent> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Some(event);
            }
            let event = self.current.next().await?;
            if matches!(event, ChatEvent::Error(_)) && self.current.worker_lost() {
                if self.continue_elsewhere().await {
                    continue;
                }
                // The error ends the generation: a `Usage` held for it is not the whole story.
                self.held_usage = None;
                return Some(event);
            }
            if let Some(event) = self.on_event(event) {
                return Some(event);
            }
        }
    }
}
