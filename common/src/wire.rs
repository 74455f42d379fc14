//! The protocol on a QUIC stream between a router and a worker.
//!
//! One bidirectional stream per request: the router writes one [`WireRequest`] frame, the worker
//! answers with [`WireReply`] frames and finishes its side. A chat is answered with
//! [`WireReply::Accepted`] (the worker took it: which model serves it), then events; or with one
//! [`WireReply::Error`] when it is refused before any work. A frame is a 4-byte big-endian length
//! followed by that many bytes of JSON. JSON rather than a binary codec because the payloads are
//! small next to inference time, and a frame can be read in a packet capture; the length prefix
//! keeps framing independent of the encoding.
//!
//! Cancellation is not a frame: the router stops reading (`STOP` with [`CODE_CANCELLED`]) and
//! the worker, which watches for that, drops the generation.

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::chat::{ChatEvent, ChatRequest};
use crate::embedding::{EmbedRequest, Embeddings};
use crate::error::RemoteError;
use crate::tools::{ToolCallRequest, ToolCallResult};

/// ALPN protocol id of the router-to-worker protocol; bumped on incompatible changes.
pub const ALPN: &[u8] = b"auxot/2";

/// Largest frame accepted, big enough for a request with several images.
pub const MAX_FRAME_BYTES: usize = 64 * 1024 * 1024;

/// Stream error code: the caller went away, stop working on this request.
pub const CODE_CANCELLED: u32 = 1;
/// Stream or connection error code: the node is shutting down.
pub const CODE_SHUTDOWN: u32 = 2;

/// What a router asks of a worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", content = "body", rename_all = "snake_case")]
pub enum WireRequest {
    /// Generate; the answer is a sequence of [`WireReply::Event`].
    Chat(ChatRequest),
    /// Count the prompt tokens this request would use; the answer is [`WireReply::TokenCount`].
    CountTokens(ChatRequest),
    /// Run a tool; the answer is [`WireReply::ToolResult`].
    ExecuteTool(ToolCallRequest),
    /// Embed texts; the answer is [`WireReply::Embeddings`].
    Embed(EmbedRequest),
}

/// What a worker answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", content = "body", rename_all = "snake_case")]
pub enum WireReply {
    /// The worker took a chat request; events follow.
    Accepted {
        /// Node id of the worker.
        worker: String,
        /// The model that serves it (the real id when `auto` was asked for).
        model: String,
    },
    Event(ChatEvent),
    TokenCount {
        tokens: u32,
    },
    ToolResult(ToolCallResult),
    Embeddings(Embeddings),
    /// The request failed before any work was done.
    Error(RemoteError),
}

/// A framing or transport failure on a stream.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("stream i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("frame of {0} bytes exceeds the limit")]
    TooLarge(usize),
    #[error("malformed frame: {0}")]
    Decode(#[from] serde_json::Error),
    #[error("stream ended inside a frame")]
    Truncated,
}

/// Encodes one frame (length prefix and JSON body).
pub fn encode_frame<T: Serialize>(value: &T) -> Result<Vec<u8>, FrameError> {
    let body = serde_json::to_vec(value)?;
    if body.len() > MAX_FRAME_BYTES {
        return Err(FrameError::TooLarge(body.len()));
    }
    let len = u32::try_from(body.len()).map_err(|_| FrameError::TooLarge(body.len()))?;
    let mut buf = Vec::with_capacity(4 + body.len());
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(&body);
    Ok(buf)
}

/// Writes one frame.
pub async fn write_frame<W, T>(writer: &mut W, value: &T) -> Result<(), FrameError>
where
    W: AsyncWrite + Unpin,
    T: Serialize,
{
    let frame = encode_frame(value)?;
    writer.write_all(&frame).await?;
    Ok(())
}

/// Reads one frame; `Ok(None)` when the peer finished the stream between frames.
///
/// Not cancel-safe: a frame half read when the future is dropped is lost, so callers that race
/// this against something else must abandon the stream when the other branch wins.
pub async fn read_frame<R, T>(reader: &mut R) -> Result<Option<T>, FrameError>
where
    R: AsyncRead + Unpin,
    T: DeserializeOwned,
{
    read_frame_max(reader, MAX_FRAME_BYTES).await
}

/// Like [`read_frame`], refusing frames longer than `max` bytes before allocating them.
pub async fn read_frame_max<R, T>(reader: &mut R, max: usize) -> Result<Option<T>, FrameError>
where
    R: AsyncRead + Unpin,
    T: DeserializeOwned,
{
    let mut len_buf = [0u8; 4];
    let mut filled = 0;
    while filled < len_buf.len() {
        let n = reader.read(&mut len_buf[filled..]).await?;
        if n == 0 {
            return if filled == 0 {
                Ok(None)
            } else {
                Err(FrameError::Truncated)
            };
        }
        filled += n;
    }
    let len = u32::from_be_bytes(len_buf) as usize;
    if len > max.min(MAX_FRAME_BYTES) {
        return Err(FrameError::TooLarge(len));
    }
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            FrameError::Truncated
        } else {
            FrameError::Io(e)
        }
    })?;
    Ok(Some(serde_json::from_slice(&body)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::{FinishReason, Message, Role};

    #[tokio::test]
    async fn frames_round_trip_in_order() {
        let (mut a, mut b) = tokio::io::duplex(64);
        let request = WireRequest::Chat(ChatRequest {
            model: "auto".into(),
            messages: vec![Message::text(Role::User, "hello")],
            ..Default::default()
        });
        let replies = vec![
            WireReply::Event(ChatEvent::Text { text: "Hi".into() }),
            WireReply::Event(ChatEvent::Finish {
                reason: FinishReason::Stop,
                stop_sequence: None,
            }),
        ];
        let expected = (request.clone(), replies.clone());
        let writer = tokio::spawn(async move {
            write_frame(&mut a, &request).await.expect("write request");
            for reply in &replies {
                write_frame(&mut a, reply).await.expect("write reply");
            }
        });
        let got_request: WireRequest = read_frame(&mut b).await.expect("read").expect("frame");
        let mut got_replies = Vec::new();
        for _ in 0..2 {
            got_replies.push(
                read_frame::<_, WireReply>(&mut b)
                    .await
                    .expect("read")
                    .expect("frame"),
            );
        }
        writer.await.expect("writer");
        assert_eq!((got_request, got_replies), expected);
        assert!(read_frame::<_, WireReply>(&mut b)
            .await
            .expect("eof")
            .is_none());
    }

    #[tokio::test]
    async fn oversized_length_is_rejected_before_allocating() {
        let bytes = ((MAX_FRAME_BYTES + 1) as u32).to_be_bytes();
        let mut reader = &bytes[..];
        let err = read_frame::<_, WireReply>(&mut reader)
            .await
            .expect_err("too large");
        assert!(matches!(err, FrameError::TooLarge(_)));
    }

    #[tokio::test]
    async fn a_stream_cut_inside_a_frame_is_truncated_not_eof() {
        let mut bytes = 100u32.to_be_bytes().to_vec();
        bytes.extend_from_slice(b"{\"op\"");
        let mut reader = &bytes[..];
        let err = read_frame::<_, WireReply>(&mut reader)
            .await
            .expect_err("truncated");
        assert!(matches!(err, FrameError::Truncated));
        let mut half_header = &[0u8, 0][..];
        let err = read_frame::<_, WireReply>(&mut half_header)
            .await
            .expect_err("truncated");
        assert!(matches!(err, FrameError::Truncated));
    }

    #[tokio::test]
    async fn garbage_is_a_decode_error() {
        let mut bytes = 3u32.to_be_bytes().to_vec();
        bytes.extend_from_slice(b"nop");
        let mut reader = &bytes[..];
        let err = read_frame::<_, WireReply>(&mut reader)
            .await
            .expect_err("decode");
        assert!(matches!(err, FrameError::Decode(_)));
    }
}
