//! Any bytes as an OpenAI chat-completion body: parsing and translation answer Ok or a 400,
//! never panic; a translated request always encodes for the wire.
#![no_main]

use auxot_common::wire::{encode_frame, WireRequest};
use auxot_router::dialect::openai::OpenAi;
use auxot_router::dialect::Dialect;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match OpenAi::parse_chat(data) {
        Ok(call) => {
            let _ = encode_frame(&WireRequest::Chat(call.request));
        }
        Err(error) => assert_eq!(error.status(auxot_router::error::DialectKind::OpenAi), 400),
    }
});
