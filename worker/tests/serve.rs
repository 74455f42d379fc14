//! The worker library seen from outside, as a router sees it: a synthetic worker started with
//! `auxot_worker::start` on loopback sockets, asked over QUIC, watched through gossip, drained.

use std::net::SocketAddr;
use std::time::Duration;

use auxot_common::chat::{
    ChatEvent, ChatRequest, FinishReason, Message, Part, Role, Usage, AUTO_MODEL,
};
use auxot_common::error::ErrorKind;
use auxot_common::mesh::gossip::{workers_in, Gossip, GossipConfig, DEFAULT_GOSSIP_INTERVAL};
use auxot_common::mesh::node::{router_key_values, Readiness};
use auxot_common::mesh::quic::QuicEndpoint;
use auxot_common::mesh::tls::NodeIdentity;
use auxot_common::secret::ClusterSecret;
use auxot_common::tools::ToolCallRequest;
use auxot_common::wire::{read_frame, write_frame, WireReply, WireRequest};
use auxot_worker::{start, EngineKind, Listeners, WorkerConfig, WorkerHandle};

/// A cluster secret and a synthetic worker in it, on loopback.
async fn synthetic_worker(tokens: u32, tokens_per_sec: f64) -> (ClusterSecret, WorkerHandle) {
    let secret = ClusterSecret::generate().expect("secret");
    let config = WorkerConfig {
        engine: EngineKind::Synthetic,
        synthetic_ttft: Duration::from_millis(1),
        synthetic_tokens_per_sec: tokens_per_sec,
        synthetic_tokens: tokens,
        max_seqs: Some(4),
        ..WorkerConfig::new(Vec::new(), secret.join_token())
    };
    let listeners = Listeners::localhost().expect("sockets");
    let worker = start(config, listeners).await.expect("starts");
    (secret, worker)
}

/// Where a router reaches a worker.
#[derive(Clone)]
struct Target {
    node: String,
    addr: SocketAddr,
}

impl Target {
    fn of(worker: &WorkerHandle) -> Self {
        Target {
            node: worker.node_id().to_string(),
            addr: worker.quic_addr(),
        }
    }
}

/// A router's side of one request: every reply frame until the worker finishes the stream.
async fn ask(secret: &ClusterSecret, target: &Target, request: WireRequest) -> Vec<WireReply> {
    let identity = NodeIdentity::issue(secret, "router-test").expect("identity");
    let endpoint = QuicEndpoint::bind(&identity, SocketAddr::from(([127, 0, 0, 1], 0)), false)
        .expect("client endpoint");
    let conn = endpoint
        .connect(&target.node, target.addr)
        .await
        .expect("connects");
    let (mut send, mut recv) = conn.open_bi().await.expect("stream");
    write_frame(&mut send, &request)
        .await
        .expect("request sent");
    let mut replies = Vec::new();
    while let Some(reply) = read_frame::<_, WireReply>(&mut recv).await.expect("frame") {
        replies.push(reply);
    }
    replies
}

fn chat(model: &str) -> ChatRequest {
    ChatRequest {
        model: model.into(),
        messages: vec![Message::text(Role::User, "Say three words")],
        ..Default::default()
    }
}

fn error_kind(replies: &[WireReply]) -> Option<ErrorKind> {
    match replies {
        [WireReply::Error(error)] => Some(error.kind),
        _ => None,
    }
}

#[tokio::test]
async fn a_chat_is_accepted_then_streamed() {
    let (secret, worker) = synthetic_worker(3, 1000.0).await;
    let target = Target::of(&worker);
    assert!(
        worker.node_id().starts_with("worker-")
            && worker
                .node_id()
                .ends_with(&format!("-{}", worker.quic_addr().port())),
        "the default node id names the QUIC port: {}",
        worker.node_id()
    );
    worker.ready().await.expect("ready");
    let replies = ask(&secret, &target, WireRequest::Chat(chat(AUTO_MODEL))).await;
    let text = |t: &str| WireReply::Event(ChatEvent::Text { text: t.into() });
    assert_eq!(
        replies,
        vec![
            WireReply::Accepted {
                worker: worker.node_id().to_string(),
                model: "synthetic".into()
            },
            text("tok0 "),
            text("tok1 "),
            text("tok2 "),
            WireReply::Event(ChatEvent::Usage(Usage {
                prompt_tokens: 3,
                completion_tokens: 3
            })),
            WireReply::Event(ChatEvent::Finish {
                reason: FinishReason::Stop,
                stop_sequence: None
            }),
        ]
    );
    assert_eq!(worker.in_flight(), 0);

    let mut first = chat("synthetic");
    first.prompt_tokens_first = true;
    let replies = ask(&secret, &target, WireRequest::Chat(first)).await;
    assert_eq!(
        replies.get(1),
        Some(&WireReply::Event(ChatEvent::PromptTokens { tokens: 3 })),
        "{replies:?}"
    );
    worker.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn requests_it_cannot_serve_are_refused_before_any_work() {
    let (secret, worker) = synthetic_worker(3, 1000.0).await;
    let target = Target::of(&worker);
    worker.ready().await.expect("ready");
    let other_model = ask(&secret, &target, WireRequest::Chat(chat("gpt-4"))).await;
    assert_eq!(error_kind(&other_model), Some(ErrorKind::NotFound));

    let mut by_url = chat(AUTO_MODEL);
    by_url.messages[0].content.push(Part::ImageUrl {
        url: "http://127.0.0.1:9/cat.png".into(),
    });
    for request in [
        WireRequest::Chat(by_url.clone()),
        WireRequest::CountTokens(by_url),
    ] {
        let replies = ask(&secret, &target, request).await;
        let [WireReply::Error(error)] = replies.as_slice() else {
            panic!("one error expected, got {replies:?}");
        };
        assert_eq!(error.kind, ErrorKind::InvalidRequest);
        assert!(
            error
                .message
                .contains("image given by URL reached the worker; the router fetches those"),
            "{}",
            error.message
        );
    }
    let no_tools = ask(
        &secret,
        &target,
        WireRequest::ExecuteTool(ToolCallRequest {
            tool: "web_fetch".into(),
            input: serde_json::json!({}),
            request_id: None,
        }),
    )
    .await;
    assert_eq!(error_kind(&no_tools), Some(ErrorKind::NotFound));
    worker.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_failed_load_is_reported_by_ready() {
    let secret = ClusterSecret::generate().expect("secret");
    let config = WorkerConfig {
        model: Some("/nonexistent/model.gguf".into()),
        ..WorkerConfig::new(Vec::new(), secret.join_token())
    };
    let worker = start(config, Listeners::localhost().expect("sockets"))
        .await
        .expect("starts: the model is looked for in the background");
    let err = worker.ready().await.expect_err("no such model");
    assert!(err.to_string().contains("not an existing file"), "{err}");
    worker.shutdown(Duration::ZERO).await;
}

#[tokio::test]
async fn a_bad_token_or_configuration_fails_start() {
    let listeners = Listeners::localhost().expect("sockets");
    let err = start(WorkerConfig::new(Vec::new(), "not a token"), listeners)
        .await
        .err()
        .expect("refused");
    assert!(
        format!("{err:#}").starts_with("invalid join token"),
        "{err:#}"
    );
    let secret = ClusterSecret::generate().expect("secret");
    let listeners = Listeners::localhost().expect("sockets");
    let err = start(
        WorkerConfig::new(Vec::new(), secret.join_token()),
        listeners,
    )
    .await
    .err()
    .expect("refused");
    assert!(err.to_string().contains("give --model"), "{err}");
}

#[tokio::test]
async fn draining_finishes_what_is_in_flight_and_refuses_the_rest() {
    // 20 tokens at 20 a second: about a second of generation.
    let (secret, worker) = synthetic_worker(20, 20.0).await;
    let target = Target::of(&worker);
    worker.ready().await.expect("ready");
    let long = tokio::spawn({
        let (secret, target) = (secret.clone(), target.clone());
        async move { ask(&secret, &target, WireRequest::Chat(chat(AUTO_MODEL))).await }
    });
    tokio::time::timeout(Duration::from_secs(5), async {
        while worker.in_flight() == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the request is in flight");
    let shutdown = tokio::spawn(worker.shutdown(Duration::from_secs(10)));
    // Shutdown starts by refusing new requests.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let refused = ask(&secret, &target, WireRequest::Chat(chat(AUTO_MODEL))).await;
    let [WireReply::Error(error)] = refused.as_slice() else {
        panic!("one error expected, got {refused:?}");
    };
    assert_eq!(error.kind, ErrorKind::Unavailable);
    assert!(error.message.contains("is draining"), "{}", error.message);
    let replies = long.await.expect("long request");
    assert_eq!(replies.len(), 1 + 20 + 2, "{replies:?}");
    assert!(
        matches!(
            replies.last(),
            Some(WireReply::Event(ChatEvent::Finish {
                reason: FinishReason::Stop,
                ..
            }))
        ),
        "the request in flight finished: {replies:?}"
    );
    tokio::time::timeout(Duration::from_secs(10), shutdown)
        .await
        .expect("shutdown ends once drained")
        .expect("shutdown task");
}

#[tokio::test]
async fn the_advert_reaches_other_nodes_typed() {
    let (secret, worker) = synthetic_worker(1, 1000.0).await;
    worker.ready().await.expect("ready");
    let observer_socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("socket");
    let observer_addr = observer_socket.local_addr().expect("addr");
    let initial = router_key_values("127.0.0.1:8080".parse().expect("addr"))
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    let observer = Gossip::spawn_on(
        &secret,
        GossipConfig {
            node_id: "observer".into(),
            listen_addr: observer_addr,
            advertise_addr: observer_addr,
            seeds: vec![worker.gossip_addr().to_string()],
            interval: DEFAULT_GOSSIP_INTERVAL,
        },
        Some(observer_socket),
        initial,
    )
    .await
    .expect("observer joins");
    let node = worker.node_id().to_string();
    let seen = |readiness: Readiness| {
        let (observer, node) = (&observer, node.clone());
        async move {
            let mut nodes = observer.live_nodes().await;
            tokio::time::timeout(Duration::from_secs(15), async {
                loop {
                    let found = workers_in(&nodes.borrow_and_update())
                        .into_iter()
                        .find(|w| w.node_id == node && w.readiness == readiness);
                    if let Some(advert) = found {
                        return advert;
                    }
                    nodes.changed().await.expect("gossip runs");
                }
            })
            .await
            .unwrap_or_else(|_| panic!("the worker is never seen {readiness:?}"))
        }
    };
    let advert = seen(Readiness::Ready).await;
    assert_eq!(advert.quic_addr, worker.quic_addr());
    assert_eq!(advert.models.len(), 1);
    assert_eq!(advert.models[0].id, "synthetic");
    assert_eq!(advert.device.kind, "synthetic");
    assert_eq!(advert.capacity, 4);

    let shutdown = tokio::spawn(worker.shutdown(Duration::from_secs(1)));
    seen(Readiness::Draining).await;
    observer.shutdown();
    shutdown.await.expect("shutdown");
}
