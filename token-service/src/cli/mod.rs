//! Command line: `serve`, `user add`, `service-account create|list|revoke`, `render <target>`,
//! `envoy-bootstrap`.

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use mcpgate_config::{render, GatewayConfig, HeaderMode};

use crate::identity::users::{self, User};
use crate::runtime::reload::ListenOverride;
use crate::runtime::watch::ConfigWatch;

#[derive(Debug, Parser)]
#[command(
    name = "mcpgate-token-service",
    version,
    about = "The mcpgate token service: OAuth 2.1 authorization server for MCP clients"
)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "MCPGATE_LOG_FORMAT"
    )]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct ConfigArg {
    /// The gateway file (YAML).
    #[arg(long, value_name = "FILE", env = "MCPGATE_CONFIG")]
    pub config: PathBuf,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Listen here instead of `token_service.listen`: replicas on one host read one gateway file
    /// and each gets its own ports. Without --internal-listen the internal listener is this
    /// address with the port plus one.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Serve the internal API here instead of `token_service.internal_listen`.
    #[arg(long, value_name = "ADDR")]
    pub internal_listen: Option<SocketAddr>,
}

impl ServeArgs {
    pub fn listen_override(&self) -> ListenOverride {
        ListenOverride {
            listen: self.listen,
            internal_listen: self.internal_listen,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the token service.
    Serve(ServeArgs),
    /// Manage the built-in user directory (token_service.users_file).
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Manage service accounts (tokens for callers that are not people).
    ServiceAccount {
        #[command(subcommand)]
        command: crate::service_accounts::Command,
    },
    /// Render what a deployment target needs from the gateway file.
    Render {
        #[command(subcommand)]
        target: RenderTarget,
    },
    /// Print (or write) the static Envoy bootstrap (`render envoy` without `--out-dir`).
    EnvoyBootstrap {
        #[command(flatten)]
        config: ConfigArg,
        /// Write to this file instead of stdout.
        #[arg(long, value_name = "PATH")]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum RenderTarget {
    /// mcpgate's own Envoy: a static bootstrap, or (`--out-dir`) a bootstrap plus xDS files
    /// Envoy watches, so a re-rendered gateway file applies without a restart.
    Envoy(RenderEnvoy),
    /// An Istio mesh: WasmPlugin (or, with --header-mode hold_headers, an EnvoyFilter), Gateway
    /// API routes, the token service's Service (multi-document YAML).
    Istio(RenderMesh),
    /// Envoy Gateway: EnvoyExtensionPolicy, Gateway API routes, EnvoyPatchPolicy (multi-document
    /// YAML).
    EnvoyGateway(RenderMesh),
}

#[derive(Debug, Args)]
pub struct RenderMesh {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Write to this file instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// The filter's OCI image layout (scripts/oci-image.sh): its manifest digest is the `sha256`
    /// of an image code source (`kubernetes.filter.image`).
    #[arg(long, value_name = "DIR", default_value = "target/oci/mcpgate-filter")]
    pub oci_layout: PathBuf,
    /// The filter module whose SHA-256 a URL code source (`kubernetes.filter.url`) carries.
    /// Default: `envoy.wasm_module`.
    #[arg(long, value_name = "FILE")]
    pub wasm: Option<PathBuf>,
    /// Use this digest instead of reading --oci-layout or --wasm: the image's manifest digest
    /// (an image pushed by other means), or the module's SHA-256 for a URL source.
    #[arg(long, value_name = "HEX")]
    pub sha256: Option<String>,
    /// How the filter holds a request while it reads the body. `hold_headers` needs the Envoy
    /// flag neither WasmPlugin nor EnvoyExtensionPolicy can set, so it renders an EnvoyFilter
    /// (Istio) or an EnvoyPatchPolicy patch (Envoy Gateway) that sets it.
    #[arg(long, value_enum, default_value = "hold_body")]
    pub header_mode: HeaderModeArg,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum HeaderModeArg {
    #[value(name = "hold_body")]
    HoldBody,
    #[value(name = "hold_headers")]
    HoldHeaders,
}

impl From<HeaderModeArg> for HeaderMode {
    fn from(mode: HeaderModeArg) -> Self {
        match mode {
            HeaderModeArg::HoldBody => HeaderMode::HoldBody,
            HeaderModeArg::HoldHeaders => HeaderMode::HoldHeaders,
        }
    }
}

#[derive(Debug, Args)]
pub struct RenderEnvoy {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Write the static bootstrap to this file instead of stdout.
    #[arg(long, value_name = "FILE", conflicts_with = "out_dir")]
    pub out: Option<PathBuf>,
    /// Write `envoy.yaml` (start Envoy with it) and its watched xDS files (`cds/`, `ecds/`,
    /// `rds/`, `lds/`) into this directory; only changed files are rewritten, atomically.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
    /// Keep running and render into --out-dir again whenever the gateway file changes (checked
    /// every second) or on SIGHUP; a file that does not validate writes nothing. Stops on
    /// SIGINT/SIGTERM.
    #[arg(long, requires = "out_dir")]
    pub watch: bool,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user, or replace the user with the same username.
    Add(UserAdd),
}

#[derive(Debug, Args)]
pub struct UserAdd {
    #[command(flatten)]
    pub config: ConfigArg,
    #[arg(long)]
    pub username: String,
    #[arg(long)]
    pub email: String,
    /// Display name.
    #[arg(long)]
    pub name: Option<String>,
    /// Group membership; repeat for several groups.
    #[arg(long = "group", value_name = "GROUP")]
    pub groups: Vec<String>,
    /// Read the password from the first line of stdin instead of prompting.
    #[arg(long)]
    pub password_stdin: bool,
}

fn load_config(path: &Path) -> anyhow::Result<GatewayConfig> {
    GatewayConfig::load(path)
        .map_err(|e| anyhow::anyhow!("invalid gateway file {}: {e}", path.display()))
}

/// Logs to stderr, and with `tracing` (`serve` only) traces over OTLP.
fn init_tracing(
    format: LogFormat,
    tracing: Option<&mcpgate_config::telemetry::Tracing>,
) -> anyhow::Result<crate::telemetry::tracing::Telemetry> {
    crate::telemetry::tracing::init(matches!(format, LogFormat::Json), tracing)
}

fn read_password(from_stdin: bool) -> anyhow::Result<String> {
    let password = if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from stdin")?;
        line.trim_end_matches(['\r', '\n']).to_string()
    } else {
        let first = rpassword::prompt_password("Password: ")
            .context("cannot read the password (use --password-stdin without a terminal)")?;
        let second = rpassword::prompt_password("Repeat password: ")?;
        if first != second {
            anyhow::bail!("the passwords do not match");
        }
        first
    };
    if password.chars().count() < 8 {
        anyhow::bail!("the password must be at least 8 characters");
    }
    Ok(password)
}

fn user_add(args: UserAdd) -> anyhow::Result<()> {
    let config = load_config(&args.config.config)?;
    users::validate_new_user(
        &args.username,
        &args.email,
        args.name.as_deref(),
        &args.groups,
    )?;
    let password = read_password(args.password_stdin)?;
    let user = User {
        username: args.username.clone(),
        email: args.email,
        name: args.name,
        groups: args.groups,
        password_hash: users::hash_password(&password)?,
    };
    let Some(path) = &config.token_service.users_file else {
        anyhow::bail!(
            "token_service.users_file is not set: the built-in user directory is disabled in this gateway file"
        );
    };
    let replaced = users::upsert(path, user)?;
    eprintln!(
        "{} user {} in {}",
        if replaced { "updated" } else { "added" },
        args.username,
        path.display()
    );
    Ok(())
}

/// `render envoy`: the static bootstrap to `--out` (or stdout), or the dynamic files into
/// `--out-dir`. Returns the files it wrote.
pub fn render_envoy(args: &RenderEnvoy) -> anyhow::Result<Vec<PathBuf>> {
    let config = load_config(&args.config.config)?;
    let Some(dir) = &args.out_dir else {
        let bootstrap = render::envoy::render_bootstrap(&config)
            .map_err(|e| anyhow::anyhow!("invalid gateway file: {e}"))?;
        return write_or_print(args.out.as_deref(), &bootstrap);
    };
    let files = render::envoy::dynamic_files(&config, dir)
        .map_err(|e| anyhow::anyhow!("invalid gateway file: {e}"))?;
    Ok(render::write_changed(dir, &files)?)
}

fn write_or_print(out: Option<&Path>, text: &str) -> anyhow::Result<Vec<PathBuf>> {
    match out {
        Some(path) => {
            render::write_atomically(path, text.as_bytes())?;
            Ok(vec![path.to_path_buf()])
        }
        None => {
            print!("{text}");
            Ok(vec![])
        }
    }
}

/// `render istio` / `render envoy-gateway`.
fn render_mesh(
    args: &RenderMesh,
    render: fn(
        &GatewayConfig,
        &render::artifact::ModuleArtifact,
        HeaderMode,
    ) -> Result<String, mcpgate_config::ConfigError>,
) -> anyhow::Result<Vec<PathBuf>> {
    let config = load_config(&args.config.config)?;
    let target = config
        .kubernetes_target()
        .map_err(|e| anyhow::anyhow!("invalid gateway file: {e}"))?;
    let wasm = args.wasm.as_ref().unwrap_or(&config.envoy.wasm_module);
    let artifact = match &args.sha256 {
        Some(sha256) => render::artifact::ModuleArtifact::with_sha256(&target, sha256)?,
        None => render::artifact::ModuleArtifact::resolve(&target, &args.oci_layout, wasm)?,
    };
    let text = render(&config, &artifact, args.header_mode.into())
        .map_err(|e| anyhow::anyhow!("invalid gateway file: {e}"))?;
    write_or_print(args.out.as_deref(), &text)
}

/// `render envoy --out-dir DIR --watch`: renders, then renders again whenever the gateway file
/// changes, until SIGINT/SIGTERM. An invalid file at start is an error; later, one is logged
/// (with its field) and leaves the files as they are.
fn render_envoy_watch(args: &RenderEnvoy, dir: &Path) -> anyhow::Result<()> {
    let path = &args.config.config;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        // Watching starts before the first render, so no change slips in between.
        let mut watch =
            ConfigWatch::new([path.clone()]).context("cannot watch the gateway file")?;
        for written in render_envoy(args)? {
            eprintln!("wrote {}", written.display());
        }
        tracing::info!(file = %path.display(), dir = %dir.display(), "watching the gateway file");
        let stop = crate::runtime::serve::shutdown_signal();
        tokio::pin!(stop);
        loop {
            let trigger = tokio::select! {
                trigger = watch.next() => trigger,
                () = &mut stop => return Ok(()),
            };
            let files = GatewayConfig::load(path)
                .and_then(|config| render::envoy::dynamic_files(&config, dir));
            match files.map(|files| render::write_changed(dir, &files)) {
                Ok(Ok(written)) => tracing::info!(
                    trigger = trigger.as_str(),
                    written = %list_paths(&written),
                    "gateway file rendered"
                ),
                Ok(Err(e)) => tracing::error!(error = %e, "rendering the gateway file failed"),
                Err(e) => tracing::error!(
                    trigger = trigger.as_str(),
                    file = %path.display(),
                    field = %e.field,
                    reason = %e.reason,
                    "gateway file not rendered: the files in the output directory stay as they are"
                ),
            }
        }
    })
}

/// `a, b`, or `nothing` when no file had to change.
fn list_paths(paths: &[PathBuf]) -> String {
    if paths.is_empty() {
        return "nothing".to_string();
    }
    let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    names.join(", ")
}

fn render(target: RenderTarget) -> anyhow::Result<()> {
    let written = match target {
        RenderTarget::Envoy(args) => match (&args.out_dir, args.watch) {
            (Some(dir), true) => return render_envoy_watch(&args, dir),
            _ => render_envoy(&args)?,
        },
        RenderTarget::Istio(args) => render_mesh(&args, render::istio::render)?,
        RenderTarget::EnvoyGateway(args) => render_mesh(&args, render::envoy_gateway::render)?,
    };
    for path in written {
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

fn serve(args: &ServeArgs, format: LogFormat) -> anyhow::Result<()> {
    let path = &args.config.config;
    let listen = args.listen_override();
    let config = listen
        .apply(load_config(path)?)
        .map_err(|e| anyhow::anyhow!("--listen/--internal-listen: {e}"))?;
    // Before the runtime: the exporter's client and batch thread live outside it.
    let telemetry = init_tracing(format, config.telemetry.tracing.as_ref())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let served = runtime.block_on(crate::runtime::serve::serve(
        config,
        path.to_path_buf(),
        listen,
    ));
    drop(runtime);
    telemetry.shutdown();
    served
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // One rustls crypto provider for the whole process. In the workspace, reqwest 0.13 (the OTLP
    // exporter's client) is built with `rustls-no-provider` (another member's MCP client asks for
    // it), and a client built without an installed provider panics.
    let _ = rustls::crypto::ring::default_provider().install_default();
    // `serve` installs logging itself, once it has read the gateway file's telemetry block.
    if !matches!(cli.command, Command::Serve(_)) {
        if let Err(e) = init_tracing(cli.log_format, None).map(|t| t.shutdown()) {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    }
    let result = match cli.command {
        Command::Serve(args) => serve(&args, cli.log_format),
        Command::User {
            command: UserCommand::Add(args),
        } => user_add(args),
        Command::ServiceAccount { command } => crate::service_accounts::run(command),
        Command::Render { target } => render(target),
        Command::EnvoyBootstrap { config, out } => render_envoy(&RenderEnvoy {
            config,
            out,
            out_dir: None,
            watch: false,
        })
        .map(|_| ()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "mcpgate-token-service",
            "user",
            "add",
            "--config",
            "g.yaml",
            "--username",
            "a",
            "--email",
            "a@x.io",
            "--group",
            "g1",
            "--group",
            "g2",
            "--password-stdin",
        ])
        .expect("parses");
        match cli.command {
            Command::User {
                command: UserCommand::Add(a),
            } => {
                assert_eq!(a.groups, vec!["g1", "g2"]);
                assert!(a.password_stdin);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn serve_takes_its_own_listeners() {
        let parse = |args: &[&str]| {
            Cli::try_parse_from(
                ["mcpgate-token-service", "serve", "--config", "g.yaml"]
                    .into_iter()
                    .chain(args.iter().copied()),
            )
        };
        match parse(&[
            "--listen",
            "127.0.0.1:9000",
            "--internal-listen",
            "127.0.0.1:9100",
        ])
        .expect("parses")
        .command
        {
            Command::Serve(a) => {
                let o = a.listen_override();
                assert_eq!(o.listen, Some("127.0.0.1:9000".parse().expect("addr")));
                assert_eq!(
                    o.internal_listen,
                    Some("127.0.0.1:9100".parse().expect("addr"))
                );
            }
            other => panic!("unexpected {other:?}"),
        }
        match parse(&[]).expect("parses").command {
            Command::Serve(a) => assert!(a.listen_override().is_none()),
            other => panic!("unexpected {other:?}"),
        }
        assert!(parse(&["--listen", "not-an-address"]).is_err());
    }

    #[test]
    fn render_targets_parse() {
        let parse = |args: &[&str]| {
            Cli::try_parse_from(
                std::iter::once("mcpgate-token-service").chain(args.iter().copied()),
            )
        };
        match parse(&["render", "envoy", "--config", "g.yaml", "--out-dir", "xds"])
            .expect("parses")
            .command
        {
            Command::Render {
                target: RenderTarget::Envoy(a),
            } => assert_eq!(a.out_dir, Some(PathBuf::from("xds"))),
            other => panic!("unexpected {other:?}"),
        }
        assert!(parse(&[
            "render",
            "envoy",
            "--config",
            "g",
            "--out",
            "f",
            "--out-dir",
            "d"
        ])
        .is_err());
        match parse(&[
            "render",
            "istio",
            "--config",
            "g.yaml",
            "--header-mode",
            "hold_headers",
        ])
        .expect("parses")
        .command
        {
            Command::Render {
                target: RenderTarget::Istio(a),
            } => {
                assert_eq!(HeaderMode::from(a.header_mode), HeaderMode::HoldHeaders);
                assert_eq!(a.oci_layout, PathBuf::from("target/oci/mcpgate-filter"));
            }
            other => panic!("unexpected {other:?}"),
        }
        match parse(&["render", "envoy-gateway", "--config", "g.yaml"])
            .expect("parses")
            .command
        {
            Command::Render {
                target: RenderTarget::EnvoyGateway(a),
            } => assert_eq!(HeaderMode::from(a.header_mode), HeaderMode::HoldBody),
            other => panic!("unexpected {other:?}"),
        }
        // Watching needs a directory to write into.
        assert!(parse(&["render", "envoy", "--config", "g.yaml", "--watch"]).is_err());
        match parse(&[
            "render",
            "envoy",
            "--config",
            "g.yaml",
            "--out-dir",
            "xds",
            "--watch",
        ])
        .expect("parses")
        .command
        {
            Command::Render {
                target: RenderTarget::Envoy(a),
            } => assert!(a.watch),
            other => panic!("unexpected {other:?}"),
        }
        assert!(parse(&[
            "envoy-bootstrap",
            "--config",
            "g.yaml",
            "--out",
            "envoy.yaml"
        ])
        .is_ok());
    }
}
