//! The gateway file operators write (YAML). Routes follow the shape of Pomerium's MCP docs:
//! `from`, `to`, `name`, `mcp: {server: {}}`, `policy`.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use url::Url;

use crate::filter::{default_port, FilterConfig, FilterRoute, SigningAlgorithm};
use crate::{paths, ConfigError};

/// Name of the Envoy cluster in front of the token service; the filter makes its call-outs to it.
pub const TOKEN_SERVICE_CLUSTER: &str = "mcpgate_token_service";

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    pub authorization_server: AuthorizationServer,
    pub token_service: TokenService,
    #[serde(default)]
    pub envoy: EnvoySettings,
    pub routes: Vec<Route>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizationServer {
    /// Exact issuer identifier: the public origin of the gateway (`https://gw.example.com`), no path.
    pub issuer: String,
    #[serde(default = "defaults::access_token_lifetime", with = "humantime_serde")]
    pub access_token_lifetime: Duration,
    #[serde(default = "defaults::refresh_token_lifetime", with = "humantime_serde")]
    pub refresh_token_lifetime: Duration,
    #[serde(
        default = "defaults::authorization_code_lifetime",
        with = "humantime_serde"
    )]
    pub authorization_code_lifetime: Duration,
    #[serde(default = "defaults::session_lifetime", with = "humantime_serde")]
    pub session_lifetime: Duration,
    /// PKCS#8 PEM private key; created on first start when missing.
    pub signing_key_file: PathBuf,
    #[serde(default = "defaults::algorithm")]
    pub signing_algorithm: SigningAlgorithm,
    /// Clock skew tolerated when checking token times.
    #[serde(default = "defaults::leeway", with = "humantime_serde")]
    pub leeway: Duration,
    /// Pre-registered OAuth clients.
    #[serde(default)]
    pub clients: Vec<StaticClient>,
    #[serde(default)]
    pub dynamic_registration: DynamicRegistration,
    #[serde(default)]
    pub client_id_metadata_documents: ClientIdMetadataDocuments,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenEndpointAuthMethod {
    None,
    ClientSecretBasic,
    ClientSecretPost,
}

impl TokenEndpointAuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::ClientSecretBasic => "client_secret_basic",
            Self::ClientSecretPost => "client_secret_post",
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StaticClient {
    pub client_id: String,
    #[serde(default)]
    pub client_name: Option<String>,
    /// Required unless `token_endpoint_auth_method` is `none`.
    #[serde(default)]
    pub client_secret: Option<String>,
    pub redirect_uris: Vec<String>,
    #[serde(default = "defaults::auth_method")]
    pub token_endpoint_auth_method: TokenEndpointAuthMethod,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DynamicRegistration {
    #[serde(default = "defaults::yes")]
    pub enabled: bool,
    /// Largest registration request body accepted, in bytes.
    #[serde(default = "defaults::registration_max_bytes")]
    pub max_metadata_bytes: usize,
}

impl Default for DynamicRegistration {
    fn default() -> Self {
        Self {
            enabled: true,
            max_metadata_bytes: defaults::registration_max_bytes(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClientIdMetadataDocuments {
    #[serde(default = "defaults::yes")]
    pub enabled: bool,
    /// Allow documents on loopback and private addresses. For tests only: it opens an SSRF path.
    #[serde(default)]
    pub allow_private_addresses: bool,
    /// Extra PEM root certificates trusted when fetching documents (a test CA).
    #[serde(default)]
    pub extra_root_certificates: Vec<PathBuf>,
    #[serde(default = "defaults::metadata_document_max_bytes")]
    pub max_bytes: usize,
    #[serde(
        default = "defaults::metadata_document_timeout",
        with = "humantime_serde"
    )]
    pub fetch_timeout: Duration,
    /// Cache lifetime when the response carries no caching headers.
    #[serde(
        default = "defaults::metadata_document_cache",
        with = "humantime_serde"
    )]
    pub default_cache_lifetime: Duration,
    /// Upper bound on any cache lifetime a document's headers ask for.
    #[serde(
        default = "defaults::metadata_document_cache_max",
        with = "humantime_serde"
    )]
    pub max_cache_lifetime: Duration,
}

impl Default for ClientIdMetadataDocuments {
    fn default() -> Self {
        Self {
            enabled: true,
            allow_private_addresses: false,
            extra_root_certificates: vec![],
            max_bytes: defaults::metadata_document_max_bytes(),
            fetch_timeout: defaults::metadata_document_timeout(),
            default_cache_lifetime: defaults::metadata_document_cache(),
            max_cache_lifetime: defaults::metadata_document_cache_max(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TokenService {
    /// Where the token service listens; Envoy's `mcpgate_token_service` cluster points here.
    pub listen: SocketAddr,
    /// `sqlite://path?mode=rwc` or `postgres://…`.
    pub database_url: String,
    /// Built-in user directory (YAML with argon2id hashes); see `mcpgate-token-service user add`.
    pub users_file: PathBuf,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EnvoySettings {
    /// Public listener.
    #[serde(default = "defaults::envoy_listen")]
    pub listen: SocketAddr,
    /// Admin interface (stats); keep it on loopback.
    #[serde(default = "defaults::envoy_admin")]
    pub admin: SocketAddr,
    /// The filter module the bootstrap loads.
    #[serde(default = "defaults::wasm_module")]
    pub wasm_module: PathBuf,
    /// How often the filter refreshes signing keys.
    #[serde(default = "defaults::jwks_refresh", with = "humantime_serde")]
    pub jwks_refresh: Duration,
    /// `host:port` at which Envoy reaches the token service, when it is not `token_service.listen`
    /// (containers, another machine).
    #[serde(default)]
    pub token_service_address: Option<String>,
}

impl Default for EnvoySettings {
    fn default() -> Self {
        Self {
            listen: defaults::envoy_listen(),
            admin: defaults::envoy_admin(),
            wasm_module: defaults::wasm_module(),
            jwks_refresh: defaults::jwks_refresh(),
            token_service_address: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Public URL: scheme, host, optional port and optional path prefix.
    pub from: String,
    /// Upstream URL; its path replaces the `from` path prefix.
    pub to: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    pub mcp: Mcp,
    /// Access policy; evaluated by the policy engine.
    #[serde(default)]
    pub policy: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Mcp {
    #[serde(default)]
    pub server: Option<McpServer>,
    #[serde(default)]
    pub client: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct McpServer {
    /// Scopes advertised in the 401 challenge and the protected-resource metadata.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Let `/authorize` requests without `resource` (older clients) default to this route.
    #[serde(default)]
    pub default_resource: bool,
    /// Largest MCP request body accepted, in bytes (default 1 MiB); larger ones get 413.
    #[serde(default = "defaults::max_request_bytes")]
    pub max_request_bytes: usize,
    #[serde(default)]
    pub audit: AuditSettings,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSettings {
    /// Tool-argument keys (`password`) or JSON paths (`$.auth.token`) replaced by `"[redacted]"`.
    #[serde(default)]
    pub redact: Vec<String>,
    /// Serialized arguments in an audit record are cut at this many bytes.
    #[serde(default = "defaults::audit_max_argument_bytes")]
    pub max_argument_bytes: usize,
}

impl Default for AuditSettings {
    fn default() -> Self {
        Self {
            redact: vec![],
            max_argument_bytes: defaults::audit_max_argument_bytes(),
        }
    }
}

/// A server route with everything derived from its URLs, computed once at load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerRoute {
    pub index: usize,
    pub name: String,
    pub description: Option<String>,
    pub scheme: String,
    pub host: String,
    pub port: u16,
    /// `host` or `host:port` as clients send it (default port omitted).
    pub authority: String,
    pub path_prefix: String,
    /// Canonical resource URL (the `aud` of its tokens).
    pub resource: String,
    pub resource_metadata_url: String,
    pub upstream: Upstream,
    pub scopes: Vec<String>,
    pub default_resource: bool,
    pub policy: Option<serde_json::Value>,
    pub max_request_bytes: usize,
    pub audit: AuditSettings,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub scheme: String,
    pub host: String,
    pub port: u16,
    pub path: String,
}

impl GatewayConfig {
    /// Read, parse and validate a gateway file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new("", format!("cannot read {}: {e}", path.display())))?;
        let mut config = Self::from_yaml(&text)?;
        config.resolve_paths(path.parent().unwrap_or(Path::new(".")));
        Ok(config)
    }

    /// Parse and validate YAML text. Unknown fields are errors, so a typo never silently disables
    /// a setting.
    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        let de = serde_yaml_ng::Deserializer::from_str(text);
        let config: GatewayConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            let field = e.path().to_string();
            let field = if field == "." { String::new() } else { field };
            ConfigError::new(field, e.into_inner().to_string())
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Relative file paths are relative to the config file, not to wherever a process started.
    fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.authorization_server.signing_key_file);
        fix(&mut self.token_service.users_file);
        fix(&mut self.envoy.wasm_module);
        for p in &mut self
            .authorization_server
            .client_id_metadata_documents
            .extra_root_certificates
        {
            fix(p);
        }
        if let Some(rest) = self.token_service.database_url.strip_prefix("sqlite://") {
            if !rest.starts_with('/') && !rest.starts_with(":memory:") {
                self.token_service.database_url = format!("sqlite://{}", base.join(rest).display());
            }
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let a = &self.authorization_server;
        validate_issuer(&a.issuer)?;
        positive(
            a.access_token_lifetime,
            "authorization_server.access_token_lifetime",
        )?;
        positive(
            a.refresh_token_lifetime,
            "authorization_server.refresh_token_lifetime",
        )?;
        positive(
            a.authorization_code_lifetime,
            "authorization_server.authorization_code_lifetime",
        )?;
        positive(a.session_lifetime, "authorization_server.session_lifetime")?;
        let mut client_ids = HashSet::new();
        for (i, c) in a.clients.iter().enumerate() {
            let field = |f: &str| format!("authorization_server.clients[{i}].{f}");
            if c.client_id.is_empty() || c.client_id.len() > 255 {
                return Err(ConfigError::new(
                    field("client_id"),
                    "must be 1 to 255 characters",
                ));
            }
            if c.client_id.starts_with("https://") || c.client_id.starts_with("http://") {
                return Err(ConfigError::new(
                    field("client_id"),
                    "must not be a URL: URL client ids are client ID metadata documents",
                ));
            }
            if !client_ids.insert(&c.client_id) {
                return Err(ConfigError::new(
                    field("client_id"),
                    "is used by another client",
                ));
            }
            match (c.token_endpoint_auth_method, &c.client_secret) {
                (TokenEndpointAuthMethod::None, Some(_)) => {
                    return Err(ConfigError::new(
                        field("client_secret"),
                        "must be absent when token_endpoint_auth_method is none",
                    ))
                }
                (TokenEndpointAuthMethod::None, None) => {}
                (_, None) => {
                    return Err(ConfigError::new(
                        field("client_secret"),
                        "is required for client_secret_basic and client_secret_post",
                    ))
                }
                (_, Some(s)) if s.len() < 16 => {
                    return Err(ConfigError::new(
                        field("client_secret"),
                        "must be at least 16 characters",
                    ))
                }
                _ => {}
            }
            if c.redirect_uris.is_empty() {
                return Err(ConfigError::new(
                    field("redirect_uris"),
                    "must list at least one URI",
                ));
            }
            for (j, uri) in c.redirect_uris.iter().enumerate() {
                validate_redirect_uri(uri).map_err(|reason| {
                    ConfigError::new(field(&format!("redirect_uris[{j}]")), reason)
                })?;
            }
        }
        if self
            .authorization_server
            .dynamic_registration
            .max_metadata_bytes
            < 512
        {
            return Err(ConfigError::new(
                "authorization_server.dynamic_registration.max_metadata_bytes",
                "must be at least 512",
            ));
        }
        let cimd = &a.client_id_metadata_documents;
        let cimd_field = "authorization_server.client_id_metadata_documents";
        if cimd.max_bytes < 256 {
            return Err(ConfigError::new(
                format!("{cimd_field}.max_bytes"),
                "must be at least 256",
            ));
        }
        positive(cimd.fetch_timeout, &format!("{cimd_field}.fetch_timeout"))?;
        positive(self.envoy.jwks_refresh, "envoy.jwks_refresh")?;
        if let Some(addr) = &self.envoy.token_service_address {
            let port_ok = addr
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
            if !port_ok {
                return Err(ConfigError::new(
                    "envoy.token_service_address",
                    "must be host:port",
                ));
            }
        }
        if self.token_service.database_url.is_empty() {
            return Err(ConfigError::new(
                "token_service.database_url",
                "must not be empty",
            ));
        }
        if !(self.token_service.database_url.starts_with("sqlite:")
            || self.token_service.database_url.starts_with("postgres://")
            || self.token_service.database_url.starts_with("postgresql://"))
        {
            return Err(ConfigError::new(
                "token_service.database_url",
                "must start with sqlite:, postgres:// or postgresql://",
            ));
        }
        if self.routes.is_empty() {
            return Err(ConfigError::new(
                "routes",
                "must declare at least one route",
            ));
        }
        let routes = self.server_routes()?;
        let mut seen = HashSet::new();
        let mut names = HashSet::new();
        for r in &routes {
            if !seen.insert((r.host.clone(), r.port, r.path_prefix.clone())) {
                return Err(ConfigError::new(
                    format!("routes[{}].from", r.index),
                    "another route already serves this host and path",
                ));
            }
            if !names.insert(r.name.clone()) {
                return Err(ConfigError::new(
                    format!("routes[{}].name", r.index),
                    format!("'{}' is used by another route", r.name),
                ));
            }
        }
        for r in &routes {
            crate::filter::compile_policy(
                r.policy.as_ref(),
                &format!("routes[{}].policy", r.index),
            )?;
            if r.max_request_bytes == 0 {
                return Err(ConfigError::new(
                    format!("routes[{}].mcp.server.max_request_bytes", r.index),
                    "must be at least 1",
                ));
            }
        }
        let mut default_hosts = HashSet::new();
        for r in routes.iter().filter(|r| r.default_resource) {
            if !default_hosts.insert(r.authority.clone()) {
                return Err(ConfigError::new(
                    format!("routes[{}].mcp.server.default_resource", r.index),
                    "only one route per host may be the default resource",
                ));
            }
        }
        Ok(())
    }

    /// Every server route with its derived URLs. Errors name the route's field.
    pub fn server_routes(&self) -> Result<Vec<ServerRoute>, ConfigError> {
        let mut out = Vec::new();
        for (i, route) in self.routes.iter().enumerate() {
            let field = |f: &str| format!("routes[{i}].{f}");
            let server = match (&route.mcp.server, &route.mcp.client) {
                (Some(server), None) => server,
                (None, Some(_)) => {
                    return Err(ConfigError::new(
                        field("mcp.client"),
                        "client routes are not supported by this version yet",
                    ))
                }
                _ => {
                    return Err(ConfigError::new(
                        field("mcp"),
                        "must set exactly one of server or client",
                    ))
                }
            };
            let from = Url::parse(&route.from)
                .map_err(|e| ConfigError::new(field("from"), e.to_string()))?;
            let (scheme, host, port) =
                origin_parts(&from).map_err(|r| ConfigError::new(field("from"), r))?;
            if from.query().is_some() || from.fragment().is_some() {
                return Err(ConfigError::new(
                    field("from"),
                    "must not have a query or fragment",
                ));
            }
            if !from.username().is_empty() || from.password().is_some() {
                return Err(ConfigError::new(
                    field("from"),
                    "must not carry user information",
                ));
            }
            let path_prefix = from.path().trim_end_matches('/').to_string();
            if paths::is_reserved(&path_prefix) && !path_prefix.is_empty() {
                return Err(ConfigError::new(
                    field("from"),
                    "path is reserved for the gateway (/.well-known, /.mcpgate)",
                ));
            }
            if path_prefix.contains("//") || path_prefix.split('/').any(|s| s == "." || s == "..") {
                return Err(ConfigError::new(field("from"), "path must be normalized"));
            }
            let to =
                Url::parse(&route.to).map_err(|e| ConfigError::new(field("to"), e.to_string()))?;
            let (up_scheme, up_host, up_port) =
                origin_parts(&to).map_err(|r| ConfigError::new(field("to"), r))?;
            if to.query().is_some() || to.fragment().is_some() {
                return Err(ConfigError::new(
                    field("to"),
                    "must not have a query or fragment",
                ));
            }
            let authority = if port == default_port(&scheme) {
                host.clone()
            } else {
                format!("{host}:{port}")
            };
            let origin = format!("{scheme}://{authority}");
            let name = match &route.name {
                Some(n) if n.trim().is_empty() => {
                    return Err(ConfigError::new(field("name"), "must not be blank"))
                }
                Some(n) => n.clone(),
                None => {
                    let tail = path_prefix.trim_start_matches('/');
                    if tail.is_empty() {
                        authority.clone()
                    } else {
                        format!("{authority}/{tail}")
                    }
                }
            };
            for (j, scope) in server.scopes.iter().enumerate() {
                if scope.is_empty()
                    || !scope
                        .chars()
                        .all(|c| c.is_ascii_graphic() && c != '"' && c != '\\')
                {
                    return Err(ConfigError::new(
                        field(&format!("mcp.server.scopes[{j}]")),
                        "must be a non-empty scope token (printable ASCII, no quotes or backslashes)",
                    ));
                }
            }
            out.push(ServerRoute {
                index: i,
                name,
                description: route.description.clone(),
                resource: format!("{origin}{path_prefix}"),
                resource_metadata_url: format!(
                    "{origin}{}{path_prefix}",
                    paths::PROTECTED_RESOURCE_METADATA
                ),
                scheme,
                host,
                port,
                authority,
                path_prefix,
                upstream: Upstream {
                    scheme: up_scheme,
                    host: up_host,
                    port: up_port,
                    path: to.path().trim_end_matches('/').to_string(),
                },
                scopes: server.scopes.clone(),
                default_resource: server.default_resource,
                policy: route.policy.clone(),
                max_request_bytes: server.max_request_bytes,
                audit: server.audit.clone(),
            });
        }
        Ok(out)
    }

    /// Where Envoy reaches the token service (`host:port`).
    pub fn token_service_address(&self) -> String {
        self.envoy
            .token_service_address
            .clone()
            .unwrap_or_else(|| self.token_service.listen.to_string())
    }

    /// The projection handed to the filter.
    pub fn filter_config(&self) -> Result<FilterConfig, ConfigError> {
        let routes = self
            .server_routes()?
            .into_iter()
            .map(|r| FilterRoute {
                name: r.name,
                scheme: r.scheme,
                host: r.host,
                port: r.port,
                path_prefix: r.path_prefix,
                resource: r.resource,
                resource_metadata_url: r.resource_metadata_url,
                scopes: r.scopes,
                policy: r.policy,
                max_request_bytes: r.max_request_bytes,
                audit_redact: r.audit.redact,
                audit_max_argument_bytes: r.audit.max_argument_bytes,
            })
            .collect();
        Ok(FilterConfig {
            issuer: self.authorization_server.issuer.clone(),
            algorithm: self.authorization_server.signing_algorithm,
            token_service_cluster: TOKEN_SERVICE_CLUSTER.to_string(),
            token_service_authority: self.token_service_address(),
            jwks_refresh_seconds: self.envoy.jwks_refresh.as_secs().max(1),
            leeway_seconds: self.authorization_server.leeway.as_secs(),
            routes,
        })
    }
}

/// Canonical form of a resource URL as a client may send it: lower-case scheme and host, default
/// port dropped, no trailing slash, no fragment. Returns `None` for anything that is not an
/// absolute http(s) URL without a query.
pub fn canonical_resource(resource: &str) -> Option<String> {
    let url = Url::parse(resource).ok()?;
    let (scheme, host, port) = origin_parts(&url).ok()?;
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return None;
    }
    let authority = if port == default_port(&scheme) {
        host
    } else {
        format!("{host}:{port}")
    };
    Some(format!(
        "{scheme}://{authority}{}",
        url.path().trim_end_matches('/')
    ))
}

fn origin_parts(url: &Url) -> Result<(String, String, u16), String> {
    let scheme = url.scheme().to_string();
    if scheme != "http" && scheme != "https" {
        return Err("scheme must be http or https".into());
    }
    let host = match url.host() {
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        Some(h) => h.to_string().to_ascii_lowercase(),
        None => return Err("must name a host".into()),
    };
    let port = url
        .port_or_known_default()
        .unwrap_or_else(|| default_port(&scheme));
    Ok((scheme, host, port))
}

fn validate_issuer(issuer: &str) -> Result<(), ConfigError> {
    const FIELD: &str = "authorization_server.issuer";
    let url = Url::parse(issuer).map_err(|e| ConfigError::new(FIELD, e.to_string()))?;
    let (scheme, host, _) = origin_parts(&url).map_err(|r| ConfigError::new(FIELD, r))?;
    if scheme == "http" && !is_loopback_host(&host) {
        return Err(ConfigError::new(
            FIELD,
            "must use https (http is allowed for loopback hosts only)",
        ));
    }
    if url.path() != "/" || issuer.ends_with('/') {
        return Err(ConfigError::new(
            FIELD,
            "must be an origin without a path or trailing slash",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(ConfigError::new(
            FIELD,
            "must not have a query, fragment or user information",
        ));
    }
    Ok(())
}

/// Redirect URIs must be https, or http on a loopback host (RFC 8252), and carry no fragment.
pub fn validate_redirect_uri(uri: &str) -> Result<(), String> {
    let url = Url::parse(uri).map_err(|e| format!("not an absolute URI: {e}"))?;
    if url.fragment().is_some() {
        return Err("must not contain a fragment".into());
    }
    match url.scheme() {
        "https" => Ok(()),
        "http" => match url.host_str() {
            Some(h) if is_loopback_host(h.trim_start_matches('[').trim_end_matches(']')) => Ok(()),
            _ => {
                Err("http is allowed for loopback hosts only (localhost, 127.0.0.1, [::1])".into())
            }
        },
        other => Err(format!(
            "scheme {other} is not allowed; use https or a loopback http URI"
        )),
    }
}

pub fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

fn positive(d: Duration, field: &str) -> Result<(), ConfigError> {
    if d.is_zero() {
        Err(ConfigError::new(field, "must be longer than zero"))
    } else {
        Ok(())
    }
}

mod defaults {
    use super::*;

    pub fn access_token_lifetime() -> Duration {
        Duration::from_secs(300)
    }
    pub fn refresh_token_lifetime() -> Duration {
        Duration::from_secs(30 * 24 * 3600)
    }
    pub fn authorization_code_lifetime() -> Duration {
        Duration::from_secs(60)
    }
    pub fn session_lifetime() -> Duration {
        Duration::from_secs(12 * 3600)
    }
    pub fn leeway() -> Duration {
        Duration::from_secs(5)
    }
    pub fn algorithm() -> SigningAlgorithm {
        SigningAlgorithm::EdDSA
    }
    pub fn auth_method() -> TokenEndpointAuthMethod {
        TokenEndpointAuthMethod::ClientSecretBasic
    }
    pub fn yes() -> bool {
        true
    }
    pub fn max_request_bytes() -> usize {
        crate::filter::DEFAULT_MAX_REQUEST_BYTES
    }
    pub fn audit_max_argument_bytes() -> usize {
        crate::filter::DEFAULT_AUDIT_MAX_ARGUMENT_BYTES
    }
    pub fn registration_max_bytes() -> usize {
        16 * 1024
    }
    pub fn metadata_document_max_bytes() -> usize {
        5 * 1024
    }
    pub fn metadata_document_timeout() -> Duration {
        Duration::from_secs(5)
    }
    pub fn metadata_document_cache() -> Duration {
        Duration::from_secs(300)
    }
    pub fn metadata_document_cache_max() -> Duration {
        Duration::from_secs(24 * 3600)
    }
    pub fn envoy_listen() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 18080))
    }
    pub fn envoy_admin() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 18090))
    }
    pub fn wasm_module() -> PathBuf {
        PathBuf::from("target/wasm32-wasip1/release/mcpgate_filter.wasm")
    }
    pub fn jwks_refresh() -> Duration {
        Duration::from_secs(60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
authorization_server:
  issuer: http://localhost:18080
  signing_key_file: key.pem
token_service:
  listen: 127.0.0.1:18081
  database_url: sqlite://data/mcpgate.db?mode=rwc
  users_file: users.yaml
routes:
  - from: http://localhost:18080/everything
    to: http://127.0.0.1:3001/mcp
    name: Everything
    mcp:
      server:
        scopes: [mcp:tools]
    policy:
      allow:
        and:
          - domain:
              is: company.com
  - from: http://localhost:18080/second/
    to: http://127.0.0.1:3002/mcp
    mcp: {server: {}}
"#;

    fn err(yaml: &str) -> ConfigError {
        GatewayConfig::from_yaml(yaml).expect_err("config must be rejected")
    }

    #[test]
    fn seed_shaped_config_loads_and_derives_urls() {
        let config = GatewayConfig::from_yaml(BASE).expect("valid");
        let routes = config.server_routes().expect("routes");
        assert_eq!(routes[0].resource, "http://localhost:18080/everything");
        assert_eq!(
            routes[0].resource_metadata_url,
            "http://localhost:18080/.well-known/oauth-protected-resource/everything"
        );
        assert_eq!(routes[0].upstream.path, "/mcp");
        assert_eq!(routes[1].name, "localhost:18080/second");
        assert_eq!(routes[1].path_prefix, "/second");
        let filter = config.filter_config().expect("projection");
        assert_eq!(filter.routes.len(), 2);
        assert_eq!(filter.routes[0].scopes, vec!["mcp:tools".to_string()]);
        assert!(filter
            .match_route("localhost:18080", "/everything")
            .is_some());
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(
            err(&BASE.replace(
                "issuer: http://localhost:18080",
                "issuer: http://example.com"
            ))
            .field,
            "authorization_server.issuer"
        );
        assert_eq!(
            err(&BASE.replace(
                "issuer: http://localhost:18080",
                "issuer: http://localhost:18080/x"
            ))
            .field,
            "authorization_server.issuer"
        );
        assert_eq!(
            err(&BASE.replace("to: http://127.0.0.1:3001/mcp", "to: ftp://x")).field,
            "routes[0].to"
        );
        assert_eq!(
            err(&BASE.replace("/second/", "/everything")).field,
            "routes[1].from"
        );
        assert_eq!(
            err(&BASE.replace("/second/", "/.well-known/x")).field,
            "routes[1].from"
        );
        assert_eq!(
            err(&BASE.replace("scopes: [mcp:tools]", "scopes: ['a b']")).field,
            "routes[0].mcp.server.scopes[0]"
        );
        let unknown = err(&BASE.replace("    name: Everything", "    nmae: Everything"));
        assert!(unknown.field.starts_with("routes[0]"), "{unknown}");
        assert!(unknown.reason.contains("nmae"), "{unknown}");
        let bad_duration = err(&BASE.replace(
            "  signing_key_file: key.pem",
            "  signing_key_file: key.pem\n  access_token_lifetime: soon",
        ));
        assert_eq!(
            bad_duration.field,
            "authorization_server.access_token_lifetime"
        );
        assert_eq!(
            err(&BASE.replace("mcp: {server: {}}", "mcp: {}")).field,
            "routes[1].mcp"
        );
        assert_eq!(
            err(&BASE.replace("sqlite://data", "mysql://data")).field,
            "token_service.database_url"
        );
    }

    #[test]
    fn static_clients_are_checked() {
        let with_client = |client: &str| {
            BASE.replace(
                "  signing_key_file: key.pem",
                &format!("  signing_key_file: key.pem\n  clients:\n{client}"),
            )
        };
        let ok = with_client("    - client_id: cli\n      client_secret: 0123456789abcdef\n      redirect_uris: [http://127.0.0.1/cb]\n");
        GatewayConfig::from_yaml(&ok).expect("valid client");
        let missing_secret =
            with_client("    - client_id: cli\n      redirect_uris: [https://a.example/cb]\n");
        assert_eq!(
            err(&missing_secret).field,
            "authorization_server.clients[0].client_secret"
        );
        let bad_uri = with_client(
            "    - client_id: cli\n      token_endpoint_auth_method: none\n      redirect_uris: [http://evil.example/cb]\n",
        );
        assert_eq!(
            err(&bad_uri).field,
            "authorization_server.clients[0].redirect_uris[0]"
        );
    }

    #[test]
    fn redirect_uri_rules() {
        assert!(validate_redirect_uri("https://app.example/cb").is_ok());
        assert!(validate_redirect_uri("http://127.0.0.1:5555/cb").is_ok());
        assert!(validate_redirect_uri("http://[::1]/cb").is_ok());
        assert!(validate_redirect_uri("http://localhost/cb").is_ok());
        assert!(validate_redirect_uri("http://app.example/cb").is_err());
        assert!(validate_redirect_uri("https://app.example/cb#x").is_err());
        assert!(validate_redirect_uri("javascript:alert(1)").is_err());
        assert!(validate_redirect_uri("/relative").is_err());
    }

    #[test]
    fn canonical_resource_forms() {
        assert_eq!(
            canonical_resource("http://LOCALHOST:18080/everything/").as_deref(),
            Some("http://localhost:18080/everything")
        );
        assert_eq!(
            canonical_resource("https://a.example:443/").as_deref(),
            Some("https://a.example")
        );
        assert_eq!(canonical_resource("https://a.example/x?y=1"), None);
        assert_eq!(canonical_resource("urn:x"), None);
    }
}
