//! Verifying compact JWS tokens signed with someone else's key: a client's `private_key_jwt`
//! assertion, an enterprise identity provider's ID-JAG. The header, the key a JWK Set holds for
//! it (RSA, EC P-256/P-384, Ed25519), and the signature with the time claims (`exp`, `nbf`,
//! `iat`, with leeway). The other claims are checked by the callers, on the payload returned.
//! Plain functions; the JWK Set cache (`KeySets`) fetches keys published at a URL.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jwt_simple::prelude::*;
use serde_json::Value;

/// The JOSE header fields the checks use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub alg: String,
    pub kid: Option<String>,
    pub typ: Option<String>,
}

/// Why a JWS was refused. `Display` names what failed, never the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoseError {
    #[error("it is not a well-formed signed JWT")]
    Malformed,
    #[error("it is signed with {0}, which is not accepted here")]
    AlgorithmNotAllowed(String),
    #[error("it is signed by a key that is not published (kid {0})")]
    UnknownKey(String),
    #[error("the published key for it is not usable: {0}")]
    BadKey(String),
    #[error("its signature does not verify")]
    Signature,
    #[error("it has expired")]
    Expired,
    #[error("it is not valid yet (nbf)")]
    NotYetValid,
    #[error("it was issued in the future (iat)")]
    IssuedInFuture,
    #[error("its claims are not valid ({0})")]
    Claims(String),
}

fn b64(part: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).ok()
}

/// The header of a compact JWS (unverified).
pub fn header(raw: &str) -> Result<Header, JoseError> {
    let mut parts = raw.split('.');
    let (Some(h), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JoseError::Malformed);
    };
    let value: Value = b64(h)
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or(JoseError::Malformed)?;
    let text = |k: &str| value.get(k).and_then(Value::as_str).map(str::to_string);
    Ok(Header {
        alg: text("alg").ok_or(JoseError::Malformed)?,
        kid: text("kid"),
        typ: text("typ"),
    })
}

/// The payload of a compact JWS (call after `verify`).
pub fn payload(raw: &str) -> Result<Value, JoseError> {
    let middle = raw.split('.').nth(1).ok_or(JoseError::Malformed)?;
    let value: Value = b64(middle)
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or(JoseError::Malformed)?;
    if value.is_object() {
        Ok(value)
    } else {
        Err(JoseError::Malformed)
    }
}

/// The JWK in `jwks` that verifies a token with `header`: the one with its `kid`, or without a
/// `kid` the only signing key of the algorithm's key type. A key restricted to another `alg` or
/// `use` never matches.
pub fn select_key<'a>(jwks: &'a Value, header: &Header) -> Result<&'a Value, JoseError> {
    let kty = match header.alg.as_str() {
        a if a.starts_with("RS") || a.starts_with("PS") => "RSA",
        a if a.starts_with("ES") => "EC",
        "EdDSA" => "OKP",
        other => return Err(JoseError::AlgorithmNotAllowed(other.to_string())),
    };
    let keys = jwks
        .get("keys")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let usable = |k: &&Value| {
        let s = |f: &str| k.get(f).and_then(Value::as_str);
        s("kty") == Some(kty)
            && s("alg").is_none_or(|a| a == header.alg)
            && s("use").is_none_or(|u| u == "sig")
    };
    let candidates: Vec<&Value> = match &header.kid {
        Some(kid) => keys
            .iter()
            .filter(|k| k.get("kid").and_then(Value::as_str) == Some(kid))
            .filter(usable)
            .collect(),
        None => keys.iter().filter(usable).collect(),
    };
    match candidates.as_slice() {
        [one] => Ok(one),
        _ => Err(JoseError::UnknownKey(
            header.kid.clone().unwrap_or_else(|| "absent".into()),
        )),
    }
}

fn member(jwk: &Value, name: &str) -> Result<Vec<u8>, JoseError> {
    jwk.get(name)
        .and_then(Value::as_str)
        .and_then(b64)
        .ok_or_else(|| JoseError::BadKey(format!("{name} is missing or not base64url")))
}

fn ec_point(jwk: &Value, crv: &str) -> Result<Vec<u8>, JoseError> {
    if jwk.get("crv").and_then(Value::as_str) != Some(crv) {
        return Err(JoseError::BadKey(format!("the curve must be {crv}")));
    }
    let mut point = vec![0x04];
    point.extend(member(jwk, "x")?);
    point.extend(member(jwk, "y")?);
    Ok(point)
}

/// Verifies `raw`'s signature with `jwk` (for `header.alg`, which must be in `allowed`) and its
/// time claims at `now` with `leeway_secs`; returns the payload.
pub fn verify_with(
    raw: &str,
    header: &Header,
    jwk: &Value,
    allowed: &[String],
    now: i64,
    leeway_secs: u64,
) -> Result<Value, JoseError> {
    if !allowed.contains(&header.alg) {
        return Err(JoseError::AlgorithmNotAllowed(header.alg.clone()));
    }
    let options = VerificationOptions {
        time_tolerance: Some(jwt_simple::prelude::Duration::from_secs(leeway_secs)),
        artificial_time: Some(jwt_simple::prelude::Duration::from_secs(now.max(0) as u64)),
        ..Default::default()
    };
    let bad = |e: jwt_simple::Error| JoseError::BadKey(e.to_string());
    macro_rules! rsa {
        ($t:ty) => {
            <$t>::from_components(&member(jwk, "n")?, &member(jwk, "e")?)
                .map_err(bad)?
                .verify_token::<Value>(raw, Some(options))
        };
    }
    let verified = match header.alg.as_str() {
        "RS256" => rsa!(RS256PublicKey),
        "RS384" => rsa!(RS384PublicKey),
        "RS512" => rsa!(RS512PublicKey),
        "PS256" => rsa!(PS256PublicKey),
        "PS384" => rsa!(PS384PublicKey),
        "PS512" => rsa!(PS512PublicKey),
        "ES256" => ES256PublicKey::from_bytes(&ec_point(jwk, "P-256")?)
            .map_err(bad)?
            .verify_token::<Value>(raw, Some(options)),
        "ES384" => ES384PublicKey::from_bytes(&ec_point(jwk, "P-384")?)
            .map_err(bad)?
            .verify_token::<Value>(raw, Some(options)),
        "EdDSA" => {
            if jwk.get("crv").and_then(Value::as_str) != Some("Ed25519") {
                return Err(JoseError::BadKey("the curve must be Ed25519".into()));
            }
            Ed25519PublicKey::from_bytes(&member(jwk, "x")?)
                .map_err(bad)?
                .verify_token::<Value>(raw, Some(options))
        }
        other => return Err(JoseError::AlgorithmNotAllowed(other.to_string())),
    };
    if let Err(e) = verified {
        use jwt_simple::JWTError as J;
        return Err(match e.downcast_ref::<J>() {
            Some(J::TokenHasExpired) => JoseError::Expired,
            Some(J::TokenNotValidYet) => JoseError::NotYetValid,
            Some(J::ClockDrift) => JoseError::IssuedInFuture,
            Some(J::InvalidSignature) => JoseError::Signature,
            Some(J::AlgorithmMismatch) => JoseError::Signature,
            Some(other) => JoseError::Claims(other.to_string()),
            None => JoseError::Signature,
        });
    }
    payload(raw)
}

/// `header` + `select_key` + `verify_with`.
pub fn verify(
    raw: &str,
    jwks: &Value,
    allowed: &[String],
    now: i64,
    leeway_secs: u64,
) -> Result<(Header, Value), JoseError> {
    let header = header(raw)?;
    if !allowed.contains(&header.alg) {
        return Err(JoseError::AlgorithmNotAllowed(header.alg));
    }
    let jwk = select_key(jwks, &header)?;
    let claims = verify_with(raw, &header, jwk, allowed, now, leeway_secs)?;
    Ok((header, claims))
}

/// `aud` as a list (a string or an array of strings).
pub fn audiences(claims: &Value) -> Vec<&str> {
    match claims.get("aud") {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    }
}

// --- Published key sets ----------------------------------------------------------------------

/// How long a fetched JWK Set is used before it is fetched again.
pub const KEYS_TTL: Duration = Duration::from_secs(300);
/// The least time between two re-fetches of one URL for an unknown `kid`.
pub const KEY_REFETCH_INTERVAL: Duration = Duration::from_secs(5);
const MAX_JWKS_BYTES: usize = 256 * 1024;

struct CachedKeys {
    keys: Arc<Value>,
    fetched_at: Instant,
}

/// JWK Sets fetched from `jwks_uri`s (enterprise providers, clients), cached per URL.
pub struct KeySets {
    http: reqwest::Client,
    cache: Mutex<HashMap<String, CachedKeys>>,
    refetched: Mutex<HashMap<String, Instant>>,
    /// URLs the operator configured (enterprise providers' `jwks_uri`): fetched as they are.
    /// Any other (a client's registered `jwks_uri`) must resolve to public addresses only.
    trusted: Mutex<HashSet<String>>,
}

impl KeySets {
    pub fn new() -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .user_agent(concat!("mcpgate-token-service/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            http,
            cache: Mutex::new(HashMap::new()),
            refetched: Mutex::new(HashMap::new()),
            trusted: Mutex::new(HashSet::new()),
        })
    }

    /// Marks `url` as configured by the operator (it may be on a private network).
    pub fn trust(&self, url: &str) {
        self.trusted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(url.to_string());
    }

    fn public_only(&self, url: &str) -> bool {
        !self
            .trusted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(url)
    }

    /// A client for `url` whose every address is public, pinned to the first (a client-chosen
    /// `jwks_uri` must not reach internal services, also not by a DNS answer changing between
    /// the check and the connection).
    async fn public_client(url: &str) -> Result<reqwest::Client, String> {
        use std::net::{IpAddr, SocketAddr};
        let parsed = url::Url::parse(url).map_err(|_| "the jwks_uri is not a URL".to_string())?;
        let port = parsed.port_or_known_default().unwrap_or(443);
        let (domain, addrs): (Option<String>, Vec<SocketAddr>) = match parsed.host() {
            Some(url::Host::Ipv4(ip)) => (None, vec![SocketAddr::new(IpAddr::V4(ip), port)]),
            Some(url::Host::Ipv6(ip)) => (None, vec![SocketAddr::new(IpAddr::V6(ip), port)]),
            Some(url::Host::Domain(d)) => {
                let found = tokio::time::timeout(
                    Duration::from_secs(10),
                    tokio::net::lookup_host((d, port)),
                )
                .await
                .map_err(|_| "resolving its host timed out".to_string())?
                .map_err(|_| "its host does not resolve".to_string())?;
                (Some(d.to_string()), found.collect())
            }
            None => return Err("the jwks_uri names no host".into()),
        };
        let pinned = addrs
            .first()
            .copied()
            .ok_or_else(|| "its host has no address".to_string())?;
        if addrs
            .iter()
            .any(|a| crate::clients::metadata_document::address_is_forbidden(a.ip()))
        {
            return Err("its host is not a public address".into());
        }
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .https_only(true)
            .no_proxy()
            .user_agent(concat!("mcpgate-token-service/", env!("CARGO_PKG_VERSION")));
        if let Some(domain) = &domain {
            builder = builder.resolve(domain, pinned);
        }
        builder.build().map_err(|_| "no HTTP client".to_string())
    }

    async fn fetch(&self, url: &str) -> Result<Arc<Value>, String> {
        let public_only = self.public_only(url);
        let http = if public_only {
            Self::public_client(url).await?
        } else {
            self.http.clone()
        };
        let response = http
            .get(url)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    "the request timed out".to_string()
                } else {
                    "the keys could not be fetched".to_string()
                }
            })?;
        if !response.status().is_success() {
            return Err(format!("the key set answered HTTP {}", response.status()));
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|_| "the key set could not be read".to_string())?;
        if bytes.len() > MAX_JWKS_BYTES {
            return Err("the key set is too large".into());
        }
        let value: Value =
            serde_json::from_slice(&bytes).map_err(|_| "the key set is not JSON".to_string())?;
        mcpgate_config::identity::validate_jwks(&value)
            .map_err(|(f, r)| format!("the key set is not valid: jwks{f} {r}"))?;
        let keys = Arc::new(value);
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).insert(
            url.to_string(),
            CachedKeys {
                keys: keys.clone(),
                fetched_at: Instant::now(),
            },
        );
        Ok(keys)
    }

    /// The key set at `url`, from the cache while fresh.
    pub async fn get(&self, url: &str) -> Result<Arc<Value>, String> {
        let cached = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(url)
            .filter(|c| c.fetched_at.elapsed() < KEYS_TTL)
            .map(|c| c.keys.clone());
        match cached {
            Some(keys) => Ok(keys),
            None => self.fetch(url).await,
        }
    }

    /// Fetches `url` again for a `kid` it did not hold, at most every `KEY_REFETCH_INTERVAL`;
    /// `None` when that was too recent.
    pub async fn refetch(&self, url: &str) -> Option<Result<Arc<Value>, String>> {
        {
            let mut last = self.refetched.lock().unwrap_or_else(|e| e.into_inner());
            if last
                .get(url)
                .is_some_and(|t| t.elapsed() < KEY_REFETCH_INTERVAL)
            {
                return None;
            }
            last.insert(url.to_string(), Instant::now());
        }
        Some(self.fetch(url).await)
    }

    /// Verifies `raw` with the keys at `url`, re-fetching them once (rate limited) when the
    /// token names a key the cached set does not hold.
    pub async fn verify(
        &self,
        url: &str,
        raw: &str,
        allowed: &[String],
        now: i64,
        leeway_secs: u64,
    ) -> Result<Result<(Header, Value), JoseError>, String> {
        let keys = self.get(url).await?;
        match verify(raw, &keys, allowed, now, leeway_secs) {
            Err(JoseError::UnknownKey(kid)) => match self.refetch(url).await {
                Some(fresh) => Ok(verify(raw, fresh?.as_ref(), allowed, now, leeway_secs)),
                None => Ok(Err(JoseError::UnknownKey(kid))),
            },
            other => Ok(other),
        }
    }
}

/// Keys in `jwks` by `kid`, for tests and logs.
pub fn key_ids(jwks: &Value) -> HashSet<String> {
    jwks.get("keys")
        .and_then(Value::as_array)
        .map(|keys| {
            keys.iter()
                .filter_map(|k| k.get("kid").and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    pub const RSA_PEM: &str = include_str!("../identity/oidc/test_rsa_key.pem");
    pub const OTHER_RSA_PEM: &str = include_str!("../identity/oidc/test_rsa_key_2.pem");

    pub fn rsa_jwk(pem: &str, kid: &str) -> Value {
        let c = RS256KeyPair::from_pem(pem)
            .expect("pem")
            .public_key()
            .to_components();
        json!({"kty": "RSA", "kid": kid, "use": "sig",
               "n": URL_SAFE_NO_PAD.encode(c.n), "e": URL_SAFE_NO_PAD.encode(c.e)})
    }

    /// Signs `body` (the whole claim set) with RS256, `kid` and `typ`.
    pub fn sign_rs(pem: &str, kid: Option<&str>, typ: &str, body: &Value) -> String {
        let mut key = RS256KeyPair::from_pem(pem).expect("pem");
        if let Some(kid) = kid {
            key = key.with_key_id(kid);
        }
        let claims = JWTClaims {
            issued_at: None,
            expires_at: None,
            invalid_before: None,
            issuer: None,
            subject: None,
            audiences: None,
            jwt_id: None,
            nonce: None,
            custom: body.clone(),
        };
        key.sign_with_options(
            claims,
            &HeaderOptions {
                signature_type: Some(typ.into()),
                ..Default::default()
            },
        )
        .expect("sign")
    }

    fn algs(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn rsa_ec_and_ed25519_keys_verify() {
        let now = 1_700_000_000;
        let body = json!({"iss": "x", "exp": now + 60, "iat": now});
        let jwks = json!({"keys": [rsa_jwk(RSA_PEM, "r1")]});
        let raw = sign_rs(RSA_PEM, Some("r1"), "JWT", &body);
        let (h, claims) = verify(&raw, &jwks, &algs(&["RS256"]), now, 5).expect("verifies");
        assert_eq!(
            (h.alg.as_str(), claims["iss"].as_str()),
            ("RS256", Some("x"))
        );

        let ec = ES256KeyPair::generate().with_key_id("e1");
        let point = ec.public_key().public_key().to_bytes_uncompressed();
        let ec_jwk = json!({"kty": "EC", "crv": "P-256", "kid": "e1",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..])});
        let raw = ec
            .sign(Claims::with_custom_claims(
                json!({"a": 1}),
                jwt_simple::prelude::Duration::from_secs(60),
            ))
            .expect("sign");
        let now_real = chrono::Utc::now().timestamp();
        assert!(verify(
            &raw,
            &json!({"keys": [ec_jwk]}),
            &algs(&["ES256"]),
            now_real,
            5
        )
        .is_ok());

        let ed = Ed25519KeyPair::generate();
        let ed_jwk = json!({"kty": "OKP", "crv": "Ed25519",
            "x": URL_SAFE_NO_PAD.encode(ed.public_key().to_bytes())});
        let raw = ed
            .sign(Claims::with_custom_claims(
                json!({}),
                jwt_simple::prelude::Duration::from_secs(60),
            ))
            .expect("sign");
        assert!(verify(
            &raw,
            &json!({"keys": [ed_jwk]}),
            &algs(&["EdDSA"]),
            now_real,
            5
        )
        .is_ok());
    }

    #[tokio::test]
    async fn a_client_jwks_uri_never_reaches_private_addresses() {
        let sets = KeySets::new().expect("client");
        for url in [
            "https://127.0.0.1:9/jwks",
            "https://[::1]:9/jwks",
            "https://10.0.0.1:9/jwks",
            "https://localhost:9/jwks",
        ] {
            let e = sets.get(url).await.expect_err("refused");
            assert!(e.contains("not a public address"), "{url}: {e}");
        }
        // An operator-configured URL is fetched as it is (here: nothing listens).
        sets.trust("http://127.0.0.1:9/jwks");
        let e = sets.get("http://127.0.0.1:9/jwks").await.expect_err("down");
        assert!(!e.contains("public"), "{e}");
    }

    #[test]
    fn every_refusal_is_named() {
        let now = 1_700_000_000;
        let jwks = json!({"keys": [rsa_jwk(RSA_PEM, "r1")]});
        let rs = algs(&["RS256"]);
        let good = json!({"exp": now + 60, "iat": now});
        let refused = |raw: &str, a: &[String], t: i64| verify(raw, &jwks, a, t, 5).unwrap_err();

        assert_eq!(refused("a.b", &rs, now), JoseError::Malformed);
        assert_eq!(refused("!!.b.c", &rs, now), JoseError::Malformed);
        let raw = sign_rs(RSA_PEM, Some("r1"), "JWT", &good);
        assert_eq!(
            refused(&raw, &algs(&["ES256"]), now),
            JoseError::AlgorithmNotAllowed("RS256".into())
        );
        assert_eq!(
            refused(&sign_rs(RSA_PEM, Some("r9"), "JWT", &good), &rs, now),
            JoseError::UnknownKey("r9".into())
        );
        assert_eq!(
            refused(&sign_rs(OTHER_RSA_PEM, Some("r1"), "JWT", &good), &rs, now),
            JoseError::Signature
        );
        assert_eq!(refused(&raw, &rs, now + 66), JoseError::Expired);
        let future = sign_rs(RSA_PEM, Some("r1"), "JWT", &json!({"iat": now + 100}));
        assert_eq!(refused(&future, &rs, now), JoseError::IssuedInFuture);
        let nbf = sign_rs(RSA_PEM, Some("r1"), "JWT", &json!({"nbf": now + 100}));
        assert_eq!(refused(&nbf, &rs, now), JoseError::NotYetValid);
        // `alg: none` never verifies, even when listed.
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(good.to_string())
        );
        assert!(verify(&none, &jwks, &algs(&["none"]), now, 5).is_err());
        // A key restricted to another algorithm is not used.
        let mut restricted = rsa_jwk(RSA_PEM, "r1");
        restricted["alg"] = json!("PS256");
        assert!(matches!(
            verify(&raw, &json!({"keys": [restricted]}), &rs, now, 5),
            Err(JoseError::UnknownKey(_))
        ));
        // Without a kid, one usable key is chosen; two are ambiguous.
        let no_kid = sign_rs(RSA_PEM, None, "JWT", &good);
        assert!(verify(&no_kid, &jwks, &rs, now, 5).is_ok());
        let two = json!({"keys": [rsa_jwk(RSA_PEM, "r1"), rsa_jwk(OTHER_RSA_PEM, "r2")]});
        assert!(verify(&no_kid, &two, &rs, now, 5).is_err());
        assert_eq!(key_ids(&two).len(), 2);
    }
}
