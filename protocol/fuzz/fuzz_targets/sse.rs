//! Arbitrary bytes through the SSE rewriter in chunks (first byte picks the chunk size): an
//! identity rewrite must give back the input exactly.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcpgate_protocol::sse::SseRewriter;

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, stream)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(chunk).max(1);
    let mut rewriter = SseRewriter::new(4096);
    let keep = |_: &mcpgate_protocol::sse::Event| Ok(None);
    let mut out = Vec::new();
    for piece in stream.chunks(chunk) {
        match rewriter.push(piece, keep) {
            Ok(bytes) => out.extend(bytes),
            Err(_) => return,
        }
    }
    match rewriter.finish(keep) {
        Ok(bytes) => out.extend(bytes),
        Err(_) => return,
    }
    assert_eq!(out, stream);
});
