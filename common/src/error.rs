//! Errors that cross the wire from a worker to a router.
//!
//! A worker cannot know which dialect the caller speaks, so it reports a [`ErrorKind`] that says
//! whose fault the failure was; the router maps the kind to an HTTP status and to the dialect's
//! error type. The kind also decides whether the router may retry on another worker.

use serde::{Deserialize, Serialize};

/// Whose fault a failure was, which fixes its HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The request is malformed or asks for something impossible (400).
    InvalidRequest,
    /// The named model or tool does not exist (404).
    NotFound,
    /// Every candidate is at capacity (429 / 529).
    Overloaded,
    /// Nothing can serve the request right now (503).
    Unavailable,
    /// A call to an outside service failed (502).
    Upstream,
    /// The work took longer than its limit (504).
    Timeout,
    /// A bug or an engine failure (500).
    Internal,
}

impl ErrorKind {
    /// The HTTP status the router answers with.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorKind::InvalidRequest => 400,
            ErrorKind::NotFound => 404,
            ErrorKind::Overloaded => 429,
            ErrorKind::Unavailable => 503,
            ErrorKind::Upstream => 502,
            ErrorKind::Timeout => 504,
            ErrorKind::Internal => 500,
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
