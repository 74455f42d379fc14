//! The worker's operators' port (`--metrics-addr`): `GET /metrics` (Prometheus text) and
//! `GET /health` (200 once the model is loaded and the worker takes requests; 503 while it
//! loads, drains or after loading failed, with the state in the body), for Prometheus and
//! readiness probes. A worker has no other HTTP port: routers reach it over QUIC.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::task::JoinHandle;

use serde_json::json;
use warp::http::{HeaderValue, StatusCode};
use warp::reply::Response;
use warp::Filter as _;

use crate::metrics::{Phase, CONTENT_TYPE};
use crate::server::WorkerState;

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response {
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert("content-type", HeaderValue::from_static(content_type));
    response
}

fn answer(state: &WorkerState, path: &str) -> Response {
    match path.trim_end_matches('/') {
        "/metrics" => text(StatusCode::OK, CONTENT_TYPE, state.render_metrics()),
        "/health" => {
            let phase = state.phase();
            let status = if phase == Phase::Ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            let body = json!({
                "status": phase.as_str(),
                "worker": state.node_id,
                "version": auxot_common::VERSION,
                "in_flight": state.in_flight(),
            });
            text(status, "application/json", body.to_string())
        }
        other => text(
            StatusCode::NOT_FOUND,
            "application/json",
            json!({"error": format!("no such endpoint: {other} (this port serves /metrics and /health)")})
                .to_string(),
        ),
    }
}

/// Serves the operators' port on `listener` until the task is aborted.
async fn serve(listener: tokio::net::TcpListener, state: Arc<WorkerState>) {
    let filter = warp::get()
        .and(warp::path::full())
        .map(move |path: warp::path::FullPath| answer(&state, path.as_str()));
    warp::serve(filter).incoming(listener).run().await;
}

/// Starts serving `listener` (when there is one); its address and the serving task.
pub fn start(
    listener: Option<std::net::TcpListener>,
    state: &Arc<WorkerState>,
) -> anyhow::Result<(Option<SocketAddr>, Option<JoinHandle<()>>)> {
    let Some(listener) = listener else {
        return Ok((None, None));
    };
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let addr = listener.local_addr()?;
    tracing::info!(metrics = %addr, "serving /metrics and /health");
    Ok((
        Some(addr),
        Some(tokio::spawn(serve(listener, state.clone()))),
    ))
}
