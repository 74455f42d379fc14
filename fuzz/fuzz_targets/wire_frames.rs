//! Any bytes as what a worker sends back: frames are decoded one after another, and every event
//! goes where the router sends events (a collected completion, both dialects' stream renderers),
//! which must stay within their limits and never panic. Requests are decoded too (the worker's
//! side), and every frame that decodes re-encodes to the same value.
#![no_main]

use auxot_common::completion::Completion;
use auxot_common::wire::{encode_frame, read_frame, WireReply, WireRequest};
use auxot_router::dialect::anthropic::{self, Anthropic};
use auxot_router::dialect::openai::{self, OpenAi};
use auxot_router::dialect::{Dialect, StreamRenderer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut completion = Completion::new("m");
    let mut chunks = OpenAi::stream_renderer(
        openai::Options {
            id: "chatcmpl-1".into(),
            created: 0,
            include_usage: true,
        },
        "m",
    );
    let mut events = Anthropic::stream_renderer(anthropic::Options { id: "msg_1".into() }, "m");
    let mut reader = data;
    for _ in 0..64 {
        let Ok(Some(reply)) = futures::executor::block_on(read_frame::<_, WireReply>(&mut reader))
        else {
            break;
        };
        if let Ok(frame) = encode_frame(&reply) {
            let again = futures::executor::block_on(read_frame::<_, WireReply>(&mut &frame[..]));
            assert!(matches!(again, Ok(Some(ref r)) if *r == reply));
        }
        if let WireReply::Event(event) = reply {
            let _ = completion.apply(&event);
            let _ = chunks.on_event(&event);
            let _ = events.on_event(&event);
        }
    }
    let _ = chunks.close();
    let _ = events.close();
    assert!(completion.tool_calls.len() <= auxot_common::completion::MAX_TOOL_CALLS as usize);
    let _ = futures::executor::block_on(read_frame::<_, WireRequest>(&mut &data[..]));
});
