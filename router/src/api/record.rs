//! One record per API request, written when the request ends: one structured log line (target
//! `auxot_request`) and one update of the metrics.
//!
//! The record ends when it is dropped, so every request gets its line however it ends: answered,
//! refused, a stream that ran to its end or lost its client, or a client that hung up before the
//! answer (status 499, as proxies log it). A streamed answer outlives the handler: the handler
//! hands the record to the task that writes the stream ([`RequestRecord::detach`]), and the line
//! is written when the stream ends.

use std::sync::Arc;
use std::time::{Duration, Instant};

use auxot_common::chat::{ChatEvent, Usage};

use crate::forward::stream::Trace;
use crate::metrics::{Metrics, RequestOutcome};

/// Status logged for a request whose client went away before the answer.
const CLIENT_CLOSED: u16 = 499;

struct Inner {
    metrics: Arc<Metrics>,
    id: String,
    route: &'static str,
    arrived: Instant,
    /// Time spent receiving the body: the client's, not the router's.
    body_read: Duration,
    /// The public id of the API key (never the key).
    key_id: Option<String>,
    /// The model served, or asked for until one is.
    model: String,
    worker: Option<String>,
    status: u16,
    trace: Option<Trace>,
    /// Image URLs were fetched: the router's time then includes the download.
    fetched_images: bool,
    usage: Usage,
    saw_usage: bool,
    /// The stream ended with an error event.
    stream_failed: bool,
    /// The client went away mid-stream.
    client_gone: bool,
}

/// The record of one API request; see the module docs.
pub struct RequestRecord(Option<Box<Inner>>);

impl RequestRecord {
    /// Starts the record of a request that arrived at `arrived`.
    pub fn start(metrics: Arc<Metrics>, id: String, route: &'static str, arrived: Instant) -> Self {
        metrics.request_started();
        RequestRecord(Some(Box::new(Inner {
            metrics,
            id,
            route,
            arrived,
            body_read: Duration::ZERO,
            key_id: None,
            model: String::new(),
            worker: None,
            status: CLIENT_CLOSED,
            trace: None,
            fetched_images: false,
            usage: Usage::default(),
            saw_usage: false,
            stream_failed: false,
            client_gone: false,
        })))
    }

    fn with(&mut self, f: impl FnOnce(&mut Inner)) {
        if let Some(inner) = self.0.as_deref_mut() {
            f(inner);
        }
    }

    /// The request's id (empty once detached).
    pub fn id(&self) -> &str {
        self.0.as_deref().map_or("", |inner| inner.id.as_str())
    }

    /// The request was authenticated with the key whose public id this is.
    pub fn key(&mut self, key_id: Option<&str>) {
        self.with(|r| r.key_id = key_id.map(str::to_string));
    }

    /// The body has been read, `took` after the request arrived.
    pub fn body_read(&mut self, took: Duration) {
        self.with(|r| r.body_read = took);
    }

    /// The model the request asked for (its label until a worker serves it), and whether image
    /// URLs will be fetched.
    pub fn asked_for(&mut self, model: &str, fetches_images: bool) {
        self.with(|r| {
            r.model = model.to_string();
            r.fetched_images = fetches_images;
        });
    }

    /// Replaces the model label of a request no worker served: an id nobody serves is not kept,
    /// so made-up names cannot multiply the metrics' series.
    pub fn unserved(&mut self, known: impl FnOnce(&str) -> bool) {
        self.with(|r| {
            if r.worker.is_none() && !known(&r.model) {
                r.model = "unknown".to_string();
            }
        });
    }

    /// A worker took the request.
    pub fn served(&mut self, worker: &str, model: &str, trace: Trace) {
        self.with(|r| {
            r.worker = Some(worker.to_string());
            r.model = model.to_string();
            r.trace = Some(trace);
        });
    }

    /// The token counts of a whole (non-streamed) answer.
    pub fn usage(&mut self, usage: Usage) {
        self.with(|r| {
            r.usage = usage;
            r.saw_usage = true;
        });
    }

    /// Notes what a streamed event says about the request. Cheap: called for every event.
    pub fn observe(&mut self, event: &ChatEvent) {
        if let Some(r) = self.0.as_deref_mut() {
            match event {
                ChatEvent::PromptTokens { tokens } => r.usage.prompt_tokens = *tokens,
                ChatEvent::Usage(usage) => {
                    r.usage = *usage;
                    r.saw_usage = true;
                }
                ChatEvent::Error(_) => r.stream_failed = true,
                _ => {}
            }
        }
    }

    /// The client went away before the stream ended.
    pub fn client_gone(&mut self) {
        self.with(|r| r.client_gone = true);
    }

    /// The status answered (kept as it is once detached: a stream's status is sent first).
    pub fn status(&mut self, status: u16) {
        self.with(|r| r.status = status);
    }

    /// Moves the record into a new one (for the task writing a stream, answered `200`); this
    /// one is left empty and writes nothing.
    pub fn detach(&mut self) -> RequestRecord {
        let mut detached = RequestRecord(self.0.take());
        detached.status(200);
        detached
    }
}

impl Inner {
    fn finish(&self) {
        let now = Instant::now();
        let duration = now.duration_since(self.arrived);
        let completion_tokens = self.saw_usage.then_some(self.usage.completion_tokens);
        let prompt_tokens =
            (self.saw_usage || self.usage.prompt_tokens > 0).then_some(self.usage.prompt_tokens);
        let first = self.trace.and_then(|t| t.first_output_at);
        let ttft = first.map(|at| at.duration_since(self.arrived));
        // Time per output token after the first, once per request.
        let tpot = match (first, completion_tokens) {
            (Some(first), Some(tokens)) if tokens > 1 => {
                Some(now.duration_since(first) / (tokens - 1))
            }
            _ => None,
        };
        let failovers = self.trace.map_or(0, |t| t.failovers);
        // The router's own share: to the worker, less the client's upload and the wait for
        // capacity; measured only when the first worker served it and no image was fetched.
        let overhead = self
            .trace
            .filter(|t| t.failovers == 0 && !self.fetched_images);
        let overhead = overhead.map(|t| {
            t.sent_at
                .saturating_duration_since(self.arrived)
                .saturating_sub(self.body_read + t.queued)
        });
        let outcome = if self.client_gone {
            "client_closed"
        } else if self.stream_failed {
            "stream_error"
        } else if self.status == CLIENT_CLOSED {
            "client_closed"
        } else if self.status >= 400 {
            "error"
        } else {
            "ok"
        };
        self.metrics.request_finished(&RequestOutcome {
            route: self.route,
            model: &self.model,
            status: self.status,
            stream_failed: self.stream_failed,
            served: self.worker.is_some(),
            duration,
            time_to_first_token: ttft,
            time_per_output_token: tpot,
            prompt_tokens,
            completion_tokens,
            overhead,
            failovers,
        });
        let ms = |d: Option<Duration>| d.map(|d| d.as_secs_f64() * 1000.0);
        macro_rules! line {
            ($level:expr) => {
                tracing::event!(
                    target: "auxot_request",
                    $level,
                    request_id = %self.id,
                    key_id = self.key_id.as_deref(),
                    route = self.route,
                    model = %self.model,
                    worker = self.worker.as_deref(),
                    status = self.status,
                    outcome,
                    prompt_tokens,
                    completion_tokens,
                    ttft_ms = ms(ttft),
                    duration_ms = duration.as_secs_f64() * 1000.0,
                    failovers,
                    "request"
                )
            };
        }
        // Probes and scrapes come every few seconds: their lines only when asked for.
        if matches!(self.route, "health" | "metrics") {
            line!(tracing::Level::DEBUG);
        } else {
            line!(tracing::Level::INFO);
        }
    }
}

impl Drop for RequestRecord {
    fn drop(&mut self) {
        if let Some(inner) = self.0.take() {
            inner.finish();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::ClusterView;

    fn scrape(metrics: &Metrics) -> String {
        metrics.render(&ClusterView {
            workers: &[],
            queued: 0,
            gossip: None,
        })
    }

    #[test]
    fn a_dropped_record_counts_once_and_a_detached_one_when_it_ends() {
        let metrics = Arc::new(Metrics::new());
        let arrived = Instant::now();
        let mut record =
            RequestRecord::start(metrics.clone(), "req_1".into(), "openai_chat", arrived);
        record.asked_for("m", false);
        record.served(
            "w1",
            "m",
            Trace {
                failovers: 0,
                queued: Duration::ZERO,
                sent_at: arrived,
                first_output_at: Some(arrived),
            },
        );
        let mut stream = record.detach();
        drop(record);
        assert!(scrape(&metrics).contains("auxot_router_requests_in_flight 1"));
        stream.observe(&ChatEvent::Usage(Usage {
            prompt_tokens: 5,
            completion_tokens: 3,
        }));
        drop(stream);
        let text = scrape(&metrics);
        assert!(text.contains("auxot_router_requests_in_flight 0"), "{text}");
        assert!(
            text.contains(
                "auxot_router_requests_total{model=\"m\",route=\"openai_chat\",status=\"200\"} 1"
            ),
            "{text}"
        );
        assert!(text.contains("gen_ai_server_time_per_output_token_seconds_count{gen_ai_operation_name=\"chat\",gen_ai_response_model=\"m\"} 1"));
    }

    #[test]
    fn unserved_requests_keep_only_known_model_names() {
        let metrics = Arc::new(Metrics::new());
        let mut record = RequestRecord::start(
            metrics.clone(),
            "req_2".into(),
            "openai_chat",
            Instant::now(),
        );
        record.asked_for("made-up", false);
        record.unserved(|m| m == "auto");
        record.status(404);
        drop(record);
        assert!(scrape(&metrics).contains(
            "auxot_router_requests_total{model=\"unknown\",route=\"openai_chat\",status=\"404\"} 1"
        ));
    }
}
