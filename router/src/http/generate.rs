//! The steps every chat request takes, whatever its dialect: check that some worker can serve
//! it, fetch images given by URL, start the generation (with retries, and with the server-side
//! tool loop when the request opted in), and for non-streaming answers collect it whole.

use std::collections::HashSet;
use std::sync::Arc;

use auxot_common::chat::{ChatEvent, ChatRequest};
use auxot_common::completion::Completion;
use auxot_common::error::{ErrorKind, RemoteError};

use crate::forward::ChatStream;
use crate::http::sse::{self, SseRenderer};
use crate::images::{self, PendingImage};
use crate::state::AppState;
use crate::tool_loop::{self, EventSource, MeshTools, ToolLoop};
use tracing::debug;

/// A generation in progress: one worker stream, or a loop of them with mesh tools in between.
pub enum Generation {
    Direct(Box<ChatStream>),
    Loop(Box<ToolLoop>),
}

impl Generation {
    /// The worker serving the request (the first round's, for a tool loop).
    pub fn worker(&self) -> &str {
        match self {
            Generation::Direct(stream) => &stream.worker,
            Generation::Loop(tool_loop) => tool_loop.worker(),
        }
    }
}

impl EventSource for Generation {
    fn model(&self) -> &str {
        match self {
            Generation::Direct(stream) => &stream.model,
            Generation::Loop(tool_loop) => tool_loop.model(),
        }
    }

    async fn next(&mut self) -> Option<ChatEvent> {
        match self {
            Generation::Direct(stream) => stream.next().await,
            Generation::Loop(tool_loop) => tool_loop.next().await,
        }
    }
}

/// Workers a non-streaming request is redone on when its worker vanishes mid-generation.
const MAX_REDOS: usize = 2;

/// Checks, completes and prepares a request: routable, mesh tools attached, images fetched.
async fn prepare(
    state: &Arc<AppState>,
    request: &mut ChatRequest,
    pending: Vec<PendingImage>,
    mesh: Option<&MeshTools>,
) -> Result<Option<HashSet<String>>, RemoteError> {
    // Refuse before fetching anything when no worker could take the request anyway.
    state
        .forwarder
        .preflight(request)
        .map_err(|e| e.to_remote())?;
    let mesh = tool_loop::attach(state, request, mesh)?;
    tool_loop::check_tool_choice(request)?;
    if !pending.is_empty() {
        images::fetch_all(state.image_policy, request, pending).await?;
    }
    Ok(mesh)
}

/// Starts a generation for a translated request, to be streamed.
pub async fn start(
    state: &Arc<AppState>,
    mut request: ChatRequest,
    pending: Vec<PendingImage>,
    mesh: Option<&MeshTools>,
) -> Result<Generation, RemoteError> {
    let mesh = prepare(state, &mut request, pending, mesh).await?;
    begin(state, request, mesh).await
}

async fn begin(
    state: &Arc<AppState>,
    request: ChatRequest,
    mesh: Option<HashSet<String>>,
) -> Result<Generation, RemoteError> {
    match mesh {
        Some(names) if !names.is_empty() => Ok(Generation::Loop(Box::new(
            ToolLoop::start(state.clone(), request, names).await?,
        ))),
        _ => state
            .forwarder
            .chat(&request)
            .await
            .map(|stream| Generation::Direct(Box::new(stream)))
            .map_err(|e| e.to_remote()),
    }
}

/// Runs a request to completion for a non-streaming answer. Nothing reaches the client before
/// the end, so a worker that vanishes mid-generation costs a redo on another worker, not an
/// error.
pub async fn complete(
    state: &Arc<AppState>,
    mut request: ChatRequest,
    pending: Vec<PendingImage>,
    mesh: Option<&MeshTools>,
) -> Result<(Completion, String), RemoteError> {
    let mesh = prepare(state, &mut request, pending, mesh).await?;
    if let Some(names) = mesh.filter(|n| !n.is_empty()) {
        let mut generation = begin(state, request, Some(names)).await?;
        let worker = generation.worker().to_string();
        return collect(&mut generation).await.map(|c| (c, worker));
    }
    let mut lost_on = HashSet::new();
    loop {
        let mut stream = state
            .forwarder
            .chat_excluding(&request, &lost_on)
            .await
            .map_err(|e| e.to_remote())?;
        let outcome = collect(&mut stream).await;
        if outcome.is_err() && stream.worker_lost() && lost_on.len() < MAX_REDOS {
            debug!(worker = %stream.worker, "worker lost mid-generation; redoing the request elsewhere");
            lost_on.insert(stream.worker.clone());
            continue;
        }
        return outcome.map(|c| (c, stream.worker.clone()));
    }
}

/// Collects a whole generation; an error event or a stream that ends early is an error.
pub async fn collect(source: &mut impl EventSource) -> Result<Completion, RemoteError> {
    let mut completion = Completion::new(source.model().to_string());
    while let Some(event) = source.next().await {
        completion.apply(&event);
    }
    if let Some(error) = completion.error.take() {
        return Err(error);
    }
    if completion.finish.is_none() {
        return Err(RemoteError::new(
            ErrorKind::Upstream,
            "the worker ended the generation without finishing it",
        ));
    }
    Ok(completion)
}

/// Starts a generation and streams it as SSE through the renderer `render` builds for the
/// serving model; the response names the worker, and ends with an error event if the router's
/// shutdown deadline passes first.
pub async fn stream_response<R: SseRenderer>(
    state: &Arc<AppState>,
    request: ChatRequest,
    pending: Vec<PendingImage>,
    mesh: Option<&MeshTools>,
    render: impl FnOnce(&str) -> R,
) -> Result<warp::reply::Response, RemoteError> {
    let generation = start(state, request, pending, mesh).await?;
    let worker = generation.worker().to_string();
    let renderer = render(generation.model());
    let response = sse::respond(generation, renderer, state.streams_deadline.clone());
    Ok(with_worker(response, &worker))
}

/// Names the serving worker in a response header, for operators tracing a request.
pub fn with_worker(mut response: warp::reply::Response, worker: &str) -> warp::reply::Response {
    if let Ok(value) = warp::http::HeaderValue::from_str(worker) {
        response.headers_mut().insert(WORKER_HEADER, value);
    }
    response
}

/// Response header naming the worker that served a chat request.
pub const WORKER_HEADER: &str = "x-auxot-worker";
