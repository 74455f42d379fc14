//! A router's life: join gossip, keep the worker view current, serve HTTP, and on SIGTERM stop
//! accepting, let open requests finish within a deadline, then leave.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use auxot_common::mesh::addr;
use auxot_common::mesh::gossip::{workers_in, Gossip, GossipConfig, DEFAULT_GOSSIP_INTERVAL};
use auxot_common::mesh::keys;
use auxot_common::mesh::node::NodeRole;
use auxot_common::mesh::quic::{ConnectionPool, QuicEndpoint};
use auxot_common::mesh::tls::NodeIdentity;
use auxot_common::signal::stop_signal;
use tracing::{info, warn};

use crate::auth::Authenticator;
use crate::cli::ServeArgs;
use crate::forward::{AdmissionLimits, Forwarder};
use crate::http;
use crate::images::FetchPolicy;
use crate::registry::Registry;
use crate::state::AppState;
use crate::store;

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

pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let data = store::load(&args.data.data_dir)?;
    if data.keys.is_empty() {
        warn!("no API keys in the data directory: every authenticated request will be refused; create one with `auxot-router keys create`");
    }
    let listener = tokio::net::TcpListener::bind(args.http_addr)
        .await
        .with_context(|| format!("binding the HTTP address {}", args.http_addr))?;
    let http_addr = listener.local_addr()?;
    let node_id = match &args.name {
        Some(name) => addr::sanitize_node_id(name),
        None => {
            addr::sanitize_node_id(&format!("router-{}-{}", addr::hostname(), http_addr.port()))
        }
    };

    let identity = NodeIdentity::issue(&data.secret, &node_id)?;
    let endpoint = QuicEndpoint::bind(&identity, args.quic_addr, false)?;

    let advertise_host = args.advertise_host.as_deref();
    let (gossip_bind, gossip_advertise) =
        addr::bind_and_advertise(args.gossip_addr, advertise_host).context("the gossip address")?;
    let http_advertise = addr::advertise_addr(http_addr, advertise_host, http_addr.port())?;
    let gossip = Gossip::spawn(
        &data.secret,
        GossipConfig {
            node_id: node_id.clone(),
            listen_addr: gossip_bind,
            advertise_addr: gossip_advertise,
            seeds: args.seeds.clone(),
            interval: DEFAULT_GOSSIP_INTERVAL,
        },
        vec![
            (
                keys::ROLE.to_string(),
                NodeRole::Router.as_str().to_string(),
            ),
            (keys::VERSION.to_string(), auxot_common::VERSION.to_string()),
            (keys::HTTP_ADDR.to_string(), http_advertise.to_string()),
        ],
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
    let forwarder = Forwarder::new(registry, pool, args.routing.build(), limits);
    let state = Arc::new(
        AppState::new(
            node_id.clone(),
            Authenticator::new(data.keys),
            forwarder,
            FetchPolicy {
                allow_private: args.allow_private_image_urls,
            },
        )
        .with_mesh_tools(args.mesh_tools, args.max_tool_rounds)
        .with_gossip_stats(gossip.stats()),
    );
    info!(
        node = %node_id,
        http = %http_addr,
        gossip = %gossip_advertise,
        cluster = %data.secret.cluster_id(),
        "router serving"
    );

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(http::serve(listener, state.clone(), async move {
        let _ = stop_rx.await;
    }));
    stop_signal().await;
    info!("shutting down: no new connections, finishing open requests");
    state.start_shutdown();
    let _ = stop_tx.send(());
    let deadline = Duration::from_secs(args.shutdown_timeout_secs);
    let mut server = server;
    tokio::select! {
        _ = &mut server => info!("all requests finished"),
        _ = tokio::time::sleep(deadline) => {
            warn!("shutdown deadline passed: ending open streams with an error event");
            state.streams_deadline.cancel();
            // A moment for the streams to write their last event.
            let _ = tokio::time::timeout(Duration::from_secs(2), &mut server).await;
        }
        _ = stop_signal() => warn!("second signal: stopping now"),
    }
    gossip.shutdown();
    endpoint.close();
    tokio::time::sleep(DEFAULT_GOSSIP_INTERVAL).await;
    Ok(())
}
