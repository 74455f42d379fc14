//! A generation in progress on a worker, read event by event.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use auxot_common::chat::ChatEvent;
use auxot_common::completion::check_event;
use auxot_common::error::{ErrorKind, RemoteError};
use auxot_common::mesh::node::WorkerAdvert;
use auxot_common::wire::WireReply;
use tokio::time::Instant;

use super::reply::{next_reply, Reply};
use super::transport::ReplyStream;
use crate::registry::{InFlightGuard, Registry};

/// Longest silence between two events of a generation before it is ended with an error.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(300);

/// How a generation reached its worker, for the request's metrics and log line.
#[derive(Debug, Clone, Copy)]
pub struct Trace {
    /// Workers given up on before this one.
    pub failovers: u32,
    /// Time spent waiting for a worker with room before this one was chosen.
    pub queued: Duration,
    /// When the request was written to this worker.
    pub sent_at: std::time::Instant,
    /// When this worker's first output arrived.
    pub first_output_at: Option<std::time::Instant>,
}

/// A generation in progress on a worker.
pub struct ChatStream {
    /// Model that serves the request (the real id when `auto` was asked for).
    pub model: String,
    /// Node id of the worker.
    pub worker: String,
    /// When and after how many failovers it got here.
    pub trace: Trace,
    replies: Box<dyn ReplyStream>,
    /// Events read ahead while deciding whether to retry.
    pending: VecDeque<ChatEvent>,
    finished: bool,
    /// Set when the worker vanished mid-generation (as opposed to reporting an error).
    lost: bool,
    registry: Arc<Registry>,
    advert: WorkerAdvert,
    /// Longest silence between two events.
    stall: Duration,
    _in_flight: InFlightGuard,
}

impl ChatStream {
    pub(super) fn new(
        advert: WorkerAdvert,
        model: String,
        replies: Box<dyn ReplyStream>,
        registry: Arc<Registry>,
        in_flight: InFlightGuard,
    ) -> Self {
        ChatStream {
            model,
            worker: advert.node_id.clone(),
            // Built once the request is on its way to the worker.
            trace: Trace {
                failovers: 0,
                queued: Duration::ZERO,
                sent_at: std::time::Instant::now(),
                first_output_at: None,
            },
            replies,
            pending: VecDeque::new(),
            finished: false,
            lost: false,
            registry,
            advert,
            stall: STALL_TIMEOUT,
            _in_flight: in_flight,
        }
    }

    pub(super) fn with_stall_timeout(mut self, stall: Duration) -> Self {
        self.stall = stall;
        self
    }

    pub(super) fn replies(&mut self) -> &mut dyn ReplyStream {
        &mut *self.replies
    }

    /// Keeps an event read ahead, to hand out first.
    pub(super) fn push_pending(&mut self, event: ChatEvent) {
        self.pending.push_back(event);
    }

    /// The stream needs no cancelling when dropped: the worker already ended it.
    pub(super) fn mark_finished(&mut self) {
        self.finished = true;
    }

    /// The next event; `None` after the last. A lost worker becomes an `Error` event.
    pub async fn next(&mut self) -> Option<ChatEvent> {
        if let Some(event) = self.pending.pop_front() {
            self.note(&event);
            return Some(event);
        }
        if self.finished {
            return None;
        }
        let event = match next_reply(&mut *self.replies, Instant::now() + self.stall).await {
            Reply::Frame(WireReply::Event(event)) => match check_event(&event) {
                Ok(()) => event,
                Err(why) => self.lose(&format!("it sent {why}")),
            },
            Reply::Frame(WireReply::Error(error)) => ChatEvent::Error(error),
            Reply::Frame(_) => self.lose("it sent a reply out of protocol"),
            Reply::Finished => self.lose("closed the stream before finishing"),
            Reply::Broken(why) => self.lose(&why),
            Reply::TimedOut => self.lose(&format!("no event for {:?}", self.stall)),
        };
        self.note(&event);
        Some(event)
    }

    /// Whether the worker vanished or misbehaved mid-generation; the generation can be redone
    /// elsewhere if nothing reached the client yet.
    pub fn worker_lost(&self) -> bool {
        self.lost
    }

    fn lose(&mut self, why: &str) -> ChatEvent {
        self.lost = true;
        // Whatever it still sends is not wanted.
        self.replies.cancel();
        self.registry.mark_failed(&self.advert);
        ChatEvent::Error(RemoteError::new(
            ErrorKind::Upstream,
            format!("lost the worker {} mid-generation: {why}", self.worker),
        ))
    }

    fn note(&mut self, event: &ChatEvent) {
        if event.is_last() {
            self.finished = true;
        }
    }
}

impl Drop for ChatStream {
    fn drop(&mut self) {
        if !self.finished {
            // The caller went away: tell the worker to stop generating.
            self.replies.cancel();
        }
    }
}
