//! mcpgate benchmark tools.
//!
//!   mcpgate-bench keygen --out key.pem
//!   mcpgate-bench jwks --key key.pem [--kid KID] --out jwks.json
//!   mcpgate-bench kid --key key.pem --jwks jwks.json          (prints the kid of the key)
//!   mcpgate-bench mint --key key.pem --kid KID --issuer URL --audience URL [--count N]
//!                      [--email E] [--sub S] [--groups a,b] [--client-id C] [--lifetime SECS]
//!                      (one token per line on stdout)
//!   mcpgate-bench render --config gateway.yaml --out envoy.yaml   (bootstrap via mcpgate-config)
//!   mcpgate-bench tsload --base URL --issuer URL --resource URL --client-id C --redirect-uri U
//!                        --username U --password P [--scope S] [--codes N] [--concurrency C]
//!                        [--duration SECS] [--upstream-resource URL --upstream-users u1,u2,...
//!                        --provider-listen 127.0.0.1:PORT --internal-base URL]
//!                        (the upstream-token phase reads MCPGATE_INTERNAL_API_SECRET)
//!   mcpgate-bench native --config gateway.yaml --bodies DIR --list-json FILE --list-sse FILE
//!                        --jwks jwks.json --tokens FILE   (the filter's logic natively, JSON)

mod keys;
mod native;
mod provider;
mod tsload;

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

fn die(msg: impl std::fmt::Display) -> ! {
    eprintln!("mcpgate-bench: {msg}");
    std::process::exit(1);
}

fn main() {
    let mut args = std::env::args().skip(1);
    let cmd = args.next().unwrap_or_default();
    let mut opts: HashMap<String, String> = HashMap::new();
    while let Some(a) = args.next() {
        let Some(k) = a.strip_prefix("--") else {
            die(format!("unexpected argument {a}"))
        };
        let v = args
            .next()
            .unwrap_or_else(|| die(format!("--{k} needs a value")));
        opts.insert(k.to_string(), v);
    }
    let get = |k: &str| {
        opts.get(k)
            .cloned()
            .unwrap_or_else(|| die(format!("--{k} is required")))
    };
    let opt = |k: &str, d: &str| opts.get(k).cloned().unwrap_or_else(|| d.to_string());
    let write = |path: &str, text: &str| {
        std::fs::write(path, text).unwrap_or_else(|e| die(format!("cannot write {path}: {e}")))
    };
    let load_key = |path: &str| {
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| die(format!("cannot read {path}: {e}")));
        keys::load_pem(&text).unwrap_or_else(|e| die(format!("{path}: {e}")))
    };
    match cmd.as_str() {
        "keygen" => write(&get("out"), &keys::generate_pem()),
        "jwks" => {
            let kp = load_key(&get("key"));
            let kid = opts.get("kid").cloned().unwrap_or_else(|| keys::thumbprint(&kp));
            write(&get("out"), &keys::jwks(&kp, &kid));
        }
        "kid" => {
            let kp = load_key(&get("key"));
            let jwks = std::fs::read_to_string(get("jwks")).unwrap_or_else(|e| die(e));
            println!("{}", keys::kid_in_jwks(&kp, &jwks).unwrap_or_else(|e| die(e)));
        }
        "mint" => {
            let kp = load_key(&get("key"));
            let (kid, issuer, audience) = (get("kid"), get("issuer"), get("audience"));
            let (email, sub, client_id) = (opt("email", "alice@company.com"), opt("sub", "user-alice"), opt("client-id", "bench-client"));
            let groups: Vec<String> = opt("groups", "engineering").split(',').filter(|g| !g.is_empty()).map(str::to_string).collect();
            let count: u64 = opt("count", "1").parse().unwrap_or_else(|_| die("--count N"));
            let lifetime: u64 = opt("lifetime", "3600").parse().unwrap_or_else(|_| die("--lifetime SECS"));
            let m = keys::Mint { kp: &kp, kid: &kid, issuer: &issuer, audience: &audience, subject: &sub, email: &email, groups: &groups, client_id: &client_id, lifetime };
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            for n in 0..count {
                writeln!(out, "{}", m.token(n)).unwrap_or_else(|e| die(e));
            }
        }
        "render" => {
            let config = mcpgate_config::GatewayConfig::load(std::path::Path::new(&get("config"))).unwrap_or_else(|e| die(e));
            let yaml = mcpgate_config::envoy::render_bootstrap(&config).unwrap_or_else(|e| die(e));
            write(&get("out"), &yaml);
        }
        "tsload" => {
            let cfg = tsload::Config {
                base: get("base"),
                issuer: get("issuer"),
                resource: get("resource"),
                client_id: get("client-id"),
                redirect_uri: get("redirect-uri"),
                username: get("username"),
                password: get("password"),
                scope: opts.get("scope").cloned(),
                codes: opt("codes", "200").parse().unwrap_or_else(|_| die("--codes N")),
                concurrency: opt("concurrency", "8").parse().unwrap_or_else(|_| die("--concurrency N")),
                duration: Duration::from_secs_f64(opt("duration", "5").parse().unwrap_or_else(|_| die("--duration SECS"))),
                upstream: opts.get("upstream-resource").filter(|r| !r.is_empty()).map(|resource| tsload::Upstream {
                    resource: resource.clone(),
                    users: get("upstream-users").split(',').filter(|u| !u.is_empty()).map(str::to_string).collect(),
                    provider_listen: get("provider-listen"),
                    internal_base: get("internal-base"),
                    secret: std::env::var("MCPGATE_INTERNAL_API_SECRET")
                        .unwrap_or_else(|_| die("--upstream-resource needs MCPGATE_INTERNAL_API_SECRET in the environment")),
                }),
            };
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap_or_else(|e| die(e));
            let local = tokio::task::LocalSet::new();
            let result = local.block_on(&rt, tsload::run(cfg));
            println!("{result}");
        }
        "native" => {
            let path = |k: &str| std::path::PathBuf::from(get(k));
            let (config, bodies, list_json) = (path("config"), path("bodies"), path("list-json"));
            let (list_sse, jwks, tokens) = (path("list-sse"), path("jwks"), path("tokens"));
            let inputs = native::Inputs { config: &config, bodies: &bodies, list_json: &list_json, list_sse: &list_sse, jwks: &jwks, tokens: &tokens };
            println!("{}", native::run(&inputs).unwrap_or_else(|e| die(e)));
        }
        _ => die("usage: mcpgate-bench keygen|jwks|kid|mint|render|tsload|native [--options]; see the source header"),
    }
}
