use super::*;

#[test]
fn content_type() {
    for ok in [
        "application/json",
        "Application/JSON",
        "application/json; charset=utf-8",
        "application/json;charset=UTF-8",
        "application/json ; charset=\"utf-8\"",
        "application/json; charset=utf8",
        "  application/json  ",
        "application/json; foo=bar",
        "application/json;",
    ] {
        assert!(check_content_type(Some(ok)).is_ok(), "{ok}");
    }
    for bad in [
        None,
        Some(""),
        Some("text/plain"),
        Some("application/json-seq"),
        Some("application/jsonx"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        Some("application/json; charset=utf-16"),
        Some("application/json; charset=latin1"),
        Some("application/json; charset=utf-8; charset=utf-16"),
        Some("application/json, text/plain"),
        Some("application/json; garbage"),
        Some("text/event-stream"),
        Some("application/*"),
    ] {
        let e = check_content_type(bad).unwrap_err();
        assert_eq!(e.reason(), "content_type", "{bad:?}");
    }
    let long = "x".repeat(10_000);
    let e = check_content_type(Some(&long)).unwrap_err();
    assert!(e.to_string().len() < 200);
}

#[test]
fn content_encoding() {
    for ok in [None, Some(""), Some("identity"), Some(" IDENTITY ")] {
        assert!(check_content_encoding(ok).is_ok(), "{ok:?}");
    }
    for bad in [
        "gzip",
        "br",
        "deflate",
        "zstd",
        "identity, gzip",
        "gzip, identity",
        "x",
    ] {
        assert_eq!(
            check_content_encoding(Some(bad)).unwrap_err().reason(),
            "content_encoding",
            "{bad}"
        );
    }
}

#[test]
fn content_length() {
    assert_eq!(check_content_length(None, 10), Ok(None));
    assert_eq!(check_content_length(Some("10"), 10), Ok(Some(10)));
    assert_eq!(check_content_length(Some(" 0 "), 10), Ok(Some(0)));
    for bad in [
        "11",
        "-1",
        "",
        "1e3",
        "0x10",
        "99999999999999999999999999",
        "1,2",
    ] {
        assert_eq!(
            check_content_length(Some(bad), 10).unwrap_err().reason(),
            "too_large",
            "{bad}"
        );
    }
}

#[test]
fn response_classification() {
    assert_eq!(response_body(Some("application/json")), ResponseBody::Json);
    assert_eq!(
        response_body(Some("application/json; charset=utf-8")),
        ResponseBody::Json
    );
    assert_eq!(
        response_body(Some("text/event-stream")),
        ResponseBody::EventStream
    );
    assert_eq!(
        response_body(Some("Text/Event-Stream; charset=utf-8")),
        ResponseBody::EventStream
    );
    assert_eq!(response_body(Some("text/html")), ResponseBody::Other);
    assert_eq!(response_body(None), ResponseBody::Other);
}
