//! Tools served by tools workers: what they advertise in gossip and what a call looks like on
//! the wire.

use serde::{Deserialize, Serialize};

use crate::error::RemoteError;

/// A tool as a tools worker advertises it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolInfo {
    pub name: String,
    pub description: String,
    /// JSON Schema of the input object.
    pub parameters: serde_json::Value,
    /// False when the tool is listed but cannot run (for example, missing configuration).
    pub available: bool,
}

/// A request to run one tool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCallRequest {
    pub tool: String,
    pub input: serde_json::Value,
    /// The API request this call belongs to, for the worker's log lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// The outcome of a tool call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ToolCallResult {
    Ok { result: serde_json::Value },
    Failed { error: RemoteError },
}
