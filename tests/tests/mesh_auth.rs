//! Who takes part: a stranger without the gossip key cannot join the gossip; a member that holds
//! the gossip key but no certificate cannot add state a router believes; a worker of another
//! cluster cannot enroll; QUIC streams to a worker need a router certificate of this cluster.

use std::time::Duration;

use auxot_common::chat::{ChatRequest, Message, Role};
use auxot_common::mesh::gossip::{Gossip, GossipConfig, GossipKey};
use auxot_common::mesh::identity::{MeshIdentity, TrustPolicy};
use auxot_common::mesh::keys;
use auxot_common::mesh::quic::QuicEndpoint;
use auxot_common::pki::{never_revoked, Role as NodeRole};
use auxot_common::wire::{read_frame, write_frame, WireReply, WireRequest};
use auxot_tests::{bin, free_udp_port, Cluster, WorkerOptions};
use serde_json::Value;

fn models_of(body: &Value) -> Vec<String> {
    body["data"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|m| m["id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Gossips a fake worker advertising `model` with `key` through `seed`, presenting `cert` (a
/// chain of another cluster) and an unsigned advert.
async fn fake_worker(
    key: &GossipKey,
    seed: std::net::SocketAddr,
    name: &str,
    model: &str,
    cert: String,
) -> Gossip {
    let port = free_udp_port();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    Gossip::spawn(
        key,
        GossipConfig {
            node_id: name.into(),
            listen_addr: addr,
            advertise_addr: addr,
            seeds: vec![seed.to_string()],
            interval: Duration::from_millis(200),
        },
        vec![
            (keys::ROLE.into(), "worker".into()),
            (keys::CERT.into(), cert),
            (
                keys::ADVERT.into(),
                format!(
                    "AAAA.{{\"quic_addr\":\"127.0.0.1:9\",\"readiness\":\"ready\",\"models\":[{{\"id\":\"{model}\"}}],\"device\":{{\"kind\":\"cpu\",\"name\":\"cpu\"}},\"capacity\":4}}"
                ),
            ),
            (keys::LOAD.into(), "AAAA.0".into()),
        ],
    )
    .await
    .expect("gossip")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gossip_state_needs_the_key_and_a_certificate() {
    let mut cluster = Cluster::with_router(&[]);
    let seed = cluster.seed();
    cluster.start_worker(
        seed,
        WorkerOptions {
            synthetic: true,
            name: Some("real".into()),
            ..Default::default()
        },
    );
    let right = cluster.authority().gossip;
    let wrong = GossipKey {
        cluster_id: right.cluster_id.clone(),
        key: [7; 32],
    };
    let foreign = Cluster::setup();
    let cert = |name: &str| foreign.identity(name, NodeRole::Worker).chain_value();
    let _intruder = fake_worker(&wrong, seed, "intruder", "intruder-model", cert("intruder")).await;
    let insider = fake_worker(&right, seed, "insider", "insider-model", cert("insider")).await;

    // The real worker shows up: gossip works, so the fakes' absence means they were refused.
    cluster.wait_workers(0, 1).await;
    let client = reqwest::Client::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while std::time::Instant::now() < deadline {
        let body: Value = cluster
            .get(&client, 0, "/api/openai/models")
            .send()
            .await
            .expect("request")
            .json()
            .await
            .expect("json");
        let models = models_of(&body);
        assert_eq!(
            models,
            vec!["synthetic".to_string()],
            "only the certified worker's model may appear"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The insider did reach the router's gossip (it holds the key): it is refused for lack of
    // a certificate, not for being unheard.
    assert!(insider.live_count().await > 1, "the insider never gossiped");
    let log = cluster.routers[0].log_text();
    assert!(
        log.contains("insider") && !log.contains("intruder"),
        "the router hears the insider (and says why it ignores it) but never the intruder: {log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_with_another_clusters_token_cannot_enroll() {
    let mut cluster = Cluster::with_router(&[]);
    let seed = cluster.seed();
    let other = Cluster::setup();
    let good_token = cluster.join_token.clone();
    cluster.join_token = other.join_token.clone();
    cluster.start_worker(
        seed,
        WorkerOptions {
            synthetic: true,
            name: Some("stranger".into()),
            ..Default::default()
        },
    );
    cluster.join_token = good_token;
    cluster.start_worker(
        seed,
        WorkerOptions {
            synthetic: true,
            name: Some("member".into()),
            ..Default::default()
        },
    );
    let health = cluster.wait_workers(0, 1).await;
    let workers: Vec<&str> = health["capacity"]
        .as_array()
        .expect("capacity")
        .iter()
        .filter_map(|w| w["worker"].as_str())
        .collect();
    assert_eq!(workers, vec!["member"]);
    // The stranger ran and was turned away at enrollment: its token pins another cluster's
    // root, so it refuses this router's certificate and exits saying so.
    let code = cluster.workers[0].wait_exit(Duration::from_secs(30));
    let stranger_log = cluster.workers[0].log_text();
    assert!(
        matches!(code, Some(c) if c != 0),
        "the stranger should exit with an error: {stranger_log}"
    );
    assert!(
        stranger_log.contains("enrolling with") && stranger_log.contains("router of this cluster"),
        "the stranger should say why: {stranger_log}"
    );
}

async fn count_tokens(
    endpoint: &QuicEndpoint,
    worker_quic: std::net::SocketAddr,
) -> Result<WireReply, String> {
    let conn = endpoint
        .connect("worker0", worker_quic)
        .await
        .map_err(|e| e.to_string())?;
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
    let request = WireRequest::CountTokens(ChatRequest {
        model: "auto".into(),
        messages: vec![Message::text(Role::User, "hello there, worker")],
        ..Default::default()
    });
    write_frame(&mut send, &request)
        .await
        .map_err(|e| e.to_string())?;
    read_frame::<_, WireReply>(&mut recv)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| "no reply".to_string())
}

fn endpoint(identity: &MeshIdentity) -> QuicEndpoint {
    let policy = TrustPolicy {
        accept_from: Vec::new(),
        dial: vec![NodeRole::Worker, NodeRole::Tools],
        revoked: never_revoked(),
    };
    QuicEndpoint::bind(
        identity,
        &policy,
        "127.0.0.1:0".parse().expect("addr"),
        false,
    )
    .expect("endpoint")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_streams_need_a_router_certificate_of_this_cluster() {
    let mut cluster = Cluster::with_router(&[]);
    let seed = cluster.seed();
    cluster.start_worker(
        seed,
        WorkerOptions {
            synthetic: true,
            name: Some("worker0".into()),
            ..Default::default()
        },
    );
    cluster.wait_workers(0, 1).await;
    let worker_quic = cluster.workers[0].quic.expect("quic addr");

    let other = Cluster::setup();
    let stranger = endpoint(&other.identity("stranger", NodeRole::Router));
    assert!(
        count_tokens(&stranger, worker_quic).await.is_err(),
        "a router of another cluster completed a QUIC exchange"
    );

    // What a compromised worker host holds: a certificate of this cluster, role worker.
    let fellow_worker = endpoint(&cluster.identity("worker9", NodeRole::Worker));
    let refused = count_tokens(&fellow_worker, worker_quic).await;
    assert!(
        refused.is_err(),
        "a worker certificate opened a stream to another worker: {refused:?}"
    );

    let router = endpoint(&cluster.identity("router9", NodeRole::Router));
    let reply = count_tokens(&router, worker_quic)
        .await
        .expect("a router certificate of the cluster is served");
    assert!(
        matches!(reply, WireReply::TokenCount { tokens } if tokens > 0),
        "{reply:?}"
    );
}

#[test]
fn a_worker_without_a_valid_token_refuses_to_start() {
    let missing = std::process::Command::new(bin("auxot-worker"))
        .args(["join", "127.0.0.1:1", "--engine", "synthetic"])
        .env_remove("AUXOT_TOKEN")
        .output()
        .expect("run worker");
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("--token"));
    for (token, expected) in [
        ("not-a-token", "jtk2."),
        ("jtk_AAAAAAAA", "auxot-router migrate"),
    ] {
        let malformed = std::process::Command::new(bin("auxot-worker"))
            .args(["join", "127.0.0.1:1", "--engine", "synthetic"])
            .env("AUXOT_TOKEN", token)
            .output()
            .expect("run worker");
        assert!(!malformed.status.success());
        let stderr = String::from_utf8_lossy(&malformed.stderr);
        assert!(
            stderr.contains(expected),
            "the error should say what a token looks like or how to migrate: {stderr}"
        );
    }
}
