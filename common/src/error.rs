//! Errors that cross the wire from a worker to a router.
//!
//! A worker cannot know which dialect the caller speaks, so it reports an [`ErrorKind`] that says
//! whose fault the failure was. The kind carries no HTTP status: the router's API layer maps it
//! to a status and to the dialect's error type. The kind also decides whether the router may
//! retry on another worker.

use serde::{Deserialize, Serialize};

/// Whose fault a failure was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The request is malformed or asks for something impossible: the caller's fault.
    InvalidRequest,
    /// The named model or tool does not exist.
    NotFound,
    /// Every candidate is at capacity.
    Overloaded,
    /// Nothing can serve the request right now.
    Unavailable,
    /// A call to an outside service failed.
    Upstream,
    /// The work took longer than its limit.
    Timeout,
    /// A bug or an engine failure.
    Internal,
}

impl ErrorKind {
    /// The kind's name as it appears on the wire (`invalid_request`, `overloaded`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest => "invalid_request",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Overloaded => "overloaded",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Upstream => "upstream",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Internal => "internal",
        }
    }

    /// Whether another worker might succeed where this one failed. Client errors never are.
    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorKind::Overloaded | ErrorKind::Unavailable)
    }
}

/// A failure reported by a remote node, with a message a person can act on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct RemoteError {
    pub kind: ErrorKind,
    pub message: String,
}

impl RemoteError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        RemoteError {
            kind,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidRequest, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }
}
