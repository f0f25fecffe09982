//! Noticing that the gateway file changed: every second each watched file (the gateway file, and
//! for the token service the files it names that are read at load) is hashed, and SIGHUP asks
//! for a reload outright. Hashing the content rather than trusting the modification time catches
//! edits within the same clock tick and an editor that restores the old time; resolving the path
//! first catches a Kubernetes ConfigMap update, which swaps a symlink rather than writing the
//! file. Polling needs no dependency and behaves the same on every filesystem, mounted volumes
//! included, where change notifications are not always delivered.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

/// How often the watched files are looked at.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// After a change is seen, how long the files must stay the same before it is acted on, so a
/// file written in several steps is read once, whole.
const SETTLE: Duration = Duration::from_millis(200);
/// A file that never settles is acted on after this many settle periods anyway.
const MAX_SETTLE_ROUNDS: usize = 10;

/// What a file looked like: where its path led and what it held.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Fingerprint {
    Missing,
    Unreadable(std::io::ErrorKind),
    File { target: PathBuf, digest: [u8; 32] },
}

impl Fingerprint {
    fn of(path: &Path) -> Self {
        let unreadable = |e: std::io::Error| match e.kind() {
            std::io::ErrorKind::NotFound => Fingerprint::Missing,
            kind => Fingerprint::Unreadable(kind),
        };
        let target = match std::fs::canonicalize(path) {
            Ok(target) => target,
            Err(e) => return unreadable(e),
        };
        match std::fs::read(&target) {
            Ok(bytes) => Fingerprint::File {
                target,
                digest: Sha256::digest(&bytes).into(),
            },
            Err(e) => unreadable(e),
        }
    }
}

/// A set of files and what each looked like when last seen.
#[derive(Debug)]
pub struct WatchedFiles {
    files: Vec<(PathBuf, Fingerprint)>,
}

impl WatchedFiles {
    /// Watches `paths` from how they look now.
    pub fn new(paths: impl IntoIterator<Item = PathBuf>) -> Self {
        let mut files = Self { files: Vec::new() };
        files.replace(paths);
        files
    }

    /// Watches `paths` instead. A path already watched keeps what it was last seen as, so a
    /// change made while the caller was reading it is still noticed at the next look.
    pub fn replace(&mut self, paths: impl IntoIterator<Item = PathBuf>) {
        let mut old = std::mem::take(&mut self.files);
        for path in paths {
            if self.files.iter().any(|(p, _)| *p == path) {
                continue;
            }
            let seen = match old.iter().position(|(p, _)| *p == path) {
                Some(i) => old.swap_remove(i).1,
                None => Fingerprint::of(&path),
            };
            self.files.push((path, seen));
        }
    }

    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        self.files.iter().map(|(p, _)| p.as_path())
    }

    /// Whether any file differs from when it was last seen; remembers how each looks now.
    pub fn changed(&mut self) -> bool {
        let mut changed = false;
        for (path, seen) in &mut self.files {
            let now = Fingerprint::of(path);
            if now != *seen {
                *seen = now;
                changed = true;
            }
        }
        changed
    }
}

/// Why a reload is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// A watched file changed.
    FileChanged,
    /// The process got SIGHUP.
    Hangup,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::FileChanged => "file changed",
            Trigger::Hangup => "SIGHUP",
        }
    }
}

/// The watched files plus SIGHUP, as one stream of reload triggers.
pub struct ConfigWatch {
    files: WatchedFiles,
    tick: tokio::time::Interval,
    #[cfg(unix)]
    hangup: tokio::signal::unix::Signal,
}

impl ConfigWatch {
    /// Starts watching `paths` and handling SIGHUP (which from now on no longer ends the
    /// process). Call inside a Tokio runtime.
    pub fn new(paths: impl IntoIterator<Item = PathBuf>) -> std::io::Result<Self> {
        let mut tick = tokio::time::interval(POLL_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Ok(Self {
            files: WatchedFiles::new(paths),
            tick,
            #[cfg(unix)]
            hangup: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?,
        })
    }

    /// Watches `paths` instead (after a reload, the files the new configuration reads).
    pub fn watch(&mut self, paths: impl IntoIterator<Item = PathBuf>) {
        self.files.replace(paths);
    }

    /// Waits for the next reason to reload.
    pub async fn next(&mut self) -> Trigger {
        loop {
            #[cfg(unix)]
            let hangup = self.hangup.recv();
            #[cfg(not(unix))]
            let hangup = std::future::pending::<Option<()>>();
            tokio::select! {
                _ = self.tick.tick() => {
                    if self.files.changed() {
                        self.settle().await;
                        return Trigger::FileChanged;
                    }
                }
                _ = hangup => return Trigger::Hangup,
            }
        }
    }

    async fn settle(&mut self) {
        for _ in 0..MAX_SETTLE_ROUNDS {
            tokio::time::sleep(SETTLE).await;
            if !self.files.changed() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str) {
        std::fs::write(path, text).expect("write");
    }

    #[test]
    fn an_unchanged_file_is_not_a_change() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("gateway.yaml");
        write(&path, "routes: []\n");
        let mut files = WatchedFiles::new([path.clone()]);
        assert!(!files.changed());
        // Rewritten with the same bytes (an editor saving without edits): still no change.
        write(&path, "routes: []\n");
        assert!(!files.changed());
    }

    #[test]
    fn same_size_and_same_modification_time_is_still_a_change() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("gateway.yaml");
        write(&path, "policy: {allow: {domain: {is: a.com}}}\n");
        let mtime = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .expect("mtime");
        let mut files = WatchedFiles::new([path.clone()]);
        write(&path, "policy: {allow: {domain: {is: b.com}}}\n");
        std::fs::File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_modified(mtime))
            .expect("set mtime");
        assert!(files.changed());
        assert!(!files.changed(), "the change is reported once");
    }

    #[cfg(unix)]
    #[test]
    fn a_configmap_style_symlink_swap_is_a_change() {
        // Kubernetes mounts `gateway.yaml -> ..data/gateway.yaml`, `..data -> ..<timestamp>`,
        // and updates by pointing `..data` at a new directory.
        let dir = tempfile::tempdir().expect("tempdir");
        let (first, second) = (dir.path().join("..2026_01"), dir.path().join("..2026_02"));
        for (d, text) in [(&first, "version: 1\n"), (&second, "version: 2\n")] {
            std::fs::create_dir(d).expect("mkdir");
            write(&d.join("gateway.yaml"), text);
        }
        let data = dir.path().join("..data");
        std::os::unix::fs::symlink(&first, &data).expect("symlink");
        let path = dir.path().join("gateway.yaml");
        std::os::unix::fs::symlink("..data/gateway.yaml", &path).expect("symlink");
        let mut files = WatchedFiles::new([path]);
        assert!(!files.changed());

        let swap = dir.path().join("..data_tmp");
        std::os::unix::fs::symlink(&second, &swap).expect("symlink");
        std::fs::rename(&swap, &data).expect("swap");
        assert!(files.changed());
        assert!(!files.changed());
    }

    #[test]
    fn a_file_that_goes_and_comes_back_is_a_change_each_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("key.pem");
        let mut files = WatchedFiles::new([path.clone()]);
        assert!(!files.changed(), "missing and still missing");
        write(&path, "key");
        assert!(files.changed());
        std::fs::remove_file(&path).expect("remove");
        assert!(files.changed());
    }

    #[test]
    fn replacing_the_set_keeps_what_known_files_were_seen_as() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (gateway, key) = (dir.path().join("gateway.yaml"), dir.path().join("key.pem"));
        write(&gateway, "a\n");
        let mut files = WatchedFiles::new([gateway.clone()]);
        // The gateway file changes while the caller reads it and then adds the key file.
        write(&gateway, "b\n");
        write(&key, "k1");
        files.replace([gateway.clone(), key.clone(), gateway.clone()]);
        assert_eq!(files.paths().count(), 2);
        assert!(files.changed(), "the gateway file's change is not lost");
        write(&key, "k2");
        assert!(files.changed(), "the added file is watched");
        files.replace([gateway]);
        write(&key, "k3");
        assert!(
            !files.changed(),
            "a file no longer named is no longer watched"
        );
    }

    #[tokio::test]
    async fn the_watch_triggers_once_the_file_has_settled() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("gateway.yaml");
        write(&path, "a\n");
        let mut watch = ConfigWatch::new([path.clone()]).expect("watch");
        write(&path, "b\n");
        let trigger = tokio::time::timeout(Duration::from_secs(10), watch.next())
            .await
            .expect("a trigger within the poll interval");
        assert_eq!(trigger, Trigger::FileChanged);
        assert!(!watch.files.changed(), "settled: nothing left to report");
    }
}
