//! This router's live view of the workers, built from gossip.
//!
//! The view is an immutable snapshot behind an `Arc`, swapped whenever gossip changes, so the
//! request path reads it without holding a lock. Per-worker counters of this router's own
//! in-flight requests live outside the snapshot and survive swaps.
//!
//! Each worker has a circuit breaker on this router. A worker this router failed to reach (or
//! that broke the protocol) is taken out at once for [`SUSPECT_FOR`]: the router notices a dead
//! worker on its own traffic instead of waiting for the failure detector. A worker that answers
//! but fails requests itself (internal errors, timeouts, "unavailable") opens its breaker after
//! [`FAULTS_TO_OPEN`] such failures in a row, for a cooldown that starts at [`FIRST_COOLDOWN`]
//! and doubles up to [`MAX_COOLDOWN`] while it keeps failing. After the cooldown the breaker is
//! half-open: the worker gets traffic again, its first success closes the breaker and its first
//! failure opens it again. Only the worker's own faults count: a caller's bad request (4xx) or a
//! worker that is merely full never does. A new incarnation of the worker starts closed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use auxot_common::error::{ErrorKind, RemoteError};
use auxot_common::mesh::node::{ModelInfo, Readiness, WorkerAdvert};
use tokio::sync::Notify;

/// How long a worker stays out after this router failed to reach it.
pub const SUSPECT_FOR: Duration = Duration::from_secs(15);
/// Failures of its own in a row that open a worker's breaker.
pub const FAULTS_TO_OPEN: u32 = 3;
/// The first cooldown of an opened breaker; it doubles while the worker keeps failing.
pub const FIRST_COOLDOWN: Duration = Duration::from_secs(2);
pub const MAX_COOLDOWN: Duration = Duration::from_secs(60);

/// A worker's circuit breaker on this router.
#[derive(Debug, Clone, Copy)]
struct Breaker {
    /// The incarnation it is about: a newer one starts closed.
    generation: u64,
    /// Failures of the worker's own in a row.
    faults: u32,
    /// Out of routing until then, when open.
    open_until: Option<Instant>,
    /// The cooldown of the next opening.
    cooldown: Duration,
}

/// A breaker's state, for `/health` and the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

impl Breaker {
    fn new(generation: u64) -> Self {
        Breaker {
            generation,
            faults: 0,
            open_until: None,
            cooldown: FIRST_COOLDOWN,
        }
    }

    fn state(&self, now: Instant) -> BreakerState {
        match self.open_until {
            Some(until) if until > now => BreakerState::Open,
            Some(_) => BreakerState::HalfOpen,
            None => BreakerState::Closed,
        }
    }

    fn open_for(&mut self, cooldown: Duration) {
        self.open_until = Some(Instant::now() + cooldown);
    }
}

/// One worker as the router sees it.
#[derive(Debug)]
pub struct WorkerView {
    pub advert: WorkerAdvert,
    /// Requests this router has in flight on the worker.
    pub local: Arc<AtomicU32>,
}

impl WorkerView {
    /// Load used for routing: this router's in-flight requests plus what the worker last gossiped
    /// (saturating: the gossiped figure is whatever the worker wrote).
    pub fn load(&self) -> u32 {
        self.advert
            .load
            .saturating_add(self.local.load(Ordering::Relaxed))
    }

    /// Load relative to capacity.
    pub fn utilisation(&self) -> f64 {
        f64::from(self.load()) / f64::from(self.advert.capacity.max(1))
    }

    /// Requests running on the worker as best this router knows: the worker's own count (up to a
    /// second old) or this router's, whichever is larger.
    pub fn active(&self) -> u32 {
        self.advert.load.max(self.local.load(Ordering::Relaxed))
    }

    /// Whether the worker can take another request now. Judged on [`Self::active`], not on the
    /// routing load: the gossiped load already includes this router's own requests, and adding
    /// them twice would call a worker full at half its capacity.
    pub fn has_room(&self) -> bool {
        self.active() < self.advert.capacity.max(1)
    }
}

/// Counts a request as in flight on a worker for as long as it lives.
#[derive(Debug)]
pub struct InFlightGuard(Arc<AtomicU32>, Arc<Notify>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
        // Someone waiting for capacity may now have it.
        self.1.notify_waiters();
    }
}

#[derive(Default)]
pub struct Registry {
    workers: RwLock<Arc<Vec<Arc<WorkerView>>>>,
    counters: Mutex<HashMap<String, Arc<AtomicU32>>>,
    /// node id -> its breaker (workers that never failed have none).
    breakers: Mutex<HashMap<String, Breaker>>,
    /// Woken when workers change or a request ends.
    changed: Arc<Notify>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the view with the workers gossip knows now.
    pub fn update(&self, adverts: Vec<WorkerAdvert>) {
        // A restarted worker can briefly appear twice; the newest generation wins.
        let mut newest: HashMap<String, WorkerAdvert> = HashMap::new();
        for advert in adverts {
            match newest.get(&advert.node_id) {
                Some(existing) if existing.generation >= advert.generation => {}
                _ => {
                    newest.insert(advert.node_id.clone(), advert);
                }
            }
        }
        let mut counters = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        counters
            .retain(|id, counter| newest.contains_key(id) || counter.load(Ordering::Relaxed) > 0);
        let mut workers: Vec<Arc<WorkerView>> = newest
            .into_values()
            .map(|advert| {
                let local = counters.entry(advert.node_id.clone()).or_default().clone();
                Arc::new(WorkerView { advert, local })
            })
            .collect();
        drop(counters);
        workers.sort_by(|a, b| a.advert.node_id.cmp(&b.advert.node_id));
        {
            let mut breakers = self.breakers.lock().unwrap_or_else(|p| p.into_inner());
            breakers.retain(|id, breaker| {
                workers
                    .iter()
                    .any(|w| &w.advert.node_id == id && w.advert.generation == breaker.generation)
            });
        }
        *self.workers.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(workers);
        self.changed.notify_waiters();
    }

    /// Every worker in gossip, ready or not.
    pub fn all(&self) -> Arc<Vec<Arc<WorkerView>>> {
        self.workers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Workers that take requests now: ready and their breaker not open.
    pub fn routable(&self) -> Vec<Arc<WorkerView>> {
        let now = Instant::now();
        let breakers = self.breakers.lock().unwrap_or_else(|p| p.into_inner());
        self.all()
            .iter()
            .filter(|w| w.advert.readiness == Readiness::Ready)
            .filter(|w| match breakers.get(&w.advert.node_id) {
                Some(b) if b.generation == w.advert.generation => {
                    b.state(now) != BreakerState::Open
                }
                _ => true,
            })
            .cloned()
            .collect()
    }

    /// Runs `f` on the breaker of `worker`'s incarnation.
    fn with_breaker(&self, worker: &WorkerAdvert, f: impl FnOnce(&mut Breaker)) {
        let mut breakers = self.breakers.lock().unwrap_or_else(|p| p.into_inner());
        let breaker = breakers
            .entry(worker.node_id.clone())
            .or_insert_with(|| Breaker::new(worker.generation));
        if breaker.generation != worker.generation {
            *breaker = Breaker::new(worker.generation);
        }
        f(breaker);
        drop(breakers);
        self.changed.notify_waiters();
    }

    /// Takes a worker out of routing for [`SUSPECT_FOR`] after this router failed to reach it
    /// (or it broke the protocol).
    pub fn mark_failed(&self, worker: &WorkerAdvert) {
        self.with_breaker(worker, |b| {
            b.faults = b.faults.saturating_add(1);
            b.open_for(SUSPECT_FOR);
        });
    }

    /// The worker failed a request by its own fault (not the caller's, not for being full):
    /// counts towards opening its breaker, and opens a half-open one again at once.
    pub fn record_fault(&self, worker: &WorkerAdvert) {
        self.with_breaker(worker, |b| {
            b.faults = b.faults.saturating_add(1);
            let half_open = b.state(Instant::now()) == BreakerState::HalfOpen;
            if half_open || b.faults >= FAULTS_TO_OPEN {
                let cooldown = b.cooldown;
                b.open_for(cooldown);
                b.cooldown = (cooldown * 2).min(MAX_COOLDOWN);
                tracing::warn!(worker = %worker.node_id, faults = b.faults, ?cooldown, "circuit breaker open: the worker keeps failing requests");
            }
        });
    }

    /// The worker served a request: its breaker closes.
    pub fn record_success(&self, worker: &WorkerAdvert) {
        let mut breakers = self.breakers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = breakers.get_mut(&worker.node_id) {
            if b.generation == worker.generation && (b.faults > 0 || b.open_until.is_some()) {
                if b.open_until.is_some() {
                    tracing::info!(worker = %worker.node_id, "circuit breaker closed: the worker served a request");
                }
                *b = Breaker::new(worker.generation);
            }
        }
    }

    /// Each worker's breaker state and its failures in a row.
    pub fn breakers(&self) -> HashMap<String, (BreakerState, u32)> {
        let now = Instant::now();
        let breakers = self.breakers.lock().unwrap_or_else(|p| p.into_inner());
        breakers
            .iter()
            .map(|(id, b)| (id.clone(), (b.state(now), b.faults)))
            .collect()
    }

    /// Takes incarnation `generation` of `node_id` out of routing (its connection closed). A
    /// newer incarnation of the same node is not affected.
    pub fn mark_failed_generation(&self, node_id: &str, generation: u64) {
        let current = self
            .all()
            .iter()
            .find(|w| w.advert.node_id == node_id && w.advert.generation == generation)
            .map(|w| w.advert.clone());
        if let Some(advert) = current {
            self.mark_failed(&advert);
        }
    }

    /// Counts one more request in flight on `worker`.
    pub fn enter(&self, worker: &WorkerView) -> InFlightGuard {
        worker.local.fetch_add(1, Ordering::Relaxed);
        InFlightGuard(worker.local.clone(), self.changed.clone())
    }

    /// Resolves when workers change or a request ends.
    pub fn changed(&self) -> Arc<Notify> {
        self.changed.clone()
    }

    /// One model of the routable workers, or a 404 naming it.
    pub fn model(&self, id: &str) -> Result<ModelInfo, RemoteError> {
        self.models()
            .into_iter()
            .find(|m| m.id == id)
            .ok_or_else(|| {
                RemoteError::new(
                    ErrorKind::NotFound,
                    format!("model `{id}` is not served by any ready worker"),
                )
            })
    }

    /// The models of the routable workers, each id once, sorted by id.
    pub fn models(&self) -> Vec<ModelInfo> {
        let mut by_id: HashMap<String, ModelInfo> = HashMap::new();
        for worker in self.routable() {
            for model in &worker.advert.models {
                by_id
                    .entry(model.id.clone())
                    .and_modify(|m| {
                        m.vision |= model.vision;
                        m.reasoning |= model.reasoning;
                        m.continues |= model.continues;
                        m.context_length = m.context_length.max(model.context_length);
                    })
                    .or_insert_with(|| model.clone());
            }
        }
        let mut models: Vec<ModelInfo> = by_id.into_values().collect();
        models.sort_by(|a, b| a.id.cmp(&b.id));
        models
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use auxot_common::mesh::node::DeviceInfo;

    pub(crate) fn advert(
        id: &str,
        generation: u64,
        model: &str,
        readiness: Readiness,
    ) -> WorkerAdvert {
        WorkerAdvert {
            node_id: id.into(),
            generation,
            quic_addr: "127.0.0.1:1".parse().expect("addr"),
            readiness,
            models: vec![ModelInfo {
                id: model.into(),
                context_length: Some(2048),
                vision: false,
                reasoning: false,
                ..Default::default()
            }],
            tools: Vec::new(),
            device: DeviceInfo::cpu(),
            capacity: 4,
            load: 0,
        }
    }

    #[test]
    fn newest_generation_wins_and_only_ready_workers_route() {
        let registry = Registry::new();
        registry.update(vec![
            advert("w1", 1, "m", Readiness::Ready),
            advert("w1", 2, "m", Readiness::Ready),
            advert("w2", 1, "m", Readiness::NotReady),
            advert("w3", 1, "other", Readiness::Draining),
        ]);
        let routable = registry.routable();
        assert_eq!(routable.len(), 1);
        assert_eq!(routable[0].advert.generation, 2);
        assert_eq!(registry.models().len(), 1);
    }

    #[test]
    fn a_failed_worker_is_skipped_until_it_restarts() {
        let registry = Registry::new();
        registry.update(vec![advert("w1", 1, "m", Readiness::Ready)]);
        let worker = registry.routable()[0].advert.clone();
        registry.mark_failed(&worker);
        assert!(registry.routable().is_empty());
        registry.update(vec![advert("w1", 1, "m", Readiness::Ready)]);
        assert!(
            registry.routable().is_empty(),
            "same incarnation stays suspect"
        );
        registry.update(vec![advert("w1", 2, "m", Readiness::Ready)]);
        assert_eq!(
            registry.routable().len(),
            1,
            "a restarted worker routes again"
        );
    }

    #[test]
    fn a_failing_worker_opens_its_breaker_and_closes_it_by_succeeding() {
        let registry = Registry::new();
        registry.update(vec![advert("w1", 1, "m", Readiness::Ready)]);
        let worker = registry.routable()[0].advert.clone();
        for _ in 1..FAULTS_TO_OPEN {
            registry.record_fault(&worker);
            assert_eq!(registry.routable().len(), 1, "not yet");
        }
        registry.record_fault(&worker);
        assert!(registry.routable().is_empty(), "open");
        assert_eq!(registry.breakers()["w1"].0, BreakerState::Open);
        // Cooled down: half-open, routable; one failure opens it again, a success closes it.
        registry.with_breaker(&worker, |b| b.open_until = Some(Instant::now()));
        assert_eq!(registry.breakers()["w1"].0, BreakerState::HalfOpen);
        assert_eq!(registry.routable().len(), 1);
        registry.record_fault(&worker);
        assert!(registry.routable().is_empty(), "open again");
        registry.with_breaker(&worker, |b| b.open_until = Some(Instant::now()));
        registry.record_success(&worker);
        assert_eq!(registry.breakers()["w1"].0, BreakerState::Closed);
        // A success in between resets the count.
        registry.record_fault(&worker);
        registry.record_success(&worker);
        registry.record_fault(&worker);
        registry.record_fault(&worker);
        assert_eq!(registry.routable().len(), 1);
    }

    #[test]
    fn an_absurd_gossiped_load_does_not_overflow() {
        let registry = Registry::new();
        let mut huge = advert("w1", 1, "m", Readiness::Ready);
        huge.load = u32::MAX;
        registry.update(vec![huge]);
        let worker = registry.routable()[0].clone();
        let _guard = registry.enter(&worker);
        assert_eq!(worker.load(), u32::MAX);
        assert!(!worker.has_room());
    }

    #[test]
    fn in_flight_counts_survive_updates() {
        let registry = Registry::new();
        registry.update(vec![advert("w1", 1, "m", Readiness::Ready)]);
        let worker = registry.routable()[0].clone();
        let guard = registry.enter(&worker);
        registry.update(vec![advert("w1", 1, "m", Readiness::Ready)]);
        assert_eq!(registry.routable()[0].load(), 1);
        drop(guard);
        assert_eq!(registry.routable()[0].load(), 0);
    }
}
