//! The router's generation settings and the forwarder they work through, shared by every
//! request (the tool loop keeps a handle to start later rounds).

use std::sync::Arc;

use super::images::FetchPolicy;
use crate::forward::Forwarder;
use crate::metrics::Metrics;

/// Default of `--max-continuations`.
pub const DEFAULT_MAX_CONTINUATIONS: u32 = 2;

/// What generations need: the forwarder and the router's generation settings.
pub struct Generator {
    pub forwarder: Forwarder,
    /// Where images given by URL may be fetched from.
    pub image_policy: FetchPolicy,
    /// Run mesh tools for every request that does not say otherwise.
    pub mesh_tools_by_default: bool,
    /// Tool rounds the router runs for one request.
    pub max_tool_rounds: u32,
    /// Times one generation may move to another worker after its worker was lost mid-way.
    pub max_continuations: u32,
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
            max_continuations: DEFAULT_MAX_CONTINUATIONS,
            metrics: Arc::default(),
        }
    }

    /// Records into `metrics` (a fresh registry otherwise).
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Sets how often one generation may be continued on another worker (0: never).
    pub fn with_max_continuations(mut self, max: u32) -> Self {
        self.max_continuations = max;
        self
    }

    /// Sets the server-side tool loop defaults.
    pub fn with_mesh_tools(mut self, by_default: bool, max_rounds: u32) -> Self {
        self.mesh_tools_by_default = by_default;
        self.max_tool_rounds = max_rounds;
        self
    }
}
