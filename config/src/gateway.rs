//! The gateway file operators write (YAML). Routes follow the shape of Pomerium's MCP docs:
//! `from`, `to`, `name`, `mcp: {server: {}}`, `policy`.

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use url::Url;

use crate::filter::{default_port, FilterClientRoute, FilterConfig, FilterRoute, SigningAlgorithm};
use crate::telemetry::Telemetry;
use crate::{paths, ConfigError};

/// Name of the Envoy cluster in front of the token service; the filter makes its call-outs to it.
pub const TOKEN_SERVICE_CLUSTER: &str = "mcpgate_token_service";
/// Envoy cluster in front of the token service's internal listener. No route of the public
/// listener points at it: only the filter's call-outs reach it.
pub const TOKEN_SERVICE_INTERNAL_CLUSTER: &str = "mcpgate_token_service_internal";

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    pub authorization_server: AuthorizationServer,
    pub token_service: TokenService,
    #[serde(default)]
    pub envoy: EnvoySettings,
    /// What the Kubernetes targets (`render istio`, `render envoy-gateway`) need.
    #[serde(default)]
    pub kubernetes: Option<KubernetesSettings>,
    /// Metrics and traces (token service and mcpgate's own Envoy).
    #[serde(default)]
    pub telemetry: Telemetry,
    /// How people sign in besides (or instead of) the built-in user directory.
    #[serde(default)]
    pub identity: crate::identity::Identity,
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
    /// RFC 7523 §2.2: a JWT signed with the client's key (registered `jwks` or `jwks_uri`).
    PrivateKeyJwt,
}

impl TokenEndpointAuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::ClientSecretBasic => "client_secret_basic",
            Self::ClientSecretPost => "client_secret_post",
            Self::PrivateKeyJwt => "private_key_jwt",
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
    /// Required when `grant_types` has `authorization_code`.
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    #[serde(default = "defaults::auth_method")]
    pub token_endpoint_auth_method: TokenEndpointAuthMethod,
    /// `private_key_jwt`: where the client publishes its public keys (https) …
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// … or the keys inline (a JWK Set).
    #[serde(default)]
    pub jwks: Option<serde_json::Value>,
    /// What the client may ask the token endpoint for (default: the code flow and refresh).
    #[serde(default = "defaults::client_grant_types")]
    pub grant_types: Vec<String>,
}

/// The JWT-bearer authorization grant (RFC 7523 §2.1), used with an ID-JAG.
pub const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// The grants a client may be registered for.
pub const CLIENT_GRANT_TYPES: [&str; 3] = ["authorization_code", "refresh_token", JWT_BEARER_GRANT];

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
    /// Optional when `identity.oidc` names a provider; both may be enabled.
    #[serde(default)]
    pub users_file: Option<PathBuf>,
    /// The internal API (only the filter calls it). Default: `listen` with the port plus one.
    #[serde(default)]
    pub internal_listen: Option<SocketAddr>,
    /// 32-byte key (base64) that encrypts stored upstream tokens; created on first start.
    /// Required when a route has `upstream_oauth2`.
    #[serde(default)]
    pub upstream_token_key_file: Option<PathBuf>,
    /// How long a request to an upstream OAuth provider (token, discovery) may take.
    #[serde(
        default = "defaults::upstream_request_timeout",
        with = "humantime_serde"
    )]
    pub upstream_request_timeout: Duration,
    /// How long one replica holds the right to refresh a user's upstream token (a lease in the
    /// database). Another replica takes the refresh over when a replica dies holding it, after
    /// this long. Must be longer than `upstream_request_timeout`, so a lease never runs out
    /// while its holder still waits for the provider.
    #[serde(default = "defaults::upstream_refresh_lease", with = "humantime_serde")]
    pub upstream_refresh_lease: Duration,
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
    /// Several replicas of the token service (sharing one PostgreSQL database), instead of
    /// `token_service_address`. Envoy balances over them round robin, health-checks them and
    /// retries a request that could not reach one on another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_service_endpoints: Option<Vec<TokenServiceEndpoint>>,
}

/// One replica of the token service, as Envoy reaches it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TokenServiceEndpoint {
    /// `host:port` of the replica's public listener.
    pub address: String,
    /// `host:port` of the replica's internal listener. Default: `address` with the port plus one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internal_address: Option<String>,
}

/// Where Envoy reaches one token-service replica, both listeners resolved (`host:port`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenServiceAddresses {
    pub public: String,
    pub internal: String,
}

impl Default for EnvoySettings {
    fn default() -> Self {
        Self {
            listen: defaults::envoy_listen(),
            admin: defaults::envoy_admin(),
            wasm_module: defaults::wasm_module(),
            jwks_refresh: defaults::jwks_refresh(),
            token_service_address: None,
            token_service_endpoints: None,
        }
    }
}

/// Where the gateway runs in Kubernetes. Every field has a default except `filter`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesSettings {
    /// Namespace of the token service's Service.
    #[serde(default = "defaults::k8s_namespace")]
    pub namespace: String,
    /// Name of the token service's Service; it selects pods labelled
    /// `app.kubernetes.io/name: <this>`.
    #[serde(default = "defaults::k8s_token_service")]
    pub token_service: String,
    /// The cluster's DNS domain, for Service host names (`<svc>.<ns>.svc.<domain>`).
    #[serde(default = "defaults::cluster_domain")]
    pub cluster_domain: String,
    /// The Gateway API `Gateway` the routes attach to and the filter is applied on.
    #[serde(default)]
    pub gateway: GatewayRef,
    /// The Kubernetes Secret whose key the gateway's proxies get as `MCPGATE_INTERNAL_API_SECRET`
    /// (in the namespace their pods run in).
    #[serde(default)]
    pub internal_api_secret: SecretKeyRef,
    /// Where the mesh fetches the filter module.
    #[serde(default)]
    pub filter: FilterModuleSource,
}

impl Default for KubernetesSettings {
    fn default() -> Self {
        Self {
            namespace: defaults::k8s_namespace(),
            token_service: defaults::k8s_token_service(),
            cluster_domain: defaults::cluster_domain(),
            gateway: GatewayRef::default(),
            internal_api_secret: SecretKeyRef::default(),
            filter: FilterModuleSource::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayRef {
    #[serde(default = "defaults::k8s_gateway")]
    pub name: String,
    /// Default: `kubernetes.namespace`. The rendered routes and policies live here.
    #[serde(default)]
    pub namespace: Option<String>,
    /// The Gateway listener (`sectionName`) the routes attach to; all listeners when absent.
    #[serde(default)]
    pub listener: Option<String>,
}

impl Default for GatewayRef {
    fn default() -> Self {
        Self {
            name: defaults::k8s_gateway(),
            namespace: None,
            listener: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SecretKeyRef {
    #[serde(default = "defaults::k8s_secret_name")]
    pub name: String,
    #[serde(default = "defaults::k8s_secret_key")]
    pub key: String,
}

impl Default for SecretKeyRef {
    fn default() -> Self {
        Self {
            name: defaults::k8s_secret_name(),
            key: defaults::k8s_secret_key(),
        }
    }
}

/// The filter module as the mesh fetches it: an OCI image, or the `.wasm` over HTTP(S).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FilterModuleSource {
    /// OCI reference the image layout was pushed to (`registry.example.com/mcpgate/filter:0.1.0`).
    #[serde(default)]
    pub image: Option<String>,
    /// HTTP(S) URL serving the `.wasm` file itself.
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub pull_policy: Option<PullPolicy>,
    /// Name of a docker-registry Secret (in the gateway's namespace) for a private registry.
    #[serde(default)]
    pub pull_secret: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum PullPolicy {
    IfNotPresent,
    Always,
}

impl PullPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::IfNotPresent => "IfNotPresent",
            Self::Always => "Always",
        }
    }
}

/// A Kubernetes Service port, as a route's `to` names it (`<name>.<namespace>.svc…`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRef {
    pub name: String,
    pub namespace: String,
    pub port: u16,
}

/// Where the filter module comes from, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModuleLocation {
    /// OCI reference without scheme.
    Image(String),
    Url(String),
}

/// The `kubernetes` settings with everything derived from them and the routes, checked once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubernetesTarget {
    pub namespace: String,
    pub cluster_domain: String,
    pub token_service: ServiceRef,
    /// The token service's internal listener, a second port of the same Service.
    pub internal_port: u16,
    pub gateway_name: String,
    pub gateway_namespace: String,
    pub gateway_listener: Option<String>,
    pub internal_api_secret: SecretKeyRef,
    pub module: ModuleLocation,
    pub pull_policy: Option<PullPolicy>,
    pub pull_secret: Option<String>,
    /// The Service behind each route, by route index.
    pub backends: BTreeMap<usize, ServiceRef>,
}

impl KubernetesTarget {
    /// `<service>.<namespace>.svc.<cluster domain>`.
    pub fn service_host(&self, service: &ServiceRef) -> String {
        format!(
            "{}.{}.svc.{}",
            service.name, service.namespace, self.cluster_domain
        )
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
    pub client: Option<McpClient>,
}

/// A client route: an app that acts as an MCP client for its signed-in user. No settings yet;
/// `{}` marks the route.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct McpClient {}

/// The upstream OAuth 2.0 provider whose token (TI) the route's MCP server needs.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamOAuth2 {
    pub client_id: String,
    #[serde(default, skip_serializing)]
    pub client_secret: Option<String>,
    /// Read into `client_secret` at load, so the secret need not sit in the gateway file.
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    #[serde(default)]
    pub scopes: Vec<String>,
    /// The provider's endpoints. Absent: discovered from the MCP server's own protected-resource
    /// and authorization-server metadata (RFC 9728, RFC 8414).
    #[serde(default)]
    pub endpoint: Option<OAuth2Endpoint>,
    /// Extra query parameters on the authorization URL (`prompt: consent`).
    #[serde(default)]
    pub authorization_url_params: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OAuth2Endpoint {
    pub auth_url: String,
    pub token_url: String,
    #[serde(default)]
    pub auth_style: AuthStyle,
}

/// How the client credentials reach the provider's token endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthStyle {
    /// HTTP Basic (RFC 6749 section 2.3.1's preferred form).
    #[default]
    Header,
    /// `client_id` and `client_secret` in the form body.
    Params,
}

/// Authorization parameters the gateway sets itself; `authorization_url_params` may not.
const RESERVED_AUTHORIZATION_PARAMS: [&str; 8] = [
    "client_id",
    "redirect_uri",
    "response_type",
    "state",
    "scope",
    "code_challenge",
    "code_challenge_method",
    "resource",
];

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
    /// The MCP server needs each user's token from this provider (swapped in by the filter).
    #[serde(default)]
    pub upstream_oauth2: Option<UpstreamOAuth2>,
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
    pub upstream_oauth2: Option<UpstreamOAuth2>,
    /// `<resource>/.mcpgate/mcp/connect`: where a browser connects the upstream provider.
    pub connect_url: String,
}

/// A client route with its derived URLs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRoute {
    pub index: usize,
    pub name: String,
    pub description: Option<String>,
    pub scheme: String,
    pub host: String,
    pub port: u16,
    pub authority: String,
    pub path_prefix: String,
    /// Canonical URL: origin plus path prefix.
    pub url: String,
    pub upstream: Upstream,
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
        config.read_secret_files()?;
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
        if let Some(p) = &mut self.token_service.users_file {
            fix(p);
        }
        self.identity.resolve_paths(base);
        fix(&mut self.envoy.wasm_module);
        if let Some(p) = &mut self.token_service.upstream_token_key_file {
            fix(p);
        }
        for route in &mut self.routes {
            if let Some(p) = route
                .mcp
                .server
                .as_mut()
                .and_then(|s| s.upstream_oauth2.as_mut())
                .and_then(|u| u.client_secret_file.as_mut())
            {
                fix(p);
            }
        }
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

    /// Secrets kept in files are read once, at load; the error names the field, never the value.
    fn read_secret_files(&mut self) -> Result<(), ConfigError> {
        self.identity.read_secret_files()?;
        for (i, route) in self.routes.iter_mut().enumerate() {
            let Some(up) = route
                .mcp
                .server
                .as_mut()
                .and_then(|s| s.upstream_oauth2.as_mut())
            else {
                continue;
            };
            if let Some(file) = &up.client_secret_file {
                let field = format!("routes[{i}].mcp.server.upstream_oauth2.client_secret_file");
                let secret = std::fs::read_to_string(file).map_err(|e| {
                    ConfigError::new(&field, format!("cannot read {}: {e}", file.display()))
                })?;
                let secret = secret.trim();
                if secret.is_empty() {
                    return Err(ConfigError::new(
                        field,
                        format!("{} is empty", file.display()),
                    ));
                }
                up.client_secret = Some(secret.to_string());
            }
        }
        Ok(())
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
        self.identity
            .validate(self.token_service.users_file.is_some())?;
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
                (TokenEndpointAuthMethod::PrivateKeyJwt, Some(_)) => {
                    return Err(ConfigError::new(
                        field("client_secret"),
                        "must be absent when token_endpoint_auth_method is private_key_jwt",
                    ))
                }
                (TokenEndpointAuthMethod::PrivateKeyJwt, None) => {
                    crate::identity::validate_key_source(
                        c.jwks_uri.as_deref(),
                        c.jwks.as_ref(),
                        &field,
                    )?;
                }
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
            if c.token_endpoint_auth_method != TokenEndpointAuthMethod::PrivateKeyJwt
                && (c.jwks_uri.is_some() || c.jwks.is_some())
            {
                let f = if c.jwks.is_some() { "jwks" } else { "jwks_uri" };
                return Err(ConfigError::new(
                    field(f),
                    "is only used with token_endpoint_auth_method private_key_jwt",
                ));
            }
            for (j, g) in c.grant_types.iter().enumerate() {
                if !CLIENT_GRANT_TYPES.contains(&g.as_str()) {
                    return Err(ConfigError::new(
                        field(&format!("grant_types[{j}]")),
                        format!("must be one of {}", CLIENT_GRANT_TYPES.join(", ")),
                    ));
                }
            }
            let code_flow = c.grant_types.iter().any(|g| g == "authorization_code");
            if !code_flow && !c.grant_types.iter().any(|g| g == JWT_BEARER_GRANT) {
                return Err(ConfigError::new(
                    field("grant_types"),
                    format!("must include authorization_code or {JWT_BEARER_GRANT}"),
                ));
            }
            if !code_flow && c.token_endpoint_auth_method == TokenEndpointAuthMethod::None {
                return Err(ConfigError::new(
                    field("token_endpoint_auth_method"),
                    "must authenticate the client (a secret or private_key_jwt) for the JWT-bearer grant",
                ));
            }
            if c.redirect_uris.is_empty() && code_flow {
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
        self.validate_token_service_endpoints()?;
        self.validate_upstream_timing()?;
        self.telemetry.validate()?;
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
        let client_routes = self.client_routes()?;
        let mut seen = HashSet::new();
        let mut names = HashSet::new();
        let all = routes
            .iter()
            .map(|r| (r.index, &r.host, r.port, &r.path_prefix, &r.name))
            .chain(
                client_routes
                    .iter()
                    .map(|r| (r.index, &r.host, r.port, &r.path_prefix, &r.name)),
            );
        for (index, host, port, prefix, name) in all {
            if !seen.insert((host.clone(), port, prefix.clone())) {
                return Err(ConfigError::new(
                    format!("routes[{index}].from"),
                    "another route already serves this host and path",
                ));
            }
            if !names.insert(name.clone()) {
                return Err(ConfigError::new(
                    format!("routes[{index}].name"),
                    format!("'{name}' is used by another route"),
                ));
            }
        }
        self.validate_delegation(&routes, &client_routes)?;
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
        if self.kubernetes.is_some() {
            self.kubernetes_target()?;
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

    /// `token_service.upstream_request_timeout` and `token_service.upstream_refresh_lease`: a
    /// lease outlives the provider request made under it.
    fn validate_upstream_timing(&self) -> Result<(), ConfigError> {
        let ts = &self.token_service;
        positive(
            ts.upstream_request_timeout,
            "token_service.upstream_request_timeout",
        )?;
        if ts.upstream_refresh_lease <= ts.upstream_request_timeout {
            return Err(ConfigError::new(
                "token_service.upstream_refresh_lease",
                format!(
                    "must be longer than token_service.upstream_request_timeout ({:?}): a \
                     replica still waiting for the provider would lose its lease to another",
                    ts.upstream_request_timeout
                ),
            ));
        }
        Ok(())
    }

    /// `envoy.token_service_endpoints`: well-formed, distinct, and (several replicas) a database
    /// they can share.
    fn validate_token_service_endpoints(&self) -> Result<(), ConfigError> {
        const FIELD: &str = "envoy.token_service_endpoints";
        let Some(endpoints) = &self.envoy.token_service_endpoints else {
            return Ok(());
        };
        if self.envoy.token_service_address.is_some() {
            return Err(ConfigError::new(
                FIELD,
                "set envoy.token_service_endpoints or envoy.token_service_address, not both",
            ));
        }
        if endpoints.is_empty() {
            return Err(ConfigError::new(
                FIELD,
                "must list at least one endpoint (or leave it out)",
            ));
        }
        let mut seen = HashSet::new();
        for (i, e) in endpoints.iter().enumerate() {
            let field = |f: &str| format!("{FIELD}[{i}].{f}");
            let (host, port) = split_host_port(&e.address)
                .map_err(|reason| ConfigError::new(field("address"), reason))?;
            let internal = match &e.internal_address {
                Some(internal) => {
                    let (host, port) = split_host_port(internal)
                        .map_err(|reason| ConfigError::new(field("internal_address"), reason))?;
                    (host, port)
                }
                None => {
                    let next = port.checked_add(1).ok_or_else(|| {
                        ConfigError::new(
                            field("internal_address"),
                            "is needed: the default (the port of address plus one) is past 65535",
                        )
                    })?;
                    (host.clone(), next)
                }
            };
            for (name, (host, port)) in [("address", (host, port)), ("internal_address", internal)]
            {
                if !seen.insert((host.to_ascii_lowercase(), port)) {
                    return Err(ConfigError::new(
                        field(name),
                        format!(
                            "{} is already used by another endpoint or listener in {FIELD}",
                            join_host_port(&host, port)
                        ),
                    ));
                }
            }
        }
        let database = &self.token_service.database_url;
        let shared = database.starts_with("postgres://") || database.starts_with("postgresql://");
        if endpoints.len() > 1 && !shared {
            return Err(ConfigError::new(
                "token_service.database_url",
                format!(
                    "must be a postgres:// database when {FIELD} lists several replicas: they \
                     share one database, and an SQLite file cannot be shared between processes \
                     or machines"
                ),
            ));
        }
        Ok(())
    }

    /// The same gateway file for one token-service process among several on a host: its own
    /// public and internal listeners (`serve --listen … --internal-listen …`). With only `listen`
    /// given, the internal listener is `listen` with the port plus one (the file's
    /// `internal_listen` belongs to the file's `listen`).
    pub fn with_listen_override(
        mut self,
        listen: Option<SocketAddr>,
        internal_listen: Option<SocketAddr>,
    ) -> Result<Self, ConfigError> {
        if let Some(listen) = listen {
            self.token_service.listen = listen;
            self.token_service.internal_listen = internal_listen;
        } else if internal_listen.is_some() {
            self.token_service.internal_listen = internal_listen;
        }
        if self.internal_listen() == self.token_service.listen {
            return Err(ConfigError::new(
                "token_service.internal_listen",
                "must differ from token_service.listen (the internal API has its own listener)",
            ));
        }
        Ok(self)
    }

    /// Client routes, upstream OAuth and the internal listener.
    fn validate_delegation(
        &self,
        routes: &[ServerRoute],
        client_routes: &[ClientRoute],
    ) -> Result<(), ConfigError> {
        let issuer = Url::parse(&self.authorization_server.issuer)
            .ok()
            .and_then(|u| origin_parts(&u).ok());
        for r in client_routes {
            // The session cookie is host-only, on the issuer's host; the filter reads it there.
            let same_origin = issuer
                .as_ref()
                .is_some_and(|(s, h, p)| *s == r.scheme && *h == r.host && *p == r.port);
            if !same_origin {
                return Err(ConfigError::new(
                    format!("routes[{}].from", r.index),
                    "a client route must be on the issuer's scheme, host and port (the sign-in \
                     cookie is host-only)",
                ));
            }
        }
        let mut needs_key = false;
        for r in routes {
            let Some(up) = &r.upstream_oauth2 else {
                continue;
            };
            needs_key = true;
            let field = |f: &str| format!("routes[{}].mcp.server.upstream_oauth2.{f}", r.index);
            if up.client_id.trim().is_empty() {
                return Err(ConfigError::new(field("client_id"), "must not be empty"));
            }
            if up.client_secret.is_some() && up.client_secret_file.is_some() {
                return Err(ConfigError::new(
                    field("client_secret_file"),
                    "set client_secret or client_secret_file, not both",
                ));
            }
            if up.client_secret.as_deref().is_some_and(str::is_empty) {
                return Err(ConfigError::new(
                    field("client_secret"),
                    "must not be empty",
                ));
            }
            for (j, scope) in up.scopes.iter().enumerate() {
                if !is_scope_token(scope) {
                    return Err(ConfigError::new(
                        field(&format!("scopes[{j}]")),
                        "must be a non-empty scope token (printable ASCII, no quotes or backslashes)",
                    ));
                }
            }
            if let Some(endpoint) = &up.endpoint {
                validate_provider_url(&endpoint.auth_url)
                    .map_err(|reason| ConfigError::new(field("endpoint.auth_url"), reason))?;
                validate_provider_url(&endpoint.token_url)
                    .map_err(|reason| ConfigError::new(field("endpoint.token_url"), reason))?;
            }
            for key in up.authorization_url_params.keys() {
                if RESERVED_AUTHORIZATION_PARAMS.contains(&key.as_str()) {
                    return Err(ConfigError::new(
                        field(&format!("authorization_url_params.{key}")),
                        "is set by the gateway itself",
                    ));
                }
            }
        }
        if !self.identity.oidc.is_empty() && self.token_service.upstream_token_key_file.is_none() {
            return Err(ConfigError::new(
                "token_service.upstream_token_key_file",
                "is required when identity.oidc lists a provider (providers' refresh tokens are stored encrypted)",
            ));
        }
        if needs_key && self.token_service.upstream_token_key_file.is_none() {
            return Err(ConfigError::new(
                "token_service.upstream_token_key_file",
                "is required when a route has upstream_oauth2 (upstream tokens are stored encrypted)",
            ));
        }
        if self.internal_listen() == self.token_service.listen {
            return Err(ConfigError::new(
                "token_service.internal_listen",
                "must differ from token_service.listen (the internal API has its own listener)",
            ));
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
                (None, Some(_)) => continue,
                _ => {
                    return Err(ConfigError::new(
                        field("mcp"),
                        "must set exactly one of server or client",
                    ))
                }
            };
            let parts = RouteParts::parse(i, route)?;
            for (j, scope) in server.scopes.iter().enumerate() {
                if !is_scope_token(scope) {
                    return Err(ConfigError::new(
                        field(&format!("mcp.server.scopes[{j}]")),
                        "must be a non-empty scope token (printable ASCII, no quotes or backslashes)",
                    ));
                }
            }
            let resource = format!("{}{}", parts.origin, parts.path_prefix);
            out.push(ServerRoute {
                index: i,
                description: route.description.clone(),
                resource_metadata_url: format!(
                    "{}{}{}",
                    parts.origin,
                    paths::PROTECTED_RESOURCE_METADATA,
                    parts.path_prefix
                ),
                connect_url: format!("{resource}{}", paths::MCP_CONNECT_SUFFIX),
                resource,
                name: parts.name,
                scheme: parts.scheme,
                host: parts.host,
                port: parts.port,
                authority: parts.authority,
                path_prefix: parts.path_prefix,
                upstream: parts.upstream,
                scopes: server.scopes.clone(),
                default_resource: server.default_resource,
                policy: route.policy.clone(),
                max_request_bytes: server.max_request_bytes,
                audit: server.audit.clone(),
                upstream_oauth2: server.upstream_oauth2.clone(),
            });
        }
        Ok(out)
    }

    /// Every client route (`mcp: {client: {}}`) with its derived URLs.
    pub fn client_routes(&self) -> Result<Vec<ClientRoute>, ConfigError> {
        let mut out = Vec::new();
        for (i, route) in self.routes.iter().enumerate() {
            if route.mcp.server.is_some() || route.mcp.client.is_none() {
                continue;
            }
            let parts = RouteParts::parse(i, route)?;
            out.push(ClientRoute {
                index: i,
                description: route.description.clone(),
                url: format!("{}{}", parts.origin, parts.path_prefix),
                name: parts.name,
                scheme: parts.scheme,
                host: parts.host,
                port: parts.port,
                authority: parts.authority,
                path_prefix: parts.path_prefix,
                upstream: parts.upstream,
            });
        }
        Ok(out)
    }

    /// Where the token service serves the internal API.
    pub fn internal_listen(&self) -> SocketAddr {
        self.token_service.internal_listen.unwrap_or_else(|| {
            let listen = self.token_service.listen;
            SocketAddr::new(listen.ip(), listen.port().wrapping_add(1))
        })
    }

    /// Where Envoy reaches the token service (`host:port`): the first of
    /// `envoy.token_service_endpoints` when they are set. The filter's call-outs carry it as
    /// their authority.
    pub fn token_service_address(&self) -> String {
        if let Some(first) = self.token_service_endpoints().into_iter().next() {
            return first.public;
        }
        self.single_token_service_address()
    }

    /// Where Envoy reaches the token service's internal listener (`host:port`): the internal
    /// port on the host of `envoy.token_service_address` when that is set, the first endpoint's
    /// internal address when `envoy.token_service_endpoints` are.
    pub fn internal_service_address(&self) -> String {
        if let Some(first) = self.token_service_endpoints().into_iter().next() {
            return first.internal;
        }
        self.single_internal_service_address()
    }

    /// Every token-service replica Envoy balances over, both listeners resolved: the
    /// `envoy.token_service_endpoints`, or the one token service of `envoy.token_service_address`
    /// or `token_service.listen`.
    pub fn token_service_endpoints(&self) -> Vec<TokenServiceAddresses> {
        match &self.envoy.token_service_endpoints {
            Some(endpoints) if !endpoints.is_empty() => endpoints
                .iter()
                .map(|e| TokenServiceAddresses {
                    public: e.address.clone(),
                    internal: e.internal_address.clone().unwrap_or_else(|| {
                        match split_host_port(&e.address) {
                            Ok((host, port)) => join_host_port(&host, port.wrapping_add(1)),
                            Err(_) => e.address.clone(),
                        }
                    }),
                })
                .collect(),
            _ => vec![TokenServiceAddresses {
                public: self.single_token_service_address(),
                internal: self.single_internal_service_address(),
            }],
        }
    }

    fn single_token_service_address(&self) -> String {
        self.envoy
            .token_service_address
            .clone()
            .unwrap_or_else(|| self.token_service.listen.to_string())
    }

    fn single_internal_service_address(&self) -> String {
        let port = self.internal_listen().port();
        match &self.envoy.token_service_address {
            Some(addr) => match addr.rsplit_once(':') {
                Some((host, _)) => format!("{host}:{port}"),
                None => format!("{addr}:{port}"),
            },
            None => self.internal_listen().to_string(),
        }
    }

    /// The `kubernetes` settings (defaults when the block is absent), checked against the routes:
    /// every route's upstream must be a Service (`http://<svc>.<ns>.svc[.<domain>]:<port>`) and
    /// every public host a DNS name, since Gateway API routes name both.
    pub fn kubernetes_target(&self) -> Result<KubernetesTarget, ConfigError> {
        let k = self.kubernetes.clone().unwrap_or_default();
        dns_label(&k.namespace, "kubernetes.namespace")?;
        dns_label(&k.token_service, "kubernetes.token_service")?;
        if !k
            .token_service
            .starts_with(|c: char| c.is_ascii_lowercase())
        {
            return Err(ConfigError::new(
                "kubernetes.token_service",
                "a Service name must start with a lower-case letter",
            ));
        }
        dns_name(&k.cluster_domain, "kubernetes.cluster_domain")?;
        dns_subdomain(&k.gateway.name, "kubernetes.gateway.name")?;
        let gateway_namespace = k.gateway.namespace.clone().unwrap_or(k.namespace.clone());
        dns_label(&gateway_namespace, "kubernetes.gateway.namespace")?;
        if let Some(listener) = &k.gateway.listener {
            dns_subdomain(listener, "kubernetes.gateway.listener")?;
        }
        dns_subdomain(
            &k.internal_api_secret.name,
            "kubernetes.internal_api_secret.name",
        )?;
        let key_ok = !k.internal_api_secret.key.is_empty()
            && k.internal_api_secret.key.len() <= 253
            && k.internal_api_secret
                .key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c));
        if !key_ok {
            return Err(ConfigError::new(
                "kubernetes.internal_api_secret.key",
                "must be a Secret data key: letters, digits, '-', '_' or '.'",
            ));
        }
        if let Some(secret) = &k.filter.pull_secret {
            dns_subdomain(secret, "kubernetes.filter.pull_secret")?;
        }
        let module =
            match (&k.filter.image, &k.filter.url) {
                (Some(image), None) => ModuleLocation::Image(oci_reference(image)?),
                (None, Some(url)) => {
                    let parsed = Url::parse(url)
                        .map_err(|e| ConfigError::new("kubernetes.filter.url", e.to_string()))?;
                    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
                        return Err(ConfigError::new(
                            "kubernetes.filter.url",
                            "must be an http(s) URL of the .wasm file",
                        ));
                    }
                    ModuleLocation::Url(url.clone())
                }
                _ => return Err(ConfigError::new(
                    "kubernetes.filter",
                    "set exactly one of image (the OCI reference the filter image was pushed to) \
                     or url (an http(s) URL of the .wasm file)",
                )),
            };
        for (field, addr) in [
            ("token_service.listen", self.token_service.listen),
            ("token_service.internal_listen", self.internal_listen()),
        ] {
            if addr.ip().is_loopback() {
                return Err(ConfigError::new(
                    field,
                    "binds a loopback address, which the Kubernetes Service cannot reach: listen \
                     on 0.0.0.0 (or the pod's address)",
                ));
            }
        }
        let mut backends = BTreeMap::new();
        let routes = self.server_routes()?;
        let client_routes = self.client_routes()?;
        let located = routes
            .iter()
            .map(|r| (r.index, &r.host, &r.upstream))
            .chain(
                client_routes
                    .iter()
                    .map(|r| (r.index, &r.host, &r.upstream)),
            );
        for (index, host, upstream) in located {
            if host.parse::<IpAddr>().is_ok() {
                return Err(ConfigError::new(
                    format!("routes[{index}].from"),
                    "a Gateway API route matches host names, not IP addresses",
                ));
            }
            backends.insert(
                index,
                service_ref(upstream, &k.cluster_domain)
                    .map_err(|reason| ConfigError::new(format!("routes[{index}].to"), reason))?,
            );
        }
        Ok(KubernetesTarget {
            token_service: ServiceRef {
                name: k.token_service.clone(),
                namespace: k.namespace.clone(),
                port: self.token_service.listen.port(),
            },
            internal_port: self.internal_listen().port(),
            namespace: k.namespace,
            cluster_domain: k.cluster_domain,
            gateway_name: k.gateway.name,
            gateway_namespace,
            gateway_listener: k.gateway.listener,
            internal_api_secret: k.internal_api_secret,
            module,
            pull_policy: k.filter.pull_policy,
            pull_secret: k.filter.pull_secret,
            backends,
        })
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
                upstream_oauth: r.upstream_oauth2.is_some(),
                connect_url: r.connect_url,
            })
            .collect();
        let client_routes = self
            .client_routes()?
            .into_iter()
            .map(|r| FilterClientRoute {
                name: r.name,
                scheme: r.scheme,
                host: r.host,
                port: r.port,
                path_prefix: r.path_prefix,
                url: r.url,
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
            internal_cluster: TOKEN_SERVICE_INTERNAL_CLUSTER.to_string(),
            internal_authority: self.internal_service_address(),
            revocations_refresh_seconds: crate::filter::DEFAULT_REVOCATIONS_REFRESH_SECONDS,
            sign_in_url: format!("{}{}", self.authorization_server.issuer, paths::SIGN_IN),
            client_routes,
            // The safe default; a renderer whose target holds headers sets `HoldHeaders`.
            header_mode: crate::filter::HeaderMode::HoldBody,
            body_arrival_timeout_seconds: crate::filter::DEFAULT_BODY_ARRIVAL_TIMEOUT_SECONDS,
        })
    }
}

/// What every route derives from its `from`, `to` and `name`.
struct RouteParts {
    name: String,
    scheme: String,
    host: String,
    port: u16,
    authority: String,
    origin: String,
    path_prefix: String,
    upstream: Upstream,
}

impl RouteParts {
    fn parse(i: usize, route: &Route) -> Result<Self, ConfigError> {
        let field = |f: &str| format!("routes[{i}].{f}");
        let from =
            Url::parse(&route.from).map_err(|e| ConfigError::new(field("from"), e.to_string()))?;
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
        if path_prefix.contains("//")
            || path_prefix.split('/').any(|s| {
                s == "." || s == ".." || s == paths::GATEWAY_PREFIX.trim_start_matches('/')
            })
        {
            return Err(ConfigError::new(
                field("from"),
                "path must be normalized and not contain a .mcpgate segment",
            ));
        }
        let to = Url::parse(&route.to).map_err(|e| ConfigError::new(field("to"), e.to_string()))?;
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
        Ok(RouteParts {
            name,
            scheme,
            host,
            port,
            authority,
            origin,
            path_prefix,
            upstream: Upstream {
                scheme: up_scheme,
                host: up_host,
                port: up_port,
                path: to.path().trim_end_matches('/').to_string(),
            },
        })
    }
}

/// The Service a route's upstream names: `http://<svc>.<ns>.svc[.<cluster domain>]:<port>`.
fn service_ref(upstream: &Upstream, cluster_domain: &str) -> Result<ServiceRef, String> {
    const SHAPE: &str = "a Kubernetes target routes to a Service: use \
                         http://<service>.<namespace>.svc.<cluster domain>:<port>[/path]";
    if upstream.scheme != "http" {
        return Err(format!(
            "{SHAPE} (plain http: inside the mesh the proxies encrypt it)"
        ));
    }
    let host = upstream.host.as_str();
    let stem = host
        .strip_suffix(&format!(".svc.{cluster_domain}"))
        .or_else(|| host.strip_suffix(".svc"))
        .ok_or_else(|| SHAPE.to_string())?;
    match stem.split_once('.') {
        Some((name, namespace))
            if is_dns_label(name) && is_dns_label(namespace) && !namespace.contains('.') =>
        {
            Ok(ServiceRef {
                name: name.to_string(),
                namespace: namespace.to_string(),
                port: upstream.port,
            })
        }
        _ => Err(SHAPE.to_string()),
    }
}

/// An OCI reference without scheme: `registry/repository[:tag][@sha256:<hex>]`.
fn oci_reference(image: &str) -> Result<String, ConfigError> {
    const FIELD: &str = "kubernetes.filter.image";
    let reference = image.strip_prefix("oci://").unwrap_or(image);
    let (name, _) = reference.split_once('@').unwrap_or((reference, ""));
    let valid = !reference.is_empty()
        && name.contains('/')
        && !reference
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
        && !reference.contains("://");
    if !valid {
        return Err(ConfigError::new(
            FIELD,
            "must be an OCI reference with a registry and repository \
             (registry.example.com/mcpgate/filter:0.1.0)",
        ));
    }
    Ok(reference.to_string())
}

/// `host:port`, `[v6]:port` or `v4:port`: a host without scheme, path or spaces and a port from
/// 1 to 65535. Returns the host without brackets.
fn split_host_port(address: &str) -> Result<(String, u16), String> {
    const SHAPE: &str = "must be host:port (a DNS name, an IPv4 address or a bracketed IPv6 \
                         address, then a port from 1 to 65535)";
    let (host, port) = if let Some(rest) = address.strip_prefix('[') {
        let (host, port) = rest.split_once("]:").ok_or(SHAPE)?;
        host.parse::<std::net::Ipv6Addr>().map_err(|_| SHAPE)?;
        (host, port)
    } else {
        let (host, port) = address.rsplit_once(':').ok_or(SHAPE)?;
        let name_ok = !host.is_empty()
            && host.len() <= 253
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_')
            && !host.starts_with(['.', '-'])
            && !host.contains("..");
        if !name_ok {
            return Err(SHAPE.into());
        }
        (host, port)
    };
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p != 0 && !port.starts_with('+'))
        .ok_or(SHAPE)?;
    Ok((host.to_string(), port))
}

fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// RFC 1123 label: what Kubernetes accepts as a namespace or Service name.
fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn dns_label(s: &str, field: &str) -> Result<(), ConfigError> {
    if is_dns_label(s) {
        Ok(())
    } else {
        Err(ConfigError::new(
            field,
            "must be a DNS label: at most 63 lower-case letters, digits or '-', starting and \
             ending with a letter or digit",
        ))
    }
}

/// RFC 1123 subdomain: what Kubernetes accepts as most object names.
fn dns_subdomain(s: &str, field: &str) -> Result<(), ConfigError> {
    if s.len() <= 253 && s.split('.').all(is_dns_label) {
        Ok(())
    } else {
        Err(ConfigError::new(
            field,
            "must be a DNS subdomain: dot-separated labels of lower-case letters, digits or '-', \
             at most 253 characters",
        ))
    }
}

fn dns_name(s: &str, field: &str) -> Result<(), ConfigError> {
    dns_subdomain(s, field)
}

fn is_scope_token(scope: &str) -> bool {
    !scope.is_empty()
        && scope
            .chars()
            .all(|c| c.is_ascii_graphic() && c != '"' && c != '\\')
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

/// Provider endpoints: https, or http on a loopback host (a local test provider).
fn validate_provider_url(url: &str) -> Result<(), String> {
    let parsed = Url::parse(url).map_err(|e| format!("not an absolute URL: {e}"))?;
    if parsed.fragment().is_some() || !parsed.username().is_empty() {
        return Err("must not carry a fragment or user information".into());
    }
    match parsed.scheme() {
        "https" => Ok(()),
        "http" => match parsed.host_str() {
            Some(h) if is_loopback_host(h.trim_start_matches('[').trim_end_matches(']')) => Ok(()),
            _ => Err("http is allowed for loopback hosts only".into()),
        },
        other => Err(format!("scheme {other} is not allowed; use https")),
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
    pub fn client_grant_types() -> Vec<String> {
        vec!["authorization_code".into(), "refresh_token".into()]
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
    pub fn upstream_request_timeout() -> Duration {
        Duration::from_secs(10)
    }
    pub fn upstream_refresh_lease() -> Duration {
        Duration::from_secs(30)
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
    pub fn k8s_namespace() -> String {
        "mcpgate".into()
    }
    pub fn k8s_token_service() -> String {
        "mcpgate-token-service".into()
    }
    pub fn cluster_domain() -> String {
        "cluster.local".into()
    }
    pub fn k8s_gateway() -> String {
        "mcpgate".into()
    }
    pub fn k8s_secret_name() -> String {
        "mcpgate-internal-api".into()
    }
    pub fn k8s_secret_key() -> String {
        "secret".into()
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

    const UPSTREAM: &str = r#"
        upstream_oauth2:
          client_id: gh-client
          client_secret: gh-secret
          scopes: [read:user]
          endpoint:
            auth_url: https://github.com/login/oauth/authorize
            token_url: https://github.com/login/oauth/access_token
            auth_style: params
          authorization_url_params: {prompt: consent}"#;

    fn with_upstream(upstream: &str) -> String {
        BASE.replace(
            "        scopes: [mcp:tools]",
            &format!("        scopes: [mcp:tools]{upstream}"),
        )
        .replace(
            "  users_file: users.yaml",
            "  users_file: users.yaml\n  upstream_token_key_file: upstream.key",
        )
    }

    #[test]
    fn upstream_oauth_and_client_routes_load() {
        let yaml = format!(
            "{}  - from: http://localhost:18080/app\n    to: http://127.0.0.1:3005\n    mcp: {{client: {{}}}}\n",
            with_upstream(UPSTREAM)
        );
        let config = GatewayConfig::from_yaml(&yaml).expect("valid");
        let routes = config.server_routes().expect("routes");
        assert_eq!(routes.len(), 2);
        let up = routes[0].upstream_oauth2.as_ref().expect("upstream oauth");
        let endpoint = up.endpoint.as_ref().expect("endpoint");
        assert_eq!(endpoint.auth_style, AuthStyle::Params);
        assert_eq!(up.authorization_url_params["prompt"], "consent");
        assert_eq!(
            routes[0].connect_url,
            "http://localhost:18080/everything/.mcpgate/mcp/connect"
        );
        let clients = config.client_routes().expect("client routes");
        assert_eq!(clients.len(), 1);
        assert_eq!(clients[0].url, "http://localhost:18080/app");
        assert_eq!(clients[0].index, 2);
        assert_eq!(config.internal_listen().to_string(), "127.0.0.1:18082");
        let filter = config.filter_config().expect("projection");
        assert!(filter.routes[0].upstream_oauth);
        assert!(!filter.routes[1].upstream_oauth);
        // The projection carries no upstream client secret.
        assert!(!serde_json::to_string(&filter)
            .expect("json")
            .contains("gh-secret"));
    }

    #[test]
    fn upstream_oauth_and_client_route_errors_name_the_field() {
        let field = "routes[0].mcp.server.upstream_oauth2";
        assert_eq!(
            err(&with_upstream(&UPSTREAM.replace(
                "https://github.com/login/oauth/authorize",
                "http://github.com/x"
            )))
            .field,
            format!("{field}.endpoint.auth_url")
        );
        assert_eq!(
            err(&with_upstream(
                &UPSTREAM.replace("prompt: consent", "state: x")
            ))
            .field,
            format!("{field}.authorization_url_params.state")
        );
        assert_eq!(
            err(&with_upstream(
                &UPSTREAM.replace("client_id: gh-client", "client_id: ' '")
            ))
            .field,
            format!("{field}.client_id")
        );
        assert_eq!(
            err(&with_upstream(
                &UPSTREAM.replace("auth_style: params", "auth_style: cookie")
            ))
            .field,
            format!("{field}.endpoint.auth_style")
        );
        let no_key =
            with_upstream(UPSTREAM).replace("\n  upstream_token_key_file: upstream.key", "");
        assert_eq!(err(&no_key).field, "token_service.upstream_token_key_file");
        let other_host = format!(
            "{BASE}  - from: http://app.localhost:18080/\n    to: http://127.0.0.1:3005\n    mcp: {{client: {{}}}}\n"
        );
        assert_eq!(err(&other_host).field, "routes[2].from");
        let same_listener = BASE.replace(
            "  users_file: users.yaml",
            "  users_file: users.yaml\n  internal_listen: 127.0.0.1:18081",
        );
        assert_eq!(err(&same_listener).field, "token_service.internal_listen");
        let connect_segment = BASE.replace("/second/", "/x/.mcpgate/y");
        assert_eq!(err(&connect_segment).field, "routes[1].from");
    }

    fn with_envoy(envoy: &str) -> String {
        BASE.replace(
            "  users_file: users.yaml\n",
            &format!("  users_file: users.yaml\nenvoy:\n{envoy}"),
        )
    }

    fn postgres(yaml: &str) -> String {
        yaml.replace(
            "sqlite://data/mcpgate.db?mode=rwc",
            "postgres://mcpgate@db.internal/mcpgate",
        )
    }

    const TWO_REPLICAS: &str = "  token_service_endpoints:\n    - address: ts-a.internal:8080\n    - address: 10.0.0.12:9080\n      internal_address: 10.0.0.12:9190\n";

    #[test]
    fn upstream_refresh_lease_outlives_the_provider_request() {
        let config = GatewayConfig::from_yaml(BASE).expect("valid");
        assert_eq!(
            config.token_service.upstream_request_timeout,
            Duration::from_secs(10)
        );
        assert_eq!(
            config.token_service.upstream_refresh_lease,
            Duration::from_secs(30)
        );
        let with = |extra: &str| {
            BASE.replace(
                "  users_file: users.yaml\n",
                &format!("  users_file: users.yaml\n{extra}"),
            )
        };
        let short = GatewayConfig::from_yaml(&with(
            "  upstream_request_timeout: 2s\n  upstream_refresh_lease: 3s\n",
        ))
        .expect("a short lease over a shorter timeout");
        assert_eq!(
            short.token_service.upstream_refresh_lease,
            Duration::from_secs(3)
        );
        let e = err(&with("  upstream_refresh_lease: 10s\n"));
        assert_eq!(e.field, "token_service.upstream_refresh_lease");
        assert!(
            e.reason
                .contains("longer than token_service.upstream_request_timeout (10s)"),
            "{}",
            e.reason
        );
        let e = err(&with(
            "  upstream_request_timeout: 5s\n  upstream_refresh_lease: 4s\n",
        ));
        assert_eq!(e.field, "token_service.upstream_refresh_lease");
        assert_eq!(
            err(&with("  upstream_request_timeout: 0s\n")).field,
            "token_service.upstream_request_timeout"
        );
    }

    #[test]
    fn token_service_endpoints_resolve_both_listeners() {
        let config = GatewayConfig::from_yaml(&postgres(&with_envoy(TWO_REPLICAS))).expect("valid");
        let endpoints = config.token_service_endpoints();
        assert_eq!(
            endpoints,
            vec![
                TokenServiceAddresses {
                    public: "ts-a.internal:8080".into(),
                    internal: "ts-a.internal:8081".into()
                },
                TokenServiceAddresses {
                    public: "10.0.0.12:9080".into(),
                    internal: "10.0.0.12:9190".into()
                },
            ]
        );
        // The filter's call-outs name the first replica.
        assert_eq!(config.token_service_address(), "ts-a.internal:8080");
        assert_eq!(config.internal_service_address(), "ts-a.internal:8081");
        // One endpoint needs no shared database; IPv6 keeps its brackets.
        let one = with_envoy("  token_service_endpoints: [{address: '[fd00::1]:8080'}]\n");
        let config = GatewayConfig::from_yaml(&one).expect("one replica on SQLite");
        assert_eq!(config.internal_service_address(), "[fd00::1]:8081");
        // Without the field: the one token service, as before.
        let config = GatewayConfig::from_yaml(BASE).expect("valid");
        assert_eq!(
            config.token_service_endpoints(),
            vec![TokenServiceAddresses {
                public: "127.0.0.1:18081".into(),
                internal: "127.0.0.1:18082".into()
            }]
        );
    }

    #[test]
    fn token_service_endpoint_errors_name_the_field() {
        let both = err(&postgres(&with_envoy(&format!(
            "  token_service_address: ts:8080\n{TWO_REPLICAS}"
        ))));
        assert_eq!(both.field, "envoy.token_service_endpoints");
        assert!(
            both.reason.contains("envoy.token_service_address"),
            "{both}"
        );
        let empty = err(&with_envoy("  token_service_endpoints: []\n"));
        assert_eq!(empty.field, "envoy.token_service_endpoints");
        for bad in [
            "ts-a",
            "ts-a:0",
            "ts-a:http",
            "http://ts-a:8080",
            ":8080",
            "a b:1",
            "[::1:80",
        ] {
            let e = err(&with_envoy(&format!(
                "  token_service_endpoints: [{{address: '{bad}'}}]\n"
            )));
            assert_eq!(e.field, "envoy.token_service_endpoints[0].address", "{bad}");
        }
        let bad_internal = err(&with_envoy(
            "  token_service_endpoints: [{address: 'ts:8080', internal_address: ts}]\n",
        ));
        assert_eq!(
            bad_internal.field,
            "envoy.token_service_endpoints[0].internal_address"
        );
        let no_default = err(&with_envoy(
            "  token_service_endpoints: [{address: 'ts:65535'}]\n",
        ));
        assert_eq!(
            no_default.field,
            "envoy.token_service_endpoints[0].internal_address"
        );
        let duplicate = err(&postgres(&with_envoy(
            "  token_service_endpoints: [{address: 'ts:8080'}, {address: 'TS:8080'}]\n",
        )));
        assert_eq!(duplicate.field, "envoy.token_service_endpoints[1].address");
        // The first replica's internal listener (8081 by default) is not another's public one.
        let overlap = err(&postgres(&with_envoy(
            "  token_service_endpoints: [{address: 'ts:8080'}, {address: 'ts:8081'}]\n",
        )));
        assert_eq!(overlap.field, "envoy.token_service_endpoints[1].address");
        let sqlite = err(&with_envoy(TWO_REPLICAS));
        assert_eq!(sqlite.field, "token_service.database_url");
        assert!(sqlite.reason.contains("SQLite"), "{sqlite}");
        assert!(sqlite.reason.contains("postgres://"), "{sqlite}");
        let unknown = err(&with_envoy(
            "  token_service_endpoints: [{address: 'ts:8080', internal: 'ts:9'}]\n",
        ));
        assert!(
            unknown
                .field
                .starts_with("envoy.token_service_endpoints[0]"),
            "{unknown}"
        );
    }

    #[test]
    fn listen_override_moves_both_listeners() {
        let config = GatewayConfig::from_yaml(BASE).expect("valid");
        let a: SocketAddr = "127.0.0.1:19080".parse().expect("addr");
        let moved = config
            .clone()
            .with_listen_override(Some(a), None)
            .expect("valid");
        assert_eq!(moved.token_service.listen, a);
        assert_eq!(moved.internal_listen().to_string(), "127.0.0.1:19081");
        let internal: SocketAddr = "127.0.0.1:19500".parse().expect("addr");
        let both = config
            .clone()
            .with_listen_override(Some(a), Some(internal))
            .expect("valid");
        assert_eq!(both.internal_listen(), internal);
        let only_internal = config
            .clone()
            .with_listen_override(None, Some(internal))
            .expect("valid");
        assert_eq!(only_internal.token_service.listen.port(), 18081);
        assert_eq!(only_internal.internal_listen(), internal);
        let same = config
            .with_listen_override(Some(a), Some(a))
            .expect_err("one listener for both");
        assert_eq!(same.field, "token_service.internal_listen");
    }

    fn with_telemetry(telemetry: &str) -> String {
        format!("{BASE}telemetry:\n{telemetry}")
    }

    #[test]
    fn telemetry_defaults_and_errors_name_the_field() {
        let config = GatewayConfig::from_yaml(BASE).expect("valid");
        assert!(config.telemetry.metrics);
        assert!(config.telemetry.tracing.is_none());
        let config = GatewayConfig::from_yaml(&with_telemetry(
            "  metrics: false\n  tracing:\n    otlp_endpoint: http://127.0.0.1:4318\n    sampling: 12.5%\n",
        ))
        .expect("valid");
        assert!(!config.telemetry.metrics);
        let tracing = config.telemetry.tracing.expect("tracing");
        assert_eq!(tracing.service_name, "mcpgate-token-service");
        assert_eq!(tracing.envoy_service_name, "mcpgate-envoy");
        assert_eq!(tracing.sampling.ratio(), 0.125);
        assert_eq!(tracing.traces_url(), "http://127.0.0.1:4318/v1/traces");
        let cases = [
            (
                "    otlp_endpoint: http://127.0.0.1:4318/v1/traces\n",
                "telemetry.tracing.otlp_endpoint",
                "path",
            ),
            (
                "    otlp_endpoint: 127.0.0.1:4318\n",
                "telemetry.tracing.otlp_endpoint",
                "",
            ),
            (
                "    otlp_endpoint: grpc://collector:4317\n",
                "telemetry.tracing.otlp_endpoint",
                "http",
            ),
            (
                "    otlp_endpoint: http://c:4318\n    sampling: 150%\n",
                "telemetry.tracing.sampling",
                "0% to 100%",
            ),
            (
                "    otlp_endpoint: http://c:4318\n    sampling: 0.5\n",
                "telemetry.tracing.sampling",
                "%",
            ),
            (
                "    otlp_endpoint: http://c:4318\n    sampling: half\n",
                "telemetry.tracing.sampling",
                "%",
            ),
            (
                "    otlp_endpoint: http://c:4318\n    service_name: ' '\n",
                "telemetry.tracing.service_name",
                "",
            ),
            (
                "    otlp_endpoint: http://c:4318\n    envoy_service_name: ''\n",
                "telemetry.tracing.envoy_service_name",
                "",
            ),
            (
                "    service_name: x\n",
                "telemetry.tracing",
                "otlp_endpoint",
            ),
        ];
        for (tracing, field, words) in cases {
            let e = err(&with_telemetry(&format!("  tracing:\n{tracing}")));
            assert_eq!(e.field, field, "{tracing}");
            assert!(e.reason.contains(words), "{e}");
        }
        let typo = err(&with_telemetry("  metric: true\n"));
        assert_eq!(typo.field, "telemetry.metric", "{typo}");
    }

    const KUBERNETES: &str = r#"
authorization_server:
  issuer: https://mcp.example.com
  signing_key_file: key.pem
token_service:
  listen: 0.0.0.0:8080
  database_url: sqlite://data/mcpgate.db?mode=rwc
  users_file: users.yaml
kubernetes:
  filter:
    image: registry.example.com/mcpgate/filter:1
routes:
  - from: https://mcp.example.com/everything
    to: http://everything.tools.svc.cluster.local:3001/mcp
    mcp: {server: {}}
"#;

    #[test]
    fn kubernetes_target_derives_services_and_names_bad_fields() {
        let config = GatewayConfig::from_yaml(KUBERNETES).expect("valid");
        let t = config.kubernetes_target().expect("target");
        assert_eq!(
            t.backends[&0],
            ServiceRef {
                name: "everything".into(),
                namespace: "tools".into(),
                port: 3001
            }
        );
        assert_eq!(
            t.service_host(&t.token_service),
            "mcpgate-token-service.mcpgate.svc.cluster.local"
        );
        assert_eq!((t.token_service.port, t.internal_port), (8080, 8081));
        assert_eq!(t.gateway_namespace, "mcpgate");
        let cases = [
            (
                "to: http://everything.tools.svc.cluster.local:3001/mcp",
                "to: http://127.0.0.1:3001/mcp",
                "routes[0].to",
            ),
            (
                "to: http://everything.tools.svc.cluster.local:3001/mcp",
                "to: https://everything.tools.svc:3001/mcp",
                "routes[0].to",
            ),
            (
                "from: https://mcp.example.com/everything",
                "from: https://10.0.0.1/everything",
                "routes[0].from",
            ),
            (
                "listen: 0.0.0.0:8080",
                "listen: 127.0.0.1:8080",
                "token_service.listen",
            ),
            (
                "    image: registry.example.com/mcpgate/filter:1",
                "    image: filter",
                "kubernetes.filter.image",
            ),
            (
                "    image: registry.example.com/mcpgate/filter:1",
                "    image: registry.example.com/f:1\n    url: https://x.example/f.wasm",
                "kubernetes.filter",
            ),
            (
                "kubernetes:\n",
                "kubernetes:\n  namespace: Not_A_Label\n",
                "kubernetes.namespace",
            ),
            (
                "kubernetes:\n",
                "kubernetes:\n  gateway: {name: public, listener: 'a b'}\n",
                "kubernetes.gateway.listener",
            ),
        ];
        for (from, to, field) in cases {
            let yaml = KUBERNETES.replace(from, to);
            assert_eq!(err(&yaml).field, field, "{to}");
        }
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
    fn pre_registered_clients_may_use_private_key_jwt() {
        let with_client = |client: &str| {
            BASE.replace(
                "  signing_key_file: key.pem\n",
                &format!("  signing_key_file: key.pem\n  clients:\n{client}"),
            )
        };
        let agent = "    - client_id: agent\n      token_endpoint_auth_method: private_key_jwt\n";
        let jwt_bearer = format!("      grant_types: [{JWT_BEARER_GRANT}]\n");
        let inline = format!(
            "{agent}      jwks: {{keys: [{{kty: OKP, crv: Ed25519, x: abc}}]}}\n{jwt_bearer}"
        );
        let config = GatewayConfig::from_yaml(&with_client(&inline)).expect("valid client");
        let client = &config.authorization_server.clients[0];
        assert_eq!(client.grant_types, vec![JWT_BEARER_GRANT.to_string()]);
        assert!(
            client.redirect_uris.is_empty(),
            "no code flow, no redirect URI"
        );
        let by_uri = format!("{agent}      jwks_uri: https://agent.example/jwks\n{jwt_bearer}");
        GatewayConfig::from_yaml(&with_client(&by_uri)).expect("keys published at a URL");

        let at = |f: &str| format!("authorization_server.clients[0].{f}");
        for (yaml, field) in [
            (format!("{agent}{jwt_bearer}"), at("jwks_uri")),
            (
                format!("{agent}      jwks_uri: http://agent.example/jwks\n{jwt_bearer}"),
                at("jwks_uri"),
            ),
            (
                format!("{agent}      jwks: {{keys: [{{kty: OKP, d: secret}}]}}\n{jwt_bearer}"),
                at("jwks.keys[0].d"),
            ),
            (
                format!("{inline}      client_secret: 0123456789abcdef\n"),
                at("client_secret"),
            ),
            (
                "    - client_id: cli\n      client_secret: 0123456789abcdef\n      jwks_uri: https://a.example/k\n      redirect_uris: [http://127.0.0.1/cb]\n".to_string(),
                at("jwks_uri"),
            ),
            (
                format!("{agent}      jwks_uri: https://a.example/k\n      grant_types: [implicit]\n"),
                at("grant_types[0]"),
            ),
            (
                format!("{agent}      jwks_uri: https://a.example/k\n      grant_types: [refresh_token]\n"),
                at("grant_types"),
            ),
            (
                format!("    - client_id: pub\n      token_endpoint_auth_method: none\n{jwt_bearer}"),
                at("token_endpoint_auth_method"),
            ),
            (
                format!("{agent}      jwks_uri: https://a.example/k\n"),
                at("redirect_uris"),
            ),
        ] {
            assert_eq!(err(&with_client(&yaml)).field, field, "{yaml}");
        }
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
