//! Rendering canonical results as `text_completion` objects: whole, and as stream chunks. Pure.

use auxot_common::chat::{ChatEvent, FinishReason, Usage};
use auxot_common::completion::Completion;
use serde_json::{json, Value};

use crate::dialect::openai::error::error_body;
use crate::dialect::openai::response::usage;
use crate::error::{ApiError, DialectKind};

/// What identifies one completion in every object rendered for it.
#[derive(Debug, Clone)]
pub struct Header {
    pub id: String,
    pub created: u64,
    /// The prompt, when `echo` asked for it in front of the text.
    pub echo: Option<String>,
}

/// The legacy `finish_reason`: `stop` or `length` (a stop string counts as `stop`; a tool call
/// cannot happen without tools).
pub fn finish_reason(reason: FinishReason) -> &'static str {
    match reason {
        FinishReason::Length => "length",
        FinishReason::Stop | FinishReason::StopSequence | FinishReason::ToolCalls => "stop",
    }
}

fn object(header: &Header, model: &str, choices: Value) -> Value {
    json!({
        "id": header.id,
        "object": "text_completion",
        "created": header.created,
        "model": model,
        "choices": choices,
    })
}

fn choice(text: &str, finish: Option<FinishReason>) -> Value {
    json!([{
        "text": text,
        "index": 0,
        "logprobs": null,
        "finish_reason": finish.map(finish_reason),
    }])
}

/// A whole `text_completion`.
pub fn completion(header: &Header, done: &Completion) -> Value {
    let text = match &header.echo {
        Some(prompt) => format!("{prompt}{}", done.text),
        None => done.text.clone(),
    };
    let mut body = object(
        header,
        &done.model,
        choice(&text, Some(done.finish.unwrap_or(FinishReason::Stop))),
    );
    body["usage"] = usage(done.usage.prompt_tokens, done.usage.completion_tokens);
    body
}

/// Turns events into `text_completion` chunk payloads.
pub struct ChunkRenderer {
    header: Header,
    model: String,
    include_usage: bool,
    usage: Option<Usage>,
}

impl ChunkRenderer {
    pub fn new(header: Header, model: String, include_usage: bool) -> Self {
        ChunkRenderer {
            header,
            model,
            include_usage,
            usage: None,
        }
    }

    fn chunk(&mut self, text: &str, finish: Option<FinishReason>) -> String {
        // The echoed prompt leads the first piece of text.
        let text = match self.header.echo.take() {
            Some(prompt) => format!("{prompt}{text}"),
            None => text.to_string(),
        };
        object(&self.header, &self.model, choice(&text, finish)).to_string()
    }

    pub fn on_event(&mut self, event: &ChatEvent) -> Vec<String> {
        match event {
            ChatEvent::Text { text } => vec![self.chunk(text, None)],
            // No reasoning or tool calls in a raw completion.
            ChatEvent::PromptTokens { .. }
            | ChatEvent::Reasoning { .. }
            | ChatEvent::ToolCall { .. } => Vec::new(),
            ChatEvent::Usage(usage) => {
                self.usage = Some(*usage);
                Vec::new()
            }
            ChatEvent::Finish { reason, .. } => {
                let mut out = vec![self.chunk("", Some(*reason))];
                if self.include_usage {
                    let u = self.usage.unwrap_or_default();
                    let mut last = object(&self.header, &self.model, json!([]));
                    last["usage"] = usage(u.prompt_tokens, u.completion_tokens);
                    out.push(last.to_string());
                }
                out
            }
            ChatEvent::Error(error) => {
                let error = ApiError::from(error);
                let status = error.status(DialectKind::OpenAi);
                vec![error_body(&error, status).to_string()]
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(echo: Option<&str>) -> Header {
        Header {
            id: "cmpl-1".into(),
            created: 7,
            echo: echo.map(str::to_string),
        }
    }

    #[test]
    fn a_whole_completion() {
        let done = Completion {
            model: "m".into(),
            text: " there".into(),
            usage: Usage {
                prompt_tokens: 2,
                completion_tokens: 1,
            },
            finish: Some(FinishReason::Length),
            ..Default::default()
        };
        assert_eq!(
            completion(&header(None), &done),
            json!({
                "id": "cmpl-1", "object": "text_completion", "created": 7, "model": "m",
                "choices": [{"text": " there", "index": 0, "logprobs": null, "finish_reason": "length"}],
                "usage": {"prompt_tokens": 2, "completion_tokens": 1, "total_tokens": 3},
            })
        );
        let echoed = completion(&header(Some("Hi")), &done);
        assert_eq!(echoed["choices"][0]["text"], "Hi there");
    }

    #[test]
    fn a_stream_of_chunks_with_usage_last() {
        let mut r = ChunkRenderer::new(header(Some("Hi")), "m".into(), true);
        let mut out = Vec::new();
        for event in [
            ChatEvent::PromptTokens { tokens: 2 },
            ChatEvent::Text {
                text: " the".into(),
            },
            ChatEvent::Text { text: "re".into() },
            ChatEvent::Usage(Usage {
                prompt_tokens: 2,
                completion_tokens: 2,
            }),
            ChatEvent::Finish {
                reason: FinishReason::StopSequence,
                stop_sequence: Some(".".into()),
            },
        ] {
            out.extend(r.on_event(&event));
        }
        let chunks: Vec<Value> = out
            .iter()
            .map(|p| serde_json::from_str(p).expect("json"))
            .collect();
        assert_eq!(chunks.len(), 4);
        assert_eq!(chunks[0]["choices"][0]["text"], "Hi the");
        assert_eq!(chunks[0]["choices"][0]["finish_reason"], Value::Null);
        assert_eq!(chunks[1]["choices"][0]["text"], "re");
        assert_eq!(chunks[2]["choices"][0]["text"], "");
        assert_eq!(chunks[2]["choices"][0]["finish_reason"], "stop");
        assert_eq!(chunks[3]["choices"], json!([]));
        assert_eq!(chunks[3]["usage"]["total_tokens"], 4);
        assert!(chunks.iter().all(|c| c["object"] == "text_completion"));
    }
}
