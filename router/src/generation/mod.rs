//! The steps every chat request takes, whatever its dialect: check that some worker can serve
//! it, fetch images given by URL, start the generation (with retries, and with the server-side
//! tool loop when the request opted in), and for non-streaming answers collect it whole.
//!
//! This layer knows nothing of HTTP or dialects: it takes a canonical request and gives back
//! canonical events or a [`Completion`].

use std::collections::HashSet;
use std::sync::Arc;

use auxot_common::chat::{ChatEvent, ChatRequest};
use auxot_common::completion::Completion;
use auxot_common::error::{ErrorKind, RemoteError};
use tracing::debug;

use crate::error::ApiError;
use crate::forward::retry::{retry, Attempt, Step};
use crate::forward::stream::{ChatStream, Trace};

mod generator;
pub mod images;
pub mod source;
pub mod tool_loop;
pub mod tools;

pub use generator::Generator;
use source::EventSource;
use tool_loop::{MeshTools, ToolLoop};

/// Workers a non-streaming request is redone on when its worker vanishes mid-generation.
const MAX_REDOS: usize = 2;

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

    /// How the request reached its worker (the first round's, for a tool loop).
    pub fn trace(&self) -> Trace {
        match self {
            Generation::Direct(stream) => stream.trace,
            Generation::Loop(tool_loop) => tool_loop.trace(),
        }
    }
}

/// A finished non-streaming generation.
#[derive(Debug)]
pub struct Completed {
    pub completion: Completion,
    /// The worker that served it (the first round's, for a tool loop).
    pub worker: String,
    pub trace: Trace,
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

/// Checks and completes a request: routable, mesh tools attached, images fetched. Returns the
/// names of the mesh tools the request runs server-side (none when it did not opt in).
async fn prepare(
    generator: &Generator,
    request: &mut ChatRequest,
    mesh: Option<&MeshTools>,
) -> Result<HashSet<String>, ApiError> {
    // Refuse before fetching anything when no worker could take the request anyway.
    generator.forwarder.preflight(request)?;
    let mesh = tool_loop::attach(generator, request, mesh)?;
    tool_loop::check_tool_choice(request)?;
    if request.has_unresolved_images() {
        images::resolve(generator.image_policy, request).await?;
    }
    Ok(mesh)
}

/// Starts a generation for a request, to be streamed.
pub async fn start(
    generator: &Arc<Generator>,
    mut request: ChatRequest,
    mesh: Option<&MeshTools>,
) -> Result<Generation, ApiError> {
    let mesh = prepare(generator, &mut request, mesh).await?;
    begin(generator, request, mesh).await
}

async fn begin(
    generator: &Arc<Generator>,
    request: ChatRequest,
    mesh: HashSet<String>,
) -> Result<Generation, ApiError> {
    if mesh.is_empty() {
        let stream = generator.forwarder.chat(&request).await?;
        return Ok(Generation::Direct(Box::new(stream)));
    }
    let tool_loop = ToolLoop::start(generator.clone(), request, mesh).await?;
    Ok(Generation::Loop(Box::new(tool_loop)))
}

/// Runs a request to completion for a non-streaming answer, with the worker that served it.
/// Nothing reaches the client before the end, so a worker that vanishes mid-generation costs a
/// redo on another worker, not an error.
pub async fn complete(
    generator: &Arc<Generator>,
    mut request: ChatRequest,
    mesh: Option<&MeshTools>,
) -> Result<Completed, ApiError> {
    let mesh = prepare(generator, &mut request, mesh).await?;
    if !mesh.is_empty() {
        let mut generation = begin(generator, request, mesh).await?;
        let worker = generation.worker().to_string();
        let trace = generation.trace();
        return Ok(Completed {
            completion: collect(&mut generation, &worker).await?,
            worker,
            trace,
        });
    }
    let request = &request;
    let done = retry(1 + MAX_REDOS, &HashSet::new(), |tried| async move {
        let mut stream = generator.forwarder.chat_excluding(request, &tried).await?;
        let worker = stream.worker.clone();
        let outcome = match collect(&mut stream, &worker).await {
            Ok(completion) => Attempt::Done(Completed {
                completion,
                worker: stream.worker.clone(),
                trace: stream.trace,
            }),
            Err(error) if stream.worker_lost() => {
                debug!(worker = %stream.worker, "worker lost mid-generation; redoing the request elsewhere");
                Attempt::Retry(error)
            }
            Err(error) => Attempt::Fail(error),
        };
        Ok(Step::Tried {
            worker: stream.worker.clone(),
            outcome,
        })
    })
    .await?;
    Ok(done)
}

/// Collects a whole generation served by `worker`; an error event, a stream that ends early or
/// an answer past the collecting limits is an error.
pub async fn collect(
    source: &mut impl EventSource,
    worker: &str,
) -> Result<Completion, RemoteError> {
    let mut completion = Completion::new(source.model().to_string());
    while let Some(event) = source.next().await {
        // Dropping the source on the way out tells the worker to stop.
        completion.apply(&event).map_err(|why| {
            RemoteError::new(
                ErrorKind::Upstream,
                format!("worker {worker} sent {why} for one answer"),
            )
        })?;
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
