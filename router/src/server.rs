//! A router's life: join gossip, keep the worker view current, serve HTTP, and on shutdown stop
//! accepting, let open requests finish within a deadline, then leave.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use auxot_common::mesh::addr;
use auxot_common::mesh::gossip::{workers_in, Gossip, GossipConfig, DEFAULT_GOSSIP_INTERVAL};
use auxot_common::mesh::keys;
use auxot_common::mesh::node::router_key_values;
use auxot_common::mesh::quic::{ConnectionPool, QuicEndpoint};
use auxot_common::mesh::tls::NodeIdentity;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::api;
use crate::api::auth::Authenticator;
use crate::api::state::AppState;
use crate::cli::ServeArgs;
use crate::forward::admission::AdmissionLimits;
use crate::forward::transport::QuicTransport;
use crate::forward::Forwarder;
use crate::generation::images::FetchPolicy;
use crate::generation::Generator;
use crate::registry::Registry;
use crate::store;

/// The sockets a router serves on, bound by the caller (tests bind port 0 and pass them in, so
/// no port is released and re-bound).
pub struct Listeners {
    pub http: std::net::TcpListener,
    pub gossip: std::net::UdpSocket,
    pub quic: std::net::UdpSocket,
}

impl Listeners {
    /// Binds the three addresses, saying which one failed.
    pub fn bind(http: SocketAddr, gossip: SocketAddr, quic: SocketAddr) -> anyhow::Result<Self> {
        Ok(Listeners {
            http: std::net::TcpListener::bind(http)
                .with_context(|| format!("binding the HTTP address {http}"))?,
            gossip: std::net::UdpSocket::bind(gossip)
                .with_context(|| format!("binding the gossip address {gossip}/udp"))?,
            quic: std::net::UdpSocket::bind(quic)
                .with_context(|| format!("binding the QUIC address {quic}/udp"))?,
        })
    }
}

/// A running router.
pub struct RouterHandle {
    node_id: String,
    http_addr: SocketAddr,
    gossip_addr: SocketAddr,
    state: Arc<AppState>,
    server: JoinHandle<()>,
    stop: tokio::sync::oneshot::Sender<()>,
    gossip: Gossip,
    endpoint: QuicEndpoint,
    shutdown_timeout: Duration,
}

impl RouterHandle {
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// Where the HTTP API listens.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The gossip address other nodes join through.
    pub fn gossip_addr(&self) -> SocketAddr {
        self.gossip_addr
    }

    /// Stops accepting, lets open requests finish within the shutdown timeout (then ends open
    /// streams with an error event), and leaves the cluster.
    pub async fn shutdown(self) {
        info!("shutting down: no new connections, finishing open requests");
        self.state.start_shutdown();
        let _ = self.stop.send(());
        let mut server = self.server;
        tokio::select! {
            _ = &mut server => info!("all requests finished"),
            _ = tokio::time::sleep(self.shutdown_timeout) => {
                warn!("shutdown deadline passed: ending open streams with an error event");
                self.state.streams_deadline.cancel();
                // A moment for the streams to write their last event.
                let _ = tokio::time::timeout(Duration::from_secs(2), &mut server).await;
            }
        }
        self.gossip.shutdown();
        self.endpoint.close();
        tokio::time::sleep(DEFAULT_GOSSIP_INTERVAL).await;
    }
}

/// Keeps `registry` in step with gossip until the gossip handle goes away.
async fn follow_gossip(gossip: &Gossip, registry: Arc<Registry>) {
    let mut nodes = gossip.live_nodes().await;
    tokio::spawn(async move {
        loop {
            let workers = workers_in(&nodes.borrow_and_update());
            registry.update(workers);
            if nodes.changed().await.is_err() {
                return;
            }
        }
    });
}

/// Starts a router on `listeners` with the cluster in `args.data`.
pub async fn start(args: &ServeArgs, listeners: Listeners) -> anyhow::Result<RouterHandle> {
    let data = store::load(&args.data.data_dir)?;
    let response_key = crate::response_key::load_or_create(&args.data.data_dir)?;
    if data.keys.is_empty() {
        warn!("no API keys in the data directory: every authenticated request will be refused; create one with `auxot-router keys create`");
    }
    listeners.http.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listeners.http)?;
    let http_addr = listener.local_addr()?;
    let node_id = match &args.name {
        Some(name) => addr::sanitize_node_id(name),
        None => {
            addr::sanitize_node_id(&format!("router-{}-{}", addr::hostname(), http_addr.port()))
        }
    };

    let identity = NodeIdentity::issue(&data.secret, &node_id)?;
    let endpoint = QuicEndpoint::on_socket(&identity, listeners.quic, false)?;

    let advertise_host = args.advertise_host.as_deref();
    let gossip_bind = listeners.gossip.local_addr()?;
    let gossip_advertise = addr::advertise_addr(gossip_bind, advertise_host, gossip_bind.port())?;
    let http_advertise = addr::advertise_addr(http_addr, advertise_host, http_addr.port())?;
    let mut initial: Vec<(String, String)> = router_key_values(http_advertise)
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    initial.push((keys::VERSION.to_string(), auxot_common::VERSION.to_string()));
    let gossip = Gossip::spawn_on(
        &data.secret,
        GossipConfig {
            node_id: node_id.clone(),
            listen_addr: gossip_bind,
            advertise_addr: gossip_advertise,
            seeds: args.seeds.clone(),
            interval: DEFAULT_GOSSIP_INTERVAL,
        },
        Some(listeners.gossip),
        initial,
    )
    .await
    .context("joining the gossip cluster")?;

    let registry = Arc::new(Registry::new());
    follow_gossip(&gossip, registry.clone()).await;
    let limits = AdmissionLimits {
        queue_timeout: Duration::from_millis(args.queue_timeout_ms),
        max_queued: args.max_queued,
    };
    let pool = ConnectionPool::new(endpoint.clone()).with_close_hook({
        let registry = registry.clone();
        Arc::new(move |node: &str, generation: u64| {
            warn!(worker = %node, "QUIC connection closed: taking the worker out of routing");
            registry.mark_failed_generation(node, generation);
        })
    });
    let transport = Arc::new(QuicTransport::new(pool));
    let forwarder = Forwarder::new(registry, transport, args.routing.build(), limits);
    let generator = Generator::new(
        forwarder,
        FetchPolicy {
            allow_private: args.allow_private_image_urls,
        },
    )
    .with_mesh_tools(args.mesh_tools, args.max_tool_rounds);
    let state = Arc::new(
        AppState::new(
            node_id.clone(),
            Authenticator::new(data.keys),
            Arc::new(generator),
        )
        .with_gossip_stats(gossip.stats())
        .with_response_key(response_key),
    );
    info!(
        node = %node_id,
        http = %http_addr,
        gossip = %gossip_advertise,
        cluster = %data.secret.cluster_id(),
        "router serving"
    );

    let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(api::serve(listener, state.clone(), async move {
        let _ = stop_rx.await;
    }));
    Ok(RouterHandle {
        node_id,
        http_addr,
        gossip_addr: gossip_advertise,
        state,
        server,
        stop,
        gossip,
        endpoint,
        shutdown_timeout: Duration::from_secs(args.shutdown_timeout_secs),
    })
}
