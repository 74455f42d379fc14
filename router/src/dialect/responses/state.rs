//! The conversation a Responses API id carries, sealed so that only routers can read it.
//!
//! Routers keep no state, yet `previous_response_id` asks for the conversation so far. The id
//! of a response therefore *is* that conversation: `resp_` followed by the canonical messages
//! (input and output of every turn so far, without `instructions`, which OpenAI does not carry
//! over either) as JSON, sealed with ChaCha20-Poly1305 under a key only routers hold (the data
//! directory's `responses.key`), base64url. Any router with the key continues the conversation;
//! nobody without it can read or forge one. The cost is the id's length, which grows with the
//! conversation. Storing conversations instead would need a database every router shares,
//! which auxot does not have by design.
//!
//! Layout of the sealed bytes: a version byte, a 12-byte random nonce, the ciphertext with its
//! tag. The version byte is also the associated data, so a future layout cannot be confused
//! with this one.
//!
//! A streamed response is the exception. Its id is announced in `response.created`, before any
//! output exists, and clients hold it fixed for the whole stream (the official Python client's
//! stream helper raises if `response.completed` names another id). So a stream keeps a short
//! random id, and the router that streamed it keeps the sealed conversation under that id in
//! memory ([`StreamedResponses`]: an hour, bounded in count and bytes). Such an id continues
//! through that router only; a non-streamed response's id continues through any router.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use auxot_common::chat::Message;
use base64::Engine as _;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::rand::{SecureRandom as _, SystemRandom};
use serde::{Deserialize, Serialize};

/// The prefix of every response id.
pub const ID_PREFIX: &str = "resp_";
const VERSION: u8 = 1;

/// The conversation after one response: what the next turn starts from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conversation {
    pub messages: Vec<Message>,
}

/// Why an id could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("it is not a response id of this cluster")]
    Malformed,
    #[error("it was not made with this cluster's key (another cluster, or responses.key changed)")]
    Forged,
}

/// How long a router keeps a streamed response's conversation.
pub const STREAMED_TTL: Duration = Duration::from_secs(3600);
/// Streamed responses kept at once, and their sealed conversations' bytes together.
const STREAMED_MAX: usize = 4096;
const STREAMED_MAX_BYTES: usize = 64 << 20;

/// Whether `id` has the shape of a streamed response's id (`resp_` and 24 hex digits), which
/// no sealed id has.
pub fn is_stream_id(id: &str) -> bool {
    id.strip_prefix(ID_PREFIX)
        .is_some_and(|rest| rest.len() == 24 && rest.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The sealed conversations of the responses this router streamed, by their stream id; oldest
/// dropped first.
#[derive(Debug, Default)]
pub struct StreamedResponses(Mutex<Streamed>);

#[derive(Debug, Default)]
struct Streamed {
    by_id: HashMap<String, (Instant, String)>,
    order: VecDeque<String>,
    bytes: usize,
}

impl Streamed {
    fn drop_oldest(&mut self) {
        if let Some(id) = self.order.pop_front() {
            if let Some((_, sealed)) = self.by_id.remove(&id) {
                self.bytes -= sealed.len();
            }
        }
    }
}

impl StreamedResponses {
    /// Keeps `sealed`, the conversation after the response streamed as `id`.
    pub fn insert(&self, id: String, sealed: String) {
        if sealed.len() > STREAMED_MAX_BYTES {
            return;
        }
        let mut kept = self.0.lock().unwrap_or_else(|e| e.into_inner());
        while kept.order.len() >= STREAMED_MAX || kept.bytes + sealed.len() > STREAMED_MAX_BYTES {
            kept.drop_oldest();
        }
        kept.bytes += sealed.len();
        kept.order.push_back(id.clone());
        kept.by_id.insert(id, (Instant::now(), sealed));
    }

    /// The sealed conversation after the response streamed as `id`, if kept and fresh.
    pub fn get(&self, id: &str) -> Option<String> {
        let mut kept = self.0.lock().unwrap_or_else(|e| e.into_inner());
        while kept
            .order
            .front()
            .and_then(|oldest| kept.by_id.get(oldest))
            .is_some_and(|(at, _)| at.elapsed() > STREAMED_TTL)
        {
            kept.drop_oldest();
        }
        kept.by_id.get(id).map(|(_, sealed)| sealed.clone())
    }
}

/// The key routers seal conversations with.
pub struct StateKey {
    key: LessSafeKey,
    rng: SystemRandom,
}

impl std::fmt::Debug for StateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StateKey(<redacted>)")
    }
}

impl StateKey {
    /// The key from its 32 bytes.
    pub fn new(bytes: &[u8; 32]) -> Self {
        // A 32-byte key is exactly what ChaCha20-Poly1305 takes, so this cannot fail.
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, bytes)
            .unwrap_or_else(|_| unreachable!("ChaCha20-Poly1305 takes 32-byte keys"));
        StateKey {
            key: LessSafeKey::new(unbound),
            rng: SystemRandom::new(),
        }
    }

    /// A key of 32 random bytes (`rand`'s thread generator: a CSPRNG seeded by the OS), for a
    /// router given no key, such as one in a unit test.
    pub fn random() -> Self {
        let mut bytes = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
        Self::new(&bytes)
    }

    /// The id that carries `conversation`.
    pub fn seal(&self, conversation: &Conversation) -> Result<String, String> {
        let mut data = serde_json::to_vec(conversation).map_err(|e| e.to_string())?;
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| "no randomness for a nonce".to_string())?;
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from([VERSION]),
                &mut data,
            )
            .map_err(|_| "sealing the conversation failed".to_string())?;
        let mut sealed = Vec::with_capacity(1 + NONCE_LEN + data.len());
        sealed.push(VERSION);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&data);
        Ok(format!(
            "{ID_PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sealed)
        ))
    }

    /// The conversation an id carries.
    pub fn open(&self, id: &str) -> Result<Conversation, OpenError> {
        let encoded = id.strip_prefix(ID_PREFIX).ok_or(OpenError::Malformed)?;
        let mut sealed = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(encoded)
            .map_err(|_| OpenError::Malformed)?;
        if sealed.len() < 1 + NONCE_LEN || sealed[0] != VERSION {
            return Err(OpenError::Malformed);
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&sealed[1..1 + NONCE_LEN]);
        let plain = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from([VERSION]),
                &mut sealed[1 + NONCE_LEN..],
            )
            .map_err(|_| OpenError::Forged)?;
        serde_json::from_slice(plain).map_err(|_| OpenError::Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use auxot_common::chat::Role;

    fn conversation() -> Conversation {
        Conversation {
            messages: vec![
                Message::text(Role::User, "What is 2+2?"),
                Message::text(Role::Assistant, "4"),
            ],
        }
    }

    #[test]
    fn a_sealed_conversation_opens_with_the_same_key_only() {
        let key = StateKey::new(&[7; 32]);
        let id = key.seal(&conversation()).expect("seal");
        assert!(id.starts_with("resp_"), "{id}");
        assert_eq!(key.open(&id), Ok(conversation()));
        // Two seals of one conversation differ (fresh nonce) and both open.
        let again = key.seal(&conversation()).expect("seal");
        assert_ne!(id, again);
        assert_eq!(key.open(&again), Ok(conversation()));

        let other = StateKey::new(&[8; 32]);
        assert_eq!(other.open(&id), Err(OpenError::Forged));
    }

    #[test]
    fn streamed_responses_are_kept_oldest_out() {
        let kept = StreamedResponses::default();
        kept.insert("resp_a".into(), "sealed-a".into());
        assert_eq!(kept.get("resp_a").as_deref(), Some("sealed-a"));
        assert_eq!(kept.get("resp_b"), None);
        for i in 0..STREAMED_MAX {
            kept.insert(format!("resp_{i}"), "x".into());
        }
        assert_eq!(kept.get("resp_a"), None, "the oldest went first");
        assert_eq!(kept.get("resp_0").as_deref(), Some("x"));
        assert!(is_stream_id("resp_0123456789abcdef01234567"));
        assert!(!is_stream_id(
            &StateKey::new(&[1; 32]).seal(&conversation()).expect("seal")
        ));
    }

    #[test]
    fn tampered_or_foreign_ids_are_refused() {
        let key = StateKey::new(&[7; 32]);
        let id = key.seal(&conversation()).expect("seal");
        let mut bytes: Vec<char> = id.chars().collect();
        let last = bytes.len() - 3;
        bytes[last] = if bytes[last] == 'A' { 'B' } else { 'A' };
        let tampered: String = bytes.into_iter().collect();
        assert_eq!(key.open(&tampered), Err(OpenError::Forged));
        for foreign in [
            "resp_67ccd2bed1ec8190b14f964abc054267",
            "msg_123",
            "resp_",
            "resp_!!",
        ] {
            assert!(key.open(foreign).is_err(), "{foreign}");
        }
    }
}
