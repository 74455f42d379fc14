//! Caps on the shape of a request, the one place both dialects check them.
//!
//! A body within the size limit can still ask for absurd work: ten thousand messages, a
//! thousand tools, stop strings the worker must match at every token, JSON nested deep enough
//! to make every later walk over it expensive. Each dialect parses its typed request and then
//! asks this module about every count it has, naming the field in its own style; the answer is
//! a 400 in the caller's dialect that names the limit. The caps are far above what real clients
//! send (OpenAI allows 128 tools and 4 stop strings; agents send a few hundred messages), so
//! they only ever stop abuse.
//!
//! The JSON depth is checked on the raw bytes before parsing, by a scan that needs no memory,
//! so a deeply nested body is refused before anything is allocated for it.

use crate::error::ApiError;

/// One capped dimension of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Messages in the conversation (system prompt included).
    Messages,
    /// Content parts (text, image, tool call or result blocks) in one message.
    Parts,
    /// Tools the request defines.
    Tools,
    /// Stop strings.
    StopStrings,
    /// Bytes in one stop string.
    StopStringBytes,
    /// Images in the whole request.
    Images,
    /// Texts in one embeddings request.
    EmbeddingInputs,
    /// Messages in one JSON-RPC batch (MCP).
    RpcBatch,
}

impl Shape {
    /// The cap.
    pub const fn limit(self) -> usize {
        match self {
            Shape::Messages => MAX_MESSAGES,
            Shape::Parts => MAX_PARTS_PER_MESSAGE,
            Shape::Tools => MAX_TOOLS,
            Shape::StopStrings => MAX_STOP_STRINGS,
            Shape::StopStringBytes => MAX_STOP_STRING_BYTES,
            Shape::Images => MAX_IMAGES,
            Shape::EmbeddingInputs => MAX_EMBEDDING_INPUTS,
            Shape::RpcBatch => MAX_RPC_BATCH,
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Shape::Messages => "messages",
            Shape::Parts => "content parts in one message",
            Shape::Tools => "tools",
            Shape::StopStrings => "stop strings",
            Shape::StopStringBytes => "bytes in a stop string",
            Shape::Images => "images",
            Shape::EmbeddingInputs => "texts",
            Shape::RpcBatch => "messages in one batch",
        }
    }
}

/// Messages in one request.
pub const MAX_MESSAGES: usize = 2048;
/// Content parts in one message.
pub const MAX_PARTS_PER_MESSAGE: usize = 512;
/// Tools in one request (OpenAI's own limit is 128).
pub const MAX_TOOLS: usize = 256;
/// Stop strings in one request (OpenAI's own limit is 4; Anthropic's API has none published).
pub const MAX_STOP_STRINGS: usize = 16;
/// Bytes in one stop string.
pub const MAX_STOP_STRING_BYTES: usize = 256;
/// Images in one request (each is decoded and fetched by the router).
pub const MAX_IMAGES: usize = 20;
/// Texts in one embeddings request (OpenAI's own limit).
pub const MAX_EMBEDDING_INPUTS: usize = 2048;
/// Messages in one JSON-RPC batch: each may be a tool call, run one after another.
pub const MAX_RPC_BATCH: usize = 16;
/// Nesting of arrays and objects in a request body.
pub const MAX_JSON_DEPTH: usize = 64;

/// Refuses `count` items of `shape` at `field` when it exceeds the cap.
pub fn check(shape: Shape, field: &str, count: usize) -> Result<(), ApiError> {
    if count <= shape.limit() {
        return Ok(());
    }
    Err(ApiError::invalid(format!(
        "{field}: {count} {} exceed the limit of {}",
        shape.noun(),
        shape.limit()
    )))
}

/// Refuses each stop string longer than the cap, and more of them than the cap.
pub fn check_stops<'a>(
    field: &str,
    stops: impl ExactSizeIterator<Item = &'a String>,
) -> Result<(), ApiError> {
    check(Shape::StopStrings, field, stops.len())?;
    for (i, stop) in stops.enumerate() {
        check(Shape::StopStringBytes, &format!("{field}[{i}]"), stop.len())?;
    }
    Ok(())
}

/// Counts images as a dialect translates them, refusing the first one over the cap.
#[derive(Debug, Default)]
pub struct ImageCount(usize);

impl ImageCount {
    /// Counts one more image, found at `field`.
    pub fn add(&mut self, field: &str) -> Result<(), ApiError> {
        self.0 += 1;
        check(Shape::Images, field, self.0)
    }
}

/// A JSON request body as `T`: refused past [`MAX_JSON_DEPTH`] before parsing, then a 400
/// naming what the parser found wrong.
pub fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    check_json_depth(body)?;
    serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid(format!("invalid request body: {e}")))
}

/// Refuses a JSON body nested deeper than [`MAX_JSON_DEPTH`]. A byte scan: brackets inside
/// strings do not count, and a malformed body passes (the parser reports it properly).
pub fn check_json_depth(body: &[u8]) -> Result<(), ApiError> {
    let mut depth = 0usize;
    let mut deepest = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &byte in body {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
                if depth > MAX_JSON_DEPTH {
                    break;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    if deepest > MAX_JSON_DEPTH {
        return Err(ApiError::invalid(format!(
            "request body: JSON nested more than {MAX_JSON_DEPTH} levels deep exceeds the depth limit of {MAX_JSON_DEPTH}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_within_the_cap_pass_and_over_it_name_the_limit() {
        assert!(check(Shape::Tools, "tools", MAX_TOOLS).is_ok());
        let err = check(Shape::Tools, "tools", MAX_TOOLS + 1).expect_err("over");
        assert_eq!(
            err.message,
            format!(
                "tools: {} tools exceed the limit of {MAX_TOOLS}",
                MAX_TOOLS + 1
            )
        );
        assert_eq!(err.fault, crate::error::Fault::InvalidRequest);
    }

    #[test]
    fn stop_strings_are_capped_in_number_and_length() {
        let many: Vec<String> = vec!["x".into(); MAX_STOP_STRINGS + 1];
        assert!(check_stops("stop", many.iter())
            .expect_err("many")
            .message
            .contains("stop strings exceed the limit"));
        let long = ["ok".to_string(), "y".repeat(MAX_STOP_STRING_BYTES + 1)];
        let err = check_stops("stop_sequences", long.iter()).expect_err("long");
        assert!(
            err.message.starts_with("stop_sequences[1]: "),
            "{}",
            err.message
        );
    }

    #[test]
    fn images_are_counted_across_the_request() {
        let mut count = ImageCount::default();
        for _ in 0..MAX_IMAGES {
            count.add("x").expect("within");
        }
        assert!(count.add("messages[3].content[1]").is_err());
    }

    #[test]
    fn depth_is_measured_outside_strings() {
        let nested = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(check_json_depth(nested(MAX_JSON_DEPTH).as_bytes()).is_ok());
        let err = check_json_depth(nested(MAX_JSON_DEPTH + 1).as_bytes()).expect_err("deep");
        assert!(err.message.contains("depth limit"), "{}", err.message);
        let brackets_in_text = format!("{{\"a\": \"{}\\\"{}\"}}", "[".repeat(500), "{".repeat(500));
        assert!(check_json_depth(brackets_in_text.as_bytes()).is_ok());
        // Not JSON at all: left to the parser.
        assert!(check_json_depth(b"]]]] nope").is_ok());
    }
}
