//! The steps every chat request takes, whatever its dialect: check that some worker can serve
//! it, fetch images given by URL, start the generation (with retries), and for non-streaming
//! answers collect it whole.

use auxot_common::chat::ChatRequest;
use auxot_common::completion::Completion;
use auxot_common::error::{ErrorKind, RemoteError};

use crate::forward::ChatStream;
use crate::images::{self, PendingImage};
use crate::state::AppState;

/// Starts a generation for a translated request.
pub async fn start(
    state: &AppState,
    mut request: ChatRequest,
    pending: Vec<PendingImage>,
) -> Result<ChatStream, RemoteError> {
    // Refuse before fetching anything when no worker could take the request anyway.
    state
        .forwarder
        .preflight(&request)
        .map_err(|e| e.to_remote())?;
    if !pending.is_empty() {
        images::fetch_all(&state.http_client, &mut request, pending).await?;
    }
    state
        .forwarder
        .chat(&request)
        .await
        .map_err(|e| e.to_remote())
}

/// Collects a whole generation; an error event or a stream that ends early is an error.
pub async fn collect(stream: &mut ChatStream) -> Result<Completion, RemoteError> {
    let mut completion = Completion::new(stream.model.clone());
    while let Some(event) = stream.next().await {
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
