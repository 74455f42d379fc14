//! The router's generation settings and the forwarder they work through, shared by every
//! request (the tool loop keeps a handle to start later rounds).

use std::sync::Arc;

use super::images::FetchPolicy;
use crate::forward::Forwarder;
use crate::metrics::Metrics;

/// What generations need: the forwarder and the router's generation settings.
pub struct Generator {
    pub forwarder: Forwarder,
    /// Where images given by URL may be fetched from.
    pub image_policy: FetchPolicy,
    /// Run mesh tools for every request that does not say otherwise.
    pub mesh_tools_by_default: bool,
    /// Tool rounds the router runs for one request.
    pub max_tool_rounds: u32,
    /// The router's metrics (tool calls are counted where they are run).
    pub metrics: Arc<Metrics>,
}

impl Generator {
    pub fn new(forwarder: Forwarder, image_policy: FetchPolicy) -> Self {
        Generator {
            forwarder,
            image_policy,
            mesh_tools_by_default: false,
            max_tool_rounds: 4,
            metrics: Arc::default(),
        }
    }

    /// Records into `metrics` (a fresh registry otherwise).
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Sets the server-side tool loop defaults.
    pub fn with_mesh_tools(mut self, by_default: bool, max_rounds: u32) -> Self {
        self.mesh_tools_by_default = by_default;
        self.max_tool_rounds = max_rounds;
        self
    }
}
