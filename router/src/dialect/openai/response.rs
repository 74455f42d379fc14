//! Rendering canonical results as OpenAI responses. Pure functions.

use auxot_common::chat::FinishReason;
use auxot_common::completion::Completion;
use auxot_common::mesh::node::ModelInfo;
use serde_json::{json, Value};

/// OpenAI's `finish_reason` for a canonical one. A stop string counts as `stop`.
pub fn finish_reason(reason: FinishReason) -> &'static str {
    match reason {
        FinishReason::Stop | FinishReason::StopSequence => "stop",
        FinishReason::Length => "length",
        FinishReason::ToolCalls => "tool_calls",
    }
}

/// The `usage` object.
pub fn usage(prompt: u32, completion: u32) -> Value {
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    })
}

/// A non-streaming `chat.completion`.
pub fn completion(id: &str, created: u64, done: &Completion) -> Value {
    let mut message = json!({
        "role": "assistant",
        "content": if done.text.is_empty() && !done.tool_calls.is_empty() { Value::Null } else { Value::String(done.text.clone()) },
        "refusal": null,
    });
    if !done.reasoning.is_empty() {
        message["reasoning_content"] = Value::String(done.reasoning.clone());
    }
    if !done.tool_calls.is_empty() {
        message["tool_calls"] = done
            .tool_calls
            .iter()
            .map(|call| {
                json!({
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments},
                })
            })
            .collect();
    }
    json!({
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": done.model,
        "choices": [{
            "index": 0,
            "message": message,
            "finish_reason": finish_reason(done.finish.unwrap_or(FinishReason::Stop)),
            "logprobs": null,
        }],
        "usage": usage(done.usage.prompt_tokens, done.usage.completion_tokens),
    })
}

/// One entry of the models list.
pub fn model(info: &ModelInfo, created: u64) -> Value {
    let mut value = json!({
        "id": info.id,
        "object": "model",
        "created": created,
        "owned_by": "auxot",
    });
    if let Some(context) = info.context_length {
        value["context_length"] = json!(context);
    }
    value["capabilities"] = json!({
        "vision": info.vision,
        "reasoning": info.reasoning,
        "embedding": !info.kind.is_chat(),
    });
    value
}

/// The models list.
pub fn model_list(models: &[ModelInfo], created: u64) -> Value {
    json!({
        "object": "list",
        "data": models.iter().map(|m| model(m, created)).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use auxot_common::chat::Usage;
    use auxot_common::completion::ToolCall;

    #[test]
    fn text_completion() {
        let done = Completion {
            model: "m".into(),
            text: "Paris.".into(),
            usage: Usage {
                prompt_tokens: 10,
                completion_tokens: 3,
            },
            finish: Some(FinishReason::StopSequence),
            ..Default::default()
        };
        let body = completion("chatcmpl-1", 7, &done);
        assert_eq!(body["choices"][0]["message"]["content"], "Paris.");
        assert_eq!(body["choices"][0]["finish_reason"], "stop");
        assert_eq!(body["usage"]["total_tokens"], 13);
        assert!(body["choices"][0]["message"].get("tool_calls").is_none());
    }

    #[test]
    fn tool_call_completion_has_null_content() {
        let done = Completion {
            model: "m".into(),
            tool_calls: vec![ToolCall {
                id: "call_1".into(),
                name: "f".into(),
                arguments: "{}".into(),
            }],
            finish: Some(FinishReason::ToolCalls),
            ..Default::default()
        };
        let body = completion("chatcmpl-1", 7, &done);
        let message = &body["choices"][0]["message"];
        assert!(message["content"].is_null());
        assert_eq!(message["tool_calls"][0]["function"]["name"], "f");
        assert_eq!(body["choices"][0]["finish_reason"], "tool_calls");
    }
}
