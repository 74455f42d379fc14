//! The Tools API against live tools workers, and the server-side tool loop with the real model.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use auxot_tests::http_fixture::{self, Canned};
use auxot_tests::{bin_dir, Cluster, WorkerOptions};
use serde_json::{json, Value};

const PAGE: &str = "<html><head><title>Fixture</title></head><body><h1>Auxot fixture page</h1><p>The secret word is <b>pumpkin</b>.</p></body></html>";

async fn fixtures() -> SocketAddr {
    let searx = json!({"results": [
        {"title": "Rust", "url": "https://www.rust-lang.org/", "content": "A language empowering everyone."},
        {"title": "Tokio", "url": "https://tokio.rs/", "content": "An asynchronous runtime."}
    ]});
    http_fixture::serve(HashMap::from([
        ("/page", Canned::ok("text/html; charset=utf-8", PAGE)),
        ("/search", Canned::ok("application/json", searx.to_string())),
    ]))
    .await
}

/// A tools configuration with every kind of tool; `marker` is where slow calls record who ran.
fn tools_config(
    dir: &Path,
    fixture: SocketAddr,
    name: &str,
    permissive: bool,
) -> std::path::PathBuf {
    let marker = dir.join("slow-calls.log");
    let search = if permissive {
        format!("[web_search]\nbackend = \"searxng\"\nurl = \"http://{fixture}\"\n\n[web_fetch]\nallow_private = true\n\n")
    } else {
        String::new()
    };
    let config = format!(
        r#"{search}[[command]]
name = "word_count"
description = "Counts the words of a text."
parameters = {{ type = "object", properties = {{ text = {{ type = "string" }} }}, required = ["text"] }}
program = "sh"
args = ["-c", "python3 -c 'import json,sys; t=json.load(sys.stdin)[\"text\"]; print(json.dumps({{\"words\": len(t.split())}}))'"]

[[command]]
name = "slow_echo"
description = "Echoes its input after three seconds."
parameters = {{ type = "object", properties = {{ text = {{ type = "string" }} }} }}
program = "sh"
args = ["-c", "echo {name} >> {marker}; sleep 3; cat"]

[[command]]
name = "record_city"
description = "Records the city the user asked about."
parameters = {{ type = "object", properties = {{ city = {{ type = "string" }} }}, required = ["city"] }}
program = "sh"
args = ["-c", "cat >> {cities}; echo >> {cities}; echo '{{\"recorded\": true}}'"]

[[mcp]]
name = "test"
command = "{mcp}"
"#,
        marker = marker.display(),
        cities = dir.join("cities.log").display(),
        mcp = bin_dir().join("auxot-test-mcp").display(),
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, config).expect("write tools config");
    path
}

fn tools_worker(config: &Path, name: &str) -> WorkerOptions {
    WorkerOptions {
        tools_only: true,
        name: Some(name.into()),
        args: vec!["--tools".into(), config.display().to_string()],
        ..Default::default()
    }
}

async fn execute(cluster: &Cluster, client: &reqwest::Client, body: Value) -> (u16, Value) {
    let response = cluster
        .post(client, 0, "/api/tools/v1/execute")
        .json(&body)
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.expect("json"))
}

async fn wait_tools_workers(cluster: &Cluster, n: u64) {
    cluster
        .wait_health(0, Duration::from_secs(60), |h| {
            h["tools_workers"].as_u64() == Some(n)
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_api_against_live_tools_workers() {
    let fixture = fixtures().await;
    let mut cluster = Cluster::with_router(&[]);
    let seed = cluster.seed();
    cluster
        .wait_health(0, Duration::from_secs(30), |h| h["status"] == "ok")
        .await;
    let client = reqwest::Client::new();

    // No tools worker yet: list is empty, execute is 503.
    let list: Value = cluster
        .get(&client, 0, "/api/tools/v1/list")
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert_eq!(list["tools"], json!([]));
    let (status, body) = execute(
        &cluster,
        &client,
        json!({"tool": "web_fetch", "input": {"url": "http://example.com"}}),
    )
    .await;
    assert_eq!(status, 503, "{body}");

    let config_a = tools_config(cluster.dir.path(), fixture, "tools-a", true);
    let config_b = tools_config(cluster.dir.path(), fixture, "tools-b", true);
    cluster.start_worker(seed, tools_worker(&config_a, "tools-a"));
    cluster.start_worker(seed, tools_worker(&config_b, "tools-b"));
    wait_tools_workers(&cluster, 2).await;

    let list: Value = cluster
        .get(&client, 0, "/api/tools/v1/list")
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    let names: Vec<&str> = list["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    for expected in [
        "web_fetch",
        "web_search",
        "word_count",
        "slow_echo",
        "echo",
        "add",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    assert!(list["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .all(|t| t["available"] == true && t["parameters"].is_object()));

    // web_fetch of a page served on loopback (allowed by this config) comes back as Markdown.
    let (status, body) = execute(
        &cluster,
        &client,
        json!({"tool": "web_fetch", "input": {"url": format!("http://{fixture}/page")}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["tool"], "web_fetch");
    let content = body["result"]["content"].as_str().expect("content");
    assert!(
        content.contains("# Auxot fixture page") && content.contains("**pumpkin**"),
        "{content}"
    );

    // web_search through the fake SearxNG.
    let (status, body) = execute(
        &cluster,
        &client,
        json!({"tool": "web_search", "input": {"query": "rust async"}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["results"][1]["title"], "Tokio");

    // A command tool, with `arguments` in place of `input`.
    let (status, body) = execute(
        &cluster,
        &client,
        json!({"tool": "word_count", "arguments": {"text": "one two three"}}),
    )
    .await;
    assert_eq!(
        (status, body["result"]["words"].clone()),
        (200, json!(3)),
        "{body}"
    );

    // MCP tools over stdio.
    let (status, body) = execute(
        &cluster,
        &client,
        json!({"tool": "add", "input": {"a": 2, "b": 40}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["result"].to_string().contains("42"), "{body}");

    // Schema validation before any worker runs anything.
    let (status, body) = execute(
        &cluster,
        &client,
        json!({"tool": "word_count", "input": {"text": 5}}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .expect("message")
            .contains("/text"),
        "{body}"
    );
    let (status, _) = execute(
        &cluster,
        &client,
        json!({"tool": "no_such_tool", "input": {}}),
    )
    .await;
    assert_eq!(status, 404);
    let (status, body) = execute(&cluster, &client, json!({"input": {}})).await;
    assert_eq!(status, 400, "{body}");

    // A tool that fails upstream says so, with the tool's name.
    let (status, body) = execute(&cluster, &client, json!({"tool": "fail", "input": {}})).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["tool"], "fail");
    assert!(body["error"]["message"].is_string());

    // A tools worker killed mid-call: the call is retried on the other one.
    let marker = cluster.dir.path().join("slow-calls.log");
    let call = tokio::spawn({
        let request = cluster
            .post(&client, 0, "/api/tools/v1/execute")
            .json(&json!({"tool": "slow_echo", "input": {"text": "still here"}}));
        async move {
            let response = request.send().await.expect("request");
            (
                response.status().as_u16(),
                response.json::<Value>().await.expect("json"),
            )
        }
    });
    let first = loop {
        if let Ok(text) = std::fs::read_to_string(&marker) {
            if let Some(line) = text.lines().next() {
                break line.trim().to_string();
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let victim = cluster
        .workers
        .iter()
        .position(|w| w.name == first)
        .expect("worker that took the call");
    cluster.workers[victim].signal("KILL");
    let (status, body) = call.await.expect("call");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["text"], "still here");
    let runs = std::fs::read_to_string(&marker).expect("marker");
    assert_eq!(
        runs.lines().count(),
        2,
        "the call should have run once on each worker: {runs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_config_refuses_private_addresses_and_reports_unconfigured_search() {
    let fixture = fixtures().await;
    let mut cluster = Cluster::with_router(&[]);
    let seed = cluster.seed();
    let config = tools_config(cluster.dir.path(), fixture, "strict", false);
    cluster.start_worker(seed, tools_worker(&config, "strict"));
    wait_tools_workers(&cluster, 1).await;
    let client = reqwest::Client::new();

    let (status, body) = execute(
        &cluster,
        &client,
        json!({"tool": "web_fetch", "input": {"url": format!("http://{fixture}/page")}}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .expect("message")
            .contains("loopback"),
        "{body}"
    );

    let list: Value = cluster
        .get(&client, 0, "/api/tools/v1/list")
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    let search = list["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .find(|t| t["name"] == "web_search")
        .expect("web_search listed");
    assert_eq!(search["available"], false);
    let (status, body) = execute(
        &cluster,
        &client,
        json!({"tool": "web_search", "input": {"query": "x"}}),
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .expect("message")
            .contains("not configured"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_router_runs_mesh_tools_for_the_model() {
    let fixture = fixtures().await;
    let mut cluster = Cluster::with_router(&[]);
    let seed = cluster.seed();
    let config = tools_config(cluster.dir.path(), fixture, "tools", false);
    cluster.start_worker(seed, tools_worker(&config, "tools"));
    cluster.start_worker(seed, WorkerOptions::default());
    wait_tools_workers(&cluster, 1).await;
    cluster.wait_workers(0, 1).await;
    let client = reqwest::Client::new();
    let cities = cluster.dir.path().join("cities.log");

    let body: Value = cluster
        .post(&client, 0, "/api/openai/chat/completions")
        .json(&json!({
            "model": "auto",
            "messages": [{"role": "user", "content": "I am travelling to Paris. Record the city, then wish me a good trip."}],
            "auxot_mesh_tools": ["record_city"],
            "tool_choice": {"type": "function", "function": {"name": "record_city"}},
            "temperature": 0,
            "max_tokens": 40,
        }))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    let recorded = std::fs::read_to_string(&cities).expect("the router ran record_city");
    let call: Value = serde_json::from_str(recorded.lines().next().expect("one call"))
        .expect("arguments are JSON");
    assert!(call["city"].is_string(), "{call}");
    let choice = &body["choices"][0];
    assert!(
        choice["message"].get("tool_calls").is_none(),
        "the mesh call must not reach the caller: {body}"
    );
    assert_ne!(choice["finish_reason"], "tool_calls", "{body}");
    assert!(body["usage"]["prompt_tokens"].as_u64().expect("usage") > 0);

    // Streaming shows the answer of the second round as it comes.
    let response = cluster
        .post(&client, 0, "/api/anthropic/v1/messages")
        .json(&json!({
            "model": "auto",
            "max_tokens": 30,
            "stream": true,
            "auxot_mesh_tools": true,
            "tool_choice": {"type": "tool", "name": "record_city"},
            "messages": [{"role": "user", "content": "Berlin is next. Record it."}],
        }))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    let events = auxot_tests::sse::parse(&response.text().await.expect("body")).expect("sse");
    let names: Vec<&str> = events.iter().filter_map(|e| e.event.as_deref()).collect();
    assert_eq!(names.first(), Some(&"message_start"));
    assert_eq!(names.last(), Some(&"message_stop"));
    assert!(
        !events.iter().any(|e| e.data.contains("tool_use")),
        "mesh calls stay inside the router: {names:?}"
    );
    assert_eq!(
        std::fs::read_to_string(&cities)
            .expect("cities")
            .lines()
            .count(),
        2
    );
}
