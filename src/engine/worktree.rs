//! The iteration's workspace: a linked git worktree under `.git/mmm/worktrees/`, detached at the
//! commit the iteration starts from, so that the user's checkout is never touched.
//!
//! A spec's worktree is kept between runs by default (`[loop] keep_worktrees`, see
//! [`Worktree::acquire`] and `store::kept`): the next run of the spec locks it, resets it to its
//! start commit by an incremental checkout and removes untracked files that are not ignored,
//! so ignored build outputs (`target/`, `node_modules/`) stay warm and nothing a previous run
//! left enters a commit. A worktree that is not kept is removed when the run ends, also after
//! an error (the guard's `Drop`); `git mmm doctor` prunes any that a killed process left.

use std::path::{Path, PathBuf};
use std::process::Command;

use std::cell::RefCell;

use git2::{Oid, Repository};

use super::watch::{Changes, Watch};

/// A worktree could not be made, read or removed.
#[derive(Debug, thiserror::Error)]
pub enum WorktreeError {
    /// `git worktree` failed.
    #[error("git worktree {action} failed: {stderr}")]
    Git {
        /// What was attempted.
        action: &'static str,
        /// What git said.
        stderr: String,
    },
    /// `git` could not be started.
    #[error("cannot run git: {0}")]
    Spawn(#[from] std::io::Error),
    /// The objects the worktree's index names could not be written to disk.
    #[error(transparent)]
    Objects(#[from] crate::store::StoreError),
    /// A libgit2 operation on the worktree failed.
    #[error("worktree {path}: {source}")]
    Repo {
        /// The worktree.
        path: PathBuf,
        /// Why.
        source: git2::Error,
    },
}

/// What [`Worktree::scan`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The tree object of the worktree's content.
    pub tree: Oid,
    /// Whether files were added or deleted (or changed type, or an ignore file changed) since
    /// the previous snapshot; `false` means only contents changed.
    pub files_changed: bool,
    /// The paths (relative, `/`-separated) whose content or existence changed since the
    /// previous snapshot.
    pub changed: Vec<String>,
}

/// A run's worktree; on drop a kept one is released for the next run, another removed.
pub struct Worktree {
    main_git_dir: PathBuf,
    path: PathBuf,
    repo: Repository,
    removed: bool,
    /// The spec it is kept for (`None`: removed at the end).
    kept: Option<String>,
    /// What changed since the last snapshot, where the platform can tell (see `watch`).
    watch: RefCell<Option<Watch>>,
}

impl std::fmt::Debug for Worktree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worktree")
            .field("path", &self.path)
            .finish()
    }
}

/// The directory that holds mmm's worktrees inside a repository's git dir.
pub fn worktrees_dir(git_dir: &Path) -> PathBuf {
    git_dir.join("mmm").join("worktrees")
}

/// Serialises `git worktree add` within this process: git reads the admin directories of the
/// other worktrees while it adds one, and fails ("failed to read …/commondir") on one that
/// another `add` has only half written.
static ADDING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The lock reason of a run's worktree: the pid lets `git mmm doctor` tell a killed run's
/// worktree from a live one.
fn run_lock(name: &str) -> String {
    format!(
        "{}{name} pid {}",
        crate::store::MMM_LOCK_PREFIX,
        std::process::id()
    )
}

/// Runs `git worktree add` (locked, detached), one at a time in this process and again when
/// another process's half-made worktree got in the way.
fn add_worktree(
    main_git_dir: &Path,
    name: &str,
    path: &Path,
    commit: Oid,
) -> Result<(), WorktreeError> {
    let _one_at_a_time = ADDING.lock().unwrap_or_else(|e| e.into_inner());
    let mut attempt = 0;
    loop {
        let out = Command::new("git")
            .arg("--git-dir")
            .arg(main_git_dir)
            // Locked, so that `git mmm doctor` never prunes a worktree a live run is using.
            .args([
                "worktree", "add", "--detach", "--quiet", "--lock", "--reason",
            ])
            .arg(run_lock(name))
            .arg(path)
            .arg(commit.to_string())
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE")
            .env_remove("GIT_INDEX_FILE")
            .output()?;
        if out.status.success() {
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        attempt += 1;
        let racing = stderr.contains("failed to read") && stderr.contains("worktrees");
        if !racing || attempt >= 5 {
            return Err(WorktreeError::Git {
                action: "add",
                stderr,
            });
        }
        // Another process is adding a worktree: let it finish, then try again from scratch.
        let _ = std::fs::remove_dir_all(path);
        std::thread::sleep(std::time::Duration::from_millis(50 * attempt));
    }
}

impl Worktree {
    /// Adds a detached worktree named `name` at `commit`, in `root` (default: `.git/mmm/worktrees/`).
    /// Untracked paths matching `ignore` (`.gitignore` patterns: agents' scratch files) stay out
    /// of every snapshot, as ignored files do; the rules live in memory only, nothing is
    /// written to a `.gitignore` or to `info/exclude`.
    pub fn create(
        main: &Repository,
        root: Option<&Path>,
        name: &str,
        ignore: &[String],
        commit: Oid,
    ) -> Result<Worktree, WorktreeError> {
        let main_git_dir = main.commondir().to_path_buf();
        let dir = root.map_or_else(|| worktrees_dir(&main_git_dir), Path::to_path_buf);
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(name);
        discard(&main_git_dir, &path);
        add_worktree(&main_git_dir, name, &path, commit)?;
        Self::open(main, path, ignore, None)
    }

    /// The worktree kept for `spec` (`.git/mmm/worktrees/<spec>`, or in `root`), locked for
    /// the run `name` (`<spec>-<run>`) and reset to `commit`: tracked files by an incremental
    /// checkout, untracked files removed unless ignored (by `.gitignore` or by `ignore`), so
    /// ignored build outputs stay. Made on first use. A kept worktree that a live process uses
    /// is never shared: the run then gets a worktree of its own ([`Worktree::create`]).
    pub fn acquire(
        main: &Repository,
        root: Option<&Path>,
        spec: &str,
        name: &str,
        ignore: &[String],
        commit: Oid,
    ) -> Result<Worktree, WorktreeError> {
        let main_git_dir = main.commondir().to_path_buf();
        let dir = root.map_or_else(|| worktrees_dir(&main_git_dir), Path::to_path_buf);
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(spec);
        let reused = match kept_admin(&main_git_dir, &path, spec) {
            Some(admin) => match crate::store::lock_state(&admin) {
                crate::store::KeptState::InUse { .. } => {
                    return Self::create(main, root, name, ignore, commit);
                }
                _ => take(&admin, name).is_ok() && reset(&path, commit, ignore).is_ok(),
            },
            None => false,
        };
        if !reused {
            // Missing, half made by a killed run, or not resettable: made afresh.
            discard(&main_git_dir, &path);
            add_worktree(&main_git_dir, name, &path, commit)?;
            let admin = admin_dir(&path).ok_or_else(|| WorktreeError::Git {
                action: "add",
                stderr: format!("{} has no administrative directory", path.display()),
            })?;
            std::fs::write(admin.join(crate::store::KEPT_MARKER), format!("{spec}\n"))?;
        }
        Self::open(main, path, ignore, Some(spec.to_owned()))
    }

    /// Opens a worktree that is checked out at its start commit.
    fn open(
        main: &Repository,
        path: PathBuf,
        ignore: &[String],
        kept: Option<String>,
    ) -> Result<Worktree, WorktreeError> {
        let main_git_dir = main.commondir().to_path_buf();
        let repo = Repository::open(&path).map_err(|source| WorktreeError::Repo {
            path: path.clone(),
            source,
        })?;
        // One object database for the worktree and the store: the snapshot's blobs and trees
        // join the store's in-memory batch and reach the disk in the iteration's one pack.
        main.odb()
            .and_then(|odb| repo.set_odb(&odb))
            .map_err(|source| WorktreeError::Repo {
                path: path.clone(),
                source,
            })?;
        if !ignore.is_empty() {
            repo.add_ignore_rule(&ignore.join("\n"))
                .map_err(|source| WorktreeError::Repo {
                    path: path.clone(),
                    source,
                })?;
        }
        let worktree = Worktree {
            main_git_dir,
            path,
            repo,
            removed: false,
            kept,
            watch: RefCell::new(None),
        };
        worktree.restart_watch();
        Ok(worktree)
    }

    /// (Re)starts watching the worktree's directories, including those of tracked files that
    /// an ignore rule covers. Without a watch, snapshots scan.
    fn restart_watch(&self) {
        let tracked: Vec<String> = match self.repo.index() {
            Ok(index) => {
                let paths: Vec<PathBuf> = index
                    .iter()
                    .filter_map(|e| String::from_utf8(e.path).ok().map(PathBuf::from))
                    .collect();
                super::watch::parent_dirs(paths.iter().map(PathBuf::as_path))
            }
            Err(_) => Vec::new(),
        };
        let repo = &self.repo;
        *self.watch.borrow_mut() = Watch::start(&self.path, &tracked, &mut |rel| {
            repo.is_path_ignored(rel).unwrap_or(false)
        });
    }

    /// What the watch saw since it was last asked (`Unknown` without a watch).
    fn watched_changes(&self) -> Changes {
        let mut watch = self.watch.borrow_mut();
        let Some(w) = watch.as_mut() else {
            return Changes::Unknown;
        };
        let repo = &self.repo;
        w.drain(&mut |rel| repo.is_path_ignored(rel).unwrap_or(false))
    }

    /// Whether a watch tells this worktree's changes (Linux).
    pub fn is_watched(&self) -> bool {
        self.watch.borrow().is_some()
    }

    /// The worktree's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the worktree's current content (what `git add -A` would stage, so `.gitignore`d
    /// files stay out) as a tree object and returns its id.
    pub fn snapshot(&self) -> Result<Oid, WorktreeError> {
        self.scan().map(|s| s.tree)
    }

    /// [`Worktree::snapshot`], also telling whether the set of files may have changed since the
    /// last snapshot (a file added, deleted or changed type, or an ignore file changed), so that
    /// a cached list of the worktree's files can be kept when only contents changed.
    pub fn scan(&self) -> Result<Snapshot, WorktreeError> {
        // The scan sees everything the watch saw; a watch that lost track starts afresh.
        if self.is_watched() && self.watched_changes() == Changes::Unknown {
            self.restart_watch();
        }
        self.full_scan()
    }

    /// [`Worktree::scan`] without looking at the watch.
    fn full_scan(&self) -> Result<Snapshot, WorktreeError> {
        let err = |source| WorktreeError::Repo {
            path: self.path.clone(),
            source,
        };
        let mut index = self.repo.index().map_err(err)?;
        // One scan of the worktree against the index (`add_all` then `update_all` would scan
        // it twice): new and changed files are added, deleted ones removed.
        let mut opts = git2::DiffOptions::new();
        opts.include_untracked(true)
            .recurse_untracked_dirs(true)
            .include_typechange(true);
        let diff = self
            .repo
            .diff_index_to_workdir(Some(&index), Some(&mut opts))
            .map_err(err)?;
        let mut files_changed = false;
        let mut changed = Vec::new();
        for delta in diff.deltas() {
            match delta.status() {
                git2::Delta::Deleted => {
                    files_changed = true;
                    if let Some(p) = delta.old_file().path() {
                        changed.push(p.to_string_lossy().into_owned());
                        index.remove_path(p).map_err(err)?;
                    }
                }
                status => {
                    if let Some(p) = delta.new_file().path() {
                        changed.push(p.to_string_lossy().into_owned());
                        let ignore_file = p
                            .file_name()
                            .is_some_and(|n| n == ".gitignore" || n == ".ignore");
                        files_changed |= status != git2::Delta::Modified || ignore_file;
                        index.add_path(p).map_err(err)?;
                    }
                }
            }
        }
        // The index stays in memory (see `Worktree::write_index`).
        Ok(Snapshot {
            tree: index.write_tree().map_err(err)?,
            files_changed,
            changed,
        })
    }

    /// A snapshot by the cheapest exact way: the paths the watch saw change, plus `written`
    /// (paths mmm itself wrote), are staged one by one; without a watch, and when
    /// `nothing_else` says that no process ran in the worktree since the last snapshot, only
    /// `written` is staged; otherwise (or when the watch lost track, or a path is odd) the
    /// worktree is scanned.
    pub fn refresh(
        &self,
        written: &[String],
        nothing_else: bool,
    ) -> Result<Snapshot, WorktreeError> {
        let paths: Vec<String> = match self.watched_changes() {
            Changes::Paths(seen) => {
                let mut all = seen;
                all.extend(written.iter().cloned());
                all.into_iter().collect()
            }
            Changes::Unknown if !self.is_watched() && nothing_else => written.to_vec(),
            Changes::Unknown => {
                if self.is_watched() {
                    self.restart_watch();
                }
                return self.full_scan();
            }
        };
        match self.stage_paths(&paths)? {
            Some(snap) => Ok(snap),
            None => self.scan(),
        }
    }

    /// [`Worktree::scan`] when the caller knows that nothing but the files at `paths`
    /// (relative, `/`-separated) changed since the last snapshot: only those paths are staged,
    /// without scanning the rest of the worktree. A path that does not exist any more is
    /// removed; a new path that `.gitignore` ignores stays out, as `scan` would leave it.
    /// `Ok(None)` when a path is not a plain relative path to a regular file or to nothing
    /// (absolute, `..`, a directory, a symlink): the caller scans instead.
    pub fn stage_paths(&self, paths: &[String]) -> Result<Option<Snapshot>, WorktreeError> {
        let err = |source| WorktreeError::Repo {
            path: self.path.clone(),
            source,
        };
        let mut clean = std::collections::BTreeSet::new();
        for p in paths {
            let mut parts = Vec::new();
            for c in Path::new(p).components() {
                match c {
                    std::path::Component::Normal(s) => match s.to_str() {
                        Some(s) => parts.push(s),
                        None => return Ok(None),
                    },
                    std::path::Component::CurDir => {}
                    _ => return Ok(None),
                }
            }
            if parts.is_empty() || parts.contains(&".git") {
                return Ok(None);
            }
            // Every parent must be a real directory: a path through a symlink is not what a
            // scan would stage.
            let mut dir = self.path.clone();
            for part in &parts[..parts.len() - 1] {
                dir.push(part);
                match std::fs::symlink_metadata(&dir) {
                    Ok(m) if m.file_type().is_dir() => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                    _ => return Ok(None),
                }
            }
            clean.insert(parts.join("/"));
        }
        let mut index = self.repo.index().map_err(err)?;
        let mut files_changed = false;
        for rel in &clean {
            let rel_path = Path::new(rel);
            let tracked = index.get_path(rel_path, 0).is_some();
            let ignore_file = rel_path
                .file_name()
                .is_some_and(|n| n == ".gitignore" || n == ".ignore");
            match std::fs::symlink_metadata(self.path.join(rel_path)) {
                Ok(m) if m.file_type().is_file() => {
                    if !tracked {
                        if self.repo.is_path_ignored(rel_path).map_err(err)? {
                            continue;
                        }
                        files_changed = true;
                    }
                    files_changed |= ignore_file;
                    index.add_path(rel_path).map_err(err)?;
                }
                Ok(_) => return Ok(None),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    if tracked {
                        files_changed = true;
                        index.remove_path(rel_path).map_err(err)?;
                    } else {
                        // A directory that was deleted: its files leave the index with it.
                        let before = index.len();
                        index.remove_dir(rel_path, 0).map_err(err)?;
                        files_changed |= index.len() != before;
                    }
                }
                Err(_) => return Ok(None),
            }
        }
        Ok(Some(Snapshot {
            tree: index.write_tree().map_err(err)?,
            files_changed,
            changed: clean.into_iter().collect(),
        }))
    }

    /// Makes the worktree's content exactly that of `commit` (used to roll the workspace back
    /// to the last good iteration), removing untracked files.
    pub fn reset_to(&self, commit: Oid) -> Result<(), WorktreeError> {
        let err = |source| WorktreeError::Repo {
            path: self.path.clone(),
            source,
        };
        let object = self.repo.find_object(commit, None).map_err(err)?;
        // The checkout writes the index: what it names must be on disk.
        crate::store::flush_shared(&self.repo)?;
        let mut checkout = git2::build::CheckoutBuilder::new();
        checkout.force().remove_untracked(true);
        self.repo
            .checkout_tree(&object, Some(&mut checkout))
            .map_err(err)?;
        self.repo.set_head_detached(commit).map_err(err)?;
        let mut index = self.repo.index().map_err(err)?;
        let tree = object.peel_to_tree().map_err(err)?;
        index.read_tree(&tree).map_err(err)?;
        index.write().map_err(err)?;
        // The checkout's own writes are in the index already.
        if self.is_watched() && self.watched_changes() == Changes::Unknown {
            self.restart_watch();
        }
        Ok(())
    }

    /// Moves the worktree's HEAD to a newly recorded iteration commit (whose tree is what the
    /// worktree holds), so that the next snapshot diffs against it.
    ///
    /// The HEAD file is written directly (a detached HEAD is one line: the commit id), through a
    /// temporary file and a rename, not synced and without a reflog entry: the worktree is
    /// scratch space that a crash discards, and the commit itself is on the branch.
    pub fn advance(&self, commit: Oid) -> Result<(), WorktreeError> {
        self.write_index()?;
        let dir = self.repo.path();
        let mut tmp = tempfile::Builder::new()
            .prefix("HEAD.mmm-")
            .tempfile_in(dir)?;
        std::io::Write::write_all(&mut tmp, format!("{commit}\n").as_bytes())?;
        tmp.persist(dir.join("HEAD")).map_err(|e| e.error)?;
        Ok(())
    }

    /// Writes the worktree's index, kept in memory by the snapshots, to its file, once the
    /// objects it names are on disk.
    ///
    /// The snapshots stage into the index in memory: its blobs and trees wait in the store's
    /// in-memory batch (the worktree shares the store's object database) until the iteration
    /// is recorded. An index file written then would name objects that a kill before the
    /// record loses, and `git fsck` reports a worktree's index naming a missing blob. So the
    /// file is written only here, after the shared batch is flushed (a no-op right after
    /// the store recorded an iteration, which flushes it).
    pub fn write_index(&self) -> Result<(), WorktreeError> {
        let err = |source| WorktreeError::Repo {
            path: self.path.clone(),
            source,
        };
        crate::store::flush_shared(&self.repo)?;
        self.repo.index().and_then(|mut i| i.write()).map_err(err)
    }

    /// Removes the worktree and its administrative files.
    pub fn remove(mut self) -> Result<(), WorktreeError> {
        self.removed = true;
        remove(&self.main_git_dir, &self.path)
    }

    /// Ends the run's use of the worktree: a kept one is released (locked as idle, for the
    /// next run of its spec), another removed.
    pub fn close(mut self) -> Result<(), WorktreeError> {
        self.removed = true;
        match &self.kept {
            Some(spec) => self.release(spec),
            None => remove(&self.main_git_dir, &self.path),
        }
    }

    /// Whether the worktree is kept between runs.
    pub fn is_kept(&self) -> bool {
        self.kept.is_some()
    }

    fn release(&self, spec: &str) -> Result<(), WorktreeError> {
        let reason = format!("{}{spec}", crate::store::MMM_KEPT_PREFIX);
        Ok(crate::store::write_lock(self.repo.path(), &reason)?)
    }
}

impl Drop for Worktree {
    fn drop(&mut self) {
        if self.removed {
            return;
        }
        match &self.kept {
            Some(spec) => {
                let _ = self.release(spec);
            }
            None => {
                let _ = remove(&self.main_git_dir, &self.path);
            }
        }
    }
}

/// Removes whatever is at `path` (a killed run's worktree of the same name, a half-made one).
fn discard(main_git_dir: &Path, path: &Path) {
    if path.exists() {
        let _ = git(
            main_git_dir,
            &["worktree", "remove", "--force", "--force"],
            Some(path),
        );
        let _ = std::fs::remove_dir_all(path);
        let _ = git(main_git_dir, &["worktree", "prune"], None);
    }
}

/// The administrative directory a worktree's `.git` file names.
fn admin_dir(path: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(path.join(".git")).ok()?;
    let dir = PathBuf::from(text.strip_prefix("gitdir:")?.trim());
    Some(if dir.is_absolute() {
        dir
    } else {
        path.join(dir)
    })
}

/// The administrative directory of the worktree at `path` when it is the one kept for `spec`
/// in this repository.
fn kept_admin(main_git_dir: &Path, path: &Path, spec: &str) -> Option<PathBuf> {
    let admin = admin_dir(path)?;
    let ours = admin.parent()?.canonicalize().ok()?
        == main_git_dir.join("worktrees").canonicalize().ok()?;
    let kept = crate::store::kept_spec(&admin).is_some_and(|s| s == spec);
    (ours && kept && admin.join("HEAD").is_file()).then_some(admin)
}

/// Locks a kept worktree for the run `name`. Lock files a killed run left in its
/// administrative directory (`index.lock`) go: no other process uses the worktree.
fn take(admin: &Path, name: &str) -> std::io::Result<()> {
    crate::store::write_lock(admin, &run_lock(name))?;
    for stale in ["index.lock", "HEAD.lock"] {
        let _ = std::fs::remove_file(admin.join(stale));
    }
    Ok(())
}

/// Resets a kept worktree to `commit`: `git checkout --force --detach` (which writes only the
/// files that differ, by the index's stat data) and `git clean -d` of untracked files that are
/// not ignored (`ignore` too: agents' scratch files are ignored in the run, so they stay).
fn reset(path: &Path, commit: Oid, ignore: &[String]) -> Result<(), WorktreeError> {
    let commit = commit.to_string();
    in_worktree(
        path,
        &["checkout", "--force", "--detach", "--quiet", &commit, "--"],
        "checkout",
    )?;
    let mut clean: Vec<&str> = vec!["clean", "-d", "--force", "--quiet"];
    for pattern in ignore {
        clean.push("--exclude");
        clean.push(pattern);
    }
    in_worktree(path, &clean, "clean")
}

/// Runs git inside a worktree.
fn in_worktree(path: &Path, args: &[&str], action: &'static str) -> Result<(), WorktreeError> {
    let out = Command::new("git")
        .arg("-C")
        .arg(path)
        .args(args)
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE")
        .output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(WorktreeError::Git {
            action,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

fn remove(main_git_dir: &Path, path: &Path) -> Result<(), WorktreeError> {
    // Twice `--force`: the worktree is locked while in use.
    let result = git(
        main_git_dir,
        &["worktree", "remove", "--force", "--force"],
        Some(path),
    );
    if path.exists() {
        let _ = std::fs::remove_dir_all(path);
    }
    let _ = git(main_git_dir, &["worktree", "prune"], None);
    result
}

fn git(git_dir: &Path, args: &[&str], path: Option<&Path>) -> Result<(), WorktreeError> {
    let mut cmd = Command::new("git");
    cmd.arg("--git-dir").arg(git_dir).args(args);
    if let Some(p) = path {
        cmd.arg(p);
    }
    let out = cmd
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE")
        .output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(WorktreeError::Git {
            action: "remove",
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git_in(dir: &Path, args: &[&str]) -> String {
        let out = Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.com")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.com")
            .env("GIT_AUTHOR_DATE", "2025-01-01T00:00:00Z")
            .env("GIT_COMMITTER_DATE", "2025-01-01T00:00:00Z")
            .output()
            .expect("run git");
        assert!(out.status.success(), "git {args:?}: {:?}", out);
        String::from_utf8(out.stdout).expect("utf-8")
    }

    #[test]
    fn snapshot_is_what_git_add_all_would_stage() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        git_in(root, &["init", "--quiet", "--initial-branch=main"]);
        std::fs::write(root.join(".gitignore"), "*.log\n").expect("write");
        std::fs::create_dir_all(root.join("src/a")).expect("mkdir");
        std::fs::write(root.join("src/a/keep.rs"), "keep\n").expect("write");
        std::fs::write(root.join("src/a/change.rs"), "old\n").expect("write");
        std::fs::write(root.join("src/gone.rs"), "gone\n").expect("write");
        git_in(root, &["add", "--all"]);
        git_in(root, &["commit", "--quiet", "-m", "base"]);
        let head = git_in(root, &["rev-parse", "HEAD"]);
        let repo = Repository::open(root).expect("open");
        let wt = Worktree::create(
            &repo,
            None,
            "t",
            &[],
            Oid::from_str(head.trim()).expect("oid"),
        )
        .expect("worktree");
        let p = wt.path().to_path_buf();
        std::fs::write(p.join("src/a/change.rs"), "new\n").expect("write");
        std::fs::remove_file(p.join("src/gone.rs")).expect("rm");
        std::fs::create_dir_all(p.join("src/b/c")).expect("mkdir");
        std::fs::write(p.join("src/b/c/added.rs"), "added\n").expect("write");
        std::fs::write(p.join("src/b/debug.log"), "ignored\n").expect("write");

        let tree = wt.snapshot().expect("snapshot");
        // The same changes staged by git itself, in a scratch index, give the same tree.
        let scratch = root.join("scratch-index");
        let out = Command::new("git")
            .args(["add", "--all"])
            .current_dir(&p)
            .env("GIT_INDEX_FILE", &scratch)
            .output()
            .expect("git add");
        assert!(out.status.success(), "{out:?}");
        let out = Command::new("git")
            .args(["write-tree"])
            .current_dir(&p)
            .env("GIT_INDEX_FILE", &scratch)
            .output()
            .expect("git write-tree");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            tree.to_string()
        );
        let files = git_in(root, &["ls-tree", "-r", "--name-only", &tree.to_string()]);
        assert_eq!(
            files,
            ".gitignore\nsrc/a/change.rs\nsrc/a/keep.rs\nsrc/b/c/added.rs\n"
        );
        // Nothing changed: the same tree again.
        assert_eq!(wt.snapshot().expect("snapshot"), tree);
        wt.remove().expect("remove");
    }

    #[test]
    fn scan_tells_whether_files_were_added_or_deleted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        git_in(root, &["init", "--quiet", "--initial-branch=main"]);
        std::fs::write(root.join(".gitignore"), "*.log\n").expect("write");
        std::fs::write(root.join("a.rs"), "a\n").expect("write");
        git_in(root, &["add", "--all"]);
        git_in(root, &["commit", "--quiet", "-m", "base"]);
        let head = git_in(root, &["rev-parse", "HEAD"]);
        let repo = Repository::open(root).expect("open");
        let wt = Worktree::create(
            &repo,
            None,
            "s",
            &[],
            Oid::from_str(head.trim()).expect("oid"),
        )
        .expect("worktree");
        let p = wt.path().to_path_buf();
        let changed = || wt.scan().expect("scan").files_changed;
        assert!(!changed(), "nothing changed");
        std::fs::write(p.join("a.rs"), "a changed\n").expect("write");
        assert!(!changed(), "only a content changed");
        std::fs::write(p.join("x.log"), "ignored\n").expect("write");
        assert!(!changed(), "an ignored file is not a file of the worktree");
        std::fs::write(p.join("b.rs"), "b\n").expect("write");
        assert!(changed(), "a file was added");
        assert!(!changed(), "the addition was staged by the previous scan");
        std::fs::remove_file(p.join("b.rs")).expect("rm");
        assert!(changed(), "a file was deleted");
        std::fs::write(p.join(".gitignore"), "*.log\n*.tmp\n").expect("write");
        assert!(changed(), "an ignore file changed");
        wt.remove().expect("remove");
    }

    #[test]
    fn staging_the_changed_paths_gives_the_tree_a_scan_gives() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        git_in(root, &["init", "--quiet", "--initial-branch=main"]);
        std::fs::write(root.join(".gitignore"), "*.log\n").expect("write");
        std::fs::create_dir_all(root.join("src")).expect("mkdir");
        std::fs::write(root.join("src/change.rs"), "old\n").expect("write");
        std::fs::write(root.join("src/gone.rs"), "gone\n").expect("write");
        git_in(root, &["add", "--all"]);
        git_in(root, &["commit", "--quiet", "-m", "base"]);
        let head = git_in(root, &["rev-parse", "HEAD"]);
        let repo = Repository::open(root).expect("open");
        let wt = Worktree::create(
            &repo,
            None,
            "p",
            &[],
            Oid::from_str(head.trim()).expect("oid"),
        )
        .expect("worktree");
        let p = wt.path().to_path_buf();

        std::fs::write(p.join("src/change.rs"), "new\n").expect("write");
        let only = wt
            .stage_paths(&["./src/change.rs".to_owned()])
            .expect("stage")
            .expect("plain paths");
        assert!(!only.files_changed, "a content change only");

        std::fs::remove_file(p.join("src/gone.rs")).expect("rm");
        std::fs::create_dir_all(p.join("src/b")).expect("mkdir");
        std::fs::write(p.join("src/b/added.rs"), "added\n").expect("write");
        std::fs::write(p.join("src/b/debug.log"), "ignored\n").expect("write");
        let paths = [
            "src/gone.rs",
            "src/b/added.rs",
            "src/b/debug.log",
            "src/never.rs",
        ]
        .map(String::from);
        let staged = wt.stage_paths(&paths).expect("stage").expect("plain paths");
        assert!(staged.files_changed);
        let files = git_in(
            root,
            &["ls-tree", "-r", "--name-only", &staged.tree.to_string()],
        );
        assert_eq!(files, ".gitignore\nsrc/b/added.rs\nsrc/change.rs\n");
        // A full scan finds nothing more to stage.
        assert_eq!(
            wt.scan().expect("scan"),
            Snapshot {
                tree: staged.tree,
                files_changed: false,
                changed: Vec::new(),
            }
        );
        std::os::unix::fs::symlink(p.join("src"), p.join("link")).expect("symlink");
        for odd in [
            "../x.rs",
            "/etc/passwd",
            "src",
            ".git/config",
            "link/change.rs",
        ] {
            assert_eq!(
                wt.stage_paths(&[odd.to_owned()]).expect("stage"),
                None,
                "{odd}"
            );
        }
        wt.remove().expect("remove");
    }

    #[test]
    fn a_kept_worktree_in_use_is_never_shared_and_is_reset_when_taken_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        git_in(root, &["init", "--quiet", "--initial-branch=main"]);
        std::fs::write(root.join(".gitignore"), "target/\n").expect("write");
        std::fs::write(root.join("a.rs"), "a\n").expect("write");
        git_in(root, &["add", "--all"]);
        git_in(root, &["commit", "--quiet", "-m", "base"]);
        let head = Oid::from_str(git_in(root, &["rev-parse", "HEAD"]).trim()).expect("oid");
        let repo = Repository::open(root).expect("open");
        let ignore = [".agent-cache".to_owned()];
        let first = Worktree::acquire(&repo, None, "s", "s-run1", &ignore, head).expect("first");
        assert!(first.is_kept());
        let kept = first.path().to_path_buf();
        // Held by a live process (this one): a second taker gets a worktree of its own.
        let second = Worktree::acquire(&repo, None, "s", "s-run2", &ignore, head).expect("second");
        assert!(!second.is_kept());
        assert_ne!(second.path(), kept);
        second.close().expect("close");
        std::fs::create_dir_all(kept.join("target")).expect("mkdir");
        std::fs::write(kept.join("target/out"), "built\n").expect("write");
        std::fs::write(kept.join(".agent-cache"), "scratch\n").expect("write");
        std::fs::write(kept.join("left.txt"), "left\n").expect("write");
        std::fs::write(kept.join("a.rs"), "changed\n").expect("write");
        first.close().expect("release");
        let again = Worktree::acquire(&repo, None, "s", "s-run3", &ignore, head).expect("again");
        assert_eq!(again.path(), kept);
        assert_eq!(
            std::fs::read_to_string(kept.join("a.rs")).expect("a"),
            "a\n"
        );
        assert!(!kept.join("left.txt").exists(), "untracked leftovers go");
        assert!(kept.join("target/out").is_file(), "ignored outputs stay");
        assert!(
            kept.join(".agent-cache").is_file(),
            "agents' ignored files stay"
        );
        assert_eq!(
            again.snapshot().expect("snapshot"),
            repo.find_commit(head).expect("c").tree_id()
        );
        again.remove().expect("remove");
        assert!(!kept.exists());
    }

    /// What `git add --all && git write-tree` gives for the worktree, in a scratch index.
    fn git_tree_of(root: &Path, worktree: &Path) -> String {
        let scratch = root.join(format!("scratch-{}", std::process::id()));
        let _ = std::fs::remove_file(&scratch);
        for args in [&["add", "--all"][..], &["write-tree"][..]] {
            let out = Command::new("git")
                .args(args)
                .current_dir(worktree)
                .env("GIT_INDEX_FILE", &scratch)
                .output()
                .expect("git");
            assert!(out.status.success(), "{out:?}");
            if args[0] == "write-tree" {
                return String::from_utf8_lossy(&out.stdout).trim().to_owned();
            }
        }
        unreachable!()
    }

    #[test]
    fn refresh_stages_what_other_processes_changed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        git_in(root, &["init", "--quiet", "--initial-branch=main"]);
        std::fs::write(root.join(".gitignore"), "target/\n*.log\n").expect("write");
        std::fs::create_dir_all(root.join("src/a")).expect("mkdir");
        std::fs::create_dir_all(root.join("old/deep")).expect("mkdir");
        std::fs::write(root.join("src/a/keep.rs"), "keep\n").expect("write");
        std::fs::write(root.join("src/a/change.rs"), "old\n").expect("write");
        std::fs::write(root.join("src/gone.rs"), "gone\n").expect("write");
        std::fs::write(root.join("old/deep/x.rs"), "x\n").expect("write");
        std::fs::write(root.join("old/y.rs"), "y\n").expect("write");
        std::fs::write(root.join("run.sh"), "echo\n").expect("write");
        git_in(root, &["add", "--all"]);
        git_in(root, &["commit", "--quiet", "-m", "base"]);
        let head = git_in(root, &["rev-parse", "HEAD"]);
        // An ignore file above the worktree that git does not read must not hide anything.
        std::fs::create_dir_all(root.join(".git/mmm")).expect("mkdir");
        std::fs::write(root.join(".git/mmm/.gitignore"), "*\n").expect("write");
        let repo = Repository::open(root).expect("open");
        let wt = Worktree::create(
            &repo,
            None,
            "w",
            &[],
            Oid::from_str(head.trim()).expect("oid"),
        )
        .expect("worktree");
        if !wt.is_watched() {
            // No inotify here (another platform): refresh scans, which the other tests cover.
            return;
        }
        let p = wt.path().to_path_buf();
        // What a gate might do, in a shell of its own.
        let script = "set -e\n\
            echo new > src/a/change.rs\n\
            rm src/gone.rs\n\
            rm -r old\n\
            mkdir -p fresh/inner && echo f > fresh/inner/f.rs && echo g > fresh/g.rs\n\
            mkdir -p target/debug && echo bin > target/debug/app\n\
            echo log > src/a/build.log\n\
            chmod +x run.sh\n";
        let out = Command::new("sh")
            .args(["-c", script])
            .current_dir(&p)
            .output()
            .expect("sh");
        assert!(out.status.success(), "{out:?}");
        let snap = wt.refresh(&[], false).expect("refresh");
        assert!(snap.files_changed);
        assert_eq!(snap.tree.to_string(), git_tree_of(root, &p));
        let mut changed = snap.changed.clone();
        changed.retain(|c| !c.starts_with("old"));
        assert_eq!(
            changed,
            [
                "fresh/g.rs",
                "fresh/inner/f.rs",
                "run.sh",
                "src/a/build.log",
                "src/a/change.rs",
                "src/gone.rs"
            ],
            "only what changed was looked at, not every file"
        );
        // Nothing changed since: the same tree, nothing staged.
        let again = wt.refresh(&[], false).expect("refresh");
        assert_eq!(again.tree, snap.tree);
        assert!(again.changed.is_empty());
        // A file in the new directory, created after it was first seen, is seen too.
        std::fs::write(p.join("fresh/inner/later.rs"), "later\n").expect("write");
        let later = wt.refresh(&[], false).expect("refresh");
        assert_eq!(later.changed, ["fresh/inner/later.rs"]);
        assert_eq!(later.tree.to_string(), git_tree_of(root, &p));
        // A renamed directory makes the watch lose track: refresh scans, and stays exact.
        std::fs::rename(p.join("fresh"), p.join("moved")).expect("rename");
        let moved = wt.refresh(&[], false).expect("refresh");
        assert_eq!(moved.tree.to_string(), git_tree_of(root, &p));
        std::fs::write(p.join("moved/inner/after.rs"), "after\n").expect("write");
        let after = wt.refresh(&[], false).expect("refresh");
        assert_eq!(
            after.changed,
            ["moved/inner/after.rs"],
            "watching again after the scan"
        );
        assert_eq!(after.tree.to_string(), git_tree_of(root, &p));
        wt.remove().expect("remove");
    }
}
