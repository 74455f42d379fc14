//! `make bench`: figures for the router and the mesh, each against a baseline measured in the
//! same run, on real processes with the synthetic engine (named as such: no model runs here).
//!
//! 1. Router overhead: the same requests sent straight to a worker over QUIC (baseline) and
//!    through a router's HTTP API; reported as latency and throughput ratios.
//! 2. Membership: time for a joining worker to become routable on every router.
//! 3. Routing: spread and latency with power-of-two-choices against round-robin (baseline) when
//!    one worker is slower than the others.
//! 4. Gossip traffic per node per second.
//! 5. Failover: requests failed per worker killed under load, split by whether output had
//!    reached the client, with mid-stream continuation off (the baseline) and on.
//! 6. Prefix-affinity routing against power-of-two-choices (baseline): multi-turn conversations
//!    over 3 workers whose synthetic engine models a prefix cache (a prompt prefix computed
//!    recently costs no prefill); time to first token and cache-hit rate.
//! 7. Engine speed with the real model: through a router, in-process, and llama.cpp on the same
//!    file (`bench/engine.rs`).
//! 8. Router overhead against vllm-router and sglang-router in front of a mock backend
//!    (`bench/peers.rs`).
//! 9. Prefix affinity against power-of-two-choices with the real model on three CPU workers.
//!
//! `auxot-bench [mesh] [engine] [peers] [affinity]` runs those sections (sections 1 to 6 are
//! `mesh`; all by default).
#![forbid(unsafe_code)]

#[path = "../bench/engine.rs"]
mod engine;
#[path = "../bench/http.rs"]
mod http;
#[path = "../bench/peers.rs"]
mod peers;
#[path = "../bench/sections.rs"]
mod sections;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use auxot_common::chat::{ChatEvent, ChatRequest, Message, Role};
use auxot_common::mesh::identity::TrustPolicy;
use auxot_common::mesh::quic::QuicEndpoint;
use auxot_common::pki::never_revoked;
use auxot_common::wire::{read_frame, write_frame, WireReply, WireRequest};
use auxot_tests::conversations::{self, Shape, Turn};
use auxot_tests::load::{by_worker, imbalance, one, quantile, Outcome};
use auxot_tests::{free_tcp_port, Cluster, WorkerOptions};
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

/// What killing a worker under load did.
struct KillRun {
    requests: usize,
    failed: usize,
    failed_started: usize,
    /// Requests the killed worker had taken that still completed (continued or redone).
    victim_completed: usize,
    gossip_removal: Duration,
}

/// 300 requests through `routers` (one every 10 ms, a third non-streaming), `victim` killed
/// after one second.
async fn kill_under_load(
    cluster: &mut Cluster,
    routers: &[usize],
    victim: &str,
    observer: usize,
) -> anyhow::Result<KillRun> {
    let urls: Vec<String> = routers.iter().map(|&r| cluster.router_url(r)).collect();
    let key = cluster.api_key.clone();
    let load_task = tokio::spawn(async move {
        let client = reqwest::Client::new();
        let mut tasks = Vec::new();
        for i in 0..300usize {
            let url = urls[i % urls.len()].clone();
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
    });
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let index = cluster
        .workers
        .iter()
        .position(|w| w.name == victim)
        .context("victim")?;
    cluster.workers[index].signal("KILL");
    let killed_at = Instant::now();
    let gossip_removal = loop {
        let h = health(cluster, observer).await;
        let listed = h["capacity"]
            .as_array()
            .is_some_and(|ws| ws.iter().any(|w| w["worker"] == victim));
        if !listed || killed_at.elapsed() > Duration::from_secs(60) {
            break killed_at.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let outcomes = load_task.await?;
    let failed: Vec<&Outcome> = outcomes.iter().filter(|o| o.failed).collect();
    Ok(KillRun {
        requests: outcomes.len(),
        failed: failed.len(),
        failed_started: failed.iter().filter(|o| o.started).count(),
        victim_completed: outcomes
            .iter()
            .filter(|o| o.worker == victim && !o.failed)
            .count(),
        gossip_removal,
    })
}

/// A synthetic worker whose answers stream for a second (40 tokens at 40 per second).
fn streaming(name: &str) -> WorkerOptions {
    WorkerOptions {
        synthetic: true,
        name: Some(name.into()),
        args: [
            "--synthetic-ttft-ms",
            "50",
            "--synthetic-tokens",
            "40",
            "--synthetic-tokens-per-sec",
            "40",
            "--max-seqs",
            "64",
        ]
        .map(String::from)
        .to_vec(),
        ..Default::default()
    }
}

/// A synthetic worker whose engine models a prefix cache: 5 ms to first token plus 200 us of
/// prefill per prompt token it has not cached; 4096 conversation prefixes, enough for every
/// conversation of a run, so routing alone decides the hits.
fn cached(name: &str, metrics_port: u16) -> WorkerOptions {
    WorkerOptions {
        synthetic: true,
        name: Some(name.into()),
        args: [
            "--synthetic-ttft-ms",
            "5",
            "--synthetic-prefill-us-per-token",
            "200",
            "--synthetic-prefix-cache",
            "4096",
            "--synthetic-tokens",
            "16",
            "--synthetic-tokens-per-sec",
            "800",
            "--max-seqs",
            "16",
            "--metrics-addr",
            &format!("127.0.0.1:{metrics_port}"),
        ]
        .map(String::from)
        .to_vec(),
        ..Default::default()
    }
}

/// Prefix-cache totals over workers: (lookups, hits, prompt tokens, cached tokens).
async fn cache_totals(ports: &[u16]) -> [f64; 4] {
    let mut totals = [0.0; 4];
    for port in ports {
        let url = format!("http://127.0.0.1:{port}/metrics");
        let Ok(response) = reqwest::get(url).await else {
            continue;
        };
        let text = response.text().await.unwrap_or_default();
        for line in text.lines() {
            let Some((name, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let value: f64 = value.parse().unwrap_or(0.0);
            let slot = match name {
                "auxot_worker_prefix_cache_lookups_total{result=\"hit\"}" => [0, 1].as_slice(),
                "auxot_worker_prefix_cache_lookups_total{result=\"miss\"}" => [0].as_slice(),
                "auxot_worker_prefix_cache_tokens_total{result=\"cached\"}" => [2, 3].as_slice(),
                "auxot_worker_prefix_cache_tokens_total{result=\"computed\"}" => [2].as_slice(),
                _ => [].as_slice(),
            };
            for i in slot {
                totals[*i] += value;
            }
        }
    }
    totals
}

/// One policy's conversations, with the cache figures they caused.
async fn conversation_run(
    cluster: &Cluster,
    router: usize,
    ports: &[u16],
    shape: Shape,
    tag: &str,
) -> (Vec<Turn>, [f64; 4]) {
    let before = cache_totals(ports).await;
    let turns = conversations::run(&cluster.router_url(router), &cluster.api_key, shape, tag).await;
    let after = cache_totals(ports).await;
    let mut delta = [0.0; 4];
    for i in 0..4 {
        delta[i] = after[i] - before[i];
    }
    (turns, delta)
}

fn print_conversations(label: &str, turns: &[Turn], cache: [f64; 4]) {
    let failed = turns.iter().filter(|t| t.failed).count();
    let [lookups, hits, prompt, cached] = cache;
    println!(
        "   {label}: TTFT p50 {:.1} ms  p90 {:.1} ms  (turns after the first: p50 {:.1} ms  p90 {:.1} ms)  cache: {:.0}% of prompts hit, {:.0}% of prompt tokens cached  ({failed} failed)",
        ms(conversations::ttft_quantile(turns, 0, 0.5)),
        ms(conversations::ttft_quantile(turns, 0, 0.9)),
        ms(conversations::ttft_quantile(turns, 1, 0.5)),
        ms(conversations::ttft_quantile(turns, 1, 0.9)),
        100.0 * hits / lookups.max(1.0),
        100.0 * cached / prompt.max(1.0),
    );
}

fn main() -> anyhow::Result<()> {
    sections::main()
}

/// Sections 1 to 6: the mesh with synthetic workers.
async fn mesh_sections() -> anyhow::Result<()> {
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
    cluster.start_router(&[seed], &["--routing", "p2c"]);
    cluster.start_router(&[seed], &["--routing", "round-robin"]);
    cluster.start_router(&[seed], &["--routing", "prefix-affinity"]);
    cluster.wait_workers(1, 1).await;
    cluster.wait_workers(2, 1).await;
    cluster.wait_workers(3, 1).await;
    let mut joins = Vec::new();
    for (name, ttft) in [("w1", 20), ("w2", 120)] {
        joins.push(join_time(&mut cluster, seed, name, ttft).await);
    }
    println!("2. a joining worker becomes routable on all 4 routers after: {} (worker start-up included; gossip interval 500 ms)\n",
        joins.iter().map(|d| format!("{:.2} s", d.as_secs_f64())).collect::<Vec<_>>().join(", "));

    // 3. Routing with one slow worker (w2: 120 ms to first token instead of 20 ms).
    let (rr, _) = through(&cluster, &[2]).await;
    let (p2c, _) = through(&cluster, &[1]).await;
    let (affinity, _) = through(&cluster, &[3]).await;
    println!("3. routing with one slow worker, 3 workers");
    println!("   round-robin (baseline): per worker {:?}  busiest/fair x{:.2}  p50 {:.1} ms  p99 {:.1} ms", by_worker(&rr), imbalance(&rr, 3), ms(quantile(&rr, 0.5)), ms(quantile(&rr, 0.99)));
    println!("   power of two choices:   per worker {:?}  busiest/fair x{:.2}  p50 {:.1} ms  p99 {:.1} ms", by_worker(&p2c), imbalance(&p2c, 3), ms(quantile(&p2c, 0.5)), ms(quantile(&p2c, 0.99)));
    println!("   prefix affinity:        per worker {:?}  busiest/fair x{:.2}  p50 {:.1} ms  p99 {:.1} ms  (every request has the same prompt: one prefix, spilled by the load bound)", by_worker(&affinity), imbalance(&affinity, 3), ms(quantile(&affinity, 0.5)), ms(quantile(&affinity, 0.99)));
    println!(
        "   ratio p2c/round-robin: p50 x{:.2}  p99 x{:.2};  prefix-affinity/p2c: p50 x{:.2}  p99 x{:.2}\n",
        ms(quantile(&p2c, 0.5)) / ms(quantile(&rr, 0.5)),
        ms(quantile(&p2c, 0.99)) / ms(quantile(&rr, 0.99)),
        ms(quantile(&affinity, 0.5)) / ms(quantile(&p2c, 0.5)),
        ms(quantile(&affinity, 0.99)) / ms(quantile(&p2c, 0.99))
    );

    // 4. Gossip traffic.
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
    println!("4. gossip traffic at router 0 with {nodes} live nodes: {:.0} bytes/s sent+received (sealed UDP)\n", (bytes(&second) - bytes(&first)) / window.as_secs_f64());
    drop(cluster);

    // 5. Failover, on a cluster of its own whose answers stream for a second: a worker killed
    // under streaming and non-streaming load, first through a router with continuation off (the
    // baseline: streams with output end with an error), then through one with it on. A router
    // that carries no traffic learns of the deaths only through gossip.
    let mut cluster = Cluster::with_router(&["--routing", "p2c", "--max-continuations", "0"]);
    let seed = cluster.seed();
    let after = cluster.start_router(&[seed], &["--routing", "p2c"]);
    let observer = cluster.start_router(&[seed], &[]);
    for name in ["k0", "k1", "k2"] {
        cluster.start_worker(seed, streaming(name));
    }
    for router in [0, after, observer] {
        cluster.wait_workers(router, 3).await;
    }
    let off = kill_under_load(&mut cluster, &[0], "k0", observer).await?;
    cluster.start_worker(seed, streaming("k3"));
    for router in [0, after] {
        cluster
            .wait_health(router, Duration::from_secs(60), |h| {
                let listed = |name: &str| {
                    h["capacity"]
                        .as_array()
                        .is_some_and(|ws| ws.iter().any(|w| w["worker"] == name))
                };
                listed("k3") && !listed("k0")
            })
            .await;
    }
    let on = kill_under_load(&mut cluster, &[after], "k1", observer).await?;
    println!("5. one of 3 workers killed (SIGKILL) under load: answers of 40 tokens streamed over 1 s, 1 in 3 requests non-streaming");
    for (label, run) in [
        ("continuation off (baseline)", &off),
        ("continuation on", &on),
    ] {
        println!(
            "   {label}: {} requests, {} failed ({} after output had reached the client, {} before); {} that the killed worker had taken completed",
            run.requests, run.failed, run.failed_started, run.failed - run.failed_started, run.victim_completed
        );
    }
    println!(
        "   a router that never talked to the killed worker dropped it through gossip after {:.2} s\n",
        on.gossip_removal.as_secs_f64()
    );
    drop(cluster);

    // 6. Prefix affinity against P2C, on a fresh cluster of 3 caching workers.
    let mut cluster = Cluster::with_router(&["--routing", "p2c"]);
    let seed = cluster.seed();
    let affinity_router = cluster.start_router(&[seed], &["--routing", "prefix-affinity"]);
    let ports: Vec<u16> = (0..3).map(|_| free_tcp_port()).collect();
    for (i, port) in ports.iter().enumerate() {
        cluster.start_worker(seed, cached(&format!("c{i}"), *port));
    }
    cluster.wait_workers(0, 3).await;
    cluster.wait_workers(affinity_router, 3).await;
    let shape = Shape {
        conversations: 36,
        turns: 6,
        concurrency: 12,
        system_bytes: 1600,
        max_tokens: None,
    };
    println!(
        "6. prefix-affinity routing: {} conversations of {} turns ({} at once, {} B system prompts) over 3 workers with a modelled prefix cache (5 ms + 200 us per uncached prompt token)",
        shape.conversations, shape.turns, shape.concurrency, shape.system_bytes
    );
    let (p2c, p2c_cache) = conversation_run(&cluster, 0, &ports, shape, "p2c").await;
    let (affinity, affinity_cache) =
        conversation_run(&cluster, affinity_router, &ports, shape, "affinity").await;
    print_conversations("power of two choices (baseline)", &p2c, p2c_cache);
    print_conversations("prefix affinity", &affinity, affinity_cache);
    println!(
        "   ratio prefix-affinity/p2c: TTFT p50 x{:.2}  p90 x{:.2}",
        ms(conversations::ttft_quantile(&affinity, 0, 0.5))
            / ms(conversations::ttft_quantile(&p2c, 0, 0.5)),
        ms(conversations::ttft_quantile(&affinity, 0, 0.9))
            / ms(conversations::ttft_quantile(&p2c, 0, 0.9)),
    );
    Ok(())
}
