//! The auxot worker as a library: it serves a model (with mistral.rs) and/or tools to the
//! routers of an auxot cluster.
//!
//! Why a library under a thin binary: whatever starts a worker (the `auxot-worker` command,
//! a whole-cluster test, an embedding program) goes through the same [`start`] and gets a
//! [`WorkerHandle`] to wait on ([`WorkerHandle::ready`]) and to stop
//! ([`WorkerHandle::shutdown`]), instead of spawning a process and scraping its log. The caller
//! binds the sockets ([`Listeners`]), so tests bind `127.0.0.1:0` and never race for ports.
//!
//! Layers, each importing only those below it (no two modules import each other):
//! [`cli`] (flags) → `node` (a worker's life: start, ready, drain) → `advertise` (gossip),
//! `server` (QUIC streams) and `loading` (engine and tools from the configuration) → `engine`
//! (mistral.rs, synthetic) and `tools`. `config` (what a worker is given) sits under `cli`,
//! `node` and `loading`; `metrics` (one registry per worker) under `server` and `loading`, and
//! `admin` (the operators' `/metrics` and `/health` port) over `server`.
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)
)]

mod admin;
mod advertise;
pub mod cli;
mod config;
mod device;
mod engine;
mod enrollment;
mod loading;
mod metrics;
mod node;
mod server;
mod tools;

pub use config::{Dequantize, EngineKind, Listeners, ReasoningSetting, WorkerConfig};
pub use engine::Engine;
pub use loading::build_engine;
pub use node::{start, WorkerHandle};

/// Decides whether `config`'s GGUF model is expanded to F32 weights on a CPU (`--dequantize`) and
/// sets candle's process-wide switch for it. candle reads the switch once per thread, and setting
/// the environment while other threads run is a data race: call this before starting any thread
/// (the `auxot-worker` binary does, before its async runtime). Without the call, GGUF models stay
/// quantized (slower on a CPU, never wrong). No effect for other engines and devices.
pub fn prepare_engine_environment(config: &WorkerConfig) {
    if let (EngineKind::Mistralrs, Some(model)) = (config.engine, &config.model) {
        engine::mistral::cpu::prepare_engine_environment(
            model,
            &config.gguf_files,
            config.cpu,
            config.dequantize,
        );
    }
}
