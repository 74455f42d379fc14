//! Clusters in this test process: routers and workers started through their libraries on
//! sockets bound to `127.0.0.1:0` and handed over, so no port is ever released and re-bound.
//!
//! Use it for behaviour that needs no separate process (routing, dialects, admission, shapes);
//! keep process clusters (`auxot_tests::Cluster`) for what needs one: SIGKILL, signals and
//! drain, network namespaces, command-line flags.
//!
//! It lives beside the tests rather than in the `auxot_tests` library so that only the test
//! binaries that include it link the worker library and mistral.rs.

// Each test binary that includes this module uses part of it.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use auxot_router::{Listeners as RouterListeners, RouterHandle};
use auxot_worker::{EngineKind, Listeners as WorkerListeners, WorkerConfig, WorkerHandle};
use serde_json::Value;

/// How to start one in-process worker.
#[derive(Debug, Clone)]
pub struct InProcessWorker {
    pub name: String,
    /// The synthetic engine (fast, no model) or the real test model on the CPU.
    pub synthetic: bool,
    pub max_seqs: Option<usize>,
    pub synthetic_tokens: u32,
    pub synthetic_ttft: Duration,
}

impl InProcessWorker {
    pub fn synthetic(name: &str) -> Self {
        InProcessWorker {
            name: name.to_string(),
            synthetic: true,
            max_seqs: None,
            synthetic_tokens: 8,
            synthetic_ttft: Duration::from_millis(5),
        }
    }

    pub fn real_model(name: &str) -> Self {
        InProcessWorker {
            synthetic: false,
            ..Self::synthetic(name)
        }
    }
}

/// A cluster of in-process nodes; dropping it stops them (their tasks end with the runtime).
pub struct InProcessCluster {
    pub dir: tempfile::TempDir,
    pub api_key: String,
    pub admin_key: String,
    pub join_token: String,
    pub routers: Vec<RouterHandle>,
    pub workers: Vec<WorkerHandle>,
}

impl InProcessCluster {
    /// `routers` routers (each joining through the first) and `workers`, all ready to route:
    /// returns once every router sees every worker.
    pub async fn create(routers: usize, workers: &[InProcessWorker]) -> InProcessCluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        let out = auxot_router::store::setup(&data, "test", None).expect("setup");
        let mut cluster = InProcessCluster {
            dir,
            api_key: out.api_key.expect("api key"),
            admin_key: out.admin_key,
            join_token: out.join_token,
            routers: Vec::new(),
            workers: Vec::new(),
        };
        for i in 0..routers {
            cluster.start_router(&format!("router{i}")).await;
        }
        for worker in workers {
            cluster.start_worker(worker).await;
        }
        for i in 0..cluster.routers.len() {
            cluster.wait_workers(i, cluster.workers.len()).await;
        }
        cluster
    }

    fn data_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }

    /// The first router's gossip address.
    pub fn seed(&self) -> String {
        self.routers[0].gossip_addr().to_string()
    }

    pub async fn start_router(&mut self, name: &str) {
        let data = self.data_dir().display().to_string();
        let mut args = vec!["auxot-router", "serve", "--data-dir", &data, "--name", name]
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>();
        if !self.routers.is_empty() {
            args.extend(["--seed".to_string(), self.seed()]);
        }
        let cli = <auxot_router::cli::Cli as clap::Parser>::try_parse_from(args).expect("args");
        let auxot_router::cli::Command::Serve(serve) = cli.command else {
            unreachable!("serve args")
        };
        let any = "127.0.0.1:0".parse().expect("addr");
        let listeners = RouterListeners::bind(any, any, any).expect("bind");
        let router = auxot_router::start(&serve, listeners)
            .await
            .expect("router");
        self.routers.push(router);
    }

    pub async fn start_worker(&mut self, spec: &InProcessWorker) {
        let mut config = WorkerConfig::new(vec![self.seed()], self.join_token.clone());
        config.node_name = Some(spec.name.clone());
        config.max_seqs = spec.max_seqs;
        if spec.synthetic {
            config.engine = EngineKind::Synthetic;
            config.synthetic_tokens = spec.synthetic_tokens;
            config.synthetic_ttft = spec.synthetic_ttft;
        } else {
            config.model = Some(auxot_tests::model_path().display().to_string());
            config.cpu = true;
        }
        let listeners = WorkerListeners::localhost().expect("bind");
        let worker = auxot_worker::start(config, listeners)
            .await
            .expect("worker");
        worker.ready().await.expect("worker ready");
        self.workers.push(worker);
    }

    pub fn router_url(&self, index: usize) -> String {
        format!("http://{}", self.routers[index].http_addr())
    }

    /// Router `index`'s `/health`.
    pub async fn health(&self, index: usize) -> Value {
        reqwest::Client::new()
            .get(format!("{}/health", self.router_url(index)))
            .bearer_auth(&self.api_key)
            .send()
            .await
            .expect("health")
            .json()
            .await
            .expect("json")
    }

    /// Waits until router `index` routes to `n` model workers.
    pub async fn wait_workers(&self, index: usize, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let health = self.health(index).await;
            if health["workers"].as_u64() == Some(n as u64) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "router {index} does not see {n} workers: {health}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

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
