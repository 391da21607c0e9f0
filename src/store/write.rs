//! Writing: an iteration in flight and the iteration recorded.
//!
//! Owns: starting a run (resuming from the branch tip and the run's wip ref), records with
//! their sequence numbers, checkpoints on the wip ref, recording an iteration in the write
//! order (commit object, transcripts note, metrics note, branch by compare-and-swap), archiving
//! a commit that lost the race (and, for the other rooms, any commit to keep), and finishing a
//! run.

use git2::Oid;

use super::refs::{MAX_ATTEMPTS, backoff};
use super::trailers::{Trailers, key};
use super::{
    IterationStatus, RECORD_VERSION, Record, Result, Store, StoreError, archive_ref, branch_ref,
    metrics_ref, record, trailers, transcripts_ref, wip_ref,
};
use crate::clock::rfc3339;
use crate::spec::SpecId;

/// An in-flight run of the loop on one spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// The run id (a ULID in production).
    pub id: String,
    /// The spec.
    pub spec: SpecId,
    /// The commit the run started from.
    pub base: Oid,
    /// The branch tip the next iteration builds on (`None`: the branch does not exist yet and
    /// the next iteration's parent is `base`).
    pub tip: Option<Oid>,
    /// The number of the next iteration.
    pub next_iteration: u32,
    /// The last record sequence number handed out.
    pub seq: u64,
    /// The last checkpoint commit of this run, if any.
    pub wip: Option<Oid>,
    /// How many checkpoints were made.
    pub checkpoints: u32,
}

impl Run {
    /// The commit the next iteration will have as its parent.
    pub fn parent(&self) -> Oid {
        self.tip.unwrap_or(self.base)
    }
}

/// What [`Store::record_iteration`] records.
#[derive(Debug, Clone)]
pub struct NewIteration {
    /// The tree of the iteration (may equal the parent's: a commit is made anyway).
    pub tree: Oid,
    /// The outcome.
    pub status: IterationStatus,
    /// One line for the commit subject.
    pub summary: String,
    /// Optional commit body (before the trailers).
    pub body: String,
    /// The blob id of the spec file, if known.
    pub spec_revision: Option<String>,
    /// The transcript records (the transcripts note).
    pub transcript: Vec<Record>,
    /// The metrics records (the metrics note; an `iteration` record is added).
    pub metrics: Vec<Record>,
}

/// The outcome of [`Store::record_iteration`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// The iteration commit (with its notes).
    pub commit: Oid,
    /// Its iteration number.
    pub iteration: u32,
    /// Another writer moved the branch first: the commit is in the archive instead, and the
    /// run was resynced to the new branch tip.
    pub superseded: bool,
}

/// Why an archive entry was made (the `Mmm-Archive` trailer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ArchiveKind {
    Superseded,
    Rollback,
    Undo,
    Orphan,
    Wip,
}

impl ArchiveKind {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            ArchiveKind::Superseded => "superseded",
            ArchiveKind::Rollback => "rollback",
            ArchiveKind::Undo => "undo-rollback",
            ArchiveKind::Orphan => "orphan",
            ArchiveKind::Wip => "wip",
        }
    }
}

impl Store {
    /// A fresh record for `run`, with the next sequence number, a new id and the current time.
    pub fn new_record(&self, run: &mut Run, kind: &str) -> Record {
        run.seq += 1;
        Record {
            v: RECORD_VERSION,
            kind: kind.to_owned(),
            id: self.opts.ids.next_id(),
            run: run.id.clone(),
            seq: run.seq,
            ts: rfc3339(self.opts.clock.now()),
            data: Default::default(),
        }
    }

    /// Starts a run on `spec` from `base`. If the spec's branch exists the run continues from
    /// its tip (the next iteration number follows the tip's); otherwise the first iteration's
    /// parent is `base`. Refuses when the spec's refs cannot be written (a ref's name in the
    /// way, a stale lock) and when the branch is not mmm's (its tip is no iteration of the
    /// spec: a branch of the user's own).
    pub fn start_run(&self, spec: &SpecId, base: Oid) -> Result<Run> {
        self.start_run_with_id(spec, base, self.opts.ids.next_id())
    }

    /// Like [`Store::start_run`] with a given run id (to resume a run's wip ref).
    pub fn start_run_with_id(&self, spec: &SpecId, base: Oid, id: String) -> Result<Run> {
        self.repo
            .find_commit(base)
            .map_err(StoreError::git(format!("find the base commit {base}")))?;
        let mut run = Run {
            id,
            spec: spec.clone(),
            base,
            tip: None,
            next_iteration: 1,
            seq: 0,
            wip: None,
            checkpoints: 0,
        };
        self.check_writable(spec)?;
        self.resync(&mut run)?;
        if let Some(tip) = run.tip {
            let c = self
                .repo
                .find_commit(tip)
                .map_err(StoreError::git(format!("read the branch tip {tip}")))?;
            if self.iteration_of(spec, &c).is_none() {
                return Err(StoreError::ForeignBranch {
                    spec: spec.clone(),
                    tip,
                });
            }
        }
        if let Some(wip) = self.ref_target(&wip_ref(spec, &run.id))? {
            run.wip = Some(wip);
            let c = self
                .repo
                .find_commit(wip)
                .map_err(StoreError::git("read the run's wip checkpoint"))?;
            let t = Trailers::parse(&String::from_utf8_lossy(c.message_bytes()));
            run.checkpoints = t
                .get(key::CHECKPOINT)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
        }
        Ok(run)
    }

    /// Points the run at the branch's current tip.
    fn resync(&self, run: &mut Run) -> Result<()> {
        run.tip = self.ref_target(&branch_ref(&run.spec))?;
        run.next_iteration = match run.tip {
            Some(tip) => self.trailers_of(tip)?.1.map_or(1, |n| n + 1),
            None => 1,
        };
        Ok(())
    }

    fn empty_tree(&self) -> Result<Oid> {
        self.repo
            .treebuilder(None)
            .and_then(|b| b.write())
            .map_err(StoreError::git("write the empty tree"))
    }

    /// Saves the transcript so far of the iteration in flight as a commit on
    /// `refs/mmm/<spec>/wip/<run>` (tree: `transcript.jsonl`; parent: the previous checkpoint).
    pub fn checkpoint(&self, run: &mut Run, records: &[Record]) -> Result<Oid> {
        let name = wip_ref(&run.spec, &run.id);
        let blob = self
            .repo
            .blob(record::to_jsonl(records).as_bytes())
            .map_err(StoreError::git("write the checkpoint transcript"))?;
        let mut tb = self
            .repo
            .treebuilder(None)
            .map_err(StoreError::git("build the checkpoint tree"))?;
        tb.insert("transcript.jsonl", blob, 0o100644)
            .map_err(StoreError::git("build the checkpoint tree"))?;
        let tree_id = tb
            .write()
            .map_err(StoreError::git("write the checkpoint tree"))?;
        let tree = self
            .repo
            .find_tree(tree_id)
            .map_err(StoreError::git("read the checkpoint tree"))?;
        let n = run.checkpoints + 1;
        let msg = trailers::message(
            &format!(
                "mmm({}): checkpoint {n} of iteration {}",
                run.spec, run.next_iteration
            ),
            "",
            &[
                (key::SPEC, run.spec.to_string()),
                (key::ITERATION, run.next_iteration.to_string()),
                (key::RUN, run.id.clone()),
                (key::CHECKPOINT, n.to_string()),
            ],
        );
        let sig = self.signature()?;
        let prev = match run.wip {
            Some(p) => Some(
                self.repo
                    .find_commit(p)
                    .map_err(StoreError::git("read the previous checkpoint"))?,
            ),
            None => None,
        };
        let parents: Vec<&git2::Commit<'_>> = prev.iter().collect();
        let c = self
            .repo
            .commit(None, &sig, &sig, &msg, &tree, &parents)
            .map_err(StoreError::git("write the checkpoint commit"))?;
        // A wip ref has a single writer (its run). If `doctor` archived and deleted it
        // meanwhile (it keeps the old checkpoints in the archive), start the ref afresh;
        // losing any other swap means the run was resumed twice.
        let expected = match self.ref_target(&name)? {
            None => None,
            Some(_) => run.wip,
        };
        if !self.cas_ref(&name, expected, c, &format!("mmm: checkpoint {n}"))? {
            return Err(StoreError::Contention {
                what: name,
                attempts: 1,
            });
        }
        self.step("after-checkpoint");
        self.push_wip(&name);
        run.wip = Some(c);
        run.checkpoints = n;
        Ok(c)
    }

    /// The base of the attempt iteration `n` continues, given its parent: the parent itself
    /// for a first iteration, else the parent's `Mmm-Base` (or, on a commit written before
    /// that trailer, the commit `n - 1` first parents below it).
    fn attempt_base(&self, parent: &git2::Commit<'_>, n: u32) -> Result<Oid> {
        if n <= 1 {
            return Ok(parent.id());
        }
        let t = Trailers::parse(&String::from_utf8_lossy(parent.message_bytes()));
        if let Some(base) = t.get(key::BASE).and_then(|b| Oid::from_str(b).ok()) {
            return Ok(base);
        }
        Ok(self.base_below(parent.id(), n - 1)?.unwrap_or(parent.id()))
    }

    /// Records one iteration: the commit object, its transcripts and metrics notes, then the
    /// branch by compare-and-swap. If another writer moved the branch first, the commit is
    /// archived and the run resynced to the new tip (`superseded: true`).
    pub fn record_iteration(&self, run: &mut Run, it: NewIteration) -> Result<Recorded> {
        let spec = run.spec.clone();
        let n = run.next_iteration;
        let parent_id = run.parent();
        let parent = self
            .repo
            .find_commit(parent_id)
            .map_err(StoreError::git(format!(
                "read the parent commit {parent_id}"
            )))?;
        let tree = self
            .repo
            .find_tree(it.tree)
            .map_err(StoreError::git(format!(
                "find the iteration tree {}",
                it.tree
            )))?;
        let mut tr = vec![
            (key::SPEC, spec.to_string()),
            (key::ITERATION, n.to_string()),
            (key::RUN, run.id.clone()),
            (key::STATUS, it.status.to_string()),
        ];
        if let Some(rev) = &it.spec_revision {
            tr.push((key::SPEC_REVISION, rev.clone()));
        }
        tr.push((key::BASE, self.attempt_base(&parent, n)?.to_string()));
        let summary = trailers::one_line(&it.summary);
        let msg = trailers::message(
            &format!("mmm({spec}): iteration {n}: {summary}"),
            &it.body,
            &tr,
        );
        let sig = self.signature()?;
        let commit = self
            .repo
            .commit(None, &sig, &sig, &msg, &tree, &[&parent])
            .map_err(StoreError::git("write the iteration commit"))?;
        self.step("after-commit-object");

        // Both notes commits are built before either ref moves, so that the commit, the
        // snapshot's trees and both notes reach the disk as one pack.
        let mut metrics = it.metrics;
        let rec = self
            .new_record(run, "iteration")
            .with("iteration", n)
            .with("status", it.status.as_str())
            .with("tree_changed", parent.tree_id() != it.tree);
        metrics.push(rec);
        let transcript = record::to_jsonl(&it.transcript);
        let metrics = record::to_jsonl(&metrics);
        let (transcripts, metrics_ref) = (transcripts_ref(&spec), metrics_ref(&spec));
        let prepared_transcript = self.prepare_note(&transcripts, commit, &transcript)?;
        let prepared_metrics = self.prepare_note(&metrics_ref, commit, &metrics)?;
        self.publish_note(&transcripts, commit, &transcript, prepared_transcript)?;
        self.step("after-transcript-note");
        self.publish_note(&metrics_ref, commit, &metrics, prepared_metrics)?;
        self.step("after-metrics-note");

        let won = self.cas_ref(
            &branch_ref(&spec),
            run.tip,
            commit,
            &format!("mmm: iteration {n} (run {})", run.id),
        )?;
        self.step("after-branch");
        if won {
            run.tip = Some(commit);
            run.next_iteration = n + 1;
        } else {
            self.archive(&spec, commit, ArchiveKind::Superseded, &[])?;
            self.resync(run)?;
        }
        // With `run --push`: the remote's iterations win, so ours may be archived there.
        let kept = !won || self.push_recorded(&spec, commit)?;
        if !kept {
            self.resync(run)?;
        }
        Ok(Recorded {
            commit,
            iteration: n,
            superseded: !won || !kept,
        })
    }

    /// Ends a run: deletes its wip ref (its iterations carry the transcripts).
    pub fn finish_run(&self, run: &Run) -> Result<()> {
        self.push_wip_deleted(&wip_ref(&run.spec, &run.id));
        self.delete_ref(&wip_ref(&run.spec, &run.id))?;
        self.merge_packs()
    }

    /// Appends `target` to the spec's archive: a commit with the empty tree and parents
    /// `[previous archive, target]`, with `extra` trailers. Returns the archive commit.
    pub(super) fn archive(
        &self,
        spec: &SpecId,
        target: Oid,
        kind: ArchiveKind,
        extra: &[(&str, String)],
    ) -> Result<Oid> {
        let name = archive_ref(spec);
        let empty = self.empty_tree()?;
        let tree = self
            .repo
            .find_tree(empty)
            .map_err(StoreError::git("read the empty tree"))?;
        let target_c = self
            .repo
            .find_commit(target)
            .map_err(StoreError::git(format!(
                "read the commit to archive {target}"
            )))?;
        let mut tr = vec![
            (key::SPEC, spec.to_string()),
            (key::ARCHIVE, kind.as_str().to_owned()),
            (key::ARCHIVED, target.to_string()),
        ];
        tr.extend(extra.iter().cloned());
        let msg = trailers::message(
            &format!("mmm({spec}): archive {} {target}", kind.as_str()),
            "",
            &tr,
        );
        let sig = self.signature()?;
        for attempt in 0..MAX_ATTEMPTS {
            let prev = self.ref_target(&name)?;
            let prev_c = match prev {
                Some(p) => Some(
                    self.repo
                        .find_commit(p)
                        .map_err(StoreError::git("read the archive tip"))?,
                ),
                None => None,
            };
            let mut parents: Vec<&git2::Commit<'_>> = prev_c.iter().collect();
            parents.push(&target_c);
            let c = self
                .repo
                .commit(None, &sig, &sig, &msg, &tree, &parents)
                .map_err(StoreError::git("write the archive commit"))?;
            if self.cas_ref(&name, prev, c, &format!("mmm: archive {}", kind.as_str()))? {
                self.step("after-archive");
                return Ok(c);
            }
            backoff(attempt);
        }
        Err(StoreError::Contention {
            what: name,
            attempts: MAX_ATTEMPTS,
        })
    }
}
