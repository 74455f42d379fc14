//! Why a request could not be forwarded.

use auxot_common::error::RemoteError;

use crate::error::{ApiError, Fault};

/// A forwarding failure; converts into the API's error.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ForwardError {
    #[error("no worker is ready")]
    NoWorkers,
    #[error("model `{requested}` is not served by any ready worker (available: {available})")]
    UnknownModel {
        requested: String,
        available: String,
    },
    #[error("model `{0}` does not accept images")]
    NoVision(String),
    #[error("every worker serving `{0}` is at capacity; retry shortly")]
    Overloaded(String),
    /// The request could not be encoded for the wire (too large, say): the caller's to fix.
    #[error("{0}")]
    Encoding(String),
    /// What a worker (or the last one tried) reported.
    #[error("{0}")]
    Remote(RemoteError),
}

impl From<ForwardError> for ApiError {
    fn from(error: ForwardError) -> Self {
        let message = error.to_string();
        match error {
            ForwardError::Remote(remote) => remote.into(),
            ForwardError::NoWorkers => ApiError::new(Fault::Unavailable, message),
            ForwardError::UnknownModel { .. } => ApiError::new(Fault::NotFound, message),
            ForwardError::NoVision(_) | ForwardError::Encoding(_) => ApiError::invalid(message),
            ForwardError::Overloaded(_) => ApiError::new(Fault::Overloaded, message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_failure_has_its_fault() {
        let cases = [
            (ForwardError::NoWorkers, Fault::Unavailable),
            (
                ForwardError::UnknownModel {
                    requested: "x".into(),
                    available: "m".into(),
                },
                Fault::NotFound,
            ),
            (ForwardError::NoVision("m".into()), Fault::InvalidRequest),
            (ForwardError::Overloaded("m".into()), Fault::Overloaded),
            (ForwardError::Encoding("big".into()), Fault::InvalidRequest),
            (
                ForwardError::Remote(RemoteError::internal("boom")),
                Fault::Internal,
            ),
        ];
        for (error, fault) in cases {
            assert_eq!(ApiError::from(error).fault, fault);
        }
    }
}
