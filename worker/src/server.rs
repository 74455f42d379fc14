//! The worker's QUIC server: one task per request stream.
//!
//! A chat stream answers with a `Start` event, then the engine's events as they come. The
//! worker watches the stream for the router's `STOP` while it generates, so a caller who
//! disconnects frees the engine even during a long prefill, when nothing is being written.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

use auxot_common::chat::{ChatEvent, ChatRequest, AUTO_MODEL};
use auxot_common::error::{ErrorKind, RemoteError};
use auxot_common::mesh::quic::QuicEndpoint;
use auxot_common::wire::{read_frame, write_frame, WireReply, WireRequest};
use quinn::{RecvStream, SendStream};
use tokio::sync::Notify;
use tracing::{debug, info, warn};

use crate::engine::Engine;
use crate::tools::ToolRunner;

/// What every stream handler shares.
pub struct WorkerState {
    pub node_id: String,
    /// The model engine, absent on a tools-only worker.
    pub engine: Option<Arc<dyn Engine>>,
    pub tools: Option<Arc<ToolRunner>>,
    /// Requests being served; gossiped as the load figure.
    in_flight: AtomicU32,
    /// Set when draining: new requests are refused so routers retry elsewhere.
    draining: AtomicBool,
    /// Woken whenever a request ends, for the drain wait.
    idle: Notify,
}

impl WorkerState {
    pub fn new(
        node_id: String,
        engine: Option<Arc<dyn Engine>>,
        tools: Option<Arc<ToolRunner>>,
    ) -> Self {
        WorkerState {
            node_id,
            engine,
            tools,
            in_flight: AtomicU32::new(0),
            draining: AtomicBool::new(false),
            idle: Notify::new(),
        }
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
    match request {
        WireRequest::Chat(request) => match engine_for(&state, &request) {
            Ok(engine) => chat(&state, engine, request, send).await,
            Err(error) => reply_error(&mut send, error).await,
        },
        WireRequest::CountTokens(request) => {
            let reply = match engine_for(&state, &request) {
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

fn engine_for(state: &WorkerState, request: &ChatRequest) -> Result<Arc<dyn Engine>, RemoteError> {
    let Some(engine) = &state.engine else {
        return Err(RemoteError::new(
            ErrorKind::NotFound,
            format!("worker {} serves no model", state.node_id),
        ));
    };
    let id = &engine.model().id;
    if request.model != AUTO_MODEL && &request.model != id {
        return Err(RemoteError::new(
            ErrorKind::NotFound,
            format!(
                "worker {} serves `{id}`, not `{}`",
                state.node_id, request.model
            ),
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
    let start = ChatEvent::Start {
        model: engine.model().id.clone(),
        worker: state.node_id.clone(),
    };
    if write_frame(&mut send, &WireReply::Event(start))
        .await
        .is_err()
    {
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
                    ended = matches!(event, ChatEvent::Finish { .. } | ChatEvent::Error(_));
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
