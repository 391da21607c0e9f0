//! The git-native store: iteration commits on `refs/heads/mmm/<spec>`, transcripts and metrics
//! as JSON Lines notes, wip checkpoints, the archive, rollback and `doctor`.
//!
//! Owns: every write to mmm's refs, in the crash-safe order of `reference/git-state.md`.
//! Must not touch: the terminal, the process environment, the network, work trees' files.
//!
//! # Layout
//!
//! ```text
//! refs/heads/mmm/<spec>                 iteration commits (fast-forward only, except rollback)
//! refs/notes/mmm/<spec>/transcripts     one JSON Lines note per iteration commit
//! refs/notes/mmm/<spec>/metrics         one JSON Lines note per iteration commit
//! refs/mmm/<spec>/archive               chain of empty-tree commits keeping abandoned tips
//!                                       reachable (parents: previous archive, archived commit)
//! refs/mmm/<spec>/wip/<run>             checkpoints of an in-flight run (`transcript.jsonl`)
//! ```
//!
//! # How the loop uses it
//!
//! ```text
//! let store = Store::open(repo_dir, StoreOptions::new(clock, ids))?;
//! let mut run = store.start_run(&spec, base)?;         // resumes from the branch tip if any
//! loop {
//!     let rec = store.new_record(&mut run, "turn").with("text", "…");
//!     store.checkpoint(&mut run, &transcript_so_far)?;  // survives a kill mid-iteration
//!     let r = store.record_iteration(&mut run, NewIteration { tree, status, .. })?;
//!     if r.superseded { /* another writer won: our commit is archived, run resynced */ }
//! }
//! store.finish_run(&run)?;                              // drops the wip ref
//! ```
//!
//! One iteration is written as: commit object (no ref) → transcripts note → metrics note →
//! branch compare-and-swap. Notes retry on lock contention with jittered backoff. A lost
//! compare-and-swap archives the commit and reports [`Recorded::superseded`]; nothing that was
//! written is ever dropped. A kill between the steps leaves at worst a note on an unreachable
//! commit, which [`Store::doctor`] fast-forwards or archives.
//!
//! Reads ([`Store::history`], [`Store::iteration`], [`Store::status_all`]) return plain data;
//! the CLI renders it.

mod doctor;
mod notes;
mod pack;
mod read;
pub mod record;
mod refs;
pub mod trailers;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use git2::{Oid, Repository, Signature};

use crate::clock::{Clock, IdGen, rfc3339};
use crate::spec::SpecId;

pub use doctor::{DoctorAction, DoctorOptions, DoctorReport, Finding, MMM_LOCK_PREFIX, Problem};
pub use read::{Iteration, IterationDetail, SYSTEM_SAME_AS, SpecState};
pub use record::{IterationStatus, RECORD_VERSION, Record};
use refs::{MAX_ATTEMPTS, backoff};
pub use refs::{archive_ref, branch_ref, metrics_ref, transcripts_ref, wip_ref};
use trailers::{Trailers, key};

/// The names of the steps of the write protocol at which [`StoreOptions::kill_point`] can stop
/// the process.
pub const KILL_POINTS: &[&str] = &[
    "after-checkpoint",
    "after-commit-object",
    "after-transcript-note",
    "after-metrics-note",
    "after-branch",
    "after-archive",
];

/// Errors of the store. Each says what the user can do about it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No git repository at or above the path.
    #[error(
        "no git repository at or above {path}; run mmm inside a git repository (or `git init` first)"
    )]
    NotARepository {
        /// Where we looked.
        path: PathBuf,
        /// Why git2 failed.
        #[source]
        source: git2::Error,
    },
    /// A git operation failed.
    #[error("git failed to {what}; run `git mmm doctor` and `git fsck` to check the repository")]
    Git {
        /// What we were doing.
        what: String,
        /// The git2 error.
        #[source]
        source: git2::Error,
    },
    /// A thread of the store could not run.
    #[error("the store's background thread failed: {0}")]
    Thread(String),
    /// A file could not be flushed to the disk.
    #[error(
        "could not flush {path} to the disk: {source}; check the disk (space, permissions) and run `git mmm doctor`"
    )]
    Sync {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Other writers kept the ref locked or moving.
    #[error(
        "gave up on {what} after {attempts} attempts because other writers kept it locked; retry later or check for a stuck `*.lock` file under .git/"
    )]
    Contention {
        /// What we were writing.
        what: String,
        /// How many attempts were made.
        attempts: u32,
    },
    /// The spec has no branch yet.
    #[error(
        "spec `{spec}` has no iterations yet (no branch refs/heads/mmm/{spec}); run the loop on it first"
    )]
    NoBranch {
        /// The spec.
        spec: SpecId,
    },
    /// The iteration does not exist on the branch.
    #[error(
        "spec `{spec}` has no iteration {n} (its branch has iterations {range}); see `git mmm log {spec}`"
    )]
    NoSuchIteration {
        /// The spec.
        spec: SpecId,
        /// The iteration asked for.
        n: u32,
        /// The iterations that exist, e.g. `1..=3` or `none`.
        range: String,
    },
    /// The branch is already at the iteration a rollback asked for.
    #[error("spec `{spec}` is already at iteration {n}; nothing to roll back")]
    AlreadyAt {
        /// The spec.
        spec: SpecId,
        /// The iteration.
        n: u32,
    },
    /// A note does not hold valid JSON Lines.
    #[error(
        "the note {notes_ref} on commit {commit} has a bad line {line}: {message}; inspect it with `git notes --ref={notes_ref} show {commit}`"
    )]
    BadNote {
        /// The notes ref.
        notes_ref: String,
        /// The annotated commit.
        commit: Oid,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// No rollback to undo.
    #[error(
        "spec `{spec}` has no rollback to undo (the archive records none, or the last one was already undone)"
    )]
    NothingToUndo {
        /// The spec.
        spec: SpecId,
    },
    /// The branch moved since the rollback, so undoing it would drop newer work.
    #[error(
        "cannot undo the last rollback of `{spec}`: the branch moved to {actual} since (the rollback left it at {expected}); roll back explicitly with `git mmm rollback {spec} --to N`"
    )]
    BranchMoved {
        /// The spec.
        spec: SpecId,
        /// Where the rollback left the branch.
        expected: Oid,
        /// Where it is now.
        actual: Oid,
    },
    /// Another writer moved the branch during a rollback.
    #[error(
        "another writer moved refs/heads/mmm/{spec} during the operation; the old tip is archived, nothing is lost; look at `git mmm log {spec}` and retry"
    )]
    Raced {
        /// The spec.
        spec: SpecId,
    },
}

impl StoreError {
    fn git(what: impl Into<String>) -> impl FnOnce(git2::Error) -> StoreError {
        let what = what.into();
        move |source| StoreError::Git { what, source }
    }
}

type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Options of [`Store::open`].
#[derive(Clone)]
pub struct StoreOptions {
    /// The clock for commit dates and record timestamps.
    pub clock: Arc<dyn Clock>,
    /// The id generator for run ids and record ids.
    pub ids: Arc<dyn IdGen>,
    /// A step name from [`KILL_POINTS`]: the process aborts (`std::process::abort`) right after
    /// that step, to simulate a kill in tests. `None` in normal use.
    pub kill_point: Option<String>,
    /// The name on commits mmm writes.
    pub name: String,
    /// The email on commits mmm writes.
    pub email: String,
    /// Whether new packs and moved refs are flushed to the disk (`fsync`) before the store
    /// goes on. Always `true` in mmm; `false` only to measure what the syncing costs.
    pub sync: bool,
}

impl StoreOptions {
    /// Options with the given clock and ids, no kill point, and `mmm <mmm@localhost>`.
    pub fn new(clock: Arc<dyn Clock>, ids: Arc<dyn IdGen>) -> StoreOptions {
        StoreOptions {
            clock,
            ids,
            kill_point: None,
            name: "mmm".into(),
            email: "mmm@localhost".into(),
            sync: true,
        }
    }
}

/// An open store on one repository. Cheap to open; one per thread (git2 repositories are not
/// `Sync`).
pub struct Store {
    repo: Repository,
    opts: StoreOptions,
    /// Objects written since the last ref update, held in memory and written as one pack.
    batch: pack::ObjectBatch,
    /// The packs this store wrote since it last merged them all (see [`Store::merge_packs`]).
    packs: std::cell::RefCell<Vec<PathBuf>>,
    /// The refs this store has moved (and synced with all their directories) at least once.
    synced_refs: std::cell::RefCell<std::collections::HashSet<String>>,
}

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

fn unix_secs(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Why an archive entry was made (the `Mmm-Archive` trailer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ArchiveKind {
    Superseded,
    Rollback,
    Undo,
    Orphan,
    Wip,
}

impl ArchiveKind {
    fn as_str(self) -> &'static str {
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
    /// Opens the repository at or above `path`.
    pub fn open(path: &Path, opts: StoreOptions) -> Result<Store> {
        let repo = Repository::discover(path).map_err(|source| StoreError::NotARepository {
            path: path.to_owned(),
            source,
        })?;
        let batch = pack::ObjectBatch::attach(&repo, opts.sync)
            .map_err(StoreError::git("set up the in-memory object batch"))?;
        Ok(Store {
            repo,
            opts,
            batch,
            packs: Default::default(),
            synced_refs: Default::default(),
        })
    }

    /// Writes the objects held in memory since the last ref update to disk, as one pack.
    /// Every ref update does this first; call it before handing an object id that no ref
    /// reaches to another process (a `git` command, say).
    pub fn flush(&self) -> Result<()> {
        if let Some(pack) = self
            .batch
            .flush(&self.repo)
            .map_err(StoreError::git("write the new objects as a pack"))?
        {
            let count = {
                let mut packs = self.packs.borrow_mut();
                packs.push(pack);
                packs.len()
            };
            if count >= pack::MERGE_AFTER {
                self.merge_own()?;
            }
        }
        Ok(())
    }

    /// Folds the packs this store wrote since it last did into one, then, when the repository
    /// holds more than a few small packs in mmm's format (a run each, or left by killed runs),
    /// those too. A run does this when it finishes.
    pub fn merge_packs(&self) -> Result<()> {
        self.flush()?;
        self.merge_own()?;
        self.packs.borrow_mut().clear();
        pack::tidy(&self.repo, self.opts.sync)
            .map_err(StoreError::git("merge the small packs mmm wrote"))?;
        Ok(())
    }

    /// Merges the packs this store wrote since the last merge into one, which it keeps
    /// counting (it joins the next merge).
    fn merge_own(&self) -> Result<()> {
        let sources = self.packs.borrow().clone();
        if sources.len() < 2 {
            return Ok(());
        }
        let merged = pack::merge_packs(&self.repo, &sources, self.opts.sync)
            .map_err(StoreError::git("merge the packs mmm wrote"))?;
        *self.packs.borrow_mut() = merged.into_iter().collect();
        Ok(())
    }

    /// Another store on the same repository, with the same options (for another thread).
    pub fn reopen(&self) -> Result<Store> {
        let path = self.repo.workdir().unwrap_or_else(|| self.repo.path());
        Store::open(path, self.opts.clone())
    }

    /// The underlying repository.
    pub fn repo(&self) -> &Repository {
        &self.repo
    }

    /// One-time setup for `git mmm init`: `notes.rewriteRef` and `notes.displayRef` include
    /// `refs/notes/mmm/*` in the repository's config. Idempotent; returns the settings it
    /// added as `key = value`.
    pub fn configure(&self) -> Result<Vec<String>> {
        let mut cfg = self
            .repo
            .config()
            .and_then(|c| c.open_level(git2::ConfigLevel::Local))
            .map_err(StoreError::git("open the repository's config"))?;
        let value = "refs/notes/mmm/*";
        let mut changed = Vec::new();
        for name in ["notes.rewriteRef", "notes.displayRef"] {
            let mut present = false;
            if let Ok(mut entries) = cfg.multivar(name, None) {
                while let Some(Ok(e)) = entries.next() {
                    present |= e.value_bytes() == value.as_bytes();
                }
            }
            if !present {
                cfg.set_multivar(name, "^refs/notes/mmm/\\*$", value)
                    .map_err(StoreError::git(format!("set {name}")))?;
                changed.push(format!("{name} = {value}"));
            }
        }
        Ok(changed)
    }

    /// Aborts the process if `step` is the configured kill point.
    fn step(&self, step: &str) {
        if self.opts.kill_point.as_deref() == Some(step) {
            std::process::abort();
        }
    }

    fn signature(&self) -> Result<Signature<'static>> {
        let now = unix_secs(self.opts.clock.now());
        Signature::new(&self.opts.name, &self.opts.email, &git2::Time::new(now, 0)).map_err(
            StoreError::git("make the commit signature (check the mmm name and email)"),
        )
    }

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
    /// parent is `base`.
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
        self.resync(&mut run)?;
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
        run.wip = Some(c);
        run.checkpoints = n;
        Ok(c)
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
        Ok(Recorded {
            commit,
            iteration: n,
            superseded: !won,
        })
    }

    /// Ends a run: deletes its wip ref (its iterations carry the transcripts).
    pub fn finish_run(&self, run: &Run) -> Result<()> {
        self.delete_ref(&wip_ref(&run.spec, &run.id))?;
        self.merge_packs()
    }

    /// Appends `target` to the spec's archive: a commit with the empty tree and parents
    /// `[previous archive, target]`, with `extra` trailers. Returns the archive commit.
    pub(crate) fn archive(
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

    /// Resets the spec's branch to iteration `to`. The old tip is first appended to the
    /// archive (with `Mmm-Rollback-From`/`-To` trailers), so it stays reachable and the
    /// rollback can be undone.
    pub fn rollback(&self, spec: &SpecId, to: u32) -> Result<Rollback> {
        let history = self.history(spec)?;
        let tip = self
            .ref_target(&branch_ref(spec))?
            .ok_or_else(|| StoreError::NoBranch { spec: spec.clone() })?;
        let Some(target) = history.iter().find(|i| i.n == to) else {
            return Err(read::no_such_iteration(spec, to, &history));
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
