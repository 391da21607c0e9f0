//! Rollback: moving a spec's branch back to an earlier iteration, and undoing that.
//!
//! Owns: `git mmm rollback` and its undo. The tip a rollback leaves is first appended to the
//! archive (with `Mmm-Rollback-From`/`-To` trailers), so nothing is lost and the last rollback
//! can be undone while the branch is still where it left it.

use git2::Oid;

use super::read::no_such_iteration;
use super::trailers::{Trailers, key};
use super::write::ArchiveKind;
use super::{Result, Store, StoreError, archive_ref, branch_ref};
use crate::spec::SpecId;

/// The outcome of a rollback or its undo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rollback {
    /// The spec.
    pub spec: SpecId,
    /// The branch tip before.
    pub from: Oid,
    /// The branch tip after.
    pub to: Oid,
    /// The iteration number of the new tip, if it is an iteration commit.
    pub iteration: Option<u32>,
    /// The archive commit that recorded the operation.
    pub archive: Oid,
}

impl Store {
    /// Resets the spec's branch to iteration `to`. The old tip is first appended to the
    /// archive (with `Mmm-Rollback-From`/`-To` trailers), so it stays reachable and the
    /// rollback can be undone.
    pub fn rollback(&self, spec: &SpecId, to: u32) -> Result<Rollback> {
        let history = self.history(spec)?;
        let tip = self
            .ref_target(&branch_ref(spec))?
            .ok_or_else(|| StoreError::NoBranch { spec: spec.clone() })?;
        let Some(target) = history.iter().find(|i| i.n == to) else {
            return Err(no_such_iteration(spec, to, &history));
        };
        if target.commit == tip {
            return Err(StoreError::AlreadyAt {
                spec: spec.clone(),
                n: to,
            });
        }
        let archive = self.archive(
            spec,
            tip,
            ArchiveKind::Rollback,
            &[
                (key::ROLLBACK_FROM, tip.to_string()),
                (key::ROLLBACK_TO, target.commit.to_string()),
                (key::ITERATION, to.to_string()),
            ],
        )?;
        let msg = format!("mmm: rollback to iteration {to}");
        if !self.cas_ref(&branch_ref(spec), Some(tip), target.commit, &msg)? {
            return Err(StoreError::Raced { spec: spec.clone() });
        }
        Ok(Rollback {
            spec: spec.clone(),
            from: tip,
            to: target.commit,
            iteration: Some(to),
            archive,
        })
    }

    /// Undoes the last rollback: restores the tip it archived, if the branch is still where
    /// that rollback left it.
    pub fn undo_rollback(&self, spec: &SpecId) -> Result<Rollback> {
        let nothing = || StoreError::NothingToUndo { spec: spec.clone() };
        let mut cur = self.ref_target(&archive_ref(spec))?;
        let mut found = None;
        while let Some(oid) = cur {
            let c = self
                .repo
                .find_commit(oid)
                .map_err(StoreError::git("read the archive"))?;
            let t = Trailers::parse(&String::from_utf8_lossy(c.message_bytes()));
            match t.get(key::ARCHIVE) {
                Some(k) if k == ArchiveKind::Undo.as_str() => return Err(nothing()),
                Some(k) if k == ArchiveKind::Rollback.as_str() => {
                    found = Some(t);
                    break;
                }
                _ => {}
            }
            cur = if c.parent_count() > 1 {
                c.parent_id(0).ok()
            } else {
                None
            };
        }
        let t = found.ok_or_else(nothing)?;
        let parse = |k: &str| t.get(k).and_then(|v| Oid::from_str(v).ok());
        let (Some(from), Some(to)) = (parse(key::ROLLBACK_FROM), parse(key::ROLLBACK_TO)) else {
            return Err(nothing());
        };
        let actual = self
            .ref_target(&branch_ref(spec))?
            .ok_or_else(|| StoreError::NoBranch { spec: spec.clone() })?;
        if actual != to {
            return Err(StoreError::BranchMoved {
                spec: spec.clone(),
                expected: to,
                actual,
            });
        }
        let archive = self.archive(
            spec,
            to,
            ArchiveKind::Undo,
            &[
                (key::ROLLBACK_FROM, to.to_string()),
                (key::ROLLBACK_TO, from.to_string()),
            ],
        )?;
        if !self.cas_ref(&branch_ref(spec), Some(to), from, "mmm: undo rollback")? {
            return Err(StoreError::Raced { spec: spec.clone() });
        }
        Ok(Rollback {
            spec: spec.clone(),
            from: to,
            to: from,
            iteration: self.trailers_of(from)?.1,
            archive,
        })
    }
}
