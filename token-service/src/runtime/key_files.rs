//! Secret key files the service creates on first start (the signing key, the upstream-token
//! key): written once, owner-only, never overwritten.
//!
//! Several replicas may start at once on one shared volume. The key is written to a temporary
//! file beside the target and hard-linked into place: the link either appears with the whole key
//! in it or fails because another process linked its key first, in which case the caller reads
//! that one. A reader therefore never sees a half-written key, and every replica ends up with the
//! same key.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;

/// Whether [`create_private`] wrote the file or found another process's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    /// This process's contents are now at the path.
    Written,
    /// The file already existed (another process created it first): read it instead.
    AlreadyExists,
}

/// Creates `path` (and its directory) with mode 0600 and `contents`, atomically: the file
/// appears complete or not at all. An existing file is never replaced; then the answer is
/// [`Created::AlreadyExists`]. `field` names the setting in errors.
pub fn create_private(path: &Path, contents: &str, field: &str) -> anyhow::Result<Created> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{field}: cannot create directory {}", dir.display()))?;
    }
    let tmp = temporary_path(path);
    let written = write_new(&tmp, contents)
        .with_context(|| format!("{field}: cannot write {}", tmp.display()));
    let linked = written.and_then(|()| match std::fs::hard_link(&tmp, path) {
        Ok(()) => Ok(Created::Written),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(Created::AlreadyExists),
        Err(e) => Err(e).with_context(|| format!("{field}: cannot create {}", path.display())),
    });
    // The temporary name is gone whatever happened; the key lives on under `path` when linked.
    let _ = std::fs::remove_file(&tmp);
    let created = linked?;
    if created == Created::Written {
        sync_dir(path);
    }
    Ok(created)
}

/// A name beside `path` no other process uses: `.<name>.<pid>.<random>.tmp`.
fn temporary_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let unique = format!(
        ".{name}.{}.{:016x}.tmp",
        std::process::id(),
        rand::random::<u64>()
    );
    path.with_file_name(unique)
}

fn write_new(path: &Path, contents: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}

/// Makes the new directory entry durable (best effort: not every platform can open a directory).
fn sync_dir(path: &Path) {
    #[cfg(unix)]
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
}

/// Reads the key file at `path`, creating it with `generate()` when it does not exist. When
/// another process creates it at the same moment, its key is read and `generate()`'s output is
/// discarded, so concurrent first starts agree on one key. The second value is true when this
/// process wrote the file.
pub fn read_or_create(
    path: &Path,
    field: &str,
    generate: impl FnOnce() -> String,
) -> anyhow::Result<(String, bool)> {
    match std::fs::read_to_string(path) {
        Ok(text) => return Ok((text, false)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(e).with_context(|| format!("{field}: cannot read {}", path.display()))
        }
    }
    let contents = generate();
    match create_private(path, &contents, field)? {
        Created::Written => Ok((contents, true)),
        Created::AlreadyExists => std::fs::read_to_string(path)
            .map(|text| (text, false))
            .with_context(|| format!("{field}: cannot read {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_once_and_never_overwrites() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("nested/key");
        assert_eq!(
            create_private(&path, "one", "f").expect("create"),
            Created::Written
        );
        assert_eq!(
            create_private(&path, "two", "f").expect("second"),
            Created::AlreadyExists
        );
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "one");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let left: Vec<_> = std::fs::read_dir(path.parent().expect("dir"))
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(
            left,
            vec![std::ffi::OsString::from("key")],
            "no temporary file is left"
        );
    }

    /// Many processes (threads here) starting at once on an empty volume: all of them end up
    /// with the same, complete key and none fails.
    #[test]
    fn concurrent_first_starts_agree_on_one_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keys/signing-key.pem");
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(16));
        let handles: Vec<_> = (0..16)
            .map(|i| {
                let (path, barrier) = (path.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    // A long key, so a reader of a half-written file would notice.
                    read_or_create(&path, "authorization_server.signing_key_file", || {
                        format!("{i:02}").repeat(64 * 1024)
                    })
                    .expect("no start fails")
                })
            })
            .collect();
        let results: Vec<(String, bool)> = handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect();
        let first = &results[0].0;
        assert_eq!(first.len(), 128 * 1024, "a complete key");
        assert!(results.iter().all(|(k, _)| k == first), "one key for all");
        assert_eq!(
            results.iter().filter(|(_, wrote)| *wrote).count(),
            1,
            "exactly one writer"
        );
        assert_eq!(&std::fs::read_to_string(&path).expect("read"), first);
        assert_eq!(
            std::fs::read_dir(path.parent().expect("dir"))
                .expect("list")
                .count(),
            1,
            "no temporary file is left"
        );
    }
}
