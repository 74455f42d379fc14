//! A synthetic engine for load tests and benchmarks of routing, never for answers.
//!
//! It waits a fixed time to first token, then emits a fixed number of tokens at a fixed rate, and
//! advertises a model id that starts with `synthetic`, so nobody mistakes its output for a
//! model's. It lets routing and failure tests run thousands of requests on a small machine.
//!
//! Its output is a known sequence (`tok0 tok1 ...`, or the same inside the arguments of one call
//! when a tool is forced), as a model decoding greedily would give, so tests can check that a
//! generation continued on another worker ([`ChatRequest::continue_final`]) says exactly what
//! an uninterrupted one says: a continuation emits what follows the cut turn in the sequence.
//!
//! It can also model a prompt-prefix cache (as vLLM's or mistral.rs's paged attention keep): a
//! prompt costs [`SyntheticOptions::prefill_per_token`] per token not found in the cache, which
//! remembers the last [`SyntheticOptions::prefix_cache`] conversation prefixes it saw (answers
//! included). Prefix-aware routing is measured against it.
//!
//! With no time to first token and a rate of 0 it sets no timer at all and answers at once (the
//! zero-delay mode): what is left to measure is the router and the transport, as a mock backend
//! measures a peer router.

use std::collections::HashMap;
use std::hash::{Hash as _, Hasher as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use auxot_common::chat::{
    ChatEvent, ChatRequest, FinishReason, Message, Part, Role, ToolChoice, Usage,
};
use auxot_common::error::RemoteError;
use auxot_common::mesh::node::{DeviceInfo, ModelInfo};
use tokio::sync::mpsc::UnboundedSender;

use super::continuation::{self, Partial};
use super::{Engine, PrefixCacheStats};

/// Pace and size of synthetic generations.
#[derive(Debug, Clone)]
pub struct SyntheticOptions {
    /// Model id to advertise; must start with `synthetic`.
    pub model_id: String,
    pub time_to_first_token: Duration,
    /// 0: every token at once, with no timer.
    pub tokens_per_second: f64,
    /// Tokens per answer unless `max_tokens` is lower.
    pub tokens: u32,
    pub capacity: u32,
    /// Added to the time to first token for each prompt token the prefix cache does not hold.
    pub prefill_per_token: Duration,
    /// Conversation prefixes the modelled prefix cache holds (0: no cache).
    pub prefix_cache: usize,
}

#[cfg(test)]
impl SyntheticOptions {
    /// A fast engine with no prefill cost and no cache, as tests want it.
    pub fn new(model_id: &str, tokens: u32) -> Self {
        SyntheticOptions {
            model_id: model_id.into(),
            time_to_first_token: Duration::ZERO,
            tokens_per_second: 1000.0,
            tokens,
            capacity: 4,
            prefill_per_token: Duration::ZERO,
            prefix_cache: 0,
        }
    }
}

pub struct SyntheticEngine {
    options: SyntheticOptions,
    info: ModelInfo,
    cache: Mutex<PrefixCache>,
    stats: CacheCounters,
}

/// The id of the one call a synthetic generation makes when a tool is forced.
const CALL_ID: &str = "call_synthetic0";

/// What one generation says: one piece per token, as text or as the argument fragments of a
/// call to `call`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Script {
    call: Option<String>,
    pieces: Vec<String>,
}

impl Script {
    fn new(request: &ChatRequest, count: u32) -> Self {
        let words = (0..count).map(|i| format!("tok{i} "));
        let call = match &request.tool_choice {
            ToolChoice::Function(name) => Some(name.clone()),
            ToolChoice::Required => request.tools.first().map(|t| t.name.clone()),
            _ => None,
        };
        let Some(call) = call else {
            return Script {
                call: None,
                pieces: words.collect(),
            };
        };
        // `{"text":"tok0 tok1 "}`, the braces riding on the first and last tokens.
        let mut pieces: Vec<String> = words.collect();
        if let Some(first) = pieces.first_mut() {
            first.insert_str(0, "{\"text\":\"");
        }
        match pieces.last_mut() {
            Some(last) => last.push_str("\"}"),
            None => pieces.push("{\"text\":\"\"}".into()),
        }
        Script {
            call: Some(call),
            pieces,
        }
    }

    /// The whole output, as the next turn of the conversation would quote it.
    fn message(&self) -> Message {
        let all = self.pieces.concat();
        let part = match &self.call {
            Some(name) => Part::ToolCall {
                id: CALL_ID.into(),
                name: name.clone(),
                arguments: all,
            },
            None => Part::Text { text: all },
        };
        Message {
            role: Role::Assistant,
            content: vec![part],
        }
    }

    /// The events still to send after `partial` (everything for a fresh generation); an error
    /// when `partial` is not a beginning of this script.
    fn events_after(&self, partial: &Partial) -> Result<Vec<ChatEvent>, RemoteError> {
        let diverged = || {
            RemoteError::invalid(
                "the cut turn is not what the synthetic engine says for this request",
            )
        };
        let Some(name) = &self.call else {
            if !partial.calls.is_empty() || !partial.reasoning.is_empty() {
                return Err(diverged());
            }
            let rest = remaining(&self.pieces, &partial.text).ok_or_else(diverged)?;
            return Ok(rest
                .into_iter()
                .map(|text| ChatEvent::Text { text })
                .collect());
        };
        if !partial.text.is_empty() || !partial.reasoning.is_empty() || partial.calls.len() > 1 {
            return Err(diverged());
        }
        let (mut opened, sent) = match partial.calls.first() {
            Some(call) if &call.name == name && call.id == CALL_ID => {
                (true, call.arguments.as_str())
            }
            Some(_) => return Err(diverged()),
            None => (false, ""),
        };
        let rest = remaining(&self.pieces, sent).ok_or_else(diverged)?;
        Ok(rest
            .into_iter()
            .map(|arguments| {
                let first = !opened;
                opened = true;
                ChatEvent::ToolCall {
                    index: 0,
                    id: first.then(|| CALL_ID.to_string()),
                    name: first.then(|| name.clone()),
                    arguments,
                }
            })
            .collect())
    }
}

/// The pieces left once `sent` (a beginning of their concatenation, possibly ending inside a
/// piece) is taken off; `None` when `sent` is not such a beginning.
fn remaining(pieces: &[String], sent: &str) -> Option<Vec<String>> {
    let mut offset = 0;
    let mut rest = Vec::new();
    for piece in pieces {
        let end = offset + piece.len();
        if end <= sent.len() {
            if sent.get(offset..end)? != piece {
                return None;
            }
        } else if offset < sent.len() {
            let head = sent.get(offset..)?;
            rest.push(piece.strip_prefix(head)?.to_string());
        } else {
            rest.push(piece.clone());
        }
        offset = end;
    }
    (sent.len() <= offset).then_some(rest)
}

/// A crude token count: one token per four bytes of text, like most tokenizers on English.
fn tokens_of(bytes: usize) -> u32 {
    u32::try_from(bytes / 4).unwrap_or(u32::MAX)
}

fn message_bytes(message: &Message) -> usize {
    let calls: usize = message
        .content
        .iter()
        .map(|p| match p {
            Part::ToolCall { arguments, .. } => arguments.len(),
            Part::ToolResult { content, .. } => content.len(),
            _ => 0,
        })
        .sum();
    message.joined_text().len() + calls
}

/// Each prefix of a conversation as (hash, bytes so far), shortest first.
fn prefixes(messages: &[Message]) -> Vec<(u64, usize)> {
    let mut hasher = std::hash::DefaultHasher::new();
    let mut bytes = 0;
    messages
        .iter()
        .map(|m| {
            m.role.as_str().hash(&mut hasher);
            m.joined_text().hash(&mut hasher);
            for part in &m.content {
                if let Part::ToolCall {
                    name, arguments, ..
                } = part
                {
                    name.hash(&mut hasher);
                    arguments.hash(&mut hasher);
                }
            }
            bytes += message_bytes(m);
            (hasher.finish(), bytes)
        })
        .collect()
}

/// The modelled prefix cache: conversation prefixes by hash, least recently used evicted.
#[derive(Debug, Default)]
struct PrefixCache {
    capacity: usize,
    /// Prefix hash to the tick it was last used at.
    entries: HashMap<u64, u64>,
    tick: u64,
}

impl PrefixCache {
    /// Bytes of the longest cached prefix of `prefixes`, touching it.
    fn lookup(&mut self, prefixes: &[(u64, usize)]) -> usize {
        self.tick += 1;
        for (hash, bytes) in prefixes.iter().rev() {
            if let Some(used) = self.entries.get_mut(hash) {
                *used = self.tick;
                return *bytes;
            }
        }
        0
    }

    fn insert(&mut self, prefixes: &[(u64, usize)]) {
        if self.capacity == 0 {
            return;
        }
        self.tick += 1;
        for (hash, _) in prefixes {
            self.entries.insert(*hash, self.tick);
        }
        while self.entries.len() > self.capacity {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, used)| **used)
                .map(|(h, _)| *h);
            match oldest {
                Some(hash) => self.entries.remove(&hash),
                None => break,
            };
        }
    }
}

#[derive(Debug, Default)]
struct CacheCounters {
    lookups: AtomicU64,
    hits: AtomicU64,
    prompt_tokens: AtomicU64,
    cached_tokens: AtomicU64,
}

impl SyntheticEngine {
    pub fn new(options: SyntheticOptions) -> Result<Self, String> {
        if !options.model_id.starts_with("synthetic") {
            return Err(format!(
                "synthetic model id `{}` must start with `synthetic`",
                options.model_id
            ));
        }
        if !(options.tokens_per_second >= 0.0 && options.tokens_per_second.is_finite()) {
            return Err("synthetic tokens per second must be 0 (no pacing) or positive".into());
        }
        let info = ModelInfo {
            id: options.model_id.clone(),
            context_length: Some(8192),
            vision: false,
            reasoning: false,
            continues: true,
            ..Default::default()
        };
        let cache = Mutex::new(PrefixCache {
            capacity: options.prefix_cache,
            ..PrefixCache::default()
        });
        Ok(SyntheticEngine {
            options,
            info,
            cache,
            stats: CacheCounters::default(),
        })
    }

    /// The prompt size of a conversation, or of a raw prompt (at least one token).
    fn prompt_tokens(request: &ChatRequest) -> u32 {
        let bytes: usize = request.messages.iter().map(message_bytes).sum::<usize>()
            + request.prompt.as_ref().map_or(0, String::len);
        tokens_of(bytes).max(1)
    }

    /// Time to first token for `messages` as prompt: the fixed part plus prefill of what the
    /// prefix cache does not hold. Counted in the cache figures.
    fn time_to_first_token(&self, prompt: &[(u64, usize)]) -> Duration {
        if self.options.prefix_cache == 0 {
            return self.options.time_to_first_token;
        }
        let total = prompt.last().map_or(0, |(_, bytes)| *bytes);
        let cached = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .lookup(prompt);
        let stats = &self.stats;
        stats.lookups.fetch_add(1, Ordering::Relaxed);
        stats
            .hits
            .fetch_add(u64::from(cached > 0), Ordering::Relaxed);
        stats
            .prompt_tokens
            .fetch_add(u64::from(tokens_of(total)), Ordering::Relaxed);
        stats
            .cached_tokens
            .fetch_add(u64::from(tokens_of(cached)), Ordering::Relaxed);
        let uncached = tokens_of(total.saturating_sub(cached));
        self.options.time_to_first_token + self.options.prefill_per_token * uncached
    }

    fn remember(&self, prefixes: &[(u64, usize)]) {
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(prefixes);
    }
}

#[async_trait]
impl Engine for SyntheticEngine {
    fn model(&self) -> &ModelInfo {
        &self.info
    }

    fn device(&self) -> DeviceInfo {
        DeviceInfo {
            kind: "synthetic".into(),
            name: "synthetic engine (no model)".into(),
            memory_mib: None,
            count: 0,
        }
    }

    fn capacity(&self) -> u32 {
        self.options.capacity
    }

    fn prefix_cache(&self) -> Option<PrefixCacheStats> {
        (self.options.prefix_cache > 0).then(|| PrefixCacheStats {
            lookups: self.stats.lookups.load(Ordering::Relaxed),
            hits: self.stats.hits.load(Ordering::Relaxed),
            prompt_tokens: self.stats.prompt_tokens.load(Ordering::Relaxed),
            cached_tokens: self.stats.cached_tokens.load(Ordering::Relaxed),
        })
    }

    async fn chat(&self, request: ChatRequest, events: UnboundedSender<ChatEvent>) {
        let (base, partial) = match continuation::split(&request) {
            Ok(Some((base, partial))) => (base, partial),
            Ok(None) => (request.clone(), Partial::default()),
            Err(error) => {
                let _ = events.send(ChatEvent::Error(error));
                return;
            }
        };
        let limit = request.sampling.max_tokens.unwrap_or(u32::MAX);
        let count = self.options.tokens.min(limit);
        let script = Script::new(&base, count);
        let rest = match script.events_after(&partial) {
            Ok(rest) => rest,
            Err(error) => {
                let _ = events.send(ChatEvent::Error(error));
                return;
            }
        };
        let gap = (self.options.tokens_per_second > 0.0)
            .then(|| Duration::from_secs_f64(1.0 / self.options.tokens_per_second));
        let prompt_tokens = Self::prompt_tokens(&base);
        if request.prompt_tokens_first
            && events
                .send(ChatEvent::PromptTokens {
                    tokens: prompt_tokens,
                })
                .is_err()
        {
            return;
        }
        // The cut turn is prompt to this engine: prefilled like the rest.
        let prompt = prefixes(&request.messages);
        let first = self.time_to_first_token(&prompt);
        if !first.is_zero() {
            tokio::select! {
                _ = events.closed() => return,
                _ = tokio::time::sleep(first) => {}
            }
        }
        self.remember(&prompt);
        for (i, event) in rest.into_iter().enumerate() {
            if let (true, Some(gap)) = (i > 0, gap) {
                tokio::select! {
                    _ = events.closed() => return,
                    _ = tokio::time::sleep(gap) => {}
                }
            }
            if events.send(event).is_err() {
                return;
            }
        }
        let mut answered = base.messages;
        answered.push(script.message());
        self.remember(&prefixes(&answered));
        let _ = events.send(ChatEvent::Usage(Usage {
            prompt_tokens,
            completion_tokens: count,
        }));
        let reason = if script.call.is_some() {
            FinishReason::ToolCalls
        } else if count < self.options.tokens {
            FinishReason::Length
        } else {
            FinishReason::Stop
        };
        let _ = events.send(ChatEvent::Finish {
            reason,
            stop_sequence: None,
        });
    }

    async fn count_tokens(&self, request: &ChatRequest) -> Result<u32, RemoteError> {
        Ok(Self::prompt_tokens(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future as _;

    #[tokio::test]
    async fn emits_the_configured_tokens_then_usage_and_finish() {
        let engine = SyntheticEngine::new(SyntheticOptions {
            model_id: "synthetic".into(),
            time_to_first_token: Duration::from_millis(1),
            tokens_per_second: 1000.0,
            tokens: 3,
            capacity: 4,
            prefill_per_token: Duration::ZERO,
            prefix_cache: 0,
        })
        .expect("engine");
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let request = ChatRequest {
            messages: vec![Message::text(Role::User, "hello there")],
            ..Default::default()
        };
        engine.chat(request, tx).await;
        let mut events = Vec::new();
        while let Some(e) = rx.recv().await {
            events.push(e);
        }
        assert_eq!(events.len(), 5);
        assert_eq!(
            events[0],
            ChatEvent::Text {
                text: "tok0 ".into()
            }
        );
        assert!(matches!(
            events[3],
            ChatEvent::Usage(Usage {
                completion_tokens: 3,
                ..
            })
        ));
        assert!(matches!(
            events[4],
            ChatEvent::Finish {
                reason: FinishReason::Stop,
                ..
            }
        ));
    }

    #[tokio::test]
    async fn the_prompt_size_comes_first_when_asked_for() {
        let engine = SyntheticEngine::new(SyntheticOptions {
            model_id: "synthetic".into(),
            time_to_first_token: Duration::ZERO,
            tokens_per_second: 1000.0,
            tokens: 2,
            capacity: 1,
            prefill_per_token: Duration::ZERO,
            prefix_cache: 0,
        })
        .expect("engine");
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let request = ChatRequest {
            messages: vec![Message::text(Role::User, "twelve bytes")],
            prompt_tokens_first: true,
            sampling: auxot_common::chat::Sampling {
                max_tokens: Some(1),
                ..Default::default()
            },
            ..Default::default()
        };
        engine.chat(request, tx).await;
        let mut events = Vec::new();
        while let Some(e) = rx.recv().await {
            events.push(e);
        }
        assert_eq!(
            events,
            vec![
                ChatEvent::PromptTokens { tokens: 3 },
                ChatEvent::Text {
                    text: "tok0 ".into()
                },
                ChatEvent::Usage(Usage {
                    prompt_tokens: 3,
                    completion_tokens: 1
                }),
                ChatEvent::Finish {
                    reason: FinishReason::Length,
                    stop_sequence: None
                },
            ]
        );
    }

    async fn run(engine: &SyntheticEngine, request: ChatRequest) -> Vec<ChatEvent> {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        engine.chat(request, tx).await;
        let mut events = Vec::new();
        while let Some(e) = rx.recv().await {
            events.push(e);
        }
        events
    }

    fn cut(request: &ChatRequest, parts: Vec<Part>) -> ChatRequest {
        let mut continued = request.clone();
        continued.messages.push(Message {
            role: Role::Assistant,
            content: parts,
        });
        continued.continue_final = true;
        continued
    }

    #[tokio::test]
    async fn a_continuation_says_what_follows_the_cut_turn() {
        let engine = SyntheticEngine::new(SyntheticOptions::new("synthetic", 5)).expect("engine");
        let request = ChatRequest {
            messages: vec![Message::text(Role::User, "twelve bytes")],
            ..Default::default()
        };
        // Cut inside a token, as a stream cut between two chunks of one would be.
        let events = run(
            &engine,
            cut(
                &request,
                vec![Part::Text {
                    text: "tok0 tok1 to".into(),
                }],
            ),
        )
        .await;
        let says = |t: &str| ChatEvent::Text { text: t.into() };
        assert_eq!(
            events,
            vec![
                says("k2 "),
                says("tok3 "),
                says("tok4 "),
                ChatEvent::Usage(Usage {
                    prompt_tokens: 3,
                    completion_tokens: 5
                }),
                ChatEvent::Finish {
                    reason: FinishReason::Stop,
                    stop_sequence: None
                },
            ]
        );
        // Something the engine never said is not continued.
        let wrong = cut(
            &request,
            vec![Part::Text {
                text: "tok1 ".into(),
            }],
        );
        assert!(matches!(
            run(&engine, wrong).await[..],
            [ChatEvent::Error(_)]
        ));
    }

    #[tokio::test]
    async fn a_forced_call_streams_its_arguments_and_continues_mid_call() {
        let engine = SyntheticEngine::new(SyntheticOptions::new("synthetic", 3)).expect("engine");
        let request = ChatRequest {
            messages: vec![Message::text(Role::User, "call it")],
            tools: vec![auxot_common::chat::ToolSpec {
                name: "record".into(),
                description: String::new(),
                parameters: serde_json::json!({"type": "object"}),
            }],
            tool_choice: ToolChoice::Function("record".into()),
            ..Default::default()
        };
        let whole = run(&engine, request.clone()).await;
        let mut completion = auxot_common::completion::Completion::default();
        for event in &whole {
            completion.apply(event).expect("bounded");
        }
        let arguments = &completion.tool_calls[0].arguments;
        let parsed: serde_json::Value = serde_json::from_str(arguments).expect("JSON arguments");
        assert_eq!(parsed["text"], "tok0 tok1 tok2 ");
        assert_eq!(completion.finish, Some(FinishReason::ToolCalls));

        let partial = cut(
            &request,
            vec![Part::ToolCall {
                id: CALL_ID.into(),
                name: "record".into(),
                arguments: "{\"text\":\"tok0 ".into(),
            }],
        );
        let rest = run(&engine, partial).await;
        assert_eq!(
            rest[..2],
            [
                ChatEvent::ToolCall {
                    index: 0,
                    id: None,
                    name: None,
                    arguments: "tok1 ".into()
                },
                ChatEvent::ToolCall {
                    index: 0,
                    id: None,
                    name: None,
                    arguments: "tok2 \"}".into()
                },
            ]
        );
    }

    #[tokio::test]
    async fn the_prefix_cache_finds_the_previous_turn() {
        let mut options = SyntheticOptions::new("synthetic", 2);
        options.prefix_cache = 16;
        let engine = SyntheticEngine::new(options).expect("engine");
        let first = ChatRequest {
            messages: vec![
                Message::text(Role::System, "You are a terse assistant for tests."),
                Message::text(Role::User, "first question"),
            ],
            ..Default::default()
        };
        run(&engine, first.clone()).await;
        let stats = engine.prefix_cache().expect("a cache");
        assert_eq!((stats.lookups, stats.hits, stats.cached_tokens), (1, 0, 0));
        let mut second = first.clone();
        second
            .messages
            .push(Message::text(Role::Assistant, "tok0 tok1 "));
        second.messages.push(Message::text(Role::User, "and then?"));
        run(&engine, second).await;
        let stats = engine.prefix_cache().expect("a cache");
        assert_eq!((stats.lookups, stats.hits), (2, 1));
        // The first prompt (12 tokens) was computed; of the second (17), all but the new
        // question (2) was cached.
        assert_eq!((stats.prompt_tokens, stats.cached_tokens), (12 + 17, 15));
    }

    #[test]
    fn zero_delay_answers_without_waiting() {
        let engine = SyntheticEngine::new(SyntheticOptions {
            model_id: "synthetic".into(),
            time_to_first_token: Duration::ZERO,
            tokens_per_second: 0.0,
            tokens: 3,
            capacity: 1,
            prefill_per_token: Duration::ZERO,
            prefix_cache: 0,
        })
        .expect("engine");
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        // Polled once, outside any runtime: a timer would leave it pending (or panic).
        let mut chat = std::pin::pin!(engine.chat(ChatRequest::default(), tx));
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(chat.as_mut().poll(&mut context).is_ready());
        let mut texts = Vec::new();
        while let Ok(e) = rx.try_recv() {
            if let ChatEvent::Text { text } = e {
                texts.push(text);
            }
        }
        assert_eq!(texts, ["tok0 ", "tok1 ", "tok2 "]);
    }

    #[test]
    fn refuses_a_model_id_that_hides_what_it_is() {
        let options = |model_id: &str, tokens_per_second| SyntheticOptions {
            model_id: model_id.into(),
            time_to_first_token: Duration::ZERO,
            tokens_per_second,
            tokens: 1,
            capacity: 1,
            prefill_per_token: Duration::ZERO,
            prefix_cache: 0,
        };
        assert!(SyntheticEngine::new(options("gpt-4", 1.0)).is_err());
        assert!(SyntheticEngine::new(options("synthetic", -1.0)).is_err());
        assert!(SyntheticEngine::new(options("synthetic", f64::NAN)).is_err());
    }
}
