//! A synthetic engine for load tests and benchmarks of routing, never for answers.
//!
//! It waits a fixed time to first token, then emits a fixed number of tokens at a fixed rate, and
//! advertises a model id that starts with `synthetic`, so nobody mistakes its output for a
//! model's. It lets routing and failure tests run thousands of requests on a small machine.

use std::time::Duration;

use async_trait::async_trait;
use auxot_common::chat::{ChatEvent, ChatRequest, FinishReason, Usage};
use auxot_common::error::RemoteError;
use auxot_common::mesh::node::{DeviceInfo, ModelInfo};
use tokio::sync::mpsc::UnboundedSender;

use super::Engine;

/// Pace and size of synthetic generations.
#[derive(Debug, Clone)]
pub struct SyntheticOptions {
    /// Model id to advertise; must start with `synthetic`.
    pub model_id: String,
    pub time_to_first_token: Duration,
    pub tokens_per_second: f64,
    /// Tokens per answer unless `max_tokens` is lower.
    pub tokens: u32,
    pub capacity: u32,
}

pub struct SyntheticEngine {
    options: SyntheticOptions,
    info: ModelInfo,
}

impl SyntheticEngine {
    pub fn new(options: SyntheticOptions) -> Result<Self, String> {
        if !options.model_id.starts_with("synthetic") {
            return Err(format!(
                "synthetic model id `{}` must start with `synthetic`",
                options.model_id
            ));
        }
        if options.tokens_per_second <= 0.0 {
            return Err("synthetic tokens per second must be positive".into());
        }
        let info = ModelInfo {
            id: options.model_id.clone(),
            context_length: Some(8192),
            vision: false,
            reasoning: false,
            ..Default::default()
        };
        Ok(SyntheticEngine { options, info })
    }

    /// A crude prompt size: one token per four bytes of text, like most tokenizers on English.
    fn prompt_tokens(request: &ChatRequest) -> u32 {
        let bytes: usize = request
            .messages
            .iter()
            .map(|m| m.joined_text().len())
            .sum::<usize>()
            + request.prompt.as_ref().map_or(0, String::len);
        (bytes / 4).max(1) as u32
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

    async fn chat(&self, request: ChatRequest, events: UnboundedSender<ChatEvent>) {
        let limit = request.sampling.max_tokens.unwrap_or(u32::MAX);
        let count = self.options.tokens.min(limit);
        let gap = Duration::from_secs_f64(1.0 / self.options.tokens_per_second);
        if request.prompt_tokens_first {
            let tokens = Self::prompt_tokens(&request);
            if events.send(ChatEvent::PromptTokens { tokens }).is_err() {
                return;
            }
        }
        tokio::select! {
            _ = events.closed() => return,
            _ = tokio::time::sleep(self.options.time_to_first_token) => {}
        }
        for i in 0..count {
            if i > 0 {
                tokio::select! {
                    _ = events.closed() => return,
                    _ = tokio::time::sleep(gap) => {}
                }
            }
            let text = format!("tok{i} ");
            if events.send(ChatEvent::Text { text }).is_err() {
                return;
            }
        }
        let _ = events.send(ChatEvent::Usage(Usage {
            prompt_tokens: Self::prompt_tokens(&request),
            completion_tokens: count,
        }));
        let reason = if count < self.options.tokens {
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
    use auxot_common::chat::{Message, Role};

    #[tokio::test]
    async fn emits_the_configured_tokens_then_usage_and_finish() {
        let engine = SyntheticEngine::new(SyntheticOptions {
            model_id: "synthetic".into(),
            time_to_first_token: Duration::from_millis(1),
            tokens_per_second: 1000.0,
            tokens: 3,
            capacity: 4,
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

    #[test]
    fn refuses_a_model_id_that_hides_what_it_is() {
        let result = SyntheticEngine::new(SyntheticOptions {
            model_id: "gpt-4".into(),
            time_to_first_token: Duration::ZERO,
            tokens_per_second: 1.0,
            tokens: 1,
            capacity: 1,
        });
        assert!(result.is_err());
    }
}
