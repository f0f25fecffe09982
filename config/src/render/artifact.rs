//! The filter module as a mesh fetches it, with the SHA-256 it verifies. Istio's agent and
//! Envoy Gateway check an OCI image by its manifest digest, and a module fetched over HTTP(S) by
//! the SHA-256 of the `.wasm` file itself.

use std::path::{Path, PathBuf};

use super::oci_layout::{self, OciLayoutError};
use crate::gateway::{KubernetesTarget, ModuleLocation};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModuleArtifact {
    /// `url`: OCI reference without scheme; `sha256`: hex manifest digest.
    Image { url: String, sha256: String },
    /// `url`: the `.wasm` file; `sha256`: hex SHA-256 of its bytes.
    Http { url: String, sha256: String },
}

impl ModuleArtifact {
    pub fn sha256(&self) -> &str {
        match self {
            Self::Image { sha256, .. } | Self::Http { sha256, .. } => sha256,
        }
    }

    /// The artifact `kubernetes.filter` names, checked by what the build produced: the OCI
    /// layout at `oci_layout` for an image, the module at `wasm` for a URL.
    pub fn resolve(
        target: &KubernetesTarget,
        oci_layout: &Path,
        wasm: &Path,
    ) -> Result<Self, ArtifactError> {
        match &target.module {
            ModuleLocation::Image(url) => Ok(Self::Image {
                url: url.clone(),
                sha256: oci_layout::read(oci_layout)?.manifest_digest,
            }),
            ModuleLocation::Url(url) => {
                let bytes = std::fs::read(wasm).map_err(|source| ArtifactError::Module {
                    path: wasm.to_path_buf(),
                    source,
                })?;
                Ok(Self::Http {
                    url: url.clone(),
                    sha256: super::sha256_hex(&bytes),
                })
            }
        }
    }
}

impl ModuleArtifact {
    /// The artifact `kubernetes.filter` names, with a digest the operator took from elsewhere
    /// (an image built and pushed by other means): hex SHA-256, of the manifest for an image, of
    /// the `.wasm` for a URL.
    pub fn with_sha256(target: &KubernetesTarget, sha256: &str) -> Result<Self, ArtifactError> {
        let hex = sha256.strip_prefix("sha256:").unwrap_or(sha256);
        if hex.len() != 64 || !hex.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')) {
            return Err(ArtifactError::Digest(sha256.to_string()));
        }
        Ok(match &target.module {
            ModuleLocation::Image(url) => Self::Image {
                url: url.clone(),
                sha256: hex.to_string(),
            },
            ModuleLocation::Url(url) => Self::Http {
                url: url.clone(),
                sha256: hex.to_string(),
            },
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("--sha256 {0:?} is not a SHA-256 digest: 64 lower-case hex digits, optionally after sha256:")]
    Digest(String),
    #[error(transparent)]
    Layout(#[from] OciLayoutError),
    #[error("cannot read the filter module {}: {source} (build it with ./wasm-build.sh)", path.display())]
    Module {
        path: PathBuf,
        source: std::io::Error,
    },
}
