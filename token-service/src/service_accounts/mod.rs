//! Service accounts: callers that are not people. An operator creates one with
//! `mcpgate-token-service service-account create`, which prints once either a long-lived TE
//! (`sub = sa:<id>`, `aud` = the account's routes, `client_id = mcpgate:service-account`) or a
//! client id and secret for the `client_credentials` grant. A revoked account's subject is on the
//! revocation list the filter polls, so its tokens stop working everywhere.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use axum::http::HeaderMap;
use clap::{Args, Subcommand};
use mcpgate_config::gateway::{canonical_resource, ServerRoute, TokenEndpointAuthMethod};

use crate::clients;
use crate::clock::{now, secs};
use crate::http::params::Params;
use crate::identity::users::UserClaims;
use crate::oauth::access_token::{self, Grant};
use crate::oauth::error::OAuthError;
use crate::oauth::opaque_token;
use crate::oauth::token_endpoint::TokenResponse;
use crate::runtime::signing_keys::SigningKeys;
use crate::state::AppState;
use crate::store::{ServiceAccount, Store};

/// `sub` (and `sid`) of a service account's tokens: this prefix plus the account id.
pub const SUBJECT_PREFIX: &str = "sa:";
/// Client id of a client-credentials account: this prefix plus the account id.
pub const CLIENT_ID_PREFIX: &str = "sa-";
/// `client_id` claim of the tokens `service-account create` prints.
pub const TOKEN_CLIENT_ID: &str = "mcpgate:service-account";
/// Lifetime of a printed token when `--expires` is not given.
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(90 * 24 * 3600);

pub fn subject(id: &str) -> String {
    format!("{SUBJECT_PREFIX}{id}")
}

/// Whether the account may still get and use tokens.
pub fn is_active(account: &ServiceAccount, t: i64) -> bool {
    account.revoked_at.is_none() && account.expires_at.is_none_or(|e| t < e)
}

/// Whether the subject of a verified TE may still act: people always (their tokens are revoked
/// one by one), a service account only while it exists, unrevoked and unexpired.
pub async fn subject_active(store: &Store, sub: &str, t: i64) -> anyhow::Result<bool> {
    let Some(id) = sub.strip_prefix(SUBJECT_PREFIX) else {
        return Ok(true);
    };
    Ok(store
        .service_account(id)
        .await?
        .is_some_and(|a| is_active(&a, t)))
}

/// Subjects of revoked accounts whose tokens could still be accepted: a printed token lives
/// until the account's expiry; client-credentials tokens at most one access-token lifetime after
/// the revocation. Verifiers tolerate `leeway` past a token's expiry.
pub fn revoked_subjects(
    accounts: &[ServiceAccount],
    t: i64,
    token_life: i64,
    leeway: i64,
) -> Vec<String> {
    accounts
        .iter()
        .filter_map(|a| {
            let revoked_at = a.revoked_at?;
            let live_until = match (&a.client_id, a.expires_at) {
                (Some(_), Some(e)) => e.min(revoked_at + token_life),
                (Some(_), None) => revoked_at + token_life,
                (None, Some(e)) => e,
                (None, None) => i64::MAX,
            };
            (t < live_until.saturating_add(leeway)).then(|| subject(&a.id))
        })
        .collect()
}

/// The resource URLs of `--route` values: route names or route URLs. Errors name the flag.
pub fn resolve_routes(routes: &[ServerRoute], given: &[String]) -> anyhow::Result<Vec<String>> {
    if given.is_empty() {
        bail!("--route is required: name at least one server route (its name or URL)");
    }
    let mut out: Vec<String> = Vec::new();
    for g in given {
        let by_name = routes.iter().find(|r| r.name == *g);
        let by_url = || {
            let c = canonical_resource(g)?;
            routes.iter().find(|r| r.resource == c)
        };
        let Some(route) = by_name.or_else(by_url) else {
            let known: Vec<&str> = routes.iter().map(|r| r.name.as_str()).collect();
            bail!(
                "--route {g:?} is not a server route of this gateway (known: {})",
                known.join(", ")
            );
        };
        if !out.contains(&route.resource) {
            out.push(route.resource.clone());
        }
    }
    Ok(out)
}

/// What `service-account create` asks for.
#[derive(Debug, Clone)]
pub struct NewAccount {
    pub name: String,
    pub email: String,
    pub groups: Vec<String>,
    /// Route names or URLs.
    pub routes: Vec<String>,
    pub expires: Option<Duration>,
    pub client_credentials: bool,
    /// `private_key_jwt`: the account's public keys (a JWK Set); implies client credentials
    /// without a secret.
    pub jwks: Option<serde_json::Value>,
}

/// What `service-account create` prints once.
#[derive(Debug)]
pub enum Created {
    Token {
        account: ServiceAccount,
        token: String,
    },
    ClientCredentials {
        account: ServiceAccount,
        client_id: String,
        client_secret: String,
    },
    /// A `private_key_jwt` account: the client id only; it signs with its own key.
    PrivateKeyJwt {
        account: ServiceAccount,
        client_id: String,
    },
}

fn validate_new(new: &NewAccount) -> anyhow::Result<()> {
    let name_ok = (1..=100).contains(&new.name.len())
        && new
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !name_ok {
        bail!("--name must be 1 to 100 characters: letters, digits, '-', '_' or '.'");
    }
    let at = new.email.find('@');
    if new.email.len() > 254
        || new
            .email
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
        || !matches!(at, Some(i) if i > 0 && i < new.email.len() - 1)
    {
        bail!("--email must be an address like robot@example.com");
    }
    for g in &new.groups {
        if g.is_empty() || g.len() > 200 || g.chars().any(char::is_control) {
            bail!("--group values must be 1 to 200 characters without control characters");
        }
    }
    if new.expires.is_some_and(|d| d.as_secs() == 0) {
        bail!("--expires must be longer than zero");
    }
    if let Some(jwks) = &new.jwks {
        mcpgate_config::identity::validate_jwks(jwks)
            .map_err(|(f, r)| anyhow::anyhow!("--jwks: jwks{f} {r}"))?;
    }
    Ok(())
}

fn new_id() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 8];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The identity a service account's tokens carry.
fn claims_of(account: &ServiceAccount) -> UserClaims {
    UserClaims {
        username: subject(&account.id),
        email: account.email.clone(),
        name: Some(account.name.clone()),
        groups: account.groups.clone(),
    }
}

/// Creates the account and its credential.
pub async fn create(
    store: &Store,
    keys: &SigningKeys,
    issuer: &str,
    routes: &[ServerRoute],
    new: NewAccount,
    t: i64,
) -> anyhow::Result<Created> {
    validate_new(&new)?;
    let resources = resolve_routes(routes, &new.routes)?;
    if store.service_account_by_name(&new.name).await?.is_some() {
        bail!(
            "--name: a service account named {:?} already exists",
            new.name
        );
    }
    let id = new_id();
    let key_jwt = new.jwks.is_some();
    let lifetime = match (new.expires, new.client_credentials || key_jwt) {
        (Some(d), _) => Some(secs(d)),
        (None, false) => Some(secs(DEFAULT_TOKEN_LIFETIME)),
        (None, true) => None,
    };
    let secret = (new.client_credentials && !key_jwt).then(opaque_token::generate);
    let account = ServiceAccount {
        id: id.clone(),
        name: new.name,
        email: new.email,
        groups: new.groups,
        routes: resources,
        created_at: t,
        expires_at: lifetime.map(|l| t + l),
        revoked_at: None,
        client_id: (secret.is_some() || key_jwt).then(|| format!("{CLIENT_ID_PREFIX}{id}")),
        client_secret_hash: secret.as_deref().map(opaque_token::hash),
        client_jwks: new.jwks.as_ref().map(|j| j.to_string()),
    };
    store.insert_service_account(&account).await?;
    tracing::info!(
        target: "mcpgate::audit",
        event = "service_account_created",
        service_account = %account.name,
        sub = %subject(&account.id),
        routes = %account.routes.join(" "),
        client_credentials = secret.is_some() || key_jwt,
        private_key_jwt = key_jwt,
    );
    if key_jwt {
        let client_id = account.client_id.clone().unwrap_or_default();
        return Ok(Created::PrivateKeyJwt { account, client_id });
    }
    if let Some(client_secret) = secret {
        let client_id = account.client_id.clone().unwrap_or_default();
        return Ok(Created::ClientCredentials {
            account,
            client_id,
            client_secret,
        });
    }
    let user = claims_of(&account);
    let sub = subject(&account.id);
    let grant = Grant {
        issuer,
        user: &user,
        sid: &sub,
        client_id: TOKEN_CLIENT_ID,
        resource: "",
        scope: None,
    };
    let life = u64::try_from(lifetime.unwrap_or(0)).unwrap_or(0);
    let minted = access_token::mint_for_audiences(keys, &grant, &account.routes, t, life)?;
    store
        .record_access_token(&minted.jti, &sub, minted.expires_at)
        .await?;
    Ok(Created::Token {
        account,
        token: minted.token,
    })
}

/// Revokes the named account.
pub async fn revoke(store: &Store, name: &str, t: i64) -> anyhow::Result<ServiceAccount> {
    let Some(account) = store.service_account_by_name(name).await? else {
        bail!("there is no service account named {name:?}");
    };
    if !store.revoke_service_account(name, t).await? {
        bail!("the service account {name:?} is already revoked");
    }
    tracing::info!(
        target: "mcpgate::audit",
        event = "service_account_revoked",
        service_account = %account.name,
        sub = %subject(&account.id),
    );
    Ok(ServiceAccount {
        revoked_at: Some(t),
        ..account
    })
}

// --- the client_credentials grant --------------------------------------------------------------

/// A `private_key_jwt` service account's client assertion: every check, then single use.
async fn key_jwt_authenticated(
    state: &AppState,
    account: &ServiceAccount,
    presented: &clients::PresentedCredentials,
    jwks: &serde_json::Value,
    t: i64,
) -> Result<(), OAuthError> {
    let client_id = account.client_id.clone().unwrap_or_default();
    let raw = presented.assertion.as_deref().unwrap_or_default();
    let audiences = [
        format!("{}{}", state.issuer, mcpgate_config::paths::TOKEN),
        state.issuer.clone(),
    ];
    let expected = clients::assertion::Expected {
        client_id: &client_id,
        audiences: &audiences,
        now: t,
        leeway_secs: state.config.authorization_server.leeway.as_secs(),
    };
    let accepted = clients::assertion::check(raw, jwks, &expected)?;
    if !state
        .store
        .use_assertion(
            &format!("client:{client_id}"),
            &accepted.jti,
            accepted.expires_at,
        )
        .await?
    {
        return Err(OAuthError::invalid_client(
            "client assertion: its jti was already used (a replayed assertion)",
        ));
    }
    Ok(())
}

/// `grant_type=client_credentials` at the token endpoint: only service accounts created with
/// `--client-credentials`, authenticated with `client_secret_basic` or `client_secret_post`.
pub async fn client_credentials(
    state: &AppState,
    headers: &HeaderMap,
    params: &Params,
    t: i64,
) -> Result<TokenResponse, OAuthError> {
    let presented = clients::presented_in_request(headers, params)?;
    let account = match state
        .store
        .service_account_by_client_id(&presented.client_id)
        .await?
    {
        Some(a) => a,
        None => {
            // Any other client: authenticate it as usual (unknown or wrong secret stays
            // invalid_client), then refuse the grant.
            crate::oauth::token_endpoint::authenticate_client(state, headers, params).await?;
            return Err(OAuthError::unauthorized_client(
                "the client_credentials grant is only available to service accounts",
            ));
        }
    };
    let basic = presented.method == TokenEndpointAuthMethod::ClientSecretBasic;
    let fail = |description: &str| {
        let e = OAuthError::invalid_client(description.to_string());
        if basic {
            e.with_basic_challenge()
        } else {
            e
        }
    };
    let authenticated = match (
        presented.method,
        &account.client_jwks,
        &presented.secret,
        &account.client_secret_hash,
    ) {
        (TokenEndpointAuthMethod::PrivateKeyJwt, Some(jwks), _, _) => {
            let jwks: serde_json::Value =
                serde_json::from_str(jwks).map_err(anyhow::Error::from)?;
            key_jwt_authenticated(state, &account, &presented, &jwks, t).await?;
            true
        }
        (TokenEndpointAuthMethod::PrivateKeyJwt, None, _, _) => {
            return Err(fail(
                "client authentication failed: this service account uses a client secret",
            ))
        }
        (_, Some(_), _, _) => return Err(fail(
            "client authentication failed: this service account is registered for private_key_jwt",
        )),
        (_, None, Some(secret), Some(hash)) => opaque_token::matches(secret, hash),
        _ => false,
    };
    if !authenticated {
        return Err(fail("client authentication failed"));
    }
    if !is_active(&account, t) {
        tracing::info!(target: "mcpgate::audit", event = "client_credentials_refused", service_account = %account.name, reason = "revoked or expired");
        return Err(fail("the service account is revoked or expired"));
    }
    let configured = |r: &String| state.routes.iter().any(|route| route.resource == *r);
    let requested = params.all("resource");
    let audiences: Vec<String> = match requested.as_slice() {
        [] => account
            .routes
            .iter()
            .filter(|r| configured(r))
            .cloned()
            .collect(),
        [one] => {
            let canonical = canonical_resource(one).ok_or_else(|| {
                OAuthError::invalid_target(
                    "resource must be an absolute http(s) URL without query or fragment",
                )
            })?;
            if !account.routes.contains(&canonical) || !configured(&canonical) {
                return Err(OAuthError::invalid_target(
                    "resource is not one of this service account's routes",
                ));
            }
            vec![canonical]
        }
        _ => return Err(OAuthError::invalid_target(
            "send at most one resource; without one the token is for all of the account's routes",
        )),
    };
    if audiences.is_empty() {
        return Err(OAuthError::invalid_target(
            "none of this service account's routes is a server route any more",
        ));
    }
    let user = claims_of(&account);
    let sub = subject(&account.id);
    let client_id = account.client_id.clone().unwrap_or_default();
    let grant = Grant {
        issuer: &state.issuer,
        user: &user,
        sid: &sub,
        client_id: &client_id,
        resource: &audiences[0],
        scope: None,
    };
    let lifetime = state
        .config
        .authorization_server
        .access_token_lifetime
        .as_secs();
    let minted = if audiences.len() == 1 {
        access_token::mint(&state.keys, &grant, t, lifetime)?
    } else {
        access_token::mint_for_audiences(&state.keys, &grant, &audiences, t, lifetime)?
    };
    state
        .store
        .record_access_token(&minted.jti, &sub, minted.expires_at)
        .await?;
    tracing::info!(
        target: "mcpgate::audit",
        event = "token_granted",
        grant_type = "client_credentials",
        client_id = %client_id,
        service_account = %account.name,
        user = %sub,
        route = %audiences.join(" "),
    );
    Ok(TokenResponse {
        access_token: minted.token,
        token_type: "Bearer",
        expires_in: i64::try_from(lifetime).unwrap_or(i64::MAX),
        refresh_token: None,
        scope: None,
    })
}

// --- command line ------------------------------------------------------------------------------

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a service account; prints its token (or client credentials) once.
    Create(CreateArgs),
    /// List service accounts (no secrets).
    List(ConfigOnly),
    /// Revoke a service account: its tokens stop working within seconds.
    Revoke(RevokeArgs),
}

#[derive(Debug, Args)]
pub struct ConfigOnly {
    /// The gateway file (YAML).
    #[arg(long, value_name = "FILE", env = "MCPGATE_CONFIG")]
    pub config: PathBuf,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    #[command(flatten)]
    pub config: ConfigOnly,
    /// Unique name of the account (letters, digits, '-', '_', '.').
    #[arg(long)]
    pub name: String,
    #[arg(long)]
    pub email: String,
    /// Group membership; repeat for several groups.
    #[arg(long = "group", value_name = "GROUP")]
    pub groups: Vec<String>,
    /// A server route the account may call, by name or URL; repeat for several.
    #[arg(long = "route", value_name = "ROUTE", required = true)]
    pub routes: Vec<String>,
    /// Lifetime of the account (e.g. 90d, 12h). Default: 90d for a printed token, no expiry
    /// for client credentials (their tokens live access_token_lifetime).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub expires: Option<Duration>,
    /// Issue a client_id and client_secret for the client_credentials grant instead of a token.
    #[arg(long)]
    pub client_credentials: bool,
    /// A JWK Set file (the account's public keys): client_credentials with private_key_jwt
    /// (RFC 7523) instead of a secret.
    #[arg(long, value_name = "FILE")]
    pub jwks: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
pub struct RevokeArgs {
    #[command(flatten)]
    pub config: ConfigOnly,
    /// The account's name.
    pub name: String,
}

fn time(t: Option<i64>) -> String {
    match t {
        Some(t) => humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + Duration::from_secs(u64::try_from(t).unwrap_or(0)),
        )
        .to_string(),
        None => "-".into(),
    }
}

/// The `service-account list` table.
pub fn table(accounts: &[ServiceAccount], routes: &[ServerRoute], t: i64) -> String {
    let route_name = |url: &String| {
        routes
            .iter()
            .find(|r| r.resource == *url)
            .map_or_else(|| url.clone(), |r| r.name.clone())
    };
    let mut rows = vec![[
        "NAME".to_string(),
        "SUBJECT".into(),
        "KIND".into(),
        "EMAIL".into(),
        "GROUPS".into(),
        "ROUTES".into(),
        "CREATED".into(),
        "EXPIRES".into(),
        "STATUS".into(),
    ]];
    for a in accounts {
        let status = if a.revoked_at.is_some() {
            "revoked"
        } else if !is_active(a, t) {
            "expired"
        } else {
            "active"
        };
        rows.push([
            a.name.clone(),
            subject(&a.id),
            match &a.client_id {
                Some(id) => format!("client_credentials ({id})"),
                None => "token".into(),
            },
            a.email.clone(),
            if a.groups.is_empty() {
                "-".into()
            } else {
                a.groups.join(",")
            },
            a.routes
                .iter()
                .map(route_name)
                .collect::<Vec<_>>()
                .join(","),
            time(Some(a.created_at)),
            time(a.expires_at),
            status.into(),
        ]);
    }
    let widths: Vec<usize> = (0..9)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

async fn open(config: &mcpgate_config::GatewayConfig) -> anyhow::Result<(Store, Vec<ServerRoute>)> {
    let routes = config.server_routes().map_err(|e| anyhow::anyhow!("{e}"))?;
    let store = Store::connect(&config.token_service.database_url).await?;
    Ok((store, routes))
}

async fn run_async(config: mcpgate_config::GatewayConfig, command: Command) -> anyhow::Result<()> {
    let t = now();
    let (store, routes) = open(&config).await?;
    let result = match command {
        Command::Create(args) => {
            let keys =
                SigningKeys::load_or_generate(&config.authorization_server.signing_key_file)?;
            let new = NewAccount {
                name: args.name,
                email: args.email,
                groups: args.groups,
                routes: args.routes,
                expires: args.expires,
                client_credentials: args.client_credentials,
                jwks: match &args.jwks {
                    None => None,
                    Some(file) => Some(
                        std::fs::read_to_string(file)
                            .map_err(anyhow::Error::from)
                            .and_then(|text| Ok(serde_json::from_str(&text)?))
                            .map_err(|e| {
                                anyhow::anyhow!("--jwks: cannot read {}: {e}", file.display())
                            })?,
                    ),
                },
            };
            let issuer = &config.authorization_server.issuer;
            match create(&store, &keys, issuer, &routes, new, t).await {
                Ok(Created::Token { account, token }) => {
                    eprintln!(
                        "created service account {} ({}); its token is printed once, below, and expires {}",
                        account.name,
                        subject(&account.id),
                        time(account.expires_at)
                    );
                    println!("{token}");
                    Ok(())
                }
                Ok(Created::ClientCredentials {
                    account,
                    client_id,
                    client_secret,
                }) => {
                    eprintln!(
                        "created service account {} ({}); its client secret is printed once, below",
                        account.name,
                        subject(&account.id)
                    );
                    println!("client_id: {client_id}");
                    println!("client_secret: {client_secret}");
                    Ok(())
                }
                Ok(Created::PrivateKeyJwt { account, client_id }) => {
                    eprintln!(
                        "created service account {} ({}); it authenticates with private_key_jwt",
                        account.name,
                        subject(&account.id)
                    );
                    println!("client_id: {client_id}");
                    Ok(())
                }
                Err(e) => Err(e),
            }
        }
        Command::List(_) => {
            let accounts = store.service_accounts().await?;
            print!("{}", table(&accounts, &routes, t));
            Ok(())
        }
        Command::Revoke(args) => revoke(&store, &args.name, t).await.map(|a| {
            eprintln!("revoked service account {} ({})", a.name, subject(&a.id));
        }),
    };
    store.close().await;
    result
}

/// Runs a `service-account` subcommand against the gateway file's database (safe while `serve`
/// runs: SQLite in WAL mode, or PostgreSQL).
pub fn run(command: Command) -> anyhow::Result<()> {
    let path = match &command {
        Command::Create(a) => a.config.config.clone(),
        Command::List(a) => a.config.clone(),
        Command::Revoke(a) => a.config.config.clone(),
    };
    let config = mcpgate_config::GatewayConfig::load(&path)
        .map_err(|e| anyhow::anyhow!("invalid gateway file {}: {e}", path.display()))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(run_async(config, command))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(client: bool, expires_at: Option<i64>, revoked_at: Option<i64>) -> ServiceAccount {
        ServiceAccount {
            id: "ab12".into(),
            name: "robot".into(),
            email: "r@example.com".into(),
            groups: vec![],
            routes: vec![],
            created_at: 0,
            expires_at,
            revoked_at,
            client_id: client.then(|| "sa-ab12".into()),
            client_secret_hash: None,
            client_jwks: None,
        }
    }

    #[test]
    fn revoked_subjects_stay_listed_while_a_token_could_live() {
        let list = |a: ServiceAccount, t: i64| revoked_subjects(&[a], t, 300, 5);
        // Not revoked: never listed.
        assert!(list(account(false, Some(1000), None), 10).is_empty());
        // A printed token: until the account (and its token) expires, plus leeway.
        assert_eq!(
            list(account(false, Some(1000), Some(100)), 1004),
            ["sa:ab12"]
        );
        assert!(list(account(false, Some(1000), Some(100)), 1005).is_empty());
        // Client credentials: one token lifetime after the revocation.
        assert_eq!(list(account(true, None, Some(100)), 404), ["sa:ab12"]);
        assert!(list(account(true, None, Some(100)), 405).is_empty());
        assert!(list(account(true, Some(200), Some(100)), 205).is_empty());
    }

    #[test]
    fn activity_and_new_account_checks() {
        assert!(is_active(&account(false, Some(10), None), 9));
        assert!(!is_active(&account(false, Some(10), None), 10));
        assert!(!is_active(&account(true, None, Some(1)), 0));
        let new = |name: &str, email: &str| NewAccount {
            name: name.into(),
            email: email.into(),
            groups: vec![],
            routes: vec![],
            expires: None,
            client_credentials: false,
            jwks: None,
        };
        assert!(validate_new(&new("ci-bot.1", "ci@example.com")).is_ok());
        assert!(validate_new(&new("ci bot", "ci@example.com"))
            .unwrap_err()
            .to_string()
            .contains("--name"));
        assert!(validate_new(&new("ci", "nope"))
            .unwrap_err()
            .to_string()
            .contains("--email"));
    }
}
