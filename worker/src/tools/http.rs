//! What `web_fetch` and `web_search` share when talking HTTP to outside sites: a bounded body
//! reader and error messages that keep the cause.
//!
//! reqwest's own `Display` for a failed request is "error sending request for url (...)"; the
//! part a person can act on ("connection refused", "certificate expired") is in the source chain,
//! so messages here walk it.

use auxot_common::error::{ErrorKind, RemoteError};

/// The `User-Agent` of every request a tool makes.
pub const USER_AGENT: &str = concat!("auxot-worker/", env!("CARGO_PKG_VERSION"));

/// A failed request as an Upstream error: `what` and the whole cause chain.
pub fn upstream(what: &str, err: &reqwest::Error) -> RemoteError {
    let kind = if err.is_timeout() {
        ErrorKind::Timeout
    } else {
        ErrorKind::Upstream
    };
    RemoteError::new(kind, format!("{what}: {}", cause_chain(err)))
}

/// An error and its sources, joined with ": ", without repeats (hyper often wraps a message
/// in an error with the same text).
pub fn cause_chain(err: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = vec![err.to_string()];
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = cause.source();
    }
    parts.join(": ")
}

/// Reads a body up to `max_bytes`; the flag says whether more was left unread.
pub async fn read_capped(
    response: &mut reqwest::Response,
    max_bytes: usize,
    what: &str,
) -> Result<(Vec<u8>, bool), RemoteError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|err| upstream(what, &err))? {
        let room = max_bytes - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            return Ok((body, true));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, false))
}

/// The start of a body, for error messages.
pub fn excerpt(body: &[u8], max_chars: usize) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}
