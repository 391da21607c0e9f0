//! The git-native store: iteration commits on `refs/heads/mmm/<spec>`, transcripts and metrics
//! as JSON Lines notes, wip checkpoints, the archive, rollback and `doctor`.
//!
//! Owns: every write to mmm's refs, in the crash-safe order of `reference/git-state.md`.
//! Must not touch: the terminal, the process environment, work trees' files, the network
//! (except `sync.rs`, through the `git` command).
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
//!
//! # Rooms
//!
//! [`Store`] is the one door. Each room adds its methods to it in an `impl Store` block of its
//! own, so callers see one type, whichever file a method lives in.
//!
//! ```text
//! mod.rs       Store, StoreOptions, StoreError; opening; flushing the object batch and
//!              merging packs; commit signatures; kill points
//! refs.rs      ref names; compare-and-swap (creation too); syncing a moved ref; deleting;
//!              retries with jittered backoff while other writers hold a lock; a name in the
//!              way (`RefConflict`); whether a spec's refs can be written (`check_writable`)
//! locks.rs     lock files on mmm's refs: found, judged stale (old, no other live run of the
//!              spec), the error a stale one gives
//! runs.rs      which process runs which spec: `.git/mmm/runs/<spec>.json`, held by `flock`
//! notes.rs     notes commits (a union with the note already there); notes refs moved by CAS
//! write.rs     runs, records, wip checkpoints, recording an iteration in the write order,
//!              the archive
//! read.rs      history, one iteration with its notes, notes' records, prompts, status
//! rollback.rs  rollback and its undo
//! doctor.rs    finding and repairing what a killed writer left
//! kept.rs      the worktrees kept per spec between runs: marker, idle lock, listing, removal
//! pack.rs      the in-memory object batch written as one pack; merging small packs
//! record.rs    the JSON Lines records of notes and checkpoints
//! trailers.rs  commit messages and their `Mmm-*` trailers
//! ```
//!
//! Rooms move refs only through `refs.rs` (`Store::cas_ref`, `Store::delete_ref`), never with
//! git2's `reference()`: every move is then a compare-and-swap, synced, with a reflog.
//!
//! Exchanging mmm's refs with a remote (fetch, integrate, push) is the room `sync.rs`, built
//! the same way: an `impl Store` block whose ref moves go through `refs.rs`. It is the one room
//! that reaches the network, and only by running `git`; `lease.rs` (a spec's single-writer
//! lease, which lives on the remote only) uses its `git` runner.

mod doctor;
mod kept;
mod lease;
mod locks;
mod notes;
mod pack;
mod read;
mod rebase;
pub mod record;
mod refs;
mod rollback;
mod runs;
mod sync;
pub mod trailers;
mod write;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use git2::{Oid, Repository, Signature};

use crate::clock::{Clock, IdGen};
use crate::spec::SpecId;

pub use doctor::{
    DoctorAction, DoctorFailure, DoctorOptions, DoctorReport, Finding, MMM_LOCK_PREFIX, Problem,
};
pub use kept::{
    KEPT_MARKER, KeptState, KeptWorktree, MMM_KEPT_PREFIX, kept_spec, lock_state, write_lock,
};
pub use lease::{Lease, LeaseFile, LeaseHolder, LeaseKeeper, Take, lease_ref};
pub use locks::{LOCK_STALE_AFTER, LockFile};
pub use read::{Iteration, IterationDetail, SYSTEM_SAME_AS, SpecState};
pub use rebase::{Fresh, Rebase, StartFrom};
pub use record::{IterationStatus, RECORD_VERSION, Record};
pub use refs::{archive_ref, branch_ref, metrics_ref, transcripts_ref, wip_ref};
pub use rollback::Rollback;
pub use runs::{Claim, Holder, RunFile, host_name};
pub use sync::{
    ARCHIVE_MERGE, SpecSync, SpecSyncStatus, SyncError, SyncOptions, SyncReport, fetch_refspecs,
    merge_note_text, tracking_ref,
};
pub use write::{NewIteration, Recorded, Run};

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
    /// A file of mmm's could not be read or written.
    #[error("could not {what}: {source}")]
    Io {
        /// What we were doing.
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Another live mmm process runs the spec.
    #[error(
        "spec `{spec}` is already being run by mmm ({holder}); wait for that run to finish, or stop it with `git mmm stop {spec}`"
    )]
    Busy {
        /// The spec.
        spec: SpecId,
        /// The run that holds it.
        holder: Box<runs::Holder>,
    },
    /// A ref cannot exist because another ref's name is in the way.
    #[error(
        "git cannot create {wanted}: the ref {existing} exists, and a ref's name cannot also be a directory of refs; {hint}"
    )]
    RefConflict {
        /// The ref mmm needs.
        wanted: String,
        /// The ref in the way.
        existing: String,
        /// What the user can do.
        hint: String,
    },
    /// A lock file left by a killed process blocks a ref.
    #[error(
        "{reference} is locked by {lock}, {age} old, and no other mmm process of this repository is running its spec: a killed process left it; run `git mmm doctor` to remove it, then run again"
    )]
    StaleLock {
        /// The locked ref.
        reference: String,
        /// The lock file.
        lock: PathBuf,
        /// Its age, for people.
        age: String,
    },
    /// The spec's branch exists but is not mmm's.
    #[error(
        "refs/heads/mmm/{spec} exists but is not mmm's: its tip {tip} is no iteration of spec `{spec}` (it has no `Mmm-Spec: {spec}` and `Mmm-Iteration` trailers), so it looks like a branch of your own; mmm will not stack iterations on it. Rename it (`git branch -m mmm/{spec} <new name>`), or give the spec another id (rename its file, or set `id` in its front matter)"
    )]
    ForeignBranch {
        /// The spec.
        spec: SpecId,
        /// The branch's tip.
        tip: Oid,
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
    /// Another writer moved the branch while `run --fresh` archived it: nothing was removed.
    #[error(
        "refs/heads/mmm/{spec} moved while `--fresh` was setting it aside (it read {read}, it is now {}): another run or sync wrote to it, and its work stays on the branch; nothing was removed. Look at `git mmm log {spec}`, then run `git mmm run {spec} --fresh` again",
        now.map_or_else(|| "deleted".to_owned(), |o| o.to_string())
    )]
    MovedDuringFresh {
        /// The spec.
        spec: SpecId,
        /// The tip `--fresh` read and archived.
        read: Oid,
        /// Where the branch is now (`None`: deleted).
        now: Option<Oid>,
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
    /// Where to push each recorded iteration and checkpoint (`git mmm run --push`), best
    /// effort: `None` in normal use. See `sync.rs`.
    pub push: Option<SyncOptions>,
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
            push: None,
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

/// Where mmm keeps the temporary files of a run (a prompt file for an agent, say) in a
/// repository whose common git directory is `common`: `.git/mmm/tmp/`, where `doctor` finds
/// those a killed run left. Each process's files go in a directory named `<pid>-…`.
pub fn temp_dir(common: &Path) -> PathBuf {
    common.join("mmm").join("tmp")
}

/// Writes to disk the objects that `repo` (a worktree's repository given the store's object
/// database) holds in memory, so that a file may name them; see `pack::flush_shared`.
pub fn flush_shared(repo: &Repository) -> Result<()> {
    pack::flush_shared(repo).map_err(StoreError::git("write the new objects as a pack"))?;
    Ok(())
}

/// Seconds since the epoch (0 before it), as git dates commits.
fn unix_secs(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
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

    /// One-time setup for `git mmm init`: `notes.rewriteRef` includes `refs/notes/mmm/*` in the
    /// repository's config (a rebase or an amend carries the notes along), and
    /// `notes.displayRef` does not (an older mmm set it: `git log` then printed every
    /// iteration's whole transcript; `git mmm log` and `git mmm show` read the notes instead).
    /// Idempotent; returns what it changed, one line each (`set …`, `unset …`).
    pub fn configure(&self) -> Result<Vec<String>> {
        let mut cfg = self
            .repo
            .config()
            .and_then(|c| c.open_level(git2::ConfigLevel::Local))
            .map_err(StoreError::git("open the repository's config"))?;
        let value = "refs/notes/mmm/*";
        let pattern = "^refs/notes/mmm/\\*$";
        let has = |cfg: &git2::Config, name: &str| {
            let mut present = false;
            if let Ok(mut entries) = cfg.multivar(name, None) {
                while let Some(Ok(e)) = entries.next() {
                    present |= e.value_bytes() == value.as_bytes();
                }
            }
            present
        };
        let mut changed = Vec::new();
        if !has(&cfg, "notes.rewriteRef") {
            cfg.set_multivar("notes.rewriteRef", pattern, value)
                .map_err(StoreError::git("set notes.rewriteRef"))?;
            changed.push(format!("set notes.rewriteRef = {value}"));
        }
        if has(&cfg, "notes.displayRef") {
            cfg.remove_multivar("notes.displayRef", pattern)
                .map_err(StoreError::git("unset notes.displayRef"))?;
            changed.push(format!(
                "unset notes.displayRef = {value} (`git log` stays readable; `git mmm log` shows \
                 the iterations)"
            ));
        }
        Ok(changed)
    }

    /// Aborts the process if `step` is the configured kill point: for the steps of the callers,
    /// beside the store's own [`KILL_POINTS`] (`after-snapshot`: the engine staged the
    /// worktree into its index, the iteration is not recorded yet).
    pub fn kill_point(&self, step: &str) {
        self.step(step);
    }

    /// Aborts the process if `step` is the configured kill point.
    fn step(&self, step: &str) {
        if self.opts.kill_point.as_deref() == Some(step) {
            std::process::abort();
        }
    }

    /// The author and committer of every commit the store writes, dated by its clock.
    fn signature(&self) -> Result<Signature<'static>> {
        let now = unix_secs(self.opts.clock.now());
        Signature::new(&self.opts.name, &self.opts.email, &git2::Time::new(now, 0)).map_err(
            StoreError::git("make the commit signature (check the mmm name and email)"),
        )
    }
}
