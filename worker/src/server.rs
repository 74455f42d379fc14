//! The worker's QUIC server: one task per request stream.
//!
//! A chat the worker takes is answered with `Accepted` (which worker, which model), then the
//! engine's events as they come; a chat it refuses (draining, another model, still loading,
//! malformed) with one `Error` before any work, so the router may try elsewhere. The worker
//! watches the stream for the router's `STOP` while it generates, so a caller who disconnects
//! frees the engine even during a long prefill, when nothing is being written.
//!
//! The server accepts from the moment the worker joins; the engine arrives when it has loaded
//! ([`WorkerState::set_engine`]), and until then chats are refused as unavailable.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use auxot_common::chat::{ChatEvent, ChatRequest, Usage};
use auxot_common::error::{ErrorKind, RemoteError};
use auxot_common::mesh::node::ModelInfo;
use auxot_common::mesh::quic::QuicEndpoint;
use auxot_common::tools::ToolCallResult;
use auxot_common::wire::{read_frame, write_frame, WireReply, WireRequest};
use quinn::{RecvStream, SendStream};
use tokio::sync::Notify;
use tracing::{debug, info, warn, Instrument as _};

use crate::engine::convert::image_by_url;
use crate::engine::set::EngineSet;
use crate::engine::Engine;
use crate::metrics::{self, Metrics, Phase};
use crate::tools::ToolRunner;

/// What every stream handler shares.
pub struct WorkerState {
    /// This worker's node id, for messages and `Accepted`.
    pub node_id: String,
    /// Set once loading ends: the engines of the models served, or `None` on a tools-only
    /// worker.
    engine: OnceLock<Option<Arc<EngineSet>>>,
    /// The tools, known from the start.
    pub tools: Option<Arc<ToolRunner>>,
    /// Requests being served; gossiped as the load figure.
    in_flight: AtomicU32,
    /// Set when draining: new requests are refused so routers retry elsewhere.
    draining: AtomicBool,
    /// Woken whenever a request ends, for the drain wait.
    idle: Notify,
    /// Set when loading failed.
    failed: AtomicBool,
    /// This worker's metrics.
    pub metrics: Arc<Metrics>,
}

impl WorkerState {
    pub fn new(node_id: String, tools: Option<Arc<ToolRunner>>) -> Self {
        WorkerState {
            node_id,
            engine: OnceLock::new(),
            tools,
            in_flight: AtomicU32::new(0),
            draining: AtomicBool::new(false),
            idle: Notify::new(),
            failed: AtomicBool::new(false),
            metrics: Arc::default(),
        }
    }

    /// Loading the engine failed: the worker will never be ready.
    pub fn mark_failed(&self) {
        self.failed.store(true, Ordering::SeqCst);
    }

    /// Where the worker is in its life.
    pub fn phase(&self) -> Phase {
        if self.draining.load(Ordering::SeqCst) {
            Phase::Draining
        } else if self.engine.get().is_some() {
            Phase::Ready
        } else if self.failed.load(Ordering::SeqCst) {
            Phase::Failed
        } else {
            Phase::Loading
        }
    }

    /// The metrics' text exposition, with the current figures.
    pub fn render_metrics(&self) -> String {
        let (capacity, prefix_cache) = match self.engine.get() {
            Some(Some(engines)) => (engines.capacity(), engines.prefix_cache()),
            _ => (0, None),
        };
        self.metrics.render(&metrics::WorkerView {
            phase: self.phase(),
            in_flight: self.in_flight(),
            capacity,
            prefix_cache,
        })
    }

    /// Hands over the loaded engines (`None`: this worker serves no model). Only the first call
    /// counts.
    pub fn set_engine(&self, engine: Option<Arc<EngineSet>>) {
        let _ = self.engine.set(engine);
    }

    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Waits until no request is in flight.
    pub async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.in_flight() == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// Counts a request as in flight for as long as it lives.
struct InFlight<'a>(&'a WorkerState);

impl<'a> InFlight<'a> {
    fn enter(state: &'a WorkerState) -> Self {
        state.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(state)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.0.idle.notify_waiters();
    }
}

/// Accepts connections until the endpoint is closed.
pub async fn serve(endpoint: QuicEndpoint, state: Arc<WorkerState>) {
    while let Some(incoming) = endpoint.inner().accept().await {
        let state = state.clone();
        tokio::spawn(async move {
            let remote = incoming.remote_address();
            match incoming.await {
                Ok(conn) => {
                    debug!(%remote, "router connected");
                    while let Ok((send, recv)) = conn.accept_bi().await {
                        tokio::spawn(handle_stream(state.clone(), send, recv));
                    }
                }
                // Wrong cluster secret, or not a cluster node at all.
                Err(err) => info!(%remote, %err, "refused a QUIC connection"),
            }
        });
    }
}

async fn reply_error(send: &mut SendStream, error: RemoteError) {
    let _ = write_frame(send, &WireReply::Error(error)).await;
    let _ = send.finish();
}

/// Sends the single reply of an operation that has one and counts it under `op`; its outcome.
async fn reply_once(
    state: &WorkerState,
    send: &mut SendStream,
    op: &'static str,
    reply: &WireReply,
) -> &'static str {
    let outcome = match reply {
        WireReply::Error(error) => error.kind.as_str(),
        _ => "ok",
    };
    state.metrics.request_finished(op, outcome);
    let _ = write_frame(send, reply).await;
    let _ = send.finish();
    outcome
}

/// The operation's name in logs and metrics.
fn op_name(request: &WireRequest) -> &'static str {
    match request {
        WireRequest::Chat(_) => "chat",
        WireRequest::CountTokens(_) => "count_tokens",
        WireRequest::ExecuteTool(_) => "execute_tool",
        WireRequest::Embed(_) => "embed",
    }
}

async fn handle_stream(state: Arc<WorkerState>, mut send: SendStream, mut recv: RecvStream) {
    let request = match read_frame::<_, WireRequest>(&mut recv).await {
        Ok(Some(request)) => request,
        Ok(None) => return,
        Err(err) => {
            warn!(%err, "unreadable request frame");
            reply_error(
                &mut send,
                RemoteError::invalid(format!("unreadable request: {err}")),
            )
            .await;
            return;
        }
    };
    // Every line this request causes carries the router's request id.
    let request_id = match &request {
        WireRequest::Chat(r) | WireRequest::CountTokens(r) => r.request_id.clone(),
        WireRequest::ExecuteTool(call) => call.request_id.clone(),
        WireRequest::Embed(r) => r.request_id.clone(),
    };
    let span = tracing::info_span!("request", request_id = request_id.as_deref().unwrap_or("-"));
    serve_request(state, request, send).instrument(span).await;
}

async fn serve_request(state: Arc<WorkerState>, request: WireRequest, mut send: SendStream) {
    if state.draining.load(Ordering::SeqCst) {
        let error = RemoteError::new(
            ErrorKind::Unavailable,
            format!("worker {} is draining", state.node_id),
        );
        state.metrics.request_finished(op_name(&request), "refused");
        info!(op = op_name(&request), "refused: draining");
        reply_error(&mut send, error).await;
        return;
    }
    let _in_flight = InFlight::enter(&state);
    let chat_request = match &request {
        WireRequest::Chat(request) | WireRequest::CountTokens(request) => Some(request),
        WireRequest::ExecuteTool(_) | WireRequest::Embed(_) => None,
    };
    // Images arrive decoded; a URL would mean reaching out from the worker, which it never does.
    if chat_request.is_some_and(ChatRequest::has_unresolved_images) {
        state
            .metrics
            .request_finished(op_name(&request), ErrorKind::InvalidRequest.as_str());
        reply_error(&mut send, image_by_url()).await;
        return;
    }
    match request {
        WireRequest::Chat(request) => match chat_engine_for(&state, &request.model) {
            Ok(engine) => chat(&state, engine, request, send).await,
            Err(error) => {
                state.metrics.request_finished("chat", error.kind.as_str());
                info!(op = "chat", outcome = error.kind.as_str(), %error, "refused");
                reply_error(&mut send, error).await
            }
        },
        WireRequest::Embed(request) => {
            let reply = match engine_for(&state, &request.model, |m| !m.kind.is_chat()) {
                Ok(engine) => {
                    // The caller gave up: stop embedding rather than finish for nobody.
                    let stopped = send.stopped();
                    tokio::select! {
                        result = engine.embed(&request) => match result {
                            Ok(embeddings) => WireReply::Embeddings(embeddings),
                            Err(error) => WireReply::Error(error),
                        },
                        _ = stopped => {
                            state.metrics.request_finished("embed", "cancelled");
                            return;
                        }
                    }
                }
                Err(error) => WireReply::Error(error),
            };
            let outcome = reply_once(&state, &mut send, "embed", &reply).await;
            debug!(op = "embed", outcome, "embedded");
        }
        WireRequest::CountTokens(request) => {
            let reply = match chat_engine_for(&state, &request.model) {
                Ok(engine) => match engine.count_tokens(&request).await {
                    Ok(tokens) => WireReply::TokenCount { tokens },
                    Err(error) => WireReply::Error(error),
                },
                Err(error) => WireReply::Error(error),
            };
            let outcome = reply_once(&state, &mut send, "count_tokens", &reply).await;
            debug!(op = "count_tokens", outcome, "counted tokens");
        }
        WireRequest::ExecuteTool(call) => match &state.tools {
            Some(tools) => {
                let started = Instant::now();
                // A router that gives up (timeout, client gone) stops the stream: stop the tool.
                let stopped = send.stopped();
                let outcome = tokio::select! {
                    result = tools.execute(&call) => {
                        let outcome = match &result {
                            ToolCallResult::Ok { .. } => "ok",
                            ToolCallResult::Failed { error } => error.kind.as_str(),
                        };
                        let _ = write_frame(&mut send, &WireReply::ToolResult(result)).await;
                        let _ = send.finish();
                        outcome
                    }
                    _ = stopped => {
                        debug!(tool = %call.tool, "router cancelled the tool call");
                        "cancelled"
                    }
                };
                let took = started.elapsed();
                state.metrics.tool_called(&call.tool, outcome, took);
                info!(
                    op = "execute_tool",
                    tool = %call.tool,
                    outcome,
                    duration_ms = took.as_secs_f64() * 1000.0,
                    "tool call"
                );
            }
            None => {
                let error = RemoteError::new(
                    ErrorKind::NotFound,
                    format!("worker {} serves no tools", state.node_id),
                );
                state
                    .metrics
                    .request_finished("execute_tool", error.kind.as_str());
                reply_error(&mut send, error).await;
            }
        },
    }
}

/// The engine for a chat on `model`, refusing an embedding model (`auto`: the first chat model).
fn chat_engine_for(state: &WorkerState, model: &str) -> Result<Arc<dyn Engine>, RemoteError> {
    let engine = engine_for(state, model, |m| m.kind.is_chat())?;
    if !engine.model().kind.is_chat() {
        return Err(RemoteError::invalid(format!(
            "model `{}` is an embedding model: use the embeddings endpoint",
            engine.model().id
        )));
    }
    Ok(engine)
}

/// The engine serving `model`; for `auto`, the first whose model is `preferred` (else the first).
fn engine_for(
    state: &WorkerState,
    model: &str,
    preferred: fn(&ModelInfo) -> bool,
) -> Result<Arc<dyn Engine>, RemoteError> {
    let engines = match state.engine.get() {
        Some(Some(engines)) => engines,
        Some(None) => {
            return Err(RemoteError::new(
                ErrorKind::NotFound,
                format!("worker {} serves no model", state.node_id),
            ))
        }
        None => {
            return Err(RemoteError::new(
                ErrorKind::Unavailable,
                format!("worker {} is still loading its model", state.node_id),
            ))
        }
    };
    engines.get(model, preferred).cloned().ok_or_else(|| {
        RemoteError::new(
            ErrorKind::NotFound,
            format!(
                "worker {} serves {}, not `{model}`",
                state.node_id,
                engines.ids()
            ),
        )
    })
}

/// What one generation did, for its metrics and log line.
struct GenerationLog {
    started: Instant,
    first_output: Option<Instant>,
    usage: Option<Usage>,
    prompt_tokens: Option<u32>,
    /// `ok`, `cancelled`, or the kind of the error that ended it.
    outcome: &'static str,
}

impl GenerationLog {
    /// Notes what an event says; called for every event, so it only copies numbers.
    fn observe(&mut self, event: &ChatEvent) {
        match event {
            ChatEvent::PromptTokens { tokens } => self.prompt_tokens = Some(*tokens),
            ChatEvent::Usage(usage) => self.usage = Some(*usage),
            ChatEvent::Error(error) => self.outcome = error.kind.as_str(),
            _ => {}
        }
        if self.first_output.is_none() && event.is_output() {
            self.first_output = Some(Instant::now());
        }
    }

    fn finish(&self, metrics: &Metrics, model: &str) {
        let now = Instant::now();
        let ttft = self.first_output.map(|at| at.duration_since(self.started));
        let completion_tokens = self.usage.map(|u| u.completion_tokens);
        let prompt_tokens = self.usage.map(|u| u.prompt_tokens).or(self.prompt_tokens);
        let tpot = match (self.first_output, completion_tokens) {
            (Some(first), Some(tokens)) if tokens > 1 => {
                Some(now.duration_since(first) / (tokens - 1))
            }
            _ => None,
        };
        let duration = now.duration_since(self.started);
        metrics.generation_finished(&metrics::Generation {
            model,
            outcome: self.outcome,
            duration,
            time_to_first_token: ttft,
            time_per_output_token: tpot,
            prompt_tokens,
            completion_tokens,
        });
        info!(
            op = "chat",
            model,
            outcome = self.outcome,
            prompt_tokens,
            completion_tokens,
            ttft_ms = ttft.map(|d| d.as_secs_f64() * 1000.0),
            duration_ms = duration.as_secs_f64() * 1000.0,
            "generation"
        );
    }
}

async fn chat(
    state: &WorkerState,
    engine: Arc<dyn Engine>,
    request: ChatRequest,
    mut send: SendStream,
) {
    let mut log = GenerationLog {
        started: Instant::now(),
        first_output: None,
        usage: None,
        prompt_tokens: None,
        outcome: "ok",
    };
    let model = engine.model().id.clone();
    let accepted = WireReply::Accepted {
        worker: state.node_id.clone(),
        model: model.clone(),
    };
    if write_frame(&mut send, &accepted).await.is_err() {
        return;
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut generation = tokio::spawn(
        async move { engine.chat(request, tx).await }.instrument(tracing::Span::current()),
    );
    let stopped = send.stopped();
    tokio::pin!(stopped);
    let mut ended = false;
    loop {
        tokio::select! {
            _ = &mut stopped => {
                debug!("router cancelled the request");
                log.outcome = "cancelled";
                break;
            }
            event = rx.recv() => match event {
                Some(event) => {
                    ended = event.is_last();
                    log.observe(&event);
                    if write_frame(&mut send, &WireReply::Event(event)).await.is_err() {
                        log.outcome = "cancelled";
                        break;
                    }
                }
                None => {
                    // The engine ended without saying how (a bug or a panic in the adapter):
                    // report it as this request's failure, so the router does not take the
                    // worker for dead and redo a request that would fail the same way.
                    if !ended {
                        let outcome = (&mut generation).await;
                        let why = match outcome {
                            Err(join) if join.is_panic() => "the engine panicked on this request",
                            _ => "the engine ended the generation without finishing it",
                        };
                        warn!(why, "generation failed");
                        log.outcome = ErrorKind::Internal.as_str();
                        let error = ChatEvent::Error(RemoteError::internal(why));
                        let _ = write_frame(&mut send, &WireReply::Event(error)).await;
                    }
                    let _ = send.finish();
                    break;
                }
            }
        }
    }
    // Dropping the receiver tells the engine to stop; wait for it so the in-flight count only
    // drops once the engine has really let go of the sequence.
    drop(rx);
    if !generation.is_finished() {
        let _ = generation.await;
    }
    log.finish(&state.metrics, &model);
}
