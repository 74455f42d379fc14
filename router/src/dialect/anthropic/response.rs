//! Rendering canonical results as Anthropic responses. Pure functions.

use auxot_common::chat::FinishReason;
use auxot_common::completion::Completion;
use auxot_common::mesh::node::ModelInfo;
use serde_json::{json, Value};

/// Anthropic's `stop_reason`.
pub fn stop_reason(reason: FinishReason) -> &'static str {
    match reason {
        FinishReason::Stop => "end_turn",
        FinishReason::StopSequence => "stop_sequence",
        FinishReason::Length => "max_tokens",
        FinishReason::ToolCalls => "tool_use",
    }
}

/// Tool-use ids in Anthropic's `toolu_` form (workers mint OpenAI-style `call_` ids).
pub fn tool_use_id(id: &str) -> String {
    match id.strip_prefix("call_") {
        Some(rest) => format!("toolu_{rest}"),
        None => id.to_string(),
    }
}

/// The `input` object of a tool call; arguments that are not a JSON object are wrapped so the
/// block stays valid.
pub fn tool_input(arguments: &str) -> Value {
    match serde_json::from_str::<Value>(arguments) {
        Ok(value @ Value::Object(_)) => value,
        Ok(other) => json!({"value": other}),
        Err(_) if arguments.trim().is_empty() => json!({}),
        Err(_) => json!({"raw": arguments}),
    }
}

/// An opaque signature for a thinking block. auxot does not verify signatures on the way back
/// in; this one only lets clients that require the field round-trip the block.
pub fn thinking_signature(thinking: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, thinking.as_bytes());
    format!("auxot-{}", hex::encode(&digest.as_ref()[..16]))
}

/// A non-streaming `message`.
pub fn message(id: &str, done: &Completion) -> Value {
    let mut content = Vec::new();
    if !done.reasoning.is_empty() {
        content.push(json!({
            "type": "thinking",
            "thinking": done.reasoning,
            "signature": thinking_signature(&done.reasoning),
        }));
    }
    if !done.text.is_empty() || done.tool_calls.is_empty() {
        content.push(json!({"type": "text", "text": done.text}));
    }
    for call in &done.tool_calls {
        content.push(json!({
            "type": "tool_use",
            "id": tool_use_id(&call.id),
            "name": call.name,
            "input": tool_input(&call.arguments),
        }));
    }
    json!({
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": done.model,
        "content": content,
        "stop_reason": stop_reason(done.finish.unwrap_or(FinishReason::Stop)),
        "stop_sequence": done.stop_sequence,
        "usage": {"input_tokens": done.usage.prompt_tokens, "output_tokens": done.usage.completion_tokens},
    })
}

/// RFC 3339 UTC time for a Unix timestamp.
pub fn rfc3339(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    )
}

/// One model object.
pub fn model(info: &ModelInfo, created: u64) -> Value {
    json!({
        "type": "model",
        "id": info.id,
        "display_name": info.id,
        "created_at": rfc3339(created),
    })
}

/// The models list (one page with everything).
pub fn model_list(models: &[ModelInfo], created: u64) -> Value {
    json!({
        "data": models.iter().map(|m| model(m, created)).collect::<Vec<_>>(),
        "first_id": models.first().map(|m| m.id.clone()),
        "last_id": models.last().map(|m| m.id.clone()),
        "has_more": false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use auxot_common::chat::Usage;
    use auxot_common::completion::ToolCall;

    #[test]
    fn stop_reasons_map_exactly() {
        assert_eq!(stop_reason(FinishReason::Stop), "end_turn");
        assert_eq!(stop_reason(FinishReason::StopSequence), "stop_sequence");
        assert_eq!(stop_reason(FinishReason::Length), "max_tokens");
        assert_eq!(stop_reason(FinishReason::ToolCalls), "tool_use");
    }

    #[test]
    fn message_with_thinking_text_and_tool_use() {
        let done = Completion {
            model: "m".into(),
            reasoning: "hmm".into(),
            text: "Let me check.".into(),
            tool_calls: vec![ToolCall {
                id: "call_ab".into(),
                name: "f".into(),
                arguments: "{\"x\":1}".into(),
            }],
            usage: Usage {
                prompt_tokens: 7,
                completion_tokens: 9,
            },
            finish: Some(FinishReason::ToolCalls),
            ..Default::default()
        };
        let body = message("msg_1", &done);
        let types: Vec<&str> = body["content"]
            .as_array()
            .expect("content")
            .iter()
            .filter_map(|b| b["type"].as_str())
            .collect();
        assert_eq!(types, ["thinking", "text", "tool_use"]);
        assert_eq!(body["content"][2]["id"], "toolu_ab");
        assert_eq!(body["content"][2]["input"], json!({"x": 1}));
        assert_eq!(body["stop_reason"], "tool_use");
        assert_eq!(
            body["usage"],
            json!({"input_tokens": 7, "output_tokens": 9})
        );
        assert!(body["content"][0]["signature"]
            .as_str()
            .is_some_and(|s| !s.is_empty()));
    }

    #[test]
    fn stop_sequence_is_reported() {
        let done = Completion {
            model: "m".into(),
            text: "a".into(),
            finish: Some(FinishReason::StopSequence),
            stop_sequence: Some("END".into()),
            ..Default::default()
        };
        let body = message("msg_1", &done);
        assert_eq!(
            (body["stop_reason"].clone(), body["stop_sequence"].clone()),
            (json!("stop_sequence"), json!("END"))
        );
    }

    #[test]
    fn dates_and_lists() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_481_953), "2026-11-24T00:59:13Z");
        let models = vec![
            ModelInfo {
                id: "a".into(),
                context_length: None,
                vision: false,
                reasoning: false,
                ..Default::default()
            },
            ModelInfo {
                id: "b".into(),
                context_length: None,
                vision: false,
                reasoning: false,
                ..Default::default()
            },
        ];
        let list = model_list(&models, 0);
        assert_eq!(
            (
                list["first_id"].clone(),
                list["last_id"].clone(),
                list["has_more"].clone()
            ),
            (json!("a"), json!("b"), json!(false))
        );
        assert_eq!(model_list(&[], 0)["first_id"], Value::Null);
    }

    #[test]
    fn tool_inputs_are_always_objects() {
        assert_eq!(tool_input("{\"a\":1}"), json!({"a": 1}));
        assert_eq!(tool_input(""), json!({}));
        assert_eq!(tool_input("[1]"), json!({"value": [1]}));
        assert_eq!(tool_input("{oops"), json!({"raw": "{oops"}));
    }
}
