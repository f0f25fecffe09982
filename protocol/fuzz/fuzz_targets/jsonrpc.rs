//! Arbitrary bytes through the body accumulator (first byte picks the chunk size) and the
//! JSON-RPC parser, then through the list filter as a response.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcpgate_protocol::body::BodyAccumulator;
use mcpgate_protocol::jsonrpc::Limits;
use mcpgate_protocol::list_filter::ResponseTracker;

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, body)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(chunk).max(1);
    let mut acc = BodyAccumulator::new(64 * 1024);
    for piece in body.chunks(chunk) {
        if acc.push(piece).is_err() {
            return;
        }
    }
    let mut tracker = ResponseTracker::new();
    if let Ok(parsed) = acc.parse(&Limits::default()) {
        tracker.record_body(&parsed);
        for message in parsed.messages() {
            let _ = (message.target(), message.arguments(), message.id());
        }
    }
    if let Ok(text) = std::str::from_utf8(body) {
        let _ = tracker.filter_body(text, &Limits::default(), |name| name.len() % 2 == 0);
    }
});
