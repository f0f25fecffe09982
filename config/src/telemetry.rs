//! The `telemetry` block of the gateway file: the token service's Prometheus metrics and the
//! OpenTelemetry traces of the token service and of mcpgate's own Envoy.
//!
//! ```yaml
//! telemetry:
//!   metrics: true                      # /metrics on the token service's internal listener
//!   tracing:
//!     otlp_endpoint: http://127.0.0.1:4318   # OTLP/HTTP base URL; traces go to <it>/v1/traces
//!     service_name: mcpgate-token-service    # default
//!     envoy_service_name: mcpgate-envoy      # default
//!     sampling: 100%                         # a percentage, 0% to 100% (default 100%)
//! ```

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use url::Url;

use crate::filter::default_port;
use crate::gateway::Upstream;
use crate::ConfigError;

/// Where OTLP/HTTP receivers take traces, below the collector's base URL.
pub const OTLP_TRACES_PATH: &str = "/v1/traces";
/// The Envoy cluster of the trace collector (mcpgate's own Envoy).
pub const OTLP_CLUSTER: &str = "mcpgate_otlp";

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Telemetry {
    /// Serve Prometheus metrics at `/metrics` on the token service's internal listener.
    #[serde(default = "defaults::yes")]
    pub metrics: bool,
    /// Export traces over OTLP/HTTP; no tracing when absent.
    #[serde(default)]
    pub tracing: Option<Tracing>,
}

impl Default for Telemetry {
    fn default() -> Self {
        Self {
            metrics: true,
            tracing: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Tracing {
    /// Base URL of an OTLP/HTTP collector (`http://otel-collector:4318`): http or https, a host,
    /// no path. Traces go to `<otlp_endpoint>/v1/traces`.
    pub otlp_endpoint: String,
    /// `service.name` of the token service's spans.
    #[serde(default = "defaults::service_name")]
    pub service_name: String,
    /// `service.name` of the spans of mcpgate's own Envoy.
    #[serde(default = "defaults::envoy_service_name")]
    pub envoy_service_name: String,
    /// Share of requests traced when no sampled parent decides it.
    #[serde(default)]
    pub sampling: Sampling,
}

/// A sampling rate written as a percentage (`100%`, `10%`, `0.5%`), so a bare `1` is never read
/// as "one percent" by one reader and "everything" by another.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling(f64);

impl Sampling {
    /// `percent` must be within 0 to 100.
    pub fn from_percent(percent: f64) -> Result<Self, String> {
        if percent.is_finite() && (0.0..=100.0).contains(&percent) {
            Ok(Self(percent))
        } else {
            Err(format!(
                "must be a percentage from 0% to 100%, not {percent}%"
            ))
        }
    }

    /// 0 to 100, as Envoy's `random_sampling` takes it.
    pub fn percent(self) -> f64 {
        self.0
    }

    /// 0.0 to 1.0, as OpenTelemetry's `TraceIdRatioBased` sampler takes it.
    pub fn ratio(self) -> f64 {
        self.0 / 100.0
    }
}

impl Default for Sampling {
    fn default() -> Self {
        Self(100.0)
    }
}

impl fmt::Display for Sampling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%", self.0)
    }
}

impl std::str::FromStr for Sampling {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let number = s.trim().strip_suffix('%').ok_or_else(|| {
            format!("'{s}' is not a percentage: write it with a % sign (100%, 10%, 0.5%)")
        })?;
        let percent: f64 = number
            .trim()
            .parse()
            .map_err(|_| format!("'{s}' is not a percentage such as 100%, 10% or 0.5%"))?;
        Self::from_percent(percent)
    }
}

impl Serialize for Sampling {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Sampling {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Sampling;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a percentage with a % sign, such as 100%, 10% or 0.5%")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Sampling, E> {
                v.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

/// The collector's base URL, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtlpEndpoint {
    pub scheme: String,
    pub host: String,
    pub port: u16,
}

impl Tracing {
    /// The collector, as `otlp_endpoint` names it. The error names the field.
    pub fn collector(&self) -> Result<OtlpEndpoint, ConfigError> {
        const FIELD: &str = "telemetry.tracing.otlp_endpoint";
        let url = Url::parse(&self.otlp_endpoint).map_err(|e| {
            ConfigError::new(
                FIELD,
                format!("not an absolute URL ({e}): write the collector's OTLP/HTTP base URL, such as http://127.0.0.1:4318"),
            )
        })?;
        let scheme = url.scheme().to_string();
        if scheme != "http" && scheme != "https" {
            return Err(ConfigError::new(FIELD, "scheme must be http or https"));
        }
        let host = match url.host() {
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            Some(h) => h.to_string().to_ascii_lowercase(),
            None => return Err(ConfigError::new(FIELD, "must name a host")),
        };
        if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
            return Err(ConfigError::new(
                FIELD,
                format!(
                    "must be the collector's base URL without a path, query or fragment (traces \
                     go to <otlp_endpoint>{OTLP_TRACES_PATH})"
                ),
            ));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(ConfigError::new(FIELD, "must not carry user information"));
        }
        let port = url.port().unwrap_or_else(|| default_port(&scheme));
        Ok(OtlpEndpoint { scheme, host, port })
    }

    /// `<otlp_endpoint>/v1/traces`.
    pub fn traces_url(&self) -> String {
        format!(
            "{}{OTLP_TRACES_PATH}",
            self.otlp_endpoint.trim_end_matches('/')
        )
    }

    /// The collector as an upstream of mcpgate's own Envoy (cluster [`OTLP_CLUSTER`]).
    pub fn collector_upstream(&self) -> Result<Upstream, ConfigError> {
        let c = self.collector()?;
        Ok(Upstream {
            scheme: c.scheme,
            host: c.host,
            port: c.port,
            path: String::new(),
        })
    }
}

impl Telemetry {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let Some(t) = &self.tracing else {
            return Ok(());
        };
        t.collector()?;
        for (field, name) in [
            ("telemetry.tracing.service_name", &t.service_name),
            (
                "telemetry.tracing.envoy_service_name",
                &t.envoy_service_name,
            ),
        ] {
            if name.trim().is_empty() || name.chars().any(char::is_control) {
                return Err(ConfigError::new(
                    field,
                    "must be a non-empty name without control characters",
                ));
            }
        }
        Sampling::from_percent(t.sampling.percent())
            .map_err(|reason| ConfigError::new("telemetry.tracing.sampling", reason))?;
        Ok(())
    }
}

mod defaults {
    pub fn yes() -> bool {
        true
    }
    pub fn service_name() -> String {
        "mcpgate-token-service".into()
    }
    pub fn envoy_service_name() -> String {
        "mcpgate-envoy".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_is_a_percentage() {
        assert_eq!("100%".parse::<Sampling>().map(Sampling::ratio), Ok(1.0));
        assert_eq!("0.5%".parse::<Sampling>().map(Sampling::percent), Ok(0.5));
        assert_eq!("0%".parse::<Sampling>().map(Sampling::percent), Ok(0.0));
        assert!("0.5".parse::<Sampling>().is_err());
        assert!("101%".parse::<Sampling>().is_err());
        assert!("-1%".parse::<Sampling>().is_err());
        assert!("NaN%".parse::<Sampling>().is_err());
        assert_eq!(Sampling::default().to_string(), "100%");
    }

    fn tracing(endpoint: &str) -> Tracing {
        Tracing {
            otlp_endpoint: endpoint.into(),
            service_name: defaults::service_name(),
            envoy_service_name: defaults::envoy_service_name(),
            sampling: Sampling::default(),
        }
    }

    #[test]
    fn collector_urls() {
        let t = tracing("http://otel-collector.observability:4318/");
        assert_eq!(
            t.traces_url(),
            "http://otel-collector.observability:4318/v1/traces"
        );
        let c = t.collector().expect("valid");
        assert_eq!(
            (c.host.as_str(), c.port),
            ("otel-collector.observability", 4318)
        );
        assert_eq!(
            tracing("https://otel.example.com")
                .collector()
                .expect("ok")
                .port,
            443
        );
        for bad in [
            "127.0.0.1:4318",
            "grpc://127.0.0.1:4317",
            "http://127.0.0.1:4318/v1/traces",
            "http://127.0.0.1:4318?x=1",
            "http://user@127.0.0.1:4318",
        ] {
            let e = tracing(bad).collector().expect_err(bad);
            assert_eq!(e.field, "telemetry.tracing.otlp_endpoint", "{bad}");
        }
    }
}
