//! Secret key files the service creates on first start (the signing key, the upstream-token
//! key): written once, owner-only, never overwritten.

use std::io::Write;
use std::path::Path;

use anyhow::Context;

/// Creates `path` (and its directory) with mode 0600 and `contents`; fails if it already exists,
/// so a concurrent first start never replaces a key another process already uses. `field` names
/// the setting in errors.
pub fn create_private(path: &Path, contents: &str, field: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{field}: cannot create directory {}", dir.display()))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("{field}: cannot create {}", path.display()))?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()?;
    Ok(())
}
