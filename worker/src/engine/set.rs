//! The engines of one worker: one per model it serves, found by model id.
//!
//! Each model runs in an engine of its own (for mistral.rs: its own `Model`, engine thread,
//! scheduler and KV cache), rather than in one mistral.rs instance holding several models
//! (`MultiModelBuilder`): the worker already knows each engine's model id, capacity and
//! capabilities, requests need no model field inside mistral.rs, and one model's failure to load
//! names that model. The worker advertises every model, and its capacity as the sum of its
//! engines' (each runs that many requests at once, whatever the other does; on one CPU they
//! share the cores).

use std::sync::Arc;

use auxot_common::chat::AUTO_MODEL;
use auxot_common::mesh::node::{DeviceInfo, ModelInfo, MAX_CAPACITY};

use super::{Engine, PrefixCacheStats};

/// The engines of a worker, in the order their models were given.
pub struct EngineSet {
    engines: Vec<Arc<dyn Engine>>,
}

impl EngineSet {
    /// The set of `engines`; two engines serving one id are refused.
    pub fn new(engines: Vec<Arc<dyn Engine>>) -> anyhow::Result<Self> {
        for (i, engine) in engines.iter().enumerate() {
            let id = &engine.model().id;
            if engines[..i].iter().any(|e| &e.model().id == id) {
                anyhow::bail!(
                    "two models are served as `{id}`: give each --model its own --model-name"
                );
            }
        }
        Ok(EngineSet { engines })
    }

    /// The engine serving `model`; for [`AUTO_MODEL`], the first whose model is `preferred` (a
    /// chat model for a chat), else the first.
    pub fn get(&self, model: &str, preferred: fn(&ModelInfo) -> bool) -> Option<&Arc<dyn Engine>> {
        if model == AUTO_MODEL {
            return self
                .engines
                .iter()
                .find(|e| preferred(e.model()))
                .or_else(|| self.engines.first());
        }
        self.engines.iter().find(|e| e.model().id == model)
    }

    /// The ids served, for messages (`a`, `b`).
    pub fn ids(&self) -> String {
        self.engines
            .iter()
            .map(|e| format!("`{}`", e.model().id))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Every model, as advertised.
    pub fn models(&self) -> Vec<ModelInfo> {
        self.engines.iter().map(|e| e.model().clone()).collect()
    }

    /// Requests run at once, all engines together (at most what gossip accepts).
    pub fn capacity(&self) -> u32 {
        self.engines
            .iter()
            .fold(0u32, |sum, e| sum.saturating_add(e.capacity()))
            .min(MAX_CAPACITY)
    }

    /// Where the engines compute: the first engine's device, or a GPU if a later engine uses one.
    pub fn device(&self) -> DeviceInfo {
        let devices: Vec<DeviceInfo> = self.engines.iter().map(|e| e.device()).collect();
        devices
            .iter()
            .find(|d| d.kind == "cuda")
            .or(devices.first())
            .cloned()
            .unwrap_or_else(DeviceInfo::cpu)
    }

    /// The prompt-prefix caches' figures added up, when any engine reports them.
    pub fn prefix_cache(&self) -> Option<PrefixCacheStats> {
        let mut total: Option<PrefixCacheStats> = None;
        for stats in self.engines.iter().filter_map(|e| e.prefix_cache()) {
            let sum = total.get_or_insert_with(PrefixCacheStats::default);
            sum.lookups += stats.lookups;
            sum.hits += stats.hits;
            sum.prompt_tokens += stats.prompt_tokens;
            sum.cached_tokens += stats.cached_tokens;
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::synthetic::{SyntheticEngine, SyntheticOptions};

    fn synthetic(id: &str, capacity: u32) -> Arc<dyn Engine> {
        let options = SyntheticOptions {
            capacity,
            ..SyntheticOptions::new(&format!("synthetic-{id}"), 1)
        };
        Arc::new(SyntheticEngine::new(options).expect("engine"))
    }

    #[test]
    fn models_are_found_by_id_and_capacities_add_up() {
        let set = EngineSet::new(vec![synthetic("a", 3), synthetic("b", 5)]).expect("set");
        let id = |engine: Option<&Arc<dyn Engine>>| engine.map(|e| e.model().id.clone());
        let any = |_: &ModelInfo| true;
        assert_eq!(
            id(set.get("synthetic-b", any)).as_deref(),
            Some("synthetic-b")
        );
        assert_eq!(id(set.get("auto", any)).as_deref(), Some("synthetic-a"));
        let b_first = |m: &ModelInfo| m.id == "synthetic-b";
        assert_eq!(id(set.get("auto", b_first)).as_deref(), Some("synthetic-b"));
        let none = |_: &ModelInfo| false;
        assert_eq!(id(set.get("auto", none)).as_deref(), Some("synthetic-a"));
        assert!(set.get("synthetic-c", any).is_none());
        assert_eq!(set.capacity(), 8);
        assert_eq!(
            set.models()
                .iter()
                .map(|m| m.id.as_str())
                .collect::<Vec<_>>(),
            ["synthetic-a", "synthetic-b"]
        );
        assert_eq!(set.ids(), "`synthetic-a`, `synthetic-b`");
        assert_eq!(set.device(), set.engines[0].device());
        let huge = EngineSet::new(vec![synthetic("a", 4000), synthetic("b", 4000)]).expect("set");
        assert_eq!(huge.capacity(), MAX_CAPACITY);
        let err = EngineSet::new(vec![synthetic("a", 1), synthetic("a", 1)])
            .err()
            .expect("same id twice");
        assert!(
            err.to_string()
                .contains("two models are served as `synthetic-a`"),
            "{err}"
        );
    }
}
