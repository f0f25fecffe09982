//! Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document, MCP 2025-11-25):
//! an https `client_id` names a JSON document describing the client. Fetching it is an SSRF
//! surface, so the host is resolved here, non-public addresses are refused, the connection is
//! pinned to the checked address, redirects are not followed, and time and size are bounded.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::http::{header, HeaderMap};
use mcpgate_config::gateway::{ClientIdMetadataDocuments, TokenEndpointAuthMethod};
use url::Url;

use crate::clients::metadata::ClientMetadata;
use crate::clients::{Client, ClientKind};
use crate::telemetry::metrics::{Metrics, Outcome, RegistrationKind};

/// Cached documents are bounded so a flood of distinct URLs cannot grow memory without limit.
const MAX_CACHE_ENTRIES: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    #[error("client_id is not a valid client ID metadata document URL: {0}")]
    InvalidUrl(String),
    #[error("client ID metadata documents are disabled on this gateway")]
    Disabled,
    #[error("the client_id host could not be resolved: {0}")]
    Resolve(String),
    #[error("the client_id host resolves to a non-public address ({0}); metadata documents must be on the public internet")]
    ForbiddenAddress(IpAddr),
    #[error("fetching the client metadata document failed: {0}")]
    Fetch(String),
    #[error("the client metadata document URL answered with a redirect (HTTP {0}); redirects are not followed")]
    Redirect(u16),
    #[error("the client metadata document URL answered HTTP {0}; expected 200")]
    Status(u16),
    #[error("the client metadata document is larger than the limit of {0} bytes (client_id_metadata_documents.max_bytes)")]
    TooLarge(usize),
    #[error("the client metadata document is not valid: {0}")]
    Invalid(String),
}

impl DocumentError {
    /// A short code for metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidUrl(_) => "invalid_url",
            Self::Disabled => "disabled",
            Self::Resolve(_) => "resolve_failed",
            Self::ForbiddenAddress(_) => "forbidden_address",
            Self::Fetch(_) => "fetch_failed",
            Self::Redirect(_) => "redirect",
            Self::Status(_) => "bad_status",
            Self::TooLarge(_) => "too_large",
            Self::Invalid(_) => "invalid_client_metadata",
        }
    }
}

/// Whether an address must not be fetched from: anything that is not global unicast
/// (loopback, private, link-local, unique-local, multicast, unspecified, documentation, CGNAT,
/// benchmarking, reserved), including IPv4 embedded in IPv6 (mapped, NAT64, 6to4).
/// Hand-written because `IpAddr::is_global` is still unstable in std.
pub fn address_is_forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4_is_forbidden(v4),
        IpAddr::V6(v6) => v6_is_forbidden(v6),
    }
}

fn v4_is_forbidden(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    a == 0                                   // "this network", unspecified
        || a == 10                           // private
        || a == 127                          // loopback
        || (a == 100 && (64..128).contains(&b)) // CGNAT 100.64/10
        || (a == 169 && b == 254)            // link-local
        || (a == 172 && (16..32).contains(&b)) // private
        || (a == 192 && b == 0 && c == 0)    // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2)    // TEST-NET-1
        || (a == 192 && b == 88 && c == 99)  // 6to4 relay anycast
        || (a == 192 && b == 168)            // private
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || (a == 198 && b == 51 && c == 100) // TEST-NET-2
        || (a == 203 && b == 0 && c == 113)  // TEST-NET-3
        || a >= 224 // multicast, reserved, broadcast
}

fn v6_is_forbidden(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    if let Some(v4) = ip.to_ipv4_mapped() {
        return v4_is_forbidden(v4);
    }
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        // NAT64 well-known prefix 64:ff9b::/96 carries an IPv4 address.
        return v4_is_forbidden(Ipv4Addr::new(
            (s[6] >> 8) as u8,
            s[6] as u8,
            (s[7] >> 8) as u8,
            s[7] as u8,
        ));
    }
    if s[0] == 0x2002 {
        // 6to4 2002::/16 carries an IPv4 address in bits 16..48.
        return v4_is_forbidden(Ipv4Addr::new(
            (s[1] >> 8) as u8,
            s[1] as u8,
            (s[2] >> 8) as u8,
            s[2] as u8,
        ));
    }
    (s[0] & 0xe000) != 0x2000                // outside global unicast 2000::/3: ::, ::1, fc00::/7, fe80::/10, ff00::/8…
        || (s[0] == 0x2001 && s[1] < 0x0200) // 2001::/23 IETF protocol assignments (Teredo, benchmarking…)
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] & 0xfff0) == 0x3ff0 // documentation 3fff::/20
}

/// How long a fetched document may be cached, from `Cache-Control` (`no-store`/`no-cache`
/// forbid caching; `max-age`) or else `Expires`, bounded by `max`; `default` when neither is
/// present. `None` means do not cache. Hand-written: only these three directives matter here.
pub fn cache_lifetime(
    headers: &HeaderMap,
    now: SystemTime,
    default: Duration,
    max: Duration,
) -> Option<Duration> {
    let cache_control: Vec<String> = headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|d| d.trim().to_ascii_lowercase())
        .collect();
    if cache_control
        .iter()
        .any(|d| d == "no-store" || d == "no-cache")
    {
        return None;
    }
    let max_age = cache_control.iter().find_map(|d| {
        let value = d
            .strip_prefix("max-age")?
            .trim_start()
            .strip_prefix('=')?
            .trim()
            .trim_matches('"');
        Some(value.parse::<u64>().ok())
    });
    let lifetime = match max_age {
        Some(Some(secs)) => Duration::from_secs(secs),
        Some(None) => return None, // a malformed max-age: be conservative
        None => match headers.get(header::EXPIRES).and_then(|v| v.to_str().ok()) {
            Some(expires) => {
                let expires = httpdate::parse_http_date(expires).ok()?;
                let date = headers
                    .get(header::DATE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|d| httpdate::parse_http_date(d).ok())
                    .unwrap_or(now);
                expires.duration_since(date).ok()?
            }
            None => default,
        },
    };
    if lifetime.is_zero() {
        None
    } else {
        Some(lifetime.min(max))
    }
}

/// Checks the `client_id` URL itself: https, a host, a path, no fragment, no credentials, no dot
/// segments.
pub fn validate_client_id_url(client_id: &str) -> Result<Url, DocumentError> {
    let url = Url::parse(client_id).map_err(|e| DocumentError::InvalidUrl(e.to_string()))?;
    if url.scheme() != "https" {
        return Err(DocumentError::InvalidUrl("must use https".into()));
    }
    if url.host_str().is_none() {
        return Err(DocumentError::InvalidUrl("must name a host".into()));
    }
    if url.fragment().is_some() || client_id.contains('#') {
        return Err(DocumentError::InvalidUrl(
            "must not contain a fragment".into(),
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(DocumentError::InvalidUrl(
            "must not contain user information".into(),
        ));
    }
    if url.path() == "/" || url.path().is_empty() {
        return Err(DocumentError::InvalidUrl("must contain a path".into()));
    }
    let raw_path = client_id.splitn(4, '/').nth(3).unwrap_or("");
    if raw_path
        .split(['/', '?'])
        .any(|seg| seg == "." || seg == "..")
    {
        return Err(DocumentError::InvalidUrl(
            "must not contain . or .. path segments".into(),
        ));
    }
    Ok(url)
}

/// Validates a fetched document for `client_id`.
pub fn parse_document(client_id: &str, body: &[u8]) -> Result<Client, DocumentError> {
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| DocumentError::Invalid(format!("not JSON: {e}")))?;
    let obj = value
        .as_object()
        .ok_or_else(|| DocumentError::Invalid("must be a JSON object".into()))?;
    match obj.get("client_id") {
        Some(serde_json::Value::String(id)) if id == client_id => {}
        Some(serde_json::Value::String(_)) => {
            return Err(DocumentError::Invalid(
                "client_id must equal the document URL exactly".into(),
            ))
        }
        _ => {
            return Err(DocumentError::Invalid(
                "client_id is required and must be a string".into(),
            ))
        }
    }
    for forbidden in ["client_secret", "client_secret_expires_at"] {
        if obj.contains_key(forbidden) {
            return Err(DocumentError::Invalid(format!(
                "{forbidden} must not appear in a metadata document"
            )));
        }
    }
    let metadata = if obj.contains_key("token_endpoint_auth_method") {
        ClientMetadata::from_json(&value)
    } else {
        // A document client is public unless it says otherwise; RFC 7591's default does not apply.
        let mut with_default = value.clone();
        with_default["token_endpoint_auth_method"] = "none".into();
        ClientMetadata::from_json(&with_default)
    }
    .map_err(|e| DocumentError::Invalid(e.to_string()))?;
    if metadata.token_endpoint_auth_method != TokenEndpointAuthMethod::None {
        return Err(DocumentError::Invalid(
            "token_endpoint_auth_method: only none (a public client) is supported for metadata documents".into(),
        ));
    }
    Ok(Client::from_metadata(
        client_id.to_string(),
        metadata,
        None,
        ClientKind::MetadataDocument,
    ))
}

struct CacheEntry {
    client: Arc<Client>,
    expires: Instant,
}

pub struct MetadataDocuments {
    settings: ClientIdMetadataDocuments,
    roots: Vec<reqwest::Certificate>,
    cache: Mutex<HashMap<String, CacheEntry>>,
}

impl MetadataDocuments {
    /// Reads the extra root certificates; errors name the setting.
    pub fn new(settings: ClientIdMetadataDocuments) -> anyhow::Result<Self> {
        let mut roots = Vec::new();
        for (i, path) in settings.extra_root_certificates.iter().enumerate() {
            let field = format!(
                "authorization_server.client_id_metadata_documents.extra_root_certificates[{i}]"
            );
            let pem = std::fs::read(path)
                .map_err(|e| anyhow::anyhow!("{field}: cannot read {}: {e}", path.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                anyhow::anyhow!("{field}: {} is not a PEM certificate: {e}", path.display())
            })?;
            if certs.is_empty() {
                anyhow::bail!("{field}: {} holds no PEM certificate", path.display());
            }
            roots.extend(certs);
        }
        Ok(Self {
            settings,
            roots,
            cache: Mutex::new(HashMap::new()),
        })
    }

    pub fn enabled(&self) -> bool {
        self.settings.enabled
    }

    /// The client a metadata-document `client_id` describes, from cache or fetched. Each fetch
    /// (a cache miss) is counted in `metrics`.
    pub async fn resolve(
        &self,
        client_id: &str,
        metrics: &Metrics,
    ) -> Result<Arc<Client>, DocumentError> {
        if !self.settings.enabled {
            return Err(DocumentError::Disabled);
        }
        let url = validate_client_id_url(client_id)?;
        if let Some(client) = self.cached(client_id) {
            return Ok(client);
        }
        let fetched = match self.fetch(&url).await {
            Ok((body, headers)) => parse_document(client_id, &body).map(|c| (c, headers)),
            Err(e) => Err(e),
        };
        let outcome = match &fetched {
            Ok(_) => Outcome::Success,
            Err(e) => Outcome::Error(e.code()),
        };
        metrics.registration(RegistrationKind::MetadataDocument, outcome);
        let (client, headers) = fetched?;
        let client = Arc::new(client);
        let lifetime = cache_lifetime(
            &headers,
            SystemTime::now(),
            self.settings.default_cache_lifetime,
            self.settings.max_cache_lifetime,
        );
        if let Some(lifetime) = lifetime {
            self.store(client_id, client.clone(), lifetime);
        }
        Ok(client)
    }

    fn cached(&self, client_id: &str) -> Option<Arc<Client>> {
        let cache = self.cache.lock().ok()?;
        cache
            .get(client_id)
            .filter(|e| e.expires > Instant::now())
            .map(|e| e.client.clone())
    }

    fn store(&self, client_id: &str, client: Arc<Client>, lifetime: Duration) {
        let Ok(mut cache) = self.cache.lock() else {
            return;
        };
        let now = Instant::now();
        if cache.len() >= MAX_CACHE_ENTRIES {
            cache.retain(|_, e| e.expires > now);
        }
        if cache.len() < MAX_CACHE_ENTRIES {
            cache.insert(
                client_id.to_string(),
                CacheEntry {
                    client,
                    expires: now + lifetime,
                },
            );
        }
    }

    async fn fetch(&self, url: &Url) -> Result<(Vec<u8>, HeaderMap), DocumentError> {
        let timeout = self.settings.fetch_timeout;
        let port = url.port_or_known_default().unwrap_or(443);
        let (domain, addrs): (Option<&str>, Vec<SocketAddr>) = match url.host() {
            Some(url::Host::Ipv4(ip)) => (None, vec![SocketAddr::new(IpAddr::V4(ip), port)]),
            Some(url::Host::Ipv6(ip)) => (None, vec![SocketAddr::new(IpAddr::V6(ip), port)]),
            Some(url::Host::Domain(domain)) => {
                let found = tokio::time::timeout(timeout, tokio::net::lookup_host((domain, port)))
                    .await
                    .map_err(|_| DocumentError::Resolve("timed out".into()))?
                    .map_err(|e| DocumentError::Resolve(e.to_string()))?;
                (Some(domain), found.collect())
            }
            None => return Err(DocumentError::InvalidUrl("must name a host".into())),
        };
        let Some(pinned) = addrs.first().copied() else {
            return Err(DocumentError::Resolve("no addresses".into()));
        };
        if !self.settings.allow_private_addresses {
            // Every address must be public, so a DNS answer mixing in an internal one is refused.
            if let Some(bad) = addrs.iter().find(|a| address_is_forbidden(a.ip())) {
                return Err(DocumentError::ForbiddenAddress(bad.ip()));
            }
        }
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout)
            .https_only(true)
            .no_proxy()
            .user_agent(concat!("mcpgate-token-service/", env!("CARGO_PKG_VERSION")));
        if let Some(domain) = domain {
            builder = builder.resolve(domain, pinned);
        }
        for root in &self.roots {
            builder = builder.add_root_certificate(root.clone());
        }
        let http = builder
            .build()
            .map_err(|e| DocumentError::Fetch(e.to_string()))?;
        let mut response = http
            .get(url.clone())
            .header(header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| DocumentError::Fetch(describe(e)))?;
        let status = response.status();
        if status.is_redirection() {
            return Err(DocumentError::Redirect(status.as_u16()));
        }
        if status != reqwest::StatusCode::OK {
            return Err(DocumentError::Status(status.as_u16()));
        }
        let max = self.settings.max_bytes;
        if response
            .content_length()
            .is_some_and(|len| len > max as u64)
        {
            return Err(DocumentError::TooLarge(max));
        }
        let headers = response.headers().clone();
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| DocumentError::Fetch(describe(e)))?
        {
            if body.len() + chunk.len() > max {
                return Err(DocumentError::TooLarge(max));
            }
            body.extend_from_slice(&chunk);
        }
        Ok((body, headers))
    }
}

/// A reqwest error's message with its causes but without the URL (already known to the caller).
fn describe(e: reqwest::Error) -> String {
    if e.is_timeout() {
        return "timed out (client_id_metadata_documents.fetch_timeout)".into();
    }
    format!("{:#}", anyhow::Error::from(e.without_url()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn v4_classifier() {
        for bad in [
            "0.0.0.0",
            "10.1.2.3",
            "127.0.0.1",
            "100.64.0.1",
            "100.127.255.255",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "240.0.0.1",
            "255.255.255.255",
        ] {
            assert!(address_is_forbidden(bad.parse().expect("ip")), "{bad}");
        }
        for good in [
            "1.1.1.1",
            "8.8.8.8",
            "100.63.255.255",
            "100.128.0.1",
            "172.15.0.1",
            "172.32.0.1",
            "93.184.216.34",
        ] {
            assert!(!address_is_forbidden(good.parse().expect("ip")), "{good}");
        }
    }

    #[test]
    fn v6_classifier_including_embedded_v4() {
        for bad in [
            "::",
            "::1",
            "fe80::1",
            "fc00::1",
            "fd12:3456::1",
            "ff02::1",
            "2001:db8::1",
            "3fff::1",
            "2001::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a00:1",
            "2002:c0a8:0101::1",
            "::127.0.0.1",
            "100::1",
            "fec0::1",
        ] {
            assert!(address_is_forbidden(bad.parse().expect("ip")), "{bad}");
        }
        for good in [
            "2606:4700:4700::1111",
            "2a00:1450:4001:80b::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:0808:0808::1",
        ] {
            assert!(!address_is_forbidden(good.parse().expect("ip")), "{good}");
        }
    }

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(k.clone(), HeaderValue::from_str(v).expect("value"));
        }
        h
    }

    #[test]
    fn cache_headers() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let d = Duration::from_secs(300);
        let max = Duration::from_secs(3600);
        let life =
            |pairs: &[(header::HeaderName, &str)]| cache_lifetime(&headers(pairs), now, d, max);
        assert_eq!(life(&[]), Some(d));
        assert_eq!(
            life(&[(header::CACHE_CONTROL, "public, max-age=60")]),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            life(&[(header::CACHE_CONTROL, "Max-Age=\"120\"")]),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            life(&[(header::CACHE_CONTROL, "max-age=999999")]),
            Some(max)
        );
        assert_eq!(life(&[(header::CACHE_CONTROL, "max-age=0")]), None);
        assert_eq!(life(&[(header::CACHE_CONTROL, "no-store")]), None);
        assert_eq!(
            life(&[
                (header::CACHE_CONTROL, "max-age=60"),
                (header::CACHE_CONTROL, "no-cache")
            ]),
            None
        );
        assert_eq!(life(&[(header::CACHE_CONTROL, "max-age=soon")]), None);
        let in_ten_minutes = httpdate::fmt_http_date(now + Duration::from_secs(600));
        assert_eq!(
            life(&[(header::EXPIRES, &in_ten_minutes)]),
            Some(Duration::from_secs(600))
        );
        let date = httpdate::fmt_http_date(now + Duration::from_secs(500));
        assert_eq!(
            life(&[(header::EXPIRES, &in_ten_minutes), (header::DATE, &date)]),
            Some(Duration::from_secs(100))
        );
        let past = httpdate::fmt_http_date(now - Duration::from_secs(1));
        assert_eq!(life(&[(header::EXPIRES, &past)]), None);
        assert_eq!(life(&[(header::EXPIRES, "0")]), None);
        assert_eq!(
            life(&[
                (header::CACHE_CONTROL, "max-age=30"),
                (header::EXPIRES, &in_ten_minutes)
            ]),
            Some(Duration::from_secs(30))
        );
    }

    #[test]
    fn client_id_urls() {
        assert!(validate_client_id_url("https://app.example/oauth/client.json").is_ok());
        assert!(validate_client_id_url("http://app.example/client.json").is_err());
        assert!(validate_client_id_url("https://app.example").is_err());
        assert!(validate_client_id_url("https://app.example/").is_err());
        assert!(validate_client_id_url("https://app.example/a#b").is_err());
        assert!(validate_client_id_url("https://u:p@app.example/a").is_err());
        assert!(validate_client_id_url("https://app.example/a/../b").is_err());
    }

    #[test]
    fn documents_are_validated() {
        let id = "https://app.example/client.json";
        let doc = |v: serde_json::Value| serde_json::to_vec(&v).expect("json");
        let ok = parse_document(
            id,
            &doc(serde_json::json!({
                "client_id": id, "client_name": "App", "redirect_uris": ["http://127.0.0.1:7777/cb"]
            })),
        )
        .expect("valid");
        assert_eq!(ok.auth_method, TokenEndpointAuthMethod::None);
        assert_eq!(ok.kind, ClientKind::MetadataDocument);
        let err = |v| {
            parse_document(id, &doc(v))
                .expect_err("rejected")
                .to_string()
        };
        assert!(err(serde_json::json!({"client_id": format!("{id}/"), "redirect_uris": ["https://a.example/cb"]})).contains("equal"));
        assert!(err(serde_json::json!({"client_id": id})).contains("redirect_uris"));
        assert!(err(
            serde_json::json!({"client_id": id, "redirect_uris": ["http://evil.example/cb"]})
        )
        .contains("redirect_uris[0]"));
        assert!(err(serde_json::json!({"client_id": id, "redirect_uris": ["https://a.example/cb"], "token_endpoint_auth_method": "client_secret_basic"})).contains("none"));
        assert!(err(serde_json::json!({"client_id": id, "redirect_uris": ["https://a.example/cb"], "client_secret": "x"})).contains("client_secret"));
        assert!(parse_document(id, b"[1,2]").is_err());
    }

    #[tokio::test]
    async fn private_addresses_are_refused_before_connecting() {
        let docs = MetadataDocuments::new(ClientIdMetadataDocuments::default()).expect("settings");
        let err = docs
            .resolve("https://127.0.0.1:1/client.json", &Metrics::new(None))
            .await
            .expect_err("refused");
        assert_eq!(
            err,
            DocumentError::ForbiddenAddress("127.0.0.1".parse().expect("ip"))
        );
        let err = docs
            .resolve("https://[::ffff:10.0.0.1]/client.json", &Metrics::new(None))
            .await
            .expect_err("refused");
        assert!(matches!(err, DocumentError::ForbiddenAddress(_)), "{err}");
        let err = docs
            .resolve("https://localhost:1/client.json", &Metrics::new(None))
            .await
            .expect_err("refused");
        assert!(matches!(err, DocumentError::ForbiddenAddress(_)), "{err}");
        let disabled = MetadataDocuments::new(ClientIdMetadataDocuments {
            enabled: false,
            ..Default::default()
        })
        .expect("settings");
        assert_eq!(
            disabled
                .resolve("https://app.example/c", &Metrics::new(None))
                .await
                .expect_err("off"),
            DocumentError::Disabled
        );
    }
}
