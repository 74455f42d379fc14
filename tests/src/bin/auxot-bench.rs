//! `make bench`: figures for the router and the mesh, each against a baseline measured in the
//! same run, on real processes with the synthetic engine (named as such: no model runs here).
//!
//! 1. Router overhead: the same requests sent straight to a worker over QUIC (baseline) and
//!    through a router's HTTP API; reported as latency and throughput ratios.
//! 2. Membership: time for a joining worker to become routable on every router.
//! 3. Routing: spread and latency with power-of-two-choices against round-robin (baseline) when
//!    one worker is slower than the others.
//! 4. Failover: requests failed per worker killed under load, split by whether output had
//!    reached the client.
//! 5. Gossip traffic per node per second.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use auxot_common::chat::{ChatEvent, ChatRequest, Message, Role};
use auxot_common::mesh::identity::TrustPolicy;
use auxot_common::mesh::quic::QuicEndpoint;
use auxot_common::pki::never_revoked;
use auxot_common::wire::{read_frame, write_frame, WireReply, WireRequest};
use auxot_tests::load::{by_worker, imbalance, one, quantile, Outcome};
use auxot_tests::{Cluster, WorkerOptions};
use serde_json::Value;
use tokio::sync::Semaphore;

const REQUESTS: usize = 400;
const CONCURRENCY: usize = 8;

fn synthetic(name: &str, ttft_ms: u64) -> WorkerOptions {
    WorkerOptions {
        synthetic: true,
        name: Some(name.into()),
        args: [
            "--synthetic-ttft-ms",
            &ttft_ms.to_string(),
            "--synthetic-tokens",
            "16",
            "--synthetic-tokens-per-sec",
            "800",
            "--max-seqs",
            "16",
        ]
        .map(String::from)
        .to_vec(),
        ..Default::default()
    }
}

/// One chat straight to a worker over QUIC, as a router would send it.
async fn direct(endpoint: &QuicEndpoint, node: &str, addr: SocketAddr) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let conn = endpoint.connect(node, addr).await?;
    let request = WireRequest::Chat(ChatRequest {
        model: "auto".into(),
        messages: vec![Message::text(Role::User, "hello")],
        ..Default::default()
    });
    let (mut send, mut recv) = conn.open_bi().await?;
    write_frame(&mut send, &request).await?;
    while let Some(reply) = read_frame::<_, WireReply>(&mut recv).await? {
        if matches!(
            reply,
            WireReply::Event(ChatEvent::Finish { .. }) | WireReply::Error(_)
        ) {
            break;
        }
    }
    Ok(started.elapsed())
}

/// The baseline: `REQUESTS` direct chats, `CONCURRENCY` at a time.
async fn baseline(
    cluster: &Cluster,
    worker: &str,
    addr: SocketAddr,
) -> anyhow::Result<(Vec<Duration>, Duration)> {
    // The baseline dials the worker as a router would, with a router certificate.
    let identity = cluster.identity("bench-client", auxot_common::pki::Role::Router);
    let policy = TrustPolicy {
        accept_from: Vec::new(),
        dial: vec![auxot_common::pki::Role::Worker],
        revoked: never_revoked(),
    };
    let endpoint = QuicEndpoint::bind(&identity, &policy, "127.0.0.1:0".parse()?, false)?;
    let limit = Arc::new(Semaphore::new(CONCURRENCY));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..REQUESTS {
        let permit = limit.clone().acquire_owned().await?;
        let (endpoint, worker) = (endpoint.clone(), worker.to_string());
        tasks.push(tokio::spawn(async move {
            let latency = direct(&endpoint, &worker, addr).await;
            drop(permit);
            latency
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.push(task.await??);
    }
    let elapsed = started.elapsed();
    latencies.sort();
    Ok((latencies, elapsed))
}

fn pct(sorted: &[Duration], q: f64) -> Duration {
    sorted
        .get(((sorted.len().saturating_sub(1)) as f64 * q).round() as usize)
        .copied()
        .unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn health(cluster: &Cluster, router: usize) -> Value {
    let url = format!("{}/health", cluster.router_url(router));
    // With the key, `/health` details the workers.
    let request = reqwest::Client::new()
        .get(url)
        .bearer_auth(&cluster.api_key);
    match request.send().await {
        Ok(response) => response.json().await.unwrap_or_default(),
        Err(_) => Value::Null,
    }
}

/// Seconds until every router routes to `name`.
async fn join_time(cluster: &mut Cluster, seed: SocketAddr, name: &str, ttft: u64) -> Duration {
    let started = Instant::now();
    cluster.start_worker(seed, synthetic(name, ttft));
    loop {
        let mut everywhere = true;
        for router in 0..cluster.routers.len() {
            let h = health(cluster, router).await;
            let seen = h["capacity"]
                .as_array()
                .is_some_and(|ws| ws.iter().any(|w| w["worker"] == name));
            everywhere &= seen;
        }
        if everywhere || started.elapsed() > Duration::from_secs(60) {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `REQUESTS` requests through `routers`, `CONCURRENCY` at a time per router.
async fn through(cluster: &Cluster, routers: &[usize]) -> (Vec<Outcome>, Duration) {
    let client = reqwest::Client::new();
    let started = Instant::now();
    let mut tasks = Vec::new();
    let limit = Arc::new(Semaphore::new(CONCURRENCY * routers.len()));
    for i in 0..REQUESTS {
        let router = routers[i % routers.len()];
        let permit = limit.clone().acquire_owned().await.ok();
        let (client, url, key) = (
            client.clone(),
            cluster.router_url(router),
            cluster.api_key.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let outcome = one(&client, &url, &key, false).await;
            drop(permit);
            outcome
        }));
    }
    let mut outcomes = Vec::new();
    for task in tasks {
        if let Ok(outcome) = task.await {
            outcomes.push(outcome);
        }
    }
    (outcomes, started.elapsed())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    println!("auxot benchmark (synthetic engine: 16 tokens at 800 tok/s per request; {REQUESTS} requests, {CONCURRENCY} concurrent per router)\n");
    let mut cluster = Cluster::with_router(&[]);
    let seed = cluster.seed();
    cluster.start_worker(seed, synthetic("w0", 20));
    cluster.wait_workers(0, 1).await;

    // 1. Router overhead.
    let addr = cluster.workers[0].quic.context("worker address")?;
    let (direct_latencies, direct_elapsed) = baseline(&cluster, "w0", addr).await?;
    let (routed, routed_elapsed) = through(&cluster, &[0]).await;
    let failed = routed.iter().filter(|o| o.failed).count();
    let (d50, d99) = (pct(&direct_latencies, 0.5), pct(&direct_latencies, 0.99));
    let (r50, r99) = (quantile(&routed, 0.5), quantile(&routed, 0.99));
    let direct_rps = REQUESTS as f64 / direct_elapsed.as_secs_f64();
    let routed_rps = REQUESTS as f64 / routed_elapsed.as_secs_f64();
    println!("1. router overhead (one worker)");
    println!(
        "   baseline, QUIC straight to the worker: p50 {:.1} ms  p99 {:.1} ms  {:.0} req/s",
        ms(d50),
        ms(d99),
        direct_rps
    );
    println!("   through the router (HTTP + auth + routing): p50 {:.1} ms  p99 {:.1} ms  {:.0} req/s  ({failed} failed)", ms(r50), ms(r99), routed_rps);
    println!(
        "   ratio router/baseline: p50 x{:.2}  p99 x{:.2}  throughput x{:.2}\n",
        ms(r50) / ms(d50),
        ms(r99) / ms(d99),
        routed_rps / direct_rps
    );

    // 2. Membership: a second and third router, then workers joining.
    cluster.start_router(&[seed], &[]);
    cluster.start_router(&[seed], &["--routing", "round-robin"]);
    cluster.wait_workers(1, 1).await;
    cluster.wait_workers(2, 1).await;
    let mut joins = Vec::new();
    for (name, ttft) in [("w1", 20), ("w2", 120)] {
        joins.push(join_time(&mut cluster, seed, name, ttft).await);
    }
    println!("2. a joining worker becomes routable on all 3 routers after: {} (worker start-up included; gossip interval 500 ms)\n",
        joins.iter().map(|d| format!("{:.2} s", d.as_secs_f64())).collect::<Vec<_>>().join(", "));

    // 3. Routing with one slow worker (w2: 120 ms to first token instead of 20 ms).
    let (rr, _) = through(&cluster, &[2]).await;
    let (p2c, _) = through(&cluster, &[0]).await;
    println!("3. routing with one slow worker, 3 workers");
    println!("   round-robin (baseline): per worker {:?}  busiest/fair x{:.2}  p50 {:.1} ms  p99 {:.1} ms", by_worker(&rr), imbalance(&rr, 3), ms(quantile(&rr, 0.5)), ms(quantile(&rr, 0.99)));
    println!("   power of two choices:   per worker {:?}  busiest/fair x{:.2}  p50 {:.1} ms  p99 {:.1} ms", by_worker(&p2c), imbalance(&p2c, 3), ms(quantile(&p2c, 0.5)), ms(quantile(&p2c, 0.99)));
    println!(
        "   ratio p2c/round-robin: p50 x{:.2}  p99 x{:.2}\n",
        ms(quantile(&p2c, 0.5)) / ms(quantile(&rr, 0.5)),
        ms(quantile(&p2c, 0.99)) / ms(quantile(&rr, 0.99))
    );

    // 4. Failover: kill w1 under streaming and non-streaming load through two routers. A fourth
    // router that carries no traffic learns of the death only through gossip.
    cluster.start_router(&[seed], &[]);
    let observer = cluster.routers.len() - 1;
    cluster.wait_workers(observer, 3).await;
    let victim = cluster
        .workers
        .iter()
        .position(|w| w.name == "w1")
        .context("w1")?;
    let load_task = {
        let (a, b, key) = (
            cluster.router_url(0),
            cluster.router_url(1),
            cluster.api_key.clone(),
        );
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut tasks = Vec::new();
            for i in 0..300usize {
                let url = if i % 2 == 0 { a.clone() } else { b.clone() };
                let (client, key) = (client.clone(), key.clone());
                tasks.push(tokio::spawn(async move {
                    one(&client, &url, &key, i % 3 != 0).await
                }));
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let mut outcomes = Vec::new();
            for task in tasks {
                if let Ok(outcome) = task.await {
                    outcomes.push(outcome);
                }
            }
            outcomes
        })
    };
    tokio::time::sleep(Duration::from_millis(1000)).await;
    cluster.workers[victim].signal("KILL");
    let killed_at = Instant::now();
    let gossip_removal = loop {
        let h = health(&cluster, observer).await;
        let listed = h["capacity"]
            .as_array()
            .is_some_and(|ws| ws.iter().any(|w| w["worker"] == "w1"));
        if !listed || killed_at.elapsed() > Duration::from_secs(60) {
            break killed_at.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let outcomes = load_task.await?;
    let failed: Vec<&Outcome> = outcomes.iter().filter(|o| o.failed).collect();
    let before = failed.iter().filter(|o| !o.started).count();
    println!("4. one worker killed (SIGKILL) under load: {} requests, {} failed: {} after output had reached the client, {before} before (retried transparently otherwise)",
        outcomes.len(), failed.len(), failed.len() - before);
    println!("   a router that never talked to the killed worker dropped it through gossip after {:.2} s\n", gossip_removal.as_secs_f64());

    // 5. Gossip traffic.
    let window = Duration::from_secs(10);
    let first = health(&cluster, 0).await;
    tokio::time::sleep(window).await;
    let second = health(&cluster, 0).await;
    let bytes = |h: &Value| {
        h["gossip"]["bytes_sent"].as_f64().unwrap_or(0.0)
            + h["gossip"]["bytes_received"].as_f64().unwrap_or(0.0)
    };
    let nodes = cluster.routers.len()
        + cluster
            .workers
            .iter_mut()
            .map(|w| w.is_running())
            .filter(|running| *running)
            .count();
    println!("5. gossip traffic at router 0 with {nodes} live nodes: {:.0} bytes/s sent+received (sealed UDP)", (bytes(&second) - bytes(&first)) / window.as_secs_f64());
    Ok(())
}
