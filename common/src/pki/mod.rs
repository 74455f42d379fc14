//! The cluster's public-key infrastructure: a certificate authority held only by routers, one
//! key pair per node, certificates that name a node id and a role, and the TLS verifiers that
//! enforce both on every QUIC connection.
//!
//! Why not keep deriving everything from the join token (see [`crate::secret`])? Because then
//! every worker host holds the whole cluster's authority: anyone who reads one worker's token can
//! mint a router certificate, read and rewrite every node's gossip, and impersonate any peer.
//! Here the authority is split the way kubelet TLS bootstrap and SPIRE node attestation split it:
//!
//! - `auxot-router setup` draws a random root CA ([`ca::CertificateAuthority::generate_root`]).
//!   The root can stay offline: it signs an intermediate, routers hold only the intermediate key,
//!   and nodes present `leaf + intermediate` chains that verify against the root alone.
//! - Each node draws its own Ed25519 key ([`node_key::NodeKey`]) that never leaves it. A worker
//!   enrolls by sending a CSR and proof of a join token to a router; the CA ignores everything in
//!   the CSR except its public key and decides the name and role itself
//!   ([`ca::CertificateAuthority::issue`]).
//! - Identity lives in the certificate twice: a DNS SAN equal to the node id (so rustls' server
//!   name check does the node-id comparison) and a URI SAN `auxot://node/<role>/<node_id>` that
//!   carries the role ([`cert::PeerCert`]).
//! - Verifiers ([`verify`], [`pinned`]) chain to the root the way rustls does (webpki), then check
//!   the role, the node id dialled and a revocation hook; [`config`] builds TLS 1.3-only rustls
//!   configurations on the ring provider for quinn to wrap.
//!
//! Only Ed25519 is accepted for node and CA keys: one algorithm means one code path and no
//! downgrade choices to reason about.

pub mod ca;
pub mod cert;
pub mod config;
pub mod error;
pub mod fingerprint;
pub mod node_id;
pub mod node_key;
mod pem;
pub mod pinned;
pub mod role;
pub mod verify;

#[cfg(test)]
mod handshake_tests;

pub use ca::{CaPem, CertificateAuthority, IssuedCert};
pub use cert::{verify_chain, verify_signature, PeerCert};
pub use error::PkiError;
pub use fingerprint::Fingerprint;
pub use node_id::is_valid_node_id;
pub use node_key::NodeKey;
pub use pinned::PinnedRootVerifier;
pub use role::Role;
pub use verify::{never_revoked, PeerServerVerifier, RevocationCheck, RoleClientVerifier};
