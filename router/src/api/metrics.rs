//! `GET /metrics`: the router's metrics in the Prometheus text format, with the cluster figures
//! (workers, admission queue, gossip) read at the moment of the scrape.

use warp::http::HeaderValue;
use warp::reply::Response;

use super::state::AppState;
use crate::metrics::{ClusterView, CONTENT_TYPE};
use crate::registry::BreakerState;

pub fn metrics(state: &AppState) -> Response {
    let workers = state.registry().all();
    let breakers: Vec<(String, &'static str)> = state
        .registry()
        .breakers()
        .into_iter()
        .filter(|(_, (s, _))| *s != BreakerState::Closed)
        .map(|(worker, (s, _))| (worker, s.as_str()))
        .collect();
    let text = state.metrics().render(&ClusterView {
        workers: &workers,
        queued: state.generator.forwarder.queued(),
        gossip: Some(&state.gossip_stats),
        breakers: &breakers,
    });
    let mut response = Response::new(text.into());
    response
        .headers_mut()
        .insert("content-type", HeaderValue::from_static(CONTENT_TYPE));
    response
}
