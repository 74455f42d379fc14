//! Sending requests to workers, with retries where they are safe.
//!
//! A chat request may be retried on another worker as long as nothing has reached the client.
//! The forwarder therefore reads ahead until the first piece of generated output before handing
//! the stream to the generation layer: a worker that dies, drains or is full before that point
//! costs a retry, not an error. Client errors (bad request, unknown model) are never retried.
//!
//! Jobs are split by file: [`candidates`] (who could serve it), [`admission`] (waiting for
//! room), [`transport`] (how frames travel), [`reply`] (reading what comes back), [`retry`]
//! (trying the next worker) and [`stream`] (a generation in progress).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use auxot_common::chat::{ChatEvent, ChatRequest};
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

/// Longest wait for a worker's first output (a long prefill on a busy CPU worker can take
/// minutes); past it the worker counts as wedged and the request moves on.
const FIRST_OUTPUT_TIMEOUT: Duration = Duration::from_secs(300);

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
        }
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
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
            let admitted = self
                .admission
                .admit(&self.registry, &*self.policy, request, &tried)
                .await?;
            let Some(worker) = admitted else {
                return Ok(Step::NoCandidate);
            };
            Ok(Step::Tried {
                worker: worker.advert.node_id.clone(),
                outcome: self.try_chat(&worker, request, frame).await,
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
        );
        // Until output exists a failure is retried elsewhere. The prompt count is not output.
        let deadline = Instant::now() + FIRST_OUTPUT_TIMEOUT;
        let node = &worker.advert.node_id;
        loop {
            let lost = match next_reply(stream.replies(), deadline).await {
                Reply::Frame(WireReply::Accepted { model, .. }) => {
                    stream.model = model;
                    continue;
                }
                Reply::Frame(WireReply::Event(event @ ChatEvent::PromptTokens { .. })) => {
                    stream.push_pending(event);
                    continue;
                }
                Reply::Frame(WireReply::Event(ChatEvent::Error(error)))
                | Reply::Frame(WireReply::Error(error)) => {
                    stream.mark_finished();
                    return Attempt::from_error(error);
                }
                Reply::Frame(WireReply::Event(event)) => {
                    stream.push_pending(event);
                    return Attempt::Done(stream);
                }
                Reply::Frame(other) => {
                    stream.mark_finished();
                    return Attempt::Fail(RemoteError::internal(format!(
                        "worker {node} sent an unexpected reply: {other:?}"
                    )));
                }
                Reply::TimedOut => {
                    format!("worker {node} produced nothing within {FIRST_OUTPUT_TIMEOUT:?}")
                }
                Reply::Finished | Reply::Broken(_) => {
                    format!("worker {node} went away before answering")
                }
            };
            stream.mark_finished();
            self.registry.mark_failed(&worker.advert);
            return Attempt::Retry(RemoteError::new(ErrorKind::Unavailable, lost));
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
            let Some(worker) = Admission::pick(&self.registry, &*self.policy, request, &tried)?
            else {
                return Ok(Step::NoCandidate);
            };
            let outcome = match self.call(&worker, frame, FIRST_OUTPUT_TIMEOUT).await {
                Ok(WireReply::TokenCount { tokens }) => Attempt::Done(tokens),
                Ok(WireReply::Error(error)) => Attempt::from_error(error),
                Ok(other) => {
                    Attempt::Fail(RemoteError::internal(format!("unexpected reply {other:?}")))
                }
                Err(CallError::Lost(error)) => Attempt::Retry(error),
                Err(CallError::TimedOut) => {
                    self.registry.mark_failed(&worker.advert);
                    Attempt::Retry(RemoteError::new(
                        ErrorKind::Unavailable,
                        format!(
                            "worker {} did not answer within {FIRST_OUTPUT_TIMEOUT:?}",
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
    /// goes away (embedding has no side effects).
    pub async fn embed(&self, request: &EmbedRequest) -> Result<Embeddings, ForwardError> {
        let frame = encode(&WireRequest::Embed(request.clone()))?;
        let frame = &frame;
        retry(MAX_ATTEMPTS, &HashSet::new(), |tried| async move {
            let candidates = candidates::for_embedding(&self.registry, &request.model, &tried)?;
            if candidates.is_empty() {
                return Ok(Step::NoCandidate);
            }
            let with_room: Vec<Arc<WorkerView>> = candidates
                .iter()
                .filter(|w| w.has_room())
                .cloned()
                .collect();
            let pool = if with_room.is_empty() {
                &candidates
            } else {
                &with_room
            };
            let worker = pool[self.policy.select(pool)].clone();
            let outcome = match self.call(&worker, frame, FIRST_OUTPUT_TIMEOUT).await {
                Ok(WireReply::Embeddings(embeddings)) => Attempt::Done(embeddings),
                Ok(WireReply::Error(error)) => Attempt::from_error(error),
                Ok(other) => {
                    Attempt::Fail(RemoteError::internal(format!("unexpected reply {other:?}")))
                }
                Err(CallError::Lost(error)) => Attempt::Retry(error),
                Err(CallError::TimedOut) => Attempt::Fail(RemoteError::new(
                    ErrorKind::Timeout,
                    format!(
                        "worker {} did not answer within {FIRST_OUTPUT_TIMEOUT:?}",
                        worker.advert.node_id
                    ),
                )),
            };
            Ok(Step::Tried {
                worker: worker.advert.node_id.clone(),
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
            Ok(other) => Err(RemoteError::internal(format!("unexpected reply {other:?}"))),
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

#[cfg(test)]
mod tests;
