//! Metrics, logs and traces of the token service (docs/operations.md).
//!
//! | module        | what it is                                                          |
//! |---------------|---------------------------------------------------------------------|
//! | [`metrics`]   | the Prometheus metrics and their typed recording API                |
//! | [`tracing`]   | the log subscriber, the OTLP trace exporter, W3C context extraction |
//!
//! [`observe`] is the middleware both listeners' routers end with: one server span per request
//! (the log lines' context, and the exported span when tracing is on) and the latency histogram.

pub mod metrics;
pub mod tracing;

use std::sync::Arc;
use std::time::Instant;

use ::tracing::field::Empty;
use ::tracing::Instrument;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use mcpgate_config::paths;

pub use metrics::{Listener, Metrics};

/// The route label of the connect fallback (`<server route>/.mcpgate/mcp/connect`).
pub const CONNECT_ROUTE: &str = "connect";
/// The route label of any path no route matched.
pub const OTHER_ROUTE: &str = "other";

/// The route template a request matched, as a label: the router's path pattern (bounded by the
/// routes the service defines), `connect` for the public connect fallback, `other` for anything
/// else. Never the request's own path, which can carry ids.
fn route_label(listener: Listener, request: &Request) -> String {
    if let Some(matched) = request.extensions().get::<MatchedPath>() {
        return matched.as_str().to_string();
    }
    let label = if listener == Listener::Public
        && request.uri().path().ends_with(paths::MCP_CONNECT_SUFFIX)
    {
        CONNECT_ROUTE
    } else {
        OTHER_ROUTE
    };
    label.to_string()
}

/// What [`observe`] needs: which listener, and where to count.
#[derive(Clone)]
pub struct Observed {
    pub listener: Listener,
    pub metrics: Arc<Metrics>,
}

/// The middleware of both listeners (add it with `Router::layer` after every route, so the
/// matched route is known): a server span `<METHOD> <route template>` that continues the
/// request's W3C trace context, and the request's latency in
/// `mcpgate_http_request_duration_seconds`. The span's `method` and `path` fields are what the
/// log lines showed before; the OpenTelemetry fields are filled only when traces are exported.
pub async fn observe(State(o): State<Observed>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = route_label(o.listener, &request);
    let method = request.method().clone();
    let span = ::tracing::info_span!(
        target: "mcpgate::http",
        "request",
        listener = o.listener.as_str(),
        method = %method,
        path = %request.uri().path(),
        otel.name = Empty,
        otel.kind = Empty,
        otel.status_code = Empty,
        http.request.method = Empty,
        http.route = Empty,
        http.response.status_code = Empty,
    );
    let exporting = tracing::exporting();
    if exporting {
        span.record("otel.name", format!("{method} {route}"));
        span.record("otel.kind", "server");
        span.record("http.request.method", method.as_str());
        span.record("http.route", route.as_str());
        tracing::continue_trace(&span, request.headers());
    }
    let response = next.run(request).instrument(span.clone()).await;
    let status = response.status();
    let elapsed = started.elapsed();
    if exporting {
        span.record("http.response.status_code", i64::from(status.as_u16()));
        if status.is_server_error() {
            span.record("otel.status_code", "error");
        }
    }
    o.metrics
        .http_request(o.listener, &method, &route, status, elapsed);
    let latency_ms = elapsed.as_millis();
    span.in_scope(|| {
        if status.is_server_error() {
            ::tracing::error!(status = status.as_u16(), latency_ms, "response failed");
        } else {
            ::tracing::debug!(
                status = status.as_u16(),
                latency_ms,
                "finished processing request"
            );
        }
    });
    response
}
