//! The official `openai`, `anthropic` and `mcp` Python packages against a live cluster with the
//! real model and a tools worker. `make test` installs them into `.venv`; the Python tests live
//! in `tests/clients/`.
//!
//! The tools worker serves the test MCP server's tools over stdio and a Python MCP server's
//! (built with the official `mcp` package) over streamable HTTP, so the MCP client test covers
//! both of the worker's MCP transports as well as the router's `/mcp` endpoint. The tools worker
//! also serves a tiny embedding model, for the `openai` package's embeddings.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use auxot_tests::{
    bin_dir, free_tcp_port, tiny_model, workspace_root, Cluster, WorkerOptions, MODEL_ID,
};

/// The embedding model the tools worker also serves (written by the test, no download).
const EMBEDDING_MODEL: &str = "tiny-embed";

fn python() -> PathBuf {
    let python = std::env::var("AUXOT_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace_root().join(".venv/bin/python"));
    assert!(
        python.exists(),
        "{} is missing: `make test` creates it with the client packages (make venv)",
        python.display()
    );
    python
}

/// The Python MCP server, killed when dropped.
struct McpHttpServer(Child);

impl Drop for McpHttpServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `tests/clients/mcp_http_server.py` and waits until it accepts connections.
fn mcp_http_server(python: &PathBuf, port: u16) -> McpHttpServer {
    let child = Command::new(python)
        .arg(workspace_root().join("tests/clients/mcp_http_server.py"))
        .arg(port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the Python MCP server");
    let server = McpHttpServer(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the Python MCP server did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_client_libraries() {
    let python = python();
    let mcp_port = free_tcp_port();
    let _mcp_server = mcp_http_server(&python, mcp_port);
    let mut cluster = Cluster::with_router(&[]);
    let seed = cluster.seed();
    cluster.start_worker(seed, WorkerOptions::default());
    let tools = cluster.dir.path().join("tools.toml");
    std::fs::write(
        &tools,
        format!(
            "[[mcp]]\nname = \"stdio\"\ncommand = \"{}\"\n\n[[mcp]]\nname = \"http\"\nurl = \"http://127.0.0.1:{mcp_port}/mcp\"\n",
            bin_dir().join("auxot-test-mcp").display()
        ),
    )
    .expect("write tools config");
    let embedding_model = cluster.dir.path().join(EMBEDDING_MODEL);
    tiny_model::write_embedding_model(&embedding_model);
    cluster.start_worker(
        seed,
        WorkerOptions {
            tools_only: true,
            name: Some("tools".into()),
            args: vec![
                "--tools".into(),
                tools.display().to_string(),
                "--cpu".into(),
                "--model".into(),
                embedding_model.display().to_string(),
            ],
            ..Default::default()
        },
    );
    cluster.wait_workers(0, 1).await;
    cluster
        .wait_health(0, Duration::from_secs(60), |h| {
            h["tools_workers"].as_u64() == Some(1)
                && h["models"]
                    .as_array()
                    .is_some_and(|m| m.iter().any(|id| id == EMBEDDING_MODEL))
        })
        .await;

    let output = tokio::task::spawn_blocking({
        let url = cluster.router_url(0);
        let key = cluster.api_key.clone();
        move || {
            Command::new(python)
                .args([
                    "-m",
                    "pytest",
                    "-q",
                    "-p",
                    "no:cacheprovider",
                    "tests/clients",
                ])
                .current_dir(workspace_root())
                .env("AUXOT_BASE_URL", url)
                .env("AUXOT_API_KEY", key)
                .env("AUXOT_MODEL", MODEL_ID)
                .env("AUXOT_EMBEDDING_MODEL", EMBEDDING_MODEL)
                .output()
                .expect("run pytest")
        }
    })
    .await
    .expect("pytest task");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}\n{stderr}");
    assert!(
        output.status.success(),
        "client library tests failed:\n{stdout}\n{stderr}"
    );
}
