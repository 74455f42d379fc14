//! The cluster mesh: who is in the cluster and what they offer (gossip), and how requests reach
//! them (QUIC). Gossip datagrams are sealed with the cluster's gossip key; what each node
//! publishes is signed with its own key ([`signed`]); QUIC connections are mutual TLS with
//! certificates issued by the cluster CA, checked for role and node id ([`identity`]).

pub mod addr;
pub mod gossip;
pub mod identity;
pub mod keys;
pub mod node;
pub mod quic;
pub mod sealed;
pub mod signed;
