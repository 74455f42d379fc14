//! A router's life: load the cluster's authority, issue itself a certificate, join gossip, keep
//! the verified view of the cluster current, replicate records, enroll workers, serve HTTP; and
//! on shutdown stop accepting, let open requests finish within a deadline, then leave.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use auxot_common::mesh::addr;
use auxot_common::mesh::gossip::{Gossip, GossipConfig, DEFAULT_GOSSIP_INTERVAL};
use auxot_common::mesh::identity::{MeshIdentity, TrustPolicy};
use auxot_common::mesh::keys;
use auxot_common::mesh::node::router_key_values;
use auxot_common::mesh::quic::{ConnectionPool, QuicEndpoint};
use auxot_common::pki::config::enrollment_server_config;
use auxot_common::pki::{CertificateAuthority, NodeKey, Role};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::api;
use crate::api::admin::Admin;
use crate::api::auth::Authenticator;
use crate::api::state::AppState;
use crate::cli::ServeArgs;
use crate::dialect::responses::state::StateKey;
use crate::enroll::{self, Enroller, Owners};
use crate::forward::admission::AdmissionLimits;
use crate::forward::transport::QuicTransport;
use crate::forward::{ForwardTimeouts, Forwarder};
use crate::generation::images::FetchPolicy;
use crate::generation::Generator;
use crate::membership::{Membership, SharedView};
use crate::metrics::Metrics;
use crate::records::replication::{PeerRouter, Replicator};
use crate::records::Records;
use crate::registry::Registry;
use crate::store;

/// Lifetime of a router's own certificate; it renews itself at two thirds of it.
const ROUTER_CERT_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

/// The sockets a router serves on, bound by the caller (tests bind port 0 and pass them in, so
/// no port is released and re-bound).
pub struct Listeners {
    pub http: std::net::TcpListener,
    pub gossip: std::net::UdpSocket,
    pub quic: std::net::UdpSocket,
    /// Enrollment (TCP, by default on the gossip port number).
    pub enroll: std::net::TcpListener,
    /// `/metrics` and `/health` without keys, for operators (`--metrics-addr`).
    pub metrics: Option<std::net::TcpListener>,
}

impl Listeners {
    /// Binds the addresses, saying which one failed; enrollment listens on TCP at `gossip`.
    pub fn bind(http: SocketAddr, gossip: SocketAddr, quic: SocketAddr) -> anyhow::Result<Self> {
        let gossip_socket = std::net::UdpSocket::bind(gossip)
            .with_context(|| format!("binding the gossip address {gossip}/udp"))?;
        // Port 0 picks a free UDP port: enrollment takes the same number on TCP.
        let enroll = SocketAddr::new(gossip.ip(), gossip_socket.local_addr()?.port());
        Ok(Listeners {
            http: std::net::TcpListener::bind(http)
                .with_context(|| format!("binding the HTTP address {http}"))?,
            gossip: gossip_socket,
            quic: std::net::UdpSocket::bind(quic)
                .with_context(|| format!("binding the QUIC address {quic}/udp"))?,
            enroll: std::net::TcpListener::bind(enroll)
                .with_context(|| format!("binding the enrollment address {enroll}/tcp"))?,
            metrics: None,
        })
    }

    /// Also binds the operators' metrics address, when there is one.
    pub fn with_metrics(mut self, metrics: Option<SocketAddr>) -> anyhow::Result<Self> {
        if let Some(addr) = metrics {
            self.metrics = Some(
                std::net::TcpListener::bind(addr)
                    .with_context(|| format!("binding the metrics address {addr}"))?,
            );
        }
        Ok(self)
    }
}

/// A running router.
pub struct RouterHandle {
    node_id: String,
    http_addr: SocketAddr,
    gossip_addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    state: Arc<AppState>,
    server: JoinHandle<()>,
    background: Vec<JoinHandle<()>>,
    /// Serves `--metrics-addr` until the router has shut down.
    metrics_server: Option<JoinHandle<()>>,
    stop: tokio::sync::oneshot::Sender<()>,
    gossip: Arc<Gossip>,
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

    /// The gossip address other nodes join (and workers enroll) through.
    pub fn gossip_addr(&self) -> SocketAddr {
        self.gossip_addr
    }

    /// Where `/metrics` is served without a key, if anywhere.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
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
        for task in &self.background {
            task.abort();
        }
        self.gossip.shutdown();
        self.endpoint.close();
        tokio::time::sleep(DEFAULT_GOSSIP_INTERVAL).await;
        if let Some(server) = self.metrics_server {
            server.abort();
        }
    }
}

/// The router's own certificate (role `router`) for `key`, issued by its CA.
fn router_identity(
    ca: &CertificateAuthority,
    key: &NodeKey,
    node_id: &str,
) -> anyhow::Result<MeshIdentity> {
    let issued = ca.issue_for_key(
        &key.public_key_raw(),
        node_id,
        Role::Router,
        ROUTER_CERT_LIFETIME,
    )?;
    let key = NodeKey::from_pkcs8_der(key.pkcs8_der().secret_pkcs8_der())?;
    Ok(MeshIdentity::new(key, issued.chain, ca.root_der().clone())?)
}

/// The enrollment TLS configuration: the router's chain followed by the root, which workers
/// pinning the root's fingerprint need to see.
fn enrollment_tls(identity: &MeshIdentity) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let mut chain = identity.chain().to_vec();
    chain.push(identity.root().clone());
    Ok(Arc::new(enrollment_server_config(
        identity.key(),
        chain,
        &[auxot_common::enroll::ALPN],
    )?))
}

/// What the gossip follower updates.
struct Follower {
    gossip: Arc<Gossip>,
    membership: Membership,
    replicator: Arc<Replicator>,
    records: Records,
    registry: Arc<Registry>,
    view: SharedView,
    owners: Owners,
    metrics: Arc<Metrics>,
}

impl Follower {
    /// Keeps the registry, the shared view, the owners and the records in step with gossip, and
    /// with the records (a revocation takes a worker out at once, gossip changed or not).
    async fn run(self) {
        let mut nodes = self.gossip.live_nodes().await;
        let mut records = self.records.subscribe();
        let self_id = self.gossip.node_id().to_string();
        loop {
            {
                let snapshot = nodes.borrow_and_update();
                records.borrow_and_update();
                self.metrics.gossip_members(snapshot.len());
                let view = self.membership.view(&snapshot);
                let peers: Vec<PeerRouter<'_>> = view
                    .routers
                    .iter()
                    .filter(|r| r.node_id != self_id)
                    .filter_map(|r| {
                        let (_, state) = snapshot.iter().find(|(id, _)| {
                            *id.node_id == *r.node_id && id.generation_id == r.generation
                        })?;
                        Some(PeerRouter {
                            node_id: &r.node_id,
                            generation: r.generation,
                            cert: &r.cert,
                            state,
                        })
                    })
                    .collect();
                self.replicator.ingest(&peers);
                self.registry.update(view.adverts());
                *self.owners.write().unwrap_or_else(|p| p.into_inner()) = view.owners.clone();
                *self.view.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(view);
            }
            let changed = tokio::select! {
                changed = nodes.changed() => changed.is_ok(),
                changed = records.changed() => changed.is_ok(),
            };
            if !changed {
                return;
            }
        }
    }
}

/// Publishes every record (signed) whenever the set changes; the first round publishes what
/// the data directory held.
async fn publish_records(
    gossip: Arc<Gossip>,
    replicator: Arc<Replicator>,
    records: Records,
    key: Arc<NodeKey>,
) {
    let mut changes = records.subscribe();
    loop {
        let values = replicator.signed_values(&key, gossip.node_id(), gossip.generation());
        let values: Vec<(&str, String)> = values
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        gossip.set_many(&values).await;
        if changes.changed().await.is_err() {
            return;
        }
    }
}

/// What a router needs to re-issue its own certificate and put it to use.
struct OwnCertificate {
    ca: Arc<CertificateAuthority>,
    key: Arc<NodeKey>,
    node_id: String,
    not_after: SystemTime,
    endpoint: QuicEndpoint,
    policy: TrustPolicy,
    enroller: Arc<Enroller>,
    gossip: Arc<Gossip>,
}

/// Re-issues the router's own certificate at two thirds of its life and switches to it.
async fn renew_own_certificate(own: OwnCertificate) {
    let OwnCertificate {
        ca,
        key,
        node_id,
        mut not_after,
        endpoint,
        policy,
        enroller,
        gossip,
    } = own;
    loop {
        let left = not_after
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        tokio::time::sleep(left * 2 / 3).await;
        let renewed = router_identity(&ca, &key, &node_id).and_then(|identity| {
            endpoint.set_identity(&identity, &policy)?;
            *enroller.tls.write().unwrap_or_else(|p| p.into_inner()) = enrollment_tls(&identity)?;
            Ok(identity)
        });
        match renewed {
            Ok(identity) => {
                not_after = identity.not_after();
                gossip.set(keys::CERT, identity.chain_value()).await;
                info!("renewed this router's certificate");
            }
            Err(err) => {
                warn!("renewing this router's certificate failed: {err:#}");
                tokio::time::sleep(Duration::from_secs(60)).await;
            }
        }
    }
}

/// Starts a router on `listeners` with the cluster in `args.data`.
pub async fn start(args: &ServeArgs, listeners: Listeners) -> anyhow::Result<RouterHandle> {
    let data = store::load(&args.data.data_dir)?;
    if data.keys.is_empty() {
        warn!("no API keys in the data directory: every authenticated request will be refused; create one with `auxot-router keys create`");
    }
    listeners.http.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listeners.http)?;
    let http_addr = listener.local_addr()?;
    listeners.enroll.set_nonblocking(true)?;
    let enroll_listener = tokio::net::TcpListener::from_std(listeners.enroll)?;
    let node_id = match &args.name {
        Some(name) => addr::sanitize_node_id(name),
        None => {
            addr::sanitize_node_id(&format!("router-{}-{}", addr::hostname(), http_addr.port()))
        }
    };

    let ca = Arc::new(data.ca);
    let key = Arc::new(NodeKey::generate()?);
    let identity = router_identity(&ca, &key, &node_id)?;
    let records: Records = Arc::new(data.records);
    let policy = TrustPolicy {
        accept_from: Vec::new(),
        dial: vec![Role::Worker, Role::Tools],
        revoked: {
            let records = records.clone();
            Arc::new(move |node: &str| records.is_revoked(node))
        },
    };
    let endpoint = QuicEndpoint::on_socket(&identity, &policy, listeners.quic, false)?;

    let advertise_host = args.advertise_host.as_deref();
    let gossip_bind = listeners.gossip.local_addr()?;
    let gossip_advertise = addr::advertise_addr(gossip_bind, advertise_host, gossip_bind.port())?;
    let http_advertise = addr::advertise_addr(http_addr, advertise_host, http_addr.port())?;
    let mut initial: Vec<(String, String)> = router_key_values(http_advertise)
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    initial.push((keys::VERSION.to_string(), auxot_common::VERSION.to_string()));
    initial.push((keys::CERT.to_string(), identity.chain_value()));
    let gossip = Arc::new(
        Gossip::spawn_on(
            &data.gossip,
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
        .context("joining the gossip cluster")?,
    );

    let registry = Arc::new(Registry::new());
    let metrics = Arc::new(Metrics::new());
    let view: SharedView = Arc::default();
    let owners: Owners = Arc::default();
    let replicator = Arc::new(Replicator::new(records.clone()));
    let enroller = Arc::new(Enroller {
        ca: ca.clone(),
        records: records.clone(),
        owners: owners.clone(),
        gossip: data.gossip.clone(),
        cert_lifetime: Duration::from_secs(args.node_cert_lifetime_secs),
        tls: RwLock::new(enrollment_tls(&identity)?),
    });
    let background = vec![
        tokio::spawn(
            Follower {
                gossip: gossip.clone(),
                membership: Membership::new(ca.root_der().clone(), records.clone()),
                replicator: replicator.clone(),
                records: records.clone(),
                registry: registry.clone(),
                view: view.clone(),
                owners,
                metrics: metrics.clone(),
            }
            .run(),
        ),
        tokio::spawn(publish_records(
            gossip.clone(),
            replicator,
            records.clone(),
            key.clone(),
        )),
        tokio::spawn(enroll::serve(enroll_listener, enroller.clone())),
        tokio::spawn(renew_own_certificate(OwnCertificate {
            ca: ca.clone(),
            key,
            node_id: node_id.clone(),
            not_after: identity.not_after(),
            endpoint: endpoint.clone(),
            policy,
            enroller,
            gossip: gossip.clone(),
        })),
    ];

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
    let forwarder = Forwarder::new(registry, transport, args.routing.build(), limits)
        .with_timeouts(ForwardTimeouts {
            first_frame: Duration::from_millis(args.worker_first_frame_timeout_ms.max(1)),
            first_output: Duration::from_secs(args.first_output_timeout_secs.max(1)),
            stall: Duration::from_secs(args.worker_stall_timeout_secs.max(1)),
        });
    let generator = Generator::new(
        forwarder,
        FetchPolicy {
            allow_private: args.allow_private_image_urls,
        },
    )
    .with_mesh_tools(args.mesh_tools, args.max_tool_rounds)
    .with_max_continuations(args.max_continuations)
    .with_metrics(metrics);
    let keys = records.effective_keys(data.keys);
    let admin = Admin {
        ca: ca.clone(),
        records,
        view,
    };
    let state = Arc::new(
        AppState::new(
            node_id.clone(),
            Authenticator::new(keys),
            Arc::new(generator),
            admin,
        )
        .with_gossip_stats(gossip.stats())
        .with_response_key(StateKey::new(&data.responses_key))
        .with_edge(api::EdgeConfig::from(args)),
    );
    let mut background = background;
    background.push(tokio::spawn(state.quotas.clone().publish_forever()));
    let data_dir = args.data.data_dir.clone();
    api::auth::follow_key_store(
        &state,
        move || store::list_keys(&data_dir),
        Duration::from_secs(args.keys_reload_secs.max(1)),
    );
    info!(
        node = %node_id,
        http = %http_addr,
        gossip = %gossip_advertise,
        cluster = %data.cluster_id,
        "router serving"
    );

    let (metrics_addr, metrics_server) = match listeners.metrics {
        Some(listener) => {
            listener.set_nonblocking(true)?;
            let listener = tokio::net::TcpListener::from_std(listener)?;
            let addr = listener.local_addr()?;
            info!(metrics = %addr, "serving /metrics and /health without keys");
            // Stopped at the end of `shutdown`: a draining router can still be scraped.
            let server = tokio::spawn(api::serve_admin(
                listener,
                state.clone(),
                std::future::pending(),
            ));
            (Some(addr), Some(server))
        }
        None => (None, None),
    };
    let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(api::serve(listener, state.clone(), async move {
        let _ = stop_rx.await;
    }));
    Ok(RouterHandle {
        node_id,
        http_addr,
        gossip_addr: gossip_advertise,
        metrics_addr,
        metrics_server,
        state,
        server,
        background,
        stop,
        gossip,
        endpoint,
        shutdown_timeout: Duration::from_secs(args.shutdown_timeout_secs),
    })
}
