//! The chunk-to-event state machine of one generation: engine chunks in, canonical events out.
//!
//! It works on [`EngineChunk`], our own copy of the few fields of mistral.rs's streaming chunk
//! that matter, converted in one small function ([`EngineChunk::from_mistral`]), so every rule
//! here is unit-tested without a model:
//! - stop strings are matched here, not trusted to the engine (which checks them one token late
//!   and does not say which matched): the text is cut exactly and the match reported;
//! - after a stop string the engine may run on for a few chunks before it stops; their text is
//!   dropped, and after [`MAX_CHUNKS_AFTER_STOP`] the generation ends with counted usage;
//! - a forced tool call streams its constrained JSON as argument fragments of one call; a
//!   selection among several tools is parsed once complete;
//! - a constrained (JSON) generation that ends before its JSON is complete (`max_tokens` ran
//!   out) ends in an error that says so, never in truncated JSON presented as a tool call or an
//!   answer; one whose JSON closed on its very last token is complete, not `length`;
//! - a finish reason ends the generation with `Usage` then `Finish`.

use auxot_common::chat::{ChatEvent, FinishReason, Usage};
use auxot_common::error::RemoteError;

use crate::engine::constrain;
use crate::engine::convert::Output;
use crate::engine::stops::StopMatcher;

/// Chunks the engine may still send after a stop string matched before the worker gives up
/// waiting for its usage figures and cancels.
pub const MAX_CHUNKS_AFTER_STOP: usize = 16;

/// A tool call the engine parsed out of the generated text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineToolCall {
    pub id: String,
    pub name: String,
    pub arguments: String,
}

/// One streamed step of the engine, in our terms.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EngineChunk {
    /// Answer text.
    pub content: Option<String>,
    /// Reasoning text (templates with `<think>`).
    pub reasoning: Option<String>,
    pub tool_calls: Vec<EngineToolCall>,
    /// `stop`, `length`, `tool_calls` or `canceled` on the last chunk.
    pub finish_reason: Option<String>,
    /// The engine's token counts, on the last chunk.
    pub usage: Option<Usage>,
    /// The text of the chunk's last token as the tokenizer decodes it alone, leading space
    /// included (raw-prompt generations, which ask for logprobs).
    pub token_text: Option<String>,
}

impl EngineChunk {
    /// The parts of mistral.rs's chunk this worker uses. The worker never asks for more than one
    /// choice, so the choices are folded into one chunk.
    pub fn from_mistral(chunk: mistralrs::ChatCompletionChunkResponse) -> Self {
        let mut out = EngineChunk {
            usage: chunk.usage.map(|u| Usage {
                prompt_tokens: u32::try_from(u.prompt_tokens).unwrap_or(u32::MAX),
                completion_tokens: u32::try_from(u.completion_tokens).unwrap_or(u32::MAX),
            }),
            ..EngineChunk::default()
        };
        for choice in chunk.choices {
            append(&mut out.content, choice.delta.content);
            append(&mut out.reasoning, choice.delta.reasoning_content);
            for call in choice.delta.tool_calls.unwrap_or_default() {
                out.tool_calls.push(EngineToolCall {
                    id: call.id,
                    name: call.function.name,
                    arguments: call.function.arguments,
                });
            }
            if choice.finish_reason.is_some() {
                out.finish_reason = choice.finish_reason;
            }
        }
        out
    }
}

impl EngineChunk {
    /// A chunk of a raw-prompt generation: a legacy completion, or a continued turn (sent as
    /// prompt tokens). The engine reports no usage on these; the finish reason comes at the end.
    pub fn from_completion(chunk: mistralrs::core::CompletionChunkResponse) -> Self {
        let mut out = EngineChunk::default();
        for choice in chunk.choices {
            append(&mut out.content, Some(choice.text));
            if let Some(bytes) = choice.logprobs.and_then(|l| l.bytes) {
                out.token_text = Some(String::from_utf8_lossy(&bytes).into_owned());
            }
            if choice.finish_reason.is_some() {
                out.finish_reason = choice.finish_reason;
            }
        }
        out
    }
}

/// mistral.rs trims the leading whitespace off a sequence's first delta: right for a new chat
/// answer, wrong for a raw prompt's continuation (a legacy completion, or a turn continued on
/// another worker after "Paris," must go on with " and", not "and"). When the first delta is
/// exactly its one token without that whitespace, the token's own text is put back.
/// Tokenizers that strip a leading space even from one token (SentencePiece with `Strip`)
/// report it without, and nothing changes for them.
fn restore_leading_space(chunk: &mut EngineChunk) {
    let Some(token) = &chunk.token_text else {
        return;
    };
    let delta = chunk.content.as_deref().unwrap_or("");
    if token.len() > delta.len() && token.trim_start() == delta {
        chunk.content = Some(token.clone());
    }
}

fn append(to: &mut Option<String>, text: Option<String>) {
    match (to.as_mut(), text) {
        (Some(existing), Some(text)) => existing.push_str(&text),
        (None, text) => *to = text,
        (Some(_), None) => {}
    }
}

/// A fresh tool-call id, in OpenAI's `call_` form.
fn call_id() -> String {
    format!("call_{}", uuid::Uuid::new_v4().simple())
}

/// Turns engine chunks into canonical events for one generation.
pub struct GenerationStream {
    output: Output,
    stops: StopMatcher,
    /// Set once a stop string matched; later text is dropped.
    stopped_by: Option<String>,
    chunks_after_stop: usize,
    chunks: u32,
    tool_calls: u32,
    /// Constrained text of a tool selection, parsed when the generation ends.
    selection: String,
    /// The whole text of a constrained generation, checked for complete JSON at the end.
    json: Option<String>,
    /// The prompt size, when it was counted before generating.
    prompt_tokens: Option<u32>,
    /// Tokens of a cut turn this generation continues: output to the caller, prompt to the
    /// engine.
    turn_tokens: u32,
}

impl GenerationStream {
    /// `stop` applies to answers only, not to the JSON of a forced tool call.
    pub fn new(stop: &[String], output: Output) -> Self {
        let stops = match output {
            Output::Text => StopMatcher::new(stop),
            _ => StopMatcher::new(&[]),
        };
        GenerationStream {
            output,
            stops,
            stopped_by: None,
            chunks_after_stop: 0,
            chunks: 0,
            tool_calls: 0,
            selection: String::new(),
            json: None,
            prompt_tokens: None,
            turn_tokens: 0,
        }
    }

    /// Makes this the continuation of a cut turn of `turn_tokens` tokens after a prompt of
    /// `prompt_tokens`: usage counts the cut turn as output.
    pub fn continuing(&mut self, prompt_tokens: u32, turn_tokens: u32) {
        self.prompt_tokens = Some(prompt_tokens);
        self.turn_tokens = turn_tokens;
    }

    /// Marks the generation as constrained to JSON: it must end with its JSON complete.
    pub fn constrained(mut self, constrained: bool) -> Self {
        self.json = constrained.then(String::new);
        self
    }

    /// Records the prompt size counted before generating; returns the event that reports it
    /// before any output. The count also stands in for the engine's should it never report one.
    pub fn prompt_tokens(&mut self, tokens: u32) -> ChatEvent {
        self.prompt_tokens = Some(tokens);
        ChatEvent::PromptTokens { tokens }
    }

    fn on_text(&mut self, text: String, out: &mut Vec<ChatEvent>) {
        if let Some(json) = &mut self.json {
            json.push_str(&text);
        }
        match &self.output {
            Output::Text => {
                let step = self.stops.push(&text);
                if !step.emit.is_empty() {
                    out.push(ChatEvent::Text { text: step.emit });
                }
                self.stopped_by = step.matched;
            }
            Output::ToolArguments { name } => {
                let first = self.tool_calls == 0;
                out.push(ChatEvent::ToolCall {
                    index: 0,
                    id: first.then(call_id),
                    name: first.then(|| name.clone()),
                    arguments: text,
                });
                self.tool_calls = 1;
            }
            Output::ToolSelection => self.selection.push_str(&text),
        }
    }

    /// The call chosen in a tool selection.
    fn finish_selection(&mut self, out: &mut Vec<ChatEvent>) -> Result<(), RemoteError> {
        let parsed: serde_json::Value = serde_json::from_str(&self.selection).map_err(|e| {
            RemoteError::internal(format!(
                "the model did not complete its tool call (raise max_tokens?): {e}"
            ))
        })?;
        let name = parsed["name"].as_str().unwrap_or_default().to_string();
        out.push(ChatEvent::ToolCall {
            index: 0,
            id: Some(call_id()),
            name: Some(name),
            arguments: parsed["arguments"].to_string(),
        });
        self.tool_calls = 1;
        Ok(())
    }

    /// The error for a constrained generation that ended before its JSON was complete.
    fn incomplete_json(&self, length: bool) -> RemoteError {
        let what = match &self.output {
            Output::ToolArguments { name } => format!("the arguments of its call to `{name}`"),
            Output::ToolSelection => "its tool call".to_string(),
            Output::Text => "its JSON answer".to_string(),
        };
        if length {
            RemoteError::invalid(format!(
                "max_tokens ran out before the model completed {what}; raise max_tokens"
            ))
        } else {
            RemoteError::internal(format!("the model stopped before it completed {what}"))
        }
    }

    /// Handles one chunk, appending the events it yields to `out`; true when the generation is
    /// over. On an error, the events already in `out` still belong to the generation.
    pub fn on_chunk(
        &mut self,
        mut chunk: EngineChunk,
        out: &mut Vec<ChatEvent>,
    ) -> Result<bool, RemoteError> {
        if self.chunks == 0 {
            restore_leading_space(&mut chunk);
        }
        self.chunks += 1;
        if self.stopped_by.is_none() {
            if let Some(text) = chunk.reasoning.filter(|t| !t.is_empty()) {
                out.push(ChatEvent::Reasoning { text });
            }
            if let Some(text) = chunk.content.filter(|t| !t.is_empty()) {
                self.on_text(text, out);
            }
            for call in chunk.tool_calls {
                out.push(ChatEvent::ToolCall {
                    index: self.tool_calls,
                    id: Some(call.id),
                    name: Some(call.name),
                    arguments: call.arguments,
                });
                self.tool_calls += 1;
            }
        } else {
            self.chunks_after_stop += 1;
        }
        let engine_finish = chunk.finish_reason;
        let gave_up_waiting = self.chunks_after_stop > MAX_CHUNKS_AFTER_STOP;
        if engine_finish.is_none() && !gave_up_waiting {
            return Ok(false);
        }
        if engine_finish.as_deref() == Some("canceled") {
            return Err(RemoteError::internal("the engine cancelled the generation"));
        }
        let mut length = engine_finish.as_deref() == Some("length");
        if let (Some(json), None) = (&self.json, &self.stopped_by) {
            if constrain::is_complete_json(json) {
                // Closed on the budget's last token: complete, not cut.
                length = false;
            } else {
                return Err(self.incomplete_json(length));
            }
        }
        match self.output {
            Output::Text if self.stopped_by.is_none() => {
                let rest = self.stops.finish();
                if !rest.is_empty() {
                    out.push(ChatEvent::Text { text: rest });
                }
            }
            Output::ToolSelection if !length => self.finish_selection(out)?,
            Output::ToolSelection => {
                return Err(RemoteError::invalid(
                    "max_tokens ran out before the model completed its tool call",
                ))
            }
            _ => {}
        }
        // Without the engine's figures (it did not finish within the grace after a stop string,
        // or it continued a cut turn from raw tokens), count the chunks that were part of the
        // answer, and the cut turn's tokens.
        let fallback = Usage {
            prompt_tokens: self.prompt_tokens.unwrap_or(0),
            completion_tokens: (self.chunks - self.chunks_after_stop as u32)
                .saturating_add(self.turn_tokens),
        };
        out.push(ChatEvent::Usage(chunk.usage.unwrap_or(fallback)));
        let reason = if self.stopped_by.is_some() {
            FinishReason::StopSequence
        } else if length {
            FinishReason::Length
        } else if self.tool_calls > 0 || engine_finish.as_deref() == Some("tool_calls") {
            FinishReason::ToolCalls
        } else {
            FinishReason::Stop
        };
        out.push(ChatEvent::Finish {
            reason,
            stop_sequence: self.stopped_by.take(),
        });
        Ok(true)
    }
}

impl GenerationStream {
    /// Ends a generation whose engine closed the reply channel without a last chunk (see
    /// `pump`): an answer that had output ends as if the engine had said `length` (the cut
    /// character's bytes are lost, usage is counted from the chunks); one without any output is
    /// an error.
    pub fn on_silent_end(&mut self, out: &mut Vec<ChatEvent>) -> Result<(), RemoteError> {
        if self.chunks == 0 {
            return Err(RemoteError::internal(
                "engine ended the generation without any output",
            ));
        }
        let last = EngineChunk {
            finish_reason: Some("length".into()),
            ..EngineChunk::default()
        };
        self.on_chunk(last, out).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use auxot_common::error::ErrorKind;

    fn text(content: &str) -> EngineChunk {
        EngineChunk {
            content: Some(content.into()),
            ..EngineChunk::default()
        }
    }

    fn last(content: &str, reason: &str, usage: Option<(u32, u32)>) -> EngineChunk {
        EngineChunk {
            content: Some(content.into()),
            finish_reason: Some(reason.into()),
            usage: usage.map(|(prompt_tokens, completion_tokens)| Usage {
                prompt_tokens,
                completion_tokens,
            }),
            ..EngineChunk::default()
        }
    }

    fn usage(prompt_tokens: u32, completion_tokens: u32) -> ChatEvent {
        ChatEvent::Usage(Usage {
            prompt_tokens,
            completion_tokens,
        })
    }

    fn finish(reason: FinishReason, stop_sequence: Option<&str>) -> ChatEvent {
        ChatEvent::Finish {
            reason,
            stop_sequence: stop_sequence.map(str::to_string),
        }
    }

    fn says(text: &str) -> ChatEvent {
        ChatEvent::Text { text: text.into() }
    }

    /// Feeds chunks until the stream ends; the events, and the error if it ended in one.
    fn run(
        stream: &mut GenerationStream,
        chunks: Vec<EngineChunk>,
    ) -> (Vec<ChatEvent>, Option<RemoteError>) {
        let mut events = Vec::new();
        for chunk in chunks {
            match stream.on_chunk(chunk, &mut events) {
                Ok(false) => {}
                Ok(true) => return (events, None),
                Err(err) => return (events, Some(err)),
            }
        }
        (events, None)
    }

    /// Generated tool-call ids are random (`call_` and 32 hex digits): masks them as `call_*`.
    fn ids_masked(events: Vec<ChatEvent>) -> Vec<ChatEvent> {
        let generated = |id: &str| {
            id.strip_prefix("call_")
                .is_some_and(|hex| hex.len() == 32 && hex.chars().all(|c| c.is_ascii_hexdigit()))
        };
        events
            .into_iter()
            .map(|event| match event {
                ChatEvent::ToolCall {
                    index,
                    id,
                    name,
                    arguments,
                } => ChatEvent::ToolCall {
                    index,
                    id: id.map(|id| if generated(&id) { "call_*".into() } else { id }),
                    name,
                    arguments,
                },
                other => other,
            })
            .collect()
    }

    fn call(index: u32, id: Option<&str>, name: Option<&str>, arguments: &str) -> ChatEvent {
        ChatEvent::ToolCall {
            index,
            id: id.map(str::to_string),
            name: name.map(str::to_string),
            arguments: arguments.into(),
        }
    }

    #[test]
    fn event_sequences() {
        let stop = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let forced = Output::ToolArguments {
            name: "get_weather".into(),
        };
        // (what, stop strings, output, chunks, events)
        type Case = (
            &'static str,
            Vec<String>,
            Output,
            Vec<EngineChunk>,
            Vec<ChatEvent>,
        );
        let cases: Vec<Case> = vec![
            (
                "plain text",
                stop(&[]),
                Output::Text,
                vec![
                    text("The capital "),
                    last("is Paris.", "stop", Some((9, 6))),
                ],
                vec![
                    says("The capital "),
                    says("is Paris."),
                    usage(9, 6),
                    finish(FinishReason::Stop, None),
                ],
            ),
            (
                "empty deltas are not events",
                stop(&[]),
                Output::Text,
                vec![text(""), text("a"), last("", "stop", Some((1, 2)))],
                vec![says("a"), usage(1, 2), finish(FinishReason::Stop, None)],
            ),
            (
                "reasoning before text",
                stop(&[]),
                Output::Text,
                vec![
                    EngineChunk {
                        reasoning: Some("hmm".into()),
                        ..EngineChunk::default()
                    },
                    last("ok", "stop", Some((1, 2))),
                ],
                vec![
                    ChatEvent::Reasoning { text: "hmm".into() },
                    says("ok"),
                    usage(1, 2),
                    finish(FinishReason::Stop, None),
                ],
            ),
            (
                "a stop string across chunks cuts the text exactly",
                stop(&["END"]),
                Output::Text,
                vec![
                    text("one two E"),
                    text("ND three"),
                    text(" four"),
                    last("", "stop", Some((5, 4))),
                ],
                vec![
                    says("one two "),
                    usage(5, 4),
                    finish(FinishReason::StopSequence, Some("END")),
                ],
            ),
            (
                "a held partial match is released at the end",
                stop(&["END"]),
                Output::Text,
                vec![text("almost E"), last("N", "stop", Some((1, 2)))],
                vec![
                    says("almost "),
                    says("EN"),
                    usage(1, 2),
                    finish(FinishReason::Stop, None),
                ],
            ),
            (
                "length",
                stop(&[]),
                Output::Text,
                vec![last("cut", "length", Some((3, 1)))],
                vec![says("cut"), usage(3, 1), finish(FinishReason::Length, None)],
            ),
            (
                "forced tool arguments: the first fragment names the call",
                stop(&["}"]),
                forced.clone(),
                vec![
                    text("{\"city\": "),
                    text("\"Paris\"}"),
                    last("", "stop", Some((20, 7))),
                ],
                vec![
                    call(0, Some("call_*"), Some("get_weather"), "{\"city\": "),
                    call(0, None, None, "\"Paris\"}"),
                    usage(20, 7),
                    finish(FinishReason::ToolCalls, None),
                ],
            ),
            (
                "a tool selection is parsed at the end",
                stop(&[]),
                Output::ToolSelection,
                vec![
                    text("{\"name\": \"get_time\", "),
                    text("\"arguments\": {\"zone\": \"CET\"}}"),
                    last("", "stop", Some((30, 12))),
                ],
                vec![
                    call(0, Some("call_*"), Some("get_time"), "{\"zone\":\"CET\"}"),
                    usage(30, 12),
                    finish(FinishReason::ToolCalls, None),
                ],
            ),
            (
                "tool calls the engine parsed",
                stop(&[]),
                Output::Text,
                vec![EngineChunk {
                    tool_calls: vec![
                        EngineToolCall {
                            id: "call_a".into(),
                            name: "f".into(),
                            arguments: "{}".into(),
                        },
                        EngineToolCall {
                            id: "call_b".into(),
                            name: "g".into(),
                            arguments: "{\"x\":1}".into(),
                        },
                    ],
                    finish_reason: Some("tool_calls".into()),
                    usage: Some(Usage {
                        prompt_tokens: 8,
                        completion_tokens: 9,
                    }),
                    ..EngineChunk::default()
                }],
                vec![
                    call(0, Some("call_a"), Some("f"), "{}"),
                    call(1, Some("call_b"), Some("g"), "{\"x\":1}"),
                    usage(8, 9),
                    finish(FinishReason::ToolCalls, None),
                ],
            ),
        ];
        for (what, stops, output, chunks, expected) in cases {
            let mut stream = GenerationStream::new(&stops, output);
            let (events, error) = run(&mut stream, chunks);
            assert_eq!(error, None, "{what}");
            assert_eq!(ids_masked(events), expected, "{what}");
        }
    }

    #[test]
    fn after_a_stop_string_the_engine_gets_a_grace_then_usage_is_counted() {
        let mut stream = GenerationStream::new(&["\n".to_string()], Output::Text);
        let prompt = stream.prompt_tokens(11);
        assert_eq!(prompt, ChatEvent::PromptTokens { tokens: 11 });
        let mut chunks = vec![text("a"), text("b\nc")];
        chunks.extend((0..=MAX_CHUNKS_AFTER_STOP).map(|_| text("runs on")));
        let count = chunks.len();
        let mut events = Vec::new();
        let mut ended_after = None;
        for (i, chunk) in chunks.into_iter().enumerate() {
            if stream.on_chunk(chunk, &mut events).expect("no error") {
                ended_after = Some(i + 1);
                break;
            }
        }
        assert_eq!(ended_after, Some(count), "ends once the grace is spent");
        assert_eq!(
            events,
            vec![
                says("a"),
                says("b"),
                // The two chunks that were the answer; the prompt as counted first.
                usage(11, 2),
                finish(FinishReason::StopSequence, Some("\n")),
            ]
        );
    }

    #[test]
    fn the_engines_usage_wins_when_it_finishes_within_the_grace() {
        let mut stream = GenerationStream::new(&["!".to_string()], Output::Text);
        let _ = stream.prompt_tokens(4);
        let (events, error) = run(
            &mut stream,
            vec![
                text("hi! more"),
                text("ignored"),
                last("", "stop", Some((5, 3))),
            ],
        );
        assert_eq!(error, None);
        assert_eq!(
            events,
            vec![
                says("hi"),
                usage(5, 3),
                finish(FinishReason::StopSequence, Some("!"))
            ]
        );
    }

    #[test]
    fn failures_are_errors_of_the_right_kind() {
        // (what, output, chunks, text events before the error, error kind, message part)
        let cases = [
            (
                "canceled",
                Output::Text,
                vec![text("par"), last("", "canceled", None)],
                vec![says("par")],
                ErrorKind::Internal,
                "cancelled",
            ),
            (
                "a selection cut by max_tokens",
                Output::ToolSelection,
                vec![last("{\"name\": \"f\", \"argu", "length", Some((1, 1)))],
                vec![],
                ErrorKind::InvalidRequest,
                "max_tokens ran out",
            ),
            (
                "a selection that is not JSON",
                Output::ToolSelection,
                vec![last("{\"name\": ", "stop", Some((1, 1)))],
                vec![],
                ErrorKind::Internal,
                "did not complete its tool call",
            ),
        ];
        for (what, output, chunks, before, kind, message) in cases {
            let mut stream = GenerationStream::new(&[], output);
            let (events, error) = run(&mut stream, chunks);
            let error = error.unwrap_or_else(|| panic!("{what}: no error"));
            assert_eq!(events, before, "{what}");
            assert_eq!(error.kind, kind, "{what}");
            assert!(error.message.contains(message), "{what}: {}", error.message);
        }
    }

    #[test]
    fn constrained_json_is_complete_or_an_error() {
        let forced = || Output::ToolArguments {
            name: "get_weather".into(),
        };
        // Cut by max_tokens: the fragments already sent are followed by an error, not a call.
        let mut stream = GenerationStream::new(&[], forced()).constrained(true);
        let (events, error) = run(
            &mut stream,
            vec![text("{\"city\":\"Par"), last("is", "length", Some((9, 2)))],
        );
        let error = error.expect("an error");
        assert_eq!(error.kind, ErrorKind::InvalidRequest);
        assert_eq!(
            error.message,
            "max_tokens ran out before the model completed the arguments of its call to `get_weather`; raise max_tokens"
        );
        assert!(!events.iter().any(|e| matches!(e, ChatEvent::Finish { .. })));
        // Closed on the last token of the budget: a complete call.
        let mut stream = GenerationStream::new(&[], forced()).constrained(true);
        let (events, error) = run(
            &mut stream,
            vec![
                text("{\"city\":"),
                last("\"Paris\"}", "length", Some((9, 2))),
            ],
        );
        assert_eq!(error, None);
        assert_eq!(events.last(), Some(&finish(FinishReason::ToolCalls, None)));
        // A JSON answer (response_format) is held to the same rule.
        let mut stream = GenerationStream::new(&[], Output::Text).constrained(true);
        let (events, error) = run(&mut stream, vec![last("{\"capital\":\"Pa", "length", None)]);
        assert_eq!(events, vec![says("{\"capital\":\"Pa")]);
        assert!(error
            .expect("an error")
            .message
            .contains("completed its JSON answer"));
        let mut stream = GenerationStream::new(&[], Output::Text).constrained(true);
        let (events, error) = run(
            &mut stream,
            vec![last("{\"capital\":1}", "length", Some((1, 4)))],
        );
        assert_eq!(error, None);
        assert_eq!(events.last(), Some(&finish(FinishReason::Stop, None)));
        // A selection cut short says so too.
        let mut stream = GenerationStream::new(&[], Output::ToolSelection).constrained(true);
        let (_, error) = run(
            &mut stream,
            vec![last("{\"name\":\"f\",\"argu", "length", None)],
        );
        assert!(error
            .expect("an error")
            .message
            .starts_with("max_tokens ran out before the model completed its tool call"));
    }

    #[test]
    fn a_raw_generation_keeps_the_leading_space_of_its_first_token() {
        let with_token = |content: &str, token: &str| EngineChunk {
            content: Some(content.into()),
            token_text: Some(token.into()),
            ..EngineChunk::default()
        };
        let mut stream = GenerationStream::new(&[], Output::Text);
        let (events, _) = run(
            &mut stream,
            vec![with_token("and", " and"), with_token(" more", " more")],
        );
        assert_eq!(events, vec![says(" and"), says(" more")]);
        // A first delta of several tokens, or a tokenizer that reports no space: as given.
        let mut stream = GenerationStream::new(&[], Output::Text);
        let (events, _) = run(&mut stream, vec![with_token("héllo", " llo")]);
        assert_eq!(events, vec![says("héllo")]);
        let mut stream = GenerationStream::new(&[], Output::Text);
        let (events, _) = run(&mut stream, vec![with_token("and", "and")]);
        assert_eq!(events, vec![says("and")]);
        // A first token that is only a line break.
        let mut stream = GenerationStream::new(&[], Output::Text);
        let (events, _) = run(&mut stream, vec![with_token("", "\n")]);
        assert_eq!(events, vec![says("\n")]);
    }

    #[test]
    fn a_generation_the_engine_ends_silently_finishes_with_what_it_said() {
        let mut stream = GenerationStream::new(&[], Output::Text);
        let (events, error) = run(&mut stream, vec![text("Hello"), text(" wor")]);
        assert_eq!(events, vec![says("Hello"), says(" wor")]);
        assert!(error.is_none());
        let mut rest = Vec::new();
        stream.on_silent_end(&mut rest).expect("a finished answer");
        assert_eq!(
            rest,
            vec![usage(0, 3), finish(FinishReason::Length, None)],
            "the lost chunk counts as a token"
        );

        let mut silent = GenerationStream::new(&[], Output::Text);
        let error = silent
            .on_silent_end(&mut Vec::new())
            .expect_err("no output");
        assert_eq!(error.kind, ErrorKind::Internal);

        // Constrained JSON still has to be complete.
        let mut json = GenerationStream::new(&[], Output::Text).constrained(true);
        run(&mut json, vec![text("{\"a\": 1")]);
        assert!(json.on_silent_end(&mut Vec::new()).is_err());
    }

    #[test]
    fn choices_fold_into_one_chunk() {
        let mut a = None;
        append(&mut a, Some("x".to_string()));
        append(&mut a, None);
        append(&mut a, Some("y".to_string()));
        assert_eq!(a.as_deref(), Some("xy"));
    }
}
