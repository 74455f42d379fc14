//! The server-side tool loop: the router runs the tools the mesh provides when the model calls
//! them, and continues the generation with their results.
//!
//! It is opt-in, per request (`"auxot_mesh_tools": true` or a list of tool names in an OpenAI or
//! Anthropic body) or for every request of a router (`--mesh-tools`). The mesh tools are added
//! to the request's tools. When a round ends with tool calls that are all mesh tools, the router
//! executes them, appends the calls and results to the conversation, and starts the next round
//! (with `tool_choice` back to `auto`, so a forced first call does not repeat forever), up to
//! `--max-tool-rounds`. A round whose calls include a tool the mesh does not provide ends the
//! loop: the calls go back to the caller as usual. Text is streamed to the caller as it comes in
//! every round; usage adds up over the rounds.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use auxot_common::chat::{
    ChatEvent, ChatRequest, FinishReason, Message, Part, Role, ToolChoice, ToolSpec, Usage,
};
use auxot_common::completion::Completion;
use serde::Deserialize;
use tracing::debug;

use super::generator::Generator;
use super::source::EventSource;
use super::tools;
use crate::error::ApiError;
use crate::forward::stream::{ChatStream, Trace};

/// Which mesh tools a request opts into.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum MeshTools {
    All(bool),
    Named(Vec<String>),
}

/// Adds the selected mesh tools to `request`; the set of their names (empty when the request
/// did not opt in).
pub fn attach(
    generator: &Generator,
    request: &mut ChatRequest,
    selection: Option<&MeshTools>,
) -> Result<HashSet<String>, ApiError> {
    let selection = match selection {
        Some(MeshTools::All(false)) => return Ok(HashSet::new()),
        Some(selection) => selection.clone(),
        None if generator.mesh_tools_by_default => MeshTools::All(true),
        None => return Ok(HashSet::new()),
    };
    let catalog: Vec<_> = tools::catalog(generator.forwarder.registry())
        .into_iter()
        .filter(|t| t.available)
        .collect();
    let chosen: Vec<_> = match &selection {
        MeshTools::All(_) => catalog,
        MeshTools::Named(names) => {
            let mut chosen = Vec::new();
            for name in names {
                let tool = catalog.iter().find(|t| &t.name == name).ok_or_else(|| {
                    ApiError::invalid(format!(
                        "auxot_mesh_tools: no available mesh tool is named `{name}`"
                    ))
                })?;
                chosen.push(tool.clone());
            }
            chosen
        }
    };
    let mut names = HashSet::new();
    for tool in chosen {
        // A tool the caller defined itself stays the caller's.
        if request.tools.iter().any(|t| t.name == tool.name) {
            continue;
        }
        names.insert(tool.name.clone());
        request.tools.push(ToolSpec {
            name: tool.name,
            description: tool.description,
            parameters: tool.parameters,
        });
    }
    Ok(names)
}

/// Checks that a forced tool choice names a tool the request has (its own or a mesh tool).
pub fn check_tool_choice(request: &ChatRequest) -> Result<(), ApiError> {
    match &request.tool_choice {
        ToolChoice::Required if request.tools.is_empty() => Err(ApiError::invalid(
            "tool_choice: forcing a tool call needs at least one tool in `tools`",
        )),
        ToolChoice::Function(name) if !request.tools.iter().any(|t| &t.name == name) => {
            Err(ApiError::invalid(format!(
                "tool_choice: `{name}` is not one of the request's tools"
            )))
        }
        _ => Ok(()),
    }
}

/// A generation that runs mesh tools between rounds.
pub struct ToolLoop {
    generator: Arc<Generator>,
    request: ChatRequest,
    mesh: HashSet<String>,
    rounds_left: u32,
    current: Option<ChatStream>,
    model: String,
    /// The first round's worker.
    worker: String,
    /// How the first round reached its worker.
    trace: Trace,
    /// Events ready to hand out.
    ready: VecDeque<ChatEvent>,
    /// This round so far, to replay it into the conversation.
    round: Completion,
    /// Tool-call events of this round, held until we know whether the caller must see them.
    held_calls: Vec<ChatEvent>,
    /// Usage of the finished rounds.
    usage: Usage,
    /// Set once the first round ended: later rounds' prompt counts are not forwarded.
    later_round: bool,
    done: bool,
}

impl ToolLoop {
    /// Starts the first round, so errors before any output are still HTTP errors.
    pub async fn start(
        generator: Arc<Generator>,
        request: ChatRequest,
        mesh: HashSet<String>,
    ) -> Result<Self, ApiError> {
        let stream = generator.forwarder.chat(&request).await?;
        let rounds_left = generator.max_tool_rounds;
        Ok(ToolLoop {
            model: stream.model.clone(),
            worker: stream.worker.clone(),
            trace: stream.trace,
            generator,
            request,
            mesh,
            rounds_left,
            current: Some(stream),
            ready: VecDeque::new(),
            round: Completion::default(),
            held_calls: Vec::new(),
            usage: Usage::default(),
            later_round: false,
            done: false,
        })
    }

    pub fn worker(&self) -> &str {
        &self.worker
    }

    pub fn trace(&self) -> Trace {
        self.trace
    }

    fn all_calls_are_mesh(&self) -> bool {
        !self.round.tool_calls.is_empty()
            && self
                .round
                .tool_calls
                .iter()
                .all(|c| self.mesh.contains(&c.name))
    }

    /// Runs this round's calls and appends them and their results to the conversation.
    async fn run_round_tools(&mut self) {
        let mut assistant = Vec::new();
        if !self.round.text.is_empty() {
            assistant.push(Part::Text {
                text: self.round.text.clone(),
            });
        }
        let mut results = Vec::new();
        for call in &self.round.tool_calls {
            assistant.push(Part::ToolCall {
                id: call.id.clone(),
                name: call.name.clone(),
                arguments: call.arguments.clone(),
            });
            let input =
                serde_json::from_str(&call.arguments).unwrap_or_else(|_| serde_json::json!({}));
            let (content, is_error) = match tools::run(&self.generator, &call.name, input).await {
                Ok(result) => (
                    match result {
                        serde_json::Value::String(text) => text,
                        other => other.to_string(),
                    },
                    false,
                ),
                Err(error) => (format!("error: {}", error.message), true),
            };
            debug!(tool = %call.name, is_error, "ran a mesh tool for the model");
            results.push(Message {
                role: Role::Tool,
                content: vec![Part::ToolResult {
                    call_id: call.id.clone(),
                    content,
                    is_error,
                }],
            });
        }
        self.request.messages.push(Message {
            role: Role::Assistant,
            content: assistant,
        });
        self.request.messages.extend(results);
        // A forced first call has happened; let the model answer now.
        self.request.tool_choice = ToolChoice::Auto;
    }

    fn total_usage(&self) -> Usage {
        Usage {
            prompt_tokens: self.usage.prompt_tokens + self.round.usage.prompt_tokens,
            completion_tokens: self.usage.completion_tokens + self.round.usage.completion_tokens,
        }
    }

    /// Handles one event of the current round.
    async fn on_event(&mut self, event: ChatEvent) {
        if let Err(why) = self.round.apply(&event) {
            // The round's answer is held to replay it: it must stay within the limits.
            self.current = None;
            self.ready
                .push_back(ChatEvent::Error(auxot_common::error::RemoteError::new(
                    auxot_common::error::ErrorKind::Upstream,
                    format!("a tool round's answer held {why}"),
                )));
            self.done = true;
            return;
        }
        match event {
            // The first round's prompt count opens the stream; totals come at the end.
            ChatEvent::PromptTokens { .. } => {
                if !self.later_round {
                    self.ready.push_back(event);
                }
            }
            ChatEvent::Text { .. } | ChatEvent::Reasoning { .. } => self.ready.push_back(event),
            ChatEvent::ToolCall { .. } => self.held_calls.push(event),
            ChatEvent::Usage(_) => {}
            ChatEvent::Error(_) => {
                self.ready.push_back(event);
                self.done = true;
            }
            ChatEvent::Finish {
                reason,
                stop_sequence,
            } => {
                self.current = None;
                if reason == FinishReason::ToolCalls
                    && self.all_calls_are_mesh()
                    && self.rounds_left > 0
                {
                    self.rounds_left -= 1;
                    self.later_round = true;
                    self.run_round_tools().await;
                    self.usage = self.total_usage();
                    self.round = Completion::default();
                    self.held_calls.clear();
                    match self.generator.forwarder.chat(&self.request).await {
                        Ok(stream) => self.current = Some(stream),
                        Err(error) => {
                            self.ready
                                .push_back(ChatEvent::Error(ApiError::from(error).to_remote()));
                            self.done = true;
                        }
                    }
                    return;
                }
                self.ready.extend(self.held_calls.drain(..));
                self.ready.push_back(ChatEvent::Usage(self.total_usage()));
                self.ready.push_back(ChatEvent::Finish {
                    reason,
                    stop_sequence,
                });
                self.done = true;
            }
        }
    }
}

impl EventSource for ToolLoop {
    fn model(&self) -> &str {
        &self.model
    }

    async fn next(&mut self) -> Option<ChatEvent> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Some(event);
            }
            if self.done {
                return None;
            }
            let stream = self.current.as_mut()?;
            match stream.next().await {
                Some(event) => self.on_event(event).await,
                None => self.done = true,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forced_choices_must_name_a_tool_of_the_request() {
        let mut request = ChatRequest {
            tool_choice: ToolChoice::Required,
            ..Default::default()
        };
        assert!(check_tool_choice(&request).is_err());
        request.tools.push(ToolSpec {
            name: "f".into(),
            description: String::new(),
            parameters: serde_json::json!({}),
        });
        assert!(check_tool_choice(&request).is_ok());
        request.tool_choice = ToolChoice::Function("g".into());
        assert!(check_tool_choice(&request)
            .expect_err("unknown")
            .message
            .contains("`g`"));
        request.tool_choice = ToolChoice::Function("f".into());
        assert!(check_tool_choice(&request).is_ok());
    }

    #[test]
    fn mesh_tool_selection_parses_from_bodies() {
        assert_eq!(
            serde_json::from_str::<MeshTools>("true").expect("bool"),
            MeshTools::All(true)
        );
        assert_eq!(
            serde_json::from_str::<MeshTools>(r#"["web_fetch"]"#).expect("list"),
            MeshTools::Named(vec!["web_fetch".into()])
        );
    }
}
