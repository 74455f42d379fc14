//! The steps every chat request takes, whatever its dialect: check that some worker can serve
//! it, fetch images given by URL, start the generation (with retries, and with the server-side
//! tool loop when the request opted in), and for non-streaming answers collect it whole.

use std::future::Future;
use std::sync::Arc;

use auxot_common::chat::{ChatEvent, ChatRequest};
use auxot_common::completion::Completion;
use auxot_common::error::{ErrorKind, RemoteError};

use crate::forward::ChatStream;
use crate::images::{self, PendingImage};
use crate::state::AppState;
use crate::tool_loop::{self, EventSource, MeshTools, ToolLoop};

/// A generation in progress: one worker stream, or a loop of them with mesh tools in between.
pub enum Generation {
    Direct(ChatStream),
    Loop(Box<ToolLoop>),
}

impl EventSource for Generation {
    fn model(&self) -> &str {
        match self {
            Generation::Direct(stream) => EventSource::model(stream),
            Generation::Loop(tool_loop) => tool_loop.model(),
        }
    }

    fn next(&mut self) -> impl Future<Output = Option<ChatEvent>> + Send {
        async move {
            match self {
                Generation::Direct(stream) => stream.next().await,
                Generation::Loop(tool_loop) => tool_loop.next().await,
            }
        }
    }
}

/// Starts a generation for a translated request.
pub async fn start(
    state: &Arc<AppState>,
    mut request: ChatRequest,
    pending: Vec<PendingImage>,
    mesh: Option<&MeshTools>,
) -> Result<Generation, RemoteError> {
    // Refuse before fetching anything when no worker could take the request anyway.
    state
        .forwarder
        .preflight(&request)
        .map_err(|e| e.to_remote())?;
    let mesh = tool_loop::attach(state, &mut request, mesh)?;
    tool_loop::check_tool_choice(&request)?;
    if !pending.is_empty() {
        images::fetch_all(&state.http_client, &mut request, pending).await?;
    }
    match mesh {
        Some(names) if !names.is_empty() => Ok(Generation::Loop(Box::new(
            ToolLoop::start(state.clone(), request, names).await?,
        ))),
        _ => state
            .forwarder
            .chat(&request)
            .await
            .map(Generation::Direct)
            .map_err(|e| e.to_remote()),
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
