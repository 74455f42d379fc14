//! The official `openai` and `anthropic` Python packages against a live cluster with the real
//! model. `make test` installs them into `.venv`; the Python tests live in `tests/clients/`.

use std::path::PathBuf;
use std::process::Command;

use auxot_tests::{workspace_root, Cluster, WorkerOptions, MODEL_ID};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_client_libraries() {
    let python = python();
    let mut cluster = Cluster::with_router(&[]);
    let seed = cluster.seed();
    cluster.start_worker(seed, WorkerOptions::default());
    cluster.wait_workers(0, 1).await;

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
