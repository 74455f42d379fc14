//! Which worker gets a request.
//!
//! Power-of-two-choices: pick two candidates at random and take the less utilised. Choosing the
//! global least-loaded worker instead would send every router's next requests to the same worker
//! at once, because all routers see the same slightly stale gossip; two random choices spread
//! them while still avoiding hot workers.
//!
//! Prefix affinity: engines with a prefix cache (vLLM, SGLang, mistral.rs with paged attention)
//! skip the prefill of a prompt prefix they computed recently, so the turns of one conversation
//! are cheaper on the worker that served the previous ones. The policy hashes what stays the same
//! across a conversation's turns (the system prompt and the first message after it) and prefers
//! the worker that rendezvous hashing gives that key, as long as the worker's load stays within
//! [`LOAD_BOUND`] times its share of the candidates' load ("consistent hashing with bounded
//! loads"); past it, the request falls back to power-of-two-choices, so a hot prefix cannot
//! overload one worker. Every router computes the same preference from the request alone: no
//! state is shared, and a worker joining or leaving moves only the keys it wins or held. The
//! alternative, a gossiped summary of each worker's cached prefixes (SGLang's radix tree, Dynamo's
//! KV events), tracks the cache exactly but needs per-request state in gossip, which must stay
//! small.
//!
//! Prefix affinity is the default: in `make bench`, on multi-turn conversations over workers that
//! cache prefixes, it cuts the time to first token of the later turns several-fold at p90 against
//! power-of-two-choices, and costs nothing measurable in latency where every request has the same
//! prompt (those then pile onto one worker up to the load bound, by design). Round-robin exists to
//! compare against.

use std::cmp::Reverse;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use auxot_common::chat::{ChatRequest, Part, Role};
use clap::ValueEnum;
use rand::Rng as _;

use crate::registry::WorkerView;

/// Picks one of `candidates` (never empty) for `request`.
pub trait Policy: Send + Sync {
    fn select(&self, candidates: &[Arc<WorkerView>], request: &ChatRequest) -> usize;
}

/// The policies selectable with `--routing`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PolicyKind {
    /// Power of two random choices by load relative to capacity.
    P2c,
    /// The worker the conversation's prefix hashes to, unless it is loaded beyond its share;
    /// power of two choices then.
    PrefixAffinity,
    /// Each worker in turn.
    RoundRobin,
}

impl PolicyKind {
    pub fn build(self) -> Box<dyn Policy> {
        match self {
            PolicyKind::P2c => Box::new(PowerOfTwo),
            PolicyKind::PrefixAffinity => Box::new(PrefixAffinity),
            PolicyKind::RoundRobin => Box::new(RoundRobin::default()),
        }
    }
}

pub struct PowerOfTwo;

impl Policy for PowerOfTwo {
    fn select(&self, candidates: &[Arc<WorkerView>], _: &ChatRequest) -> usize {
        let n = candidates.len();
        if n <= 1 {
            return 0;
        }
        let mut rng = rand::rng();
        let a = rng.random_range(0..n);
        let mut b = rng.random_range(0..n - 1);
        if b >= a {
            b += 1;
        }
        let (ua, ub) = (candidates[a].utilisation(), candidates[b].utilisation());
        if ua <= ub {
            a
        } else {
            b
        }
    }
}

#[derive(Default)]
pub struct RoundRobin(AtomicUsize);

impl Policy for RoundRobin {
    fn select(&self, candidates: &[Arc<WorkerView>], _: &ChatRequest) -> usize {
        self.0.fetch_add(1, Ordering::Relaxed) % candidates.len().max(1)
    }
}

/// How far above its share of the candidates' load (by capacity) the preferred worker of a
/// prefix may be loaded before its requests go elsewhere. 1.25 is the usual choice for
/// consistent hashing with bounded loads: low enough to keep a hot prefix from queueing on one
/// worker, high enough that ordinary imbalance keeps conversations where their cache is.
pub const LOAD_BOUND: f64 = 1.25;

/// Rendezvous hashing on the conversation's prefix, bounded by load, then power of two choices.
pub struct PrefixAffinity;

/// FNV-1a: a hash every router computes the same way, whatever its build.
fn fnv1a(hash: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(hash, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// The part of a request that stays the same over a conversation: its system prompt(s) and the
/// first message after them. `None` for a request with no messages.
pub fn prefix_key(request: &ChatRequest) -> Option<u64> {
    let mut hash = FNV_OFFSET;
    let mut any = false;
    for message in &request.messages {
        any = true;
        hash = fnv1a(hash, message.role.as_str().as_bytes());
        for part in &message.content {
            if let Part::Text { text } = part {
                hash = fnv1a(hash, text.as_bytes());
            }
        }
        // A separator, so that moving text between messages changes the key.
        hash = fnv1a(hash, &[0]);
        if message.role != Role::System {
            break;
        }
    }
    any.then_some(hash)
}

/// The rendezvous score of `node` for `key`: the highest-scoring candidate wins the key, and
/// removing a worker moves only the keys it won.
fn score(key: u64, node: &str) -> u64 {
    // splitmix64 of the key mixed with the node, so nearby keys scatter.
    let mut z = fnv1a(key, node.as_bytes()).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl PrefixAffinity {
    /// The index of the candidate that `key` prefers.
    fn preferred(candidates: &[Arc<WorkerView>], key: u64) -> usize {
        (0..candidates.len())
            .max_by_key(|&i| (score(key, &candidates[i].advert.node_id), Reverse(i)))
            .unwrap_or(0)
    }

    /// Whether `worker` may take one more request of its prefixes: its load (with it) within
    /// [`LOAD_BOUND`] times its capacity share of the candidates' load (with it).
    fn within_bound(candidates: &[Arc<WorkerView>], worker: &WorkerView) -> bool {
        let total_load: f64 = candidates.iter().map(|w| f64::from(w.load())).sum();
        let total_capacity: f64 = candidates
            .iter()
            .map(|w| f64::from(w.advert.capacity.max(1)))
            .sum();
        let share = f64::from(worker.advert.capacity.max(1)) / total_capacity;
        let bound = (LOAD_BOUND * (total_load + 1.0) * share).ceil();
        f64::from(worker.load()) + 1.0 <= bound
    }
}

impl Policy for PrefixAffinity {
    fn select(&self, candidates: &[Arc<WorkerView>], request: &ChatRequest) -> usize {
        if candidates.len() <= 1 {
            return 0;
        }
        if let Some(key) = prefix_key(request) {
            let preferred = Self::preferred(candidates, key);
            if Self::within_bound(candidates, &candidates[preferred]) {
                return preferred;
            }
        }
        PowerOfTwo.select(candidates, request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use auxot_common::chat::Message;
    use auxot_common::mesh::node::{DeviceInfo, Readiness, WorkerAdvert};
    use std::sync::atomic::AtomicU32;

    fn view(id: &str, load: u32, capacity: u32) -> Arc<WorkerView> {
        Arc::new(WorkerView {
            advert: WorkerAdvert {
                node_id: id.into(),
                generation: 1,
                quic_addr: "127.0.0.1:1".parse().expect("addr"),
                readiness: Readiness::Ready,
                models: Vec::new(),
                tools: Vec::new(),
                device: DeviceInfo::cpu(),
                capacity,
                load,
            },
            local: Arc::new(AtomicU32::new(0)),
        })
    }

    #[test]
    fn p2c_never_picks_the_busier_of_two() {
        let candidates = vec![view("idle", 0, 8), view("busy", 8, 8)];
        for _ in 0..100 {
            assert_eq!(PowerOfTwo.select(&candidates, &ChatRequest::default()), 0);
        }
    }

    #[test]
    fn p2c_weighs_load_by_capacity() {
        // 4 of 32 is lighter than 2 of 4.
        let candidates = vec![view("small", 2, 4), view("big", 4, 32)];
        for _ in 0..100 {
            assert_eq!(PowerOfTwo.select(&candidates, &ChatRequest::default()), 1);
        }
    }

    #[test]
    fn p2c_spreads_equal_workers() {
        let candidates: Vec<_> = (0..4).map(|i| view(&format!("w{i}"), 0, 8)).collect();
        let mut counts = [0usize; 4];
        for _ in 0..4000 {
            counts[PowerOfTwo.select(&candidates, &ChatRequest::default())] += 1;
        }
        assert!(counts.iter().all(|&c| c > 700), "{counts:?}");
    }

    fn conversation(system: &str, turns: &[&str]) -> ChatRequest {
        let mut messages = vec![Message::text(Role::System, system)];
        for (i, turn) in turns.iter().enumerate() {
            let role = if i % 2 == 0 {
                Role::User
            } else {
                Role::Assistant
            };
            messages.push(Message::text(role, *turn));
        }
        ChatRequest {
            messages,
            ..Default::default()
        }
    }

    #[test]
    fn the_prefix_key_stays_the_same_over_a_conversation() {
        let first = conversation("be brief", &["plan a trip"]);
        let third = conversation("be brief", &["plan a trip", "where to?", "Rome"]);
        assert_eq!(prefix_key(&first), prefix_key(&third));
        assert_ne!(
            prefix_key(&first),
            prefix_key(&conversation("be brief", &["plan a party"]))
        );
        assert_ne!(
            prefix_key(&first),
            prefix_key(&conversation("be verbose", &["plan a trip"]))
        );
        assert_eq!(prefix_key(&ChatRequest::default()), None);
    }

    #[test]
    fn idle_workers_keep_each_conversation_and_share_the_conversations() {
        let candidates: Vec<_> = (0..3).map(|i| view(&format!("w{i}"), 0, 8)).collect();
        let mut counts = [0usize; 3];
        for c in 0..300 {
            let turn1 = conversation("sys", &[&format!("conversation {c}")]);
            let turn2 = conversation("sys", &[&format!("conversation {c}"), "ok", "more"]);
            let picked = PrefixAffinity.select(&candidates, &turn1);
            assert_eq!(PrefixAffinity.select(&candidates, &turn2), picked);
            counts[picked] += 1;
        }
        assert!(counts.iter().all(|&c| c > 60), "{counts:?}");
    }

    #[test]
    fn a_worker_leaving_moves_only_its_own_conversations() {
        let three: Vec<_> = (0..3).map(|i| view(&format!("w{i}"), 0, 8)).collect();
        let two = vec![three[0].clone(), three[2].clone()];
        for c in 0..200 {
            let request = conversation("sys", &[&format!("conversation {c}")]);
            let before = &three[PrefixAffinity.select(&three, &request)]
                .advert
                .node_id;
            let after = &two[PrefixAffinity.select(&two, &request)].advert.node_id;
            if before != "w1" {
                assert_eq!(before, after, "conversation {c} moved");
            }
        }
    }

    #[test]
    fn a_preferred_worker_loaded_beyond_its_share_is_passed_over() {
        let request = conversation("sys", &["hot prefix"]);
        let idle: Vec<_> = (0..3).map(|i| view(&format!("w{i}"), 0, 8)).collect();
        let preferred = PrefixAffinity.select(&idle, &request);
        // The preferred worker runs 4 while the others idle: 4 + 1 > ceil(1.25 * 5 / 3) = 3.
        let loaded: Vec<_> = (0..3)
            .map(|i| view(&format!("w{i}"), if i == preferred { 4 } else { 0 }, 8))
            .collect();
        for _ in 0..100 {
            assert_ne!(PrefixAffinity.select(&loaded, &request), preferred);
        }
        // Evenly busy, it keeps the prefix: 1 + 1 <= ceil(1.25 * 4 / 3) = 2.
        let busy: Vec<_> = (0..3).map(|i| view(&format!("w{i}"), 1, 8)).collect();
        assert_eq!(PrefixAffinity.select(&busy, &request), preferred);
    }

    #[test]
    fn round_robin_cycles() {
        let candidates: Vec<_> = (0..3).map(|i| view(&format!("w{i}"), 0, 8)).collect();
        let rr = RoundRobin::default();
        let picks: Vec<usize> = (0..6)
            .map(|_| rr.select(&candidates, &ChatRequest::default()))
            .collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
    }
}
