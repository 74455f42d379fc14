//! Any bytes as what a worker sends back: frames are decoded one after another, and every event
//! goes where the router sends events (a collected completion, both dialects' stream renderers)
//! after the same check the router makes (`check_event`; the first refused event ends the
//! stream, as the router drops such a worker). Nothing may panic, the completion stays within
//! its limits, and every SSE frame is JSON (or OpenAI's `[DONE]`). Requests are decoded too
//! (the worker's side), and every frame that decodes re-encodes to the same value.
#![no_main]

use auxot_common::completion::{check_event, Completion, MAX_TOOL_CALLS};
use auxot_common::wire::{encode_frame, read_frame, WireReply, WireRequest};
use auxot_router::dialect::anthropic::{self, Anthropic};
use auxot_router::dialect::openai::{self, OpenAi};
use auxot_router::dialect::{Dialect, SseFrame, StreamRenderer};
use libfuzzer_sys::fuzz_target;

fn assert_json(frames: Vec<SseFrame>) {
    for frame in frames {
        if frame.data != "[DONE]" {
            assert!(
                serde_json::from_str::<serde_json::Value>(&frame.data).is_ok(),
                "an SSE frame is not JSON: {}",
                frame.data
            );
        }
    }
}

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
            if check_event(&event).is_err() {
                assert!(
                    completion.apply(&event).is_err(),
                    "a refused event collected"
                );
                break;
            }
            let _ = completion.apply(&event);
            assert_json(chunks.on_event(&event));
            assert_json(events.on_event(&event));
        }
    }
    assert_json(chunks.close());
    assert_json(events.close());
    assert!(completion.tool_calls.len() <= MAX_TOOL_CALLS as usize);
    let _ = futures::executor::block_on(read_frame::<_, WireRequest>(&mut &data[..]));
});
