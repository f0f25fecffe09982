//! The OCI build (`scripts/oci-image.sh`, run for real) and the renderers agree: the digest the
//! build prints is the image's manifest digest, the rendered `WasmPlugin` and
//! `EnvoyExtensionPolicy` carry it, the image holds the module as `plugin.wasm`, and the same
//! module always gives the same digest.

use std::path::{Path, PathBuf};
use std::process::Command;

use mcpgate_config::render::artifact::ModuleArtifact;
use mcpgate_config::render::{envoy_gateway, istio, oci_layout};
use mcpgate_config::{GatewayConfig, HeaderMode};
use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mcpgate-oci-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// A small valid module: the header and one custom section naming `tag`.
fn module(dir: &Path, tag: &str) -> PathBuf {
    let mut bytes = b"\0asm\x01\0\0\0".to_vec();
    let name = b"mcpgate";
    bytes.push(0);
    bytes.push((1 + name.len() + tag.len()) as u8);
    bytes.push(name.len() as u8);
    bytes.extend_from_slice(name);
    bytes.extend_from_slice(tag.as_bytes());
    let path = dir.join(format!("{tag}.wasm"));
    std::fs::write(&path, bytes).expect("write module");
    path
}

/// Run the build; the digest it prints (its last line, `sha256:<hex>`).
fn build(wasm: &Path, layout: &Path) -> String {
    let out = Command::new("bash")
        .arg(repo().join("scripts/oci-image.sh"))
        .arg(wasm)
        .arg(layout)
        .output()
        .expect("run scripts/oci-image.sh");
    assert!(
        out.status.success(),
        "oci-image.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    stdout
        .lines()
        .last()
        .and_then(|l| l.strip_prefix("sha256:"))
        .expect("prints sha256:<digest> last")
        .to_string()
}

fn objects(yaml: &str) -> Vec<Value> {
    yaml.split("\n---\n")
        .skip(1)
        .map(|doc| serde_yaml_ng::from_str(doc).expect("a YAML object"))
        .collect()
}

fn kind<'a>(objects: &'a [Value], kind: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind)
        .unwrap_or_else(|| panic!("a {kind} is rendered"))
}

fn sha256sum(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    String::from_utf8(out.stdout).expect("utf-8")[..64].to_string()
}

#[test]
fn the_rendered_manifests_carry_the_digest_the_build_prints() {
    let dir = scratch("digest");
    let wasm = module(&dir, "one");
    let layout = dir.join("layout");
    let digest = build(&wasm, &layout);
    // The printed digest names the manifest blob, and the layout reads back as that image.
    let manifest = std::fs::read(layout.join("blobs/sha256").join(&digest)).expect("manifest");
    assert_eq!(
        sha256sum(&layout.join("blobs/sha256").join(&digest)),
        digest
    );
    assert_eq!(
        oci_layout::read(&layout)
            .expect("valid layout")
            .manifest_digest,
        digest
    );
    // Its one layer is a gzipped tar holding the module, byte for byte, as plugin.wasm.
    let manifest: Value = serde_json::from_slice(&manifest).expect("json");
    let layer = manifest["layers"][0]["digest"]
        .as_str()
        .and_then(|d| d.strip_prefix("sha256:"))
        .expect("layer digest");
    let extracted = Command::new("tar")
        .arg("-xzOf")
        .arg(layout.join("blobs/sha256").join(layer))
        .arg("plugin.wasm")
        .output()
        .expect("tar");
    assert_eq!(
        extracted.stdout,
        std::fs::read(&wasm).expect("module"),
        "plugin.wasm is the module"
    );

    let config = GatewayConfig::load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/gateway.yaml"),
    )
    .expect("gateway file");
    let target = config.kubernetes_target().expect("kubernetes target");
    let artifact = ModuleArtifact::resolve(&target, &layout, &wasm).expect("artifact");
    let istio = objects(&istio::render(&config, &artifact, HeaderMode::HoldBody).expect("istio"));
    assert_eq!(
        kind(&istio, "WasmPlugin")["spec"]["sha256"],
        digest.as_str()
    );
    let eg = objects(
        &envoy_gateway::render(&config, &artifact, HeaderMode::HoldBody).expect("envoy-gateway"),
    );
    assert_eq!(
        kind(&eg, "EnvoyExtensionPolicy")["spec"]["wasm"][0]["code"]["image"]["sha256"],
        digest.as_str()
    );
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

#[test]
fn the_same_module_gives_the_same_digest_and_another_module_another() {
    let dir = scratch("deterministic");
    let one = module(&dir, "one");
    let first = build(&one, &dir.join("a"));
    // A copy with another name and time still builds the same image.
    let copy = dir.join("copy.wasm");
    std::fs::copy(&one, &copy).expect("copy");
    assert_eq!(build(&copy, &dir.join("b")), first);
    // A rebuild over an existing layout leaves only the new image's blobs.
    let two = module(&dir, "two");
    let second = build(&two, &dir.join("a"));
    assert_ne!(second, first);
    assert_eq!(
        std::fs::read_dir(dir.join("a/blobs/sha256"))
            .expect("blobs")
            .count(),
        3,
        "manifest, config and layer only"
    );
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

#[test]
fn a_url_source_carries_the_module_sha256_and_a_damaged_layout_is_refused() {
    let dir = scratch("url");
    let wasm = module(&dir, "one");
    let mut config = GatewayConfig::load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/gateway.yaml"),
    )
    .expect("gateway file");
    if let Some(k) = config.kubernetes.as_mut() {
        k.filter.image = None;
        k.filter.url = Some("https://downloads.example.com/mcpgate_filter.wasm".into());
    }
    let target = config.kubernetes_target().expect("kubernetes target");
    let artifact =
        ModuleArtifact::resolve(&target, &dir.join("no-layout"), &wasm).expect("artifact");
    let eg = objects(
        &envoy_gateway::render(&config, &artifact, HeaderMode::HoldBody).expect("envoy-gateway"),
    );
    assert_eq!(
        kind(&eg, "EnvoyExtensionPolicy")["spec"]["wasm"][0]["code"]["http"]["sha256"],
        sha256sum(&wasm).as_str()
    );

    let layout = dir.join("layout");
    let digest = build(&wasm, &layout);
    let manifest = layout.join("blobs/sha256").join(&digest);
    let mut bytes = std::fs::read(&manifest).expect("manifest");
    bytes.push(b' ');
    std::fs::write(&manifest, bytes).expect("damage");
    let err = oci_layout::read(&layout).expect_err("a damaged blob is refused");
    assert!(err.to_string().contains(&digest), "{err}");
    std::fs::remove_dir_all(&dir).expect("cleanup");
}
