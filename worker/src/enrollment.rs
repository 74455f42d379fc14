//! Getting and keeping this worker's certificate.
//!
//! At start the worker makes (or loads, with `--state-dir`) its own key pair and asks a router
//! for a certificate with its join token ([`enroll`]). The token only lets it ask: the router
//! decides the node id's role and refuses a node id held by a live node under another key or a
//! revoked one. Afterwards the worker renews at two thirds of the certificate's life with the
//! certificate itself ([`renew_forever`]), so the token is no longer needed: it is dropped from
//! memory once enrolled.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context as _};
use auxot_common::enroll::{self, EnrollError, Enrollment};
use auxot_common::join_token::JoinToken;
use auxot_common::mesh::identity::{MeshIdentity, TrustPolicy};
use auxot_common::mesh::quic::QuicEndpoint;
use auxot_common::pki::{Fingerprint, NodeKey};
use tracing::{info, warn};

use crate::advertise::Advertiser;

/// Name of the key file in the state directory.
const KEY_FILE: &str = "node-key.pem";
/// Longest wait between two enrollment attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// This worker's key: loaded from `state_dir` when it holds one, else drawn (and saved there).
/// Keeping it lets a restarted worker take its node id back at once instead of waiting for its
/// old incarnation to be declared dead.
pub fn node_key(state_dir: Option<&Path>) -> anyhow::Result<NodeKey> {
    let Some(dir) = state_dir else {
        return Ok(NodeKey::generate()?);
    };
    let path = dir.join(KEY_FILE);
    if path.exists() {
        let pem = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        return NodeKey::from_pem(&pem).with_context(|| format!("loading {}", path.display()));
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let key = NodeKey::generate()?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    use std::io::Write as _;
    options
        .open(&path)
        .and_then(|mut file| file.write_all(key.to_pem().as_bytes()))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(key)
}

/// Enrolls with the first router among `seeds` that answers, retrying transient failures (a
/// router not up yet, a node id still held by this worker's previous incarnation) until
/// `timeout`.
pub async fn join(
    seeds: &[String],
    token: &JoinToken,
    key: &NodeKey,
    node_id: &str,
    timeout: Duration,
) -> anyhow::Result<Enrollment> {
    let request = enroll::join_request(key, node_id, token)?;
    let deadline = Instant::now() + timeout;
    let mut backoff = Duration::from_millis(200);
    loop {
        let mut last: Option<EnrollError> = None;
        for seed in seeds {
            match enroll::enroll(seed, token.root, &request).await {
                Ok(enrollment) => {
                    info!(%seed, "enrolled: got a certificate");
                    return Ok(enrollment);
                }
                Err(err) if err.is_transient() => {
                    warn!(%seed, %err, "enrollment not possible yet");
                    last = Some(err);
                }
                Err(err) => bail!("enrolling with {seed}: {err}"),
            }
        }
        let wait = match &last {
            Some(EnrollError::Refused {
                retry_after: Some(after),
                ..
            }) => *after,
            _ => backoff,
        };
        if Instant::now() + wait > deadline {
            let why = last.map_or_else(|| "no seed given".to_string(), |e| e.to_string());
            bail!("could not enroll within {timeout:?}: {why}");
        }
        tokio::time::sleep(wait).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// What renewal needs to switch to a new certificate.
pub struct Renewal {
    pub key: Arc<NodeKey>,
    pub root: Fingerprint,
    pub endpoint: QuicEndpoint,
    pub policy: TrustPolicy,
    pub advertiser: Arc<Advertiser>,
}

/// Renews the certificate at two thirds of its life, at any router gossip knows, and switches
/// the QUIC endpoint and the gossiped chain to the new one. Runs until aborted; a refusal
/// (revoked) is logged and retried until the certificate runs out.
pub async fn renew_forever(renewal: Renewal, mut identity: MeshIdentity) {
    loop {
        let left = identity
            .not_after()
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        tokio::time::sleep(left * 2 / 3).await;
        loop {
            match renew_once(&renewal, &identity).await {
                Ok(next) => {
                    info!("renewed this worker's certificate");
                    identity = next;
                    break;
                }
                Err(err) => {
                    warn!("renewing the certificate failed: {err:#}");
                    if identity.not_after() <= SystemTime::now() {
                        warn!("the certificate expired: routers no longer accept this worker");
                    }
                    tokio::time::sleep(MAX_BACKOFF).await;
                }
            }
        }
    }
}

async fn renew_once(renewal: &Renewal, current: &MeshIdentity) -> anyhow::Result<MeshIdentity> {
    let request = enroll::renew_request(
        &renewal.key,
        current.chain(),
        &renewal.key,
        current.node_id(),
    )?;
    let mut last = None;
    for router in renewal.advertiser.routers().await {
        match enroll::enroll(&router.to_string(), renewal.root, &request).await {
            Ok(enrollment) => {
                let key = NodeKey::from_pkcs8_der(renewal.key.pkcs8_der().secret_pkcs8_der())?;
                let identity = MeshIdentity::new(key, enrollment.chain, enrollment.root)?;
                renewal.endpoint.set_identity(&identity, &renewal.policy)?;
                renewal.advertiser.set_chain(identity.chain_value()).await;
                return Ok(identity);
            }
            Err(err) => last = Some(err),
        }
    }
    match last {
        Some(err) => Err(err.into()),
        None => bail!("no router is known to renew with"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_key_comes_back_after_a_restart() {
        let dir = tempfile::tempdir().expect("dir");
        let first = node_key(Some(dir.path())).expect("key");
        let again = node_key(Some(dir.path())).expect("key");
        assert_eq!(first.public_key_raw(), again.public_key_raw());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let ephemeral = node_key(None).expect("key");
        assert_ne!(ephemeral.public_key_raw(), first.public_key_raw());
    }
}
