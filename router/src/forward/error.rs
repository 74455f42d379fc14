//! Why a request could not be forwarded.

use auxot_common::error::RemoteError;
use auxot_common::mesh::node::ModelKind;

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
    #[error("model `{0}` does not support reasoning: leave out reasoning_effort / thinking, or choose a reasoning model")]
    NoReasoning(String),
    #[error("{}", wrong_kind(model, *kind))]
    WrongKind { model: String, kind: ModelKind },
    #[error("no ready worker serves {}", kind_name(*.0))]
    NoModelOfKind(ModelKind),
    #[error("every worker serving `{0}` is at capacity; retry shortly")]
    Overloaded(String),
    /// The request could not be encoded for the wire (too large, say): the caller's to fix.
    #[error("{0}")]
    Encoding(String),
    /// What a worker (or the last one tried) reported.
    #[error("{0}")]
    Remote(RemoteError),
}

fn kind_name(kind: ModelKind) -> &'static str {
    match kind {
        ModelKind::Chat => "a chat model",
        ModelKind::Embedding => "an embedding model",
    }
}

fn wrong_kind(model: &str, kind: ModelKind) -> String {
    match kind {
        ModelKind::Embedding => {
            format!("model `{model}` is an embedding model: use the embeddings endpoint")
        }
        ModelKind::Chat => format!("model `{model}` is not an embedding model"),
    }
}

impl From<ForwardError> for ApiError {
    fn from(error: ForwardError) -> Self {
        let message = error.to_string();
        match error {
            ForwardError::Remote(remote) => remote.into(),
            ForwardError::NoWorkers => ApiError::new(Fault::Unavailable, message),
            ForwardError::UnknownModel { .. } => ApiError::new(Fault::NotFound, message),
            ForwardError::NoVision(_)
            | ForwardError::NoReasoning(_)
            | ForwardError::WrongKind { .. }
            | ForwardError::Encoding(_) => ApiError::invalid(message),
            ForwardError::NoModelOfKind(_) => ApiError::new(Fault::Unavailable, message),
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
            (ForwardError::NoReasoning("m".into()), Fault::InvalidRequest),
            (
                ForwardError::WrongKind {
                    model: "m".into(),
                    kind: ModelKind::Chat,
                },
                Fault::InvalidRequest,
            ),
            (
                ForwardError::NoModelOfKind(ModelKind::Embedding),
                Fault::Unavailable,
            ),
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
