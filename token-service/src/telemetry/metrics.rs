//! The token service's Prometheus metrics (OpenMetrics text at `/metrics` on the internal
//! listener). One [`Metrics`] lives for the whole process and is shared by every configuration
//! version through an `Arc` in the state; the code that knows an outcome records it through the
//! typed methods here.
//!
//! Every label has a bounded set of values (grant types, OAuth error codes, route templates,
//! provider ids from the gateway file): never a user name, a client id, a token or a path with an
//! id in it. docs/operations.md lists every metric.

use std::fmt::Write as _;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use sqlx::AnyPool;

/// `Content-Type` of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Latency buckets in seconds: 1 ms to 10 s.
const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// The OAuth grant types the token endpoint serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantType {
    AuthorizationCode,
    RefreshToken,
    ClientCredentials,
    /// `urn:ietf:params:oauth:grant-type:jwt-bearer` (an enterprise ID-JAG).
    JwtBearer,
    /// A missing or unsupported `grant_type`.
    Other,
}

impl GrantType {
    /// The `grant_type` parameter's value, bounded: anything unknown is `other`.
    pub fn from_param(value: Option<&str>) -> Self {
        match value {
            Some("authorization_code") => Self::AuthorizationCode,
            Some("refresh_token") => Self::RefreshToken,
            Some("client_credentials") => Self::ClientCredentials,
            Some(crate::clients::metadata::JWT_BEARER_GRANT) => Self::JwtBearer,
            _ => Self::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::AuthorizationCode => "authorization_code",
            Self::RefreshToken => "refresh_token",
            Self::ClientCredentials => "client_credentials",
            Self::JwtBearer => "jwt_bearer",
            Self::Other => "other",
        }
    }
}

/// How a request that can fail with an OAuth error ended: `success`, or the OAuth `error` code
/// (`invalid_grant`, `invalid_client`, …; `server_error` for internal failures).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Error(&'static str),
}

impl Outcome {
    pub fn of<T>(result: &Result<T, crate::oauth::error::OAuthError>) -> Self {
        match result {
            Ok(_) => Self::Success,
            Err(e) => Self::Error(e.error),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Error(code) => code,
        }
    }
}

/// How a sign-in ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignInResult {
    Success,
    /// Wrong credentials, or a user the provider refused.
    Failure,
    /// The sign-in could not be checked (users file, provider or database unavailable).
    Error,
}

impl SignInResult {
    fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
            Self::Error => "error",
        }
    }
}

/// The provider label of the built-in user directory.
pub const LOCAL_PROVIDER: &str = "local";

/// How a refresh of a stored upstream (provider) token ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamRefresh {
    /// A new token is stored.
    Refreshed,
    /// The provider refused the refresh token (4xx): the stored token is deleted.
    Rejected,
    /// The provider could not be reached or failed (5xx, timeout): the token is kept.
    Unavailable,
}

impl UpstreamRefresh {
    fn as_str(self) -> &'static str {
        match self {
            Self::Refreshed => "refreshed",
            Self::Rejected => "rejected",
            Self::Unavailable => "unavailable",
        }
    }
}

/// How an OAuth client came to be known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistrationKind {
    /// RFC 7591 dynamic client registration.
    Dynamic,
    /// A client ID metadata document fetched (cache misses only).
    MetadataDocument,
}

impl RegistrationKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Dynamic => "dynamic",
            Self::MetadataDocument => "metadata_document",
        }
    }
}

/// What was revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevocationKind {
    /// An access token's `jti`, at the revocation endpoint.
    AccessToken,
    /// A refresh token and its whole grant, at the revocation endpoint.
    RefreshToken,
    /// A whole grant, because an authorization code or refresh token was used twice.
    Reuse,
    /// A user disconnected upstream providers (`/.mcpgate/mcp/routes/disconnect`).
    UpstreamDisconnect,
}

impl RevocationKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::AccessToken => "access_token",
            Self::RefreshToken => "refresh_token",
            Self::Reuse => "reuse",
            Self::UpstreamDisconnect => "upstream_disconnect",
        }
    }
}

/// Which credential was presented twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reuse {
    AuthorizationCode,
    RefreshToken,
}

/// Which listener served a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    Public,
    Internal,
}

impl Listener {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::Internal => "internal",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GrantLabels {
    grant_type: &'static str,
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReuseLabels {
    credential: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SignInLabels {
    provider: String,
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RegistrationLabels {
    kind: &'static str,
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    listener: &'static str,
    method: &'static str,
    route: String,
    status_class: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// The service's metrics and the registry that encodes them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    grants: Family<GrantLabels, Counter>,
    refresh_reuse: Family<ReuseLabels, Counter>,
    sign_ins: Family<SignInLabels, Counter>,
    upstream_refreshes: Family<OutcomeLabels, Counter>,
    upstream_refresh_duration: Family<OutcomeLabels, Histogram, fn() -> Histogram>,
    registrations: Family<RegistrationLabels, Counter>,
    revocations: Family<KindLabels, Counter>,
    http_duration: Family<HttpLabels, Histogram, fn() -> Histogram>,
}

impl Metrics {
    /// The metrics, with the database pool's gauges read from `pool` at each scrape (none
    /// without a pool).
    pub fn new(pool: Option<AnyPool>) -> Self {
        let mut registry = Registry::default();
        let grants = Family::<GrantLabels, Counter>::default();
        registry.register(
            "mcpgate_token_grants",
            "Token endpoint requests by grant type and result (success or the OAuth error code)",
            grants.clone(),
        );
        let refresh_reuse = Family::<ReuseLabels, Counter>::default();
        registry.register(
            "mcpgate_token_reuse_detections",
            "Authorization codes or refresh tokens presented again after use; each revokes its grant",
            refresh_reuse.clone(),
        );
        let sign_ins = Family::<SignInLabels, Counter>::default();
        registry.register(
            "mcpgate_sign_ins",
            "Sign-ins by identity provider (local: the built-in user directory) and result",
            sign_ins.clone(),
        );
        let upstream_refreshes = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "mcpgate_upstream_refreshes",
            "Refreshes of stored upstream provider tokens by outcome",
            upstream_refreshes.clone(),
        );
        let upstream_refresh_duration =
            Family::<OutcomeLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram,
            );
        registry.register(
            "mcpgate_upstream_refresh_duration_seconds",
            "Time the provider took to answer a refresh (discovery included), by outcome",
            upstream_refresh_duration.clone(),
        );
        let registrations = Family::<RegistrationLabels, Counter>::default();
        registry.register(
            "mcpgate_client_registrations",
            "OAuth clients registered dynamically or fetched as client ID metadata documents, by result",
            registrations.clone(),
        );
        let revocations = Family::<KindLabels, Counter>::default();
        registry.register(
            "mcpgate_revocations",
            "Revocations by kind",
            revocations.clone(),
        );
        let http_duration =
            Family::<HttpLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram,
            );
        registry.register(
            "mcpgate_http_request_duration_seconds",
            "HTTP request latency by listener, method, route template and status class",
            http_duration.clone(),
        );
        registry.register(
            "mcpgate_build",
            "The token service's version",
            Info::new(BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            }),
        );
        if let Some(pool) = pool {
            registry.register_collector(Box::new(PoolCollector { pool }));
        }
        Self {
            registry,
            grants,
            refresh_reuse,
            sign_ins,
            upstream_refreshes,
            upstream_refresh_duration,
            registrations,
            revocations,
            http_duration,
        }
    }

    /// A token endpoint request of `grant_type` ended with `outcome`.
    pub fn grant(&self, grant_type: GrantType, outcome: Outcome) {
        self.grants
            .get_or_create(&GrantLabels {
                grant_type: grant_type.as_str(),
                result: outcome.as_str(),
            })
            .inc();
    }

    /// A used authorization code or refresh token was presented again (its grant is revoked).
    pub fn reuse_detected(&self, credential: Reuse) {
        let credential = match credential {
            Reuse::AuthorizationCode => "authorization_code",
            Reuse::RefreshToken => "refresh_token",
        };
        self.refresh_reuse
            .get_or_create(&ReuseLabels { credential })
            .inc();
        self.revocation(RevocationKind::Reuse);
    }

    /// A sign-in at `provider` ([`LOCAL_PROVIDER`] for the built-in directory, otherwise the
    /// provider's id from the gateway file) ended with `result`.
    pub fn sign_in(&self, provider: &str, result: SignInResult) {
        self.sign_ins
            .get_or_create(&SignInLabels {
                provider: bounded_label(provider),
                result: result.as_str(),
            })
            .inc();
    }

    /// A refresh of an upstream token ended with `outcome` after `elapsed`.
    pub fn upstream_refresh(&self, outcome: UpstreamRefresh, elapsed: Duration) {
        let labels = OutcomeLabels {
            outcome: outcome.as_str(),
        };
        self.upstream_refreshes.get_or_create(&labels).inc();
        self.upstream_refresh_duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }

    /// A client registration of `kind` ended with `outcome`.
    pub fn registration(&self, kind: RegistrationKind, outcome: Outcome) {
        self.registrations
            .get_or_create(&RegistrationLabels {
                kind: kind.as_str(),
                result: outcome.as_str(),
            })
            .inc();
    }

    /// Something of `kind` was revoked.
    pub fn revocation(&self, kind: RevocationKind) {
        self.revocations
            .get_or_create(&KindLabels {
                kind: kind.as_str(),
            })
            .inc();
    }

    /// A request on `listener` to the route template `route` was answered with `status` after
    /// `elapsed`.
    pub fn http_request(
        &self,
        listener: Listener,
        method: &Method,
        route: &str,
        status: StatusCode,
        elapsed: Duration,
    ) {
        self.http_duration
            .get_or_create(&HttpLabels {
                listener: listener.as_str(),
                method: method_label(method),
                route: route.to_string(),
                status_class: status_class(status),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// The OpenMetrics text of every metric.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

/// A label value from configuration (a provider id): at most 64 characters of `[A-Za-z0-9_.-]`,
/// anything else `other`, so a label can never carry free text.
fn bounded_label(value: &str) -> String {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        value.to_string()
    } else {
        "other".to_string()
    }
}

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}

fn status_class(status: StatusCode) -> &'static str {
    match status.as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// The database pool's gauges, read at scrape time.
#[derive(Debug)]
struct PoolCollector {
    pool: AnyPool,
}

impl Collector for PoolCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let gauges = [
            (
                "mcpgate_db_pool_connections",
                "Open database connections (in use and idle)",
                i64::from(self.pool.size()),
            ),
            (
                "mcpgate_db_pool_idle_connections",
                "Idle database connections",
                i64::try_from(self.pool.num_idle()).unwrap_or(i64::MAX),
            ),
            (
                "mcpgate_db_pool_max_connections",
                "Most database connections the pool opens",
                i64::from(self.pool.options().get_max_connections()),
            ),
        ];
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(value);
            let metric = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
            gauge.encode(metric)?;
        }
        Ok(())
    }
}

/// The value of the sample `name{labels}` in OpenMetrics text (labels in any order; all given
/// must match), for tests.
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (metric, rest) = series.split_once('{').unwrap_or((series, "}"));
        if metric != name {
            return None;
        }
        let body = rest.strip_suffix('}')?;
        let all = labels.iter().all(|(k, v)| {
            let mut wanted = String::new();
            let _ = write!(wanted, "{k}=\"{v}\"");
            body.split(',').any(|pair| pair == wanted)
        });
        all.then(|| value.parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_encode_with_bounded_labels() {
        let m = Metrics::new(None);
        m.grant(GrantType::AuthorizationCode, Outcome::Success);
        m.grant(GrantType::AuthorizationCode, Outcome::Success);
        m.grant(
            GrantType::from_param(Some("password")),
            Outcome::Error("unsupported_grant_type"),
        );
        m.reuse_detected(Reuse::RefreshToken);
        m.sign_in(LOCAL_PROVIDER, SignInResult::Failure);
        m.sign_in("alice@example.com is not a provider", SignInResult::Success);
        m.upstream_refresh(UpstreamRefresh::Refreshed, Duration::from_millis(30));
        m.registration(RegistrationKind::Dynamic, Outcome::Success);
        m.revocation(RevocationKind::AccessToken);
        m.http_request(
            Listener::Internal,
            &Method::POST,
            "/internal/v1/credentials",
            StatusCode::OK,
            Duration::from_millis(3),
        );
        let text = m.encode().expect("encodes");
        let v = |name, labels: &[(&str, &str)]| sample(&text, name, labels);
        assert_eq!(
            v(
                "mcpgate_token_grants_total",
                &[("grant_type", "authorization_code"), ("result", "success")]
            ),
            Some(2.0)
        );
        assert_eq!(
            v(
                "mcpgate_token_grants_total",
                &[
                    ("grant_type", "other"),
                    ("result", "unsupported_grant_type")
                ]
            ),
            Some(1.0)
        );
        assert_eq!(
            v(
                "mcpgate_token_reuse_detections_total",
                &[("credential", "refresh_token")]
            ),
            Some(1.0)
        );
        assert_eq!(
            v("mcpgate_revocations_total", &[("kind", "reuse")]),
            Some(1.0)
        );
        assert_eq!(
            v(
                "mcpgate_sign_ins_total",
                &[("provider", "other"), ("result", "success")]
            ),
            Some(1.0)
        );
        assert_eq!(
            v(
                "mcpgate_upstream_refresh_duration_seconds_count",
                &[("outcome", "refreshed")]
            ),
            Some(1.0)
        );
        assert_eq!(
            v(
                "mcpgate_http_request_duration_seconds_count",
                &[
                    ("listener", "internal"),
                    ("route", "/internal/v1/credentials"),
                    ("status_class", "2xx")
                ]
            ),
            Some(1.0)
        );
        assert_eq!(
            v(
                "mcpgate_build_info",
                &[("version", env!("CARGO_PKG_VERSION"))]
            ),
            Some(1.0)
        );
        assert!(text.ends_with("# EOF\n"));
        assert!(!text.contains("alice"));
    }
}
