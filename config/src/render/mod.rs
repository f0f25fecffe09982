//! Everything rendered from the one gateway file, one module per target:
//!
//! - [`envoy`]: mcpgate's own Envoy (a static bootstrap, or a bootstrap plus watched xDS files).
//! - [`istio`]: an Istio mesh (`WasmPlugin`, Gateway API routes, the token service's `Service`).
//! - [`envoy_gateway`]: Envoy Gateway (`EnvoyExtensionPolicy`, routes, `EnvoyPatchPolicy`).
//!
//! [`xds`] builds the Envoy resources the targets share, [`gateway_api`] the Kubernetes objects
//! both Kubernetes targets share; [`artifact`] and [`oci_layout`] say where a mesh fetches the
//! filter module and which SHA-256 it checks.

pub mod artifact;
pub mod envoy;
pub mod envoy_gateway;
pub mod gateway_api;
pub mod istio;
pub mod oci_layout;
pub mod xds;

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// One rendered file, its path relative to the output directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedFile {
    pub path: PathBuf,
    pub contents: String,
}

impl RenderedFile {
    pub fn new(path: impl Into<PathBuf>, contents: String) -> Self {
        Self {
            path: path.into(),
            contents,
        }
    }
}

/// Writing a rendered file failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot write {}: {source}", path.display())]
pub struct WriteError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// Write `files` under `dir`, in order, each only when its content differs from what is there,
/// and each atomically: a temporary file in the same directory, then a rename over the target.
/// A watcher of the directory (Envoy's `watched_directory`) so sees each file whole, once per
/// change. Returns the paths that were written.
pub fn write_changed(dir: &Path, files: &[RenderedFile]) -> Result<Vec<PathBuf>, WriteError> {
    let mut written = Vec::new();
    for file in files {
        let path = dir.join(&file.path);
        if std::fs::read(&path).is_ok_and(|old| old == file.contents.as_bytes()) {
            continue;
        }
        write_atomically(&path, file.contents.as_bytes())?;
        written.push(path);
    }
    Ok(written)
}

/// Write `path` through a temporary sibling and a rename, so no reader sees half a file.
pub fn write_atomically(path: &Path, contents: &[u8]) -> Result<(), WriteError> {
    let fail = |source| WriteError {
        path: path.to_path_buf(),
        source,
    };
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(fail)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = parent.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = std::fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(contents).and_then(|()| f.sync_all()))
        .and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(fail)
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_only_changed_files_and_leaves_no_temporary_file() {
        let dir = std::env::temp_dir().join(format!("mcpgate-render-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let files = vec![
            RenderedFile::new("a/one.yaml", "one: 1\n".into()),
            RenderedFile::new("b/two.yaml", "two: 2\n".into()),
        ];
        let written = write_changed(&dir, &files).expect("writes");
        assert_eq!(written.len(), 2);
        assert!(write_changed(&dir, &files).expect("writes").is_empty());
        let changed = vec![
            files[0].clone(),
            RenderedFile::new("b/two.yaml", "two: 3\n".into()),
        ];
        assert_eq!(
            write_changed(&dir, &changed).expect("writes"),
            vec![dir.join("b/two.yaml")]
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("b/two.yaml")).expect("read"),
            "two: 3\n"
        );
        let leftovers: Vec<_> = std::fs::read_dir(dir.join("b"))
            .expect("dir")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name())
            .collect();
        assert_eq!(leftovers, vec![std::ffi::OsString::from("two.yaml")]);
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
