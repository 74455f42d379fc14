//! Several models on one command line: each model option belongs to the `--model` before it.
//!
//! `auxot-worker join SEED --model a.gguf --model-name chat --model b --isq Q4K` serves `chat`
//! from `a.gguf` and `b` quantized. clap collects each flag's values in order with their
//! positions on the command line ([`ArgMatches::indices_of`]); [`group`] hands every value to the
//! last `--model` before it. With one model (or none: the synthetic engine takes
//! `--model-name` and `--max-seqs` too) the positions do not matter, so `--model-name x --model
//! m` still works. A value from an `AUXOT_*` variable (used only when the flag is absent from the
//! command line) applies to every model, like a default.

use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::ArgMatches;

use super::JoinArgs;
use crate::engine::mistral::options::{parse_device_layers, ModelOptions, ModelSpec};

/// One model and the options given for it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelSlot {
    /// `None` only for the single slot of a worker without `--model`.
    pub model: Option<String>,
    pub gguf_files: Vec<String>,
    pub name: Option<String>,
    pub chat_template: Option<PathBuf>,
    pub max_seqs: Option<usize>,
    pub gpu_memory_utilization: Option<f32>,
    pub options: ModelOptions,
}

impl ModelSlot {
    /// The model as the engine takes it; `None` without `--model`.
    pub fn spec(&self) -> Option<ModelSpec> {
        let model = self.model.clone()?;
        let mut spec = ModelSpec::new(model);
        spec.gguf_files = self.gguf_files.clone();
        spec.name = self.name.clone();
        spec.chat_template = self.chat_template.clone();
        spec.max_seqs = self.max_seqs;
        if let Some(share) = self.gpu_memory_utilization {
            spec.gpu_memory_utilization = share;
        }
        spec.options = self.options.clone();
        Some(spec)
    }
}

/// Where each model starts, and how values are handed out.
struct Slots<'a> {
    matches: Option<&'a ArgMatches>,
    /// Command-line positions of the `--model` values (empty when they came from the environment
    /// or positions are unknown).
    starts: Vec<usize>,
    /// Number of slots: one per model, at least one.
    count: usize,
}

impl Slots<'_> {
    /// `values` of the argument `id` (flag `--flag`), per slot. `single`: at most one per model.
    fn assign<T: Clone>(
        &self,
        id: &str,
        flag: &str,
        values: &[T],
        single: bool,
    ) -> Result<Vec<Vec<T>>, String> {
        let mut out = vec![Vec::new(); self.count];
        if values.is_empty() {
            return Ok(out);
        }
        let from_command_line = self
            .matches
            .is_some_and(|m| m.value_source(id) == Some(ValueSource::CommandLine));
        let positions: Option<Vec<usize>> = self
            .matches
            .and_then(|m| m.indices_of(id))
            .map(Iterator::collect);
        match positions {
            Some(positions) if self.count > 1 && from_command_line => {
                for (value, position) in values.iter().zip(positions) {
                    let Some(slot) = self.starts.iter().rposition(|&start| start < position) else {
                        return Err(format!(
                            "{flag} comes before the first --model: give each model's options after its --model"
                        ));
                    };
                    out[slot].push(value.clone());
                }
            }
            // Positions unknown: the first model's.
            _ if self.matches.is_none() => out[0].extend(values.iter().cloned()),
            // One slot, or a variable (a default for every model).
            _ => {
                for slot in &mut out {
                    slot.extend(values.iter().cloned());
                }
            }
        }
        if single {
            for (slot, values) in out.iter().enumerate() {
                if values.len() > 1 {
                    let model = self.model_label(slot);
                    return Err(format!("{flag} is given more than once for {model}"));
                }
            }
        }
        Ok(out)
    }

    fn model_label(&self, slot: usize) -> String {
        if self.count > 1 {
            format!("model {} (the --model number {})", slot + 1, slot + 1)
        } else {
            "the model".into()
        }
    }
}

/// Takes the one value of each slot.
fn one<T>(values: Vec<Vec<T>>) -> Vec<Option<T>> {
    values.into_iter().map(|v| v.into_iter().next()).collect()
}

/// Groups the model options of `args` by the `--model` each follows; `matches` are the `join`
/// subcommand's (positions and sources).
pub fn group(matches: &ArgMatches, args: &JoinArgs) -> Result<Vec<ModelSlot>, String> {
    group_with(Some(matches), args)
}

/// [`group`] without positions (arguments parsed by clap alone): every value is the first
/// model's, which is right for zero or one `--model`.
pub fn group_in_order(args: &JoinArgs) -> Vec<ModelSlot> {
    group_with(None, args).unwrap_or_default()
}

fn group_with(matches: Option<&ArgMatches>, args: &JoinArgs) -> Result<Vec<ModelSlot>, String> {
    let from_command_line =
        matches.is_some_and(|m| m.value_source("model") == Some(ValueSource::CommandLine));
    let starts: Vec<usize> = match matches.and_then(|m| m.indices_of("model")) {
        Some(indices) if from_command_line => indices.collect(),
        _ => Vec::new(),
    };
    let count = args.model.len().max(1);
    if count > 1 && starts.len() != count {
        // Without positions a second model would get no options at all: refuse rather than guess.
        if matches.is_some() {
            return Err("several --model values must be given on the command line".into());
        }
    }
    let slots = Slots {
        matches,
        starts,
        count,
    };
    let names = one(slots.assign("model_name", "--model-name", &args.model_name, true)?);
    let gguf_files = slots.assign("gguf_files", "--gguf-file", &args.gguf_files, false)?;
    let templates = one(slots.assign(
        "chat_template",
        "--chat-template",
        &args.chat_template,
        true,
    )?);
    let max_seqs = one(slots.assign("max_seqs", "--max-seqs", &args.max_seqs, true)?);
    let shares = one(slots.assign(
        "gpu_memory_utilization",
        "--gpu-memory-utilization",
        &args.gpu_memory_utilization,
        true,
    )?);
    let kv_tokens = one(slots.assign(
        "kv_cache_tokens",
        "--kv-cache-tokens",
        &args.kv_cache_tokens,
        true,
    )?);
    let per_request = one(slots.assign(
        "kv_tokens_per_request",
        "--kv-tokens-per-request",
        &args.kv_tokens_per_request,
        true,
    )?);
    let isq = one(slots.assign("isq", "--isq", &args.isq, true)?);
    let gpu = one(slots.assign("gpu", "--gpu", &args.gpu, true)?);
    let device_layers = one(slots.assign(
        "device_layers",
        "--device-layers",
        &args.device_layers,
        true,
    )?);
    let map_seq_len = one(slots.assign(
        "device_map_max_seq_len",
        "--device-map-max-seq-len",
        &args.device_map_max_seq_len,
        true,
    )?);
    let map_batch = one(slots.assign(
        "device_map_max_batch_size",
        "--device-map-max-batch-size",
        &args.device_map_max_batch_size,
        true,
    )?);
    let lora = slots.assign("lora", "--lora", &args.lora, false)?;
    let xlora = one(slots.assign("xlora", "--xlora", &args.xlora, true)?);
    let order = one(slots.assign(
        "adapter_order",
        "--adapter-order",
        &args.adapter_order,
        true,
    )?);
    let target_index = one(slots.assign(
        "xlora_target_index",
        "--xlora-target-index",
        &args.xlora_target_index,
        true,
    )?);
    let draft = one(slots.assign("draft_model", "--draft-model", &args.draft_model, true)?);
    let draft_files = slots.assign(
        "draft_gguf_files",
        "--draft-gguf-file",
        &args.draft_gguf_files,
        false,
    )?;
    let gamma = one(slots.assign(
        "speculative_gamma",
        "--speculative-gamma",
        &args.speculative_gamma,
        true,
    )?);
    let mut out = Vec::with_capacity(count);
    for slot in 0..count {
        let device_layers = match &device_layers[slot] {
            // Checked by the flag's value parser.
            Some(spec) => Some(parse_device_layers(spec)?),
            None => None,
        };
        out.push(ModelSlot {
            model: args.model.get(slot).cloned(),
            gguf_files: gguf_files[slot].clone(),
            name: names[slot].clone(),
            chat_template: templates[slot].clone(),
            max_seqs: max_seqs[slot],
            gpu_memory_utilization: shares[slot],
            options: ModelOptions {
                isq: isq[slot].clone(),
                gpu: gpu[slot],
                device_layers,
                device_map_max_seq_len: map_seq_len[slot],
                device_map_max_batch_size: map_batch[slot],
                kv_cache_tokens: kv_tokens[slot],
                kv_tokens_per_request: per_request[slot],
                lora: lora[slot].clone(),
                xlora: xlora[slot].clone(),
                adapter_order: order[slot].clone(),
                xlora_target_index: target_index[slot],
                draft_model: draft[slot].clone(),
                draft_gguf_files: draft_files[slot].clone(),
                speculative_gamma: gamma[slot],
            },
        });
    }
    Ok(out)
}
