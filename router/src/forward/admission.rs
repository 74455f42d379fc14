//! Admission control: a request takes a worker with room, or waits (bounded in time and in
//! number) for one, or is refused as overloaded. Waiting briefly absorbs bursts; refusing
//! quickly after that tells clients to back off instead of piling up behind a full cluster.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use auxot_common::chat::ChatRequest;

use super::candidates;
use super::error::ForwardError;
use crate::registry::{Registry, WorkerView};
use crate::routing::Policy;

/// How long and how many requests may wait for capacity when every worker is full.
#[derive(Debug, Clone, Copy)]
pub struct AdmissionLimits {
    pub queue_timeout: Duration,
    pub max_queued: usize,
}

impl Default for AdmissionLimits {
    fn default() -> Self {
        AdmissionLimits {
            queue_timeout: Duration::from_secs(5),
            max_queued: 256,
        }
    }
}

/// A place in the admission queue, released on drop.
pub struct Queued<'a>(&'a AtomicUsize);

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The admission queue of one router.
#[derive(Default)]
pub struct Admission {
    pub limits: AdmissionLimits,
    /// Requests waiting for capacity now.
    queued: AtomicUsize,
}

impl Admission {
    pub fn new(limits: AdmissionLimits) -> Self {
        Admission {
            limits,
            queued: AtomicUsize::new(0),
        }
    }

    /// Requests waiting for capacity now.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// A place in the queue for a request that waits for room its own way (a tool call whose
    /// workers all said they are full); `None` when the queue is full.
    pub fn enqueue(&self) -> Option<Queued<'_>> {
        if self.queued.fetch_add(1, Ordering::SeqCst) >= self.limits.max_queued {
            self.queued.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        Some(Queued(&self.queued))
    }

    /// Waits until workers change (a request ends, gossip moves) or a short while passes; false
    /// once `deadline` has passed.
    pub async fn wait_change(registry: &Registry, deadline: tokio::time::Instant) -> bool {
        let changed = registry.changed();
        let notified = changed.notified();
        let poll = tokio::time::Instant::now() + Duration::from_millis(250);
        let _ = tokio::time::timeout_at(poll.min(deadline), notified).await;
        tokio::time::Instant::now() < deadline
    }

    /// Chooses an untried worker with room for a generation, waiting for a slot when every
    /// candidate is at capacity; refused as overloaded when the queue is full or the wait ends.
    pub async fn admit(
        &self,
        registry: &Registry,
        policy: &dyn Policy,
        request: &ChatRequest,
        tried: &HashSet<String>,
    ) -> Result<Option<Arc<WorkerView>>, ForwardError> {
        self.admit_among(registry, policy, request, || {
            candidates::for_chat(registry, request, tried)
        })
        .await
    }

    /// Like [`Self::admit`] over the workers `find` lists (looked at again whenever workers
    /// change), for requests that are not chats (embeddings): `request` is what the policy sees
    /// (an embedding's has no messages, so no prefix to prefer a worker by) and its model names
    /// the refusal.
    pub async fn admit_among(
        &self,
        registry: &Registry,
        policy: &dyn Policy,
        request: &ChatRequest,
        mut find: impl FnMut() -> Result<Vec<Arc<WorkerView>>, ForwardError>,
    ) -> Result<Option<Arc<WorkerView>>, ForwardError> {
        let deadline = tokio::time::Instant::now() + self.limits.queue_timeout;
        let changed = registry.changed();
        let mut place = None;
        loop {
            // Registered before looking, so a slot freed in between still wakes us.
            let notified = changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let candidates = find()?;
            if candidates.is_empty() {
                return Ok(None);
            }
            let with_room: Vec<Arc<WorkerView>> =
                candidates.into_iter().filter(|w| w.has_room()).collect();
            if !with_room.is_empty() {
                return Ok(Some(with_room[policy.select(&with_room, request)].clone()));
            }
            if place.is_none() {
                if self.queued.fetch_add(1, Ordering::SeqCst) >= self.limits.max_queued {
                    self.queued.fetch_sub(1, Ordering::SeqCst);
                    return Err(ForwardError::Overloaded(request.model.clone()));
                }
                place = Some(Queued(&self.queued));
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(ForwardError::Overloaded(request.model.clone()));
            }
        }
    }
}
