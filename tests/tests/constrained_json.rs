//! Forced tool calls and `json_schema` answers with the real model, as a new user sends them:
//! schemas that leave objects open, no temperature (the engine's default) and OpenAI's and
//! Anthropic's documented default of 1.0, repeated because mistral.rs 0.8.1 has no per-request
//! seed (each repeat draws from the engine's generator anew), both dialects, streaming and not.
//! Every answer must be JSON that validates against the schema closed (only declared
//! properties), and a budget too small to close the JSON must be a clear error, never a
//! truncated call.

use auxot_tests::openapi::{assert_valid, assert_valid_stream};
use auxot_tests::{sse, Cluster, WorkerOptions};
use serde_json::{json, Value};

/// The tool: `city` required, `unit` optional, objects left open.
fn weather_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "city": {"type": "string", "description": "The city"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        },
        "required": ["city"],
    })
}

/// The schema an answer must satisfy: the given one, closed.
fn closed(schema: &Value) -> Value {
    let mut schema = schema.clone();
    schema["additionalProperties"] = json!(false);
    schema
}

fn assert_matches_schema(what: &str, schema: &Value, value: &Value) {
    let validator = jsonschema::validator_for(&closed(schema)).expect("schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(value)
        .map(|e| e.to_string())
        .collect();
    assert!(
        errors.is_empty(),
        "{what}: {value} does not validate: {errors:?}"
    );
}

const QUESTION: &str = "What's the weather like in Paris today?";
/// Enough for the closed call, not for invented properties.
const MAX_TOKENS: u32 = 24;

/// `temperature` as sent: absent (the engine's default) or OpenAI's and Anthropic's default.
const SAMPLINGS: [Option<f64>; 2] = [None, Some(1.0)];
/// Requests per setting at temperature 1: each draws other samples.
const REPEATS: usize = 4;

fn with_temperature(mut body: Value, temperature: Option<f64>) -> Value {
    if let Some(t) = temperature {
        body["temperature"] = json!(t);
    }
    body
}

fn repeats(temperature: Option<f64>) -> usize {
    if temperature.is_some() {
        REPEATS
    } else {
        1
    }
}

/// The arguments of a forced OpenAI call, streaming or not, with every body or chunk checked
/// against OpenAI's schema.
async fn openai_call(cluster: &Cluster, client: &reqwest::Client, body: Value) -> Value {
    let stream = body["stream"] == true;
    let response = cluster
        .post(client, 0, "/api/openai/chat/completions")
        .json(&body)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    if !stream {
        let reply: Value = response.json().await.expect("json");
        assert_valid("CreateChatCompletionResponse", &reply);
        let choice = &reply["choices"][0];
        assert_eq!(choice["finish_reason"], "tool_calls", "{reply}");
        let call = &choice["message"]["tool_calls"][0];
        assert_eq!(call["type"], "function");
        assert_eq!(call["function"]["name"], "get_weather");
        let arguments = call["function"]["arguments"].as_str().expect("arguments");
        return serde_json::from_str(arguments)
            .unwrap_or_else(|e| panic!("arguments {arguments:?} are not JSON: {e}"));
    }
    let text = response.text().await.expect("body");
    let mut arguments = String::new();
    let mut finish = None;
    let mut names = Vec::new();
    for chunk in assert_valid_stream(&text) {
        assert!(chunk.get("error").is_none(), "{text}");
        let Some(choice) = chunk["choices"].get(0) else {
            continue;
        };
        if let Some(calls) = choice["delta"]["tool_calls"].as_array() {
            for call in calls {
                assert_eq!(call["index"], 0, "one call");
                if let Some(name) = call["function"]["name"].as_str() {
                    names.push(name.to_string());
                }
                arguments.push_str(call["function"]["arguments"].as_str().unwrap_or_default());
            }
        }
        if !choice["finish_reason"].is_null() {
            finish = Some(choice["finish_reason"].clone());
        }
    }
    assert_eq!(names, ["get_weather"], "the name comes once: {text}");
    assert_eq!(finish, Some(json!("tool_calls")), "{text}");
    serde_json::from_str(&arguments)
        .unwrap_or_else(|e| panic!("streamed arguments {arguments:?} are not JSON: {e}"))
}

/// The input of a forced Anthropic tool use, streaming or not.
async fn anthropic_call(cluster: &Cluster, client: &reqwest::Client, body: Value) -> Value {
    let stream = body["stream"] == true;
    let response = cluster
        .post(client, 0, "/api/anthropic/v1/messages")
        .json(&body)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    if !stream {
        let reply: Value = response.json().await.expect("json");
        assert_eq!(reply["stop_reason"], "tool_use", "{reply}");
        let blocks = reply["content"].as_array().expect("content");
        let block = blocks
            .iter()
            .find(|b| b["type"] == "tool_use")
            .unwrap_or_else(|| panic!("no tool_use block: {reply}"));
        assert_eq!(block["name"], "get_weather");
        assert!(block["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("toolu_")));
        return block["input"].clone();
    }
    let text = response.text().await.expect("body");
    let events = sse::parse(&text).expect("SSE");
    let mut partial = String::new();
    let mut stop_reason = None;
    for event in &events {
        let data: Value = serde_json::from_str(&event.data).expect("event json");
        match event.event.as_deref() {
            Some("content_block_start") if data["content_block"]["type"] == "tool_use" => {
                assert_eq!(data["content_block"]["name"], "get_weather");
            }
            Some("content_block_delta") if data["delta"]["type"] == "input_json_delta" => {
                partial.push_str(data["delta"]["partial_json"].as_str().unwrap_or_default());
            }
            Some("message_delta") => stop_reason = Some(data["delta"]["stop_reason"].clone()),
            Some("error") => panic!("error event: {text}"),
            _ => {}
        }
    }
    assert_eq!(stop_reason, Some(json!("tool_use")), "{text}");
    serde_json::from_str(&partial)
        .unwrap_or_else(|e| panic!("streamed input {partial:?} is not JSON: {e}"))
}

async fn forced_calls(cluster: &Cluster, client: &reqwest::Client) {
    let schema = weather_schema();
    for temperature in SAMPLINGS {
        for stream in [false, true] {
            for _ in 0..repeats(temperature) {
                let openai = with_temperature(
                    json!({
                        "model": "auto",
                        "messages": [{"role": "user", "content": QUESTION}],
                        "tools": [{"type": "function", "function": {
                            "name": "get_weather", "description": "Current weather in a city",
                            "parameters": schema}}],
                        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
                        "max_tokens": MAX_TOKENS,
                        "stream": stream,
                    }),
                    temperature,
                );
                let arguments = openai_call(cluster, client, openai).await;
                let what = format!("openai stream={stream} temperature={temperature:?}");
                println!("{what}: {arguments}");
                assert_matches_schema(&what, &schema, &arguments);

                let anthropic = with_temperature(
                    json!({
                        "model": "auto",
                        "max_tokens": MAX_TOKENS,
                        "messages": [{"role": "user", "content": QUESTION}],
                        "tools": [{"name": "get_weather", "description": "Current weather in a city",
                                   "input_schema": schema}],
                        "tool_choice": {"type": "tool", "name": "get_weather"},
                        "stream": stream,
                    }),
                    temperature,
                );
                let input = anthropic_call(cluster, client, anthropic).await;
                let what = format!("anthropic stream={stream} temperature={temperature:?}");
                println!("{what}: {input}");
                assert_matches_schema(&what, &schema, &input);
            }
        }
    }
}

/// `response_format: json_schema` with an open object: the answer is the object, closed,
/// streaming or not.
async fn json_schema_answers(cluster: &Cluster, client: &reqwest::Client) {
    let schema = json!({
        "type": "object",
        "properties": {"capital": {"type": "string"}, "country": {"type": "string"}},
        "required": ["capital"],
    });
    for temperature in SAMPLINGS {
        for stream in [false, true] {
            for _ in 0..repeats(temperature) {
                let body = with_temperature(
                    json!({
                        "model": "auto",
                        "messages": [{"role": "user", "content": "What is the capital of France? Answer in JSON."}],
                        "response_format": {"type": "json_schema", "json_schema": {"name": "capital", "schema": schema}},
                        "max_tokens": MAX_TOKENS,
                        "stream": stream,
                    }),
                    temperature,
                );
                let response = cluster
                    .post(client, 0, "/api/openai/chat/completions")
                    .json(&body)
                    .send()
                    .await
                    .expect("request");
                let status = response.status();
                if status != 200 {
                    let body = response.text().await.unwrap_or_default();
                    panic!(
                        "json_schema stream={stream} temperature={temperature:?}: {status} {body}"
                    );
                }
                let (content, finish) = if stream {
                    let text = response.text().await.expect("body");
                    let mut content = String::new();
                    let mut finish = Value::Null;
                    for chunk in assert_valid_stream(&text) {
                        assert!(chunk.get("error").is_none(), "{text}");
                        let Some(choice) = chunk["choices"].get(0) else {
                            continue;
                        };
                        content.push_str(choice["delta"]["content"].as_str().unwrap_or_default());
                        if !choice["finish_reason"].is_null() {
                            finish = choice["finish_reason"].clone();
                        }
                    }
                    (content, finish)
                } else {
                    let reply: Value = response.json().await.expect("json");
                    assert_valid("CreateChatCompletionResponse", &reply);
                    let choice = &reply["choices"][0];
                    let content = choice["message"]["content"].as_str().expect("content");
                    (content.to_string(), choice["finish_reason"].clone())
                };
                println!("json_schema stream={stream} temperature={temperature:?}: {content}");
                assert_eq!(finish, "stop", "{content}");
                let answer: Value = serde_json::from_str(&content)
                    .unwrap_or_else(|e| panic!("answer {content:?} is not JSON: {e}"));
                assert_matches_schema("json_schema", &schema, &answer);
            }
        }
    }
}

/// A budget that cannot hold the required properties: the caller is told, in both dialects and
/// streaming or not, instead of receiving half a call.
async fn too_small_a_budget(cluster: &Cluster, client: &reqwest::Client) {
    let schema = json!({
        "type": "object",
        "properties": {
            "street_address": {"type": "string"},
            "postal_code": {"type": "string"},
            "country_name": {"type": "string"},
        },
        "required": ["street_address", "postal_code", "country_name"],
    });
    let tool =
        json!({"type": "function", "function": {"name": "get_weather", "parameters": schema}});
    let message = "max_tokens ran out before the model completed the arguments of its call to `get_weather`; raise max_tokens";
    for stream in [false, true] {
        let body = json!({
            "model": "auto",
            "messages": [{"role": "user", "content": QUESTION}],
            "tools": [tool],
            "tool_choice": "required",
            "max_tokens": 4,
            "stream": stream,
        });
        let response = cluster
            .post(client, 0, "/api/openai/chat/completions")
            .json(&body)
            .send()
            .await
            .expect("request");
        if stream {
            assert_eq!(response.status(), 200);
            let text = response.text().await.expect("body");
            let error = assert_valid_stream(&text)
                .into_iter()
                .find(|d| d.get("error").is_some())
                .unwrap_or_else(|| panic!("no error event: {text}"));
            assert_eq!(error["error"]["message"], message, "{text}");
            assert!(
                !text.contains("\"finish_reason\":\"tool_calls\""),
                "a cut call is not a call: {text}"
            );
        } else {
            assert_eq!(response.status(), 400);
            let reply: Value = response.json().await.expect("json");
            assert_valid("ErrorResponse", &reply);
            assert_eq!(reply["error"]["message"], message);
        }
        let anthropic = json!({
            "model": "auto",
            "max_tokens": 4,
            "messages": [{"role": "user", "content": QUESTION}],
            "tools": [{"name": "get_weather", "input_schema": schema}],
            "tool_choice": {"type": "tool", "name": "get_weather"},
            "stream": stream,
        });
        let response = cluster
            .post(client, 0, "/api/anthropic/v1/messages")
            .json(&anthropic)
            .send()
            .await
            .expect("request");
        if stream {
            let text = response.text().await.expect("body");
            let events = sse::parse(&text).expect("SSE");
            let error = events
                .iter()
                .find(|e| e.event.as_deref() == Some("error"))
                .unwrap_or_else(|| panic!("no error event: {text}"));
            assert!(error.data.contains(message), "{text}");
            assert!(!text.contains("\"stop_reason\":\"tool_use\""), "{text}");
        } else {
            assert_eq!(response.status(), 400);
            let reply: Value = response.json().await.expect("json");
            assert_eq!(reply["type"], "error");
            assert_eq!(reply["error"]["message"], message);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn constrained_generations_end_in_valid_json() {
    let mut cluster = Cluster::with_router(&[]);
    let seed = cluster.seed();
    cluster.start_worker(seed, WorkerOptions::default());
    cluster.wait_workers(0, 1).await;
    let client = reqwest::Client::new();

    forced_calls(&cluster, &client).await;
    json_schema_answers(&cluster, &client).await;
    too_small_a_budget(&cluster, &client).await;
}
