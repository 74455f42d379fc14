//! Only holders of the cluster secret take part: a stranger can neither join the gossip nor open
//! QUIC streams, and a node with the secret can do both.

use std::time::Duration;

use auxot_common::chat::{ChatRequest, Message, Role};
use auxot_common::mesh::gossip::{Gossip, GossipConfig};
use auxot_common::mesh::keys;
use auxot_common::mesh::quic::QuicEndpoint;
use auxot_common::mesh::tls::NodeIdentity;
use auxot_common::secret::ClusterSecret;
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

/// Gossips a fake worker advertising `model` with `secret` through `seed`.
async fn fake_worker(
    secret: &ClusterSecret,
    seed: std::net::SocketAddr,
    name: &str,
    model: &str,
) -> Gossip {
    let port = free_udp_port();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    Gossip::spawn(
        secret,
        GossipConfig {
            node_id: name.into(),
            listen_addr: addr,
            advertise_addr: addr,
            seeds: vec![seed.to_string()],
            interval: Duration::from_millis(200),
        },
        vec![
            (keys::ROLE.into(), "worker".into()),
            (keys::QUIC_ADDR.into(), "127.0.0.1:9".into()),
            (keys::READINESS.into(), "ready".into()),
            (keys::CAPACITY.into(), "4".into()),
            (keys::MODELS.into(), format!("[{{\"id\":\"{model}\"}}]")),
        ],
    )
    .await
    .expect("gossip")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gossip_without_the_secret_is_ignored() {
    let cluster = Cluster::with_router(&[]);
    let seed = cluster.seed();
    cluster
        .wait_health(0, Duration::from_secs(30), |h| h["status"] == "ok")
        .await;
    let right = ClusterSecret::from_join_token(&cluster.join_token).expect("token");
    let wrong = ClusterSecret::generate().expect("rng");

    let _intruder = fake_worker(&wrong, seed, "intruder", "intruder-model").await;
    let _insider = fake_worker(&right, seed, "insider", "insider-model").await;

    let client = reqwest::Client::new();
    // The insider shows up: gossip works, so the intruder's absence means it was refused.
    cluster
        .wait_health(0, Duration::from_secs(15), |h| {
            h["models"]
                .as_array()
                .is_some_and(|m| m.iter().any(|x| x == "insider-model"))
        })
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let body: Value = cluster
        .get(&client, 0, "/api/openai/models")
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    let models = models_of(&body);
    assert!(models.contains(&"insider-model".to_string()), "{models:?}");
    assert!(
        !models.contains(&"intruder-model".to_string()),
        "a node without the secret injected state: {models:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_with_a_wrong_token_cannot_join() {
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
    tokio::time::sleep(Duration::from_secs(3)).await;
    let health_after = cluster
        .wait_health(0, Duration::from_secs(5), |_| true)
        .await;
    assert_eq!(
        health_after["workers"], 1,
        "only the member may join: {health_after}"
    );
    let workers: Vec<&str> = health["capacity"]
        .as_array()
        .expect("capacity")
        .iter()
        .filter_map(|w| w["worker"].as_str())
        .collect();
    assert_eq!(workers, vec!["member"]);
    // The refusal is the cluster's doing: the stranger started, is still running and gossiping.
    let stranger_log = cluster.workers[0].log_text();
    assert!(
        cluster.workers[0].is_running(),
        "the stranger exited, so its absence proves nothing: {stranger_log}"
    );
    assert!(
        stranger_log.contains("joined cluster"),
        "the stranger never started gossiping: {stranger_log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_requires_a_certificate_from_the_cluster() {
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
    let request = WireRequest::CountTokens(ChatRequest {
        model: "auto".into(),
        messages: vec![Message::text(Role::User, "hello there, worker")],
        ..Default::default()
    });

    let stranger = NodeIdentity::issue(&ClusterSecret::generate().expect("rng"), "stranger")
        .expect("identity");
    let endpoint = QuicEndpoint::bind(&stranger, "127.0.0.1:0".parse().expect("addr"), false)
        .expect("endpoint");
    let refused = endpoint.connect("worker0", worker_quic).await;
    assert!(
        refused.is_err(),
        "a node without the secret completed a QUIC handshake"
    );

    let secret = ClusterSecret::from_join_token(&cluster.join_token).expect("token");
    let member = NodeIdentity::issue(&secret, "member").expect("identity");
    let endpoint =
        QuicEndpoint::bind(&member, "127.0.0.1:0".parse().expect("addr"), false).expect("endpoint");
    let conn = endpoint
        .connect("worker0", worker_quic)
        .await
        .expect("a member connects");
    let (mut send, mut recv) = conn.open_bi().await.expect("stream");
    write_frame(&mut send, &request).await.expect("write");
    let reply: WireReply = read_frame(&mut recv).await.expect("read").expect("reply");
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
    let malformed = std::process::Command::new(bin("auxot-worker"))
        .args([
            "join",
            "127.0.0.1:1",
            "--engine",
            "synthetic",
            "--token",
            "not-a-token",
        ])
        .output()
        .expect("run worker");
    assert!(!malformed.status.success());
    let stderr = String::from_utf8_lossy(&malformed.stderr);
    assert!(
        stderr.contains("jtk_"),
        "the error should say what a token looks like: {stderr}"
    );
}
