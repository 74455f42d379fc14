//! The HTTP edge under hostile clients: bodies nobody asked for, half-sent headers, idle
//! connections, clients that stop reading a stream, oversized request shapes, and what `/health`
//! tells a stranger. Each test is an attack a client could make; the assertions are what every
//! other client must still see.

use std::time::{Duration, Instant};

use auxot_tests::{Cluster, WorkerOptions};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

fn host_port(url: &str) -> String {
    url.trim_start_matches("http://").to_string()
}

/// Sends `head` and then `body_bytes` zero bytes as fast as the router takes them, ignoring
/// write errors (a router that does not want the body may close the connection); then reads
/// whatever answer comes, for at most `read_for`.
async fn send_raw(addr: String, head: String, body_bytes: usize, read_for: Duration) -> String {
    let Ok(mut stream) = TcpStream::connect(&addr).await else {
        return String::new();
    };
    if stream.write_all(head.as_bytes()).await.is_err() {
        return String::new();
    }
    let chunk = vec![0u8; 1 << 20];
    let mut sent = 0;
    while sent < body_bytes {
        let n = chunk.len().min(body_bytes - sent);
        if stream.write_all(&chunk[..n]).await.is_err() {
            break;
        }
        sent += n;
    }
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(read_for, stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bodies_nobody_reads_do_not_grow_the_routers_memory() {
    let cluster = Cluster::with_router(&[]);
    cluster
        .wait_health(0, Duration::from_secs(30), |h| h["status"] == "ok")
        .await;
    let router = &cluster.routers[0];
    let before = router.peak_rss_kib().expect("router peak RSS");
    let addr = host_port(&cluster.router_url(0));
    const BODY: usize = 60 * 1024 * 1024;
    let mut sends = Vec::new();
    // `/health` needs no key and takes no body; the models list takes a key and no body.
    for _ in 0..4 {
        let head = format!("GET /health HTTP/1.1\r\nhost: x\r\ncontent-length: {BODY}\r\n\r\n");
        sends.push(tokio::spawn(send_raw(
            addr.clone(),
            head,
            BODY,
            Duration::from_secs(20),
        )));
    }
    for _ in 0..2 {
        let head = format!(
            "GET /api/openai/models HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\ncontent-length: {BODY}\r\n\r\n",
            cluster.api_key
        );
        sends.push(tokio::spawn(send_raw(
            addr.clone(),
            head,
            BODY,
            Duration::from_secs(20),
        )));
    }
    for send in sends {
        send.await.expect("sender");
    }
    let after = router.peak_rss_kib().expect("router peak RSS");
    let grown_mib = after.saturating_sub(before) / 1024;
    println!(
        "router peak RSS: {} MiB -> {} MiB",
        before / 1024,
        after / 1024
    );
    assert!(
        grown_mib < 64,
        "6 unread bodies of 60 MiB grew the router's peak memory by {grown_mib} MiB"
    );
    // The router still answers.
    let health = reqwest::get(format!("{}/health", cluster.router_url(0)))
        .await
        .expect("health");
    assert_eq!(health.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_headers_and_silent_connections_are_closed_in_time() {
    let mut cluster = Cluster::setup();
    cluster.start_router_with_env(
        &[],
        &[],
        &[
            ("AUXOT_HEADER_TIMEOUT_SECS", "1"),
            ("AUXOT_IDLE_TIMEOUT_SECS", "2"),
        ],
    );
    cluster
        .wait_health(0, Duration::from_secs(30), |h| h["status"] == "ok")
        .await;
    let addr = host_port(&cluster.router_url(0));

    // Slowloris: half a request header, then nothing.
    let started = Instant::now();
    let mut slow = TcpStream::connect(&addr).await.expect("connect");
    slow.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\nx-slow: ")
        .await
        .expect("write");
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(20), slow.read_to_end(&mut buf)).await;
    let took = started.elapsed();
    println!("half-sent header closed after {took:?}");
    assert!(
        closed.is_ok(),
        "a half-sent header held the connection for 20 s (header timeout 1 s)"
    );
    assert!(took < Duration::from_secs(10), "closed only after {took:?}");

    // A connection that never sends a byte.
    let started = Instant::now();
    let mut silent = TcpStream::connect(&addr).await.expect("connect");
    let closed = tokio::time::timeout(Duration::from_secs(20), silent.read_to_end(&mut buf)).await;
    let took = started.elapsed();
    println!("silent connection closed after {took:?}");
    assert!(closed.is_ok(), "a silent connection stayed open for 20 s");
    assert!(took < Duration::from_secs(10), "closed only after {took:?}");

    // A keep-alive connection is served, then closed when idle.
    let mut kept = TcpStream::connect(&addr).await.expect("connect");
    kept.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("write");
    let mut first = [0u8; 12];
    kept.read_exact(&mut first).await.expect("an answer");
    assert_eq!(&first, b"HTTP/1.1 200");
    let closed = tokio::time::timeout(Duration::from_secs(20), kept.read_to_end(&mut buf)).await;
    assert!(closed.is_ok(), "an idle keep-alive connection stayed open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_reader_that_stops_reading_is_cut_and_its_generation_cancelled() {
    let mut cluster = Cluster::setup();
    cluster.start_router_with_env(&[], &[], &[("AUXOT_WRITE_TIMEOUT_SECS", "2")]);
    let seed = cluster.seed();
    cluster.start_worker(
        seed,
        WorkerOptions {
            synthetic: true,
            args: [
                "--synthetic-tokens",
                "400000",
                "--synthetic-tokens-per-sec",
                "10000",
                "--synthetic-ttft-ms",
                "1",
            ]
            .map(String::from)
            .to_vec(),
            ..Default::default()
        },
    );
    cluster.wait_workers(0, 1).await;
    let addr = host_port(&cluster.router_url(0));
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    // A small receive window, so the router's writes block soon.
    socket.set_recv_buffer_size(4096).expect("rcvbuf");
    let mut reader = socket
        .connect(addr.parse().expect("addr"))
        .await
        .expect("connect");
    let body = json!({"model": "auto", "stream": true, "max_tokens": 400000,
                      "messages": [{"role": "user", "content": "go"}]})
    .to_string();
    let head = format!(
        "POST /api/openai/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        cluster.api_key,
        body.len()
    );
    reader.write_all(head.as_bytes()).await.expect("write");
    cluster
        .wait_health(0, Duration::from_secs(20), |h| h["active_jobs"] == 1)
        .await;
    // Never read again: the router must give up on this client and free the worker.
    let started = Instant::now();
    cluster
        .wait_health(0, Duration::from_secs(30), |h| h["active_jobs"] == 0)
        .await;
    println!("stalled reader cut after {:?}", started.elapsed());
    drop(reader);
}

fn openai_chat(messages: Value) -> Value {
    json!({"model": "auto", "max_tokens": 4, "messages": messages})
}

fn user(text: &str) -> Value {
    json!({"role": "user", "content": text})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_request_shapes_are_refused_naming_the_limit() {
    let mut cluster = Cluster::with_router(&[]);
    let seed = cluster.seed();
    cluster.start_worker(
        seed,
        WorkerOptions {
            synthetic: true,
            ..Default::default()
        },
    );
    cluster.wait_workers(0, 1).await;
    let client = reqwest::Client::new();
    let many = |n: usize, item: Value| Value::Array(vec![item; n]);
    let deep = (0..100).fold(
        json!({"type": "string"}),
        |inner, _| json!({"type": "object", "properties": {"x": inner}}),
    );
    let image = json!({"type": "image_url", "image_url": {"url": "data:image/png;base64,AAEC"}});
    let block_image = json!({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAEC"}});
    let openai_tool =
        json!({"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}});
    let anthropic = |extra: Value| {
        let mut body = json!({"model": "auto", "max_tokens": 4, "messages": [user("hi")]});
        for (k, v) in extra.as_object().expect("object") {
            body[k] = v.clone();
        }
        body
    };
    let openai = |extra: Value| {
        let mut body = openai_chat(json!([user("hi")]));
        for (k, v) in extra.as_object().expect("object") {
            body[k] = v.clone();
        }
        body
    };
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "/api/openai/chat/completions",
            openai_chat(many(5000, user("hi"))),
            "messages",
        ),
        (
            "/api/openai/chat/completions",
            openai_chat(
                json!([{"role": "user", "content": many(5000, json!({"type": "text", "text": "a"}))}]),
            ),
            "content",
        ),
        (
            "/api/openai/chat/completions",
            openai(json!({"tools": many(1000, openai_tool)})),
            "tools",
        ),
        (
            "/api/openai/chat/completions",
            openai(json!({"stop": ["x".repeat(10_000)]})),
            "stop",
        ),
        (
            "/api/openai/chat/completions",
            openai_chat(json!([{"role": "user", "content": many(100, image)}])),
            "images",
        ),
        (
            "/api/openai/chat/completions",
            openai(
                json!({"tools": [{"type": "function", "function": {"name": "f", "parameters": deep.clone()}}]}),
            ),
            "depth",
        ),
        (
            "/api/anthropic/v1/messages",
            anthropic(json!({"stop_sequences": many(1000, json!("x"))})),
            "stop_sequences",
        ),
        (
            "/api/anthropic/v1/messages",
            anthropic(json!({"messages": many(5000, user("hi"))})),
            "messages",
        ),
        (
            "/api/anthropic/v1/messages",
            anthropic(
                json!({"tools": many(1000, json!({"name": "f", "input_schema": {"type": "object"}}))}),
            ),
            "tools",
        ),
        (
            "/api/anthropic/v1/messages",
            anthropic(json!({"messages": [{"role": "user", "content": many(100, block_image)}]})),
            "images",
        ),
        (
            "/api/anthropic/v1/messages",
            anthropic(json!({"tools": [{"name": "f", "input_schema": deep}]})),
            "depth",
        ),
        (
            "/api/anthropic/v1/messages/count_tokens",
            json!({"model": "auto", "messages": many(5000, user("hi"))}),
            "messages",
        ),
    ];
    for (path, body, limit) in cases {
        let response = cluster
            .post(&client, 0, path)
            .json(&body)
            .send()
            .await
            .expect("request");
        let status = response.status();
        let answer: Value = response.json().await.expect("json");
        assert_eq!(status, 400, "{path} over the {limit} limit: {answer}");
        let (kind, message) = if path.contains("anthropic") {
            assert_eq!(answer["type"], "error", "{answer}");
            (&answer["error"]["type"], &answer["error"]["message"])
        } else {
            (&answer["error"]["type"], &answer["error"]["message"])
        };
        assert_eq!(kind, "invalid_request_error", "{answer}");
        let message = message.as_str().expect("message");
        assert!(
            message.contains(limit) && message.contains("limit"),
            "{path}: the message should name the {limit} limit: {message}"
        );
    }

    // A body over the chat routes' size limit is refused before it is parsed.
    let huge = openai_chat(json!([user(&"a".repeat(20 * 1024 * 1024))]));
    let response = cluster
        .post(&client, 0, "/api/openai/chat/completions")
        .json(&huge)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 413);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_tells_strangers_only_counts() {
    let mut cluster = Cluster::with_router(&[]);
    let seed = cluster.seed();
    cluster.start_worker(
        seed,
        WorkerOptions {
            synthetic: true,
            ..Default::default()
        },
    );
    let detailed = cluster.wait_workers(0, 1).await;
    assert!(detailed["capacity"].is_array(), "{detailed}");
    let client = reqwest::Client::new();
    let url = format!("{}/health", cluster.router_url(0));
    let anonymous = client.get(&url).send().await.expect("health");
    assert_eq!(anonymous.status(), 200);
    let anonymous: Value = anonymous.json().await.expect("json");
    assert_eq!(anonymous["status"], "ok");
    assert_eq!(anonymous["workers"], 1);
    for private in ["router", "capacity", "models", "gossip", "version"] {
        assert!(
            anonymous.get(private).is_none(),
            "`{private}` needs a key: {anonymous}"
        );
    }
    let text = anonymous.to_string();
    assert!(
        !text.contains("worker0") && !text.contains("router0"),
        "{text}"
    );
    let key = &cluster.api_key;
    let last = if key.ends_with('A') { 'B' } else { 'A' };
    let forged = client
        .get(&url)
        .bearer_auth(format!("{}{last}", &key[..key.len() - 1]))
        .send()
        .await
        .expect("health");
    assert_eq!(forged.status(), 401);
}
