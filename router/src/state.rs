//! What every request handler shares.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use auxot_common::mesh::sealed::GossipStats;
use tokio_util::sync::CancellationToken;

use crate::auth::Authenticator;
use crate::forward::Forwarder;
use crate::images::FetchPolicy;

pub struct AppState {
    pub node_id: String,
    pub auth: Authenticator,
    pub forwarder: Forwarder,
    /// Where images given by URL may be fetched from.
    pub image_policy: FetchPolicy,
    /// Set once the router starts shutting down.
    shutting_down: AtomicBool,
    /// Run mesh tools for every request that does not say otherwise.
    mesh_tools_by_default: bool,
    /// Tool rounds the router runs for one request.
    max_tool_rounds: u32,
    /// This router's gossip traffic, reported by `/health`.
    pub gossip_stats: Arc<GossipStats>,
    /// Cancelled when the shutdown deadline passes: open streams end with an error event.
    pub streams_deadline: CancellationToken,
}

impl AppState {
    pub fn new(
        node_id: String,
        auth: Authenticator,
        forwarder: Forwarder,
        image_policy: FetchPolicy,
    ) -> Self {
        AppState {
            node_id,
            auth,
            forwarder,
            image_policy,
            shutting_down: AtomicBool::new(false),
            mesh_tools_by_default: false,
            max_tool_rounds: 4,
            gossip_stats: Arc::default(),
            streams_deadline: CancellationToken::new(),
        }
    }

    pub fn with_gossip_stats(mut self, stats: Arc<GossipStats>) -> Self {
        self.gossip_stats = stats;
        self
    }

    /// Sets the server-side tool loop defaults.
    pub fn with_mesh_tools(mut self, by_default: bool, max_rounds: u32) -> Self {
        self.mesh_tools_by_default = by_default;
        self.max_tool_rounds = max_rounds;
        self
    }

    pub fn mesh_tools_by_default(&self) -> bool {
        self.mesh_tools_by_default
    }

    pub fn max_tool_rounds(&self) -> u32 {
        self.max_tool_rounds
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    pub fn start_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }
}
