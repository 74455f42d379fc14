//! The worker's Prometheus metrics, in one place: the server and the loader call the small typed
//! functions here (`request_finished`, `tool_called`, `loading`...) and never the `prometheus`
//! crate directly.
//!
//! Generation latencies use the OpenTelemetry GenAI names, as the router's do
//! (`gen_ai_server_request_duration_seconds`, `gen_ai_server_time_to_first_token_seconds`,
//! `gen_ai_server_time_per_output_token_seconds`), measured here from the moment the worker
//! read the request: the difference from the router's figures is the network and the router.
//! Everything else is `auxot_worker_*`. Each worker owns its registry, so in-process test
//! clusters do not mix their counts. Histograms are observed once per request.

use std::time::Duration;

use prometheus::core::Collector;
use prometheus::{
    Encoder as _, Gauge, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

const CHAT: &str = "chat";

const DURATION_BUCKETS: &[f64] = &[
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
];
const TTFT_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];
const TPOT_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5,
];
const TOOL_BUCKETS: &[f64] = &[0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// How one generation on this worker ended.
#[derive(Debug, Clone, Default)]
pub struct Generation<'a> {
    pub model: &'a str,
    /// `ok`, `cancelled` (the router went away), or the error's kind.
    pub outcome: &'a str,
    pub duration: Duration,
    pub time_to_first_token: Option<Duration>,
    pub time_per_output_token: Option<Duration>,
    pub prompt_tokens: Option<u32>,
    pub completion_tokens: Option<u32>,
}

/// Where the worker is in its life, for `/health` and the `auxot_worker_state` gauge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Loading,
    Ready,
    Draining,
    Failed,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Loading => "loading",
            Phase::Ready => "ready",
            Phase::Draining => "draining",
            Phase::Failed => "failed",
        }
    }
}

/// What `/metrics` reads from the worker when scraped.
pub struct WorkerView {
    pub phase: Phase,
    pub in_flight: u32,
    pub capacity: u32,
}

/// Every metric of one worker.
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    ttft: HistogramVec,
    tpot: HistogramVec,
    tokens: IntCounterVec,
    tool_calls: IntCounterVec,
    tool_duration: HistogramVec,
    in_flight: IntGauge,
    capacity: IntGauge,
    state: IntGaugeVec,
    load_seconds: Gauge,
    downloaded: IntGauge,
}

fn register<C: Collector + Clone + 'static>(registry: &Registry, c: C) -> prometheus::Result<C> {
    registry.register(Box::new(c.clone()))?;
    Ok(c)
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

impl Metrics {
    /// A worker's metrics on a registry of their own.
    pub fn new() -> Self {
        // Only an invalid or repeated metric name fails here: constants, checked by the tests.
        #[allow(clippy::expect_used)]
        Self::build().expect("the worker's metric definitions are valid")
    }

    fn build() -> prometheus::Result<Self> {
        let r = Registry::new();
        let model = ["gen_ai_operation_name", "gen_ai_response_model"];
        Ok(Metrics {
            requests: register(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "auxot_worker_requests_total",
                        "Requests from routers, by operation (chat, count_tokens, execute_tool) and outcome (ok, cancelled, refused, or the error's kind).",
                    ),
                    &["op", "outcome"],
                )?,
            )?,
            duration: register(
                &r,
                histogram(
                    "gen_ai_server_request_duration_seconds",
                    "Generations from reading the request to its last event (OpenTelemetry gen_ai.server.request.duration).",
                    DURATION_BUCKETS,
                    &["gen_ai_operation_name", "gen_ai_response_model", "error_type"],
                )?,
            )?,
            ttft: register(
                &r,
                histogram(
                    "gen_ai_server_time_to_first_token_seconds",
                    "Generations from reading the request to the first output (OpenTelemetry gen_ai.server.time_to_first_token).",
                    TTFT_BUCKETS,
                    &model,
                )?,
            )?,
            tpot: register(
                &r,
                histogram(
                    "gen_ai_server_time_per_output_token_seconds",
                    "Mean time per output token after the first, per generation (OpenTelemetry gen_ai.server.time_per_output_token).",
                    TPOT_BUCKETS,
                    &model,
                )?,
            )?,
            tokens: register(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "auxot_worker_tokens_total",
                        "Tokens processed, by model and type (input: prompt, output: generated).",
                    ),
                    &["gen_ai_response_model", "gen_ai_token_type"],
                )?,
            )?,
            tool_calls: register(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "auxot_worker_tool_calls_total",
                        "Tool calls run, by tool and outcome (ok, or the error's kind).",
                    ),
                    &["tool", "outcome"],
                )?,
            )?,
            tool_duration: register(
                &r,
                histogram(
                    "auxot_worker_tool_call_duration_seconds",
                    "Tool calls from request to result.",
                    TOOL_BUCKETS,
                    &["tool"],
                )?,
            )?,
            in_flight: register(
                &r,
                IntGauge::new(
                    "auxot_worker_requests_in_flight",
                    "Requests being served now (the load the worker gossips).",
                )?,
            )?,
            capacity: register(
                &r,
                IntGauge::new(
                    "auxot_worker_capacity",
                    "Generations the engine runs at once (0 until loaded, and on a tools-only worker).",
                )?,
            )?,
            state: register(
                &r,
                IntGaugeVec::new(
                    Opts::new(
                        "auxot_worker_state",
                        "1 for the worker's current state (loading, ready, draining, failed).",
                    ),
                    &["state"],
                )?,
            )?,
            load_seconds: register(
                &r,
                Gauge::new(
                    "auxot_worker_model_load_seconds",
                    "Time spent loading the model so far (final once loaded).",
                )?,
            )?,
            downloaded: register(
                &r,
                IntGauge::new(
                    "auxot_worker_model_download_bytes",
                    "Bytes of the model in the Hugging Face cache so far (0 for local files).",
                )?,
            )?,
            registry: r,
        })
    }

    /// A generation ended.
    pub fn generation_finished(&self, g: &Generation<'_>) {
        self.requests.with_label_values(&["chat", g.outcome]).inc();
        let error_type = if g.outcome == "ok" { "" } else { g.outcome };
        self.duration
            .with_label_values(&[CHAT, g.model, error_type])
            .observe(g.duration.as_secs_f64());
        if let Some(ttft) = g.time_to_first_token {
            self.ttft
                .with_label_values(&[CHAT, g.model])
                .observe(ttft.as_secs_f64());
        }
        if let Some(tpot) = g.time_per_output_token {
            self.tpot
                .with_label_values(&[CHAT, g.model])
                .observe(tpot.as_secs_f64());
        }
        if let Some(tokens) = g.prompt_tokens {
            self.tokens
                .with_label_values(&[g.model, "input"])
                .inc_by(u64::from(tokens));
        }
        if let Some(tokens) = g.completion_tokens {
            self.tokens
                .with_label_values(&[g.model, "output"])
                .inc_by(u64::from(tokens));
        }
    }

    /// A request other than a generation ended (`count_tokens`, or one refused before work).
    pub fn request_finished(&self, op: &str, outcome: &str) {
        self.requests.with_label_values(&[op, outcome]).inc();
    }

    /// A tool call ended.
    pub fn tool_called(&self, tool: &str, outcome: &str, took: Duration) {
        self.requests
            .with_label_values(&["execute_tool", outcome])
            .inc();
        self.tool_calls.with_label_values(&[tool, outcome]).inc();
        self.tool_duration
            .with_label_values(&[tool])
            .observe(took.as_secs_f64());
    }

    /// Loading has taken `elapsed` so far, with `downloaded` bytes in the hub cache.
    pub fn loading(&self, elapsed: Duration, downloaded: u64) {
        self.load_seconds.set(elapsed.as_secs_f64());
        self.downloaded
            .set(i64::try_from(downloaded).unwrap_or(i64::MAX));
    }

    /// The text exposition, with the worker's figures read now.
    pub fn render(&self, view: &WorkerView) -> String {
        self.in_flight.set(i64::from(view.in_flight));
        self.capacity.set(i64::from(view.capacity));
        for phase in [Phase::Loading, Phase::Ready, Phase::Draining, Phase::Failed] {
            self.state
                .with_label_values(&[phase.as_str()])
                .set(i64::from(phase == view.phase));
        }
        let mut out = Vec::new();
        if let Err(error) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(%error, "encoding metrics");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generation_moves_the_histograms_and_the_state_is_one_hot() {
        let metrics = Metrics::new();
        metrics.generation_finished(&Generation {
            model: "m",
            outcome: "ok",
            duration: Duration::from_millis(500),
            time_to_first_token: Some(Duration::from_millis(40)),
            time_per_output_token: Some(Duration::from_millis(10)),
            prompt_tokens: Some(7),
            completion_tokens: Some(12),
        });
        metrics.tool_called("web_fetch", "ok", Duration::from_millis(30));
        let text = metrics.render(&WorkerView {
            phase: Phase::Ready,
            in_flight: 2,
            capacity: 8,
        });
        for line in [
            "auxot_worker_requests_total{op=\"chat\",outcome=\"ok\"} 1",
            "gen_ai_server_time_to_first_token_seconds_count{gen_ai_operation_name=\"chat\",gen_ai_response_model=\"m\"} 1",
            "auxot_worker_tokens_total{gen_ai_response_model=\"m\",gen_ai_token_type=\"output\"} 12",
            "auxot_worker_tool_calls_total{outcome=\"ok\",tool=\"web_fetch\"} 1",
            "auxot_worker_requests_in_flight 2",
            "auxot_worker_capacity 8",
            "auxot_worker_state{state=\"ready\"} 1",
            "auxot_worker_state{state=\"loading\"} 0",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }
}
