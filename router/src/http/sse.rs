//! Streaming a generation to the client as server-sent events.
//!
//! A task pulls events from the worker and pushes rendered SSE frames into a bounded channel
//! whose receiver is the response body. When the client disconnects, hyper drops the body, the
//! channel closes, the task returns and drops the worker stream, and the worker is told to stop.
//! The task also watches the channel while the worker is silent (a long prefill), so a departed
//! client is noticed even before the first token.

use std::convert::Infallible;
use std::time::Duration;

use auxot_common::chat::ChatEvent;
use auxot_common::error::{ErrorKind, RemoteError};
use futures::StreamExt as _;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use warp::reply::{Reply as _, Response};
use warp::sse::Event;

use crate::tool_loop::EventSource;

/// Turns canonical events into SSE frames for one dialect.
pub trait SseRenderer: Send + 'static {
    fn on_event(&mut self, event: &ChatEvent) -> Vec<Event>;
    /// Frames that end the stream (OpenAI's `[DONE]`, Anthropic's `message_stop`).
    fn close(&mut self) -> Vec<Event>;
}

/// A frame with only a `data:` line, written `data: <payload>` like the reference APIs.
pub fn data(payload: impl AsRef<str>) -> Event {
    Event::default().data(format!(" {}", payload.as_ref()))
}

/// A frame with `event:` and `data:` lines.
pub fn named(name: &str, payload: impl AsRef<str>) -> Event {
    Event::default()
        .event(name)
        .data(format!(" {}", payload.as_ref()))
}

/// Streams `stream` through `renderer` as the response.
/// Streams `stream` through `renderer` as the response. When `deadline` is cancelled (the router
/// is shutting down and its grace period is over) the stream ends with an error event.
pub fn respond(
    mut stream: impl EventSource,
    mut renderer: impl SseRenderer,
    deadline: CancellationToken,
) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<Event>(64);
    tokio::spawn(async move {
        loop {
            let event = tokio::select! {
                // The client went away; dropping `stream` cancels the generation.
                _ = tx.closed() => return,
                _ = deadline.cancelled() => Some(ChatEvent::Error(RemoteError::new(
                    ErrorKind::Unavailable,
                    "the router is shutting down; retry the request",
                ))),
                event = stream.next() => event,
            };
            let Some(event) = event else { break };
            let last = matches!(event, ChatEvent::Finish { .. } | ChatEvent::Error(_));
            for frame in renderer.on_event(&event) {
                if tx.send(frame).await.is_err() {
                    return;
                }
            }
            if last {
                break;
            }
        }
        for frame in renderer.close() {
            if tx.send(frame).await.is_err() {
                return;
            }
        }
    });
    let body = ReceiverStream::new(rx).map(Ok::<Event, Infallible>);
    let keep_alive = warp::sse::keep_alive().interval(Duration::from_secs(15));
    let mut response = warp::sse::reply(keep_alive.stream(body)).into_response();
    response.headers_mut().insert(
        "x-accel-buffering",
        warp::http::HeaderValue::from_static("no"),
    );
    response
}
