//! Every rendered target, from `golden/gateway.yaml`, against the files under `golden/`; and from
//! `golden/gateway-replicas.yaml` (two token-service replicas, tracing) against `golden/replicas/`.
//!
//! An intended change of a rendering: re-bless with
//! `MCPGATE_BLESS=1 cargo test -p mcpgate-config --test render_golden`, then review the diff.

use std::path::{Path, PathBuf};

use mcpgate_config::gateway::FilterModuleSource;
use mcpgate_config::render::artifact::ModuleArtifact;
use mcpgate_config::render::{envoy, envoy_gateway, istio};
use mcpgate_config::{GatewayConfig, HeaderMode};

/// The image's manifest digest and the module's SHA-256 the golden manifests carry: inputs of
/// the rendering (the OCI build's own digest is checked in `oci_image.rs`).
const IMAGE_DIGEST: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const MODULE_SHA256: &str = "2222222222222222222222222222222222222222222222222222222222222222";
/// The upstream client secret in the golden gateway file, which no rendering may carry.
const SECRET: &str = "golden-upstream-client-secret";

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn config() -> GatewayConfig {
    GatewayConfig::load(&golden_dir().join("gateway.yaml")).expect("golden gateway file loads")
}

fn replicas() -> GatewayConfig {
    GatewayConfig::load(&golden_dir().join("gateway-replicas.yaml"))
        .expect("golden replicas gateway file loads")
}

fn image() -> ModuleArtifact {
    ModuleArtifact::Image {
        url: "registry.example.com/mcpgate/filter:0.1.0".into(),
        sha256: IMAGE_DIGEST.into(),
    }
}

/// Compare `text` with `golden/<name>`, or write it there when blessing.
fn check(name: &str, text: &str) {
    assert!(
        !text.contains(SECRET),
        "{name} carries the upstream client secret"
    );
    let path = golden_dir().join(name);
    if std::env::var_os("MCPGATE_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("golden dir");
        std::fs::write(&path, text).expect("write golden file");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e}; create it with MCPGATE_BLESS=1",
            path.display()
        )
    });
    if expected != text {
        let line = expected
            .lines()
            .zip(text.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(expected.lines().count().min(text.lines().count()));
        panic!(
            "{name} differs from its golden file at line {}:\n  golden:   {:?}\n  rendered: {:?}\n\
             If the change is intended: MCPGATE_BLESS=1 cargo test -p mcpgate-config --test render_golden",
            line + 1,
            expected.lines().nth(line),
            text.lines().nth(line),
        );
    }
}

#[test]
fn envoy_static_bootstrap() {
    check(
        "envoy-bootstrap.yaml",
        &envoy::render_bootstrap(&config()).expect("renders"),
    );
}

#[test]
fn envoy_dynamic_files() {
    check_dynamic_files(&config(), "envoy-dynamic");
}

fn check_dynamic_files(config: &GatewayConfig, dir: &str) {
    let files = envoy::dynamic_files(config, Path::new("/run/mcpgate/xds")).expect("renders");
    let names: Vec<String> = files.iter().map(|f| f.path.display().to_string()).collect();
    assert_eq!(
        names,
        [
            envoy::CDS_FILE,
            envoy::ECDS_FILE,
            envoy::RDS_FILE,
            envoy::LDS_FILE,
            envoy::BOOTSTRAP_FILE
        ]
    );
    for file in files {
        check(&format!("{dir}/{}", file.path.display()), &file.contents);
    }
}

#[test]
fn replicas_envoy_static_bootstrap() {
    check(
        "replicas/envoy-bootstrap.yaml",
        &envoy::render_bootstrap(&replicas()).expect("renders"),
    );
}

#[test]
fn replicas_envoy_dynamic_files() {
    check_dynamic_files(&replicas(), "replicas/envoy-dynamic");
}

#[test]
fn replicas_istio() {
    check(
        "replicas/istio.yaml",
        &istio::render(&replicas(), &image(), HeaderMode::HoldBody).expect("renders"),
    );
}

#[test]
fn replicas_envoy_gateway() {
    check(
        "replicas/envoy-gateway.yaml",
        &envoy_gateway::render(&replicas(), &image(), HeaderMode::HoldBody).expect("renders"),
    );
}

#[test]
fn istio_wasm_plugin() {
    check(
        "istio.yaml",
        &istio::render(&config(), &image(), HeaderMode::HoldBody).expect("renders"),
    );
}

#[test]
fn istio_envoy_filter_holding_headers() {
    check(
        "istio-hold-headers.yaml",
        &istio::render(&config(), &image(), HeaderMode::HoldHeaders).expect("renders"),
    );
}

#[test]
fn envoy_gateway_image() {
    check(
        "envoy-gateway.yaml",
        &envoy_gateway::render(&config(), &image(), HeaderMode::HoldBody).expect("renders"),
    );
}

#[test]
fn envoy_gateway_holding_headers() {
    check(
        "envoy-gateway-hold-headers.yaml",
        &envoy_gateway::render(&config(), &image(), HeaderMode::HoldHeaders).expect("renders"),
    );
}

#[test]
fn envoy_gateway_http_module() {
    let mut config = config();
    let url = "https://downloads.example.com/mcpgate/0.1.0/mcpgate_filter.wasm";
    if let Some(k) = config.kubernetes.as_mut() {
        k.filter = FilterModuleSource {
            url: Some(url.into()),
            ..FilterModuleSource::default()
        };
    }
    let artifact = ModuleArtifact::Http {
        url: url.into(),
        sha256: MODULE_SHA256.into(),
    };
    check(
        "envoy-gateway-http.yaml",
        &envoy_gateway::render(&config, &artifact, HeaderMode::HoldBody).expect("renders"),
    );
}
