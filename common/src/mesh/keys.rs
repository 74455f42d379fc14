//! Every gossip key in one place, so the set of things a node publishes is visible at a glance.
//!
//! Values are short strings or small JSON documents: chitchat sends whole values in UDP
//! datagrams, so nothing per-request ever goes into gossip. Values a router acts on are signed by
//! the node they describe ([`super::signed`]); the node's certificate chain travels in [`CERT`].

/// `router` or `worker`: what the node claims to be (its certificate says what it is).
pub const ROLE: &str = "role";
/// The product version of the node.
pub const VERSION: &str = "version";
/// The node's certificate chain (leaf first), base64 DER joined by `,`.
pub const CERT: &str = "cert";
/// A worker's signed advert: QUIC address, readiness, models, tools, device, capacity (JSON).
pub const ADVERT: &str = "advert";
/// A worker's signed count of requests in flight, refreshed at most once a second.
pub const LOAD: &str = "load";
/// `host:port` of a router's HTTP API.
pub const HTTP_ADDR: &str = "http_addr";
/// Prefix of the records routers replicate to each other (`rec/<kind>/<id>`), each signed by the
/// router that publishes it.
pub const RECORD_PREFIX: &str = "rec/";
