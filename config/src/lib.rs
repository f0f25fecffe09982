//! The mcpgate configuration model, shared by every part of the gateway.
//!
//! Operators write one YAML file ([`gateway::GatewayConfig`], feature `gateway`). The token
//! service reads it directly; [`render`] turns it into what each deployment target needs (an
//! Envoy bootstrap and xDS files, Istio or Envoy Gateway manifests), each handing the filter a
//! [`filter::FilterConfig`] projection: only what the data path needs, with no secrets in it.
//! Both are validated once, at load, and every error names the field it is about.

#![recursion_limit = "256"]

pub mod error;
pub mod filter;
#[cfg(feature = "gateway")]
pub mod gateway;
#[cfg(feature = "gateway")]
pub mod identity;
pub mod paths;
#[cfg(feature = "gateway")]
pub mod render;
#[cfg(feature = "gateway")]
pub mod telemetry;

/// The `envoy` target under its earlier path (`mcpgate_config::envoy::render_bootstrap`).
#[cfg(feature = "gateway")]
pub use render::envoy;

pub use error::ConfigError;
pub use filter::{FilterClientRoute, FilterConfig, FilterRoute, HeaderMode};
#[cfg(feature = "gateway")]
pub use gateway::GatewayConfig;
