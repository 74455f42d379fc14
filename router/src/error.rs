//! One error type for everything the API answers with.
//!
//! Every failure on the request path (authentication, routing, a worker's report, a body that
//! is too large, the key store) becomes an [`ApiError`]: a [`Fault`] that says whose fault it
//! was and a message a person can act on. The fault fixes the HTTP status, which differs between
//! dialects in one place (Anthropic reports saturation as 529); each dialect renders the body.
//! Keeping one type means a new failure is mapped once, not once per handler.

use auxot_common::error::{ErrorKind, RemoteError};

/// Which API family a route belongs to: it decides the status of a few faults and the shape of
/// error bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialectKind {
    OpenAi,
    Anthropic,
    /// The Tools API and `/health`: OpenAI-style error bodies.
    Plain,
}

/// Whose fault a failure was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The request is malformed or asks for something impossible.
    InvalidRequest,
    /// No key, or a key that is not valid.
    Unauthorized,
    /// A valid key that may not do this (an API key on the admin API, say).
    Forbidden,
    /// No such endpoint, model or tool.
    NotFound,
    /// The endpoint exists but takes another method.
    MethodNotAllowed,
    /// The request body is larger than the route accepts.
    PayloadTooLarge,
    /// The client did not send its request body within the deadline.
    RequestTimeout,
    /// Every worker that could serve the request is at capacity.
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

/// Seconds a client should wait before retrying a saturated cluster.
pub const RETRY_AFTER_SECS: u64 = 1;

/// A failure as the API reports it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub fault: Fault,
    pub message: String,
}

impl ApiError {
    pub fn new(fault: Fault, message: impl Into<String>) -> Self {
        ApiError {
            fault,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(Fault::InvalidRequest, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(Fault::Internal, message)
    }

    /// The HTTP status in `dialect`.
    pub fn status(&self, dialect: DialectKind) -> u16 {
        match (self.fault, dialect) {
            (Fault::InvalidRequest, _) => 400,
            (Fault::Unauthorized, _) => 401,
            (Fault::Forbidden, _) => 403,
            (Fault::NotFound, _) => 404,
            (Fault::MethodNotAllowed, _) => 405,
            (Fault::RequestTimeout, _) => 408,
            (Fault::PayloadTooLarge, _) => 413,
            (Fault::Overloaded, DialectKind::Anthropic) => 529,
            (Fault::Overloaded, _) => 429,
            (Fault::Internal, _) => 500,
            (Fault::Upstream, _) => 502,
            (Fault::Unavailable, _) => 503,
            (Fault::Timeout, _) => 504,
        }
    }

    /// Seconds to wait before retrying, for faults that pass with time.
    pub fn retry_after(&self) -> Option<u64> {
        matches!(self.fault, Fault::Overloaded | Fault::Unavailable).then_some(RETRY_AFTER_SECS)
    }

    /// The wire form, for errors that travel inside a stream of events.
    pub fn to_remote(&self) -> RemoteError {
        let kind = match self.fault {
            Fault::InvalidRequest
            | Fault::Unauthorized
            | Fault::Forbidden
            | Fault::MethodNotAllowed
            | Fault::PayloadTooLarge
            | Fault::RequestTimeout => ErrorKind::InvalidRequest,
            Fault::NotFound => ErrorKind::NotFound,
            Fault::Overloaded => ErrorKind::Overloaded,
            Fault::Unavailable => ErrorKind::Unavailable,
            Fault::Upstream => ErrorKind::Upstream,
            Fault::Timeout => ErrorKind::Timeout,
            Fault::Internal => ErrorKind::Internal,
        };
        RemoteError::new(kind, self.message.clone())
    }
}

impl From<RemoteError> for ApiError {
    fn from(error: RemoteError) -> Self {
        let fault = match error.kind {
            ErrorKind::InvalidRequest => Fault::InvalidRequest,
            ErrorKind::NotFound => Fault::NotFound,
            ErrorKind::Overloaded => Fault::Overloaded,
            ErrorKind::Unavailable => Fault::Unavailable,
            ErrorKind::Upstream => Fault::Upstream,
            ErrorKind::Timeout => Fault::Timeout,
            ErrorKind::Internal => Fault::Internal,
        };
        ApiError::new(fault, error.message)
    }
}

impl From<&RemoteError> for ApiError {
    fn from(error: &RemoteError) -> Self {
        error.clone().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_per_dialect() {
        let cases = [
            (Fault::InvalidRequest, DialectKind::OpenAi, 400),
            (Fault::Unauthorized, DialectKind::Anthropic, 401),
            (Fault::Forbidden, DialectKind::Plain, 403),
            (Fault::NotFound, DialectKind::Plain, 404),
            (Fault::MethodNotAllowed, DialectKind::OpenAi, 405),
            (Fault::PayloadTooLarge, DialectKind::Anthropic, 413),
            (Fault::RequestTimeout, DialectKind::OpenAi, 408),
            (Fault::RequestTimeout, DialectKind::Anthropic, 408),
            (Fault::Overloaded, DialectKind::OpenAi, 429),
            (Fault::Overloaded, DialectKind::Anthropic, 529),
            (Fault::Internal, DialectKind::OpenAi, 500),
            (Fault::Upstream, DialectKind::OpenAi, 502),
            (Fault::Unavailable, DialectKind::Anthropic, 503),
            (Fault::Timeout, DialectKind::Plain, 504),
        ];
        for (fault, dialect, status) in cases {
            assert_eq!(
                ApiError::new(fault, "m").status(dialect),
                status,
                "{fault:?} {dialect:?}"
            );
        }
    }

    #[test]
    fn wire_errors_keep_their_fault_both_ways() {
        for kind in [
            ErrorKind::InvalidRequest,
            ErrorKind::NotFound,
            ErrorKind::Overloaded,
            ErrorKind::Unavailable,
            ErrorKind::Upstream,
            ErrorKind::Timeout,
            ErrorKind::Internal,
        ] {
            let remote = RemoteError::new(kind, "m");
            assert_eq!(ApiError::from(&remote).to_remote(), remote);
        }
    }

    #[test]
    fn only_passing_faults_say_when_to_retry() {
        assert_eq!(
            ApiError::new(Fault::Overloaded, "").retry_after(),
            Some(RETRY_AFTER_SECS)
        );
        assert_eq!(ApiError::invalid("").retry_after(), None);
    }
}
