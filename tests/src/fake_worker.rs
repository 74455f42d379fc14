//! A worker that lies: it joins the cluster like a real one (enrolled with the join token, sealed
//! gossip, a QUIC endpoint with its own worker certificate, a signed advert serving one model) and answers every request with a
//! script, so tests can make it misbehave in ways a real worker never would: never answer,
//! send an absurd tool-call index, flood the router with text.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use auxot_common::chat::{ChatEvent, FinishReason};
use auxot_common::enroll;
use auxot_common::error::RemoteError;
use auxot_common::join_token::JoinToken;
use auxot_common::mesh::gossip::{Gossip, GossipConfig, DEFAULT_GOSSIP_INTERVAL};
use auxot_common::mesh::identity::{MeshIdentity, TrustPolicy};
use auxot_common::mesh::keys;
use auxot_common::mesh::node::{DeviceInfo, ModelInfo, ModelKind, Readiness, WorkerAdvert};
use auxot_common::mesh::quic::QuicEndpoint;
use auxot_common::pki::{never_revoked, NodeKey, Role};
use auxot_common::wire::{read_frame, write_frame, WireReply, WireRequest};

/// What the fake worker does with each request stream.
#[derive(Debug, Clone)]
pub enum Behaviour {
    /// Reads the request and never writes a frame (the stream stays open).
    Silent,
    /// Writes these replies, then finishes the stream.
    Replies(Vec<WireReply>),
}

/// The replies of a worker that took a chat and calls a tool at `index`.
pub fn tool_call_at(model: &str, index: u32) -> Behaviour {
    Behaviour::Replies(vec![
        WireReply::Accepted {
            worker: "fake".into(),
            model: model.into(),
        },
        WireReply::Event(ChatEvent::ToolCall {
            index,
            id: Some("call_1".into()),
            name: Some("f".into()),
            arguments: "{}".into(),
        }),
        WireReply::Event(ChatEvent::Finish {
            reason: FinishReason::ToolCalls,
            stop_sequence: None,
        }),
    ])
}

/// A worker that sends `chunks` text events of `chunk_bytes` bytes each, then finishes.
pub fn text_flood(model: &str, chunks: usize, chunk_bytes: usize) -> Behaviour {
    let mut replies = vec![WireReply::Accepted {
        worker: "fake".into(),
        model: model.into(),
    }];
    let text = "x".repeat(chunk_bytes);
    replies.extend((0..chunks).map(|_| WireReply::Event(ChatEvent::Text { text: text.clone() })));
    replies.push(WireReply::Event(ChatEvent::Finish {
        reason: FinishReason::Stop,
        stop_sequence: None,
    }));
    Behaviour::Replies(replies)
}

/// A worker that answers every request with `error`.
pub fn failing(model: &str, error: RemoteError) -> Behaviour {
    Behaviour::Replies(vec![
        WireReply::Accepted {
            worker: "fake".into(),
            model: model.into(),
        },
        WireReply::Error(error),
    ])
}

/// A worker that answers with one short text.
pub fn answering(model: &str) -> Behaviour {
    text_flood(model, 1, 5)
}

/// A running fake worker; dropping it leaves the cluster and closes its endpoint.
pub struct FakeWorker {
    pub node_id: String,
    gossip: Gossip,
    endpoint: QuicEndpoint,
    /// Request streams it has read a request from.
    pub requests: Arc<AtomicUsize>,
    behaviour: Arc<Mutex<Behaviour>>,
}

impl FakeWorker {
    /// Joins the cluster of `join_token` through `seed`, advertising `model` with `capacity`
    /// slots, and answers every request with `behaviour`.
    pub async fn start(
        join_token: &str,
        seed: SocketAddr,
        node_id: &str,
        model: &str,
        behaviour: Behaviour,
    ) -> FakeWorker {
        let token = JoinToken::parse(join_token).expect("join token");
        let key = NodeKey::generate().expect("key");
        let request = enroll::join_request(&key, node_id, &token).expect("request");
        // The router may still be starting: retry for a while, as a real worker does.
        let mut tries = 0;
        let enrolled = loop {
            match enroll::enroll(&seed.to_string(), token.root, &request).await {
                Ok(enrolled) => break enrolled,
                Err(err) if tries < 100 && err.is_transient() => {
                    tries += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
                Err(err) => panic!("the token enrolls: {err}"),
            }
        };
        let identity = MeshIdentity::new(key, enrolled.chain, enrolled.root).expect("identity");
        let localhost = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let quic_socket = UdpSocket::bind(localhost).expect("bind quic");
        let gossip_socket = UdpSocket::bind(localhost).expect("bind gossip");
        let quic_addr = quic_socket.local_addr().expect("quic addr");
        let gossip_addr = gossip_socket.local_addr().expect("gossip addr");
        let policy = TrustPolicy {
            accept_from: vec![Role::Router],
            dial: Vec::new(),
            revoked: never_revoked(),
        };
        let endpoint =
            QuicEndpoint::on_socket(&identity, &policy, quic_socket, true).expect("endpoint");
        let initial = vec![
            (keys::ROLE.to_string(), Role::Worker.to_string()),
            (keys::VERSION.to_string(), auxot_common::VERSION.to_string()),
            (keys::CERT.to_string(), identity.chain_value()),
        ];
        let gossip = Gossip::spawn_on(
            &enrolled.gossip,
            GossipConfig {
                node_id: node_id.to_string(),
                listen_addr: gossip_addr,
                advertise_addr: gossip_addr,
                seeds: vec![seed.to_string()],
                interval: DEFAULT_GOSSIP_INTERVAL,
            },
            Some(gossip_socket),
            initial,
        )
        .await
        .expect("gossip");
        let advert = WorkerAdvert {
            node_id: node_id.to_string(),
            generation: gossip.generation(),
            quic_addr,
            readiness: Readiness::Ready,
            models: vec![ModelInfo {
                id: model.to_string(),
                context_length: Some(2048),
                vision: false,
                reasoning: false,
                continues: false,
                kind: ModelKind::Chat,
            }],
            tools: Vec::new(),
            device: DeviceInfo::cpu(),
            capacity: 8,
            load: 0,
        };
        gossip
            .set_many(&advert.signed_key_values(identity.key()))
            .await;
        let requests = Arc::new(AtomicUsize::new(0));
        let behaviour = Arc::new(Mutex::new(behaviour));
        tokio::spawn(serve(endpoint.clone(), behaviour.clone(), requests.clone()));
        FakeWorker {
            node_id: node_id.to_string(),
            gossip,
            endpoint,
            requests,
            behaviour,
        }
    }

    /// Answers the next requests with `behaviour` instead.
    pub fn behave(&self, behaviour: Behaviour) {
        *self.behaviour.lock().unwrap_or_else(|p| p.into_inner()) = behaviour;
    }

    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for FakeWorker {
    fn drop(&mut self) {
        self.gossip.shutdown();
        self.endpoint.close();
    }
}

async fn serve(
    endpoint: QuicEndpoint,
    behaviour: Arc<Mutex<Behaviour>>,
    requests: Arc<AtomicUsize>,
) {
    while let Some(incoming) = endpoint.inner().accept().await {
        let behaviour = behaviour.clone();
        let requests = requests.clone();
        tokio::spawn(async move {
            let Ok(conn) = incoming.await else { return };
            while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                let behaviour = behaviour.clone();
                let requests = requests.clone();
                tokio::spawn(async move {
                    let Ok(Some(_request)) = read_frame::<_, WireRequest>(&mut recv).await else {
                        return;
                    };
                    requests.fetch_add(1, Ordering::SeqCst);
                    let behaviour = behaviour.lock().unwrap_or_else(|p| p.into_inner()).clone();
                    match behaviour {
                        Behaviour::Silent => {
                            // Hold the stream open until the router gives up on it.
                            let _ = send.stopped().await;
                        }
                        Behaviour::Replies(replies) => {
                            for reply in &replies {
                                if write_frame(&mut send, reply).await.is_err() {
                                    return;
                                }
                            }
                            let _ = send.finish();
                            let _ = send.stopped().await;
                        }
                    }
                });
            }
        });
    }
}
