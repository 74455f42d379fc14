//! Identifiers and timestamps in the shapes the dialects use.

use rand::RngCore as _;

fn hex24() -> String {
    let mut bytes = [0u8; 12];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// `chatcmpl-<24 hex>`, an OpenAI completion id.
pub fn completion_id() -> String {
    format!("chatcmpl-{}", hex24())
}

/// `cmpl-<24 hex>`, an OpenAI legacy text-completion id.
pub fn text_completion_id() -> String {
    format!("cmpl-{}", hex24())
}

/// `<prefix>_<24 hex>`: the ids of Responses API output items (`msg`, `fc`, `rs`) and of a
/// streamed response before its conversation is sealed into its final id.
pub fn item_id(prefix: &str) -> String {
    format!("{prefix}_{}", hex24())
}

/// `msg_<24 hex>`, an Anthropic message id.
pub fn message_id() -> String {
    format!("msg_{}", hex24())
}

/// `req_<24 hex>`, a new request id (the shape of Anthropic's).
pub fn new_request_id() -> String {
    format!("req_{}", hex24())
}

/// Longest request id taken from a caller's `x-request-id`.
const MAX_REQUEST_ID_LEN: usize = 128;

/// The caller's `x-request-id` when it is sane (1 to 128 characters of letters, digits and
/// `-_.:`: safe in headers, log lines and metrics tools), else a new id.
pub fn request_id_from(header: Option<&str>) -> String {
    match header {
        Some(id)
            if !id.is_empty()
                && id.len() <= MAX_REQUEST_ID_LEN
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b)) =>
        {
            id.to_string()
        }
        _ => new_request_id(),
    }
}

tokio::task_local! {
    /// The id of the API request the current task serves (set by the API layer around each
    /// request and its response stream).
    static REQUEST_ID: String;
}

/// Runs `future` as part of the request `id`: [`request_id`] answers `id` inside it.
pub async fn with_request_id<F: std::future::Future>(id: String, future: F) -> F::Output {
    REQUEST_ID.scope(id, future).await
}

/// The id of the request being served (a new one outside any request), for bodies that carry
/// it (Anthropic errors) and calls made on the request's behalf (tool calls).
pub fn request_id() -> String {
    REQUEST_ID
        .try_with(Clone::clone)
        .unwrap_or_else(|_| new_request_id())
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sane_caller_ids_are_kept_and_others_replaced() {
        assert_eq!(request_id_from(Some("abc-123_x.y:z")), "abc-123_x.y:z");
        for bad in ["", "has space", "new\nline", "quote\"", &"x".repeat(129)] {
            let id = request_id_from(Some(bad));
            assert!(
                id.starts_with("req_") && id.len() == 28,
                "{bad:?} gave {id}"
            );
        }
        assert!(request_id_from(None).starts_with("req_"));
    }

    #[tokio::test]
    async fn the_current_request_id_is_scoped() {
        let inside = with_request_id("req_1".into(), async { request_id() }).await;
        assert_eq!(inside, "req_1");
        assert_ne!(request_id(), "req_1");
    }
}
