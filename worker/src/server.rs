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

use auxot_common::chat::{ChatEvent, ChatRequest, AUTO_MODEL};
use auxot_common::error::{ErrorKind, RemoteError};
use auxot_common::mesh::quic::QuicEndpoint;
use auxot_common::wire::{read_frame, write_frame, WireReply, WireRequest};
use quinn::{RecvStream, SendStream};
use tokio::sync::Notify;
use tracing::{debug, info, warn};

use crate::engine::convert::image_by_url;
use crate::engine::Engine;
use crate::tools::ToolRunner;

/// What every stream handler shares.
pub struct WorkerState {
    /// This worker's node id, for messages and `Accepted`.
    pub node_id: String,
    /// Set once loading ends: the model engine, or `None` on a tools-only worker.
    engine: OnceLock<Option<Arc<dyn Engine>>>,
    /// The tools, known from the start.
    pub tools: Option<Arc<ToolRunner>>,
    /// Requests being served; gossiped as the load figure.
    in_flight: AtomicU32,
    /// Set when draining: new requests are refused so routers retry elsewhere.
    draining: AtomicBool,
    /// Woken whenever a request ends, for the drain wait.
    idle: Notify,
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
        }
    }

    /// Hands over the loaded engine (`None`: this worker serves no model). Only the first call
    /// counts.
    pub fn set_engine(&self, engine: Option<Arc<dyn Engine>>) {
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
    if state.draining.load(Ordering::SeqCst) {
        let error = RemoteError::new(
            ErrorKind::Unavailable,
            format!("worker {} is draining", state.node_id),
        );
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
        reply_error(&mut send, image_by_url()).await;
        return;
    }
    match request {
        WireRequest::Chat(request) => match chat_engine_for(&state, &request.model) {
            Ok(engine) => chat(&state, engine, request, send).await,
            Err(error) => reply_error(&mut send, error).await,
        },
        WireRequest::Embed(request) => {
            let reply = match engine_for(&state, &request.model) {
                Ok(engine) => {
                    // The caller gave up: stop embedding rather than finish for nobody.
                    let stopped = send.stopped();
                    tokio::select! {
                        result = engine.embed(&request) => match result {
                            Ok(embeddings) => WireReply::Embeddings(embeddings),
                            Err(error) => WireReply::Error(error),
                        },
                        _ = stopped => return,
                    }
                }
                Err(error) => WireReply::Error(error),
            };
            let _ = write_frame(&mut send, &reply).await;
            let _ = send.finish();
        }
        WireRequest::CountTokens(request) => {
            let reply = match chat_engine_for(&state, &request.model) {
                Ok(engine) => match engine.count_tokens(&request).await {
                    Ok(tokens) => WireReply::TokenCount { tokens },
                    Err(error) => WireReply::Error(error),
                },
                Err(error) => WireReply::Error(error),
            };
            let _ = write_frame(&mut send, &reply).await;
            let _ = send.finish();
        }
        WireRequest::ExecuteTool(call) => match &state.tools {
            Some(tools) => {
                // A router that gives up (timeout, client gone) stops the stream: stop the tool.
                let stopped = send.stopped();
                tokio::select! {
                    result = tools.execute(&call) => {
                        let _ = write_frame(&mut send, &WireReply::ToolResult(result)).await;
                        let _ = send.finish();
                    }
                    _ = stopped => debug!(tool = %call.tool, "router cancelled the tool call"),
                }
            }
            None => {
                let error = RemoteError::new(
                    ErrorKind::NotFound,
                    format!("worker {} serves no tools", state.node_id),
                );
                reply_error(&mut send, error).await;
            }
        },
    }
}

/// The engine for a chat on `model`, refusing an embedding model.
fn chat_engine_for(state: &WorkerState, model: &str) -> Result<Arc<dyn Engine>, RemoteError> {
    let engine = engine_for(state, model)?;
    if !engine.model().kind.is_chat() {
        return Err(RemoteError::invalid(format!(
            "model `{}` is an embedding model: use the embeddings endpoint",
            engine.model().id
        )));
    }
    Ok(engine)
}

fn engine_for(state: &WorkerState, model: &str) -> Result<Arc<dyn Engine>, RemoteError> {
    let engine = match state.engine.get() {
        Some(Some(engine)) => engine,
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
    let id = &engine.model().id;
    if model != AUTO_MODEL && model != id.as_str() {
        return Err(RemoteError::new(
            ErrorKind::NotFound,
            format!("worker {} serves `{id}`, not `{model}`", state.node_id),
        ));
    }
    Ok(engine.clone())
}

async fn chat(
    state: &WorkerState,
    engine: Arc<dyn Engine>,
    request: ChatRequest,
    mut send: SendStream,
) {
    let accepted = WireReply::Accepted {
        worker: state.node_id.clone(),
        model: engine.model().id.clone(),
    };
    if write_frame(&mut send, &accepted).await.is_err() {
        return;
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut generation = tokio::spawn(async move { engine.chat(request, tx).await });
    let stopped = send.stopped();
    tokio::pin!(stopped);
    let mut ended = false;
    loop {
        tokio::select! {
            _ = &mut stopped => {
                debug!("router cancelled the request");
                break;
            }
            event = rx.recv() => match event {
                Some(event) => {
                    ended = event.is_last();
                    if write_frame(&mut send, &WireReply::Event(event)).await.is_err() {
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
}
