use super::*;

const MSG: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"pad":"PAD"}}}"#;

/// A valid message of exactly `len` bytes.
fn message_of_len(len: usize) -> Vec<u8> {
    let pad = len - (MSG.len() - 3);
    MSG.replace("PAD", &"x".repeat(pad)).into_bytes()
}

fn feed(acc: &mut BodyAccumulator, body: &[u8], chunk: usize) -> Result<(), Error> {
    for piece in body.chunks(chunk) {
        acc.push(piece)?;
    }
    Ok(())
}

#[test]
fn size_limit_exactly_at_and_over_the_boundary_in_chunks() {
    let limit = 10_000;
    for chunk in [1, 7, 4096] {
        let at = message_of_len(limit);
        let mut acc = BodyAccumulator::new(limit);
        feed(&mut acc, &at, chunk).unwrap();
        assert_eq!(acc.len(), limit);
        let body = acc.parse(&Limits::default()).unwrap();
        assert_eq!(body.messages()[0].target(), Some("t"));

        let over = message_of_len(limit + 1);
        let mut acc = BodyAccumulator::new(limit);
        let mut fed = 0;
        let mut failed_at = None;
        for piece in over.chunks(chunk) {
            match acc.push(piece) {
                Ok(()) => fed += piece.len(),
                Err(e) => {
                    assert_eq!(e, Error::TooLarge { limit });
                    failed_at = Some((fed, piece.len()));
                    break;
                }
            }
        }
        // Fails on the very chunk that crosses the limit, and frees the buffer.
        let (before, piece) = failed_at.unwrap();
        assert!(before <= limit && before + piece > limit);
        assert!(acc.is_overflowed());
        assert_eq!(acc.len(), 0);
        assert_eq!(acc.push(b"").unwrap_err().reason(), "too_large");
        assert_eq!(acc.push(b"x").unwrap_err().reason(), "too_large");
        assert_eq!(
            acc.parse(&Limits::default()).unwrap_err().reason(),
            "too_large"
        );
    }
}

#[test]
fn default_limit_is_one_mebibyte() {
    let mut acc = BodyAccumulator::default();
    assert_eq!(acc.limit(), 1 << 20);
    let body = message_of_len(1 << 20);
    feed(&mut acc, &body, 65536).unwrap();
    assert!(acc.parse(&Limits::default()).is_ok());
    assert_eq!(acc.push(b" ").unwrap_err().reason(), "too_large");
}

#[test]
fn content_length_announced() {
    let mut acc = BodyAccumulator::new(100);
    assert!(acc.expect_length(100).is_ok());
    assert!(acc.bytes().is_empty() && acc.is_empty());
    let mut acc = BodyAccumulator::new(100);
    assert_eq!(acc.expect_length(101).unwrap_err().reason(), "too_large");
    assert!(acc.push(b"{}").is_err());
}

#[test]
fn parse_errors_pass_through() {
    let mut acc = BodyAccumulator::new(1000);
    acc.push(&MSG.as_bytes()[..20]).unwrap();
    assert_eq!(
        acc.parse(&Limits::default()).unwrap_err().reason(),
        "truncated"
    );
    acc.push(&MSG.as_bytes()[20..]).unwrap();
    assert!(acc.parse(&Limits::default()).is_ok());
    assert_eq!(acc.bytes(), MSG.as_bytes());
    let acc = BodyAccumulator::new(1000);
    assert_eq!(acc.parse(&Limits::default()).unwrap_err().reason(), "empty");
    // The depth limit from `limits` applies, the size limit is the accumulator's.
    let mut acc = BodyAccumulator::new(1000);
    acc.push(MSG.as_bytes()).unwrap();
    let shallow = Limits {
        max_depth: 2,
        max_bytes: 1,
    };
    assert_eq!(acc.parse(&shallow).unwrap_err().reason(), "too_deep");
}
