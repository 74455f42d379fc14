//! Sending requests to workers over QUIC, with retries where they are safe.
//!
//! A chat request may be retried on another worker as long as nothing has reached the client.
//! The forwarder therefore reads ahead until the first piece of generated output before handing
//! the stream to the HTTP layer: a worker that dies, drains or is full before that point costs a
//! retry, not an error. Client errors (bad request, unknown model) are never retried.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use auxot_common::chat::{ChatEvent, ChatRequest, Usage, AUTO_MODEL};
use auxot_common::error::{ErrorKind, RemoteError};
use auxot_common::mesh::node::WorkerAdvert;
use auxot_common::mesh::quic::{ConnectionPool, Peer};
use auxot_common::tools::{ToolCallRequest, ToolCallResult};
use auxot_common::wire::{
    encode_frame, read_frame, FrameError, WireReply, WireRequest, CODE_CANCELLED, MAX_FRAME_BYTES,
};
use quinn::{RecvStream, SendStream, VarInt};
use tracing::{debug, warn};

use crate::registry::{InFlightGuard, Registry, WorkerView};
use crate::routing::Policy;

/// Workers tried for one request before giving up.
const MAX_ATTEMPTS: usize = 3;

/// Longest wait for a worker's first output (a long prefill on a busy CPU worker can take
/// minutes); past it the worker counts as wedged and the request moves on.
const FIRST_OUTPUT_TIMEOUT: Duration = Duration::from_secs(300);
/// Longest silence between two events of a generation before it is ended with an error.
const STALL_TIMEOUT: Duration = Duration::from_secs(300);

/// Encodes a request for the wire once, so a request too large to send is the caller's 400 and
/// never a worker's failure.
fn encode(request: &WireRequest) -> Result<Vec<u8>, RouteError> {
    encode_frame(request).map_err(|e| {
        RouteError::Remote(match e {
            FrameError::TooLarge(n) => RemoteError::invalid(format!(
                "the request is {n} bytes once encoded for a worker; the limit is {MAX_FRAME_BYTES}"
            )),
            other => RemoteError::internal(format!("encoding the request: {other}")),
        })
    })
}

/// How long and how many requests may wait for capacity when every worker is full.
#[derive(Debug, Clone, Copy)]
pub struct AdmissionLimits {
    pub queue_timeout: Duration,
    pub max_queued: usize,
}

impl Default for AdmissionLimits {
    fn default() -> Self {
        AdmissionLimits {
            queue_timeout: Duration::from_secs(5),
            max_queued: 256,
        }
    }
}

/// A place in the admission queue, released on drop.
struct Queued<'a>(&'a AtomicUsize);

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Why a request could not be forwarded.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RouteError {
    #[error("no worker is ready")]
    NoWorkers,
    #[error("model `{requested}` is not served by any ready worker (available: {available})")]
    UnknownModel {
        requested: String,
        available: String,
    },
    #[error("model `{0}` does not accept images")]
    NoVision(String),
    #[error("every worker serving `{0}` is at capacity; retry shortly")]
    Overloaded(String),
    #[error("{0}")]
    Remote(RemoteError),
}

impl RouteError {
    /// The canonical error kind, which fixes the status and dialect error type.
    pub fn to_remote(&self) -> RemoteError {
        match self {
            RouteError::Remote(e) => e.clone(),
            RouteError::NoWorkers => RemoteError::new(ErrorKind::Unavailable, self.to_string()),
            RouteError::UnknownModel { .. } => {
                RemoteError::new(ErrorKind::NotFound, self.to_string())
            }
            RouteError::NoVision(_) => RemoteError::invalid(self.to_string()),
            RouteError::Overloaded(_) => RemoteError::new(ErrorKind::Overloaded, self.to_string()),
        }
    }
}

/// Picks workers and opens request streams to them.
pub struct Forwarder {
    registry: Arc<Registry>,
    pool: ConnectionPool,
    policy: Box<dyn Policy>,
    limits: AdmissionLimits,
    /// Requests waiting for capacity now.
    queued: AtomicUsize,
}

/// A generation in progress on a worker.
pub struct ChatStream {
    /// Model that serves the request (the real id when `auto` was asked for).
    pub model: String,
    /// Node id of the worker.
    pub worker: String,
    send: SendStream,
    recv: RecvStream,
    /// Events read ahead while deciding whether to retry.
    pending: VecDeque<ChatEvent>,
    finished: bool,
    /// Set when the worker vanished mid-generation (as opposed to reporting an error).
    lost: bool,
    registry: Arc<Registry>,
    advert: WorkerAdvert,
    _in_flight: InFlightGuard,
}

impl ChatStream {
    /// The next event; `None` after the last. A lost worker becomes an `Error` event.
    pub async fn next(&mut self) -> Option<ChatEvent> {
        if let Some(event) = self.pending.pop_front() {
            self.note(&event);
            return Some(event);
        }
        if self.finished {
            return None;
        }
        let frame = tokio::time::timeout(STALL_TIMEOUT, read_frame::<_, WireReply>(&mut self.recv));
        let event = match frame.await {
            Ok(Ok(Some(WireReply::Event(event)))) => event,
            Ok(Ok(Some(WireReply::Error(error)))) => ChatEvent::Error(error),
            Ok(Ok(Some(other))) => ChatEvent::Error(RemoteError::internal(format!(
                "worker {} sent an unexpected reply: {other:?}",
                self.worker
            ))),
            Ok(Ok(None)) => self.lose("closed the stream before finishing"),
            Ok(Err(err)) => self.lose(&err.to_string()),
            Err(_) => self.lose(&format!("no event for {STALL_TIMEOUT:?}")),
        };
        self.note(&event);
        Some(event)
    }

    /// Whether the worker vanished mid-generation; the generation can be redone elsewhere if
    /// nothing reached the client yet.
    pub fn worker_lost(&self) -> bool {
        self.lost
    }

    fn lose(&mut self, why: &str) -> ChatEvent {
        self.lost = true;
        self.registry.mark_failed(&self.advert);
        ChatEvent::Error(RemoteError::new(
            ErrorKind::Upstream,
            format!("lost the worker {} mid-generation: {why}", self.worker),
        ))
    }

    fn note(&mut self, event: &ChatEvent) {
        if matches!(event, ChatEvent::Finish { .. } | ChatEvent::Error(_)) {
            self.finished = true;
        }
    }
}

impl Drop for ChatStream {
    fn drop(&mut self) {
        if !self.finished {
            // The caller went away: tell the worker to stop generating.
            let _ = self.recv.stop(VarInt::from_u32(CODE_CANCELLED));
            let _ = self.send.reset(VarInt::from_u32(CODE_CANCELLED));
        }
    }
}

/// How one attempt ended.
enum Attempt<T> {
    Done(T),
    /// Another worker may succeed.
    Retry(RemoteError),
    /// No worker will succeed.
    Fail(RemoteError),
}

impl Forwarder {
    pub fn new(
        registry: Arc<Registry>,
        pool: ConnectionPool,
        policy: Box<dyn Policy>,
        limits: AdmissionLimits,
    ) -> Self {
        Forwarder {
            registry,
            pool,
            policy,
            limits,
            queued: AtomicUsize::new(0),
        }
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Candidates for `request`, or why there are none.
    fn candidates(
        &self,
        request: &ChatRequest,
        tried: &HashSet<String>,
    ) -> Result<Vec<Arc<WorkerView>>, RouteError> {
        let routable = self.registry.routable();
        let with_model: Vec<Arc<WorkerView>> = routable
            .iter()
            .filter(|w| !w.advert.models.is_empty())
            .filter(|w| request.model == AUTO_MODEL || w.advert.serves(&request.model))
            .cloned()
            .collect();
        if with_model.is_empty() {
            if routable.iter().all(|w| w.advert.models.is_empty()) {
                return Err(RouteError::NoWorkers);
            }
            let available: Vec<String> = self.registry.models().into_iter().map(|m| m.id).collect();
            return Err(RouteError::UnknownModel {
                requested: request.model.clone(),
                available: available.join(", "),
            });
        }
        let mut fitting = with_model;
        if request.has_images() {
            fitting.retain(|w| {
                w.advert
                    .models
                    .iter()
                    .any(|m| m.vision && (request.model == AUTO_MODEL || m.id == request.model))
            });
            if fitting.is_empty() {
                return Err(RouteError::NoVision(request.model.clone()));
            }
        }
        fitting.retain(|w| !tried.contains(&w.advert.node_id));
        Ok(fitting)
    }

    /// Whether some ready worker could serve `request` (model, images), without choosing one.
    pub fn preflight(&self, request: &ChatRequest) -> Result<(), RouteError> {
        self.candidates(request, &HashSet::new()).map(|_| ())
    }

    /// Chooses a worker for `request` that has not been tried yet, without waiting: the policy's
    /// choice among those with room, or among all when every one is full.
    fn pick(
        &self,
        request: &ChatRequest,
        tried: &HashSet<String>,
    ) -> Result<Option<Arc<WorkerView>>, RouteError> {
        let candidates = self.candidates(request, tried)?;
        if candidates.is_empty() {
            return Ok(None);
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
        Ok(Some(pool[self.policy.select(pool)].clone()))
    }

    /// Chooses a worker with room for a generation. When every candidate is at capacity the
    /// request waits (bounded in time and in number) for a slot, then is refused as overloaded.
    async fn admit(
        &self,
        request: &ChatRequest,
        tried: &HashSet<String>,
    ) -> Result<Option<Arc<WorkerView>>, RouteError> {
        let deadline = tokio::time::Instant::now() + self.limits.queue_timeout;
        let changed = self.registry.changed();
        let mut place = None;
        loop {
            // Registered before looking, so a slot freed in between still wakes us.
            let notified = changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let candidates = self.candidates(request, tried)?;
            if candidates.is_empty() {
                return Ok(None);
            }
            let with_room: Vec<Arc<WorkerView>> =
                candidates.into_iter().filter(|w| w.has_room()).collect();
            if !with_room.is_empty() {
                return Ok(Some(with_room[self.policy.select(&with_room)].clone()));
            }
            if place.is_none() {
                if self.queued.fetch_add(1, Ordering::SeqCst) >= self.limits.max_queued {
                    self.queued.fetch_sub(1, Ordering::SeqCst);
                    return Err(RouteError::Overloaded(request.model.clone()));
                }
                place = Some(Queued(&self.queued));
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(RouteError::Overloaded(request.model.clone()));
            }
        }
    }

    /// Starts a generation, retrying on other workers until one produces output.
    pub async fn chat(&self, request: &ChatRequest) -> Result<ChatStream, RouteError> {
        self.chat_excluding(request, &HashSet::new()).await
    }

    /// Like [`Self::chat`], never using the workers in `exclude`.
    pub async fn chat_excluding(
        &self,
        request: &ChatRequest,
        exclude: &HashSet<String>,
    ) -> Result<ChatStream, RouteError> {
        let frame = encode(&WireRequest::Chat(request.clone()))?;
        let mut tried = exclude.clone();
        let mut last = None;
        for _ in 0..MAX_ATTEMPTS {
            let Some(worker) = self.admit(request, &tried).await? else {
                break;
            };
            tried.insert(worker.advert.node_id.clone());
            match self.try_chat(&worker, request, &frame).await {
                Attempt::Done(stream) => return Ok(stream),
                Attempt::Fail(error) => return Err(RouteError::Remote(error)),
                Attempt::Retry(error) => {
                    debug!(worker = %worker.advert.node_id, %error, "retrying on another worker");
                    last = Some(error);
                }
            }
        }
        Err(RouteError::Remote(last.unwrap_or_else(|| {
            RemoteError::new(ErrorKind::Unavailable, "no worker could take the request")
        })))
    }

    /// Opens a stream to `worker` and sends an encoded request; a failure here is the
    /// transport's (the request was checked when it was encoded), so the worker becomes suspect.
    async fn open(
        &self,
        worker: &WorkerView,
        frame: &[u8],
    ) -> Result<(SendStream, RecvStream), RemoteError> {
        let advert = &worker.advert;
        let opened = self
            .pool
            .open(Peer {
                node: &advert.node_id,
                generation: advert.generation,
                addr: advert.quic_addr,
            })
            .await;
        let (mut send, recv) = opened.map_err(|e| {
            warn!(worker = %advert.node_id, error = %e, "worker unreachable");
            self.registry.mark_failed(advert);
            RemoteError::new(
                ErrorKind::Unavailable,
                format!("worker {} unreachable: {e}", advert.node_id),
            )
        })?;
        send.write_all(frame).await.map_err(|e| {
            self.registry.mark_failed(advert);
            RemoteError::new(
                ErrorKind::Unavailable,
                format!("sending to worker {}: {e}", advert.node_id),
            )
        })?;
        Ok((send, recv))
    }

    async fn try_chat(
        &self,
        worker: &WorkerView,
        request: &ChatRequest,
        frame: &[u8],
    ) -> Attempt<ChatStream> {
        let in_flight = self.registry.enter(worker);
        let (send, recv) = match self.open(worker, frame).await {
            Ok(streams) => streams,
            Err(error) => return Attempt::Retry(error),
        };
        let mut stream = ChatStream {
            model: request.model.clone(),
            worker: worker.advert.node_id.clone(),
            send,
            recv,
            pending: VecDeque::new(),
            finished: false,
            lost: false,
            registry: self.registry.clone(),
            advert: worker.advert.clone(),
            _in_flight: in_flight,
        };
        // Read ahead to the first output; until then a failure is retried elsewhere. An early
        // prompt count (usage with no completion tokens) is not output.
        let deadline = tokio::time::Instant::now() + FIRST_OUTPUT_TIMEOUT;
        loop {
            let frame =
                tokio::time::timeout_at(deadline, read_frame::<_, WireReply>(&mut stream.recv));
            let Ok(frame) = frame.await else {
                stream.finished = true;
                self.registry.mark_failed(&worker.advert);
                return Attempt::Retry(RemoteError::new(
                    ErrorKind::Unavailable,
                    format!(
                        "worker {} produced nothing within {FIRST_OUTPUT_TIMEOUT:?}",
                        worker.advert.node_id
                    ),
                ));
            };
            match frame {
                Ok(Some(WireReply::Event(ChatEvent::Start { model, worker }))) => {
                    stream.model = model;
                    stream.worker = worker;
                }
                Ok(Some(WireReply::Event(
                    event @ ChatEvent::Usage(Usage {
                        completion_tokens: 0,
                        ..
                    }),
                ))) => {
                    stream.pending.push_back(event);
                }
                Ok(Some(WireReply::Event(ChatEvent::Error(error))))
                | Ok(Some(WireReply::Error(error))) => {
                    stream.finished = true;
                    return classify(error);
                }
                Ok(Some(WireReply::Event(event))) => {
                    stream.pending.push_back(event);
                    return Attempt::Done(stream);
                }
                Ok(Some(other)) => {
                    stream.finished = true;
                    return Attempt::Fail(RemoteError::internal(format!(
                        "unexpected reply {other:?}"
                    )));
                }
                Ok(None) | Err(_) => {
                    stream.finished = true;
                    self.registry.mark_failed(&worker.advert);
                    return Attempt::Retry(RemoteError::new(
                        ErrorKind::Unavailable,
                        format!(
                            "worker {} went away before answering",
                            worker.advert.node_id
                        ),
                    ));
                }
            }
        }
    }

    /// Counts prompt tokens on a worker serving the model.
    pub async fn count_tokens(&self, request: &ChatRequest) -> Result<u32, RouteError> {
        let frame = encode(&WireRequest::CountTokens(request.clone()))?;
        self.unary(request, &frame, |reply| match reply {
            WireReply::TokenCount { tokens } => Ok(tokens),
            other => Err(RemoteError::internal(format!("unexpected reply {other:?}"))),
        })
        .await
    }

    /// One request, one reply, retried like a chat.
    async fn unary<T>(
        &self,
        request: &ChatRequest,
        frame: &[u8],
        extract: impl Fn(WireReply) -> Result<T, RemoteError>,
    ) -> Result<T, RouteError> {
        let mut tried = HashSet::new();
        let mut last = None;
        for _ in 0..MAX_ATTEMPTS {
            let Some(worker) = self.pick(request, &tried)? else {
                break;
            };
            tried.insert(worker.advert.node_id.clone());
            let _in_flight = self.registry.enter(&worker);
            let (_send, mut recv) = match self.open(&worker, frame).await {
                Ok(streams) => streams,
                Err(error) => {
                    last = Some(error);
                    continue;
                }
            };
            let reply =
                tokio::time::timeout(FIRST_OUTPUT_TIMEOUT, read_frame::<_, WireReply>(&mut recv));
            let outcome = match reply.await {
                Ok(Ok(Some(WireReply::Error(error)))) => classify(error),
                Ok(Ok(Some(reply))) => match extract(reply) {
                    Ok(value) => Attempt::Done(value),
                    Err(error) => Attempt::Fail(error),
                },
                Ok(Ok(None)) | Ok(Err(_)) | Err(_) => {
                    self.registry.mark_failed(&worker.advert);
                    Attempt::Retry(RemoteError::new(
                        ErrorKind::Unavailable,
                        format!(
                            "worker {} went away before answering",
                            worker.advert.node_id
                        ),
                    ))
                }
            };
            match outcome {
                Attempt::Done(value) => return Ok(value),
                Attempt::Fail(error) => return Err(RouteError::Remote(error)),
                Attempt::Retry(error) => last = Some(error),
            }
        }
        Err(RouteError::Remote(last.unwrap_or_else(|| {
            RemoteError::new(ErrorKind::Unavailable, "no worker could take the request")
        })))
    }

    /// Runs a tool on `worker`, a tools worker that has it.
    pub async fn execute_tool(
        &self,
        worker: &WorkerView,
        call: &ToolCallRequest,
        timeout: Duration,
    ) -> Result<ToolCallResult, RemoteError> {
        let frame = encode(&WireRequest::ExecuteTool(call.clone())).map_err(|e| e.to_remote())?;
        let _in_flight = self.registry.enter(worker);
        let (_send, mut recv) = self.open(worker, &frame).await?;
        match tokio::time::timeout(timeout, read_frame::<_, WireReply>(&mut recv)).await {
            Err(_) => Err(RemoteError::new(
                ErrorKind::Timeout,
                format!("tool `{}` timed out", call.tool),
            )),
            Ok(Ok(Some(WireReply::ToolResult(result)))) => Ok(result),
            Ok(Ok(Some(WireReply::Error(error)))) => Err(error),
            Ok(Ok(Some(other))) => {
                Err(RemoteError::internal(format!("unexpected reply {other:?}")))
            }
            Ok(Ok(None)) | Ok(Err(_)) => {
                self.registry.mark_failed(&worker.advert);
                Err(RemoteError::new(
                    ErrorKind::Unavailable,
                    format!("tools worker {} went away mid-call", worker.advert.node_id),
                ))
            }
        }
    }
}

fn classify<T>(error: RemoteError) -> Attempt<T> {
    if error.kind.is_retryable() {
        Attempt::Retry(error)
    } else {
        Attempt::Fail(error)
    }
}
