//! Lock files: the `*.lock` files git takes on mmm's refs while it moves them, and those a
//! killed process left behind.
//!
//! Owns: finding the lock files on mmm's refs (`refs/heads/mmm/`, `refs/notes/mmm/`,
//! `refs/mmm/`) and mmm's own (`.git/mmm/tidy.lock`); judging one stale; the error a stale one
//! gives. A ref lock lives for the microseconds of one ref update, so one that is older than
//! [`LOCK_STALE_AFTER`] while no other live mmm process runs its spec (see `runs.rs`) was left
//! by a killed process: it would block the ref for ever. `doctor` removes it; everything else
//! reports it ([`StoreError::StaleLock`]) instead of retrying in vain.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::runs::RunFile;
use super::{Store, StoreError};

/// A ref lock older than this, with no other live mmm process running its spec, is stale.
pub const LOCK_STALE_AFTER: Duration = Duration::from_secs(5);

/// mmm's own tidy lock is stale after this (see `pack::tidy`).
const TIDY_STALE_AFTER: Duration = Duration::from_secs(60);

/// A lock file found on one of mmm's refs (or mmm's own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockFile {
    /// The file.
    pub path: PathBuf,
    /// What it locks: a ref name, or the file mmm locks.
    pub reference: String,
    /// The spec whose ref it locks (`None` for mmm's own locks).
    pub spec: Option<String>,
    /// How old it is.
    pub age: Duration,
}

/// The spec a ref of mmm's belongs to.
fn spec_of(reference: &str) -> Option<String> {
    let rest = ["refs/heads/mmm/", "refs/notes/mmm/", "refs/mmm/"]
        .iter()
        .find_map(|p| reference.strip_prefix(p))?;
    rest.split('/')
        .next()
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

fn age_of(path: &Path) -> Option<Duration> {
    let modified = std::fs::metadata(path).ok()?.modified().ok()?;
    Some(modified.elapsed().unwrap_or_default())
}

/// Every `*.lock` file below `dir`, recursively.
fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        match e.file_type() {
            Ok(t) if t.is_dir() => walk(&path, out),
            Ok(t) if t.is_file() && path.extension().is_some_and(|x| x == "lock") => out.push(path),
            _ => {}
        }
    }
}

/// A duration for people, to the second.
pub(super) fn for_people(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs().max(1))).to_string()
}

impl Store {
    /// The lock files on mmm's refs and mmm's own, oldest first.
    pub(super) fn lock_files(&self) -> Vec<LockFile> {
        let common = self.repo.commondir();
        let mut paths = Vec::new();
        for dir in ["refs/heads/mmm", "refs/notes/mmm", "refs/mmm"] {
            walk(&common.join(dir), &mut paths);
        }
        let tidy = common.join("mmm").join("tidy.lock");
        if tidy.is_file() {
            paths.push(tidy.clone());
        }
        let mut out: Vec<LockFile> = paths
            .into_iter()
            .filter_map(|path| {
                let age = age_of(&path)?;
                let reference = if path == tidy {
                    "mmm/tidy.lock".to_owned()
                } else {
                    let rel = path.strip_prefix(common).ok()?.to_string_lossy();
                    rel.strip_suffix(".lock")?.replace('\\', "/")
                };
                Some(LockFile {
                    spec: spec_of(&reference),
                    path,
                    reference,
                    age,
                })
            })
            .collect();
        out.sort_by_key(|l| std::cmp::Reverse(l.age));
        out
    }

    /// Whether `lock` is stale: old enough, and (for a ref's lock) no live mmm process other
    /// than this one runs its spec. `runs` is [`Store::live_runs`].
    pub(super) fn is_stale(&self, lock: &LockFile, runs: &[RunFile]) -> bool {
        let Some(spec) = &lock.spec else {
            return lock.age >= TIDY_STALE_AFTER;
        };
        let me = std::process::id();
        let host = super::runs::host_name();
        let held_by_another = runs.iter().any(|r| match r {
            RunFile::Live(h) => &h.spec == spec && !(h.pid == me && h.host == host),
            RunFile::Dead { .. } => false,
        });
        lock.age >= LOCK_STALE_AFTER && !held_by_another
    }

    /// The error for the lock on the ref `name` when it is stale; `None` when there is no lock
    /// or it may still be in use.
    pub(super) fn stale_lock_on(&self, name: &str) -> Option<StoreError> {
        let path = self.repo.commondir().join(format!("{name}.lock"));
        let age = age_of(&path)?;
        let lock = LockFile {
            spec: spec_of(name),
            path,
            reference: name.to_owned(),
            age,
        };
        if lock.age < LOCK_STALE_AFTER || !self.is_stale(&lock, &self.live_runs()) {
            return None;
        }
        Some(StoreError::StaleLock {
            reference: lock.reference,
            lock: lock.path,
            age: for_people(lock.age),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spec_of_a_ref() {
        assert_eq!(spec_of("refs/heads/mmm/alpha").as_deref(), Some("alpha"));
        assert_eq!(
            spec_of("refs/notes/mmm/alpha/transcripts").as_deref(),
            Some("alpha")
        );
        assert_eq!(spec_of("refs/mmm/b/wip/01AB").as_deref(), Some("b"));
        assert_eq!(spec_of("refs/heads/main"), None);
        assert_eq!(spec_of("refs/heads/mmm/"), None);
    }
}
