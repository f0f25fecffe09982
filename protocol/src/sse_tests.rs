use super::*;

fn ev(event: Option<&str>, id: Option<&str>, data: &str) -> Event {
    Event {
        event: event.map(str::to_owned),
        id: id.map(str::to_owned),
        retry: None,
        data: data.to_owned(),
    }
}

/// Parses `stream` fed in the given pieces; returns events and the unterminated final one.
fn parse_pieces(pieces: &[&[u8]]) -> (Vec<Event>, Option<Event>) {
    let mut parser = SseParser::default();
    let mut events = Vec::new();
    for piece in pieces {
        events.extend(parser.push(piece).unwrap());
    }
    let last = parser.finish().unwrap();
    (events, last)
}

const STREAM: &str = "\u{feff}: keepalive comment\r\n\
event: message\r\n\
id: 1\r\n\
data: {\"jsonrpc\":\"2.0\",\r\n\
data: \"id\":1}\r\n\
\r\n\
data:no-space\n\
data:  two-spaces\n\
\n\
retry: 3000\r\
id: 2\r\
data: é😀 crlf-less\r\
\r\
id\n\
\n\
data\n\
\n\
event: custom\n\
data: last\n\
unknown: field\n\
\n";

fn expected() -> Vec<Event> {
    vec![
        ev(
            Some("message"),
            Some("1"),
            "{\"jsonrpc\":\"2.0\",\n\"id\":1}",
        ),
        ev(None, None, "no-space\n two-spaces"),
        Event {
            retry: Some(3000),
            ..ev(None, Some("2"), "é😀 crlf-less")
        },
        // "id" alone sets an empty id but dispatches nothing (no data); "data" alone dispatches "".
        ev(None, None, ""),
        ev(Some("custom"), None, "last"),
    ]
}

#[test]
fn parses_all_line_endings_and_fields() {
    let (events, last) = parse_pieces(&[STREAM.as_bytes()]);
    assert_eq!(events, expected());
    assert_eq!(last, None);
    assert_eq!(events[0].event_type(), "message");
    assert_eq!(events[4].event_type(), "custom");
    assert_eq!(events[1].event_type(), "message");
}

#[test]
fn split_at_every_byte_offset_yields_identical_events() {
    let bytes = STREAM.as_bytes();
    for cut in 0..=bytes.len() {
        let (a, b) = bytes.split_at(cut);
        let (events, last) = parse_pieces(&[a, b]);
        assert_eq!(events, expected(), "split at {cut}");
        assert_eq!(last, None);
    }
    // And every pair of cuts (three pieces), on a shorter stream.
    let short = b"data: a\r\n\r\nid: 7\rdata: b\r\rdata: c\n\n";
    for i in 0..=short.len() {
        for j in i..=short.len() {
            let (events, _) = parse_pieces(&[&short[..i], &short[i..j], &short[j..]]);
            assert_eq!(
                events,
                vec![
                    ev(None, None, "a"),
                    ev(None, Some("7"), "b"),
                    ev(None, None, "c")
                ],
                "cuts at {i}, {j}"
            );
        }
    }
    // Byte by byte.
    let pieces: Vec<&[u8]> = bytes.chunks(1).collect();
    assert_eq!(parse_pieces(&pieces).0, expected());
}

#[test]
fn crlf_split_across_chunks() {
    // CR ends one chunk, LF starts the next: one line end, not two (which would dispatch early).
    let (events, _) = parse_pieces(&[b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"]);
    assert_eq!(events, vec![ev(None, None, "a\nb")]);
    // A lone CR followed by another line is a line end.
    let (events, _) = parse_pieces(&[b"data: a\r", b"data: b\r", b"\r"]);
    assert_eq!(events, vec![ev(None, None, "a\nb")]);
    // Dispatch happens on the blank line's CR, without waiting for a possible LF.
    let mut parser = SseParser::default();
    assert_eq!(
        parser.push(b"data: x\r\n\r").unwrap(),
        vec![ev(None, None, "x")]
    );
    assert!(parser.push(b"\n").unwrap().is_empty());
    assert_eq!(parser.finish().unwrap(), None);
}

#[test]
fn unterminated_final_event_is_reported_by_finish() {
    let (events, last) = parse_pieces(&[b"data: a\n\ndata: partial"]);
    assert_eq!(events, vec![ev(None, None, "a")]);
    assert_eq!(last, Some(ev(None, None, "partial")));
    let (_, last) = parse_pieces(&[b"data: a\n\n: just a comment"]);
    assert_eq!(last, None);
}

#[test]
fn event_size_is_bounded() {
    let mut parser = SseParser::new(64);
    assert!(parser.push(&[b'x'; 64]).is_ok());
    assert_eq!(parser.buffered_len(), 64);
    let e = parser.push(b"x").unwrap_err();
    assert_eq!(e, Error::EventTooLarge { limit: 64 });
    // Stays failed, holds nothing.
    assert_eq!(parser.buffered_len(), 0);
    assert_eq!(
        parser.push(b"\n\n").unwrap_err().reason(),
        "event_too_large"
    );
    assert_eq!(parser.finish().unwrap_err().reason(), "event_too_large");

    // A complete event over the limit in one chunk is refused too.
    let mut parser = SseParser::new(16);
    let e = parser.push(b"data: 0123456789abcdef\n\n").unwrap_err();
    assert_eq!(e.reason(), "event_too_large");
    // Many small events in one big chunk are fine.
    let mut parser = SseParser::new(16);
    let stream = b"data: a\n\n".repeat(1000);
    assert_eq!(parser.push(&stream).unwrap().len(), 1000);
    // An event exactly at the limit is fine.
    let mut parser = SseParser::new(9);
    assert_eq!(parser.push(b"data: a\n\n").unwrap().len(), 1);
}

#[test]
fn invalid_utf8_fails_the_stream() {
    let mut parser = SseParser::default();
    assert!(parser.push(b"data: a\n\n").is_ok());
    let e = parser.push(b"data: \xff\n\n").unwrap_err();
    assert_eq!(e, Error::InvalidUtf8 { offset: 15 });
    assert!(parser.push(b"data: ok\n\n").is_err());
    // A multi-byte character split across chunks is fine.
    let (events, _) = parse_pieces(&[b"data: \xc3", b"\xa9\n\n"]);
    assert_eq!(events, vec![ev(None, None, "é")]);
}

#[test]
fn id_with_nul_and_bad_retry_are_ignored() {
    let (events, _) = parse_pieces(&[b"id: a\0b\nretry: 12x\ndata: d\n\n"]);
    assert_eq!(events, vec![ev(None, None, "d")]);
    assert_eq!(events[0].retry, None);
}

fn rewrite_all(rewriter: &mut SseRewriter, pieces: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    let f = |e: &Event| -> Result<Option<String>, Error> {
        Ok(e.data
            .contains("secret")
            .then(|| e.data.replace("secret", "filtered\nline")))
    };
    for piece in pieces {
        out.extend(rewriter.push(piece, f).unwrap());
    }
    out.extend(rewriter.finish(f).unwrap());
    out
}

#[test]
fn rewriter_passes_other_events_byte_for_byte() {
    let input = b": hi\r\nevent: message\r\nid: 1\r\ndata: plain\r\n\r\nid: 2\nevent: e\nretry: 5\ndata: a secret\ndata: two\n\ndata: tail\r\n\r\n";
    let want: &[u8] = b": hi\r\nevent: message\r\nid: 1\r\ndata: plain\r\n\r\nevent: e\nid: 2\nretry: 5\ndata: a filtered\ndata: line\ndata: two\n\ndata: tail\r\n\r\n";
    for cut in 0..=input.len() {
        let mut rewriter = SseRewriter::default();
        let (a, b) = input.split_at(cut);
        assert_eq!(rewrite_all(&mut rewriter, &[a, b]), want, "split at {cut}");
    }
    // Nothing rewritten: output is the input, whatever the chunking.
    let plain = STREAM.as_bytes();
    for cut in 0..=plain.len() {
        let mut rewriter = SseRewriter::default();
        let (a, b) = plain.split_at(cut);
        assert_eq!(rewrite_all(&mut rewriter, &[a, b]), plain, "split at {cut}");
    }
    // The re-serialised event parses back to the new data.
    let (events, _) = parse_pieces(&[want]);
    assert_eq!(events[1].data, "a filtered\nline\ntwo");
    assert_eq!(events[1].retry, Some(5));
}

#[test]
fn rewriter_holds_back_only_the_partial_event() {
    let mut rewriter = SseRewriter::default();
    let keep = |_: &Event| Ok(None);
    assert_eq!(
        rewriter.push(b"data: a\n\ndata: b", keep).unwrap(),
        b"data: a\n\n"
    );
    assert_eq!(rewriter.buffered_len(), 7);
    assert_eq!(rewriter.push(b"\n\n", keep).unwrap(), b"data: b\n\n");
    assert_eq!(rewriter.buffered_len(), 0);
}

#[test]
fn rewriter_unterminated_final_event_stays_unterminated() {
    let mut rewriter = SseRewriter::default();
    let f = |_: &Event| Ok(Some("new".to_owned()));
    assert!(rewriter.push(b"data: old", f).unwrap().is_empty());
    assert_eq!(rewriter.finish(f).unwrap(), b"data: new\n");
    let mut rewriter = SseRewriter::default();
    let keep = |_: &Event| Ok(None);
    assert!(rewriter.push(b": c\ndata: old", keep).unwrap().is_empty());
    assert_eq!(rewriter.finish(keep).unwrap(), b": c\ndata: old");
}

#[test]
fn rewriter_error_fails_the_stream() {
    let mut rewriter = SseRewriter::default();
    let f = |e: &Event| {
        if e.data == "bad" {
            Err(Error::InvalidJson {
                offset: 0,
                what: "x",
            })
        } else {
            Ok(None)
        }
    };
    assert_eq!(rewriter.push(b"data: ok\n\n", f).unwrap(), b"data: ok\n\n");
    assert_eq!(
        rewriter
            .push(b"data: bad\n\ndata: ok\n\n", f)
            .unwrap_err()
            .reason(),
        "invalid_json"
    );
    assert!(rewriter.push(b"data: ok\n\n", f).is_err());
    assert!(rewriter.finish(f).is_err());
}

#[test]
fn write_to_handles_every_line_break_in_data() {
    for data in [
        "",
        "a",
        "a\nb",
        "a\r\nb",
        "a\rb",
        "\n",
        "a\n",
        " lead",
        "x\r\n\r\ny",
    ] {
        let event = Event {
            event: Some("e".into()),
            id: Some("i".into()),
            retry: Some(1),
            data: data.into(),
        };
        let mut out = Vec::new();
        event.write_to(&mut out);
        let (events, _) = parse_pieces(&[&out]);
        let normalised = data.replace("\r\n", "\n").replace('\r', "\n");
        assert_eq!(
            events,
            vec![Event {
                data: normalised,
                ..event
            }],
            "{data:?}"
        );
    }
}
