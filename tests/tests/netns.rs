//! A cluster whose nodes sit on different hosts, as far as the network is concerned.
//!
//! Every other whole-cluster test runs on loopback, where a node that advertises the wrong
//! address (127.0.0.1, the bind address `0.0.0.0`, a wrong interface) still works by accident.
//! Here each node gets its own Linux network namespace, joined to a bridge in the root namespace
//! by a veth pair, so it has its own address and its own loopback: a router in one namespace,
//! a worker with the real model in a second, a worker bound to `0.0.0.0` with
//! `--advertise-host` in a third. The test process reaches the router over the bridge like a
//! client on another machine would, and joins the gossip itself to read what each node
//! advertised.
//!
//! Namespaces need root (CAP_NET_ADMIN) and `ip` from iproute2. Where they cannot be made the
//! test fails with the reason, unless `AUXOT_SKIP_NETNS=1` says to skip it (the Makefile sets it
//! when not running as root, and says so); then it prints `SKIPPED: <reason>`. A test that passes
//! without having run would hide a broken network path. A host firewall that drops bridged
//! traffic (br_netfilter with a DROP forward policy) is not detected and makes it fail.
//! Everything created is removed when the test ends, also when it panics.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Command;
use std::time::Duration;

use auxot_common::mesh::gossip::{Gossip, GossipConfig};
use auxot_common::mesh::node::Readiness;
use auxot_tests::{free_udp_port, Cluster, Placement, WorkerOptions, MODEL_ID};
use serde_json::{json, Value};

/// Runs `ip ARGS`; the reason it failed, ready to print.
fn ip(args: &[&str]) -> Result<(), String> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .map_err(|err| format!("cannot run `ip` (iproute2): {err}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// A bridge in the root namespace and namespaces hanging off it, on `10.201.<subnet>.0/24`:
/// the bridge is `.1`, namespace `i` is `.(i + 2)`. Dropping it deletes all of it.
struct Network {
    subnet: u8,
    bridge: Option<String>,
    namespaces: Vec<String>,
    /// Root-namespace ends of the veth pairs.
    veths: Vec<String>,
}

impl Network {
    /// Creates the bridge and `count` namespaces. Names carry the process id so parallel runs
    /// do not collide; interface names stay within Linux's 15 characters.
    fn create(count: usize) -> Result<Network, String> {
        let pid = std::process::id();
        let mut net = Network {
            subnet: free_subnet(pid)?,
            bridge: None,
            namespaces: Vec::new(),
            veths: Vec::new(),
        };
        let bridge = format!("axb{pid}");
        ip(&["link", "add", &bridge, "type", "bridge"])?;
        net.bridge = Some(bridge.clone());
        ip(&[
            "addr",
            "add",
            &format!("{}/24", net.host(0)),
            "dev",
            &bridge,
        ])?;
        ip(&["link", "set", &bridge, "up"])?;
        for i in 0..count {
            let ns = format!("auxot-{pid}-{i}");
            ip(&["netns", "add", &ns])?;
            net.namespaces.push(ns.clone());
            let veth = format!("axv{pid}-{i}");
            ip(&[
                "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ])?;
            net.veths.push(veth.clone());
            ip(&["link", "set", &veth, "master", &bridge, "up"])?;
            let addr = format!("{}/24", net.node_ip(i));
            ip(&["-n", &ns, "addr", "add", &addr, "dev", "eth0"])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            // Sealed gossip relays datagrams over loopback, which starts down in a namespace.
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            ip(&["netns", "exec", &ns, "true"])?;
        }
        Ok(net)
    }

    /// `10.201.<subnet>.<last>`.
    fn host(&self, last: u8) -> IpAddr {
        Ipv4Addr::new(10, 201, self.subnet, last + 1).into()
    }

    /// The address of namespace `i`.
    fn node_ip(&self, i: usize) -> IpAddr {
        self.host(i as u8 + 1)
    }

    /// The bridge's address: the test process (root namespace) speaks from it.
    fn bridge_ip(&self) -> IpAddr {
        self.host(0)
    }

    /// A node in namespace `i`, bound to its address.
    fn placement(&self, i: usize) -> Placement {
        Placement::at(self.node_ip(i)).under(&["ip", "netns", "exec", &self.namespaces[i]])
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for ns in &self.namespaces {
            let _ = ip(&["netns", "del", ns]);
        }
        // Deleting a namespace removes its veth pair; this catches a pair whose peer never moved.
        for veth in &self.veths {
            let _ = Command::new("ip").args(["link", "del", veth]).output();
        }
        if let Some(bridge) = &self.bridge {
            let _ = ip(&["link", "del", bridge]);
        }
    }
}

/// A `10.201.x.0/24` no interface on this host uses yet, starting from one picked by `pid`.
fn free_subnet(pid: u32) -> Result<u8, String> {
    let output = Command::new("ip")
        .args(["-4", "-o", "addr", "show"])
        .output()
        .map_err(|err| format!("cannot run `ip` (iproute2): {err}"))?;
    let used = String::from_utf8_lossy(&output.stdout).into_owned();
    (0..250u32)
        .map(|k| ((pid + k) % 250) as u8)
        .find(|x| !used.contains(&format!(" 10.201.{x}.")))
        .ok_or_else(|| "every 10.201.x.0/24 is in use on this host".to_string())
}

fn client() -> reqwest::Client {
    // Straight to the bridge address, whatever proxy the environment names.
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("client")
}

async fn chat(cluster: &Cluster, model: &str, question: &str) -> Value {
    let response = cluster
        .post(&client(), 0, "/api/openai/chat/completions")
        .json(&json!({
            "model": model,
            "messages": [{"role": "user", "content": question}],
            "temperature": 0,
            "max_tokens": 40,
        }))
        .send()
        .await
        .expect("the router answers over the bridge");
    let status = response.status();
    let body: Value = response.json().await.expect("json");
    assert_eq!(status, 200, "{body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_in_separate_network_namespaces_form_a_cluster() {
    let net = match Network::create(3) {
        Ok(net) => net,
        Err(reason) if std::env::var("AUXOT_SKIP_NETNS").is_ok_and(|v| v == "1") => {
            eprintln!("SKIPPED (AUXOT_SKIP_NETNS=1): network namespaces: {reason}");
            return;
        }
        Err(reason) => panic!(
            "cannot create network namespaces: {reason}; run as root, or set AUXOT_SKIP_NETNS=1 to skip this test explicitly"
        ),
    };
    // Declared after `net`, so its processes die before the namespaces are deleted.
    let mut cluster = Cluster::setup();

    cluster.start_router_at(&net.placement(0), &[], &[]);
    let seed = cluster.routers[0].gossip;
    cluster.start_worker_at(
        &net.placement(1),
        seed,
        WorkerOptions {
            name: Some("worker-a".into()),
            ..Default::default()
        },
    );
    cluster.start_worker_at(
        &net.placement(2).binding(Ipv4Addr::UNSPECIFIED.into()),
        seed,
        WorkerOptions {
            synthetic: true,
            name: Some("worker-b".into()),
            ..Default::default()
        },
    );

    // The test process is outside every namespace: it reaches the router over the bridge.
    let health = cluster.wait_workers(0, 2).await;
    let mut capacity: Vec<(String, Vec<Value>)> = health["capacity"]
        .as_array()
        .expect("capacity")
        .iter()
        .map(|w| {
            (
                w["worker"].as_str().expect("worker").to_string(),
                w["models"].as_array().expect("models").clone(),
            )
        })
        .collect();
    capacity.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        capacity,
        vec![
            ("worker-a".to_string(), vec![json!(MODEL_ID)]),
            ("worker-b".to_string(), vec![json!("synthetic")]),
        ],
        "{health}"
    );

    // Requests cross namespaces twice: test -> router over the bridge, router -> worker over
    // QUIC between two namespaces.
    let body = chat(
        &cluster,
        MODEL_ID,
        "What is the capital of France? Answer in one sentence.",
    )
    .await;
    let text = body["choices"][0]["message"]["content"]
        .as_str()
        .expect("content");
    assert!(
        text.contains("Paris"),
        "the model should say Paris: {text:?}"
    );
    let body = chat(&cluster, "synthetic", "Say anything.").await;
    assert_eq!(body["model"], "synthetic");
    assert!(
        !body["choices"][0]["message"]["content"]
            .as_str()
            .unwrap_or_default()
            .is_empty(),
        "{body}"
    );

    // Each node advertised the address its namespace has, never loopback: a member of the
    // cluster reads the gossip from the root namespace.
    let gossip_key = cluster.authority().gossip;
    let listen = SocketAddr::new(net.bridge_ip(), free_udp_port());
    let observer = Gossip::spawn(
        &gossip_key,
        GossipConfig {
            node_id: "observer".into(),
            listen_addr: listen,
            advertise_addr: listen,
            seeds: vec![seed.to_string()],
            interval: Duration::from_millis(200),
        },
        Vec::new(),
    )
    .await
    .expect("join the gossip from the root namespace");
    let mut live = observer.live_nodes().await;
    let expected_workers = vec![
        (
            "worker-a".to_string(),
            cluster.workers[0].quic.expect("quic"),
        ),
        (
            "worker-b".to_string(),
            cluster.workers[1].quic.expect("quic"),
        ),
    ];
    let expected_router = vec![(
        "router0".to_string(),
        Some(
            cluster
                .router_url(0)
                .trim_start_matches("http://")
                .to_string(),
        ),
    )];
    let seen = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let (workers, routers) = {
                let view = cluster.verified(&live.borrow_and_update());
                let mut workers: Vec<(String, SocketAddr)> = view
                    .adverts()
                    .into_iter()
                    .filter(|w| w.readiness == Readiness::Ready)
                    .map(|w| (w.node_id, w.quic_addr))
                    .collect();
                workers.sort();
                let routers: Vec<(String, Option<String>)> = view
                    .routers
                    .into_iter()
                    .map(|r| (r.node_id, r.http_addr))
                    .collect();
                (workers, routers)
            };
            if workers == expected_workers && routers == expected_router {
                return true;
            }
            if live.changed().await.is_err() {
                return false;
            }
        }
    })
    .await;
    let view = cluster.verified(&live.borrow().clone());
    assert!(
        seen == Ok(true),
        "gossip should show the workers at {expected_workers:?} and the router at {expected_router:?}; it shows workers {:?}, routers {:?}",
        view.adverts()
            .iter()
            .map(|w| (&w.node_id, w.quic_addr, w.readiness))
            .collect::<Vec<_>>(),
        view.routers.iter().map(|r| (&r.node_id, &r.http_addr)).collect::<Vec<_>>(),
    );
    println!(
        "across namespaces: router {} (gossip {seed}), workers {expected_workers:?}; model said {text:?}",
        cluster.router_url(0)
    );
    observer.shutdown();
}
