//! The cluster mesh: who is in the cluster and what they offer (gossip), and how requests reach
//! them (QUIC). Both are authenticated by the cluster secret.

pub mod addr;
pub mod gossip;
pub mod keys;
pub mod node;
pub mod quic;
pub mod sealed;
pub mod tls;
