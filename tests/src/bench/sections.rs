//! The benchmark's entry point, and its sections 7 (engine speed), 8 (router overhead against
//! the peers) and 9 (prefix affinity with the real model). Sections 1 to 6 are in
//! `auxot-bench.rs`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use auxot_tests::conversations::{self, Shape};
use auxot_tests::{Cluster, WorkerOptions};
use auxot_worker::WorkerConfig;

use crate::engine::{self, Figures, InProcess, LlamaCpp, System as _, ThroughRouter};
use crate::peers::{self, RouterRun};

/// What the bench installs from PyPI (pinned: figures are compared across runs).
const LLAMA_CPP: &str = "llama-cpp-python==0.3.36";
const PEERS: [(&str, &str); 2] = [
    ("vllm-router", "vllm-router==0.1.17"),
    ("sglang-router", "sglang-router==0.3.2"),
];

pub fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("mock-backend") {
        return mock_backend_process();
    }
    let wants = |section: &str| args.is_empty() || args.iter().any(|a| a == section);
    // The in-process engine decides how its weights are kept before any thread exists, as the
    // worker's own `main` does, so both run the model alike.
    let engine_config = wants("engine").then(engine_config);
    if let Some(config) = &engine_config {
        auxot_worker::prepare_engine_environment(config);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        if wants("mesh") {
            crate::mesh_sections().await?;
        }
        if let Some(config) = engine_config {
            engine_section(config).await?;
        }
        if wants("affinity") {
            affinity_section().await?;
        }
        if wants("peers") {
            peers_section().await?;
        }
        Ok(())
    })
}

/// `auxot-bench mock-backend`: serves the mock backend, printing its address first.
fn mock_backend_process() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        println!("{}", listener.local_addr()?);
        crate::http::mock_backend(listener).await;
        Ok(())
    })
}

/// The bench's Python environment: `AUXOT_BENCH_VENV`, or `~/.cache/auxot/bench-venv`.
fn venv() -> PathBuf {
    if let Ok(dir) = std::env::var("AUXOT_BENCH_VENV") {
        return PathBuf::from(dir);
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| ".".into());
    PathBuf::from(home).join(".cache/auxot/bench-venv")
}

fn engine_config() -> WorkerConfig {
    let mut config = WorkerConfig::new(Vec::new(), "");
    config.model = Some(auxot_tests::model_path().display().to_string());
    config.cpu = true;
    config
}

fn secs(d: f64) -> String {
    format!("{d:.2} s")
}

fn row(name: &str, f: &Figures) {
    println!(
        "   {name:<24} {:>9} {:>9} {:>9.1} {:>9.1}   x{:.2}",
        secs(f.ttft_c1()),
        secs(f.ttft_c4()),
        f.tps_c1(),
        f.tps_c4(),
        f.tps_c4() / f.tps_c1()
    );
}

async fn engine_section(config: WorkerConfig) -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "7. engine speed: SmolLM2-135M-Instruct Q4_1 on the CPU ({cores} cores), {} prompts of different lengths, {} tokens each, greedy, {} rounds",
        engine::PROMPTS.len(),
        engine::MAX_TOKENS,
        engine::ROUNDS
    );
    // Other work on the machine slows every system, llama.cpp's spinning threads most.
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        println!("   load average before the section: {}", load.trim());
    }
    let venv = venv();
    let llama = match peers::ensure_venv(&venv, &[LLAMA_CPP]).pop() {
        Some((package, why)) => {
            println!(
                "   llama.cpp reference not measured: {package} could not be installed ({why})"
            );
            None
        }
        None => {
            let script = auxot_tests::workspace_root().join("scripts/llama-reference.py");
            match LlamaCpp::start(
                &venv.join("bin/python"),
                &script,
                &auxot_tests::model_path(),
            ) {
                Ok(llama) => Some(llama),
                Err(e) => {
                    println!("   llama.cpp reference not measured: {e:#}");
                    None
                }
            }
        }
    };
    let mut cluster = Cluster::with_router(&[]);
    let seed = cluster.seed();
    cluster.start_worker(seed, WorkerOptions::default());
    cluster.wait_workers(0, 1).await;
    let router = ThroughRouter {
        client: reqwest::Client::new(),
        url: cluster.router_url(0),
        key: cluster.api_key.clone(),
    };
    let engine = auxot_worker::build_engine(&config)
        .await?
        .context("the configuration names no model")?;
    let in_process = InProcess(engine);
    // Warm-up: first requests build caches.
    in_process.one(engine::PROMPTS[0]).await?;
    router.one(engine::PROMPTS[0]).await?;
    // llama.cpp with one thread and with every core: its threads spin while they wait for each
    // other, which on a busy machine can make more threads slower. The faster is the reference.
    let llama_threads: Vec<usize> = if cores > 1 { vec![1, cores] } else { vec![1] };
    let (mut inp, mut thr) = (Figures::default(), Figures::default());
    let mut references = vec![Figures::default(); llama_threads.len()];
    for _ in 0..engine::ROUNDS {
        engine::round(&in_process, &mut inp, &router, &mut thr).await?;
        if let Some(llama) = &llama {
            for (threads, figures) in llama_threads.iter().zip(&mut references) {
                tokio::task::block_in_place(|| llama.round(*threads, figures))?;
            }
        }
    }
    println!(
        "   {:<24} {:>9} {:>9} {:>9} {:>9}   c=4/c=1",
        "", "TTFT c=1", "TTFT c=4", "tok/s c=1", "tok/s c=4"
    );
    row("in-process engine", &inp);
    row("through the router", &thr);
    if llama.is_some() {
        for (threads, figures) in llama_threads.iter().zip(&references) {
            row(&format!("llama.cpp, {threads} thread(s)"), figures);
        }
    }
    let ref_ = references
        .iter()
        .max_by(|a, b| a.tps_c1().total_cmp(&b.tps_c1()))
        .cloned()
        .unwrap_or_default();
    let pass = |ok: bool| if ok { "met" } else { "NOT met" };
    let (t1, t4) = (thr.tps_c1() / inp.tps_c1(), thr.tps_c4() / inp.tps_c4());
    let (f1, f4) = (inp.ttft_c1() / thr.ttft_c1(), inp.ttft_c4() / thr.ttft_c4());
    println!(
        "   router / in-process: tok/s x{t1:.3} (c=1) x{t4:.3} (c=4); speed of first token (in-process TTFT / router TTFT) x{f1:.3} (c=1) x{f4:.3} (c=4); target >= 0.97: {}",
        pass(t1.min(t4).min(f1).min(f4) >= 0.97)
    );
    if llama.is_some() {
        let (l1, l4) = (ref_.tps_c1() / inp.tps_c1(), ref_.tps_c4() / inp.tps_c4());
        let (lf1, lf4) = (
            inp.ttft_c1() / ref_.ttft_c1(),
            inp.ttft_c4() / ref_.ttft_c4(),
        );
        println!(
            "   llama.cpp (the faster) / in-process: tok/s x{l1:.2} (c=1) x{l4:.2} (c=4); TTFT in-process / llama.cpp x{lf1:.2} (c=1) x{lf4:.2} (c=4); target within 2x: {}",
            pass(l1.max(l4).max(lf1).max(lf4) <= 2.0)
        );
    }
    println!();
    Ok(())
}

/// Section 9: prefix affinity against power-of-two-choices with the real model, three CPU
/// workers (mistral.rs keeps a prefix cache of recent sequences on the CPU too). Both policies
/// run on the same workers, through two routers, with prompts that differ between the runs.
async fn affinity_section() -> anyhow::Result<()> {
    let mut cluster = Cluster::with_router(&["--routing", "p2c"]);
    let seed = cluster.seed();
    let affinity = cluster.start_router(&[seed], &["--routing", "prefix-affinity"]);
    for _ in 0..3 {
        cluster.start_worker(seed, WorkerOptions::default());
    }
    cluster.wait_workers(0, 3).await;
    cluster.wait_workers(affinity, 3).await;
    let shape = Shape {
        conversations: 9,
        turns: 4,
        concurrency: 3,
        system_bytes: 1600,
        max_tokens: Some(12),
    };
    println!(
        "9. prefix-affinity routing with the real model: {} conversations of {} turns ({} at once, {} B system prompts, {} tokens per answer) over 3 CPU workers (SmolLM2-135M)",
        shape.conversations,
        shape.turns,
        shape.concurrency,
        shape.system_bytes,
        shape.max_tokens.unwrap_or_default()
    );
    // Warm-up: every worker loads its weights' caches on its first request.
    conversations::run(
        &cluster.router_url(0),
        &cluster.api_key,
        Shape {
            conversations: 3,
            turns: 1,
            ..shape
        },
        "warm",
    )
    .await;
    let mut p2c = Vec::new();
    let mut affine = Vec::new();
    // Two rounds each, alternating, so that a change in the machine's load falls on both.
    for round in 0..2 {
        let tag = format!("p2c{round}");
        p2c.extend(conversations::run(&cluster.router_url(0), &cluster.api_key, shape, &tag).await);
        let tag = format!("affinity{round}");
        affine.extend(
            conversations::run(&cluster.router_url(affinity), &cluster.api_key, shape, &tag).await,
        );
    }
    for (label, turns) in [
        ("power of two choices (baseline)", &p2c),
        ("prefix affinity", &affine),
    ] {
        let failed = turns.iter().filter(|t| t.failed).count();
        println!(
            "   {label}: TTFT p50 {}  p90 {}  (turns after the first: p50 {}  p90 {})  ({failed} failed)",
            ms(conversations::ttft_quantile(turns, 0, 0.5)),
            ms(conversations::ttft_quantile(turns, 0, 0.9)),
            ms(conversations::ttft_quantile(turns, 1, 0.5)),
            ms(conversations::ttft_quantile(turns, 1, 0.9)),
        );
    }
    let ratio = |from: usize, q: f64| {
        conversations::ttft_quantile(&affine, from, q).as_secs_f64()
            / conversations::ttft_quantile(&p2c, from, q).as_secs_f64()
    };
    println!(
        "   ratio prefix-affinity/p2c: TTFT p50 x{:.2}  p90 x{:.2}; turns after the first p50 x{:.2}  p90 x{:.2} (mistral.rs does not report its prefix-cache hits)\n",
        ratio(0, 0.5),
        ratio(0, 0.9),
        ratio(1, 0.5),
        ratio(1, 0.9)
    );
    Ok(())
}

fn http_addr(cluster: &Cluster) -> anyhow::Result<SocketAddr> {
    let url = cluster.router_url(0);
    url.trim_start_matches("http://")
        .parse()
        .with_context(|| format!("router address {url}"))
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn us(d: Duration) -> String {
    format!("{:.0} us", d.as_secs_f64() * 1e6)
}

async fn peers_section() -> anyhow::Result<()> {
    println!(
        "8. router overhead against the peers: the same request over {} keep-alive connections for {} s each (raw HTTP/1.1 load generator), non-streaming, 8 tokens",
        peers::CONNECTIONS,
        peers::DURATION.as_secs()
    );
    let venv = venv();
    let missing = peers::ensure_venv(&venv, &PEERS.map(|(_, package)| package));
    let (mock, mock_addr) = peers::start_mock()?;
    let mut runs: Vec<RouterRun> =
        vec![peers::measure("mock backend alone", mock_addr, "none", None, mock.pid()).await];
    for (name, package) in PEERS {
        if let Some((_, why)) = missing.iter().find(|(p, _)| p == package) {
            println!("   {name}: not measured, {package} could not be installed ({why})");
            continue;
        }
        let port = auxot_tests::free_tcp_port();
        match peers::start_peer(&venv, name, port, mock_addr).await {
            Ok(peer) => {
                let addr = format!("127.0.0.1:{port}").parse()?;
                runs.push(peers::measure(name, addr, "none", Some(peer.pid()), mock.pid()).await);
            }
            Err(e) => println!("   {name}: not measured ({e:#})"),
        }
    }
    drop(mock);
    let mut cluster = Cluster::with_router(&[]);
    let seed = cluster.seed();
    let zero_delay = [
        "--synthetic-ttft-ms",
        "0",
        "--synthetic-tokens-per-sec",
        "0",
        "--synthetic-tokens",
        "8",
        "--max-seqs",
        "256",
    ];
    cluster.start_worker(
        seed,
        WorkerOptions {
            synthetic: true,
            args: zero_delay.map(String::from).to_vec(),
            ..Default::default()
        },
    );
    cluster.wait_workers(0, 1).await;
    let worker_pid = cluster.workers[0].pid().context("worker pid")?;
    runs.push(
        peers::measure(
            "auxot (synthetic worker)",
            http_addr(&cluster)?,
            &cluster.api_key,
            cluster.routers[0].pid(),
            worker_pid,
        )
        .await,
    );
    println!(
        "   {:<26} {:>9} {:>9} {:>9} {:>14} {:>16} {:>15} {:>7}",
        "", "req/s", "p50", "p99", "router CPU/req", "of which kernel", "backend CPU/req", "failed"
    );
    for run in &runs {
        let (router, kernel) = if run.name.starts_with("mock") {
            ("-".to_string(), "-".to_string())
        } else {
            (us(run.cpu_per_request()), us(run.kernel_cpu_per_request()))
        };
        println!(
            "   {:<26} {:>9.0} {:>9} {:>9} {:>14} {:>16} {:>15} {:>7}",
            run.name,
            run.load.rps(),
            ms(run.load.quantile(0.5)),
            ms(run.load.quantile(0.99)),
            router,
            kernel,
            us(run.backend_cpu_per_request()),
            run.load.failed
        );
    }
    let find = |name: &str| runs.iter().find(|r| r.name.starts_with(name));
    if let (Some(auxot), Some(vllm)) = (find("auxot"), find("vllm-router")) {
        let cpu = auxot.cpu_per_request().as_secs_f64() / vllm.cpu_per_request().as_secs_f64();
        let rps = auxot.load.rps() / vllm.load.rps();
        let p99 = auxot.load.quantile(0.99).as_secs_f64() / vllm.load.quantile(0.99).as_secs_f64();
        let pass = |ok: bool| if ok { "met" } else { "NOT met" };
        println!(
            "   auxot / vllm-router: router CPU per request x{cpu:.2} (target <= 0.33: {}), req/s x{rps:.2} (target >= 2: {}), p99 x{p99:.2} (target <= 1: {})",
            pass(cpu <= 0.33),
            pass(rps >= 2.0),
            pass(p99 <= 1.0)
        );
        // What no user-space change can remove: the kernel's share of each request (reading it
        // from TCP, answering it, and its QUIC datagrams), against the whole CPU budget the
        // CPU target leaves.
        let floor =
            auxot.kernel_cpu_per_request().as_secs_f64() / vllm.cpu_per_request().as_secs_f64();
        println!(
            "   auxot's kernel time alone is x{floor:.2} of vllm-router's whole CPU per request (the CPU target allows x0.33 for everything)"
        );
    }
    if let (Some(auxot), Some(sglang)) = (find("auxot"), find("sglang-router")) {
        println!(
            "   auxot / sglang-router: router CPU per request x{:.2}, req/s x{:.2}, p99 x{:.2}",
            auxot.cpu_per_request().as_secs_f64() / sglang.cpu_per_request().as_secs_f64(),
            auxot.load.rps() / sglang.load.rps(),
            auxot.load.quantile(0.99).as_secs_f64() / sglang.load.quantile(0.99).as_secs_f64()
        );
    }
    Ok(())
}
