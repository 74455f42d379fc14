//! The [`Tool`] trait and the [`ToolRunner`] that owns a worker's tools and runs calls within
//! the limits every call gets (a timeout and an output size cap), so one misbehaving tool cannot
//! hold a router's request forever or flood it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use auxot_common::error::{ErrorKind, RemoteError};
use auxot_common::tools::{ToolCallRequest, ToolCallResult, ToolInfo};

/// One tool.
#[async_trait]
pub trait Tool: Send + Sync + 'static {
    fn info(&self) -> ToolInfo;
    async fn call(&self, input: serde_json::Value) -> Result<serde_json::Value, RemoteError>;
}

/// Limits applied to every call.
#[derive(Debug, Clone, Copy)]
pub struct CallLimits {
    pub timeout: Duration,
    /// Largest serialized result, in bytes.
    pub max_output_bytes: usize,
}

impl Default for CallLimits {
    fn default() -> Self {
        CallLimits {
            timeout: Duration::from_secs(30),
            max_output_bytes: 1024 * 1024,
        }
    }
}

/// The tools of one worker.
pub struct ToolRunner {
    tools: BTreeMap<String, Arc<dyn Tool>>,
    limits: CallLimits,
}

impl ToolRunner {
    pub fn new(tools: Vec<Arc<dyn Tool>>, limits: CallLimits) -> Self {
        let tools = tools.into_iter().map(|t| (t.info().name, t)).collect();
        ToolRunner { tools, limits }
    }

    pub fn infos(&self) -> Vec<ToolInfo> {
        self.tools.values().map(|t| t.info()).collect()
    }

    /// Runs one call within the limits.
    pub async fn execute(&self, call: &ToolCallRequest) -> ToolCallResult {
        let Some(tool) = self.tools.get(&call.tool) else {
            return ToolCallResult::Failed {
                error: RemoteError::new(
                    ErrorKind::NotFound,
                    format!("unknown tool `{}`", call.tool),
                ),
            };
        };
        let outcome =
            tokio::time::timeout(self.limits.timeout, tool.call(call.input.clone())).await;
        let result = match outcome {
            Err(_) => Err(RemoteError::new(
                ErrorKind::Timeout,
                format!(
                    "tool `{}` did not finish within {:?}",
                    call.tool, self.limits.timeout
                ),
            )),
            Ok(result) => result,
        };
        match result {
            Ok(value) => {
                let size = serde_json::to_vec(&value)
                    .map(|v| v.len())
                    .unwrap_or(usize::MAX);
                if size > self.limits.max_output_bytes {
                    ToolCallResult::Failed {
                        error: RemoteError::new(
                            ErrorKind::Upstream,
                            format!(
                                "tool `{}` returned {size} bytes, over the {}-byte limit",
                                call.tool, self.limits.max_output_bytes
                            ),
                        ),
                    }
                } else {
                    ToolCallResult::Ok { result: value }
                }
            }
            Err(error) => ToolCallResult::Failed { error },
        }
    }
}

/// Tool names as model APIs accept them (OpenAI: `^[a-zA-Z0-9_-]{1,64}$`).
pub fn check_tool_name(name: &str) -> anyhow::Result<()> {
    let valid_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if name.is_empty() || name.len() > 64 || !valid_chars {
        anyhow::bail!("tool name {name:?} must be 1 to 64 letters, digits, `_` or `-`");
    }
    Ok(())
}
