//! Reading request bodies: only on routes that take one, within the route's size limit, a
//! deadline, and a budget shared by every request in flight.
//!
//! The per-route limit stops one large body; the budget stops many: every byte read is counted
//! against [`BodyBudget`] until the request is answered, so the memory the router spends on
//! bodies has a ceiling whatever the number of connections. A body that does not fit in the
//! budget now is refused with 503 at once rather than queued, since a queue of half-read
//! bodies is exactly the memory the budget exists to bound. When the length is declared up
//! front, a body over the limit (413) or the budget (503) is refused before a byte of it is read.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt as _;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use warp::http::HeaderMap;

use crate::error::{ApiError, Fault};

/// Bytes of request bodies the router holds at once, across all requests.
#[derive(Clone)]
pub struct BodyBudget {
    bytes: Arc<Semaphore>,
    total: usize,
}

impl BodyBudget {
    pub fn new(total: usize) -> Self {
        BodyBudget {
            bytes: Arc::new(Semaphore::new(total.min(Semaphore::MAX_PERMITS))),
            total,
        }
    }

    /// Bytes held by bodies being read or handled now.
    pub fn in_use(&self) -> usize {
        self.total.saturating_sub(self.bytes.available_permits())
    }

    fn take(&self, n: usize) -> Result<OwnedSemaphorePermit, ApiError> {
        u32::try_from(n)
            .ok()
            .and_then(|n| self.bytes.clone().try_acquire_many_owned(n).ok())
            .ok_or_else(|| {
                ApiError::new(
                    Fault::Unavailable,
                    format!(
                        "the router is holding {} of its {}-byte budget for request bodies; retry shortly",
                        self.in_use(),
                        self.total
                    ),
                )
            })
    }
}

/// A body read whole; its bytes count against the budget until this is dropped.
pub struct ReadBody {
    pub bytes: Bytes,
    _held: Option<OwnedSemaphorePermit>,
}

/// How one route's body may be read.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    /// Largest body the route accepts.
    pub max_bytes: usize,
    /// Longest the client may take to send it.
    pub deadline: Duration,
}

fn too_large(max: usize) -> ApiError {
    ApiError::new(
        Fault::PayloadTooLarge,
        format!("request body exceeds this endpoint's limit of {max} bytes"),
    )
}

/// The declared `content-length`, if any and well-formed.
fn declared_length(headers: &HeaderMap) -> Option<usize> {
    headers
        .get("content-length")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Reads a whole body within `limits`, holding its bytes in `budget`.
pub async fn read_body<B>(
    body: B,
    headers: &HeaderMap,
    limits: BodyLimits,
    budget: &BodyBudget,
) -> Result<ReadBody, ApiError>
where
    B: http_body::Body + Unpin,
    B::Error: std::fmt::Display,
{
    let declared = declared_length(headers);
    if declared.is_some_and(|n| n > limits.max_bytes) {
        return Err(too_large(limits.max_bytes));
    }
    let mut held: Option<OwnedSemaphorePermit> = match declared {
        Some(n) if n > 0 => Some(budget.take(n)?),
        _ => None,
    };
    let mut reserved = declared.unwrap_or(0);
    let mut out = Vec::with_capacity(reserved);
    let deadline = tokio::time::Instant::now() + limits.deadline;
    let mut body = body;
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => {
                return Err(ApiError::new(
                    Fault::RequestTimeout,
                    format!(
                        "the request body was not received within {}s",
                        limits.deadline.as_secs()
                    ),
                ))
            }
            Ok(None) => break,
            Ok(Some(frame)) => {
                frame.map_err(|e| ApiError::invalid(format!("reading the request body: {e}")))?
            }
        };
        let Ok(mut data) = frame.into_data() else {
            continue; // trailers
        };
        let n = bytes::Buf::remaining(&data);
        if out.len() + n > limits.max_bytes {
            return Err(too_large(limits.max_bytes));
        }
        if out.len() + n > reserved {
            let more = out.len() + n - reserved;
            let permit = budget.take(more)?;
            match held.as_mut() {
                Some(held) => held.merge(permit),
                None => held = Some(permit),
            }
            reserved += more;
        }
        while bytes::Buf::has_remaining(&data) {
            let piece = bytes::Buf::chunk(&data);
            out.extend_from_slice(piece);
            let len = piece.len();
            bytes::Buf::advance(&mut data, len);
        }
    }
    Ok(ReadBody {
        bytes: Bytes::from(out),
        _held: held,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{Full, StreamBody};

    fn limits(max_bytes: usize) -> BodyLimits {
        BodyLimits {
            max_bytes,
            deadline: Duration::from_secs(5),
        }
    }

    fn headers(length: Option<usize>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(n) = length {
            headers.insert("content-length", n.into());
        }
        headers
    }

    #[tokio::test]
    async fn a_body_is_read_and_held_in_the_budget_until_dropped() {
        let budget = BodyBudget::new(100);
        let body = read_body(
            Full::new(Bytes::from_static(b"hello")),
            &headers(Some(5)),
            limits(10),
            &budget,
        )
        .await
        .expect("read");
        assert_eq!(&body.bytes[..], b"hello");
        assert_eq!(budget.in_use(), 5);
        drop(body);
        assert_eq!(budget.in_use(), 0);
    }

    #[tokio::test]
    async fn over_the_limit_is_413_and_over_the_budget_503() {
        let budget = BodyBudget::new(8);
        let err = read_body(
            Full::new(Bytes::from_static(b"0123456789ab")),
            &headers(Some(12)),
            limits(10),
            &budget,
        )
        .await
        .err()
        .expect("too large");
        assert_eq!(err.fault, Fault::PayloadTooLarge);
        // Undeclared length: refused as soon as the bytes pass the limit.
        let err = read_body(
            Full::new(Bytes::from_static(b"0123456789ab")),
            &headers(None),
            limits(10),
            &budget,
        )
        .await
        .err()
        .expect("too large");
        assert_eq!(err.fault, Fault::PayloadTooLarge);
        let err = read_body(
            Full::new(Bytes::from_static(b"012345678")),
            &headers(Some(9)),
            limits(10),
            &budget,
        )
        .await
        .err()
        .expect("over budget");
        assert_eq!(err.fault, Fault::Unavailable);
        assert_eq!(budget.in_use(), 0, "a refused body holds nothing");
    }

    #[tokio::test]
    async fn a_body_that_stops_coming_is_408() {
        let stalled = StreamBody::new(futures::stream::pending::<
            Result<http_body::Frame<Bytes>, std::convert::Infallible>,
        >());
        let err = read_body(
            stalled,
            &headers(Some(5)),
            BodyLimits {
                max_bytes: 10,
                deadline: Duration::from_millis(50),
            },
            &BodyBudget::new(100),
        )
        .await
        .err()
        .expect("timeout");
        assert_eq!(err.fault, Fault::RequestTimeout);
        assert_eq!(err.status(crate::error::DialectKind::Anthropic), 408);
    }
}
