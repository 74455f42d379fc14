//! What every auxot node shares: the canonical chat request and event types that cross the wire,
//! the framing of those messages on QUIC streams, the cluster's public-key infrastructure and
//! join tokens, enrollment, typed and signed gossip state, and the transports (sealed gossip
//! over UDP, mutual-TLS QUIC).
//!
//! Routers and workers depend on this crate and never on each other, so the wire protocol has one
//! definition. Dialects (OpenAI, Anthropic) live in the router and translate to and from
//! [`chat`]; they never translate into each other.
#![forbid(unsafe_code)]

pub mod address_policy;
pub mod chat;
pub mod completion;
pub mod embedding;
pub mod enroll;
pub mod error;
pub mod join_token;
pub mod logging;
pub mod mesh;
pub mod pki;
pub mod signal;
pub mod tools;
pub mod wire;

/// The product version, gossiped by every node so mixed-version clusters can be spotted.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
