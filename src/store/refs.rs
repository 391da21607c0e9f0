//! Refs: the names of mmm's refs, and how the store moves them.
//!
//! Owns: the ref names of a spec (its branch, the two notes refs, the archive, a run's wip
//! ref); moving a ref by compare-and-swap (also when creating it: "must not exist" is the zero
//! id, checked under the ref's lock); syncing a moved ref's file and directories to the disk;
//! deleting a ref; retrying with jittered backoff while other writers hold a lock.
//! Every other room moves refs only through `Store::cas_ref` and `Store::delete_ref`.

use std::path::Path;
use std::time::Duration;

use git2::{ErrorCode, Oid};

use super::{Result, Store, StoreError, trailers};
use crate::spec::SpecId;

/// The branch of a spec.
pub fn branch_ref(spec: &SpecId) -> String {
    format!("refs/heads/mmm/{spec}")
}

/// The transcripts notes ref of a spec.
pub fn transcripts_ref(spec: &SpecId) -> String {
    format!("refs/notes/mmm/{spec}/transcripts")
}

/// The metrics notes ref of a spec.
pub fn metrics_ref(spec: &SpecId) -> String {
    format!("refs/notes/mmm/{spec}/metrics")
}

/// The archive ref of a spec.
pub fn archive_ref(spec: &SpecId) -> String {
    format!("refs/mmm/{spec}/archive")
}

/// The wip ref of a run.
pub fn wip_ref(spec: &SpecId, run: &str) -> String {
    format!("refs/mmm/{spec}/wip/{run}")
}

/// Flushes a file's or a directory's content and metadata to the disk.
fn sync_path(path: &Path) -> std::io::Result<()> {
    std::fs::File::open(path)?.sync_all()
}

pub(super) const MAX_ATTEMPTS: u32 = 200;

/// A lock or a concurrent change: worth another attempt. (`Exists` is not: it means a ref is
/// there already, or that another ref's name is in the way, which no retry changes.)
fn retriable(e: &git2::Error) -> bool {
    matches!(e.code(), ErrorCode::Locked | ErrorCode::Modified)
}

/// What to do about `existing`, a ref whose name is in the way of `wanted`.
fn conflict_hint(wanted: &str, existing: &str) -> String {
    let mmm_ref = ["refs/heads/mmm/", "refs/notes/mmm/", "refs/mmm/"]
        .iter()
        .any(|p| existing.starts_with(p));
    match existing.strip_prefix("refs/heads/") {
        Some(branch) if !mmm_ref => format!(
            "rename your branch `{branch}` (`git branch -m {branch} {branch}-old`), then run again"
        ),
        Some(branch) => format!(
            "the branch `{branch}` is in the way of {wanted}: rename it (`git branch -m {branch} <new name>`) or give the spec another id (its file name, or `id` in its front matter)"
        ),
        None => format!(
            "move it out of the way (note its target with `git rev-parse {existing}`, then `git update-ref -d {existing}`), then run again"
        ),
    }
}

/// Sleeps a jittered, growing delay before attempt `attempt + 1`.
pub(super) fn backoff(attempt: u32) {
    let base_ms = (1u64 << attempt.min(6)).min(50);
    let jitter = (crate::clock::jitter() * (base_ms * 1000) as f64) as u64;
    std::thread::sleep(Duration::from_micros(base_ms * 500 + jitter));
}

impl Store {
    /// Runs `f` on the ref `name` until it succeeds, retrying with jittered backoff while git
    /// reports a lock or a concurrent change; a stale lock or a name in the way is an error at
    /// once.
    fn retry<T>(
        &self,
        name: &str,
        what: &str,
        mut f: impl FnMut() -> Result<T, git2::Error>,
    ) -> Result<T> {
        for attempt in 0..MAX_ATTEMPTS {
            match f() {
                Ok(v) => return Ok(v),
                Err(e) if retriable(&e) => {
                    if let Some(stale) = self.stale_lock_on(name) {
                        return Err(stale);
                    }
                    backoff(attempt)
                }
                Err(e) => {
                    return Err(self
                        .conflict(name)
                        .unwrap_or_else(|| StoreError::git(what)(e)));
                }
            }
        }
        Err(self.gave_up(name, what))
    }

    /// The error after [`MAX_ATTEMPTS`] attempts on a locked ref.
    fn gave_up(&self, name: &str, what: &str) -> StoreError {
        self.stale_lock_on(name)
            .unwrap_or_else(|| StoreError::Contention {
                what: what.to_owned(),
                attempts: MAX_ATTEMPTS,
            })
    }

    /// The ref whose name is in the way of `name` (`refs/heads/mmm` for
    /// `refs/heads/mmm/alpha`, or one below it such as `refs/heads/mmm/alpha/x`), as an error.
    pub(super) fn conflict(&self, name: &str) -> Option<StoreError> {
        let parts: Vec<&str> = name.split('/').collect();
        let above = (3..parts.len()).map(|n| parts[..n].join("/"));
        let existing = above
            .into_iter()
            .find(|p| self.repo.find_reference(p).is_ok())
            .or_else(|| {
                let mut below = self.repo.references_glob(&format!("{name}/*")).ok()?;
                let r = below.next()?.ok()?;
                r.name().ok().map(str::to_owned)
            })?;
        Some(StoreError::RefConflict {
            wanted: name.to_owned(),
            hint: conflict_hint(name, &existing),
            existing,
        })
    }

    /// Checks that the refs of `spec` can be written: no other ref's name in their way and no
    /// stale lock on them. A run asks before it calls the agent, so that an iteration it pays
    /// for can be recorded.
    pub fn check_writable(&self, spec: &SpecId) -> Result<()> {
        let refs = [
            branch_ref(spec),
            transcripts_ref(spec),
            metrics_ref(spec),
            archive_ref(spec),
            wip_ref(spec, "x"),
        ];
        for name in &refs {
            if let Some(e) = self.conflict(name).or_else(|| self.stale_lock_on(name)) {
                return Err(e);
            }
        }
        Ok(())
    }

    /// Where `name` points, or `None` if it does not exist.
    pub(super) fn ref_target(&self, name: &str) -> Result<Option<Oid>> {
        match self.repo.refname_to_id(name) {
            Ok(oid) => Ok(Some(oid)),
            Err(e) if e.code() == ErrorCode::NotFound => Ok(None),
            Err(e) => Err(StoreError::git(format!("read {name}"))(e)),
        }
    }

    /// Makes a ref update durable: the ref's file (libgit2 writes every update as a loose ref,
    /// through a lock file renamed into place) and the directory that holds it; the first time
    /// this store moves a ref, every directory between it and the git directory too (libgit2
    /// may just have created them). Reflogs are not synced: they are a history of the refs, not
    /// the state (git's `core.fsync=committed` makes the same choice).
    fn sync_ref(&self, name: &str) -> Result<()> {
        if !self.opts.sync {
            return Ok(());
        }
        let common = self.repo.commondir();
        let path = common.join(name);
        let first = self.synced_refs.borrow_mut().insert(name.to_owned());
        let sync = |path: &Path| {
            sync_path(path).map_err(|source| StoreError::Sync {
                path: path.to_owned(),
                source,
            })
        };
        match sync_path(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // A concurrent `git pack-refs` moved it into packed-refs meanwhile.
                let packed = common.join("packed-refs");
                if packed.exists() {
                    sync(&packed)?;
                }
                return sync(common);
            }
            Err(source) => return Err(StoreError::Sync { path, source }),
        }
        let mut dir = path.parent();
        while let Some(d) = dir {
            sync(d)?;
            if !first || d == common {
                break;
            }
            dir = d.parent();
        }
        Ok(())
    }

    fn ensure_log(&self, name: &str) -> Result<()> {
        self.retry(name, &format!("create the reflog of {name}"), || {
            self.repo.reference_ensure_log(name)
        })
    }

    /// Moves `name` from `expected` (`None`: must not exist) to `new`. `Ok(false)` if another
    /// writer got there first; retries while the ref is locked.
    pub(super) fn cas_ref(
        &self,
        name: &str,
        expected: Option<Oid>,
        new: Oid,
        msg: &str,
    ) -> Result<bool> {
        // The objects the ref will reach must be on disk before it moves.
        self.flush()?;
        self.ensure_log(name)?;
        let msg = trailers::one_line(msg);
        for attempt in 0..MAX_ATTEMPTS {
            // "Must not exist yet" is the zero id: libgit2 checks it under the ref's lock. A
            // non-forced `reference()` checks for an existing ref *before* taking the lock,
            // so two writers creating the same ref at once could both succeed, the second
            // overwriting the first (it lost notes when four processes started one notes ref).
            let old = expected.unwrap_or(Oid::ZERO_SHA1);
            let res = self.repo.reference_matching(name, new, true, old, &msg);
            match res {
                Ok(_) => {
                    self.sync_ref(name)?;
                    return Ok(true);
                }
                Err(e) if e.code() == ErrorCode::Locked => {
                    if let Some(stale) = self.stale_lock_on(name) {
                        return Err(stale);
                    }
                    backoff(attempt)
                }
                Err(e)
                    if matches!(
                        e.code(),
                        ErrorCode::Modified | ErrorCode::Exists | ErrorCode::NotFound
                    ) =>
                {
                    // Another writer got there first, unless a ref's name is in the way.
                    return match self.conflict(name) {
                        Some(conflict) => Err(conflict),
                        None => Ok(false),
                    };
                }
                Err(e) => {
                    return Err(self
                        .conflict(name)
                        .unwrap_or_else(|| StoreError::git(format!("update {name}"))(e)));
                }
            }
        }
        Err(self.gave_up(name, name))
    }

    /// Deletes `name` if it still points at `expected`: `Ok(false)` when another writer moved
    /// or deleted it first (left as it is). libgit2 deletes a reference only if it has not
    /// changed since it was looked up, checked under the ref's lock, so the check and the
    /// delete are one step. Retries while the ref is locked.
    pub(super) fn delete_ref_if(&self, name: &str, expected: Oid) -> Result<bool> {
        for attempt in 0..MAX_ATTEMPTS {
            let mut r = match self.repo.find_reference(name) {
                Ok(r) => r,
                Err(e) if e.code() == ErrorCode::NotFound => return Ok(false),
                Err(e) => return Err(StoreError::git(format!("read {name}"))(e)),
            };
            if r.target() != Some(expected) {
                return Ok(false);
            }
            match r.delete() {
                Ok(()) => {
                    self.sync_ref(name)?;
                    return Ok(true);
                }
                Err(e) if e.code() == ErrorCode::Locked => {
                    if let Some(stale) = self.stale_lock_on(name) {
                        return Err(stale);
                    }
                    backoff(attempt)
                }
                // Moved (or deleted) since the lookup: look again.
                Err(e) if matches!(e.code(), ErrorCode::Modified | ErrorCode::NotFound) => {}
                Err(e) => return Err(StoreError::git(format!("delete {name}"))(e)),
            }
        }
        Err(self.gave_up(name, &format!("delete {name}")))
    }

    /// Deletes `name` if it exists, retrying while it is locked.
    pub(super) fn delete_ref(&self, name: &str) -> Result<()> {
        self.retry(name, &format!("delete {name}"), || {
            match self.repo.find_reference(name) {
                Ok(mut r) => r.delete(),
                Err(e) if e.code() == ErrorCode::NotFound => Ok(()),
                Err(e) => Err(e),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::clock::{FixedClock, SeqIdGen};
    use crate::store::StoreOptions;

    /// A repository with two commits, and a store on it.
    fn two_commits(dir: &Path) -> (Store, Oid, Oid) {
        let repo = git2::Repository::init(dir).expect("init");
        let sig = git2::Signature::now("t", "t@example.com").expect("signature");
        let tree = repo
            .treebuilder(None)
            .and_then(|t| t.write())
            .and_then(|t| repo.find_tree(t))
            .expect("empty tree");
        let a = repo
            .commit(None, &sig, &sig, "a", &tree, &[])
            .expect("commit a");
        let parent = repo.find_commit(a).expect("a");
        let b = repo
            .commit(None, &sig, &sig, "b", &tree, &[&parent])
            .expect("commit b");
        let opts = StoreOptions::new(
            Arc::new(FixedClock::new(1_700_000_000, std::time::Duration::ZERO)),
            Arc::new(SeqIdGen::new("r")),
        );
        (Store::open(dir, opts).expect("open"), a, b)
    }

    #[test]
    fn delete_ref_if_deletes_only_the_tip_it_was_given() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, a, b) = two_commits(dir.path());
        let name = "refs/heads/mmm/s";
        store
            .repo
            .reference(name, a, false, "test")
            .expect("create");
        // Read at `a`, then another writer moves it to `b` before the delete.
        let read = store.ref_target(name).expect("read");
        assert_eq!(read, Some(a));
        store
            .repo
            .reference(name, b, true, "another writer")
            .expect("move");
        assert!(!store.delete_ref_if(name, a).expect("delete"));
        assert_eq!(store.ref_target(name).expect("read"), Some(b), "left as is");
        // At the tip it was given, it goes; a ref already gone is not an error.
        assert!(store.delete_ref_if(name, b).expect("delete"));
        assert_eq!(store.ref_target(name).expect("read"), None);
        assert!(!store.delete_ref_if(name, b).expect("delete"));
    }
}
