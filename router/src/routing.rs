//! Which worker gets a request.
//!
//! The default is power-of-two-choices: pick two candidates at random and take the less
//! utilised. Choosing the global least-loaded worker instead would send every router's next
//! requests to the same worker at once, because all routers see the same slightly stale gossip;
//! two random choices spread them while still avoiding hot workers. Round-robin exists to compare
//! against.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use clap::ValueEnum;
use rand::Rng as _;

use crate::registry::WorkerView;

/// Picks one of `candidates` (never empty).
pub trait Policy: Send + Sync {
    fn select(&self, candidates: &[Arc<WorkerView>]) -> usize;
}

/// The policies selectable with `--routing`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PolicyKind {
    /// Power of two random choices by load relative to capacity.
    P2c,
    /// Each worker in turn.
    RoundRobin,
}

impl PolicyKind {
    pub fn build(self) -> Box<dyn Policy> {
        match self {
            PolicyKind::P2c => Box::new(PowerOfTwo),
            PolicyKind::RoundRobin => Box::new(RoundRobin::default()),
        }
    }
}

pub struct PowerOfTwo;

impl Policy for PowerOfTwo {
    fn select(&self, candidates: &[Arc<WorkerView>]) -> usize {
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
    fn select(&self, candidates: &[Arc<WorkerView>]) -> usize {
        self.0.fetch_add(1, Ordering::Relaxed) % candidates.len().max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
            assert_eq!(PowerOfTwo.select(&candidates), 0);
        }
    }

    #[test]
    fn p2c_weighs_load_by_capacity() {
        // 4 of 32 is lighter than 2 of 4.
        let candidates = vec![view("small", 2, 4), view("big", 4, 32)];
        for _ in 0..100 {
            assert_eq!(PowerOfTwo.select(&candidates), 1);
        }
    }

    #[test]
    fn p2c_spreads_equal_workers() {
        let candidates: Vec<_> = (0..4).map(|i| view(&format!("w{i}"), 0, 8)).collect();
        let mut counts = [0usize; 4];
        for _ in 0..4000 {
            counts[PowerOfTwo.select(&candidates)] += 1;
        }
        assert!(counts.iter().all(|&c| c > 700), "{counts:?}");
    }

    #[test]
    fn round_robin_cycles() {
        let candidates: Vec<_> = (0..3).map(|i| view(&format!("w{i}"), 0, 8)).collect();
        let rr = RoundRobin::default();
        let picks: Vec<usize> = (0..6).map(|_| rr.select(&candidates)).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
    }
}
