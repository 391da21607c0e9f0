//! Starting a spec again from where the project is now: a fresh attempt (the branch archived
//! and removed, so that the next run starts from the current base), a rebase of its
//! iterations onto a newer base (their notes carried over), and how far a spec's base is
//! behind the base branch.
//!
//! Owns: `git mmm run --fresh`, `git mmm rebase` and the "base is behind" of `git mmm
//! status`. The old tip is archived before the branch moves, so nothing is lost.

use git2::{Oid, Repository};

use super::trailers::{self, key};
use super::write::ArchiveKind;
use super::{Result, Store, StoreError, branch_ref, metrics_ref, transcripts_ref};
use crate::spec::SpecId;

/// Where a spec that depends on others starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartFrom {
    /// This commit: the base (no dependency has a branch), the one dependency's tip, or a
    /// merge of the dependencies' tips recorded with them as its parents.
    Commit(Oid),
    /// The dependencies' branches do not merge.
    Conflict {
        /// The dependencies whose branches conflict.
        specs: Vec<String>,
        /// The paths in conflict.
        paths: Vec<String>,
    },
}

/// How a rebase ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rebase {
    /// Every iteration was replayed on the new base; the branch moved.
    Done {
        /// The old tip, kept in `refs/mmm/<spec>/archive`.
        from: Oid,
        /// The new tip.
        to: Oid,
        /// How many iterations were replayed.
        iterations: usize,
    },
    /// The branch already starts from that commit: nothing to do.
    UpToDate,
    /// An iteration's change does not apply on the new base; nothing was changed.
    Conflict {
        /// The iteration that conflicts.
        iteration: u32,
        /// The paths in conflict.
        paths: Vec<String>,
    },
}

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
        // A run of the spec in flight would record its next iteration on the branch about to
        // go: refuse while one holds the spec (and keep others from starting meanwhile).
        let _claim = self.claim(spec, "fresh")?;
        let archive = self.archive(spec, tip, ArchiveKind::Superseded, &[])?;
        // Compare-and-swap on the tip read: another writer (a run in another clone's worktree,
        // a sync, a rollback) may have moved the branch since; its work is not archived, so the
        // branch is left as it is.
        if !self.delete_ref_if(&name, tip)? {
            return Err(StoreError::MovedDuringFresh {
                spec: spec.clone(),
                read: tip,
                now: self.ref_target(&name)?,
            });
        }
        Ok(Some(Fresh {
            archived: tip,
            archive,
        }))
    }

    /// The commit the spec's first iteration started from, when it has a branch.
    pub fn base_of(&self, spec: &SpecId) -> Result<Option<Oid>> {
        let Some(tip) = self.ref_target(&branch_ref(spec))? else {
            return Ok(None);
        };
        let (t, _) = self.trailers_of(tip)?;
        if let Some(base) = t.get(key::BASE).and_then(|b| Oid::from_str(b).ok()) {
            return Ok(Some(base));
        }
        Ok(self.history(spec)?.first().and_then(|i| i.parent))
    }

    /// The base of a branch whose tip is iteration `n`: the commit `n` first parents below the
    /// tip. Cheaper than [`Store::base_of`] (no trailers read), for `status` over many specs.
    pub fn base_below(&self, tip: Oid, n: u32) -> Result<Option<Oid>> {
        let mut cur = tip;
        for _ in 0..n {
            let c = self
                .repo
                .find_commit(cur)
                .map_err(StoreError::git(format!("read commit {cur}")))?;
            match c.parent_id(0) {
                Ok(parent) => cur = parent,
                Err(_) => return Ok(None),
            }
        }
        Ok(Some(cur))
    }

    /// How many commits `head` has that `base` has not.
    pub fn commits_since(&self, base: Oid, head: Oid) -> Result<usize> {
        if base == head {
            return Ok(0);
        }
        let (ahead, _) = self
            .repo
            .graph_ahead_behind(head, base)
            .map_err(StoreError::git("count the commits since the spec's base"))?;
        Ok(ahead)
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

    /// Replays the spec's iterations, oldest first, onto `onto`: each keeps its message
    /// (trailers included), author and notes; the old tip is archived (kind `superseded`)
    /// and the branch moves by compare-and-swap. On a conflict nothing is changed.
    pub fn rebase(&self, spec: &SpecId, onto: Oid) -> Result<Rebase> {
        let name = branch_ref(spec);
        let tip = self
            .ref_target(&name)?
            .ok_or_else(|| StoreError::NoBranch { spec: spec.clone() })?;
        let history = self.history(spec)?;
        if history.first().and_then(|i| i.parent) == Some(onto) {
            return Ok(Rebase::UpToDate);
        }
        let git = |what: &str| StoreError::git(format!("rebase {spec}: {what}"));
        let mut parent = self
            .repo
            .find_commit(onto)
            .map_err(git("read the new base"))?;
        let mut replayed: Vec<(Oid, Oid)> = Vec::new();
        for it in &history {
            let old = self
                .repo
                .find_commit(it.commit)
                .map_err(git("read an iteration"))?;
            let mut index = self
                .repo
                .cherrypick_commit(&old, &parent, 0, None)
                .map_err(git("replay an iteration"))?;
            if index.has_conflicts() {
                return Ok(Rebase::Conflict {
                    iteration: it.n,
                    paths: conflict_paths(&index),
                });
            }
            let tree = index
                .write_tree_to(&self.repo)
                .map_err(git("write a tree"))?;
            let tree = self.repo.find_tree(tree).map_err(git("read a tree"))?;
            let new = self
                .repo
                .commit(
                    None,
                    &old.author(),
                    &old.committer(),
                    &trailers::with_trailer(
                        &String::from_utf8_lossy(old.message_bytes()),
                        key::BASE,
                        &onto.to_string(),
                    ),
                    &tree,
                    &[&parent],
                )
                .map_err(git("write an iteration"))?;
            replayed.push((it.commit, new));
            parent = self
                .repo
                .find_commit(new)
                .map_err(git("read an iteration"))?;
        }
        for notes_ref in [transcripts_ref(spec), metrics_ref(spec)] {
            for (old, new) in &replayed {
                if let Some(text) = note_text(&self.repo, &notes_ref, *old)? {
                    let prepared = self.prepare_note(&notes_ref, *new, &text)?;
                    self.publish_note(&notes_ref, *new, &text, prepared)?;
                }
            }
        }
        let to = parent.id();
        self.archive(spec, tip, ArchiveKind::Superseded, &[])?;
        let msg = format!("mmm: rebase onto {onto}");
        if !self.cas_ref(&name, Some(tip), to, &msg)? {
            return Err(StoreError::Raced { spec: spec.clone() });
        }
        Ok(Rebase::Done {
            from: tip,
            to,
            iterations: replayed.len(),
        })
    }

    /// Where the first iteration of `spec` starts when it depends on `deps` (complete specs):
    /// one dependency's branch tip; for several, a merge of their tips (in the order given),
    /// written as a commit whose parents are the tips; `base` when none has a branch.
    pub fn start_from(&self, spec: &SpecId, deps: &[SpecId], base: Oid) -> Result<StartFrom> {
        let mut tips: Vec<(String, Oid)> = Vec::new();
        for dep in deps {
            if let Some(tip) = self.ref_target(&branch_ref(dep))?
                && !tips.iter().any(|(_, t)| *t == tip)
            {
                tips.push((dep.to_string(), tip));
            }
        }
        let git =
            |what: &str| StoreError::git(format!("start {spec} from its dependencies: {what}"));
        let Some(((_, first), rest)) = tips.split_first() else {
            return Ok(StartFrom::Commit(base));
        };
        if rest.is_empty() {
            return Ok(StartFrom::Commit(*first));
        }
        let mut tree_of = self
            .repo
            .find_commit(*first)
            .and_then(|c| c.tree())
            .map_err(git("read a branch"))?
            .id();
        let mut merged = *first;
        let mut names = vec![tips[0].0.clone()];
        for (name, tip) in rest {
            names.push(name.clone());
            let ours = self
                .repo
                .find_commit(merged)
                .map_err(git("read a branch"))?;
            let theirs = self.repo.find_commit(*tip).map_err(git("read a branch"))?;
            let mut index = self
                .repo
                .merge_commits(&ours, &theirs, None)
                .map_err(git("merge the branches"))?;
            if index.has_conflicts() {
                return Ok(StartFrom::Conflict {
                    specs: names,
                    paths: conflict_paths(&index),
                });
            }
            tree_of = index
                .write_tree_to(&self.repo)
                .map_err(git("write the merged tree"))?;
            // Each step's result is a commit, so that the next merge finds its merge base.
            let tree = self.repo.find_tree(tree_of).map_err(git("read a tree"))?;
            let sig = self.signature()?;
            merged = self
                .repo
                .commit(
                    None,
                    &sig,
                    &sig,
                    "mmm: merge step\n",
                    &tree,
                    &[&ours, &theirs],
                )
                .map_err(git("write a merge"))?;
        }
        let tree = self.repo.find_tree(tree_of).map_err(git("read a tree"))?;
        let parents: Vec<git2::Commit<'_>> = tips
            .iter()
            .map(|(_, t)| self.repo.find_commit(*t))
            .collect::<std::result::Result<_, _>>()
            .map_err(git("read a branch"))?;
        let parents: Vec<&git2::Commit<'_>> = parents.iter().collect();
        let sig = self.signature()?;
        let msg = format!(
            "mmm({spec}): start from the branches of {}\n",
            names.join(", ")
        );
        let commit = self
            .repo
            .commit(None, &sig, &sig, &msg, &tree, &parents)
            .map_err(git("write the merge of the dependencies"))?;
        // The worktree is made from it by git itself, which reads only what is on disk.
        self.flush()?;
        Ok(StartFrom::Commit(commit))
    }
}

/// The text of the note on `commit`, if there is one.
fn note_text(repo: &Repository, notes_ref: &str, commit: Oid) -> Result<Option<String>> {
    match repo.find_note(Some(notes_ref), commit) {
        Ok(n) => Ok(Some(
            String::from_utf8_lossy(n.message_bytes()).into_owned(),
        )),
        Err(e) if e.code() == git2::ErrorCode::NotFound => Ok(None),
        Err(e) => Err(StoreError::git(format!("read the note {notes_ref}"))(e)),
    }
}

/// The paths of an index's conflicts, sorted.
fn conflict_paths(index: &git2::Index) -> Vec<String> {
    let mut paths: Vec<String> = index
        .conflicts()
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|c| c.our.or(c.their).or(c.ancestor))
        .map(|e| String::from_utf8_lossy(&e.path).into_owned())
        .collect();
    paths.sort();
    paths.dedup();
    paths
}
