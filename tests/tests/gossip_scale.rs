//! Does the gossip layer hold up at 200 workers?
//!
//! Starting 200 worker processes (or even 200 UDP sockets) is more than a test machine can take,
//! so the nodes are simulated in one process over chitchat's in-memory `ChannelTransport`: the
//! same chitchat version, the same gossip interval and failure-detector settings as
//! `auxot_common::mesh::gossip`, and the same keys and values a real worker publishes (its
//! certificate chain and its signed advert and load, so datagram sizes are real). What a user
//! would notice is checked: every node ends up seeing every worker as ready with its models, a
//! late joiner catches up with a full cluster, and a changed key (`load`) reaches everyone. The
//! simulated nodes read adverts without checking signatures (200 nodes verifying 200 adverts on
//! every poll would measure the test, not the gossip); signature checks are tested where routers
//! make them (`common::mesh::node`, `tests/trust.rs`).
//!
//! The transport caps each datagram at the largest payload the sealed UDP transport can still
//! send (the IPv4 UDP maximum less the sealing overhead), so a message that would not fit on the
//! real network is lost here too instead of passing silently.
//!
//! Timings and traffic are printed (run with `--nocapture`), never asserted: they depend on the
//! machine. The only time limit is a generous bound so a failure is a failure, not a hang.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use auxot_common::mesh::gossip::{chitchat_config, GossipConfig, DEFAULT_GOSSIP_INTERVAL};
use auxot_common::mesh::keys;
use auxot_common::mesh::node::{DeviceInfo, ModelInfo, NodeRole, Readiness, WorkerAdvert};
use auxot_common::mesh::sealed::Sealer;
use auxot_common::pki::{CertificateAuthority, NodeKey, Role};
use chitchat::transport::{
    ChannelTransport, RecvOutcome, SendOutcome, Socket, Statistics, Transport,
};
use chitchat::ChitchatEnvelope;
use chitchat::{spawn_chitchat, ChitchatHandle, ChitchatId, NodeState};
use tokio::sync::watch;

/// Simulated workers.
const NODES: usize = 200;
/// Upper bound on any one wait; the test fails (with what each node saw) past it.
const WAIT_LIMIT: Duration = Duration::from_secs(120);
/// The largest UDP payload over IPv4.
const MAX_UDP_PAYLOAD: usize = 65_507;
/// The model every simulated worker serves.
const MODEL: &str = "Qwen3-4B-Q4_K_M";

type LiveNodes = BTreeMap<ChitchatId, NodeState>;

/// chitchat's in-memory transport, plus the two figures its statistics lack: the largest
/// message, and how many messages were too large for a sealed UDP datagram (those are lost).
#[derive(Clone)]
struct MeasuredTransport {
    inner: ChannelTransport,
    largest: Arc<AtomicUsize>,
    too_large: Arc<AtomicU64>,
}

impl MeasuredTransport {
    fn new(mtu: usize) -> Self {
        MeasuredTransport {
            inner: ChannelTransport::with_mtu(mtu),
            largest: Arc::default(),
            too_large: Arc::default(),
        }
    }
}

#[async_trait]
impl Transport for MeasuredTransport {
    async fn open(&self, listen_addr: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        Ok(Box::new(MeasuredSocket {
            inner: self.inner.open(listen_addr).await?,
            transport: self.clone(),
        }))
    }
}

struct MeasuredSocket {
    inner: Box<dyn Socket>,
    transport: MeasuredTransport,
}

#[async_trait]
impl Socket for MeasuredSocket {
    fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        self.inner.local_addr()
    }

    async fn send(
        &mut self,
        to: SocketAddr,
        envelope: ChitchatEnvelope,
    ) -> anyhow::Result<SendOutcome> {
        let outcome = self.inner.send(to, envelope).await;
        match &outcome {
            Ok(sent) => {
                self.transport
                    .largest
                    .fetch_max(sent.num_bytes_sent, Ordering::Relaxed);
            }
            // The only error the channel transport has: over the MTU.
            Err(_) => {
                self.transport.too_large.fetch_add(1, Ordering::Relaxed);
            }
        }
        outcome
    }

    async fn recv(&mut self) -> anyhow::Result<RecvOutcome> {
        self.inner.recv().await
    }
}

/// One simulated worker.
struct SimNode {
    id: ChitchatId,
    handle: ChitchatHandle,
    /// The same view of the cluster a router follows (`Gossip::live_nodes`).
    live: watch::Receiver<LiveNodes>,
    /// Its key, to sign a changed load.
    key: NodeKey,
    advert: WorkerAdvert,
}

fn gossip_addr(index: usize) -> SocketAddr {
    SocketAddr::new(
        Ipv4Addr::new(10, 0, (index / 250) as u8, (index % 250 + 1) as u8).into(),
        7947,
    )
}

fn node_name(index: usize) -> String {
    format!("worker-gpu{index:03}-7948")
}

/// Joins node `index` the way `auxot-worker join` does: first as not ready with its identity,
/// then its advert (models, device, capacity, load) and `ready` once the model is loaded.
async fn spawn_node(
    transport: &MeasuredTransport,
    cluster_id: &str,
    ca: &CertificateAuthority,
    index: usize,
    seed: SocketAddr,
) -> SimNode {
    let addr = gossip_addr(index);
    let config = chitchat_config(
        cluster_id,
        GossipConfig {
            node_id: node_name(index),
            listen_addr: addr,
            advertise_addr: addr,
            seeds: if addr == seed {
                Vec::new()
            } else {
                vec![seed.to_string()]
            },
            interval: DEFAULT_GOSSIP_INTERVAL,
        },
    );
    let id = config.chitchat_id.clone();
    let quic = SocketAddr::new(addr.ip(), 7948);
    let key = NodeKey::generate().expect("key");
    let chain = ca
        .issue_for_key(
            &key.public_key_raw(),
            &node_name(index),
            Role::Worker,
            Duration::from_secs(3600),
        )
        .expect("certificate")
        .chain;
    let mut advert = WorkerAdvert {
        node_id: node_name(index),
        generation: id.generation_id,
        quic_addr: quic,
        readiness: Readiness::NotReady,
        models: Vec::new(),
        tools: Vec::new(),
        device: DeviceInfo::cpu(),
        capacity: 0,
        load: 0,
    };
    let mut initial: Vec<(String, String)> = vec![
        (keys::ROLE.into(), NodeRole::Worker.as_str().into()),
        (keys::VERSION.into(), auxot_common::VERSION.into()),
        (
            keys::CERT.into(),
            auxot_common::mesh::identity::encode_chain(&chain),
        ),
    ];
    initial.extend(
        advert
            .signed_key_values(&key)
            .into_iter()
            .map(|(k, v)| (k.to_string(), v)),
    );
    let handle = spawn_chitchat(config, initial, transport)
        .await
        .expect("spawn chitchat");
    let model = ModelInfo {
        id: MODEL.into(),
        context_length: Some(32_768),
        vision: false,
        reasoning: true,
        ..Default::default()
    };
    let device = DeviceInfo {
        kind: "cuda".into(),
        name: "NVIDIA H100 80GB HBM3".into(),
        memory_mib: Some(81_559),
        count: 1,
    };
    advert.models = vec![model];
    advert.device = device;
    advert.capacity = 32;
    advert.readiness = Readiness::Ready;
    let values = advert.signed_key_values(&key);
    let live = handle
        .with_chitchat(|chitchat| {
            let state = chitchat.self_node_state();
            for (key, value) in &values {
                state.set(*key, value);
            }
            chitchat.live_nodes_watcher()
        })
        .await;
    SimNode {
        id,
        handle,
        live,
        key,
        advert,
    }
}

/// A signed gossip value's payload, read without checking the signature.
fn payload(value: &str) -> Option<&str> {
    value.split_once('.').map(|(_, payload)| payload)
}

/// The advert body and load of a node's state, unverified.
fn advert_of(state: &NodeState) -> Option<(serde_json::Value, u32)> {
    let body = serde_json::from_str(payload(state.get(keys::ADVERT)?)?).ok()?;
    let load = payload(state.get(keys::LOAD)?)?.parse().ok()?;
    Some((body, load))
}

/// How many of `expected` workers `live` shows ready, serving the model, with a QUIC address.
fn ready_workers(live: &LiveNodes, expected: &[ChitchatId]) -> usize {
    expected
        .iter()
        .filter(|id| {
            live.get(*id)
                .and_then(advert_of)
                .is_some_and(|(advert, _)| {
                    advert["readiness"] == "ready"
                        && advert["models"][0]["id"] == MODEL
                        && advert["capacity"] == 32
                        && advert["quic_addr"]
                            .as_str()
                            .and_then(|a| a.parse::<SocketAddr>().ok())
                            .is_some_and(|a| a.ip() == id.gossip_advertise_addr.ip())
                })
        })
        .count()
}

/// Polls until `done` holds for every node's live view; the time it took. Past [`WAIT_LIMIT`]
/// it panics with how far the nodes got.
async fn wait_all(
    nodes: &[SimNode],
    what: &str,
    done: impl Fn(&LiveNodes) -> bool,
    progress: impl Fn(&LiveNodes) -> usize,
) -> Duration {
    let start = Instant::now();
    loop {
        let pending: Vec<&SimNode> = nodes
            .iter()
            .filter(|node| !done(&node.live.borrow()))
            .collect();
        if pending.is_empty() {
            return start.elapsed();
        }
        if start.elapsed() > WAIT_LIMIT {
            let seen: Vec<usize> = pending.iter().map(|n| progress(&n.live.borrow())).collect();
            panic!(
                "{what}: {} of {} nodes not there after {WAIT_LIMIT:?}; what they see: min {:?}, max {:?}; first pending: {:?}",
                pending.len(),
                nodes.len(),
                seen.iter().min(),
                seen.iter().max(),
                pending[0].id,
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn print_traffic(
    label: &str,
    transport: &MeasuredTransport,
    before: Statistics,
    nodes: usize,
    secs: f64,
) {
    let after = transport.inner.statistics();
    let bytes = after.num_bytes_total - before.num_bytes_total;
    let messages = after.num_messages_total - before.num_messages_total;
    println!(
        "{label}: {bytes} bytes in {messages} messages over {secs:.1} s; {:.0} bytes/node/s, {:.1} messages/node/s, {:.0} bytes/message",
        bytes as f64 / nodes as f64 / secs,
        messages as f64 / nodes as f64 / secs,
        bytes as f64 / messages.max(1) as f64,
    );
    println!(
        "{label}: largest message so far {} bytes; {} messages too large for a sealed datagram",
        transport.largest.load(Ordering::Relaxed),
        transport.too_large.load(Ordering::Relaxed),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_workers_converge_and_see_changes() {
    let seal_overhead = Sealer::from_key(&[9; 32]).seal(&[]).expect("seal").len();
    let transport = MeasuredTransport::new(MAX_UDP_PAYLOAD - seal_overhead);
    let cluster_id = "auxot-scale-test".to_string();
    let ca = CertificateAuthority::generate_root(&cluster_id).expect("ca");
    let seed = gossip_addr(0);

    let start = Instant::now();
    let mut nodes = Vec::with_capacity(NODES + 1);
    for index in 0..NODES {
        nodes.push(spawn_node(&transport, &cluster_id, &ca, index, seed).await);
    }
    let ids: Vec<ChitchatId> = nodes.iter().map(|n| n.id.clone()).collect();
    let converged = wait_all(
        &nodes,
        "all workers ready everywhere",
        |live| ready_workers(live, &ids) == NODES,
        |live| ready_workers(live, &ids),
    )
    .await;
    println!(
        "{NODES} nodes converged in {:.2} s (gossip interval {DEFAULT_GOSSIP_INTERVAL:?})",
        converged.as_secs_f64()
    );
    print_traffic(
        "until convergence",
        &transport,
        Statistics::default(),
        NODES,
        start.elapsed().as_secs_f64(),
    );
    // A router sees the same: every worker routable through the helper routers use.
    let view = nodes[NODES - 1].live.borrow().clone();
    assert_eq!(view.values().filter_map(advert_of).count(), NODES);

    // Steady state: heartbeats only.
    let window = Duration::from_secs(10);
    let before = transport.inner.statistics();
    tokio::time::sleep(window).await;
    print_traffic(
        "steady state",
        &transport,
        before,
        NODES,
        window.as_secs_f64(),
    );

    // A worker joining a cluster that is already full must catch up too (its first reply
    // carries the most state).
    let before = transport.inner.statistics();
    nodes.push(spawn_node(&transport, &cluster_id, &ca, NODES, seed).await);
    let ids: Vec<ChitchatId> = nodes.iter().map(|n| n.id.clone()).collect();
    let joined = wait_all(
        &nodes,
        "a late joiner seen everywhere and seeing everyone",
        |live| ready_workers(live, &ids) == ids.len(),
        |live| ready_workers(live, &ids),
    )
    .await;
    println!(
        "a late joiner converged with {} nodes in {:.2} s",
        ids.len(),
        joined.as_secs_f64()
    );
    print_traffic(
        "while joining",
        &transport,
        before,
        ids.len(),
        joined.as_secs_f64(),
    );

    // One worker's load changes; every node must learn it.
    let changed = &nodes[17];
    let (key, value) = WorkerAdvert {
        load: 7,
        ..changed.advert.clone()
    }
    .signed_load(&changed.key);
    changed
        .handle
        .with_chitchat(|chitchat| chitchat.self_node_state().set(key, &value))
        .await;
    let changed_id = changed.id.clone();
    let load_of = |live: &LiveNodes| live.get(&changed_id).and_then(advert_of).map(|(_, l)| l);
    let propagated = wait_all(
        &nodes,
        "a load change reaches every node",
        |live| load_of(live) == Some(7),
        |live| load_of(live).unwrap_or(0) as usize,
    )
    .await;
    println!(
        "a load change on {} reached all {} nodes in {:.2} s",
        changed_id.node_id,
        nodes.len(),
        propagated.as_secs_f64()
    );

    for node in &nodes {
        let _ = node.handle.initiate_shutdown();
    }
}

/// Keep the simulation honest: the overhead the cap assumes is what the sealed transport adds.
#[test]
fn the_datagram_cap_leaves_room_for_sealing() {
    let sealer = Sealer::from_key(&[9; 32]);
    let overhead = sealer.seal(&[]).expect("seal").len();
    let plain = vec![7u8; MAX_UDP_PAYLOAD - overhead];
    let sealed = sealer.seal(&plain).expect("seal");
    assert_eq!(sealed.len(), MAX_UDP_PAYLOAD);
    assert_eq!(sealer.open(&sealed), Some(plain));
}
