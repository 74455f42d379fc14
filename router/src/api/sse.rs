//! Streaming a generation to the client as server-sent events.
//!
//! A task pulls events from the generation and pushes rendered frames into a bounded channel
//! whose receiver is the response body. When the client disconnects, hyper drops the body, the
//! channel closes, the task returns and drops the generation, and the worker is told to stop.
//! The task also watches the channel while the worker is silent (a long prefill), so a departed
//! client is noticed even before the first token.
//!
//! A client that stays connected but stops reading is treated as gone: a frame that cannot be
//! handed to the connection within the write timeout ends the task (and the generation), and
//! the connection's own write deadline closes the socket. A stream that reaches the request's
//! deadline ends with an error event.

use std::convert::Infallible;
use std::time::Duration;

use tokio::sync::mpsc::Sender;
use tokio::time::Instant;

use auxot_common::chat::ChatEvent;
use auxot_common::error::{ErrorKind, RemoteError};
use futures::StreamExt as _;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;
use warp::reply::{Reply as _, Response};
use warp::sse::Event;

use super::record::RequestRecord;
use crate::dialect::{SseFrame, StreamRenderer};
use crate::generation::source::EventSource;
use crate::ids;

/// warp's event for a frame, written `data: <payload>` like the reference APIs.
fn event(frame: SseFrame) -> Event {
    let event = Event::default().data(format!(" {}", frame.data));
    match frame.event {
        Some(name) => event.event(name),
        None => event,
    }
}

/// How long a stream may run and wait for its reader.
#[derive(Debug, Clone, Copy)]
pub struct StreamLimits {
    /// The request's deadline: the stream ends with an error event there.
    pub deadline: Instant,
    /// Longest a frame may wait for the client to make room.
    pub write_timeout: Duration,
}

/// Hands a frame to the response; false when the client is gone or stopped reading.
async fn send(tx: &Sender<Event>, frame: SseFrame, timeout: Duration) -> bool {
    matches!(
        tokio::time::timeout(timeout, tx.send(event(frame))).await,
        Ok(Ok(()))
    )
}

/// Streams `source` through `renderer` as the response. When `shutdown` is cancelled (the router
/// is shutting down and its grace period is over) or the request's deadline passes, the stream
/// ends with an error event. The request's `record` is written when the stream ends; the
/// stream's task runs in the request's span and with its id.
pub fn respond(
    mut source: impl EventSource,
    mut renderer: impl StreamRenderer,
    shutdown: CancellationToken,
    limits: StreamLimits,
    mut record: RequestRecord,
) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<Event>(64);
    let id = record.id().to_string();
    let task = async move {
        loop {
            let next = tokio::select! {
                // The client went away; dropping `source` cancels the generation.
                _ = tx.closed() => {
                    record.client_gone();
                    return;
                }
                _ = shutdown.cancelled() => Some(ChatEvent::Error(RemoteError::new(
                    ErrorKind::Unavailable,
                    "the router is shutting down; retry the request",
                ))),
                _ = tokio::time::sleep_until(limits.deadline) => Some(ChatEvent::Error(RemoteError::new(
                    ErrorKind::Timeout,
                    "the request reached the router's time limit for one request",
                ))),
                next = source.next() => next,
            };
            let Some(next) = next else { break };
            record.observe(&next);
            let last = next.is_last();
            for frame in renderer.on_event(&next) {
                if !send(&tx, frame, limits.write_timeout).await {
                    record.client_gone();
                    return;
                }
            }
            if last {
                break;
            }
        }
        for frame in renderer.close() {
            if !send(&tx, frame, limits.write_timeout).await {
                record.client_gone();
                return;
            }
        }
    };
    tokio::spawn(ids::with_request_id(id, task).instrument(tracing::Span::current()));
    let body = ReceiverStream::new(rx).map(Ok::<Event, Infallible>);
    let keep_alive = warp::sse::keep_alive().interval(Duration::from_secs(15));
    let mut response = warp::sse::reply(keep_alive.stream(body)).into_response();
    response.headers_mut().insert(
        "x-accel-buffering",
        warp::http::HeaderValue::from_static("no"),
    );
    response
}
