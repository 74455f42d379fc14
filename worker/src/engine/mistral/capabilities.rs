//! Whether a loaded chat model reasons, judged from what its chat template does.
//!
//! mistral.rs 0.8.1 does not expose the template it loaded (from GGUF metadata, a model
//! directory, the hub or `--chat-template`), so the worker asks the engine to render a one-line
//! chat with different thinking settings and compares the prompts. A model reasons when its
//! template reacts to `enable_thinking` (Qwen3, SmolLM3) or to a reasoning effort (gpt-oss's
//! Harmony format), or opens a `<think>` block in the generation prompt by itself (QwQ,
//! DeepSeek-R1 distills). A model that thinks without any of these needs `--reasoning on`; one
//! whose template reacts but which should not be offered as reasoning, `--reasoning off`.
//! Reading the template text instead would need a GGUF metadata reader and the hub cache layout
//! for every source kind; rendering works the same for all of them.

use mistralrs::core::ReasoningEffort;
use mistralrs::Model;
use tracing::warn;

use super::tokenize::render_probe;

/// The probe prompts of one template.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Probes {
    /// Thinking left to the template.
    pub default: String,
    pub thinking_on: String,
    pub thinking_off: String,
    pub effort_low: String,
    pub effort_high: String,
}

/// Whether the template the probes came from makes the model reason.
pub fn reasons(probes: &Probes) -> bool {
    probes.thinking_on != probes.thinking_off
        || probes.effort_low != probes.effort_high
        || probes.default.trim_end().ends_with("<think>")
}

/// Renders the probes with the loaded model's template and judges them; false (with a warning)
/// when the template cannot be rendered.
pub async fn detect_reasoning(model: &Model) -> bool {
    let probes = async {
        Ok::<_, auxot_common::error::RemoteError>(Probes {
            default: render_probe(model, None, None).await?,
            thinking_on: render_probe(model, Some(true), None).await?,
            thinking_off: render_probe(model, Some(false), None).await?,
            effort_low: render_probe(model, None, Some(ReasoningEffort::Low)).await?,
            effort_high: render_probe(model, None, Some(ReasoningEffort::High)).await?,
        })
    };
    match probes.await {
        Ok(probes) => reasons(&probes),
        Err(err) => {
            warn!(error = %err.message, "could not render the chat template to detect reasoning; advertising none (set --reasoning on to override)");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn same(prompt: &str) -> Probes {
        Probes {
            default: prompt.into(),
            thinking_on: prompt.into(),
            thinking_off: prompt.into(),
            effort_low: prompt.into(),
            effort_high: prompt.into(),
        }
    }

    #[test]
    fn templates_that_ignore_thinking_do_not_reason() {
        assert!(!reasons(&same(
            "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
        )));
    }

    #[test]
    fn a_thinking_toggle_an_effort_or_an_open_think_block_means_reasoning() {
        // Qwen3: enable_thinking=false closes an empty think block.
        let mut qwen3 = same("<|im_start|>assistant\n");
        qwen3.thinking_off = "<|im_start|>assistant\n<think>\n\n</think>\n\n".into();
        assert!(reasons(&qwen3));
        // Harmony: the effort is written into the system prompt.
        let mut harmony = same("Reasoning: medium");
        harmony.effort_low = "Reasoning: low".into();
        harmony.effort_high = "Reasoning: high".into();
        assert!(reasons(&harmony));
        // QwQ: the generation prompt opens the block.
        assert!(reasons(&same("<|im_start|>assistant\n<think>\n")));
    }
}
