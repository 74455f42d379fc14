//! `GET /metrics`: the router's metrics in the Prometheus text format, with the cluster figures
//! (workers, admission queue, gossip) read at the moment of the scrape.

use warp::http::HeaderValue;
use warp::reply::Response;

use super::state::AppState;
use crate::metrics::{ClusterView, CONTENT_TYPE};

pub fn metrics(state: &AppState) -> Response {
    let workers = state.registry().all();
    let text = state.metrics().render(&ClusterView {
        workers: &workers,
        queued: state.generator.forwarder.queued(),
        gossip: Some(&state.gossip_stats),
    });
    let mut response = Response::new(text.into());
    response
        .headers_mut()
        .insert("content-type", HeaderValue::from_static(CONTENT_TYPE));
    response
}
