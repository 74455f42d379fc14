//! The QUIC data plane: endpoints with the cluster's mutual TLS and a pool of connections, one
//! per peer, each carrying many request streams.
//!
//! Keep-alives every second and a four-second idle timeout make a dead peer's connection close on
//! its own within a few seconds, which is how a router notices a worker that vanished without a
//! word (SIGKILL, power loss) before gossip does.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use quinn::{Connection, Endpoint, IdleTimeout, RecvStream, SendStream, TransportConfig, VarInt};

use super::identity::{MeshIdentity, TrustPolicy};
use crate::pki::PkiError;

/// Streams a peer may have open at once; quinn's default of 100 would make `open_bi` wait
/// silently under load.
const MAX_CONCURRENT_STREAMS: u32 = 4096;
const KEEP_ALIVE: Duration = Duration::from_secs(1);
const IDLE_TIMEOUT: Duration = Duration::from_secs(4);
/// How long dialling a peer may take before the peer counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Transport settings shared by both sides of every connection.
pub fn transport_config() -> TransportConfig {
    let mut config = TransportConfig::default();
    config.max_concurrent_bidi_streams(VarInt::from_u32(MAX_CONCURRENT_STREAMS));
    config.max_concurrent_uni_streams(VarInt::from_u32(0));
    config.keep_alive_interval(Some(KEEP_ALIVE));
    config.max_idle_timeout(IdleTimeout::try_from(IDLE_TIMEOUT).ok());
    config
}

/// quinn's server configuration: this node's identity, accepting whom `policy` allows.
fn server_config(
    identity: &MeshIdentity,
    policy: &TrustPolicy,
) -> Result<quinn::ServerConfig, QuicError> {
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(identity.server_tls(policy)?)
        .map_err(|e| QuicError::Crypto(e.to_string()))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(Arc::new(transport_config()));
    Ok(config)
}

/// quinn's client configuration: this node's identity, dialling whom `policy` allows.
fn client_config(
    identity: &MeshIdentity,
    policy: &TrustPolicy,
) -> Result<quinn::ClientConfig, QuicError> {
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(identity.client_tls(policy)?)
        .map_err(|e| QuicError::Crypto(e.to_string()))?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(Arc::new(transport_config()));
    Ok(config)
}

/// Why a stream to a peer could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum QuicError {
    #[error("tls: {0}")]
    Tls(#[from] PkiError),
    #[error("quic crypto configuration: {0}")]
    Crypto(String),
    #[error("binding the QUIC endpoint on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("connecting to {node} at {addr}: {reason}")]
    Connect {
        node: String,
        addr: SocketAddr,
        reason: String,
    },
    #[error("connection to {node} lost: {source}")]
    Connection {
        node: String,
        source: quinn::ConnectionError,
    },
}

/// A QUIC endpoint speaking the cluster's protocol.
#[derive(Clone)]
pub struct QuicEndpoint {
    endpoint: Endpoint,
    /// Whether it accepts connections (workers) or only dials (routers).
    accept: bool,
    /// The configuration used to dial, replaced when the certificate is renewed.
    client: Arc<Mutex<quinn::ClientConfig>>,
}

impl QuicEndpoint {
    /// Binds an endpoint that dials peers and, when `accept` is set, accepts their connections.
    pub fn bind(
        identity: &MeshIdentity,
        policy: &TrustPolicy,
        addr: SocketAddr,
        accept: bool,
    ) -> Result<Self, QuicError> {
        let socket =
            std::net::UdpSocket::bind(addr).map_err(|source| QuicError::Bind { addr, source })?;
        Self::on_socket(identity, policy, socket, accept)
    }

    /// Like [`Self::bind`], on a socket the caller bound.
    pub fn on_socket(
        identity: &MeshIdentity,
        policy: &TrustPolicy,
        socket: std::net::UdpSocket,
        accept: bool,
    ) -> Result<Self, QuicError> {
        let server = if accept {
            Some(server_config(identity, policy)?)
        } else {
            None
        };
        let addr = socket.local_addr().map_err(|source| QuicError::Bind {
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            source,
        })?;
        let runtime = quinn::default_runtime().ok_or_else(|| QuicError::Bind {
            addr,
            source: std::io::Error::other("no async runtime"),
        })?;
        let endpoint = Endpoint::new(quinn::EndpointConfig::default(), server, socket, runtime)
            .map_err(|source| QuicError::Bind { addr, source })?;
        Ok(QuicEndpoint {
            endpoint,
            accept,
            client: Arc::new(Mutex::new(client_config(identity, policy)?)),
        })
    }

    /// Switches to a renewed identity: new connections (both ways) present the new certificate;
    /// open ones keep theirs.
    pub fn set_identity(
        &self,
        identity: &MeshIdentity,
        policy: &TrustPolicy,
    ) -> Result<(), QuicError> {
        if self.accept {
            self.endpoint
                .set_server_config(Some(server_config(identity, policy)?));
        }
        *self.client.lock().unwrap_or_else(|p| p.into_inner()) = client_config(identity, policy)?;
        Ok(())
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    /// The underlying endpoint, for accepting connections.
    pub fn inner(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Dials `node` at `addr`; the server must hold a certificate for that node id.
    pub async fn connect(&self, node: &str, addr: SocketAddr) -> Result<Connection, QuicError> {
        let err = |reason: String| QuicError::Connect {
            node: node.to_string(),
            addr,
            reason,
        };
        let config = self
            .client
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let connecting = self
            .endpoint
            .connect_with(config, addr, node)
            .map_err(|e| err(e.to_string()))?;
        match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(err(e.to_string())),
            Err(_) => Err(err(format!("no answer within {CONNECT_TIMEOUT:?}"))),
        }
    }

    /// Closes every connection, telling peers this node is shutting down.
    pub fn close(&self) {
        self.endpoint.close(
            VarInt::from_u32(crate::wire::CODE_SHUTDOWN),
            b"shutting down",
        );
    }
}

/// Whether two socket addresses name the same peer; a dual-stack socket reports IPv4 peers as
/// IPv4-mapped IPv6 addresses.
fn same_addr(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port() && a.ip().to_canonical() == b.ip().to_canonical()
}

/// Called with a peer's node id and generation when a connection to it closes for any reason.
pub type CloseHook = Arc<dyn Fn(&str, u64) + Send + Sync>;

/// Which incarnation of which node to talk to, and where.
#[derive(Debug, Clone, Copy)]
pub struct Peer<'a> {
    pub node: &'a str,
    /// The gossip generation of this incarnation; a restarted node gets a new connection.
    pub generation: u64,
    pub addr: SocketAddr,
}

type Slot = Arc<tokio::sync::Mutex<Option<Connection>>>;

/// One live connection per peer incarnation, dialled on first use and redialled after it closes.
pub struct ConnectionPool {
    endpoint: QuicEndpoint,
    /// Per-peer slot; the async mutex makes concurrent first requests share one dial.
    slots: Mutex<HashMap<(String, u64), Slot>>,
    on_close: Option<CloseHook>,
}

impl ConnectionPool {
    pub fn new(endpoint: QuicEndpoint) -> Self {
        ConnectionPool {
            endpoint,
            slots: Mutex::new(HashMap::new()),
            on_close: None,
        }
    }

    /// Runs `hook` whenever a pooled connection closes, so a peer that vanished is noticed by
    /// its silence (the idle timeout) even when no request is reading from it.
    pub fn with_close_hook(mut self, hook: CloseHook) -> Self {
        self.on_close = Some(hook);
        self
    }

    fn slot(&self, peer: Peer<'_>) -> Slot {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        // Forget closed connections of other incarnations of this node.
        slots.retain(|(node, generation), slot| {
            node != peer.node
                || *generation == peer.generation
                || slot
                    .try_lock()
                    .map(|conn| conn.as_ref().is_some_and(|c| c.close_reason().is_none()))
                    .unwrap_or(true)
        });
        slots
            .entry((peer.node.to_string(), peer.generation))
            .or_default()
            .clone()
    }

    /// A live connection to `peer`, dialling it if needed.
    pub async fn connection(&self, peer: Peer<'_>) -> Result<Connection, QuicError> {
        let slot = self.slot(peer);
        let mut guard = slot.lock().await;
        if let Some(conn) = guard.as_ref() {
            if conn.close_reason().is_none() && same_addr(conn.remote_address(), peer.addr) {
                return Ok(conn.clone());
            }
        }
        let conn = self.endpoint.connect(peer.node, peer.addr).await?;
        if let Some(hook) = &self.on_close {
            let (hook, watched) = (hook.clone(), conn.clone());
            let (node, generation) = (peer.node.to_string(), peer.generation);
            tokio::spawn(async move {
                watched.closed().await;
                hook(&node, generation);
            });
        }
        *guard = Some(conn.clone());
        Ok(conn)
    }

    /// Opens a request stream to `peer`.
    pub async fn open(&self, peer: Peer<'_>) -> Result<(SendStream, RecvStream), QuicError> {
        let conn = self.connection(peer).await?;
        conn.open_bi()
            .await
            .map_err(|source| QuicError::Connection {
                node: peer.node.to_string(),
                source,
            })
    }

    pub fn endpoint(&self) -> &QuicEndpoint {
        &self.endpoint
    }
}
