//! One error type for the PKI, so callers (router setup, enrollment, gossip checks) can tell a
//! refused certificate from a broken file from a bug in how a configuration was built.

/// Why a key, certificate or TLS configuration was refused or could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("tls configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    #[error("node id `{0}` is not usable as a certificate name (use lowercase letters, digits and `-`, at most 63)")]
    NodeId(String),
    #[error("role `{0}` is not one of router, worker, tools")]
    Role(String),
    #[error("certificate signing request: {0}")]
    Csr(String),
    #[error("only Ed25519 keys are used in an auxot cluster")]
    KeyAlgorithm,
    #[error("key: {0}")]
    Key(String),
    #[error("PEM: {0}")]
    Pem(String),
    #[error("certificate: {0}")]
    Certificate(String),
    #[error("certificate authority: {0}")]
    Authority(String),
    #[error("certificate chain does not verify: {0}")]
    Chain(webpki::Error),
    #[error("peer refused: {0}")]
    Refused(String),
    #[error("signature does not verify")]
    Signature,
    #[error("the operating system's random source failed")]
    Random,
}
