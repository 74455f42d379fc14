//! Whole-cluster test harness: real `auxot-router` and `auxot-worker` processes, on loopback unless
//! a [`Placement`] puts them elsewhere (another address, a network namespace).
//!
//! A [`Cluster`] owns a temporary data directory and every process it starts; dropping it (also
//! when a test panics) kills them. Ports come from [`ports`], below the kernel's ephemeral range.
#![forbid(unsafe_code)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod conversations;
pub mod fake_worker;
pub mod http_fixture;
pub mod load;
pub mod openapi;
pub mod ports;
pub mod sse;
pub mod tiny_model;

/// Directory of the built binaries: `AUXOT_BIN_DIR`, or the profile directory this executable
/// was built into (a test in `<target>/<profile>/deps/`, a binary in `<target>/<profile>/`).
pub fn bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("AUXOT_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("executable path");
    let dir = exe.parent().expect("executable has a directory");
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.parent().unwrap_or(dir).to_path_buf()
    } else {
        dir.to_path_buf()
    }
}

pub fn bin(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: build with `cargo build --release --workspace` (or `make build`) first",
        path.display()
    );
    path
}

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests crate is inside the workspace")
        .to_path_buf()
}

/// The test model: `AUXOT_TEST_MODEL`, or the GGUF `make model` fetches.
pub fn model_path() -> PathBuf {
    let path = std::env::var("AUXOT_TEST_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace_root().join("models/SmolLM2-135M-Instruct.Q4_1.gguf"));
    assert!(
        path.exists(),
        "test model {} is missing: run `make model` (or ./scripts/fetch-model.sh)",
        path.display()
    );
    path
}

/// The model id the worker derives from the test model's file name.
pub const MODEL_ID: &str = "SmolLM2-135M-Instruct.Q4_1";

/// A port free for TCP (see [`ports`] for why ports are not taken from the kernel).
pub fn free_tcp_port() -> u16 {
    ports::reserve()
}

/// A port free for UDP.
pub fn free_udp_port() -> u16 {
    ports::reserve()
}

/// A port free for both UDP and TCP, as a router's gossip port must be (gossip on UDP,
/// enrollment on TCP), other than `avoid`.
pub fn free_udp_tcp_port(avoid: &[u16]) -> u16 {
    loop {
        let port = ports::reserve();
        if !avoid.contains(&port) {
            return port;
        }
    }
}

/// A running node process.
pub struct Node {
    pub name: String,
    child: Option<Child>,
    pub log: PathBuf,
    /// Gossip address, the seed others can join through.
    pub gossip: SocketAddr,
    /// QUIC address (workers).
    pub quic: Option<SocketAddr>,
    /// HTTP base URL (routers).
    pub url: Option<String>,
}

impl Node {
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends a signal (`TERM`, `KILL`, ...) to the process.
    pub fn signal(&self, signal: &str) {
        if let Some(pid) = self.pid() {
            let _ = Command::new("kill")
                .arg(format!("-{signal}"))
                .arg(pid.to_string())
                .status();
        }
    }

    /// Waits for the process to exit; its exit code, or `None` on timeout.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Some(status.code().unwrap_or(-1));
                }
            } else {
                return Some(0);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The process's peak resident memory (`VmHWM`) in KiB, from `/proc`.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse().ok())
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A cluster's data directory and its nodes.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub api_key: String,
    /// For the admin API (`auxot-router tokens|workers ...`).
    pub admin_key: String,
    /// The token workers join with (written to a file per worker, never on a command line).
    pub join_token: String,
    pub routers: Vec<Node>,
    pub workers: Vec<Node>,
}

/// Extra knobs for a worker.
#[derive(Debug, Clone, Default)]
pub struct WorkerOptions {
    /// Use the synthetic engine instead of the real model.
    pub synthetic: bool,
    /// Serve no model at all (a tools-only worker; pass `--tools` in `args`).
    pub tools_only: bool,
    pub args: Vec<String>,
    pub name: Option<String>,
}

/// Where a node runs. The default is this machine's loopback; a test across network namespaces
/// runs nodes under `ip netns exec NS` bound to the namespace's address.
#[derive(Debug, Clone)]
pub struct Placement {
    /// Program and arguments the node's command line is appended to; empty runs it directly.
    pub prefix: Vec<String>,
    /// IP the node binds its sockets to.
    pub bind: IpAddr,
    /// IP other nodes (and the test) reach it at; given as `--advertise-host` when it is not
    /// `bind`.
    pub host: IpAddr,
}

impl Default for Placement {
    fn default() -> Self {
        Placement::at(Ipv4Addr::LOCALHOST.into())
    }
}

impl Placement {
    /// Binds and is reached at `ip`.
    pub fn at(ip: IpAddr) -> Self {
        Placement {
            prefix: Vec::new(),
            bind: ip,
            host: ip,
        }
    }

    /// Runs the node under `prefix` (e.g. `["ip", "netns", "exec", "ns1"]`).
    pub fn under(mut self, prefix: &[&str]) -> Self {
        self.prefix = prefix.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Binds to `bind` (e.g. `0.0.0.0`) while others still reach it at `host`.
    pub fn binding(mut self, bind: IpAddr) -> Self {
        self.bind = bind;
        self
    }

    fn advertise_args(&self) -> Vec<String> {
        if self.bind == self.host {
            Vec::new()
        } else {
            vec!["--advertise-host".into(), self.host.to_string()]
        }
    }
}

impl Cluster {
    /// Runs `auxot-router setup` in a fresh directory.
    pub fn setup() -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let output = Command::new(bin("auxot-router"))
            .args(["setup", "--json", "--data-dir"])
            .arg(dir.path().join("data"))
            .output()
            .expect("run auxot-router setup");
        assert!(
            output.status.success(),
            "setup failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let out: Value = serde_json::from_slice(&output.stdout).expect("setup --json output");
        Cluster {
            api_key: out["api_key"].as_str().expect("api_key").to_string(),
            admin_key: out["admin_key"].as_str().expect("admin_key").to_string(),
            join_token: out["join_token"].as_str().expect("join_token").to_string(),
            dir,
            routers: Vec::new(),
            workers: Vec::new(),
        }
    }

    /// A new cluster with one router (started with `extra` flags), joined by nobody yet.
    pub fn with_router(extra: &[&str]) -> Cluster {
        let mut cluster = Cluster::setup();
        cluster.start_router(&[], extra);
        cluster
    }

    /// The first router's gossip address, the seed nodes join through.
    pub fn seed(&self) -> SocketAddr {
        self.routers[0].gossip
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Writes the current join token to a private file for worker `name`, as an operator would.
    pub fn token_file(&self, name: &str) -> PathBuf {
        let path = self.dir.path().join(format!("{name}.token"));
        std::fs::write(&path, &self.join_token).expect("token file");
        path
    }

    /// What the routers hold: the CA, the gossip key, the records.
    pub fn authority(&self) -> auxot_router::store::ClusterData {
        auxot_router::store::load(&self.data_dir()).expect("the data directory")
    }

    /// A mesh identity issued by the cluster's CA, as a router would issue it.
    pub fn identity(
        &self,
        node_id: &str,
        role: auxot_common::pki::Role,
    ) -> auxot_common::mesh::identity::MeshIdentity {
        let ca = self.authority().ca;
        let key = auxot_common::pki::NodeKey::generate().expect("key");
        let issued = ca
            .issue_for_key(
                &key.public_key_raw(),
                node_id,
                role,
                Duration::from_secs(3600),
            )
            .expect("issue");
        auxot_common::mesh::identity::MeshIdentity::new(key, issued.chain, ca.root_der().clone())
            .expect("identity")
    }

    /// What a router believes of a gossip snapshot: members whose certificates and signed
    /// adverts check out against this cluster's root.
    pub fn verified(
        &self,
        nodes: &std::collections::BTreeMap<chitchat::ChitchatId, chitchat::NodeState>,
    ) -> auxot_router::membership::View {
        let root = self.authority().ca.root_der().clone();
        let records = std::sync::Arc::new(auxot_router::records::RecordStore::new(None));
        auxot_router::membership::Membership::new(root, records).view(nodes)
    }

    /// Runs `auxot-router ARGS` against router `index`'s admin API with the admin key; its
    /// stdout, or a panic with stderr.
    pub fn admin(&self, index: usize, args: &[&str]) -> String {
        let output = Command::new(bin("auxot-router"))
            .args(args)
            .args(["--router", &self.router_url(index)])
            .env("AUXOT_ADMIN_KEY", &self.admin_key)
            .output()
            .expect("run auxot-router");
        assert!(
            output.status.success(),
            "auxot-router {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn spawn(
        &self,
        name: &str,
        program: &str,
        args: &[String],
        prefix: &[String],
        env: &[(&str, &str)],
    ) -> (Child, PathBuf) {
        let log = self.dir.path().join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let err = file.try_clone().expect("log file");
        let mut command = match prefix.split_first() {
            Some((first, rest)) => {
                let mut command = Command::new(first);
                command.args(rest).arg(bin(program));
                command
            }
            None => Command::new(bin(program)),
        };
        let child = command
            .args(args)
            .env("AUXOT_LOG", "info")
            .env("HF_HOME", self.dir.path().join("hf-home"))
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .spawn()
            .expect("spawn node");
        (child, log)
    }

    /// Starts a router joining through `seeds`; returns its index.
    pub fn start_router(&mut self, seeds: &[SocketAddr], extra: &[&str]) -> usize {
        self.start_router_at(&Placement::default(), seeds, extra)
    }

    /// Starts a router with `AUXOT_*` variables in its environment; returns its index.
    pub fn start_router_with_env(
        &mut self,
        seeds: &[SocketAddr],
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> usize {
        self.start_router_full(&Placement::default(), None, seeds, extra, env)
    }

    /// A copy of the data directory for a router of its own (as each host of a real cluster
    /// has), named `name`.
    pub fn copy_data_dir(&self, name: &str) -> PathBuf {
        let copy = self.dir.path().join(name);
        std::fs::create_dir_all(&copy).expect("data dir copy");
        for entry in std::fs::read_dir(self.data_dir()).expect("data dir") {
            let entry = entry.expect("entry");
            std::fs::copy(entry.path(), copy.join(entry.file_name())).expect("copy");
        }
        copy
    }

    /// Starts a router on the data directory `data` (see [`Self::copy_data_dir`]).
    pub fn start_router_in(&mut self, data: &Path, seeds: &[SocketAddr], extra: &[&str]) -> usize {
        self.start_router_full(&Placement::default(), Some(data), seeds, extra, &[])
    }

    /// Starts a router where `placement` says; returns its index.
    pub fn start_router_at(
        &mut self,
        placement: &Placement,
        seeds: &[SocketAddr],
        extra: &[&str],
    ) -> usize {
        self.start_router_full(placement, None, seeds, extra, &[])
    }

    fn start_router_full(
        &mut self,
        placement: &Placement,
        data: Option<&Path>,
        seeds: &[SocketAddr],
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> usize {
        let name = format!("router{}", self.routers.len());
        let http = free_tcp_port();
        let gossip_port = free_udp_tcp_port(&[http]);
        let gossip = SocketAddr::new(placement.host, gossip_port);
        let mut args: Vec<String> = vec![
            "serve".into(),
            "--data-dir".into(),
            data.map_or_else(|| self.data_dir(), Path::to_path_buf)
                .display()
                .to_string(),
            "--http-addr".into(),
            SocketAddr::new(placement.bind, http).to_string(),
            "--gossip-addr".into(),
            SocketAddr::new(placement.bind, gossip_port).to_string(),
            "--quic-addr".into(),
            SocketAddr::new(placement.bind, 0).to_string(),
            "--name".into(),
            name.clone(),
        ];
        args.extend(placement.advertise_args());
        for seed in seeds {
            args.push("--seed".into());
            args.push(seed.to_string());
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let (child, log) = self.spawn(&name, "auxot-router", &args, &placement.prefix, env);
        self.routers.push(Node {
            name,
            child: Some(child),
            log,
            gossip,
            quic: None,
            url: Some(format!("http://{}", SocketAddr::new(placement.host, http))),
        });
        self.routers.len() - 1
    }

    /// Starts a worker serving the test model (or the synthetic engine) through `seed`.
    pub fn start_worker(&mut self, seed: SocketAddr, options: WorkerOptions) -> usize {
        self.start_worker_at(&Placement::default(), seed, options)
    }

    /// Starts a worker where `placement` says; returns its index.
    pub fn start_worker_at(
        &mut self,
        placement: &Placement,
        seed: SocketAddr,
        options: WorkerOptions,
    ) -> usize {
        let name = options
            .name
            .clone()
            .unwrap_or_else(|| format!("worker{}", self.workers.len()));
        let (gossip_port, quic_port) = (free_udp_port(), free_udp_port());
        let gossip = SocketAddr::new(placement.host, gossip_port);
        let quic = SocketAddr::new(placement.host, quic_port);
        let mut args: Vec<String> = vec![
            "join".into(),
            seed.to_string(),
            "--token-file".into(),
            self.token_file(&name).display().to_string(),
            "--gossip-addr".into(),
            SocketAddr::new(placement.bind, gossip_port).to_string(),
            "--quic-addr".into(),
            SocketAddr::new(placement.bind, quic_port).to_string(),
            "--name".into(),
            name.clone(),
        ];
        args.extend(placement.advertise_args());
        if options.tools_only {
            // Neither a model nor an engine: the worker serves only its `--tools`.
        } else if options.synthetic {
            args.extend(["--engine".into(), "synthetic".into()]);
        } else {
            args.extend([
                "--model".into(),
                model_path().display().to_string(),
                "--cpu".into(),
            ]);
        }
        args.extend(options.args.iter().cloned());
        let (child, log) = self.spawn(&name, "auxot-worker", &args, &placement.prefix, &[]);
        self.workers.push(Node {
            name,
            child: Some(child),
            log,
            gossip,
            quic: Some(quic),
            url: None,
        });
        self.workers.len() - 1
    }

    pub fn router_url(&self, index: usize) -> String {
        self.routers[index].url.clone().expect("router url")
    }

    /// Polls router `index`'s `/health` until `ready` reports true or the timeout passes.
    pub async fn wait_health(
        &self,
        index: usize,
        timeout: Duration,
        ready: impl Fn(&Value) -> bool,
    ) -> Value {
        let client = reqwest::Client::new();
        let url = format!("{}/health", self.router_url(index));
        let deadline = Instant::now() + timeout;
        let mut last = Value::Null;
        while Instant::now() < deadline {
            // With the key, `/health` details the workers; without it, only counts.
            if let Ok(response) = client.get(&url).bearer_auth(&self.api_key).send().await {
                if let Ok(body) = response.json::<Value>().await {
                    if ready(&body) {
                        return body;
                    }
                    last = body;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let logs: String = self
            .routers
            .iter()
            .chain(&self.workers)
            .map(|n| format!("--- {} ---\n{}", n.name, tail(&n.log_text(), 30)))
            .collect();
        panic!("router {index} not ready in {timeout:?}; last health: {last}\n{logs}");
    }

    /// Waits until router `index` routes to `n` workers.
    pub async fn wait_workers(&self, index: usize, n: u64) -> Value {
        self.wait_health(index, Duration::from_secs(60), |h| {
            h["workers"].as_u64() == Some(n)
        })
        .await
    }

    /// Waits until router `index` counts at least one request in flight on `worker`: the moment
    /// to kill or stop it under load (rather than after a guessed sleep).
    pub async fn wait_active(&self, index: usize, worker: &str) -> Value {
        self.wait_health(index, Duration::from_secs(30), |h| {
            h["capacity"].as_array().is_some_and(|ws| {
                ws.iter()
                    .any(|w| w["worker"] == worker && w["active"].as_u64().unwrap_or(0) > 0)
            })
        })
        .await
    }

    /// A request builder with the cluster's API key.
    pub fn post(
        &self,
        client: &reqwest::Client,
        router: usize,
        path: &str,
    ) -> reqwest::RequestBuilder {
        client
            .post(format!("{}{path}", self.router_url(router)))
            .bearer_auth(&self.api_key)
    }

    pub fn get(
        &self,
        client: &reqwest::Client,
        router: usize,
        path: &str,
    ) -> reqwest::RequestBuilder {
        client
            .get(format!("{}{path}", self.router_url(router)))
            .bearer_auth(&self.api_key)
    }
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n") + "\n"
}
