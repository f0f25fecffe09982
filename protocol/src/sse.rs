//! Incremental Server-Sent Events parsing and rewriting for streamed responses.
//!
//! Response chunks are not aligned to events: an event, a line, a multi-byte character or a CRLF
//! pair may be split across chunks. [`SseParser`] keeps only the bytes of the current, unfinished
//! event and yields every complete one, following the WHATWG event-stream rules: lines end in
//! `\r\n`, `\n` or `\r`; a blank line dispatches; `data` lines are joined with `\n`; a leading
//! BOM is ignored; `:` lines are comments; one space after the colon is dropped; an `id`
//! containing NUL is ignored; `retry` must be all digits; a block without `data` dispatches
//! nothing.
//!
//! [`SseRewriter`] passes every event through byte-for-byte unless the caller's callback returns
//! new data for it, in which case that event is re-serialised (its `event`, `id` and `retry`
//! fields kept, the new data split into `data:` lines). Events are held back only until they are
//! complete; the stream is never buffered as a whole.
//!
//! Buffering is bounded: an event (or a line) larger than the limit is
//! [`Error::EventTooLarge`]; invalid UTF-8 is [`Error::InvalidUtf8`] (browsers would substitute
//! U+FFFD, a gateway that must read the data refuses instead). After an error the parser stays
//! failed: later chunks return the same error, so nothing after it passes unchecked.

use crate::error::Error;

/// Default limit for one event: 1 MiB.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 1 << 20;

const BOM: &[u8] = "\u{feff}".as_bytes();

/// Receives each completed block.
type BlockSink<'s> = dyn FnMut(Block<'_>) -> Result<(), Error> + 's;

/// A completed block of the stream: a run of lines ended by a blank line (or the end of the
/// stream), with its exact bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block<'r> {
    /// The event the block dispatches (`None`: comments only, no `data`, ...).
    pub event: Option<Event>,
    /// The block's bytes as received.
    pub raw: &'r [u8],
    /// True for the lone `\n` of a `\r\n` split across chunks whose `\r` ended the previous
    /// block (already dispatched): it belongs to that block's last line end.
    pub continuation: bool,
}

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Event {
    /// The `event` field (`None`: the default type, `message`).
    pub event: Option<String>,
    /// The `id` field set in this event, if any.
    pub id: Option<String>,
    /// The `retry` field set in this event, if any.
    pub retry: Option<u64>,
    /// The data lines joined with `\n`.
    pub data: String,
}

impl Event {
    /// The event type: the `event` field, or `message`.
    pub fn event_type(&self) -> &str {
        match self.event.as_deref() {
            Some(e) if !e.is_empty() => e,
            _ => "message",
        }
    }

    /// Serialises the event, terminated by a blank line. Data containing line breaks becomes
    /// several `data:` lines, so the receiver reassembles exactly `self.data`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        if let Some(event) = &self.event {
            write_field(out, "event", first_line(event));
        }
        if let Some(id) = &self.id {
            write_field(out, "id", first_line(id));
        }
        if let Some(retry) = self.retry {
            write_field(out, "retry", &retry.to_string());
        }
        let mut rest = self.data.as_str();
        loop {
            // memchr: a list answer's data is one line of tens of kilobytes.
            match memchr::memchr2(b'\r', b'\n', rest.as_bytes()) {
                None => {
                    write_field(out, "data", rest);
                    break;
                }
                Some(i) => {
                    write_field(out, "data", rest.get(..i).unwrap_or_default());
                    let after = rest.get(i..).unwrap_or_default();
                    rest = after
                        .strip_prefix("\r\n")
                        .or_else(|| after.get(1..))
                        .unwrap_or_default();
                }
            }
        }
        out.push(b'\n');
    }
}

fn first_line(s: &str) -> &str {
    s.split(['\r', '\n']).next().unwrap_or_default()
}

fn write_field(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.push(b'\n');
}

/// The fields collected so far for the current event.
#[derive(Debug, Clone, Default)]
struct Pending {
    event: Option<String>,
    id: Option<String>,
    retry: Option<u64>,
    data: String,
}

impl Pending {
    /// Applies one complete line (without its terminator).
    fn line(&mut self, line: &str) {
        if line.starts_with(':') {
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => self.event = Some(value.to_owned()),
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
            }
            "id" if !value.contains('\0') => self.id = Some(value.to_owned()),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                self.retry = value.parse().ok();
            }
            _ => {}
        }
    }

    /// Ends the block: the event to dispatch, if the block had data.
    fn dispatch(&mut self) -> Option<Event> {
        let mut pending = std::mem::take(self);
        if pending.data.is_empty() {
            return None;
        }
        pending.data.pop(); // the '\n' after the last data line
        Some(Event {
            event: pending.event,
            id: pending.id,
            retry: pending.retry,
            data: pending.data,
        })
    }
}

/// An incremental event-stream parser.
#[derive(Debug, Clone)]
pub struct SseParser {
    /// Raw bytes of the current, unfinished block (from its first byte).
    buf: Vec<u8>,
    /// Start of the current, unfinished line in `buf`.
    line_start: usize,
    /// The previous chunk ended in `\r`: a `\n` first in the next one belongs to that line end.
    skip_lf: bool,
    /// No line has been completed yet (a BOM may start the first one).
    first_line: bool,
    /// Bytes consumed before `buf` (for error offsets).
    consumed: usize,
    max_event_bytes: usize,
    pending: Pending,
    failed: Option<Error>,
}

impl Default for SseParser {
    fn default() -> Self {
        SseParser::new(DEFAULT_MAX_EVENT_BYTES)
    }
}

impl SseParser {
    /// A parser that refuses events larger than `max_event_bytes` (raw bytes, including field
    /// names and line ends).
    pub fn new(max_event_bytes: usize) -> Self {
        SseParser {
            buf: Vec::new(),
            line_start: 0,
            skip_lf: false,
            first_line: true,
            consumed: 0,
            max_event_bytes,
            pending: Pending::default(),
            failed: None,
        }
    }

    /// Bytes held back (the unfinished event).
    pub fn buffered_len(&self) -> usize {
        self.buf.len()
    }

    /// Feeds a chunk and returns the events it completed.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<Event>, Error> {
        let mut events = Vec::new();
        self.push_blocks(chunk, |block| {
            if let Some(event) = block.event {
                events.push(event);
            }
            Ok(())
        })?;
        Ok(events)
    }

    /// Ends the stream. Per the SSE rules an unterminated event is discarded by a receiver; it is
    /// returned here (if it has data) so a caller can still inspect it and fail closed.
    pub fn finish(&mut self) -> Result<Option<Event>, Error> {
        let mut last = None;
        self.finish_block(|block| {
            last = block.event;
            Ok(())
        })?;
        Ok(last)
    }

    /// Feeds a chunk; calls `sink` for every completed [`Block`].
    /// Concatenating the raw bytes of all blocks (plus the final one from
    /// [`SseParser::finish_block`]) gives back the input exactly.
    pub fn push_blocks<F>(&mut self, chunk: &[u8], mut sink: F) -> Result<(), Error>
    where
        F: FnMut(Block<'_>) -> Result<(), Error>,
    {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let result = self.push_inner(chunk, &mut sink);
        if let Err(e) = &result {
            self.fail(e.clone());
        }
        result
    }

    /// Ends the stream: the unfinished block (if any bytes remain) goes to `sink` as if it were
    /// terminated, with its raw bytes.
    pub fn finish_block<F>(&mut self, mut sink: F) -> Result<(), Error>
    where
        F: FnMut(Block<'_>) -> Result<(), Error>,
    {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let result = self.finish_inner(&mut sink);
        if let Err(e) = &result {
            self.fail(e.clone());
        }
        result
    }

    fn fail(&mut self, e: Error) {
        self.failed = Some(e);
        self.buf = Vec::new();
        self.pending = Pending::default();
    }

    fn push_inner(&mut self, chunk: &[u8], sink: &mut BlockSink<'_>) -> Result<(), Error> {
        let mut scan = self.buf.len();
        self.buf.extend_from_slice(chunk);
        let mut block_start = 0usize;
        loop {
            if self.skip_lf {
                match self.buf.get(scan) {
                    None => break,
                    Some(b'\n') => {
                        scan += 1;
                        self.line_start = scan;
                        if block_start + 1 == scan {
                            sink(Block {
                                event: None,
                                raw: self.buf.get(block_start..scan).unwrap_or_default(),
                                continuation: true,
                            })?;
                            block_start = scan;
                        }
                    }
                    Some(_) => {}
                }
                self.skip_lf = false;
            }
            let rest = self.buf.get(scan..).unwrap_or_default();
            let Some(i) = memchr::memchr2(b'\r', b'\n', rest) else {
                break;
            };
            let end = scan + i;
            let next = match (self.buf.get(end), self.buf.get(end + 1)) {
                (Some(b'\r'), Some(b'\n')) => end + 2,
                (Some(b'\r'), None) => {
                    self.skip_lf = true;
                    end + 1
                }
                _ => end + 1,
            };
            let blank = self.complete_line(end)?;
            scan = next;
            self.line_start = next;
            if blank {
                if next - block_start > self.max_event_bytes {
                    return Err(Error::EventTooLarge {
                        limit: self.max_event_bytes,
                    });
                }
                let event = self.pending.dispatch();
                sink(Block {
                    event,
                    raw: self.buf.get(block_start..next).unwrap_or_default(),
                    continuation: false,
                })?;
                block_start = next;
            }
        }
        if block_start > 0 {
            self.buf.drain(..block_start);
            self.line_start -= block_start;
            self.consumed += block_start;
        }
        if self.buf.len() > self.max_event_bytes {
            return Err(Error::EventTooLarge {
                limit: self.max_event_bytes,
            });
        }
        Ok(())
    }

    /// Applies the line from `line_start` to `end`; true if it was blank.
    fn complete_line(&mut self, end: usize) -> Result<bool, Error> {
        let mut start = self.line_start;
        let mut line = self.buf.get(start..end).unwrap_or_default();
        if self.first_line {
            self.first_line = false;
            if let Some(rest) = line.strip_prefix(BOM) {
                line = rest;
                start += BOM.len();
            }
        }
        if line.is_empty() {
            return Ok(true);
        }
        let text = std::str::from_utf8(line).map_err(|e| Error::InvalidUtf8 {
            offset: self.consumed + start + e.valid_up_to(),
        })?;
        self.pending.line(text);
        Ok(false)
    }

    fn finish_inner(&mut self, sink: &mut BlockSink<'_>) -> Result<(), Error> {
        if self.buf.is_empty() {
            return Ok(());
        }
        if self.line_start < self.buf.len() {
            let end = self.buf.len();
            self.complete_line(end)?;
        }
        let event = self.pending.dispatch();
        let raw = std::mem::take(&mut self.buf);
        self.consumed += raw.len();
        self.line_start = 0;
        sink(Block {
            event,
            raw: &raw,
            continuation: false,
        })
    }
}

/// Passes an event stream through, replacing the data of the events the caller chooses.
#[derive(Debug, Clone, Default)]
pub struct SseRewriter {
    parser: SseParser,
    /// The last block was re-serialised (so a split CRLF's `\n` after it is dropped).
    last_rewritten: bool,
}

impl SseRewriter {
    pub fn new(max_event_bytes: usize) -> Self {
        SseRewriter {
            parser: SseParser::new(max_event_bytes),
            last_rewritten: false,
        }
    }

    /// Bytes held back (the unfinished event).
    pub fn buffered_len(&self) -> usize {
        self.parser.buffered_len()
    }

    /// Feeds a chunk; returns the bytes to send on now. `rewrite` sees each complete event and
    /// returns `Some(new_data)` to replace its data, `None` to pass it through unchanged, or an
    /// error, which fails the stream (this and every later call).
    pub fn push<F>(&mut self, chunk: &[u8], mut rewrite: F) -> Result<Vec<u8>, Error>
    where
        F: FnMut(&Event) -> Result<Option<String>, Error>,
    {
        let mut out = Vec::with_capacity(chunk.len());
        let last = &mut self.last_rewritten;
        self.parser.push_blocks(chunk, |block| {
            emit(&mut out, block, &mut rewrite, last, true)
        })?;
        Ok(out)
    }

    /// Ends the stream; returns the last bytes to send. An unterminated final event is passed
    /// through (or rewritten) still unterminated, so a receiver treats it as before.
    pub fn finish<F>(&mut self, mut rewrite: F) -> Result<Vec<u8>, Error>
    where
        F: FnMut(&Event) -> Result<Option<String>, Error>,
    {
        let mut out = Vec::new();
        let last = &mut self.last_rewritten;
        self.parser
            .finish_block(|block| emit(&mut out, block, &mut rewrite, last, false))?;
        Ok(out)
    }
}

fn emit<F>(
    out: &mut Vec<u8>,
    block: Block<'_>,
    rewrite: &mut F,
    last_rewritten: &mut bool,
    terminated: bool,
) -> Result<(), Error>
where
    F: FnMut(&Event) -> Result<Option<String>, Error>,
{
    if block.continuation && *last_rewritten {
        return Ok(()); // the re-serialised block already ended its line
    }
    *last_rewritten = false;
    let Some(mut event) = block.event else {
        out.extend_from_slice(block.raw);
        return Ok(());
    };
    match rewrite(&event)? {
        None => out.extend_from_slice(block.raw),
        Some(data) => {
            event.data = data;
            event.write_to(out);
            if !terminated {
                out.pop(); // keep it unterminated, as it was
            }
            *last_rewritten = true;
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "sse_tests.rs"]
mod tests;
