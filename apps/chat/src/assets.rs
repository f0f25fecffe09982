//! The frontend, compiled into the binary: the page, its styles and ES modules, served with their
//! content types and a strict Content-Security-Policy (only this app's own files; no inline
//! script or style).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// Sent with every response of the app.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; \
base-uri 'self'; form-action 'self'; frame-ancestors 'none'";

const INDEX: &str = include_str!("../static/index.html");
const UNAVAILABLE: &str = include_str!("../static/unavailable.html");

/// `(name, content type, bytes)` of every file under `static/`.
const FILES: &[(&str, &str, &[u8])] = &[
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("../static/app.css"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../static/app.js"),
    ),
    (
        "markdown.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../static/markdown.js"),
    ),
    (
        "chart.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../static/chart.js"),
    ),
    (
        "stream.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../static/stream.js"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_bytes!("../static/favicon.svg"),
    ),
];

/// A file under `static/`, or 404.
pub fn file(name: &str) -> Response {
    match FILES.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, bytes)) => (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            ],
            *bytes,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}

/// The page; `base_path` (the client route's path, ending in `/`) makes every relative URL
/// resolve under the route whether or not the browser's URL ends in a slash.
pub fn index(base_path: &str) -> Response {
    html(
        StatusCode::OK,
        INDEX.replace("{{BASE}}", &escape(base_path)),
    )
}

/// A page for a person who reached the app the wrong way or while it cannot check them.
pub fn unavailable(status: StatusCode, base_path: &str, title: &str, message: &str) -> Response {
    let page = UNAVAILABLE
        .replace("{{BASE}}", &escape(base_path))
        .replace("{{TITLE}}", &escape(title))
        .replace("{{MESSAGE}}", &escape(message));
    html(status, page)
}

fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

/// HTML text and attribute escaping.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_have_no_inline_script_or_style() {
        for page in [INDEX, UNAVAILABLE] {
            assert!(!page.contains("<script>"), "inline script");
            assert!(!page.contains("style="), "inline style");
            assert!(!page.contains("<style"), "style element");
            assert!(
                !page.contains("http://") && !page.contains("https://"),
                "no CDN"
            );
        }
        assert!(INDEX.contains(r#"<script type="module" src="static/app.js">"#));
    }

    #[test]
    fn escaping_and_base() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        let body = INDEX.replace("{{BASE}}", &escape("/chat/"));
        assert!(body.contains(r#"<base href="/chat/">"#));
    }

    #[test]
    fn every_file_has_a_type() {
        assert_eq!(
            file("app.js").headers()[header::CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );
        assert_eq!(
            file("app.css").headers()[header::CONTENT_TYPE],
            "text/css; charset=utf-8"
        );
        assert_eq!(file("../Cargo.toml").status(), StatusCode::NOT_FOUND);
    }
}
