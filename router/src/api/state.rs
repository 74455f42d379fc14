//! What every request handler shares.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use auxot_common::mesh::sealed::GossipStats;
use tokio_util::sync::CancellationToken;

use super::admin::Admin;
use super::auth::Authenticator;
use super::body::BodyBudget;
use super::edge::EdgeConfig;
use crate::dialect::responses::state::StateKey;
use crate::dialect::DialectContext;
use crate::generation::Generator;
use crate::metrics::Metrics;
use crate::quota::Quotas;
use crate::registry::Registry;

pub struct AppState {
    pub node_id: String,
    pub auth: Authenticator,
    pub generator: Arc<Generator>,
    pub admin: Admin,
    /// This router's gossip traffic, reported by `/health`.
    pub gossip_stats: Arc<GossipStats>,
    /// Set once the router starts shutting down.
    shutting_down: AtomicBool,
    /// Cancelled when the shutdown deadline passes: open streams end with an error event.
    pub streams_deadline: CancellationToken,
    /// Timeouts, caps and body limits of the HTTP edge.
    pub edge: EdgeConfig,
    /// The bytes of request bodies held now, against `edge.body_budget_bytes`.
    pub bodies: BodyBudget,
    /// Limits and usage per key, shared with the other routers through the records.
    pub quotas: Arc<Quotas>,
    /// What dialects need besides a body (the key of Responses API conversations).
    pub dialects: DialectContext,
}

impl AppState {
    pub fn new(
        node_id: String,
        auth: Authenticator,
        generator: Arc<Generator>,
        admin: Admin,
    ) -> Self {
        let quotas = Arc::new(Quotas::new(
            node_id.clone(),
            admin.records.clone(),
            generator.metrics.clone(),
        ));
        AppState {
            quotas,
            node_id,
            auth,
            generator,
            admin,
            gossip_stats: Arc::default(),
            shutting_down: AtomicBool::new(false),
            streams_deadline: CancellationToken::new(),
            edge: EdgeConfig::default(),
            bodies: BodyBudget::new(EdgeConfig::default().body_budget_bytes),
            // A key of this router's own until `with_response_key` gives the cluster's.
            dialects: DialectContext {
                response_state: Arc::new(StateKey::random()),
                streamed_responses: Arc::default(),
            },
        }
    }

    /// Seals Responses API conversations with the key every router of the cluster holds.
    pub fn with_response_key(mut self, key: StateKey) -> Self {
        self.dialects.response_state = Arc::new(key);
        self
    }

    /// Sets the edge's limits (the defaults otherwise).
    pub fn with_edge(mut self, edge: EdgeConfig) -> Self {
        self.bodies = BodyBudget::new(edge.body_budget_bytes);
        self.edge = edge;
        self
    }

    pub fn with_gossip_stats(mut self, stats: Arc<GossipStats>) -> Self {
        self.gossip_stats = stats;
        self
    }

    /// This router's metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.generator.metrics
    }

    /// The workers this router sees.
    pub fn registry(&self) -> &Registry {
        self.generator.forwarder.registry()
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    pub fn start_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }
}
