//! The router's Prometheus metrics, in one place: the rest of the router calls the small typed
//! functions here (`request_finished`, `key_checked`, `tool_called`, ...) and never the
//! `prometheus` crate directly.
//!
//! Names follow the OpenTelemetry GenAI semantic conventions where one exists, converted the
//! way OpenTelemetry's Prometheus exporter converts them (dots to underscores, the unit as a
//! suffix): `gen_ai_server_request_duration_seconds`, `gen_ai_server_time_to_first_token_seconds`,
//! `gen_ai_server_time_per_output_token_seconds` and `gen_ai_client_token_usage` (what the
//! callers used, as an AI gateway reports it), with the conventions' attributes as labels
//! (`gen_ai_operation_name`, `gen_ai_response_model`, `gen_ai_token_type`). Everything else is
//! `auxot_router_*`.
//!
//! Each router owns its registry (no global one): several routers in one test process must not
//! add up each other's counts. Histograms are observed once per request, when it ends; nothing
//! is done per token. Cluster figures (workers, queue, gossip) are read when `/metrics` is
//! scraped, not kept up to date on the request path.

use std::sync::Arc;
use std::time::Duration;

use auxot_common::mesh::node::Readiness;
use auxot_common::mesh::sealed::GossipStats;
use prometheus::core::Collector;
use prometheus::{
    Encoder as _, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

use crate::registry::WorkerView;

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// OpenTelemetry's operation name for chat completions.
const CHAT: &str = "chat";

/// Buckets the GenAI conventions recommend for each histogram.
const DURATION_BUCKETS: &[f64] = &[
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
];
const TTFT_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];
const TPOT_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5,
];
const TOKEN_BUCKETS: &[f64] = &[
    1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0,
    16777216.0, 67108864.0,
];
/// The router's own share of a request is sub-millisecond when all is well.
const OVERHEAD_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// How one API request ended, as the metrics record it.
#[derive(Debug, Clone, Default)]
pub struct RequestOutcome<'a> {
    /// The endpoint (`openai_chat`, `anthropic_messages`, ...).
    pub route: &'static str,
    /// The model that served it, or what was asked for when none did (empty off the chat routes).
    pub model: &'a str,
    /// The HTTP status answered.
    pub status: u16,
    /// A stream that started (status 200) and then ended with an error event.
    pub stream_failed: bool,
    /// A worker took the request (the generation series cover only those).
    pub served: bool,
    /// Arrival to the end of the response.
    pub duration: Duration,
    /// Arrival to the first generated output, for generations.
    pub time_to_first_token: Option<Duration>,
    /// Mean time between output tokens after the first, when there were at least two.
    pub time_per_output_token: Option<Duration>,
    pub prompt_tokens: Option<u32>,
    pub completion_tokens: Option<u32>,
    /// The router's own time before the worker got the request (see the README).
    pub overhead: Option<Duration>,
    /// Workers given up on before the one that served it.
    pub failovers: u32,
}

/// Every metric of one router.
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    stream_errors: IntCounterVec,
    duration: HistogramVec,
    ttft: HistogramVec,
    tpot: HistogramVec,
    tokens: HistogramVec,
    overhead: HistogramVec,
    in_flight: IntGauge,
    queued: IntGauge,
    refusals: IntCounterVec,
    failovers: IntCounterVec,
    key_checks: IntCounterVec,
    tool_calls: IntCounterVec,
    workers: IntGaugeVec,
    worker_capacity: IntGaugeVec,
    worker_load: IntGaugeVec,
    worker_in_flight: IntGaugeVec,
    gossip_members: IntGauge,
    gossip_bytes_sent: IntCounter,
    gossip_bytes_received: IntCounter,
    gossip_rejected: IntCounter,
}

fn counter_vec(name: &str, help: &str, labels: &[&str]) -> prometheus::Result<IntCounterVec> {
    IntCounterVec::new(Opts::new(name, help), labels)
}

fn gauge_vec(name: &str, help: &str, labels: &[&str]) -> prometheus::Result<IntGaugeVec> {
    IntGaugeVec::new(Opts::new(name, help), labels)
}

fn histogram(
    name: &str,
    help: &str,
    buckets: &[f64],
    labels: &[&str],
) -> prometheus::Result<HistogramVec> {
    HistogramVec::new(
        HistogramOpts::new(name, help).buckets(buckets.to_vec()),
        labels,
    )
}

fn register<C: Collector + Clone + 'static>(registry: &Registry, c: C) -> prometheus::Result<C> {
    registry.register(Box::new(c.clone()))?;
    Ok(c)
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

impl Metrics {
    /// A router's metrics on a registry of their own.
    pub fn new() -> Self {
        // Only an invalid or repeated metric name fails here: constants, checked by the tests.
        #[allow(clippy::expect_used)]
        Self::build().expect("the router's metric definitions are valid")
    }

    fn build() -> prometheus::Result<Self> {
        let r = Registry::new();
        let model_labels = ["gen_ai_operation_name", "gen_ai_response_model"];
        Ok(Metrics {
            requests: register(
                &r,
                counter_vec(
                    "auxot_router_requests_total",
                    "API requests answered, by route, model and HTTP status.",
                    &["route", "model", "status"],
                )?,
            )?,
            stream_errors: register(
                &r,
                counter_vec(
                    "auxot_router_stream_errors_total",
                    "Streams that started (status 200) and ended with an error event.",
                    &["route", "model"],
                )?,
            )?,
            duration: register(
                &r,
                histogram(
                    "gen_ai_server_request_duration_seconds",
                    "Chat requests from arrival to the end of the response (OpenTelemetry gen_ai.server.request.duration).",
                    DURATION_BUCKETS,
                    &["gen_ai_operation_name", "gen_ai_response_model", "error_type"],
                )?,
            )?,
            ttft: register(
                &r,
                histogram(
                    "gen_ai_server_time_to_first_token_seconds",
                    "Chat requests from arrival to the first generated output (OpenTelemetry gen_ai.server.time_to_first_token).",
                    TTFT_BUCKETS,
                    &model_labels,
                )?,
            )?,
            tpot: register(
                &r,
                histogram(
                    "gen_ai_server_time_per_output_token_seconds",
                    "Mean time per output token after the first, per chat request (OpenTelemetry gen_ai.server.time_per_output_token).",
                    TPOT_BUCKETS,
                    &model_labels,
                )?,
            )?,
            tokens: register(
                &r,
                histogram(
                    "gen_ai_client_token_usage",
                    "Tokens per chat request, by type (input, output); the _sum series are the totals (OpenTelemetry gen_ai.client.token.usage).",
                    TOKEN_BUCKETS,
                    &["gen_ai_operation_name", "gen_ai_response_model", "gen_ai_token_type"],
                )?,
            )?,
            overhead: register(
                &r,
                histogram(
                    "auxot_router_overhead_seconds",
                    "Latency the router adds: arrival to the request reaching its worker, less reading the body and waiting for capacity (requests served by the first worker tried, without image URLs).",
                    OVERHEAD_BUCKETS,
                    &["route"],
                )?,
            )?,
            in_flight: register(
                &r,
                IntGauge::new(
                    "auxot_router_requests_in_flight",
                    "API requests being answered now (open streams included).",
                )?,
            )?,
            queued: register(
                &r,
                IntGauge::new(
                    "auxot_router_requests_queued",
                    "Requests waiting for a worker with room (admission queue).",
                )?,
            )?,
            refusals: register(
                &r,
                counter_vec(
                    "auxot_router_admission_refusals_total",
                    "Requests refused because every worker serving the model was full (429 / 529).",
                    &["route", "model"],
                )?,
            )?,
            failovers: register(
                &r,
                counter_vec(
                    "auxot_router_failovers_total",
                    "Workers given up on (unreachable, failed, full, lost) before another served the request.",
                    &["route"],
                )?,
            )?,
            key_checks: register(
                &r,
                counter_vec(
                    "auxot_router_key_verifications_total",
                    "API key checks by result (ok, missing, invalid, busy).",
                    &["result"],
                )?,
            )?,
            tool_calls: register(
                &r,
                counter_vec(
                    "auxot_router_tool_calls_total",
                    "Mesh tool calls the router ran (Tools API and server-side tool loop), by tool and outcome.",
                    &["tool", "outcome"],
                )?,
            )?,
            workers: register(
                &r,
                gauge_vec(
                    "auxot_router_workers",
                    "Workers in this router's view, by readiness.",
                    &["readiness"],
                )?,
            )?,
            worker_capacity: register(
                &r,
                gauge_vec(
                    "auxot_router_worker_capacity",
                    "Requests each worker runs at once, as it advertises.",
                    &["worker"],
                )?,
            )?,
            worker_load: register(
                &r,
                gauge_vec(
                    "auxot_router_worker_load",
                    "Requests each worker reports running (gossiped, up to a second old).",
                    &["worker"],
                )?,
            )?,
            worker_in_flight: register(
                &r,
                gauge_vec(
                    "auxot_router_worker_in_flight",
                    "Requests this router has in flight on each worker.",
                    &["worker"],
                )?,
            )?,
            gossip_members: register(
                &r,
                IntGauge::new(
                    "auxot_router_gossip_members",
                    "Live nodes in the gossip cluster, this router included.",
                )?,
            )?,
            gossip_bytes_sent: register(
                &r,
                IntCounter::new(
                    "auxot_router_gossip_sent_bytes_total",
                    "Gossip bytes sent.",
                )?,
            )?,
            gossip_bytes_received: register(
                &r,
                IntCounter::new(
                    "auxot_router_gossip_received_bytes_total",
                    "Gossip bytes received.",
                )?,
            )?,
            gossip_rejected: register(
                &r,
                IntCounter::new(
                    "auxot_router_gossip_rejected_datagrams_total",
                    "Gossip datagrams refused (not sealed with the cluster key, too old, or replayed).",
                )?,
            )?,
            registry: r,
        })
    }

    /// A request started; [`Self::request_finished`] must follow.
    pub fn request_started(&self) {
        self.in_flight.inc();
    }

    /// A request ended: one update of each series it concerns.
    pub fn request_finished(&self, outcome: &RequestOutcome<'_>) {
        self.in_flight.dec();
        let route = outcome.route;
        let model = outcome.model;
        let status = outcome.status.to_string();
        let status = status.as_str();
        self.requests
            .with_label_values(&[route, model, status])
            .inc();
        if outcome.stream_failed {
            self.stream_errors.with_label_values(&[route, model]).inc();
        }
        if matches!(outcome.status, 429 | 529) {
            self.refusals.with_label_values(&[route, model]).inc();
        }
        if outcome.failovers > 0 {
            self.failovers
                .with_label_values(&[route])
                .inc_by(u64::from(outcome.failovers));
        }
        if let Some(overhead) = outcome.overhead {
            self.overhead
                .with_label_values(&[route])
                .observe(secs(overhead));
        }
        // The GenAI series cover generations: chat requests a worker took.
        if !outcome.served {
            return;
        }
        let error_type = if outcome.stream_failed {
            "stream_error"
        } else if outcome.status >= 400 {
            status
        } else {
            ""
        };
        self.duration
            .with_label_values(&[CHAT, model, error_type])
            .observe(secs(outcome.duration));
        if let Some(ttft) = outcome.time_to_first_token {
            self.ttft
                .with_label_values(&[CHAT, model])
                .observe(secs(ttft));
        }
        if let Some(tpot) = outcome.time_per_output_token {
            self.tpot
                .with_label_values(&[CHAT, model])
                .observe(secs(tpot));
        }
        if let Some(tokens) = outcome.prompt_tokens {
            self.tokens
                .with_label_values(&[CHAT, model, "input"])
                .observe(f64::from(tokens));
        }
        if let Some(tokens) = outcome.completion_tokens {
            self.tokens
                .with_label_values(&[CHAT, model, "output"])
                .observe(f64::from(tokens));
        }
    }

    /// The result of checking an API key: `ok`, `missing`, `invalid` or `busy`.
    pub fn key_checked(&self, result: &'static str) {
        self.key_checks.with_label_values(&[result]).inc();
    }

    /// A mesh tool call the router ran, by outcome (`ok`, or the error's kind).
    pub fn tool_called(&self, tool: &str, outcome: &str) {
        self.tool_calls.with_label_values(&[tool, outcome]).inc();
    }

    /// The number of live gossip members changed.
    pub fn gossip_members(&self, members: usize) {
        self.gossip_members
            .set(i64::try_from(members).unwrap_or(i64::MAX));
    }

    /// The text exposition, with the cluster figures read now.
    pub fn render(&self, cluster: &ClusterView<'_>) -> String {
        self.observe_cluster(cluster);
        let mut out = Vec::new();
        // Encoding into a Vec fails only on an invalid family, which the registry refuses.
        if let Err(error) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(%error, "encoding metrics");
        }
        String::from_utf8(out).unwrap_or_default()
    }

    fn observe_cluster(&self, cluster: &ClusterView<'_>) {
        self.queued
            .set(i64::try_from(cluster.queued).unwrap_or(i64::MAX));
        // Departed workers must disappear, not keep their last figures.
        self.workers.reset();
        self.worker_capacity.reset();
        self.worker_load.reset();
        self.worker_in_flight.reset();
        for readiness in ["not_ready", "ready", "draining"] {
            self.workers.with_label_values(&[readiness]).set(0);
        }
        for worker in cluster.workers {
            let advert = &worker.advert;
            let readiness = match advert.readiness {
                Readiness::NotReady => "not_ready",
                Readiness::Ready => "ready",
                Readiness::Draining => "draining",
            };
            self.workers.with_label_values(&[readiness]).inc();
            let node = advert.node_id.as_str();
            self.worker_capacity
                .with_label_values(&[node])
                .set(i64::from(advert.capacity));
            self.worker_load
                .with_label_values(&[node])
                .set(i64::from(advert.load));
            self.worker_in_flight
                .with_label_values(&[node])
                .set(i64::from(
                    worker.local.load(std::sync::atomic::Ordering::Relaxed),
                ));
        }
        if let Some(stats) = cluster.gossip {
            use std::sync::atomic::Ordering::Relaxed;
            catch_up(&self.gossip_bytes_sent, stats.bytes_sent.load(Relaxed));
            catch_up(
                &self.gossip_bytes_received,
                stats.bytes_received.load(Relaxed),
            );
            catch_up(
                &self.gossip_rejected,
                stats.datagrams_rejected.load(Relaxed),
            );
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// What `/metrics` reads from the rest of the router when scraped.
pub struct ClusterView<'a> {
    pub workers: &'a [Arc<WorkerView>],
    pub queued: usize,
    pub gossip: Option<&'a GossipStats>,
}

/// Brings a counter mirrored from an atomic up to its current value.
fn catch_up(counter: &IntCounter, now: u64) {
    let seen = counter.get();
    if now > seen {
        counter.inc_by(now - seen);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chat_moves_the_counter_and_the_histograms() {
        let metrics = Metrics::new();
        metrics.request_started();
        metrics.request_finished(&RequestOutcome {
            route: "openai_chat",
            model: "m",
            status: 200,
            duration: Duration::from_millis(900),
            time_to_first_token: Some(Duration::from_millis(100)),
            time_per_output_token: Some(Duration::from_millis(20)),
            prompt_tokens: Some(12),
            completion_tokens: Some(41),
            overhead: Some(Duration::from_micros(300)),
            failovers: 1,
            served: true,
            ..Default::default()
        });
        let text = metrics.render(&ClusterView {
            workers: &[],
            queued: 3,
            gossip: None,
        });
        for line in [
            "auxot_router_requests_total{model=\"m\",route=\"openai_chat\",status=\"200\"} 1",
            "gen_ai_server_time_to_first_token_seconds_count{gen_ai_operation_name=\"chat\",gen_ai_response_model=\"m\"} 1",
            "gen_ai_client_token_usage_sum{gen_ai_operation_name=\"chat\",gen_ai_response_model=\"m\",gen_ai_token_type=\"output\"} 41",
            "auxot_router_failovers_total{route=\"openai_chat\"} 1",
            "auxot_router_requests_in_flight 0",
            "auxot_router_requests_queued 3",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }

    #[test]
    fn refusals_count_and_errors_skip_the_generation_series() {
        let metrics = Metrics::new();
        metrics.request_started();
        metrics.request_finished(&RequestOutcome {
            route: "anthropic_messages",
            model: "m",
            status: 529,
            ..Default::default()
        });
        let text = metrics.render(&ClusterView {
            workers: &[],
            queued: 0,
            gossip: None,
        });
        assert!(text.contains(
            "auxot_router_admission_refusals_total{model=\"m\",route=\"anthropic_messages\"} 1"
        ));
        assert!(!text.contains("gen_ai_server_time_to_first_token_seconds_count"));
    }
}
