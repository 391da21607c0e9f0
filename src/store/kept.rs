//! Kept worktrees: the one linked worktree per spec that runs keep between them (`[loop]
//! keep_worktrees`), so that a second run starts from a warm checkout with its ignored build
//! outputs (`target/`, `node_modules/`).
//!
//! Owns: what marks a worktree as a spec's kept one (the file [`KEPT_MARKER`] in its
//! administrative directory, `.git/worktrees/<name>/`, holding the spec id), the lock reason of
//! an idle one (`mmm kept <spec>`), listing them and removing one. The engine takes and resets
//! one (`engine::worktree`); `doctor` and `git mmm clean` reclaim them. A kept worktree in use
//! is locked like any run's worktree (`mmm run <spec>-<run> pid <pid>`), so that `doctor` tells
//! a killed run's from a live one the same way.
//!
//! Must not touch: any other worktree.

use std::path::{Path, PathBuf};

use super::{Result, Store, StoreError};

/// The file in a worktree's administrative directory that names the spec it is kept for.
pub const KEPT_MARKER: &str = "mmm-kept";

/// How the lock reason of an idle kept worktree begins (`mmm kept <spec>`).
pub const MMM_KEPT_PREFIX: &str = "mmm kept ";

/// Whether a kept worktree is in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeptState {
    /// No run uses it.
    Idle,
    /// A live process (this one included) runs in it.
    InUse {
        /// The process.
        pid: u32,
    },
    /// Locked by a run whose process no longer runs (killed).
    Killed {
        /// The process that is gone.
        pid: u32,
    },
}

/// A spec's kept worktree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptWorktree {
    /// The spec it is kept for.
    pub spec: String,
    /// Its name in `.git/worktrees/`.
    pub name: String,
    /// Its directory.
    pub path: PathBuf,
    /// Whether a run uses it.
    pub state: KeptState,
}

/// The state a worktree's lock file (`<admin>/locked`) tells.
pub fn lock_state(admin: &Path) -> KeptState {
    let Ok(reason) = std::fs::read_to_string(admin.join("locked")) else {
        return KeptState::Idle;
    };
    let pid = reason
        .rsplit_once(" pid ")
        .and_then(|(_, p)| p.trim().parse::<u32>().ok());
    match pid {
        None => KeptState::Idle,
        Some(pid) if super::doctor::pid_is_dead(pid) => KeptState::Killed { pid },
        Some(pid) => KeptState::InUse { pid },
    }
}

/// The spec a worktree's administrative directory is kept for, if it is a kept one.
pub fn kept_spec(admin: &Path) -> Option<String> {
    let text = std::fs::read_to_string(admin.join(KEPT_MARKER)).ok()?;
    let spec = text.trim();
    (!spec.is_empty()).then(|| spec.to_owned())
}

/// Writes a worktree's lock reason atomically (a temporary file renamed over `locked`), so that
/// it is never seen unlocked while it changes hands (`doctor` prunes an unlocked mmm worktree).
pub fn write_lock(admin: &Path, reason: &str) -> std::io::Result<()> {
    let mut tmp = tempfile::Builder::new()
        .prefix("locked.mmm-")
        .tempfile_in(admin)?;
    std::io::Write::write_all(&mut tmp, reason.as_bytes())?;
    tmp.persist(admin.join("locked")).map_err(|e| e.error)?;
    Ok(())
}

impl Store {
    /// Every kept worktree of the repository, by spec.
    pub fn kept_worktrees(&self) -> Result<Vec<KeptWorktree>> {
        let names = self
            .repo
            .worktrees()
            .map_err(StoreError::git("list worktrees"))?;
        let admin_root = self.repo.commondir().join("worktrees");
        let mut out = Vec::new();
        for name in names.iter().filter_map(|n| n.ok().flatten()) {
            let admin = admin_root.join(name);
            let Some(spec) = kept_spec(&admin) else {
                continue;
            };
            let Ok(wt) = self.repo.find_worktree(name) else {
                continue;
            };
            out.push(KeptWorktree {
                spec,
                name: name.to_owned(),
                path: wt.path().to_owned(),
                state: lock_state(&admin),
            });
        }
        out.sort_by(|a, b| a.spec.cmp(&b.spec).then(a.name.cmp(&b.name)));
        Ok(out)
    }

    /// Removes a kept worktree: its directory (ignored build outputs included) and its
    /// administrative files. The caller checks that no run uses it.
    pub fn remove_kept(&self, kept: &KeptWorktree) -> Result<()> {
        let wt = self
            .repo
            .find_worktree(&kept.name)
            .map_err(StoreError::git(format!("open worktree {}", kept.name)))?;
        let mut opts = git2::WorktreePruneOptions::new();
        opts.valid(true).locked(true).working_tree(true);
        wt.prune(Some(&mut opts))
            .map_err(StoreError::git(format!("remove worktree {}", kept.name)))?;
        if kept.path.exists() {
            std::fs::remove_dir_all(&kept.path).map_err(|source| StoreError::Io {
                what: format!("remove {}", kept.path.display()),
                source,
            })?;
        }
        Ok(())
    }
}
