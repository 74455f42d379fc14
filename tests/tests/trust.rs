//! The trust model under attack, with real processes: what a compromised worker host holds (a
//! join token, its own key and worker certificate, the gossip key) gives it that host's role and
//! nothing more.

use std::time::{Duration, Instant};

use auxot_common::enroll;
use auxot_common::join_token::JoinToken;
use auxot_common::mesh::gossip::{Gossip, GossipConfig};
use auxot_common::mesh::identity::{MeshIdentity, TrustPolicy};
use auxot_common::mesh::keys;
use auxot_common::mesh::node::{DeviceInfo, ModelInfo, ModelKind, Readiness, WorkerAdvert};
use auxot_common::mesh::quic::QuicEndpoint;
use auxot_common::pki::{never_revoked, NodeKey, Role};
use auxot_tests::{bin, free_udp_port, Cluster, WorkerOptions};
use serde_json::{json, Value};

fn synthetic(name: &str) -> WorkerOptions {
    WorkerOptions {
        synthetic: true,
        name: Some(name.into()),
        ..Default::default()
    }
}

/// Enrolls in-process with the cluster's join token, as any holder of the token can.
async fn enroll_as(cluster: &Cluster, node_id: &str) -> (NodeKey, enroll::Enrollment) {
    let token = JoinToken::parse(&cluster.join_token).expect("token");
    let key = NodeKey::generate().expect("key");
    let request = enroll::join_request(&key, node_id, &token).expect("request");
    let enrolled = enroll::enroll(&cluster.seed().to_string(), token.root, &request)
        .await
        .expect("the token enrolls");
    (key, enrolled)
}

/// Names of the workers router `index` routes to.
async fn routed(cluster: &Cluster, index: usize) -> Vec<String> {
    let health = cluster
        .wait_health(index, Duration::from_secs(5), |_| true)
        .await;
    health["capacity"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|w| w["worker"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_worker_host_holds_reaches_no_worker() {
    let mut cluster = Cluster::with_router(&[]);
    let seed = cluster.seed();
    cluster.start_worker(seed, synthetic("victim"));
    let tools = cluster.dir.path().join("tools.toml");
    std::fs::write(
        &tools,
        "[[command]]\nname = \"echo\"\ndescription = \"echo\"\nparameters = { type = \"object\" }\nprogram = \"cat\"\n",
    )
    .expect("tools config");
    cluster.start_worker(
        seed,
        WorkerOptions {
            tools_only: true,
            name: Some("toolbox".into()),
            args: vec!["--tools".into(), tools.display().to_string()],
            ..Default::default()
        },
    );
    cluster
        .wait_health(0, Duration::from_secs(60), |h| {
            h["workers"] == 1 && h["tools_workers"] == 1
        })
        .await;

    // The attacker enrolls with the token: a worker certificate and the gossip key.
    let (key, enrolled) = enroll_as(&cluster, "attacker").await;
    let identity = MeshIdentity::new(key, enrolled.chain, enrolled.root).expect("identity");
    assert_eq!(
        identity.role(),
        Role::Worker,
        "a token grants a worker's role"
    );
    // It can gossip and see the workers...
    let listen: std::net::SocketAddr = format!("127.0.0.1:{}", free_udp_port())
        .parse()
        .expect("addr");
    let observer = Gossip::spawn(
        &enrolled.gossip,
        GossipConfig {
            node_id: "attacker".into(),
            listen_addr: listen,
            advertise_addr: listen,
            seeds: vec![seed.to_string()],
            interval: Duration::from_millis(200),
        },
        vec![(keys::ROLE.into(), "router".into())],
    )
    .await
    .expect("gossip");
    let view = tokio::time::timeout(Duration::from_secs(15), async {
        let mut live = observer.live_nodes().await;
        loop {
            let view = cluster.verified(&live.borrow_and_update());
            if view.workers.len() == 2 {
                return view;
            }
            let _ = live.changed().await;
        }
    })
    .await
    .expect("the attacker sees both workers in gossip");
    // ...but as a router it reaches neither: chat and tool streams need a router certificate.
    let policy = TrustPolicy {
        accept_from: Vec::new(),
        dial: vec![Role::Worker, Role::Tools],
        revoked: never_revoked(),
    };
    let endpoint = QuicEndpoint::bind(
        &identity,
        &policy,
        "127.0.0.1:0".parse().expect("addr"),
        false,
    )
    .expect("endpoint");
    for worker in &view.workers {
        let advert = &worker.advert;
        let connected = match endpoint.connect(&advert.node_id, advert.quic_addr).await {
            Ok(conn) => match conn.open_bi().await {
                Ok((mut send, mut recv)) => {
                    let _ = send.write_all(b"\0\0\0\x02{}").await;
                    recv.read_to_end(1024).await.is_ok()
                }
                Err(_) => false,
            },
            Err(_) => false,
        };
        assert!(
            !connected,
            "a worker certificate opened a stream to {}",
            advert.node_id
        );
    }
    // Nor can it run a router of its own: a data directory made of what it holds has no CA key.
    let rogue = cluster.dir.path().join("rogue");
    std::fs::create_dir_all(&rogue).expect("dir");
    std::fs::write(
        rogue.join("cluster.json"),
        json!({"version": 2, "cluster_id": enrolled.gossip.cluster_id, "created_at": 0})
            .to_string(),
    )
    .expect("write");
    let out = std::process::Command::new(bin("auxot-router"))
        .args(["serve", "--data-dir"])
        .arg(&rogue)
        .args(["--http-addr", "127.0.0.1:0", "--gossip-addr", "127.0.0.1:0"])
        .output()
        .expect("run router");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("ca.pem"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The real router still serves.
    let client = reqwest::Client::new();
    let answer = cluster
        .post(&client, 0, "/api/openai/chat/completions")
        .json(&json!({"model": "auto", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .expect("request");
    assert_eq!(answer.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_id_in_use_cannot_be_taken_over() {
    let mut cluster = Cluster::with_router(&[]);
    let seed = cluster.seed();
    cluster.start_worker(seed, synthetic("w0"));
    cluster.wait_workers(0, 1).await;
    // An impostor under the same name, with a valid token and its own key.
    cluster.start_worker(
        seed,
        WorkerOptions {
            args: vec!["--enroll-timeout-secs".into(), "6".into()],
            ..synthetic("w0")
        },
    );
    let code = cluster.workers[1].wait_exit(Duration::from_secs(30));
    let log = cluster.workers[1].log_text();
    assert!(
        matches!(code, Some(c) if c != 0),
        "the impostor must not start: {log}"
    );
    assert!(log.contains("held by a live node"), "{log}");
    // The original keeps its traffic.
    let client = reqwest::Client::new();
    for _ in 0..3 {
        let answer = cluster
            .post(&client, 0, "/api/openai/chat/completions")
            .json(&json!({"model": "auto", "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .expect("request");
        assert_eq!(answer.status(), 200);
        assert_eq!(answer.headers()["x-auxot-worker"], "w0");
    }
    assert!(cluster.workers[0].is_running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adverts_out_of_range_or_unsigned_are_ignored() {
    let cluster = Cluster::with_router(&[]);
    let seed = cluster.seed();
    cluster
        .wait_health(0, Duration::from_secs(30), |h| h["status"] == "ok")
        .await;
    let mut members = Vec::new();
    for (name, capacity) in [("greedy", 4_000_000_000u32), ("honest", 4)] {
        let (key, enrolled) = enroll_as(&cluster, name).await;
        let identity = MeshIdentity::new(key, enrolled.chain, enrolled.root).expect("identity");
        let listen: std::net::SocketAddr = format!("127.0.0.1:{}", free_udp_port())
            .parse()
            .expect("addr");
        let gossip = Gossip::spawn(
            &enrolled.gossip,
            GossipConfig {
                node_id: name.into(),
                listen_addr: listen,
                advertise_addr: listen,
                seeds: vec![seed.to_string()],
                interval: Duration::from_millis(200),
            },
            vec![
                (keys::ROLE.into(), "worker".into()),
                (keys::CERT.into(), identity.chain_value()),
            ],
        )
        .await
        .expect("gossip");
        let advert = WorkerAdvert {
            node_id: name.into(),
            generation: gossip.generation(),
            quic_addr: "127.0.0.1:9".parse().expect("addr"),
            readiness: Readiness::Ready,
            models: vec![ModelInfo {
                id: format!("{name}-model"),
                context_length: None,
                vision: false,
                reasoning: false,
                continues: false,
                kind: ModelKind::Chat,
            }],
            tools: Vec::new(),
            device: DeviceInfo::cpu(),
            capacity,
            load: 0,
        };
        gossip
            .set_many(&advert.signed_key_values(identity.key()))
            .await;
        members.push(gossip);
    }
    // The honest one (same path, sane figures) shows up, so the greedy one was heard and refused.
    cluster
        .wait_health(0, Duration::from_secs(15), |h| {
            h["models"]
                .as_array()
                .is_some_and(|m| m.iter().any(|x| x == "honest-model"))
        })
        .await;
    let health = cluster
        .wait_health(0, Duration::from_secs(5), |_| true)
        .await;
    assert!(
        !health["models"]
            .as_array()
            .is_some_and(|m| m.iter().any(|x| x == "greedy-model")),
        "{health}"
    );
    let log = cluster.routers[0].log_text();
    assert!(
        log.contains("greedy") && log.contains("out of range"),
        "the router logs why it ignores the advert: {log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_worker_leaves_every_router_and_cannot_come_back() {
    let mut cluster = Cluster::with_router(&[]);
    let seed = cluster.seed();
    cluster.start_router(&[seed], &[]);
    let state_dir = cluster.dir.path().join("w0-state");
    let keep_key = WorkerOptions {
        args: vec![
            "--state-dir".into(),
            state_dir.display().to_string(),
            "--enroll-timeout-secs".into(),
            "5".into(),
        ],
        ..synthetic("w0")
    };
    cluster.start_worker(seed, keep_key.clone());
    cluster.start_worker(seed, synthetic("w1"));
    for router in 0..2 {
        cluster.wait_workers(router, 2).await;
    }

    let listed = cluster.admin(0, &["workers", "list"]);
    assert!(
        listed.contains("w0") && listed.contains("worker"),
        "{listed}"
    );
    cluster.admin(1, &["workers", "revoke", "w0", "--reason", "test"]);
    let revoked_at = Instant::now();
    for router in 0..2 {
        let deadline = revoked_at + Duration::from_secs(3);
        loop {
            if routed(&cluster, router).await == ["w1"] {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "router {router} still routes to the revoked worker after 3 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    println!(
        "revoked worker out of routing on both routers after {:?}",
        revoked_at.elapsed()
    );

    // Restarted with its own key and a valid token, it is still refused.
    cluster.workers[0].kill();
    cluster.start_worker(seed, keep_key);
    let code = cluster.workers[2].wait_exit(Duration::from_secs(30));
    let log = cluster.workers[2].log_text();
    assert!(matches!(code, Some(c) if c != 0), "{log}");
    assert!(log.contains("revoked"), "{log}");
    assert_eq!(routed(&cluster, 0).await, ["w1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_rotate_and_certificates_renew_without_a_restart() {
    // Certificates of 12 s: workers renew every 8 s.
    let mut cluster = Cluster::with_router(&["--node-cert-lifetime-secs", "12"]);
    let seed = cluster.seed();
    cluster.start_worker(seed, synthetic("old"));
    cluster.wait_workers(0, 1).await;

    let new_token = cluster.admin(0, &["tokens", "create", "--name", "rotation"]);
    let listed: Value = serde_json::from_str(&cluster.admin(0, &["tokens", "list"])).expect("json");
    let first_id = listed["tokens"]
        .as_array()
        .expect("tokens")
        .iter()
        .find(|t| t["name"] == "first")
        .and_then(|t| t["id"].as_str())
        .expect("the first token")
        .to_string();
    cluster.admin(0, &["tokens", "revoke", &first_id]);

    // The old token enrolls no more...
    cluster.start_worker(
        seed,
        WorkerOptions {
            args: vec!["--enroll-timeout-secs".into(), "3".into()],
            ..synthetic("late")
        },
    );
    let code = cluster.workers[1].wait_exit(Duration::from_secs(30));
    assert!(matches!(code, Some(c) if c != 0));
    assert!(cluster.workers[1]
        .log_text()
        .contains("the join token is not valid"));
    // ...the new one does...
    cluster.join_token = new_token.trim().to_string();
    cluster.start_worker(seed, synthetic("new"));
    cluster.wait_workers(0, 2).await;
    // ...and the worker enrolled with the old token keeps running: it renews with its
    // certificate, not the token. Past two lifetimes it is still routable.
    tokio::time::sleep(Duration::from_secs(25)).await;
    let mut names = routed(&cluster, 0).await;
    names.sort();
    assert_eq!(names, ["new", "old"]);
    assert!(
        cluster.workers[0]
            .log_text()
            .contains("renewed this worker's certificate"),
        "{}",
        cluster.workers[0].log_text()
    );
}
