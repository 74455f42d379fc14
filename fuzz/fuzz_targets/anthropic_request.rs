//! Any bytes as an Anthropic Messages (and count_tokens) body: Ok or a 400, never a panic.
#![no_main]

use auxot_common::wire::{encode_frame, WireRequest};
use auxot_router::dialect::anthropic;
use auxot_router::error::DialectKind;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for need_max_tokens in [true, false] {
        match anthropic::parse(data, need_max_tokens) {
            Ok(translated) => {
                let _ = encode_frame(&WireRequest::Chat(translated.request));
            }
            Err(error) => assert_eq!(error.status(DialectKind::Anthropic), 400),
        }
    }
});
