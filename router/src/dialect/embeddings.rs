//! OpenAI embeddings requests (`POST /embeddings`) and the `list` of `embedding` objects they
//! are answered with. Pure. Vectors come as JSON numbers or, with `encoding_format: "base64"`
//! (what the official Python client asks for by default), as little-endian float32 bytes in
//! base64.

use auxot_common::embedding::{EmbedRequest, Embeddings};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::limits::{self, Shape};

/// The request body, as far as auxot reads it. Unknown fields are ignored.
#[derive(Debug, Deserialize)]
pub struct EmbeddingsRequest {
    pub model: String,
    pub input: Option<Value>,
    pub encoding_format: Option<String>,
    pub dimensions: Option<u32>,
}

/// How the vectors are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Float,
    Base64,
}

/// A parsed request: what to embed, and how to write the answer.
#[derive(Debug)]
pub struct Parsed {
    pub request: EmbedRequest,
    pub encoding: Encoding,
    /// `dimensions`, checked against the model's once its vectors are known.
    pub dimensions: Option<u32>,
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::invalid(message)
}

/// Parses and validates a body.
pub fn parse(body: &[u8]) -> Result<Parsed, ApiError> {
    let input: EmbeddingsRequest = crate::limits::parse_body(body)?;
    if input.model.trim().is_empty() {
        return Err(invalid(
            "model: must not be empty (use \"auto\" for any embedding model)",
        ));
    }
    let inputs = match input.input {
        None | Some(Value::Null) => {
            return Err(invalid("input: required (a string or a list of strings)"))
        }
        Some(Value::String(text)) => vec![text],
        Some(Value::Array(items)) => {
            limits::check(Shape::EmbeddingInputs, "input", items.len())?;
            items
                .into_iter()
                .map(|item| match item {
                    Value::String(text) => Ok(text),
                    _ => Err(invalid(
                        "input: token ids are not supported; send the texts as strings",
                    )),
                })
                .collect::<Result<Vec<_>, _>>()?
        }
        Some(_) => return Err(invalid("input: must be a string or a list of strings")),
    };
    if inputs.is_empty() {
        return Err(invalid("input: must not be an empty list"));
    }
    if let Some(i) = inputs.iter().position(String::is_empty) {
        return Err(invalid(format!("input[{i}]: must not be empty")));
    }
    let encoding = match input.encoding_format.as_deref() {
        None | Some("float") => Encoding::Float,
        Some("base64") => Encoding::Base64,
        Some(other) => {
            return Err(invalid(format!(
                "encoding_format: `{other}` is not one of float, base64"
            )))
        }
    };
    Ok(Parsed {
        request: EmbedRequest {
            model: input.model,
            inputs,
            request_id: None,
        },
        encoding,
        dimensions: input.dimensions,
    })
}

/// Checks `dimensions` against the vectors (models here cannot shorten their vectors).
pub fn check_dimensions(parsed: &Parsed, embeddings: &Embeddings) -> Result<(), ApiError> {
    let (Some(wanted), Some(first)) = (parsed.dimensions, embeddings.vectors.first()) else {
        return Ok(());
    };
    if wanted as usize == first.len() {
        return Ok(());
    }
    Err(invalid(format!(
        "dimensions: model `{}` makes {}-dimensional vectors and cannot shorten them; leave dimensions out",
        embeddings.model,
        first.len()
    )))
}

fn encode(vector: &[f32], encoding: Encoding) -> Value {
    match encoding {
        Encoding::Float => json!(vector),
        Encoding::Base64 => {
            let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
            json!(base64::engine::general_purpose::STANDARD.encode(bytes))
        }
    }
}

/// The answer: a `list` of `embedding` objects in input order, with usage.
pub fn render(embeddings: &Embeddings, encoding: Encoding) -> Value {
    json!({
        "object": "list",
        "data": embeddings
            .vectors
            .iter()
            .enumerate()
            .map(|(index, vector)| json!({
                "object": "embedding",
                "index": index,
                "embedding": encode(vector, encoding),
            }))
            .collect::<Vec<_>>(),
        "model": embeddings.model,
        "usage": {
            "prompt_tokens": embeddings.prompt_tokens,
            "total_tokens": embeddings.prompt_tokens,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_and_lists_of_strings_parse() {
        let parsed = parse(br#"{"model": "e", "input": "hi"}"#).expect("valid");
        assert_eq!(parsed.request.inputs, ["hi"]);
        assert_eq!(parsed.encoding, Encoding::Float);
        let parsed =
            parse(br#"{"model": "auto", "input": ["a", "b"], "encoding_format": "base64"}"#)
                .expect("valid");
        assert_eq!(parsed.request.inputs, ["a", "b"]);
        assert_eq!(parsed.encoding, Encoding::Base64);
    }

    #[test]
    fn invalid_requests_say_what_is_wrong() {
        let cases: [(&[u8], &str); 7] = [
            (br#"{"model": "e"}"#, "input: required"),
            (br#"{"model": "e", "input": []}"#, "empty list"),
            (br#"{"model": "e", "input": [1, 2]}"#, "token ids"),
            (br#"{"model": "e", "input": ["a", ""]}"#, "input[1]"),
            (
                br#"{"model": "e", "input": "a", "encoding_format": "hex"}"#,
                "encoding_format",
            ),
            (br#"{"model": "", "input": "a"}"#, "model"),
            (b"nope", "invalid request body"),
        ];
        for (body, expected) in cases {
            let err = parse(body).expect_err("invalid");
            assert!(err.message.contains(expected), "{}", err.message);
        }
    }

    #[test]
    fn more_texts_than_the_cap_are_refused_by_count() {
        let body = json!({"model": "e", "input": vec!["a"; limits::MAX_EMBEDDING_INPUTS + 1]});
        let error = parse(body.to_string().as_bytes()).expect_err("too many");
        assert!(
            error
                .message
                .contains("input: 2049 texts exceed the limit of 2048"),
            "{}",
            error.message
        );
        let body = json!({"model": "e", "input": vec!["a"; limits::MAX_EMBEDDING_INPUTS]});
        assert!(parse(body.to_string().as_bytes()).is_ok());
    }

    #[test]
    fn vectors_render_as_floats_or_base64_float32() {
        let embeddings = Embeddings {
            model: "e".into(),
            vectors: vec![vec![1.0, -0.5], vec![0.25, 0.0]],
            prompt_tokens: 4,
        };
        let body = render(&embeddings, Encoding::Float);
        assert_eq!(
            body,
            json!({
                "object": "list",
                "data": [
                    {"object": "embedding", "index": 0, "embedding": [1.0, -0.5]},
                    {"object": "embedding", "index": 1, "embedding": [0.25, 0.0]},
                ],
                "model": "e",
                "usage": {"prompt_tokens": 4, "total_tokens": 4},
            })
        );
        let body = render(&embeddings, Encoding::Base64);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(body["data"][0]["embedding"].as_str().expect("base64"))
            .expect("decodes");
        assert_eq!(
            bytes,
            [1.0f32.to_le_bytes(), (-0.5f32).to_le_bytes()].concat()
        );
        let parsed = parse(br#"{"model": "e", "input": "a", "dimensions": 3}"#).expect("valid");
        assert!(check_dimensions(&parsed, &embeddings)
            .expect_err("2 != 3")
            .message
            .contains("2-dimensional"));
    }
}
