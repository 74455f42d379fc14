//! Reading request bodies within a size limit.

use bytes::Bytes;
use futures::{Stream, StreamExt as _};

use crate::error::{ApiError, Fault};

/// Largest request body accepted (requests with several images are large).
pub const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// Reads a whole body, refusing one larger than [`MAX_BODY_BYTES`] as soon as it is.
pub async fn read_body<S, B>(body: S) -> Result<Bytes, ApiError>
where
    S: Stream<Item = Result<B, warp::Error>> + Send,
    B: bytes::Buf,
{
    let mut body = std::pin::pin!(body);
    let mut out = Vec::new();
    while let Some(chunk) = body.next().await {
        let mut chunk =
            chunk.map_err(|e| ApiError::invalid(format!("reading the request body: {e}")))?;
        if out.len() + chunk.remaining() > MAX_BODY_BYTES {
            return Err(ApiError::new(
                Fault::PayloadTooLarge,
                format!("request body exceeds {MAX_BODY_BYTES} bytes"),
            ));
        }
        while chunk.has_remaining() {
            let piece = chunk.chunk();
            out.extend_from_slice(piece);
            let n = piece.len();
            chunk.advance(n);
        }
    }
    Ok(Bytes::from(out))
}
