//! Legacy text-completion requests (`POST /completions`) and their translation to the canonical
//! request: the prompt goes to the model as is, with no chat template.
//!
//! Pure: no I/O. One prompt per request (OpenAI accepts a list and answers one choice per
//! prompt; auxot answers one choice and refuses more rather than dropping any).

use auxot_common::chat::{ChatRequest, Sampling};
use serde::Deserialize;
use serde_json::Value;

use crate::error::ApiError;
use crate::limits;

/// OpenAI's default `max_tokens` for completions (chat has none).
pub const DEFAULT_MAX_TOKENS: u32 = 16;

/// The request body, as far as auxot reads it. Unknown fields are ignored.
#[derive(Debug, Deserialize)]
pub struct CompletionRequest {
    pub model: String,
    pub prompt: Option<Value>,
    #[serde(default)]
    pub stream: bool,
    pub stream_options: Option<StreamOptions>,
    pub max_tokens: Option<u32>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    /// Not in OpenAI's API; accepted because many local-model clients send it.
    pub top_k: Option<u32>,
    pub n: Option<u32>,
    pub best_of: Option<u32>,
    pub stop: Option<Value>,
    pub frequency_penalty: Option<f32>,
    pub presence_penalty: Option<f32>,
    #[serde(default)]
    pub echo: bool,
    pub logprobs: Option<Value>,
    pub suffix: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

/// A translated request and what shapes its response.
#[derive(Debug)]
pub struct Translated {
    pub request: ChatRequest,
    pub stream: bool,
    pub include_usage: bool,
    /// The prompt, when `echo` asks for it in front of the answer.
    pub echo: Option<String>,
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::invalid(message)
}

/// The one prompt of a request: a string, or a list holding one string.
fn prompt(value: Option<Value>) -> Result<String, ApiError> {
    let text = match value {
        None | Some(Value::Null) => {
            return Err(invalid("prompt: required (the text the model continues)"))
        }
        Some(Value::String(text)) => text,
        Some(Value::Array(items)) => match items.as_slice() {
            [Value::String(text)] => text.clone(),
            [] => return Err(invalid("prompt: must not be an empty list")),
            [Value::String(_), ..] => {
                return Err(invalid(
                    "prompt: one prompt per request; send the others as separate requests",
                ))
            }
            _ => {
                return Err(invalid(
                    "prompt: token ids are not supported; send the prompt as text",
                ))
            }
        },
        Some(_) => return Err(invalid("prompt: must be a string")),
    };
    if text.is_empty() {
        return Err(invalid("prompt: must not be empty"));
    }
    Ok(text)
}

fn stop(value: Option<Value>) -> Result<Vec<String>, ApiError> {
    let stop = match value {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s],
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|item| match item {
                Value::String(s) => Ok(s),
                _ => Err(invalid("stop: must be a string or a list of strings")),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(invalid("stop: must be a string or a list of strings")),
    };
    // OpenAI's own rule; the shared caps bound their length.
    if stop.len() > 4 {
        return Err(invalid("stop: at most 4 sequences"));
    }
    limits::check_stops("stop", stop.iter())?;
    Ok(stop)
}

/// Translates and validates a request.
pub fn translate(input: CompletionRequest) -> Result<Translated, ApiError> {
    if input.model.trim().is_empty() {
        return Err(invalid(
            "model: must not be empty (use \"auto\" for any model)",
        ));
    }
    let prompt = prompt(input.prompt)?;
    if input.n.is_some_and(|n| n != 1) {
        return Err(invalid("n: only 1 choice per request is supported"));
    }
    if input.best_of.is_some_and(|n| n != 1) {
        return Err(invalid("best_of: only 1 is supported"));
    }
    if input.logprobs.as_ref().is_some_and(|v| !v.is_null()) {
        return Err(invalid("logprobs: not supported"));
    }
    if input.suffix.as_deref().is_some_and(|s| !s.is_empty()) {
        return Err(invalid("suffix: not supported"));
    }
    crate::dialect::openai::request::check_sampling(input.temperature, input.top_p)?;
    let max_tokens = input.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS);
    if max_tokens == 0 {
        return Err(invalid("max_tokens: must be at least 1"));
    }
    Ok(Translated {
        echo: input.echo.then(|| prompt.clone()),
        request: ChatRequest {
            model: input.model,
            prompt: Some(prompt),
            sampling: Sampling {
                temperature: input.temperature,
                top_p: input.top_p,
                top_k: input.top_k,
                max_tokens: Some(max_tokens),
                stop: stop(input.stop)?,
                frequency_penalty: input.frequency_penalty,
                presence_penalty: input.presence_penalty,
            },
            ..Default::default()
        },
        stream: input.stream,
        include_usage: input.stream_options.is_some_and(|o| o.include_usage),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(body: Value) -> Result<Translated, ApiError> {
        let request: CompletionRequest =
            serde_json::from_value(body).map_err(|e| invalid(e.to_string()))?;
        translate(request)
    }

    #[test]
    fn a_prompt_translates_to_a_raw_prompt_with_openais_defaults() {
        let t = parse(json!({"model": "m", "prompt": "Once upon a time"})).expect("valid");
        assert_eq!(t.request.prompt.as_deref(), Some("Once upon a time"));
        assert!(t.request.messages.is_empty());
        assert_eq!(t.request.sampling.max_tokens, Some(DEFAULT_MAX_TOKENS));
        assert!(!t.stream && !t.include_usage && t.echo.is_none());

        let t = parse(json!({
            "model": "m", "prompt": ["Hi"], "max_tokens": 5, "stop": ["\n", "."],
            "temperature": 0, "stream": true, "stream_options": {"include_usage": true},
            "echo": true, "n": 1, "best_of": 1, "logprobs": null, "suffix": null, "seed": 3
        }))
        .expect("valid");
        assert_eq!(t.request.prompt.as_deref(), Some("Hi"));
        assert_eq!(t.request.sampling.max_tokens, Some(5));
        assert_eq!(t.request.sampling.stop, ["\n", "."]);
        assert_eq!(t.request.sampling.temperature, Some(0.0));
        assert!(t.stream && t.include_usage);
        assert_eq!(t.echo.as_deref(), Some("Hi"));
    }

    #[test]
    fn invalid_requests_say_what_is_wrong() {
        let cases = [
            (json!({"model": "m"}), "prompt: required"),
            (
                json!({"model": "m", "prompt": ""}),
                "prompt: must not be empty",
            ),
            (
                json!({"model": "m", "prompt": ["a", "b"]}),
                "one prompt per request",
            ),
            (json!({"model": "m", "prompt": [1, 2, 3]}), "token ids"),
            (json!({"model": "m", "prompt": [[1, 2]]}), "token ids"),
            (
                json!({"model": "m", "prompt": 7}),
                "prompt: must be a string",
            ),
            (
                json!({"model": "", "prompt": "x"}),
                "model: must not be empty",
            ),
            (json!({"model": "m", "prompt": "x", "n": 2}), "n: only 1"),
            (
                json!({"model": "m", "prompt": "x", "best_of": 3}),
                "best_of",
            ),
            (
                json!({"model": "m", "prompt": "x", "logprobs": 2}),
                "logprobs",
            ),
            (
                json!({"model": "m", "prompt": "x", "suffix": "end"}),
                "suffix",
            ),
            (
                json!({"model": "m", "prompt": "x", "max_tokens": 0}),
                "max_tokens",
            ),
            (
                json!({"model": "m", "prompt": "x", "stop": ["a".repeat(257)]}),
                "stop[0]: 257 bytes in a stop string exceed the limit of 256",
            ),
            (
                json!({"model": "m", "prompt": "x", "temperature": 9}),
                "temperature",
            ),
            (
                json!({"model": "m", "prompt": "x", "stop": ["a", "b", "c", "d", "e"]}),
                "stop: at most 4",
            ),
            (
                json!({"model": "m", "prompt": "x", "stop": 3}),
                "stop: must be",
            ),
        ];
        for (body, expected) in cases {
            let err = parse(body.clone()).expect_err("invalid");
            assert!(err.message.contains(expected), "{body}: {}", err.message);
        }
    }
}
