//! Sending requests to workers, with retries where they are safe.
//!
//! A chat request may be retried on another worker as long as nothing has reached the client.
//! The forwarder therefore reads ahead until the first piece of generated output before handing
//! the stream to the generation layer: a worker that dies, drains or is full before that point
//! costs a retry, not an error. Client errors (bad request, unknown model) are never retried.
//!
//! Workers are not trusted further than their certificate: a worker that does not answer within
//! the first-frame deadline, sends a reply out of protocol or an event no request could produce
//! (a tool-call index in the billions) is marked suspect, routed around, and the request goes
//! elsewhere while nothing has reached the client.
//!
//! Jobs are split by file: [`candidates`] (who could serve it), [`admission`] (waiting for
//! room), [`transport`] (how frames travel), [`reply`] (reading what comes back), [`retry`]
//! (trying the next worker) and [`stream`] (a generation in progress).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use auxot_common::chat::{ChatEvent, ChatRequest};
use auxot_common::completion::check_event;
use auxot_common::embedding::{EmbedRequest, Embeddings};
use auxot_common::error::{ErrorKind, RemoteError};
use auxot_common::tools::{ToolCallRequest, ToolCallResult};
use auxot_common::wire::{encode_frame, FrameError, WireReply, WireRequest, MAX_FRAME_BYTES};
use tokio::time::Instant;
use tracing::warn;

pub mod admission;
pub mod candidates;
pub mod error;
pub mod reply;
pub mod retry;
pub mod stream;
pub mod transport;

use admission::{Admission, AdmissionLimits};
use error::ForwardError;
use reply::{next_reply, Reply};
use retry::{retry, Attempt, Step};
use stream::ChatStream;
use transport::{ReplyStream, WorkerTransport};

use crate::registry::{Registry, WorkerView};
use crate::routing::Policy;

/// Workers tried for one request before giving up.
const MAX_ATTEMPTS: usize = 3;

/// Longest wait for a token count (the worker only tokenizes).
const COUNT_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a worker may take at each step of a request.
#[derive(Debug, Clone, Copy)]
pub struct ForwardTimeouts {
    /// From sending a request to the worker's first frame (`Accepted`, or a refusal): a worker
    /// answers this at once, before any work, so a short wait tells a wedged one.
    pub first_frame: Duration,
    /// From the request to the first output (a long prefill on a busy CPU worker can take
    /// minutes); past it the worker counts as wedged and the request moves on.
    pub first_output: Duration,
    /// Longest silence between two events of a generation.
    pub stall: Duration,
}

impl Default for ForwardTimeouts {
    fn default() -> Self {
        ForwardTimeouts {
            first_frame: Duration::from_secs(10),
            first_output: Duration::from_secs(300),
            stall: stream::STALL_TIMEOUT,
        }
    }
}

/// A short name for a reply, for messages (never the reply itself, which a worker chose).
fn reply_kind(reply: &WireReply) -> &'static str {
    match reply {
        WireReply::Accepted { .. } => "accepted",
        WireReply::Event(_) => "event",
        WireReply::TokenCount { .. } => "token_count",
        WireReply::ToolResult(_) => "tool_result",
        WireReply::Embeddings(_) => "embeddings",
        WireReply::Error(_) => "error",
    }
}

/// Encodes a request for the wire once, so a request too large to send is the caller's 400 and
/// never a worker's failure.
fn encode(request: &WireRequest) -> Result<Vec<u8>, ForwardError> {
    encode_frame(request).map_err(|e| match e {
        FrameError::TooLarge(n) => ForwardError::Encoding(format!(
            "the request is {n} bytes once encoded for a worker; the limit is {MAX_FRAME_BYTES}"
        )),
        other => ForwardError::Remote(RemoteError::internal(format!(
            "encoding the request: {other}"
        ))),
    })
}

/// Why a one-reply call did not get its reply.
enum CallError {
    /// The worker could not be reached, or its stream broke.
    Lost(RemoteError),
    /// No reply within the time limit.
    TimedOut,
}

/// Picks workers and sends them requests.
pub struct Forwarder {
    registry: Arc<Registry>,
    transport: Arc<dyn WorkerTransport>,
    policy: Box<dyn Policy>,
    admission: Admission,
    timeouts: ForwardTimeouts,
}

impl Forwarder {
    pub fn new(
        registry: Arc<Registry>,
        transport: Arc<dyn WorkerTransport>,
        policy: Box<dyn Policy>,
        limits: AdmissionLimits,
    ) -> Self {
        Forwarder {
            registry,
            transport,
            policy,
            admission: Admission::new(limits),
            timeouts: ForwardTimeouts::default(),
        }
    }

    /// Sets how long workers may take (the defaults otherwise).
    pub fn with_timeouts(mut self, timeouts: ForwardTimeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The admission queue, shared with the tool calls.
    pub fn admission(&self) -> &Admission {
        &self.admission
    }

    /// Requests waiting for a worker with room now.
    pub fn queued(&self) -> usize {
        self.admission.queued()
    }

    /// Whether some ready worker could serve `request` (model, images), without choosing one.
    pub fn preflight(&self, request: &ChatRequest) -> Result<(), ForwardError> {
        candidates::for_chat(&self.registry, request, &HashSet::new()).map(|_| ())
    }

    /// Starts a generation, retrying on other workers until one produces output.
    pub async fn chat(&self, request: &ChatRequest) -> Result<ChatStream, ForwardError> {
        self.chat_excluding(request, &HashSet::new()).await
    }

    /// Like [`Self::chat`], never using the workers in `exclude`.
    pub async fn chat_excluding(
        &self,
        request: &ChatRequest,
        exclude: &HashSet<String>,
    ) -> Result<ChatStream, ForwardError> {
        let frame = encode(&WireRequest::Chat(request.clone()))?;
        let frame = &frame;
        retry(MAX_ATTEMPTS, exclude, |tried| async move {
            let asked = std::time::Instant::now();
            let admitted = self
                .admission
                .admit(&self.registry, &*self.policy, request, &tried)
                .await?;
            let Some(worker) = admitted else {
                return Ok(Step::NoCandidate);
            };
            let queued = asked.elapsed();
            let outcome = match self.try_chat(&worker, request, frame).await {
                Attempt::Done(mut stream) => {
                    stream.trace.queued = queued;
                    stream.trace.failovers = u32::try_from(tried.len()).unwrap_or(u32::MAX);
                    Attempt::Done(stream)
                }
                other => other,
            };
            Ok(Step::Tried {
                worker: worker.advert.node_id.clone(),
                outcome,
            })
        })
        .await
    }

    /// Opens a stream to `worker` and sends an encoded request; a failure here is the
    /// transport's (the request was checked when it was encoded), so the worker becomes suspect.
    async fn open(
        &self,
        worker: &WorkerView,
        frame: &[u8],
    ) -> Result<Box<dyn ReplyStream>, RemoteError> {
        let advert = &worker.advert;
        self.transport.send(advert, frame).await.map_err(|e| {
            warn!(worker = %advert.node_id, error = %e, "worker unreachable");
            self.registry.mark_failed(advert);
            RemoteError::new(
                ErrorKind::Unavailable,
                format!("worker {} unreachable: {e}", advert.node_id),
            )
        })
    }

    /// Sends a chat to `worker` and reads ahead to its first output.
    async fn try_chat(
        &self,
        worker: &WorkerView,
        request: &ChatRequest,
        frame: &[u8],
    ) -> Attempt<ChatStream> {
        let in_flight = self.registry.enter(worker);
        let replies = match self.open(worker, frame).await {
            Ok(replies) => replies,
            Err(error) => return Attempt::Retry(error),
        };
        let mut stream = ChatStream::new(
            worker.advert.clone(),
            request.model.clone(),
            replies,
            self.registry.clone(),
            in_flight,
        )
        .with_stall_timeout(self.timeouts.stall);
        // Until output exists a failure is retried elsewhere. The prompt count is not output.
        let started = Instant::now();
        let first_frame = started + self.timeouts.first_frame;
        let first_output = started + self.timeouts.first_output;
        let mut answered = false;
        let node = &worker.advert.node_id;
        loop {
            let deadline = if answered { first_output } else { first_frame };
            let reply = next_reply(stream.replies(), deadline).await;
            let (kind, fault) = match reply {
                Reply::Frame(WireReply::Accepted { model, .. }) if !answered => {
                    answered = true;
                    stream.model = model;
                    continue;
                }
                Reply::Frame(WireReply::Event(event @ ChatEvent::PromptTokens { .. })) => {
                    answered = true;
                    stream.push_pending(event);
                    continue;
                }
                Reply::Frame(WireReply::Event(ChatEvent::Error(error)))
                | Reply::Frame(WireReply::Error(error)) => {
                    stream.mark_finished();
                    if is_worker_fault(error.kind) {
                        self.registry.record_fault(&worker.advert);
                    }
                    return Attempt::from_error(error);
                }
                Reply::Frame(WireReply::Event(event)) => match check_event(&event) {
                    Ok(()) => {
                        self.registry.record_success(&worker.advert);
                        stream.trace.first_output_at = Some(std::time::Instant::now());
                        stream.push_pending(event);
                        return Attempt::Done(stream);
                    }
                    Err(why) => (ErrorKind::Upstream, format!("sent {why}")),
                },
                Reply::Frame(other) => (
                    ErrorKind::Upstream,
                    format!("sent an unexpected `{}` reply", reply_kind(&other)),
                ),
                Reply::TimedOut if !answered => (
                    ErrorKind::Unavailable,
                    format!("did not answer within {:?}", self.timeouts.first_frame),
                ),
                Reply::TimedOut => (
                    ErrorKind::Unavailable,
                    format!("produced nothing within {:?}", self.timeouts.first_output),
                ),
                Reply::Finished | Reply::Broken(_) => (
                    ErrorKind::Unavailable,
                    "went away before answering".to_string(),
                ),
            };
            stream.mark_finished();
            warn!(worker = %node, %fault, "worker failed a request: routing around it");
            self.registry.mark_failed(&worker.advert);
            return Attempt::Retry(RemoteError::new(kind, format!("worker {node} {fault}")));
        }
    }

    /// Sends one request to `worker` and reads its one reply.
    async fn call(
        &self,
        worker: &WorkerView,
        frame: &[u8],
        timeout: Duration,
    ) -> Result<WireReply, CallError> {
        let _in_flight = self.registry.enter(worker);
        let mut replies = self.open(worker, frame).await.map_err(CallError::Lost)?;
        match next_reply(&mut *replies, Instant::now() + timeout).await {
            Reply::Frame(reply) => Ok(reply),
            Reply::TimedOut => Err(CallError::TimedOut),
            Reply::Finished | Reply::Broken(_) => {
                self.registry.mark_failed(&worker.advert);
                Err(CallError::Lost(RemoteError::new(
                    ErrorKind::Unavailable,
                    format!(
                        "worker {} went away before answering",
                        worker.advert.node_id
                    ),
                )))
            }
        }
    }

    /// Counts prompt tokens on a worker serving the model.
    pub async fn count_tokens(&self, request: &ChatRequest) -> Result<u32, ForwardError> {
        let frame = encode(&WireRequest::CountTokens(request.clone()))?;
        let frame = &frame;
        retry(MAX_ATTEMPTS, &HashSet::new(), |tried| async move {
            // Through admission like a chat: a full cluster queues or refuses token counts too.
            let admitted = self
                .admission
                .admit(&self.registry, &*self.policy, request, &tried)
                .await?;
            let Some(worker) = admitted else {
                return Ok(Step::NoCandidate);
            };
            let outcome = match self.call(&worker, frame, COUNT_TIMEOUT).await {
                Ok(WireReply::TokenCount { tokens }) => {
                    self.registry.record_success(&worker.advert);
                    Attempt::Done(tokens)
                }
                Ok(WireReply::Error(error)) => {
                    if is_worker_fault(error.kind) {
                        self.registry.record_fault(&worker.advert);
                    }
                    Attempt::from_error(error)
                }
                Ok(other) => {
                    self.registry.mark_failed(&worker.advert);
                    Attempt::Retry(RemoteError::new(
                        ErrorKind::Upstream,
                        format!(
                            "worker {} sent an unexpected `{}` reply",
                            worker.advert.node_id,
                            reply_kind(&other)
                        ),
                    ))
                }
                Err(CallError::Lost(error)) => Attempt::Retry(error),
                Err(CallError::TimedOut) => {
                    self.registry.mark_failed(&worker.advert);
                    Attempt::Retry(RemoteError::new(
                        ErrorKind::Unavailable,
                        format!(
                            "worker {} did not answer within {COUNT_TIMEOUT:?}",
                            worker.advert.node_id
                        ),
                    ))
                }
            };
            Ok(Step::Tried {
                worker: worker.advert.node_id.clone(),
                outcome,
            })
        })
        .await
    }

    /// Embeds texts on a worker serving the embedding model, retrying elsewhere when a worker
    /// goes away (embedding has no side effects). Through admission like a chat.
    pub async fn embed(&self, request: &EmbedRequest) -> Result<Embeddings, ForwardError> {
        let frame = encode(&WireRequest::Embed(request.clone()))?;
        let frame = &frame;
        let timeout = self.timeouts.first_output;
        // What the routing policy sees: the model alone (no conversation to keep together).
        let routed = &ChatRequest {
            model: request.model.clone(),
            ..ChatRequest::default()
        };
        retry(MAX_ATTEMPTS, &HashSet::new(), |tried| async move {
            let admitted = self
                .admission
                .admit_among(&self.registry, &*self.policy, routed, || {
                    candidates::for_embedding(&self.registry, &request.model, &tried)
                })
                .await?;
            let Some(worker) = admitted else {
                return Ok(Step::NoCandidate);
            };
            let node = &worker.advert.node_id;
            let outcome = match self.call(&worker, frame, timeout).await {
                Ok(WireReply::Embeddings(embeddings))
                    if embeddings.vectors.len() == request.inputs.len() =>
                {
                    self.registry.record_success(&worker.advert);
                    Attempt::Done(embeddings)
                }
                Ok(WireReply::Error(error)) => {
                    if is_worker_fault(error.kind) {
                        self.registry.record_fault(&worker.advert);
                    }
                    Attempt::from_error(error)
                }
                Ok(other) => {
                    // A reply no embedding request could produce: distrust the worker.
                    let what = match &other {
                        WireReply::Embeddings(e) => format!(
                            "{} vectors for {} inputs",
                            e.vectors.len(),
                            request.inputs.len()
                        ),
                        other => format!("an unexpected `{}` reply", reply_kind(other)),
                    };
                    warn!(worker = %node, fault = %what, "worker failed a request: routing around it");
                    self.registry.mark_failed(&worker.advert);
                    Attempt::Retry(RemoteError::new(
                        ErrorKind::Upstream,
                        format!("worker {node} sent {what}"),
                    ))
                }
                Err(CallError::Lost(error)) => Attempt::Retry(error),
                Err(CallError::TimedOut) => {
                    self.registry.mark_failed(&worker.advert);
                    Attempt::Retry(RemoteError::new(
                        ErrorKind::Unavailable,
                        format!("worker {node} did not answer within {timeout:?}"),
                    ))
                }
            };
            Ok(Step::Tried {
                worker: node.clone(),
                outcome,
            })
        })
        .await
    }

    /// Runs a tool on `worker`, a tools worker that has it. Not retried here: a tool may have
    /// side effects, so the caller decides.
    pub async fn execute_tool(
        &self,
        worker: &WorkerView,
        call: &ToolCallRequest,
        timeout: Duration,
    ) -> Result<ToolCallResult, RemoteError> {
        let frame = encode(&WireRequest::ExecuteTool(call.clone())).map_err(|e| match e {
            ForwardError::Remote(remote) => remote,
            other => RemoteError::invalid(other.to_string()),
        })?;
        match self.call(worker, &frame, timeout).await {
            Ok(WireReply::ToolResult(result)) => Ok(result),
            Ok(WireReply::Error(error)) => Err(error),
            Ok(other) => {
                self.registry.mark_failed(&worker.advert);
                Err(RemoteError::new(
                    ErrorKind::Upstream,
                    format!(
                        "tools worker {} sent an unexpected `{}` reply",
                        worker.advert.node_id,
                        reply_kind(&other)
                    ),
                ))
            }
            Err(CallError::TimedOut) => Err(RemoteError::new(
                ErrorKind::Timeout,
                format!("tool `{}` timed out", call.tool),
            )),
            Err(CallError::Lost(_)) => Err(RemoteError::new(
                ErrorKind::Unavailable,
                format!("tools worker {} went away mid-call", worker.advert.node_id),
            )),
        }
    }
}

/// Whether a worker's error is its own fault (counted by its circuit breaker): not the
/// caller's bad request, an unknown model or tool, or a worker that is merely full.
fn is_worker_fault(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::Internal | ErrorKind::Timeout | ErrorKind::Unavailable
    )
}

#[cfg(test)]
mod tests;
