//! Logging and OpenTelemetry traces.
//!
//! Logs always go to stderr (text or JSON, `RUST_LOG` for levels). With `telemetry.tracing` the
//! spans of this crate (each request's server span, see [`super::observe`]) are also exported over
//! OTLP/HTTP (protobuf) to `<otlp_endpoint>/v1/traces` by a batch processor on its own thread,
//! sampled parent-based with `sampling` as the ratio for traces no sampled parent decided. Only
//! spans are exported, never log events, so audit lines (user names) stay in the logs. Without
//! tracing configured no exporter exists and spans are only the log lines' context, as before.

use std::sync::atomic::{AtomicBool, Ordering};

use axum::http::HeaderMap;
use mcpgate_config::telemetry::Tracing;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::{filter_fn, EnvFilter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// How long the exporter waits for the collector per batch.
const EXPORT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Whether spans are exported (tracing configured and the exporter installed).
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// The installed exporter; [`Telemetry::shutdown`] flushes the spans not yet sent.
#[must_use = "call shutdown() at exit, or spans still batched are lost"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Sends what is batched and stops the exporter.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider {
            EXPORTING.store(false, Ordering::Relaxed);
            if let Err(e) = provider.shutdown() {
                // The subscriber may already be gone at exit, so this goes to stderr directly.
                eprintln!("telemetry: flushing the remaining spans failed: {e}");
            }
        }
    }
}

/// Installs the global subscriber: the stderr log (`json` or text, filtered by `RUST_LOG`,
/// default `info,sqlx=warn`) and, with `tracing`, the OTLP exporter. Call it once, outside any
/// async runtime.
///
/// `RUST_LOG` filters globally (one filter for both layers: per-layer filtering of the log layer
/// lost the request span of some log lines). With tracing, `mcpgate::http=info` is added to it so
/// that the request spans exist, and are exported, whatever `RUST_LOG` says.
pub fn init(json: bool, tracing: Option<&Tracing>) -> anyhow::Result<Telemetry> {
    let mut env_filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    if tracing.is_some() {
        env_filter = env_filter.add_directive(
            "mcpgate::http=info"
                .parse()
                .map_err(|e| anyhow::anyhow!("log filter: {e}"))?,
        );
    }
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = if json {
        fmt.json().boxed()
    } else {
        fmt.boxed()
    };
    let provider = tracing.map(provider).transpose()?;
    let otel = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("mcpgate-token-service"))
            // Spans only (no log events), and only this service's.
            .with_filter(filter_fn(|meta| {
                meta.is_span()
                    && (meta.target().starts_with("mcpgate::")
                        || meta.target().starts_with("mcpgate_token_service"))
            }))
    });
    tracing_subscriber::registry()
        .with(env_filter)
        .with(fmt)
        .with(otel)
        .try_init()
        .map_err(|e| anyhow::anyhow!("cannot install the log subscriber: {e}"))?;
    if let Some(t) = tracing {
        EXPORTING.store(true, Ordering::Relaxed);
        tracing::info!(
            endpoint = %t.traces_url(),
            service_name = %t.service_name,
            sampling = %t.sampling,
            "exporting traces over OTLP/HTTP"
        );
    }
    Ok(Telemetry { provider })
}

fn provider(t: &Tracing) -> anyhow::Result<SdkTracerProvider> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(t.traces_url())
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|e| anyhow::anyhow!("telemetry.tracing: cannot create the OTLP exporter: {e}"))?;
    let sampler = Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(t.sampling.ratio())));
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(sampler)
        .with_resource(
            Resource::builder()
                .with_service_name(t.service_name.clone())
                .build(),
        )
        .build())
}

/// Longest `traceparent`/`tracestate` value read from a request.
const MAX_TRACE_HEADER: usize = 512;

struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .get(key)
            .and_then(|v| v.to_str().ok())
            .filter(|v| v.len() <= MAX_TRACE_HEADER)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// Makes `span` continue the W3C trace context (`traceparent`, `tracestate`) of a request's
/// headers. Nothing happens when no exporter is installed or the headers carry none.
pub fn continue_trace(span: &tracing::Span, headers: &HeaderMap) {
    if !exporting() || !headers.contains_key("traceparent") {
        return;
    }
    let parent = TraceContextPropagator::new().extract(&Headers(headers));
    // Fails only when the span is disabled; it is then not exported either.
    let _ = span.set_parent(parent);
}
