//! Every gossip key in one place, so the set of things a node publishes is visible at a glance.
//!
//! Values are short strings or small JSON documents: chitchat sends whole values in UDP
//! datagrams, so nothing per-request ever goes into gossip.

/// `router` or `worker`.
pub const ROLE: &str = "role";
/// The product version of the node.
pub const VERSION: &str = "version";
/// `host:port` where the node accepts QUIC connections (workers).
pub const QUIC_ADDR: &str = "quic_addr";
/// `not_ready` while loading, `ready` when serving, `draining` when stopping.
pub const READINESS: &str = "readiness";
/// JSON list of [`super::node::ModelInfo`] the worker serves.
pub const MODELS: &str = "models";
/// JSON [`super::node::DeviceInfo`]: where the worker computes.
pub const DEVICE: &str = "device";
/// Requests the worker runs at once before queueing.
pub const CAPACITY: &str = "capacity";
/// Requests in flight on the worker, refreshed at most once a second.
pub const LOAD: &str = "load";
/// JSON list of [`crate::tools::ToolInfo`] a tools worker serves.
pub const TOOLS: &str = "tools";
/// `host:port` of a router's HTTP API.
pub const HTTP_ADDR: &str = "http_addr";
