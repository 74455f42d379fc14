//! The enrollment service: workers get and renew their certificates here.
//!
//! It listens on TCP at the router's gossip port number and speaks TLS with the router's own
//! certificate (and the root, so a worker pinning the root's fingerprint can check it). One
//! request, one reply ([`auxot_common::enroll`]). A join needs a valid join token; a renewal
//! needs the current certificate and a signature by its key. Either is refused for a revoked node
//! id, and a join is refused while a live node holds the node id under another key, so a worker
//! cannot take over another's identity (the real one restarting in place waits until its old
//! incarnation is declared dead, and is told to retry).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use auxot_common::enroll::{
    self, check_renew_proof, EnrollReply, EnrollRequest, GossipGrant, MAX_MESSAGE_BYTES,
};
use auxot_common::join_token::secret_hash;
use auxot_common::mesh::gossip::GossipKey;
use auxot_common::mesh::identity::{decode_chain, encode_chain};
use auxot_common::pki::{verify_chain, CertificateAuthority, PeerCert, Role};
use auxot_common::wire::{read_frame_max, write_frame};
use base64::Engine as _;
use rustls_pki_types::{CertificateDer, UnixTime};
use tokio::io::AsyncWriteExt as _;
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};

use crate::records::{now_secs, Records};

/// Enrollments handled at once; more wait for their turn (each signs one certificate).
const CONCURRENT: usize = 16;
/// How long a client may take for the whole exchange.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a worker whose node id is held by a live node waits before asking again.
const CONFLICT_RETRY: Duration = Duration::from_secs(3);

/// Who holds which node id now: the public key of each live worker's certificate.
pub type Owners = Arc<RwLock<HashMap<String, [u8; 32]>>>;

/// What the enrollment service needs.
pub struct Enroller {
    pub ca: Arc<CertificateAuthority>,
    pub records: Records,
    pub owners: Owners,
    pub gossip: GossipKey,
    /// Lifetime of the certificates it issues to workers.
    pub cert_lifetime: Duration,
    /// This router's TLS configuration, replaced when its own certificate is renewed.
    pub tls: RwLock<Arc<rustls::ServerConfig>>,
}

fn refused(reason: impl Into<String>) -> EnrollReply {
    EnrollReply::Refused {
        reason: reason.into(),
        retry_after_secs: None,
    }
}

impl Enroller {
    fn root(&self) -> &CertificateDer<'static> {
        self.ca.root_der()
    }

    /// Answers one request.
    pub fn handle(&self, request: EnrollRequest) -> EnrollReply {
        match request {
            EnrollRequest::Join {
                node_id,
                token_id,
                token_secret,
                csr,
            } => self.join(&node_id, &token_id, &token_secret, &csr),
            EnrollRequest::Renew { chain, csr, proof } => self.renew(&chain, &csr, &proof),
        }
    }

    fn join(&self, node_id: &str, token_id: &str, secret: &str, csr: &str) -> EnrollReply {
        // One answer for every bad token, so a caller learns nothing about which part was wrong.
        let bad_token = || refused("the join token is not valid (unknown, revoked or expired)");
        let Some(token) = self.records.token(token_id) else {
            return bad_token();
        };
        let Some(secret) = enroll::decode(secret) else {
            return bad_token();
        };
        // Comparing SHA-256 digests: a timing difference reveals digest bytes, which say
        // nothing useful about a 32-byte random secret.
        let matches = secret_hash(&secret) == token.secret_sha256;
        if !matches || !token.is_valid_at(now_secs()) {
            return bad_token();
        }
        if self.records.is_revoked(node_id) {
            return refused(format!("node id {node_id} is revoked"));
        }
        let Some(csr) = enroll::decode(csr) else {
            return refused("the certificate request is not base64");
        };
        self.issue(node_id, token.role, &csr, None)
    }

    fn renew(&self, chain: &str, csr: &str, proof: &str) -> EnrollReply {
        let Some(chain) = decode_chain(chain) else {
            return refused("malformed certificate chain");
        };
        let current: PeerCert = match verify_chain(&chain, self.root(), UnixTime::now()) {
            Ok(cert) => cert,
            Err(err) => {
                return refused(format!(
                    "the current certificate does not verify ({err}): join again with a token"
                ))
            }
        };
        if current.role == Role::Router {
            return refused("routers do not renew here");
        }
        if self.records.is_revoked(&current.node_id) {
            return refused(format!("node id {} is revoked", current.node_id));
        }
        let Some(csr) = enroll::decode(csr) else {
            return refused("the certificate request is not base64");
        };
        if !check_renew_proof(&current.public_key_raw, &csr, proof) {
            return refused("the renewal is not signed by the current certificate's key");
        }
        self.issue(
            &current.node_id,
            current.role,
            &csr,
            Some(current.public_key_raw),
        )
    }

    /// Issues a certificate for the key in `csr`, unless a live node holds `node_id` under
    /// another key (`renewing` is the key of the certificate being renewed, which may hold it).
    fn issue(
        &self,
        node_id: &str,
        role: Role,
        csr: &[u8],
        renewing: Option<[u8; 32]>,
    ) -> EnrollReply {
        let csr_key = match x509_csr_key(csr) {
            Some(key) => key,
            None => return refused("the certificate request is malformed"),
        };
        let owner = self
            .owners
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(node_id)
            .copied();
        if let Some(owner) = owner {
            if owner != csr_key && Some(owner) != renewing {
                return EnrollReply::Refused {
                    reason: format!(
                        "node id {node_id} is held by a live node with another key; choose another name, or wait for the old node to be declared dead"
                    ),
                    retry_after_secs: Some(CONFLICT_RETRY.as_secs()),
                };
            }
        }
        match self.ca.issue(csr, node_id, role, self.cert_lifetime) {
            Ok(issued) => {
                info!(
                    node = node_id,
                    role = role.as_str(),
                    "issued a node certificate"
                );
                EnrollReply::Issued {
                    chain: encode_chain(&issued.chain),
                    root: enroll::encode(self.root()),
                    gossip: GossipGrant {
                        cluster_id: self.gossip.cluster_id.clone(),
                        key: base64::engine::general_purpose::STANDARD_NO_PAD
                            .encode(self.gossip.key),
                    },
                }
            }
            Err(err) => refused(format!("the certificate request was refused: {err}")),
        }
    }
}

/// The Ed25519 public key a CSR asks a certificate for.
fn x509_csr_key(csr: &[u8]) -> Option<[u8; 32]> {
    use x509_parser::prelude::FromDer as _;
    let (_, parsed) =
        x509_parser::certification_request::X509CertificationRequest::from_der(csr).ok()?;
    parsed
        .certification_request_info
        .subject_pki
        .subject_public_key
        .data
        .as_ref()
        .try_into()
        .ok()
}

/// Serves enrollment on `listener` until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, enroller: Arc<Enroller>) {
    let permits = Arc::new(Semaphore::new(CONCURRENT));
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                warn!(%err, "enrollment accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let enroller = enroller.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(EXCHANGE_TIMEOUT, exchange(tcp, &enroller)).await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => debug!(%peer, %err, "enrollment exchange failed"),
                Err(_) => debug!(%peer, "enrollment exchange timed out"),
            }
        });
    }
}

async fn exchange(tcp: tokio::net::TcpStream, enroller: &Enroller) -> anyhow::Result<()> {
    let config = enroller
        .tls
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let mut tls = tokio_rustls::TlsAcceptor::from(config).accept(tcp).await?;
    let Some(request) = read_frame_max::<_, EnrollRequest>(&mut tls, MAX_MESSAGE_BYTES).await?
    else {
        return Ok(());
    };
    let reply = enroller.handle(request);
    if let EnrollReply::Refused { reason, .. } = &reply {
        info!(%reason, "refused an enrollment");
    }
    write_frame(&mut tls, &reply).await?;
    tls.shutdown().await?;
    Ok(())
}
