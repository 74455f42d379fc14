//! Any bytes as an OpenAI chat-completion body: parsing and translation answer Ok or a 400,
//! never panic; a translated request always encodes for the wire.
#![no_main]

use std::sync::{Arc, OnceLock};

use auxot_common::wire::{encode_frame, WireRequest};
use auxot_router::dialect::openai::OpenAi;
use auxot_router::dialect::responses::state::StateKey;
use auxot_router::dialect::{Dialect, DialectContext};
use libfuzzer_sys::fuzz_target;

/// What the router hands every dialect besides the body (the chat dialect reads none of it).
fn context() -> &'static DialectContext {
    static CONTEXT: OnceLock<DialectContext> = OnceLock::new();
    CONTEXT.get_or_init(|| DialectContext {
        response_state: Arc::new(StateKey::random()),
        streamed_responses: Arc::default(),
    })
}

fuzz_target!(|data: &[u8]| {
    match OpenAi::parse_chat(data, context()) {
        Ok(call) => {
            let _ = encode_frame(&WireRequest::Chat(call.request));
        }
        Err(error) => assert_eq!(error.status(auxot_router::error::DialectKind::OpenAi), 400),
    }
});
