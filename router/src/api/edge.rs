//! The HTTP edge: accepting connections and serving them with hyper under budgets.
//!
//! warp's server offers no way to set hyper's timers and limits, so the router runs its own
//! accept loop over `hyper::server::conn::http1` (HTTP/1.1 only: every deadline below is
//! defined for it, and h2c is not what load balancers speak to backends) with:
//! - a connection cap: past it a new connection gets a 503 and is closed at once, so a flood of
//!   idle sockets cannot exhaust file descriptors or memory;
//! - the per-connection deadlines of [`super::conn`] (header, idle, write) and hyper's header
//!   timeout with a timer as a backstop;
//! - a small read buffer, which also caps the size of a request head.
//!
//! Bodies, their limits and budget are [`super::body`]'s; shutdown stops accepting at once and
//! lets open connections finish their requests.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::AsyncWriteExt as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tracing::{debug, warn};
use warp::reply::Response;

use super::conn::{Activity, ConnTimeouts, Deadlines, InFlight};
use super::state::AppState;
use crate::cli::ServeArgs;

/// Largest request head (request line and headers), in bytes: hyper's read buffer.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Everything the edge bounds, from the command line.
#[derive(Debug, Clone, Copy)]
pub struct EdgeConfig {
    pub timeouts: ConnTimeouts,
    /// Connections served at once.
    pub max_connections: usize,
    /// Longest a client may take to send a request body.
    pub body_timeout: Duration,
    /// Largest body of the chat, messages and count_tokens routes.
    pub max_body_bytes: usize,
    /// Largest body of the tools execute route.
    pub max_tool_body_bytes: usize,
    /// Bytes of request bodies held at once, across all requests.
    pub body_budget_bytes: usize,
    /// Longest a chat request may take from its body to its last event.
    pub request_timeout: Duration,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        EdgeConfig {
            timeouts: ConnTimeouts {
                header: Duration::from_secs(10),
                idle: Duration::from_secs(60),
                write: Duration::from_secs(30),
            },
            max_connections: 1024,
            body_timeout: Duration::from_secs(30),
            max_body_bytes: 16 * 1024 * 1024,
            max_tool_body_bytes: 1024 * 1024,
            body_budget_bytes: 128 * 1024 * 1024,
            request_timeout: Duration::from_secs(900),
        }
    }
}

impl From<&ServeArgs> for EdgeConfig {
    fn from(args: &ServeArgs) -> Self {
        EdgeConfig {
            timeouts: ConnTimeouts {
                header: Duration::from_secs(args.header_timeout_secs.max(1)),
                idle: Duration::from_secs(args.idle_timeout_secs.max(1)),
                write: Duration::from_secs(args.write_timeout_secs.max(1)),
            },
            max_connections: args.max_connections.max(1),
            body_timeout: Duration::from_secs(args.body_timeout_secs.max(1)),
            // A body is reserved in the budget in one piece, counted in `u32`.
            max_body_bytes: args.max_body_bytes.clamp(1024, u32::MAX as usize),
            max_tool_body_bytes: args.max_tool_body_bytes.clamp(1024, u32::MAX as usize),
            body_budget_bytes: args.body_budget_bytes,
            request_timeout: Duration::from_secs(args.request_timeout_secs.max(1)),
        }
    }
}

/// A response body that keeps its request counted as in flight on the connection until the
/// body is done (the connection's idle deadline starts after it).
struct Counted<B> {
    inner: B,
    _in_flight: InFlight,
}

impl<B: http_body::Body + Unpin> http_body::Body for Counted<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The answer to a connection over the cap.
async fn refuse(mut stream: TcpStream) {
    let body = r#"{"error":{"message":"the router is serving its maximum number of connections; retry shortly","type":"service_unavailable","param":null,"code":null}}"#;
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(response.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

/// Serves the API on `listener` until `shutdown` resolves, then waits for open connections.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let config = state.edge;
    let slots = Arc::new(Semaphore::new(config.max_connections));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = &mut shutdown => break,
        };
        let (stream, client) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of file descriptors, usually: give connections time to close.
                warn!(%err, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            debug!(%client, "connection cap reached: refusing");
            tokio::spawn(refuse(stream));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let activity = Activity::default();
        let io = TokioIo::new(Deadlines::new(stream, config.timeouts, activity.clone()));
        let state = state.clone();
        let service = service_fn(move |request: hyper::Request<Incoming>| {
            // Counted from the moment the head is parsed, until the response body ends.
            let in_flight = activity.enter();
            let state = state.clone();
            async move {
                let response: Response = super::dispatch(state, request, client).await;
                Ok::<_, Infallible>(response.map(|inner| Counted {
                    inner,
                    _in_flight: in_flight,
                }))
            }
        });
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(config.timeouts.idle + config.timeouts.header)
            .max_buf_size(MAX_HEAD_BYTES)
            .keep_alive(true);
        let connection = graceful.watch(builder.serve_connection(io, service));
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                debug!(%client, %err, "connection ended");
            }
            drop(slot);
        });
    }
    // Stop accepting at once; open connections finish their requests.
    drop(listener);
    graceful.shutdown().await;
}
