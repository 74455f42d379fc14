//! `POST /api/openai/embeddings`: texts to vectors on a worker serving an embedding model.
//!
//! Recorded like every request (its line and the request counters, labelled with the model),
//! but not as a generation: the GenAI series count chat generations only. The inputs' tokens
//! count against the key's token limits and usage like a generation's prompt.

use auxot_common::chat::{Usage, AUTO_MODEL};
use warp::reply::Response;

use super::record::RequestRecord;
use super::respond::{error_response, json_response};
use super::state::AppState;
use crate::dialect::embeddings;
use crate::error::{ApiError, DialectKind};

pub async fn embeddings(state: &AppState, body: &[u8], record: &mut RequestRecord) -> Response {
    match answer(state, body, record).await {
        Ok(response) => response,
        Err(error) => {
            record.unserved(|model| {
                model == AUTO_MODEL || state.registry().models().iter().any(|m| m.id == model)
            });
            error_response(DialectKind::OpenAi, &error)
        }
    }
}

async fn answer(
    state: &AppState,
    body: &[u8],
    record: &mut RequestRecord,
) -> Result<Response, ApiError> {
    let mut parsed = embeddings::parse(body)?;
    parsed.request.request_id = Some(record.id().to_string());
    record.asked_for(&parsed.request.model, false);
    let result = state.generator.forwarder.embed(&parsed.request).await?;
    record.asked_for(&result.model, false);
    // The key's usage and token limits count the inputs' tokens, as OpenAI bills them.
    record.usage(Usage {
        prompt_tokens: result.prompt_tokens,
        completion_tokens: 0,
    });
    embeddings::check_dimensions(&parsed, &result)?;
    Ok(json_response(
        200,
        &embeddings::render(&result, parsed.encoding),
    ))
}
