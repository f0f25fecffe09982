//! Reads the filter's OCI image layout (`scripts/oci-image.sh` writes it): the digest of its one
//! image manifest, checked against the blobs, is what Istio and Envoy Gateway verify an image by.

use std::path::{Path, PathBuf};

use serde_json::Value;

pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// The single-layer "compat" Wasm image: a gzipped tar holding `plugin.wasm`. Istio's agent and
/// Envoy Gateway both extract the module from it.
pub const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// What the layout holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciImage {
    /// Hex SHA-256 of the image manifest: the `sha256` of an image code source.
    pub manifest_digest: String,
}

/// The layout is missing, malformed, or its blobs do not match their digests.
#[derive(Debug, thiserror::Error)]
#[error("OCI image layout {}: {reason}", path.display())]
pub struct OciLayoutError {
    pub path: PathBuf,
    pub reason: String,
}

/// Read and check the layout at `dir`: one manifest in `index.json`, whose blob and layer blob
/// exist and hash to their names.
pub fn read(dir: &Path) -> Result<OciImage, OciLayoutError> {
    let fail = |reason: String| OciLayoutError {
        path: dir.to_path_buf(),
        reason,
    };
    let layout = read_json(&dir.join("oci-layout")).map_err(&fail)?;
    if layout["imageLayoutVersion"] != "1.0.0" {
        return Err(fail(
            "oci-layout: imageLayoutVersion is not 1.0.0 (build it with scripts/oci-image.sh)"
                .into(),
        ));
    }
    let index = read_json(&dir.join("index.json")).map_err(&fail)?;
    let manifests = index["manifests"].as_array().cloned().unwrap_or_default();
    let [entry] = manifests.as_slice() else {
        return Err(fail(format!(
            "index.json lists {} manifests; the filter image has exactly one",
            manifests.len()
        )));
    };
    if entry["mediaType"] != MANIFEST_MEDIA_TYPE {
        return Err(fail(format!(
            "index.json: the manifest's mediaType is not {MANIFEST_MEDIA_TYPE}"
        )));
    }
    let manifest_digest = digest_hex(&entry["digest"]).map_err(&fail)?;
    let manifest_bytes = blob(dir, &manifest_digest).map_err(&fail)?;
    let manifest: Value = serde_json::from_slice(&manifest_bytes)
        .map_err(|e| fail(format!("manifest blob is not JSON: {e}")))?;
    let layers = manifest["layers"].as_array().cloned().unwrap_or_default();
    let [layer] = layers.as_slice() else {
        return Err(fail(format!(
            "the manifest has {} layers; the filter image has exactly one",
            layers.len()
        )));
    };
    if layer["mediaType"] != LAYER_MEDIA_TYPE {
        return Err(fail(format!(
            "the layer's mediaType is not {LAYER_MEDIA_TYPE}"
        )));
    }
    blob(dir, &digest_hex(&layer["digest"]).map_err(&fail)?).map_err(&fail)?;
    blob(
        dir,
        &digest_hex(&manifest["config"]["digest"]).map_err(&fail)?,
    )
    .map_err(&fail)?;
    Ok(OciImage { manifest_digest })
}

fn read_json(path: &Path) -> Result<Value, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("{} is not JSON: {e}", path.display()))
}

/// `sha256:<64 hex>` → the hex.
fn digest_hex(digest: &Value) -> Result<String, String> {
    digest
        .as_str()
        .and_then(|d| d.strip_prefix("sha256:"))
        .filter(|h| h.len() == 64 && h.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')))
        .map(str::to_string)
        .ok_or_else(|| format!("{digest} is not a sha256 digest"))
}

/// A blob's bytes, checked against its digest.
fn blob(dir: &Path, hex: &str) -> Result<Vec<u8>, String> {
    let path = dir.join("blobs/sha256").join(hex);
    let bytes = std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if super::sha256_hex(&bytes) != hex {
        return Err(format!("{} does not hash to its name", path.display()));
    }
    Ok(bytes)
}
