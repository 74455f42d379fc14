//! The worker library seen from outside, as a router sees it: a synthetic worker started with
//! `auxot_worker::start` on loopback sockets, asked over QUIC, watched through gossip, drained.

use std::net::SocketAddr;
use std::time::Duration;

use auxot_common::chat::{
    ChatEvent, ChatRequest, FinishReason, Message, Part, Role, Usage, AUTO_MODEL,
};
use auxot_common::error::ErrorKind;
use auxot_common::mesh::gossip::{Gossip, GossipConfig, DEFAULT_GOSSIP_INTERVAL};
use auxot_common::mesh::identity::{MeshIdentity, TrustPolicy};
use auxot_common::mesh::node::{router_key_values, Readiness};
use auxot_common::mesh::quic::QuicEndpoint;
use auxot_common::pki::{never_revoked, NodeKey, Role as NodeRole};
use auxot_common::tools::ToolCallRequest;
use auxot_common::wire::{read_frame, write_frame, WireReply, WireRequest};
use auxot_router::store::ClusterData;
use auxot_router::RouterHandle;
use auxot_worker::{start, EngineKind, Listeners, WorkerConfig, WorkerHandle};

/// A cluster's authority: a data directory and a router serving it in this process, where
/// workers enroll.
struct Authority {
    _dir: tempfile::TempDir,
    data: ClusterData,
    token: String,
    router: RouterHandle,
}

impl Authority {
    async fn new() -> Self {
        let dir = tempfile::tempdir().expect("dir");
        let data_dir = dir.path().join("data");
        let out = auxot_router::store::setup(&data_dir, "test", None).expect("setup");
        let data_arg = data_dir.display().to_string();
        let cli = <auxot_router::cli::Cli as clap::Parser>::try_parse_from([
            "auxot-router",
            "serve",
            "--data-dir",
            &data_arg,
            "--name",
            "router0",
        ])
        .expect("args");
        let auxot_router::cli::Command::Serve(args) = cli.command else {
            unreachable!("serve")
        };
        let any: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        let listeners = auxot_router::Listeners::bind(any, any, any).expect("bind");
        let router = auxot_router::start(&args, listeners).await.expect("router");
        Authority {
            data: auxot_router::store::load(&data_dir).expect("load"),
            _dir: dir,
            token: out.join_token,
            router,
        }
    }

    fn seeds(&self) -> Vec<String> {
        vec![self.router.gossip_addr().to_string()]
    }

    fn config(&self) -> WorkerConfig {
        WorkerConfig::new(self.seeds(), self.token.clone())
    }

    /// A router certificate of this cluster, as a router holds it.
    fn router_identity(&self) -> MeshIdentity {
        let key = NodeKey::generate().expect("key");
        let issued = self
            .data
            .ca
            .issue_for_key(
                &key.public_key_raw(),
                "router-test",
                NodeRole::Router,
                Duration::from_secs(600),
            )
            .expect("issue");
        MeshIdentity::new(key, issued.chain, self.data.ca.root_der().clone()).expect("identity")
    }
}

/// A synthetic worker enrolled in `authority`'s cluster, on loopback.
async fn synthetic_worker(authority: &Authority, tokens: u32, tokens_per_sec: f64) -> WorkerHandle {
    let config = WorkerConfig {
        engine: EngineKind::Synthetic,
        synthetic_ttft: Duration::from_millis(1),
        synthetic_tokens_per_sec: tokens_per_sec,
        synthetic_tokens: tokens,
        max_seqs: Some(4),
        ..authority.config()
    };
    let listeners = Listeners::localhost().expect("sockets");
    start(config, listeners).await.expect("starts")
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
async fn ask(authority: &Authority, target: &Target, request: WireRequest) -> Vec<WireReply> {
    let identity = authority.router_identity();
    let policy = TrustPolicy {
        accept_from: Vec::new(),
        dial: vec![NodeRole::Worker],
        revoked: never_revoked(),
    };
    let endpoint = QuicEndpoint::bind(
        &identity,
        &policy,
        SocketAddr::from(([127, 0, 0, 1], 0)),
        false,
    )
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
    let authority = Authority::new().await;
    let worker = synthetic_worker(&authority, 3, 1000.0).await;
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
    let replies = ask(&authority, &target, WireRequest::Chat(chat(AUTO_MODEL))).await;
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
    let replies = ask(&authority, &target, WireRequest::Chat(first)).await;
    assert_eq!(
        replies.get(1),
        Some(&WireReply::Event(ChatEvent::PromptTokens { tokens: 3 })),
        "{replies:?}"
    );
    worker.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn requests_it_cannot_serve_are_refused_before_any_work() {
    let authority = Authority::new().await;
    let worker = synthetic_worker(&authority, 3, 1000.0).await;
    let target = Target::of(&worker);
    worker.ready().await.expect("ready");
    let other_model = ask(&authority, &target, WireRequest::Chat(chat("gpt-4"))).await;
    assert_eq!(error_kind(&other_model), Some(ErrorKind::NotFound));

    let mut by_url = chat(AUTO_MODEL);
    by_url.messages[0].content.push(Part::ImageUrl {
        url: "http://127.0.0.1:9/cat.png".into(),
    });
    for request in [
        WireRequest::Chat(by_url.clone()),
        WireRequest::CountTokens(by_url),
    ] {
        let replies = ask(&authority, &target, request).await;
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
        &authority,
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
    let authority = Authority::new().await;
    let config = WorkerConfig {
        model: Some("/nonexistent/model.gguf".into()),
        ..authority.config()
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
    let authority = Authority::new().await;
    let listeners = Listeners::localhost().expect("sockets");
    let err = start(authority.config(), listeners)
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("give --model"), "{err}");
}

#[tokio::test]
async fn draining_finishes_what_is_in_flight_and_refuses_the_rest() {
    // 20 tokens at 20 a second: about a second of generation.
    let authority = std::sync::Arc::new(Authority::new().await);
    let worker = synthetic_worker(&authority, 20, 20.0).await;
    let target = Target::of(&worker);
    worker.ready().await.expect("ready");
    let long = tokio::spawn({
        let (authority, target) = (authority.clone(), target.clone());
        async move { ask(&authority, &target, WireRequest::Chat(chat(AUTO_MODEL))).await }
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
    let refused = ask(&authority, &target, WireRequest::Chat(chat(AUTO_MODEL))).await;
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
async fn the_signed_advert_reaches_other_nodes() {
    let authority = Authority::new().await;
    let worker = synthetic_worker(&authority, 1, 1000.0).await;
    worker.ready().await.expect("ready");
    let observer_socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("socket");
    let observer_addr = observer_socket.local_addr().expect("addr");
    let initial = router_key_values("127.0.0.1:8080".parse().expect("addr"))
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    let observer = Gossip::spawn_on(
        &authority.data.gossip,
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
        let (observer, node, authority) = (&observer, node.clone(), &authority);
        async move {
            let mut nodes = observer.live_nodes().await;
            tokio::time::timeout(Duration::from_secs(15), async {
                loop {
                    let view = auxot_router::membership::Membership::new(
                        authority.data.ca.root_der().clone(),
                        std::sync::Arc::new(auxot_router::records::RecordStore::new(None)),
                    )
                    .view(&nodes.borrow_and_update());
                    let found = view
                        .adverts()
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
