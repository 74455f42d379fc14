//! GGUF models on a CPU: whether to expand the quantized weights to F32 at load.
//!
//! candle's quantized CPU matmul is scalar for Q4_1, Q5_0 and Q5_1 (and for every type in a build
//! without AVX2) and runs a prompt one row at a time, streaming all the weights once per prompt
//! token: a 35-token prompt of a 135M model took 2-3 s on two cores. Expanded to F32, the same
//! matmuls run in `gemm` (AVX2/AVX-512 chosen at run time): prompts about 10x faster, decoding 2x,
//! for 4 bytes of memory per parameter instead of about 0.6. So small models are expanded and
//! big ones are not (`--dequantize auto`), unless the operator says otherwise.
//!
//! candle offers this only as an environment variable, `CANDLE_DEQUANTIZE_ALL`, which each thread
//! reads once, when it first builds a quantized matmul (while the model loads, possibly on several
//! threads). Setting the environment while other threads may read it is a data race in libc, so
//! the decision is made by [`prepare_engine_environment`] before any thread exists: the worker's
//! `main` calls it before starting the async runtime, and so should any program that embeds the
//! worker. The loader only reports what was decided. An operator's own `CANDLE_DEQUANTIZE_ALL`
//! always wins.

use std::path::Path;

use clap::ValueEnum;
use tracing::info;

use super::source::{self, Source};

/// candle's switch (candle-core `quantized/mod.rs`): any value but empty or `0` expands.
pub const CANDLE_DEQUANTIZE_ALL: &str = "CANDLE_DEQUANTIZE_ALL";

/// `--dequantize auto` expands a model when its F32 copy stays under this many bytes (models up
/// to about 500M parameters).
pub const AUTO_MAX_F32_BYTES: u64 = 2 << 30;

/// F32 bytes per GGUF byte, roughly, for the 4-5 bit types small models ship in (Q4_1 6.4x, Q4_0
/// 7.1x, Q8_0 3.8x; 2-3 bit files grow 10-12x but are rare below 500M parameters).
const F32_GROWTH: u64 = 7;

/// Whether GGUF weights are expanded to F32 on a CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Dequantize {
    /// When the F32 copy stays under 2 GiB (local GGUF files only: a hub file's size is unknown
    /// before the download).
    #[default]
    Auto,
    /// Always (needs 4 bytes of memory per parameter).
    Always,
    /// Never: quantized kernels, less memory, slower.
    Never,
}

/// What runs the model, as far as the decision cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// GGUF files on a CPU; their size when known (local files).
    CpuGguf { bytes: Option<u64> },
    /// Anything else (a GPU, safetensors, the synthetic engine): the switch stays untouched.
    Other,
}

/// The decision and its reason, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Whether the weights will be expanded.
    pub dequantize: bool,
    /// Whether [`prepare_engine_environment`] sets the switch (false when the operator set it or
    /// nothing is to be expanded).
    pub set_switch: bool,
    pub reason: String,
}

/// candle's reading of the switch's value.
fn candle_reads(value: &str) -> bool {
    !value.is_empty() && value != "0"
}

/// The decision, from the setting, the operator's own `CANDLE_DEQUANTIZE_ALL` (if any) and the
/// target. Pure, so every case is tested.
pub fn decide(setting: Dequantize, operator: Option<&str>, target: Target) -> Decision {
    let decision = |dequantize, set_switch, reason: String| Decision {
        dequantize,
        set_switch,
        reason,
    };
    let Target::CpuGguf { bytes } = target else {
        return decision(false, false, "not a GGUF model on a CPU".into());
    };
    if let Some(value) = operator {
        return decision(
            candle_reads(value),
            false,
            format!("{CANDLE_DEQUANTIZE_ALL}={value} set by the operator"),
        );
    }
    match (setting, bytes) {
        (Dequantize::Never, _) => decision(false, false, "--dequantize never".into()),
        (Dequantize::Always, _) => decision(true, true, "--dequantize always".into()),
        (Dequantize::Auto, None) => decision(
            false,
            false,
            "the file's size is unknown before the download (--dequantize always expands it)"
                .into(),
        ),
        (Dequantize::Auto, Some(bytes)) => {
            let f32_mib = bytes.saturating_mul(F32_GROWTH) >> 20;
            if bytes.saturating_mul(F32_GROWTH) <= AUTO_MAX_F32_BYTES {
                decision(
                    true,
                    true,
                    format!("small model: about {f32_mib} MiB in F32"),
                )
            } else {
                decision(
                    false,
                    false,
                    format!(
                        "about {f32_mib} MiB in F32 is over {} MiB (--dequantize always expands it)",
                        AUTO_MAX_F32_BYTES >> 20
                    ),
                )
            }
        }
    }
}

/// Whether mistral.rs will compute on the CPU: asked, or no GPU backend or device.
pub fn runs_on_cpu(force_cpu: bool) -> bool {
    force_cpu
        || mistralrs::best_device(false)
            .map(|device| device.is_cpu())
            .unwrap_or(true)
}

/// The target a model source runs as.
pub fn target(source: &Source, on_cpu: bool) -> Target {
    match source {
        Source::LocalGguf { dir, files } if on_cpu => Target::CpuGguf {
            bytes: files
                .iter()
                .map(|f| std::fs::metadata(Path::new(dir).join(f)).map(|m| m.len()))
                .sum::<Result<u64, _>>()
                .ok(),
        },
        Source::HubGguf { .. } if on_cpu => Target::CpuGguf { bytes: None },
        _ => Target::Other,
    }
}

/// The GGUF weights a worker loads, as far as the decision cares: `(model, gguf_files)` of every
/// model and draft model (as in `--model`, `--gguf-file`), and whether any model is quantized in
/// situ (`--isq`).
#[derive(Debug, Clone, Default)]
pub struct Weights {
    pub models: Vec<(String, Vec<String>)>,
    pub in_situ_quantized: bool,
}

impl Weights {
    /// One model.
    pub fn one(model: &str, gguf_files: &[String]) -> Self {
        Weights {
            models: vec![(model.to_string(), gguf_files.to_vec())],
            in_situ_quantized: false,
        }
    }
}

/// The targets of several models as one: the switch is process-wide, so GGUF files on the CPU
/// count together (their size unknown if any one's is); the rest do not care.
pub fn combined(targets: &[Target]) -> Target {
    let mut bytes = Some(0u64);
    let mut any = false;
    for target in targets {
        if let Target::CpuGguf { bytes: b } = target {
            any = true;
            bytes = match (bytes, b) {
                (Some(total), Some(b)) => Some(total.saturating_add(*b)),
                _ => None,
            };
        }
    }
    if any {
        Target::CpuGguf { bytes }
    } else {
        Target::Other
    }
}

/// The decision for the models of a mistral.rs worker.
pub fn decide_for(weights: &Weights, force_cpu: bool, setting: Dequantize) -> Decision {
    let operator = std::env::var(CANDLE_DEQUANTIZE_ALL).ok();
    if weights.in_situ_quantized && operator.is_none() {
        // candle would expand the in-situ quantized weights back to F32 too.
        return decide(setting, None, Target::Other);
    }
    let mut on_cpu = None;
    let mut targets = Vec::new();
    for (model, gguf_files) in &weights.models {
        if let Ok(source @ (Source::LocalGguf { .. } | Source::HubGguf { .. })) =
            source::resolve(model, gguf_files)
        {
            // Only GGUF sources care; the device is asked only for them (it may start a GPU
            // driver). A bad `--model` fails later with its own message.
            let cpu = *on_cpu.get_or_insert_with(|| runs_on_cpu(force_cpu));
            targets.push(target(&source, cpu));
        }
    }
    decide(setting, operator.as_deref(), combined(&targets))
}

/// Decides and, where needed, sets candle's switch. Call it before any thread is started (the
/// worker's `main` does, before the async runtime): see the module documentation.
pub fn prepare_engine_environment(
    weights: &Weights,
    force_cpu: bool,
    setting: Dequantize,
) -> Decision {
    let decision = decide_for(weights, force_cpu, setting);
    if decision.set_switch {
        std::env::set_var(CANDLE_DEQUANTIZE_ALL, "1");
    }
    info!(dequantize = decision.dequantize, reason = %decision.reason, "GGUF weights on the CPU");
    decision
}

/// Whether the switch is on in this process, as candle will read it.
pub fn switch_is_on() -> bool {
    std::env::var(CANDLE_DEQUANTIZE_ALL).is_ok_and(|v| candle_reads(&v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions() {
        let small = Target::CpuGguf {
            bytes: Some(98 << 20),
        };
        let big = Target::CpuGguf {
            bytes: Some(4 << 30),
        };
        let hub = Target::CpuGguf { bytes: None };
        // (setting, operator's variable, target, dequantize, set the switch)
        let cases = [
            (Dequantize::Auto, None, small, true, true),
            (Dequantize::Auto, None, big, false, false),
            (Dequantize::Auto, None, hub, false, false),
            (Dequantize::Always, None, big, true, true),
            (Dequantize::Always, None, hub, true, true),
            (Dequantize::Never, None, small, false, false),
            (Dequantize::Auto, Some("0"), small, false, false),
            (Dequantize::Auto, Some(""), small, false, false),
            (Dequantize::Never, Some("1"), small, true, false),
            (Dequantize::Always, None, Target::Other, false, false),
            (Dequantize::Auto, Some("1"), Target::Other, false, false),
        ];
        for (setting, operator, target, dequantize, set_switch) in cases {
            let d = decide(setting, operator, target);
            assert_eq!(
                (d.dequantize, d.set_switch),
                (dequantize, set_switch),
                "{setting:?} {operator:?} {target:?}: {}",
                d.reason
            );
        }
        assert_eq!(
            decide(Dequantize::Auto, None, small).reason,
            "small model: about 686 MiB in F32"
        );
        assert!(decide(Dequantize::Auto, Some("0"), small)
            .reason
            .contains("set by the operator"));
    }

    #[test]
    fn several_models_count_together() {
        let a = Target::CpuGguf {
            bytes: Some(100 << 20),
        };
        let b = Target::CpuGguf {
            bytes: Some(300 << 20),
        };
        let hub = Target::CpuGguf { bytes: None };
        assert_eq!(combined(&[]), Target::Other);
        assert_eq!(combined(&[Target::Other, Target::Other]), Target::Other);
        assert_eq!(
            combined(&[a, Target::Other, b]),
            Target::CpuGguf {
                bytes: Some(400 << 20)
            }
        );
        assert_eq!(combined(&[a, hub]), hub);
        // Two small models fit; three of 100 MiB and one of 300 MiB (about 4.2 GiB in F32) not.
        assert!(decide(Dequantize::Auto, None, combined(&[a, a])).dequantize);
        assert!(!decide(Dequantize::Auto, None, combined(&[a, a, a, b])).dequantize);
    }

    #[test]
    fn local_files_are_sized_and_hub_files_are_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("a.gguf"), [0u8; 100]).expect("write");
        std::fs::write(dir.path().join("b.gguf"), [0u8; 20]).expect("write");
        let local = Source::LocalGguf {
            dir: dir.path().to_path_buf(),
            files: vec!["a.gguf".into(), "b.gguf".into()],
        };
        assert_eq!(target(&local, true), Target::CpuGguf { bytes: Some(120) });
        assert_eq!(target(&local, false), Target::Other);
        let hub = Source::HubGguf {
            repo: "org/m-GGUF".into(),
            files: vec!["m.Q4_K_M.gguf".into()],
        };
        assert_eq!(target(&hub, true), Target::CpuGguf { bytes: None });
        assert_eq!(target(&Source::Hub("org/m".into()), true), Target::Other);
        assert_eq!(
            target(&Source::LocalDir(dir.path().to_path_buf()), true),
            Target::Other
        );
    }
}
