//! The forwarder against a scripted transport: retries, read-ahead, admission and cancellation
//! without sockets.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use auxot_common::chat::{ChatEvent, FinishReason, Message, Role, Usage};
use auxot_common::mesh::node::{DeviceInfo, ModelInfo, Readiness, WorkerAdvert};
use auxot_common::wire::{FrameError, WireReply};

use super::*;

/// What one scripted worker does with every request it gets.
#[derive(Clone)]
enum Script {
    /// Cannot be reached.
    Unreachable,
    /// Sends these replies, then ends the stream (`finish`) or goes silent.
    Replies {
        replies: Vec<WireReply>,
        finish: bool,
    },
}

#[derive(Default)]
struct Scripted {
    scripts: HashMap<String, Script>,
    sent: Mutex<Vec<String>>,
    /// The requests sent, in order.
    frames: Mutex<Vec<WireRequest>>,
    cancelled: Arc<AtomicUsize>,
}

struct ScriptedReplies {
    replies: VecDeque<WireReply>,
    finish: bool,
    cancelled: Arc<AtomicUsize>,
    was_cancelled: AtomicBool,
}

#[async_trait]
impl ReplyStream for ScriptedReplies {
    async fn next(&mut self) -> Result<Option<WireReply>, FrameError> {
        match self.replies.pop_front() {
            Some(reply) => Ok(Some(reply)),
            None if self.finish => Ok(None),
            None => std::future::pending().await,
        }
    }

    fn cancel(&mut self) {
        if !self.was_cancelled.swap(true, Ordering::SeqCst) {
            self.cancelled.fetch_add(1, Ordering::SeqCst);
        }
    }
}

#[async_trait]
impl WorkerTransport for Scripted {
    async fn send(
        &self,
        worker: &WorkerAdvert,
        frame: &[u8],
    ) -> Result<Box<dyn ReplyStream>, String> {
        self.sent.lock().expect("lock").push(worker.node_id.clone());
        let request = serde_json::from_slice(&frame[4..]).expect("a request frame");
        self.frames.lock().expect("lock").push(request);
        match self.scripts.get(&worker.node_id) {
            None | Some(Script::Unreachable) => Err("connection refused".into()),
            Some(Script::Replies { replies, finish }) => Ok(Box::new(ScriptedReplies {
                replies: replies.clone().into(),
                finish: *finish,
                cancelled: self.cancelled.clone(),
                was_cancelled: AtomicBool::new(false),
            })),
        }
    }
}

/// Always the first candidate (workers are sorted by id), so tests know the order.
struct First;

impl Policy for First {
    fn select(&self, _: &[Arc<WorkerView>], _: &ChatRequest) -> usize {
        0
    }
}

fn advert(id: &str, capacity: u32) -> WorkerAdvert {
    WorkerAdvert {
        node_id: id.into(),
        generation: 1,
        quic_addr: "127.0.0.1:1".parse().expect("addr"),
        readiness: Readiness::Ready,
        models: vec![ModelInfo {
            id: "m".into(),
            context_length: None,
            vision: false,
            reasoning: false,
            continues: true,
            ..Default::default()
        }],
        tools: Vec::new(),
        device: DeviceInfo::cpu(),
        capacity,
        load: 0,
    }
}

fn accepted() -> WireReply {
    WireReply::Accepted {
        worker: "w".into(),
        model: "m".into(),
    }
}

fn text(t: &str) -> WireReply {
    WireReply::Event(ChatEvent::Text { text: t.into() })
}

fn answer(t: &str) -> Script {
    Script::Replies {
        replies: vec![
            accepted(),
            WireReply::Event(ChatEvent::PromptTokens { tokens: 4 }),
            text(t),
            WireReply::Event(ChatEvent::Usage(Usage {
                prompt_tokens: 4,
                completion_tokens: 1,
            })),
            WireReply::Event(ChatEvent::Finish {
                reason: FinishReason::Stop,
                stop_sequence: None,
            }),
        ],
        finish: true,
    }
}

fn forwarder(
    workers: &[(&str, u32, Script)],
    limits: AdmissionLimits,
) -> (Forwarder, Arc<Scripted>) {
    let registry = Arc::new(Registry::new());
    registry.update(
        workers
            .iter()
            .map(|(id, cap, _)| advert(id, *cap))
            .collect(),
    );
    let transport = Arc::new(Scripted {
        scripts: workers
            .iter()
            .map(|(id, _, script)| (id.to_string(), script.clone()))
            .collect(),
        ..Default::default()
    });
    let forwarder = Forwarder::new(registry, transport.clone(), Box::new(First), limits);
    (forwarder, transport)
}

fn request() -> ChatRequest {
    ChatRequest {
        model: "auto".into(),
        messages: vec![Message::text(Role::User, "hi")],
        ..Default::default()
    }
}

async fn drain(stream: &mut ChatStream) -> Vec<ChatEvent> {
    let mut events = Vec::new();
    while let Some(event) = stream.next().await {
        events.push(event);
    }
    events
}

fn texts(events: &[ChatEvent]) -> String {
    events
        .iter()
        .filter_map(|e| match e {
            ChatEvent::Text { text } => Some(text.as_str()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_worker_that_fails_before_output_is_retried_and_becomes_suspect() {
    let dying = Script::Replies {
        replies: vec![
            accepted(),
            WireReply::Event(ChatEvent::PromptTokens { tokens: 4 }),
        ],
        finish: true,
    };
    let (fwd, transport) = forwarder(
        &[("w1", 4, dying), ("w2", 4, answer("hello"))],
        AdmissionLimits::default(),
    );
    let mut stream = fwd.chat(&request()).await.expect("stream");
    assert_eq!(stream.worker, "w2");
    assert_eq!(stream.model, "m", "the served model replaces `auto`");
    let events = drain(&mut stream).await;
    assert_eq!(texts(&events), "hello");
    assert_eq!(events[0], ChatEvent::PromptTokens { tokens: 4 });
    assert_eq!(*transport.sent.lock().expect("lock"), ["w1", "w2"]);
    let routable: Vec<String> = fwd
        .registry()
        .routable()
        .iter()
        .map(|w| w.advert.node_id.clone())
        .collect();
    assert_eq!(routable, ["w2"], "the worker that vanished is skipped");
}

#[tokio::test]
async fn unreachable_workers_are_skipped() {
    let (fwd, transport) = forwarder(
        &[("w1", 4, Script::Unreachable), ("w2", 4, answer("ok"))],
        AdmissionLimits::default(),
    );
    let mut stream = fwd.chat(&request()).await.expect("stream");
    assert_eq!(texts(&drain(&mut stream).await), "ok");
    assert_eq!(transport.sent.lock().expect("lock").len(), 2);
}

#[tokio::test]
async fn caller_errors_are_not_retried() {
    let refuse = Script::Replies {
        replies: vec![WireReply::Error(RemoteError::invalid("bad schema"))],
        finish: true,
    };
    let (fwd, transport) = forwarder(
        &[("w1", 4, refuse), ("w2", 4, answer("never"))],
        AdmissionLimits::default(),
    );
    let err = fwd.chat(&request()).await.err().expect("refused");
    assert_eq!(
        err,
        ForwardError::Remote(RemoteError::invalid("bad schema"))
    );
    assert_eq!(*transport.sent.lock().expect("lock"), ["w1"]);
}

#[tokio::test]
async fn a_worker_lost_after_output_ends_the_stream_with_an_error() {
    let cut = Script::Replies {
        replies: vec![accepted(), text("par")],
        finish: true,
    };
    let (fwd, _) = forwarder(&[("w1", 4, cut)], AdmissionLimits::default());
    let mut stream = fwd.chat(&request()).await.expect("stream");
    let events = drain(&mut stream).await;
    assert_eq!(texts(&events), "par");
    assert!(
        matches!(events.last(), Some(ChatEvent::Error(e)) if e.kind == ErrorKind::Upstream),
        "{events:?}"
    );
    assert!(stream.worker_lost());
}

#[tokio::test]
async fn full_workers_make_requests_wait_then_refuse_as_overloaded() {
    let slow = Script::Replies {
        replies: vec![accepted(), text("a")],
        finish: false,
    };
    let limits = AdmissionLimits {
        queue_timeout: Duration::from_millis(100),
        max_queued: 4,
    };
    let (fwd, _) = forwarder(&[("w1", 1, slow)], limits);
    let held = fwd.chat(&request()).await.expect("first takes the slot");
    let err = fwd
        .chat(&request())
        .await
        .err()
        .expect("second waits, then 429");
    assert_eq!(err, ForwardError::Overloaded("auto".into()));
    drop(held);
}

#[tokio::test]
async fn dropping_an_unfinished_stream_cancels_it_on_the_worker() {
    let slow = Script::Replies {
        replies: vec![accepted(), text("a")],
        finish: false,
    };
    let (fwd, transport) = forwarder(
        &[("w1", 4, slow), ("w2", 4, answer("b"))],
        AdmissionLimits::default(),
    );
    let stream = fwd.chat(&request()).await.expect("stream");
    drop(stream);
    assert_eq!(transport.cancelled.load(Ordering::SeqCst), 1);
    let mut done = fwd
        .chat_excluding(&request(), &HashSet::from(["w1".to_string()]))
        .await
        .expect("stream");
    drain(&mut done).await;
    drop(done);
    assert_eq!(
        transport.cancelled.load(Ordering::SeqCst),
        1,
        "a finished stream is not cancelled"
    );
}

#[tokio::test]
async fn unknown_models_and_empty_clusters_say_so() {
    let (fwd, _) = forwarder(&[("w1", 4, answer("x"))], AdmissionLimits::default());
    let mut other = request();
    other.model = "nope".into();
    assert!(matches!(
        fwd.chat(&other).await.err(),
        Some(ForwardError::UnknownModel { .. })
    ));
    let (empty, _) = forwarder(&[], AdmissionLimits::default());
    assert_eq!(
        empty.chat(&request()).await.err(),
        Some(ForwardError::NoWorkers)
    );
}

#[tokio::test]
async fn token_counts_are_retried_like_chats() {
    let count = Script::Replies {
        replies: vec![WireReply::TokenCount { tokens: 9 }],
        finish: true,
    };
    let (fwd, _) = forwarder(
        &[("w1", 4, Script::Unreachable), ("w2", 4, count)],
        AdmissionLimits::default(),
    );
    assert_eq!(fwd.count_tokens(&request()).await, Ok(9));
}

#[tokio::test]
async fn token_counts_wait_for_room_like_chats() {
    // One slot, taken by a generation: a token count must queue, not pile onto the worker.
    let slow = Script::Replies {
        replies: vec![accepted(), text("a")],
        finish: false,
    };
    let limits = AdmissionLimits {
        queue_timeout: Duration::from_millis(100),
        max_queued: 4,
    };
    let (fwd, transport) = forwarder(&[("w1", 1, slow)], limits);
    let held = fwd.chat(&request()).await.expect("first takes the slot");
    assert_eq!(
        fwd.count_tokens(&request()).await,
        Err(ForwardError::Overloaded("auto".into()))
    );
    assert_eq!(transport.sent.lock().expect("lock").len(), 1);
    drop(held);
}

#[tokio::test]
async fn a_tool_call_index_beyond_any_request_is_a_worker_fault() {
    let liar = Script::Replies {
        replies: vec![
            accepted(),
            WireReply::Event(ChatEvent::ToolCall {
                index: 4_000_000_000,
                id: Some("c".into()),
                name: Some("f".into()),
                arguments: "{}".into(),
            }),
            WireReply::Event(ChatEvent::Finish {
                reason: FinishReason::ToolCalls,
                stop_sequence: None,
            }),
        ],
        finish: true,
    };
    let (fwd, transport) = forwarder(
        &[("w1", 4, liar), ("w2", 4, answer("fine"))],
        AdmissionLimits::default(),
    );
    let mut stream = fwd.chat(&request()).await.expect("stream");
    assert_eq!(stream.worker, "w2", "the liar's reply was not taken");
    assert_eq!(texts(&drain(&mut stream).await), "fine");
    assert_eq!(*transport.sent.lock().expect("lock"), ["w1", "w2"]);
    let routable: Vec<String> = fwd
        .registry()
        .routable()
        .iter()
        .map(|w| w.advert.node_id.clone())
        .collect();
    assert_eq!(routable, ["w2"], "the misbehaving worker is suspect");
}

fn generator(fwd: Forwarder, max_continuations: u32) -> Arc<crate::generation::Generator> {
    let policy = crate::generation::images::FetchPolicy {
        allow_private: false,
    };
    Arc::new(
        crate::generation::Generator::new(fwd, policy).with_max_continuations(max_continuations),
    )
}

async fn drain_source(source: &mut impl crate::generation::source::EventSource) -> Vec<ChatEvent> {
    let mut events = Vec::new();
    while let Some(event) = source.next().await {
        events.push(event);
    }
    events
}

#[tokio::test]
async fn a_worker_lost_after_output_is_continued_on_another_with_the_cut_turn() {
    use crate::generation::continuation::Continuing;
    let cut = Script::Replies {
        replies: vec![
            accepted(),
            WireReply::Event(ChatEvent::PromptTokens { tokens: 4 }),
            text("Hel"),
            text("lo"),
        ],
        finish: true,
    };
    let rest = Script::Replies {
        replies: vec![
            accepted(),
            WireReply::Event(ChatEvent::PromptTokens { tokens: 9 }),
            text(" world"),
            WireReply::Event(ChatEvent::Usage(Usage {
                prompt_tokens: 4,
                completion_tokens: 3,
            })),
            WireReply::Event(ChatEvent::Finish {
                reason: FinishReason::Stop,
                stop_sequence: None,
            }),
        ],
        finish: true,
    };
    let (fwd, transport) = forwarder(
        &[("w1", 4, cut), ("w2", 4, rest)],
        AdmissionLimits::default(),
    );
    let generator = generator(fwd, 2);
    let stream = generator.forwarder.chat(&request()).await.expect("stream");
    let mut source = Continuing::new(generator.clone(), request(), stream);
    let events = drain_source(&mut source).await;
    assert_eq!(
        events,
        vec![
            ChatEvent::PromptTokens { tokens: 4 },
            ChatEvent::Text { text: "Hel".into() },
            ChatEvent::Text { text: "lo".into() },
            ChatEvent::Text {
                text: " world".into()
            },
            ChatEvent::Usage(Usage {
                prompt_tokens: 4,
                completion_tokens: 3
            }),
            ChatEvent::Finish {
                reason: FinishReason::Stop,
                stop_sequence: None
            },
        ],
        "one stream, one prompt count, one finish"
    );
    assert_eq!(source.worker(), "w1");
    let frames = transport.frames.lock().expect("lock");
    let WireRequest::Chat(continued) = &frames[1] else {
        panic!("a chat: {:?}", frames[1]);
    };
    assert!(continued.continue_final);
    assert_eq!(continued.model, "m", "the same model, not `auto` again");
    assert_eq!(
        continued.messages,
        vec![
            Message::text(Role::User, "hi"),
            Message::text(Role::Assistant, "Hello")
        ]
    );
}

#[tokio::test]
async fn without_continuations_left_a_lost_worker_ends_the_stream_with_its_error() {
    use crate::generation::continuation::Continuing;
    let cut = Script::Replies {
        replies: vec![
            accepted(),
            text("Hel"),
            WireReply::Event(ChatEvent::Usage(Usage {
                prompt_tokens: 4,
                completion_tokens: 1,
            })),
        ],
        finish: true,
    };
    for (max, second) in [(0, answer("never")), (2, answer("never"))] {
        let (fwd, transport) = forwarder(
            &[("w1", 4, cut.clone()), ("w2", 4, second)],
            AdmissionLimits::default(),
        );
        let generator = generator(fwd, max);
        let stream = generator.forwarder.chat(&request()).await.expect("stream");
        let mut source = Continuing::new(generator.clone(), request(), stream);
        let events = drain_source(&mut source).await;
        // With no continuation left, or after the worker's usage (its generation was over bar
        // the finish), the loss is the caller's error; the usage of a cut answer is not given.
        assert_eq!(texts(&events), "Hel");
        assert!(
            matches!(events.last(), Some(ChatEvent::Error(e)) if e.message.contains("lost the worker")),
            "{events:?}"
        );
        assert!(!events.iter().any(|e| matches!(e, ChatEvent::Usage(_))));
        assert_eq!(*transport.sent.lock().expect("lock"), ["w1"]);
    }
}

#[tokio::test]
async fn a_worker_that_stalls_after_output_is_cancelled_and_continued_elsewhere() {
    use crate::generation::continuation::Continuing;
    let stalls = Script::Replies {
        replies: vec![accepted(), text("Hel")],
        finish: false,
    };
    let (fwd, transport) = forwarder(
        &[("w1", 4, stalls), ("w2", 4, answer("lo"))],
        AdmissionLimits::default(),
    );
    let fwd = fwd.with_timeouts(ForwardTimeouts {
        stall: std::time::Duration::from_millis(200),
        ..ForwardTimeouts::default()
    });
    let generator = generator(fwd, 1);
    let stream = generator.forwarder.chat(&request()).await.expect("stream");
    let mut source = Continuing::new(generator.clone(), request(), stream);
    let events = drain_source(&mut source).await;
    assert_eq!(texts(&events), "Hello");
    assert!(
        matches!(events.last(), Some(ChatEvent::Finish { .. })),
        "{events:?}"
    );
    assert_eq!(*transport.sent.lock().expect("lock"), ["w1", "w2"]);
    assert_eq!(
        transport.cancelled.load(Ordering::SeqCst),
        1,
        "the stalled worker is told to stop"
    );
}
