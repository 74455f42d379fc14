//! The mesh's tools: the catalog of every ready tools worker's tools, and running one.
//!
//! Arguments are validated against the tool's JSON schema here, before any worker is bothered,
//! so a bad call is a 400 that says which field is wrong. A call goes to the least-loaded worker
//! that has the tool; if that worker dies mid-call (or cannot run it now) the call is tried once
//! more elsewhere. Used by the Tools API and by the server-side tool loop.
//!
//! Tool calls go through admission like chats: a tools worker runs a bounded number of calls
//! and refuses more as overloaded; when every worker with the tool is full, the call waits in
//! this router's admission queue (`--max-queued`, `--queue-timeout-ms`) for one to free up, and
//! is refused with 429 and `Retry-After` past that.

use std::collections::BTreeMap;
use std::time::Duration;

use auxot_common::error::{ErrorKind, RemoteError};
use auxot_common::tools::{ToolCallRequest, ToolCallResult, ToolInfo};
use serde_json::Value;

use super::generator::Generator;
use crate::error::ApiError;
use crate::forward::admission::Admission;
use crate::forward::candidates;
use crate::forward::error::ForwardError;
use crate::forward::retry::{retry, Attempt, Step};
use crate::registry::Registry;

/// Longest a router waits for one tool call (the worker enforces its own, usually shorter, limit).
const CALL_TIMEOUT: Duration = Duration::from_secs(120);
/// Workers tried for one call.
const ATTEMPTS: usize = 2;

/// Every tool in the cluster, once per name; available if any worker can run it.
pub fn catalog(registry: &Registry) -> Vec<ToolInfo> {
    let mut by_name: BTreeMap<String, ToolInfo> = BTreeMap::new();
    for worker in candidates::tools_workers(registry) {
        for tool in &worker.advert.tools {
            by_name
                .entry(tool.name.clone())
                .and_modify(|t| t.available |= tool.available)
                .or_insert_with(|| tool.clone());
        }
    }
    by_name.into_values().collect()
}

/// Checks `input` against the tool's schema; the message lists every problem with its location.
pub fn validate(tool: &ToolInfo, input: &Value) -> Result<(), ApiError> {
    let validator = jsonschema::validator_for(&tool.parameters).map_err(|e| {
        ApiError::internal(format!(
            "tool `{}` advertises an invalid schema: {e}",
            tool.name
        ))
    })?;
    let problems: Vec<String> = validator
        .iter_errors(input)
        .map(|e| {
            let at = e.instance_path().to_string();
            if at.is_empty() {
                e.to_string()
            } else {
                format!("{at}: {e}")
            }
        })
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "input for `{}` does not match its schema: {}",
            tool.name,
            problems.join("; ")
        )))
    }
}

/// Runs `name` with `input` on the cluster: validation, worker choice, one retry.
pub async fn run(generator: &Generator, name: &str, input: Value) -> Result<Value, ApiError> {
    let registry = generator.forwarder.registry();
    if candidates::tools_workers(registry).is_empty() {
        return Err(
            RemoteError::new(ErrorKind::Unavailable, "no tools worker is connected").into(),
        );
    }
    let tools = catalog(registry);
    let Some(tool) = tools.iter().find(|t| t.name == name) else {
        let names: Vec<&str> = tools.iter().map(|t| t.name.as_str()).collect();
        return Err(RemoteError::new(
            ErrorKind::NotFound,
            format!("unknown tool `{name}` (available: {})", names.join(", ")),
        )
        .into());
    };
    validate(tool, &input)?;
    let call = &ToolCallRequest {
        tool: name.to_string(),
        input,
        request_id: Some(crate::ids::request_id()),
    };
    let admission = generator.forwarder.admission();
    let deadline = tokio::time::Instant::now() + admission.limits.queue_timeout;
    let mut place = None;
    loop {
        match run_once(generator, registry, name, call).await {
            Err(error) if error.kind == ErrorKind::Overloaded => {
                if place.is_none() {
                    place = Some(admission.enqueue().ok_or_else(|| full(name))?);
                }
                if !Admission::wait_change(registry, deadline).await {
                    return Err(full(name));
                }
            }
            outcome => return Ok(outcome?),
        }
    }
}

fn full(name: &str) -> ApiError {
    ApiError::new(
        crate::error::Fault::Overloaded,
        format!(
            "every tools worker with `{name}` is running all the calls it takes; retry shortly"
        ),
    )
}

/// One try on the workers with the tool, the next one after a worker that cannot run it.
async fn run_once(
    generator: &Generator,
    registry: &Registry,
    name: &str,
    call: &ToolCallRequest,
) -> Result<Value, RemoteError> {
    // The tool is in the catalog, so some worker has it: the loop only ends without a result
    // when every one it tried failed, and then reports the last failure.
    let result = retry(ATTEMPTS, &Default::default(), |tried| async move {
        let Some(worker) = candidates::for_tool(registry, name, &tried)
            .into_iter()
            .next()
        else {
            return Ok(Step::NoCandidate);
        };
        let outcome = match generator
            .forwarder
            .execute_tool(&worker, call, CALL_TIMEOUT)
            .await
        {
            Ok(ToolCallResult::Ok { result }) => Attempt::Done(result),
            // This worker cannot run it now (not configured, program missing, every slot
            // taken), or went away mid-call: another may.
            Ok(ToolCallResult::Failed { error }) | Err(error)
                if matches!(error.kind, ErrorKind::Unavailable | ErrorKind::Overloaded) =>
            {
                Attempt::Retry(error)
            }
            Ok(ToolCallResult::Failed { error }) | Err(error) => Attempt::Fail(error),
        };
        Ok(Step::Tried {
            worker: worker.advert.node_id.clone(),
            outcome,
        })
    })
    .await;
    let outcome = match &result {
        Ok(_) => "ok",
        Err(ForwardError::Remote(error)) => error.kind.as_str(),
        Err(_) => "error",
    };
    generator.metrics.tool_called(name, outcome);
    result.map_err(|error| match error {
        ForwardError::Remote(remote) => remote,
        other => ApiError::from(other).to_remote(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tool() -> ToolInfo {
        ToolInfo {
            name: "get_weather".into(),
            description: String::new(),
            parameters: json!({"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1}}, "required": ["city"]}),
            available: true,
        }
    }

    #[test]
    fn inputs_are_checked_against_the_schema() {
        assert!(validate(&tool(), &json!({"city": "Paris"})).is_ok());
        let err = validate(&tool(), &json!({"days": 0})).expect_err("invalid");
        assert_eq!(err.fault, crate::error::Fault::InvalidRequest);
        assert!(err.message.contains("city"), "{}", err.message);
        assert!(err.message.contains("/days"), "{}", err.message);
    }
}
