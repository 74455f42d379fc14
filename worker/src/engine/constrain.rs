//! Constrained (JSON) generations: what a forced tool call or a `json_schema` answer is decoded
//! under, and how it is made to end in valid JSON.
//!
//! - **Closed objects.** A JSON schema that leaves `additionalProperties` unsaid allows any extra
//!   property, and llguidance then lets a model invent them (`"population"`, `"beach": {...}`) until
//!   `max_tokens` cuts the JSON. Like OpenAI's strict mode and Anthropic's strict tools, every
//!   object schema that does not say otherwise is closed: only its declared properties are
//!   generated. A schema that sets `additionalProperties` (or `patternProperties`) keeps it;
//!   the branches of an `allOf` are left open, since closing each would forbid the others'
//!   properties.
//! - **Compact JSON.** No whitespace between tokens (`"x-guidance": {"whitespace_flexible":
//!   false}`), so no budget goes to indentation or runs of newlines.
//! - **A budget that closes.** With a `max_tokens`, the last tokens of the budget are reserved for
//!   closing what is open: from then on, tokens made only of closing characters (`"`, `}`, `]`)
//!   are taken whenever the grammar allows one ([`CloseJson`]), which ends open strings,
//!   numbers, arrays and objects (required properties still missing are still generated, as
//!   the grammar demands). They are ranked, not merely raised: inside a string `}` is just a
//!   character, so a token that starts with a quote comes first, then the one that closes most.
//!   If the JSON is still incomplete when the budget runs out, the generation ends in an error
//!   that says so, never in truncated JSON presented as an answer (see `mistral::stream`).
//!
//! The alternative not taken: reserving tokens by running the engine with a smaller `max_tokens`
//! and continuing in a second request. mistral.rs 0.8.1 cannot continue a partial assistant
//! message, and a second prompt costs a second prefill.

use std::sync::{Arc, OnceLock};

use mistralrs::{CustomLogitsProcessor, Tensor};
use serde_json::{json, Map, Value};

/// Object schemas are closed unless they say otherwise (see the module documentation), and the
/// JSON is compact. The schema as given is not changed.
pub fn strict_schema(schema: &Value) -> Value {
    let mut schema = schema.clone();
    close_objects(&mut schema);
    if let Value::Object(map) = &mut schema {
        map.entry("x-guidance")
            .or_insert_with(|| json!({"whitespace_flexible": false}));
    }
    schema
}

/// A schema for "any JSON object", compact (`response_format: json_object`).
pub fn any_object() -> Value {
    json!({"type": "object", "x-guidance": {"whitespace_flexible": false}})
}

fn is_object_schema(map: &Map<String, Value>) -> bool {
    match map.get("type") {
        Some(Value::String(t)) => t == "object",
        Some(Value::Array(types)) => types.iter().any(|t| t == "object"),
        None => map.contains_key("properties") || map.contains_key("required"),
        _ => false,
    }
}

/// Keywords whose value is one subschema.
const ONE: &[&str] = &[
    "items",
    "additionalItems",
    "contains",
    "not",
    "if",
    "then",
    "else",
    "unevaluatedItems",
    "propertyNames",
];
/// Keywords whose value is a list of subschemas.
const LIST: &[&str] = &["anyOf", "oneOf", "prefixItems"];
/// Keywords whose value maps names to subschemas.
const NAMED: &[&str] = &[
    "properties",
    "patternProperties",
    "$defs",
    "definitions",
    "dependentSchemas",
];

fn close_objects(schema: &mut Value) {
    close(schema, true);
}

/// Closes `schema` (when `close_here`) and every subschema it contains.
fn close(schema: &mut Value, close_here: bool) {
    let Value::Object(map) = schema else {
        // `true`/`false` schemas and lists (old-style `items`) have nothing to close.
        if let Value::Array(items) = schema {
            items.iter_mut().for_each(|s| close(s, true));
        }
        return;
    };
    if close_here
        && is_object_schema(map)
        && !map.contains_key("additionalProperties")
        && !map.contains_key("patternProperties")
        && !map.contains_key("unevaluatedProperties")
    {
        map.insert("additionalProperties".into(), Value::Bool(false));
    }
    for key in ONE {
        if let Some(sub) = map.get_mut(*key) {
            close(sub, true);
        }
    }
    if let Some(Value::Object(_)) = map.get("additionalProperties") {
        if let Some(sub) = map.get_mut("additionalProperties") {
            close(sub, true);
        }
    }
    for key in LIST {
        if let Some(Value::Array(subs)) = map.get_mut(*key) {
            subs.iter_mut().for_each(|s| close(s, true));
        }
    }
    // The branches of an `allOf` describe one object together: close their insides only.
    if let Some(Value::Array(subs)) = map.get_mut("allOf") {
        subs.iter_mut().for_each(|s| close(s, false));
    }
    for key in NAMED {
        if let Some(Value::Object(subs)) = map.get_mut(*key) {
            subs.values_mut().for_each(|s| close(s, true));
        }
    }
}

/// Tokens to reserve at the end of the budget for closing: one per level of nesting, a few for
/// an open string or number, and for each required property (which the grammar will demand even
/// while closing) its name and a short value.
pub fn closing_reserve(schema: &Value) -> usize {
    4 + reserve(schema, 0)
}

/// Deeper schemas than this are not followed (recursive `$ref`s are not followed at all).
const MAX_DEPTH: usize = 8;

fn reserve(schema: &Value, depth: usize) -> usize {
    let Value::Object(map) = schema else {
        return 0;
    };
    if depth > MAX_DEPTH {
        return 0;
    }
    let mut tokens = 1;
    if let (Some(Value::Array(required)), Some(Value::Object(properties))) =
        (map.get("required"), map.get("properties"))
    {
        for name in required.iter().filter_map(Value::as_str) {
            // `,"name":` then a minimal value: about a token per 3 characters, plus 4.
            tokens += name.len() / 3 + 4;
            if let Some(sub) = properties.get(name) {
                tokens += reserve(sub, depth + 1);
            }
        }
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(Value::Array(subs)) = map.get(key) {
            tokens += subs
                .iter()
                .map(|s| reserve(s, depth + 1))
                .max()
                .unwrap_or(0);
        }
    }
    if let Some(Value::Array(subs)) = map.get("allOf") {
        tokens += subs.iter().map(|s| reserve(s, depth + 1)).sum::<usize>();
    }
    tokens
}

/// Whether `text` is one complete JSON value.
pub fn is_complete_json(text: &str) -> bool {
    serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok()
}

/// Texts that only close what is open, in compact JSON; the loader keeps those that are single
/// tokens of the model's vocabulary.
pub const CLOSING_TEXTS: &[&str] = &[
    "\"", "}", "]", "\"}", "\"]", "}}", "]}", "}]", "]]", "\"}}", "\"]}", "\"}]", "}}}", "}]}",
    "]}}", "\"}}}", "}}}}",
];

/// What is added to the logit of a closing token in the reserve: far above any logit a model
/// produces, so one of them is taken whenever the grammar allows one. A token that starts with
/// a quote ranks first (inside a string only a quote closes anything; outside one the grammar
/// allows a quote only where a key must start, which no other closing token could do), then
/// longer tokens (they close more). Steps of 100 keep the ranking whatever the model prefers.
pub fn closing_bias(text: &str) -> f32 {
    let quote = if text.starts_with('"') { 1000.0 } else { 0.0 };
    1000.0 + quote + 100.0 * text.len() as f32
}

/// Ranks closing tokens in the last `reserve` tokens of a `budget` (see the module
/// documentation). One per generation: it learns the prompt's length from its first call, when
/// the context is the prompt alone.
pub struct CloseJson {
    budget: usize,
    reserve: usize,
    /// Closing token ids and their [`closing_bias`].
    closing: Arc<[(u32, f32)]>,
    prompt: OnceLock<usize>,
}

impl CloseJson {
    pub fn new(budget: usize, reserve: usize, closing: Arc<[(u32, f32)]>) -> Self {
        CloseJson {
            budget,
            reserve,
            closing,
            prompt: OnceLock::new(),
        }
    }

    /// Whether the next token, after `generated` ones, falls in the reserve.
    fn closing_now(&self, generated: usize) -> bool {
        self.budget.saturating_sub(generated) <= self.reserve
    }

    /// `logits` with the closing tokens raised, when closing.
    fn bias(&self, logits: &mut [f32], generated: usize) -> bool {
        if !self.closing_now(generated) {
            return false;
        }
        for &(id, bias) in self.closing.iter() {
            // Masked tokens (`-inf`, the grammar forbids them) stay masked.
            if let Some(logit) = logits.get_mut(id as usize).filter(|l| l.is_finite()) {
                *logit += bias;
            }
        }
        true
    }
}

impl CustomLogitsProcessor for CloseJson {
    fn apply(&self, logits: &Tensor, context: &[u32]) -> mistralrs::Result<Tensor> {
        let prompt = *self.prompt.get_or_init(|| context.len());
        let generated = context.len().saturating_sub(prompt);
        if !self.closing_now(generated) {
            return Ok(logits.clone());
        }
        let mut values = logits.to_vec1::<f32>()?;
        self.bias(&mut values, generated);
        Tensor::from_vec(values, logits.shape(), logits.device())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_objects_are_closed_and_explicit_choices_kept() {
        let weather = json!({
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "where": {"type": "object", "properties": {"lat": {"type": "number"}}},
                "tags": {"type": "array", "items": {"properties": {"k": {"type": "string"}}}},
                "extra": {"type": "object", "additionalProperties": {"type": "object", "properties": {}}},
                "open": {"type": "object", "additionalProperties": true},
                "either": {"anyOf": [{"type": "object"}, {"type": "null"}]},
                "both": {"allOf": [
                    {"type": "object", "properties": {"a": {"type": "object"}}},
                    {"properties": {"b": {"type": "string"}}}
                ]},
            },
            "required": ["city", "unit"],
            "$defs": {"point": {"type": "object", "properties": {"x": {"type": "number"}}}},
        });
        let strict = strict_schema(&weather);
        let closed = |pointer: &str| strict.pointer(pointer).cloned();
        assert_eq!(closed("/additionalProperties"), Some(json!(false)));
        assert_eq!(
            closed("/properties/where/additionalProperties"),
            Some(json!(false))
        );
        assert_eq!(
            closed("/properties/tags/items/additionalProperties"),
            Some(json!(false))
        );
        assert_eq!(
            closed("/properties/extra/additionalProperties/additionalProperties"),
            Some(json!(false))
        );
        assert_eq!(
            closed("/properties/open/additionalProperties"),
            Some(json!(true))
        );
        assert_eq!(
            closed("/properties/either/anyOf/0/additionalProperties"),
            Some(json!(false))
        );
        assert_eq!(
            closed("/properties/either/anyOf/1/additionalProperties"),
            None
        );
        assert_eq!(
            closed("/properties/both/allOf/0/additionalProperties"),
            None
        );
        assert_eq!(
            closed("/properties/both/allOf/1/additionalProperties"),
            None
        );
        assert_eq!(
            closed("/properties/both/allOf/0/properties/a/additionalProperties"),
            Some(json!(false))
        );
        assert_eq!(
            closed("/$defs/point/additionalProperties"),
            Some(json!(false))
        );
        assert_eq!(closed("/properties/city/additionalProperties"), None);
        assert_eq!(
            closed("/x-guidance/whitespace_flexible"),
            Some(json!(false))
        );
        assert_eq!(
            weather.get("additionalProperties"),
            None,
            "the input is unchanged"
        );
        // An operator's own llguidance options are kept.
        let own = strict_schema(&json!({"type": "object", "x-guidance": {"lenient": true}}));
        assert_eq!(own["x-guidance"], json!({"lenient": true}));
    }

    #[test]
    fn the_reserve_grows_with_what_must_still_be_written() {
        let flat = json!({"type": "object", "properties": {"city": {"type": "string"}}});
        let required = json!({
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
            "required": ["city", "unit"],
        });
        let nested = json!({
            "type": "object",
            "properties": {"place": required.clone()},
            "required": ["place"],
        });
        assert_eq!(closing_reserve(&flat), 5);
        assert!(closing_reserve(&required) > closing_reserve(&flat));
        assert!(closing_reserve(&nested) > closing_reserve(&required));
    }

    #[test]
    fn completeness() {
        assert!(is_complete_json(r#"{"city":"Paris"}"#));
        assert!(is_complete_json(r#"[1, {"a": null}]"#));
        for cut in [r#"{"city":"Par"#, r#"{"city":"Paris""#, "", "[1,"] {
            assert!(!is_complete_json(cut), "{cut}");
        }
    }

    #[test]
    fn closing_tokens_are_raised_only_in_the_reserve_and_masks_stay() {
        let close = CloseJson::new(10, 3, Arc::from(vec![(1u32, 1000.0), (2, 1000.0)]));
        let logits = [0.5, 0.1, f32::NEG_INFINITY, 2.0];
        let mut early = logits;
        assert!(!close.bias(&mut early, 6));
        assert_eq!(early, logits);
        let mut late = logits;
        assert!(close.bias(&mut late, 7));
        assert_eq!(late[1], 0.1 + 1000.0);
        assert_eq!(
            late[2],
            f32::NEG_INFINITY,
            "what the grammar forbids stays forbidden"
        );
        assert_eq!((late[0], late[3]), (0.5, 2.0));
    }

    #[test]
    fn a_quote_ranks_first_then_what_closes_most() {
        let mut ranked: Vec<&str> = CLOSING_TEXTS.to_vec();
        ranked.sort_by(|a, b| closing_bias(b).total_cmp(&closing_bias(a)));
        assert_eq!(ranked[0], "\"}}}");
        assert!(
            closing_bias("\"") > closing_bias("}}}}"),
            "inside a string, a brace is text"
        );
        assert!(closing_bias("}}") > closing_bias("}"));
        // Steps of 100: no model logit reorders them.
        assert!(closing_bias("\"") - closing_bias("}}}}") >= 100.0);
    }

    #[test]
    fn the_processor_counts_from_the_prompt() {
        let close = CloseJson::new(3, 1, Arc::from(vec![(0u32, 1000.0)]));
        let logits = Tensor::from_vec(vec![0.0f32, 1.0], 2, &mistralrs::Device::Cpu).expect("t");
        let prompt = [7u32; 5];
        let first = close.apply(&logits, &prompt).expect("apply");
        assert_eq!(first.to_vec1::<f32>().expect("v"), [0.0, 1.0]);
        // Two generated: the third and last token is in the reserve of one.
        let context = [7u32; 7];
        let last = close.apply(&logits, &context).expect("apply");
        assert_eq!(last.to_vec1::<f32>().expect("v"), [1000.0, 1.0]);
    }
}
