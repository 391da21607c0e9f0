//! Starting a spec again from where the project is now: a fresh attempt (the branch archived
//! and removed, so that the next run starts from the current base), and how far a spec's
//! base is behind the base branch.
//!
//! Owns: `git mmm run --fresh` and the "base is behind" of `git mmm status`. Must not touch:
//! the iterations themselves (the archive keeps the old attempt whole).

use git2::Oid;

use super::write::ArchiveKind;
use super::{Result, Store, StoreError, branch_ref};
use crate::spec::SpecId;

/// A spec's branch, archived and removed for a fresh attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fresh {
    /// The old tip, kept in `refs/mmm/<spec>/archive`.
    pub archived: Oid,
    /// The archive commit that keeps it.
    pub archive: Oid,
}

impl Store {
    /// Archives the spec's branch (as a rollback does, kind `superseded`) and removes it, so
    /// that the next run starts a new attempt from the base it is given. `None` when the spec
    /// has no branch: a run starts fresh anyway.
    pub fn start_fresh(&self, spec: &SpecId) -> Result<Option<Fresh>> {
        let name = branch_ref(spec);
        let Some(tip) = self.ref_target(&name)? else {
            return Ok(None);
        };
        let archive = self.archive(spec, tip, ArchiveKind::Superseded, &[])?;
        // Another writer may have moved the branch since it was read: its work is not archived,
        // so leave it alone.
        if self.ref_target(&name)? != Some(tip) {
            return Err(StoreError::Raced { spec: spec.clone() });
        }
        self.delete_ref(&name)?;
        Ok(Some(Fresh {
            archived: tip,
            archive,
        }))
    }

    /// The commit the spec's first iteration started from, when it has a branch.
    pub fn base_of(&self, spec: &SpecId) -> Result<Option<Oid>> {
        if self.ref_target(&branch_ref(spec))?.is_none() {
            return Ok(None);
        }
        Ok(self.history(spec)?.first().and_then(|i| i.parent))
    }

    /// How many commits `head` has that the spec's base has not (0: up to date; `None`: no
    /// branch yet).
    pub fn behind(&self, spec: &SpecId, head: Oid) -> Result<Option<usize>> {
        let Some(base) = self.base_of(spec)? else {
            return Ok(None);
        };
        let (ahead, _) = self
            .repo
            .graph_ahead_behind(head, base)
            .map_err(StoreError::git("count the commits since the spec's base"))?;
        Ok(Some(ahead))
    }
}
