//! Reading a `text/event-stream` body incrementally: bytes in, complete events out.

/// One server-sent event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field; empty when the event had none.
    pub event: String,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

/// Accumulates chunks; [`SseReader::push`] returns every event the chunk completed.
#[derive(Default)]
pub struct SseReader {
    buffer: Vec<u8>,
    event: String,
    data: Vec<String>,
}

/// A line longer than this (1 MiB) without an end is refused rather than buffered forever.
pub const MAX_LINE: usize = 1 << 20;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("an event stream line exceeded {MAX_LINE} bytes")]
pub struct LineTooLong;

impl SseReader {
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>, LineTooLong> {
        self.buffer.extend_from_slice(chunk);
        let mut events = Vec::new();
        while let Some(end) = self.buffer.iter().position(|&b| b == b'\n') {
            let mut line: Vec<u8> = self.buffer.drain(..=end).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let line = String::from_utf8_lossy(&line);
            if let Some(event) = self.line(&line) {
                events.push(event);
            }
        }
        if self.buffer.len() > MAX_LINE {
            return Err(LineTooLong);
        }
        Ok(events)
    }

    /// The event still being read when the body ended (a stream may end without a blank line).
    pub fn finish(&mut self) -> Option<SseEvent> {
        let rest = String::from_utf8_lossy(&std::mem::take(&mut self.buffer)).into_owned();
        if !rest.is_empty() {
            self.line(rest.trim_end_matches('\r'));
        }
        self.dispatch()
    }

    fn line(&mut self, line: &str) -> Option<SseEvent> {
        if line.is_empty() {
            return self.dispatch();
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => self.event = value.to_string(),
            "data" => self.data.push(value.to_string()),
            _ => {}
        }
        None
    }

    fn dispatch(&mut self) -> Option<SseEvent> {
        let event = std::mem::take(&mut self.event);
        if self.data.is_empty() {
            return None;
        }
        let data = std::mem::take(&mut self.data).join("\n");
        Some(SseEvent { event, data })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_across_chunks_crlf_comments_and_multiline_data() {
        let mut reader = SseReader::default();
        assert_eq!(
            reader.push(b": keep-alive\n\nevent: a\r\nda").expect("ok"),
            vec![]
        );
        let events = reader
            .push(b"ta: {\"x\":1}\r\n\r\ndata: one\ndata: two\n\n")
            .expect("ok");
        assert_eq!(
            events,
            vec![
                SseEvent {
                    event: "a".into(),
                    data: "{\"x\":1}".into()
                },
                SseEvent {
                    event: String::new(),
                    data: "one\ntwo".into()
                },
            ]
        );
        assert_eq!(reader.push(b"data: [DONE]").expect("ok"), vec![]);
        assert_eq!(
            reader.finish(),
            Some(SseEvent {
                event: String::new(),
                data: "[DONE]".into()
            })
        );
    }

    #[test]
    fn endless_line_is_refused() {
        let mut reader = SseReader::default();
        assert_eq!(reader.push(&vec![b'x'; MAX_LINE + 1]), Err(LineTooLong));
    }
}
