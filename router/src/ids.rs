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

/// `req_<24 hex>`, an Anthropic request id.
pub fn request_id() -> String {
    format!("req_{}", hex24())
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
