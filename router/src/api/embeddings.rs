//! `POST /api/openai/embeddings`: texts to vectors on a worker serving an embedding model.

use warp::reply::Response;

use super::respond::{error_response, json_response};
use super::state::AppState;
use crate::dialect::embeddings;
use crate::error::{ApiError, DialectKind};

pub async fn embeddings(state: &AppState, body: &[u8]) -> Response {
    match answer(state, body).await {
        Ok(response) => response,
        Err(error) => error_response(DialectKind::OpenAi, &error),
    }
}

async fn answer(state: &AppState, body: &[u8]) -> Result<Response, ApiError> {
    let parsed = embeddings::parse(body)?;
    let result = state.generator.forwarder.embed(&parsed.request).await?;
    embeddings::check_dimensions(&parsed, &result)?;
    Ok(json_response(
        200,
        &embeddings::render(&result, parsed.encoding),
    ))
}
