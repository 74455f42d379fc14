//! The [`Tool`] trait and the [`ToolRunner`] that owns a worker's tools and runs calls within
//! the limits every call gets (a timeout and an output size cap), so one misbehaving tool cannot
//! hold a router's request forever or flood it; and a bound on how many run at once, so callers
//! together cannot start a process (or a fetch) per request without end: past `max_concurrent`
//! calls wait, and past `max_queued` waiting they are refused as overloaded, which the router
//! answers with 429 after trying its other tools workers.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use auxot_common::error::{ErrorKind, RemoteError};
use auxot_common::tools::{ToolCallRequest, ToolCallResult, ToolInfo};
use tokio::sync::Semaphore;

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
    /// Calls running at once.
    pub max_concurrent: usize,
    /// Calls waiting for a slot at once; more are refused as overloaded.
    pub max_queued: usize,
}

impl Default for CallLimits {
    fn default() -> Self {
        CallLimits {
            timeout: Duration::from_secs(30),
            max_output_bytes: 1024 * 1024,
            max_concurrent: 8,
            max_queued: 32,
        }
    }
}

/// The tools of one worker.
pub struct ToolRunner {
    tools: BTreeMap<String, Arc<dyn Tool>>,
    limits: CallLimits,
    /// One permit per call that may run now.
    slots: Arc<Semaphore>,
    /// Calls waiting for a slot now.
    waiting: AtomicUsize,
}

/// A place among the waiting calls, released on drop.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl ToolRunner {
    pub fn new(tools: Vec<Arc<dyn Tool>>, limits: CallLimits) -> Self {
        let tools = tools.into_iter().map(|t| (t.info().name, t)).collect();
        ToolRunner {
            tools,
            slots: Arc::new(Semaphore::new(limits.max_concurrent.max(1))),
            waiting: AtomicUsize::new(0),
            limits,
        }
    }

    fn overloaded(&self, tool: &str) -> ToolCallResult {
        ToolCallResult::Failed {
            error: RemoteError::new(
                ErrorKind::Overloaded,
                format!(
                    "tool `{tool}`: this worker is running {} calls and {} more are waiting; retry shortly",
                    self.limits.max_concurrent, self.limits.max_queued
                ),
            ),
        }
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
        // A slot now, or a place in the queue, or a refusal.
        let _slot = match self.slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                if self.waiting.fetch_add(1, Ordering::SeqCst) >= self.limits.max_queued {
                    self.waiting.fetch_sub(1, Ordering::SeqCst);
                    return self.overloaded(&call.tool);
                }
                let _waiting = Waiting(&self.waiting);
                match tokio::time::timeout(self.limits.timeout, self.slots.clone().acquire_owned())
                    .await
                {
                    Ok(Ok(slot)) => slot,
                    _ => return self.overloaded(&call.tool),
                }
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A tool that takes a while.
    struct Slow;

    #[async_trait]
    impl Tool for Slow {
        fn info(&self) -> ToolInfo {
            ToolInfo {
                name: "slow".into(),
                description: String::new(),
                parameters: serde_json::json!({"type": "object"}),
                available: true,
            }
        }

        async fn call(&self, _: serde_json::Value) -> Result<serde_json::Value, RemoteError> {
            tokio::time::sleep(Duration::from_millis(200)).await;
            Ok(serde_json::json!("done"))
        }
    }

    #[tokio::test]
    async fn calls_past_the_slots_and_the_queue_are_refused_as_overloaded() {
        let runner = Arc::new(ToolRunner::new(
            vec![Arc::new(Slow)],
            CallLimits {
                max_concurrent: 2,
                max_queued: 1,
                ..CallLimits::default()
            },
        ));
        let call = ToolCallRequest {
            tool: "slow".into(),
            input: serde_json::json!({}),
            request_id: None,
        };
        let calls: Vec<_> = (0..5)
            .map(|_| {
                let (runner, call) = (runner.clone(), call.clone());
                tokio::spawn(async move { runner.execute(&call).await })
            })
            .collect();
        let mut done = 0;
        let mut refused = 0;
        for call in calls {
            match call.await.expect("call") {
                ToolCallResult::Ok { .. } => done += 1,
                ToolCallResult::Failed { error } => {
                    assert_eq!(error.kind, ErrorKind::Overloaded, "{}", error.message);
                    refused += 1;
                }
            }
        }
        // Two run, one waits and runs after them, two are refused.
        assert_eq!((done, refused), (3, 2));
    }
}
