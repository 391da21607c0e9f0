//! `doctor`: finds and repairs what an interrupted writer left behind.
//!
//! Owns: the consistency rules between branches, notes, the archive, wip refs and mmm's
//! worktrees. Must not touch: anything outside mmm's refs, their lock files and `.git/mmm/`.
//!
//! Rules:
//! * a note on a commit that is neither on the branch nor in the archive: when the branch
//!   holds the same iteration (number and run) as another commit, the commit was rewritten (a
//!   rebase or an amend, `notes.rewriteRef` copied its notes); when the note came with a
//!   merge of the notes ref (`git notes merge`), the commit is another branch's iteration;
//!   both are archived and said so. Otherwise (a kill between the notes and the branch):
//!   fast-forward the branch if the commit has both notes and its first
//!   parent is the tip (or create the branch if it is missing), else archive the commit (a
//!   kill between the two notes leaves one: such an iteration was never acknowledged, and the
//!   branch keeps only iterations with both notes);
//! * a wip ref is stale if its run has since recorded the checkpointed iteration, if its run's
//!   worktree lock names a process that no longer runs (a killed `git mmm run`), if it is older
//!   than [`DoctorOptions::stale_after`], or always with [`DoctorOptions::all_wip`]; it is
//!   archived (its transcript stays reachable) and then deleted;
//! * a worktree whose directory is gone, or an unlocked one under `.git/mmm/worktrees/`, is
//!   pruned (the loop locks the worktrees it is using); so is a locked one whose lock reason
//!   names a process (`… pid N`) that no longer runs, where `/proc` can tell; an idle kept
//!   worktree (`kept.rs`) is left warm unless its directory or its spec file is gone;
//! * an iteration commit on a branch without its transcripts or metrics note is reported
//!   (there is nothing to rebuild it from);
//! * a lock file on mmm's refs that is stale (see `locks.rs`: old, and no other live mmm
//!   process runs its spec) is removed, first, since it blocks every other repair on its ref;
//!   a younger one is reported;
//! * a run file of a dead run (`.git/mmm/runs/`) and a temporary file of a process that no
//!   longer runs (`.git/mmm/tmp/<pid>-…`) are removed.
//!
//! Every check runs even when another failed; the failures are reported with the findings.
//!
//! Doctor can race a live writer between its notes and its branch update: the writer then
//! loses its compare-and-swap and archives its commit, so nothing is lost either way.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use git2::{ErrorCode, Oid};

use super::kept::MMM_KEPT_PREFIX;
use super::runs::{Holder, RunFile};
use super::trailers::{Trailers, key};
use super::write::ArchiveKind;
use super::{
    Result, Store, StoreError, archive_ref, branch_ref, metrics_ref, transcripts_ref, unix_secs,
};
use crate::spec::SpecId;

/// Options of [`Store::doctor`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DoctorOptions {
    /// Repair what is found (otherwise only report what would be done).
    pub repair: bool,
    /// A wip ref whose last checkpoint is older than this is stale.
    pub stale_after: Duration,
    /// Treat every wip ref as stale (no run is in flight).
    pub all_wip: bool,
    /// Specs whose spec file is gone (the caller reads the specs): their kept worktrees
    /// (`[loop] keep_worktrees`) are reclaimed.
    pub gone_specs: BTreeSet<String>,
}

impl Default for DoctorOptions {
    fn default() -> Self {
        DoctorOptions {
            repair: false,
            stale_after: Duration::from_secs(24 * 3600),
            all_wip: false,
            gone_specs: BTreeSet::new(),
        }
    }
}

/// Something doctor found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// A note annotates a commit that is on neither the branch nor the archive.
    OrphanNote {
        /// The spec.
        spec: SpecId,
        /// The annotated commit.
        commit: Oid,
        /// Its iteration number, if it is an iteration commit of the spec.
        iteration: Option<u32>,
    },
    /// A note annotates an iteration commit that a rebase or an amend replaced: the branch holds
    /// the same iteration (spec, number and run) as another commit, and `notes.rewriteRef`
    /// copied the notes to it.
    RewrittenIteration {
        /// The spec.
        spec: SpecId,
        /// The old commit, off the branch.
        commit: Oid,
        /// Its iteration number.
        iteration: u32,
        /// The commit on the branch that replaced it.
        now: Oid,
    },
    /// A note that came with a `git notes merge` annotates an iteration of another branch of
    /// the spec (another clone's run), not of this one.
    MergedNote {
        /// The spec.
        spec: SpecId,
        /// The annotated commit.
        commit: Oid,
        /// Its iteration number.
        iteration: u32,
        /// The notes ref whose merge brought the note.
        notes_ref: String,
    },
    /// A note annotates an object that is not in the repository.
    NoteOnMissingObject {
        /// The notes ref.
        notes_ref: String,
        /// The missing object.
        target: Oid,
    },
    /// A wip ref of a run that is over.
    StaleWip {
        /// The spec.
        spec: SpecId,
        /// The run.
        run: String,
        /// The last checkpoint.
        tip: Oid,
        /// Why it is considered stale.
        reason: String,
    },
    /// A worktree that should not be there any more.
    LeftoverWorktree {
        /// Its name in `.git/worktrees/`.
        name: String,
        /// Its directory.
        path: PathBuf,
        /// Why it is left over.
        reason: String,
    },
    /// An iteration commit on the branch without one of its notes.
    MissingNote {
        /// The spec.
        spec: SpecId,
        /// The commit.
        commit: Oid,
        /// Its iteration number.
        iteration: u32,
        /// The notes ref that has no note for it.
        notes_ref: String,
    },
    /// A lock file on one of mmm's refs (or mmm's own) that a killed process left.
    StaleLock {
        /// The lock file.
        path: PathBuf,
        /// What it locks.
        reference: String,
        /// Its age, for people.
        age: String,
    },
    /// A lock file too young to tell whether a live git process holds it.
    RecentLock {
        /// The lock file.
        path: PathBuf,
        /// What it locks.
        reference: String,
        /// Its age, for people.
        age: String,
    },
    /// A run file (`.git/mmm/runs/`) of a run that no longer runs.
    DeadRun {
        /// The file.
        path: PathBuf,
        /// What it says, if readable.
        holder: Option<Holder>,
    },
    /// A temporary file of a process that no longer runs (`.git/mmm/tmp/`).
    LeftoverTemp {
        /// The file or directory.
        path: PathBuf,
    },
}

/// What doctor does (or would do) about a problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DoctorAction {
    /// Move the branch forward to the commit (create it if `from` is `None`).
    FastForward {
        /// The spec.
        spec: SpecId,
        /// The old tip.
        from: Option<Oid>,
        /// The new tip.
        to: Oid,
    },
    /// Append the commit to the spec's archive.
    Archive {
        /// The spec.
        spec: SpecId,
        /// The commit.
        commit: Oid,
    },
    /// Archive the wip ref's tip, then delete the ref.
    ArchiveWip {
        /// The spec.
        spec: SpecId,
        /// The wip ref.
        wip_ref: String,
    },
    /// Prune the worktree (and delete its directory if it still exists).
    PruneWorktree {
        /// The worktree's name.
        name: String,
    },
    /// Remove the file (or directory).
    Remove {
        /// The path.
        path: PathBuf,
    },
}

/// One finding: the problem, the action for it (`None`: report only), and whether the action
/// was carried out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// What is wrong.
    pub problem: Problem,
    /// What to do about it; `None` when nothing can be done.
    pub action: Option<DoctorAction>,
    /// The action was carried out (only with [`DoctorOptions::repair`]).
    pub done: bool,
}

/// A check or a repair that failed (doctor goes on with the others).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DoctorFailure {
    /// What doctor was doing.
    pub what: String,
    /// Why it failed.
    pub error: String,
}

/// What doctor found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DoctorReport {
    /// Every finding, in the order found.
    pub findings: Vec<Finding>,
    /// The checks and repairs that failed, each with its error.
    pub failures: Vec<DoctorFailure>,
}

impl DoctorReport {
    /// Findings that have an action (done or to do).
    pub fn actionable(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.action.is_some())
    }

    /// Nothing to repair (report-only findings may remain).
    pub fn nothing_to_do(&self) -> bool {
        self.actionable().next().is_none()
    }
}

/// The specs that have any mmm ref.
fn specs_with_refs(store: &Store) -> Result<BTreeSet<SpecId>> {
    let mut out = BTreeSet::new();
    for (glob, prefix) in [
        ("refs/heads/mmm/*", "refs/heads/mmm/"),
        ("refs/notes/mmm/*", "refs/notes/mmm/"),
        ("refs/mmm/*", "refs/mmm/"),
    ] {
        let refs = store
            .repo
            .references_glob(glob)
            .map_err(StoreError::git("list mmm refs"))?;
        for r in refs {
            let r = r.map_err(StoreError::git("list mmm refs"))?;
            let Some(rest) = r.name().ok().and_then(|n| n.strip_prefix(prefix)) else {
                continue;
            };
            let first = rest.split('/').next().unwrap_or(rest);
            if let Ok(spec) = SpecId::new(first) {
                out.insert(spec);
            }
        }
    }
    Ok(out)
}

impl Store {
    /// Finds (and with `opts.repair`, repairs) what interrupted writers left behind.
    /// Idempotent: a second repair run has nothing to do.
    ///
    /// Every check runs: one that fails (a ref it cannot move, a worktree it cannot prune) is
    /// reported in [`DoctorReport::failures`] and the others go on. Stale locks are removed
    /// first, since they would block the repairs after them.
    pub fn doctor(&self, opts: &DoctorOptions) -> Result<DoctorReport> {
        let mut report = DoctorReport::default();
        let attempt = |what: String, report: &mut DoctorReport, r: Result<()>| {
            if let Err(e) = r {
                report.failures.push(DoctorFailure {
                    what,
                    error: e.to_string(),
                });
            }
        };
        let r = self.doctor_locks(opts, &mut report);
        attempt("remove stale locks".into(), &mut report, r);
        let r = self.doctor_runs(opts, &mut report);
        attempt("remove the files of dead runs".into(), &mut report, r);
        match specs_with_refs(self) {
            Ok(specs) => {
                for spec in specs {
                    let r = self.doctor_orphans(&spec, opts, &mut report);
                    attempt(format!("{spec}: keep orphaned iterations"), &mut report, r);
                    let r = self.doctor_wips(&spec, opts, &mut report);
                    attempt(format!("{spec}: clear stale checkpoints"), &mut report, r);
                    let r = self.doctor_missing_notes(&spec, &mut report);
                    attempt(format!("{spec}: look for missing notes"), &mut report, r);
                }
            }
            Err(e) => attempt("list mmm's refs".into(), &mut report, Err(e)),
        }
        let r = self.doctor_worktrees(opts, &mut report);
        attempt("prune leftover worktrees".into(), &mut report, r);
        Ok(report)
    }

    fn reachable(&self, spec: &SpecId) -> Result<HashSet<Oid>> {
        let mut walk = self
            .repo
            .revwalk()
            .map_err(StoreError::git("walk the history"))?;
        for name in [branch_ref(spec), archive_ref(spec)] {
            if let Some(oid) = self.ref_target(&name)? {
                walk.push(oid)
                    .map_err(StoreError::git(format!("walk {name}")))?;
            }
        }
        let mut out = HashSet::new();
        for oid in walk {
            out.insert(oid.map_err(StoreError::git("walk the history"))?);
        }
        Ok(out)
    }

    fn doctor_orphans(
        &self,
        spec: &SpecId,
        opts: &DoctorOptions,
        report: &mut DoctorReport,
    ) -> Result<()> {
        let reachable = self.reachable(spec)?;
        let mut orphans: Vec<Oid> = Vec::new();
        // The orphans that have both notes: only those may join the branch.
        let mut both: HashSet<Oid> = HashSet::new();
        for notes_ref in [transcripts_ref(spec), metrics_ref(spec)] {
            let notes = match self.repo.notes(Some(&notes_ref)) {
                Ok(n) => n,
                Err(e) if e.code() == ErrorCode::NotFound => continue,
                Err(e) => return Err(StoreError::git(format!("list the notes {notes_ref}"))(e)),
            };
            for n in notes {
                let (_, target) = n.map_err(StoreError::git(format!("list {notes_ref}")))?;
                if reachable.contains(&target) {
                    continue;
                }
                if orphans.contains(&target) {
                    both.insert(target);
                    continue;
                }
                if self.repo.find_commit(target).is_err() {
                    report.findings.push(Finding {
                        problem: Problem::NoteOnMissingObject {
                            notes_ref: notes_ref.clone(),
                            target,
                        },
                        action: None,
                        done: false,
                    });
                    continue;
                }
                orphans.push(target);
            }
        }
        // Oldest first, so that a chain of orphans fast-forwards one after the other.
        let mut keyed = Vec::new();
        for oid in orphans {
            let c = self
                .repo
                .find_commit(oid)
                .map_err(StoreError::git(format!("read commit {oid}")))?;
            let it = self.iteration_of(spec, &c);
            keyed.push((it.as_ref().map_or(0, |i| i.n), c.time().seconds(), oid, it));
        }
        keyed.sort_by_key(|k| (k.0, k.1, k.2));

        let mut tip = self.ref_target(&branch_ref(spec))?;
        let mut remaining = keyed;
        loop {
            let pos = remaining.iter().position(|(_, _, oid, it)| {
                both.contains(oid)
                    && it
                        .as_ref()
                        .is_some_and(|it| tip.is_none() || it.parent == tip)
            });
            let Some(pos) = pos else { break };
            let (_, _, oid, it) = remaining.remove(pos);
            let mut done = false;
            if opts.repair {
                done = self.cas_ref(&branch_ref(spec), tip, oid, "mmm doctor: fast-forward")?;
                if !done {
                    return Err(StoreError::Raced { spec: spec.clone() });
                }
                self.step("after-branch");
            }
            report.findings.push(Finding {
                problem: Problem::OrphanNote {
                    spec: spec.clone(),
                    commit: oid,
                    iteration: it.map(|i| i.n),
                },
                action: Some(DoctorAction::FastForward {
                    spec: spec.clone(),
                    from: tip,
                    to: oid,
                }),
                done,
            });
            tip = Some(oid);
        }
        let why = self.why_orphaned(spec, &remaining)?;
        for ((_, _, oid, it), problem) in remaining.into_iter().zip(why) {
            let done = if opts.repair {
                self.archive(spec, oid, ArchiveKind::Orphan, &[])?;
                true
            } else {
                false
            };
            report.findings.push(Finding {
                problem: problem.unwrap_or_else(|| Problem::OrphanNote {
                    spec: spec.clone(),
                    commit: oid,
                    iteration: it.map(|i| i.n),
                }),
                action: Some(DoctorAction::Archive {
                    spec: spec.clone(),
                    commit: oid,
                }),
                done,
            });
        }
        Ok(())
    }

    /// What happened to each orphan that is an iteration, where it can be told: replaced on
    /// the branch by a rewrite of the same iteration (a rebase, an amend), or annotated by a
    /// note that a `git notes merge` brought. `None`: probably a writer killed while recording.
    fn why_orphaned(
        &self,
        spec: &SpecId,
        orphans: &[(u32, i64, Oid, Option<super::Iteration>)],
    ) -> Result<Vec<Option<Problem>>> {
        let history = match self.history(spec) {
            Ok(h) => h,
            Err(StoreError::NoBranch { .. }) => Vec::new(),
            Err(e) => return Err(e),
        };
        let mut merged: Vec<(String, HashSet<Oid>)> = Vec::new();
        for notes_ref in [transcripts_ref(spec), metrics_ref(spec)] {
            let set = self.notes_brought_by_merges(&notes_ref)?;
            merged.push((notes_ref, set));
        }
        Ok(orphans
            .iter()
            .map(|(_, _, oid, it)| {
                let it = it.as_ref()?;
                let rewritten = history
                    .iter()
                    .find(|h| h.n == it.n && h.run == it.run && h.commit != *oid);
                if let Some(h) = rewritten {
                    return Some(Problem::RewrittenIteration {
                        spec: spec.clone(),
                        commit: *oid,
                        iteration: it.n,
                        now: h.commit,
                    });
                }
                let (notes_ref, _) = merged.iter().find(|(_, set)| set.contains(oid))?;
                Some(Problem::MergedNote {
                    spec: spec.clone(),
                    commit: *oid,
                    iteration: it.n,
                    notes_ref: notes_ref.clone(),
                })
            })
            .collect())
    }

    /// The objects whose note in `notes_ref` came with a merge: added or changed by a merge
    /// commit of the ref's first-parent history, against its first parent (a `git notes merge`
    /// that was not a fast-forward).
    fn notes_brought_by_merges(&self, notes_ref: &str) -> Result<HashSet<Oid>> {
        let mut out = HashSet::new();
        let Some(mut cur) = self.ref_target(notes_ref)? else {
            return Ok(out);
        };
        let what = || format!("read the history of {notes_ref}");
        loop {
            let c = self
                .repo
                .find_commit(cur)
                .map_err(StoreError::git(what()))?;
            let Ok(first) = c.parent(0) else { break };
            if c.parent_count() > 1 {
                let old = first.tree().map_err(StoreError::git(what()))?;
                let new = c.tree().map_err(StoreError::git(what()))?;
                let diff = self
                    .repo
                    .diff_tree_to_tree(Some(&old), Some(&new), None)
                    .map_err(StoreError::git(what()))?;
                for d in diff.deltas() {
                    let path = d
                        .new_file()
                        .path()
                        .map(|p| p.to_string_lossy().replace('/', ""));
                    if let Some(oid) = path.and_then(|p| Oid::from_str(&p).ok()) {
                        out.insert(oid);
                    }
                }
            }
            cur = first.id();
        }
        Ok(out)
    }

    fn doctor_wips(
        &self,
        spec: &SpecId,
        opts: &DoctorOptions,
        report: &mut DoctorReport,
    ) -> Result<()> {
        let prefix = format!("refs/mmm/{spec}/wip/");
        let refs = self
            .repo
            .references_glob(&format!("{prefix}*"))
            .map_err(StoreError::git("list wip refs"))?;
        let mut wips = Vec::new();
        for r in refs {
            let r = r.map_err(StoreError::git("list wip refs"))?;
            let (Some(name), Some(target)) = (r.name().ok(), r.target()) else {
                continue;
            };
            wips.push((name.to_owned(), target));
        }
        if wips.is_empty() {
            return Ok(());
        }
        let history = match self.history(spec) {
            Ok(h) => h,
            Err(StoreError::NoBranch { .. }) => Vec::new(),
            Err(e) => return Err(e),
        };
        let now = unix_secs(self.opts.clock.now());
        for (name, tip) in wips {
            let run = name.strip_prefix(&prefix).unwrap_or(&name).to_owned();
            let c = self
                .repo
                .find_commit(tip)
                .map_err(StoreError::git(format!("read {name}")))?;
            let t = Trailers::parse(&String::from_utf8_lossy(c.message_bytes()));
            let in_flight = t.iteration().unwrap_or(0);
            let age = now.saturating_sub(c.time().seconds());
            let recorded = history
                .iter()
                .rev()
                .find(|i| i.run.as_deref() == Some(run.as_str()) && i.n >= in_flight);
            let reason = if let Some(i) = recorded {
                format!("its run recorded iteration {} after the checkpoint", i.n)
            } else if opts.all_wip {
                "every wip ref was declared stale (--all)".to_owned()
            } else if let Some(pid) = self.killed_run_pid(spec, &run) {
                format!("its run's process (pid {pid}) no longer runs (killed)")
            } else if u64::try_from(age).unwrap_or(0) > opts.stale_after.as_secs() {
                format!(
                    "its last checkpoint is {} old",
                    humantime::format_duration(Duration::from_secs(age.unsigned_abs()))
                )
            } else {
                continue;
            };
            let done = if opts.repair {
                self.archive(spec, tip, ArchiveKind::Wip, &[(key::RUN, run.clone())])?;
                self.delete_ref(&name)?;
                true
            } else {
                false
            };
            report.findings.push(Finding {
                problem: Problem::StaleWip {
                    spec: spec.clone(),
                    run,
                    tip,
                    reason,
                },
                action: Some(DoctorAction::ArchiveWip {
                    spec: spec.clone(),
                    wip_ref: name,
                }),
                done,
            });
        }
        Ok(())
    }

    fn doctor_missing_notes(&self, spec: &SpecId, report: &mut DoctorReport) -> Result<()> {
        let history = match self.history(spec) {
            Ok(h) => h,
            Err(StoreError::NoBranch { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        for it in history {
            for notes_ref in [transcripts_ref(spec), metrics_ref(spec)] {
                match self.repo.find_note(Some(&notes_ref), it.commit) {
                    Ok(_) => {}
                    Err(e) if e.code() == ErrorCode::NotFound => {
                        report.findings.push(Finding {
                            problem: Problem::MissingNote {
                                spec: spec.clone(),
                                commit: it.commit,
                                iteration: it.n,
                                notes_ref,
                            },
                            action: None,
                            done: false,
                        });
                    }
                    Err(e) => return Err(StoreError::git(format!("read {notes_ref}"))(e)),
                }
            }
        }
        Ok(())
    }

    /// Stale lock files on mmm's refs (and mmm's own) are removed; younger ones reported.
    fn doctor_locks(&self, opts: &DoctorOptions, report: &mut DoctorReport) -> Result<()> {
        let locks = self.lock_files();
        if locks.is_empty() {
            return Ok(());
        }
        let runs = self.live_runs();
        for lock in locks {
            let age = super::locks::for_people(lock.age);
            if !self.is_stale(&lock, &runs) {
                // In use by a live run, or too young to tell: reported, left alone.
                if lock.spec.is_some() && lock.age < super::LOCK_STALE_AFTER {
                    report.findings.push(Finding {
                        problem: Problem::RecentLock {
                            path: lock.path,
                            reference: lock.reference,
                            age,
                        },
                        action: None,
                        done: false,
                    });
                }
                continue;
            }
            let done = opts.repair && remove_path(&lock.path, report);
            report.findings.push(Finding {
                problem: Problem::StaleLock {
                    path: lock.path.clone(),
                    reference: lock.reference,
                    age,
                },
                action: Some(DoctorAction::Remove { path: lock.path }),
                done,
            });
        }
        Ok(())
    }

    /// Run files of dead runs, and temporary files (`.git/mmm/tmp/<pid>-…`) of processes that
    /// no longer run, are removed.
    fn doctor_runs(&self, opts: &DoctorOptions, report: &mut DoctorReport) -> Result<()> {
        for file in self.live_runs() {
            let RunFile::Dead { path, holder } = file else {
                continue;
            };
            let done = opts.repair && self.remove_dead_run(&path)?;
            report.findings.push(Finding {
                problem: Problem::DeadRun {
                    path: path.clone(),
                    holder,
                },
                action: Some(DoctorAction::Remove { path }),
                done,
            });
        }
        let tmp = super::temp_dir(self.repo.commondir());
        let Ok(entries) = std::fs::read_dir(&tmp) else {
            return Ok(());
        };
        let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        paths.sort();
        for path in paths {
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            let pid = name
                .as_deref()
                .and_then(|n| n.split('-').next())
                .and_then(|p| p.parse::<u32>().ok());
            let dead = match pid {
                Some(pid) => pid_is_dead(pid),
                None => false,
            };
            if !dead {
                continue;
            }
            let done = opts.repair && remove_path(&path, report);
            report.findings.push(Finding {
                problem: Problem::LeftoverTemp { path: path.clone() },
                action: Some(DoctorAction::Remove { path }),
                done,
            });
        }
        Ok(())
    }

    /// The pid named by the worktree lock of `run` on `spec` (`mmm run <spec>-<run> pid N`) when
    /// that process is known not to run: the run was killed. `None` when no such lock exists or
    /// the process may be alive.
    fn killed_run_pid(&self, spec: &SpecId, run: &str) -> Option<u32> {
        let wanted = format!("{MMM_LOCK_PREFIX}{spec}-{} pid ", run.to_ascii_lowercase());
        let names = self.repo.worktrees().ok()?;
        names
            .iter()
            .filter_map(|n| n.ok().flatten())
            .find_map(|name| {
                let wt = self.repo.find_worktree(name).ok()?;
                let git2::WorktreeLockStatus::Locked(Some(reason)) = wt.is_locked().ok()? else {
                    return None;
                };
                let pid = reason.strip_prefix(&wanted)?.trim().parse::<u32>().ok()?;
                owner_is_dead(&reason).then_some(pid)
            })
    }

    fn doctor_worktrees(&self, opts: &DoctorOptions, report: &mut DoctorReport) -> Result<()> {
        let names = self
            .repo
            .worktrees()
            .map_err(StoreError::git("list worktrees"))?;
        let mmm_dir = canonical(&self.repo.commondir().join("mmm").join("worktrees"));
        for name in names.iter().filter_map(|n| n.ok().flatten()) {
            let wt = self
                .repo
                .find_worktree(name)
                .map_err(StoreError::git(format!("open worktree {name}")))?;
            let path = wt.path().to_owned();
            let lock = wt.is_locked();
            let locked = !matches!(lock, Ok(git2::WorktreeLockStatus::Unlocked));
            let gone = !path.exists();
            let lock_reason = match &lock {
                Ok(git2::WorktreeLockStatus::Locked(Some(why))) => Some(why.as_str()),
                _ => None,
            };
            // mmm's worktrees live under `.git/mmm/worktrees/`, or (for agents that refuse to
            // edit below `.git/`) elsewhere, locked with the reason `mmm run …`.
            let ours = canonical(&path).starts_with(&mmm_dir)
                || lock_reason.is_some_and(|r| r.starts_with(MMM_LOCK_PREFIX));
            let dead_owner = lock_reason.is_some_and(owner_is_dead);
            let admin = self.repo.commondir().join("worktrees").join(name);
            let kept = super::kept::kept_spec(&admin)
                .filter(|_| lock_reason.is_some_and(|r| r.starts_with(MMM_KEPT_PREFIX)));
            let is_kept = kept.is_some();
            let reason = if let Some(spec) = kept {
                // An idle kept worktree is warm on purpose: reclaimed only when its directory
                // or its spec is gone (`git mmm clean` reclaims the others).
                if gone {
                    "its directory is gone".to_owned()
                } else if opts.gone_specs.contains(&spec) {
                    format!("kept for spec `{spec}`, whose spec file is gone")
                } else {
                    continue;
                }
            } else if locked && !(ours && dead_owner) {
                continue;
            } else if locked {
                "locked by a run that no longer runs (killed)".to_owned()
            } else if gone {
                "its directory is gone".to_owned()
            } else if ours {
                "an unlocked mmm worktree (no run is using it)".to_owned()
            } else {
                continue;
            };
            let done = if opts.repair {
                let mut po = git2::WorktreePruneOptions::new();
                po.valid(true)
                    .locked(locked)
                    .working_tree((ours || is_kept) && !gone);
                match wt.prune(Some(&mut po)) {
                    Ok(()) => true,
                    Err(e) => {
                        report.failures.push(DoctorFailure {
                            what: format!("prune worktree {name}"),
                            error: e.message().to_owned(),
                        });
                        false
                    }
                }
            } else {
                false
            };
            report.findings.push(Finding {
                problem: Problem::LeftoverWorktree {
                    name: name.to_owned(),
                    path,
                    reason,
                },
                action: Some(DoctorAction::PruneWorktree {
                    name: name.to_owned(),
                }),
                done,
            });
        }
        Ok(())
    }
}

/// The canonical form of a path, or of its longest existing ancestor joined with the rest.
fn canonical(p: &Path) -> PathBuf {
    if let Ok(c) = p.canonicalize() {
        return c;
    }
    match (p.parent(), p.file_name()) {
        (Some(parent), Some(name)) => canonical(parent).join(name),
        _ => p.to_owned(),
    }
}

fn short(oid: &Oid) -> String {
    let s = oid.to_string();
    s[..10.min(s.len())].to_owned()
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::OrphanNote {
                spec,
                commit,
                iteration,
            } => {
                write!(
                    f,
                    "{spec}: commit {} has notes but is on neither the branch nor the archive",
                    short(commit)
                )?;
                if let Some(n) = iteration {
                    write!(
                        f,
                        " (iteration {n}, probably interrupted while being recorded)"
                    )?;
                }
                Ok(())
            }
            Problem::RewrittenIteration {
                spec,
                commit,
                iteration,
                now,
            } => write!(
                f,
                "{spec}: commit {} has notes but is off the branch: iteration {iteration} was rewritten as {} (a rebase or an amend of mmm/{spec}; notes.rewriteRef copied its notes), so the old commit is only kept",
                short(commit),
                short(now)
            ),
            Problem::MergedNote {
                spec,
                commit,
                iteration,
                notes_ref,
            } => write!(
                f,
                "{spec}: commit {} has notes but is off the branch: it is iteration {iteration} of another branch of the spec (another clone's run), whose notes came with a `git notes merge` into {notes_ref}; `git mmm sync` exchanges runs with their branches",
                short(commit)
            ),
            Problem::NoteOnMissingObject { notes_ref, target } => {
                write!(
                    f,
                    "{notes_ref}: a note annotates {}, which is not in the repository",
                    short(target)
                )
            }
            Problem::StaleWip {
                spec,
                run,
                tip,
                reason,
            } => write!(
                f,
                "{spec}: checkpoint ref of run {run} ({}) is stale: {reason}",
                short(tip)
            ),
            Problem::LeftoverWorktree { name, path, reason } => {
                write!(
                    f,
                    "worktree {name} at {} is left over: {reason}",
                    path.display()
                )
            }
            Problem::MissingNote {
                spec,
                commit,
                iteration,
                notes_ref,
            } => write!(
                f,
                "{spec}: iteration {iteration} ({}) has no note in {notes_ref}",
                short(commit)
            ),
            Problem::StaleLock {
                path,
                reference,
                age,
            } => write!(
                f,
                "{} ({age} old) locks {reference}, and no live mmm process holds it: a killed process left it",
                path.display()
            ),
            Problem::RecentLock {
                path,
                reference,
                age,
            } => write!(
                f,
                "{} ({age} old) locks {reference}; a git process may be writing it now (if it stays, run `git mmm doctor` again in a few seconds)",
                path.display()
            ),
            Problem::DeadRun { path, holder } => match holder {
                Some(h) => write!(
                    f,
                    "{} names a run that no longer runs ({h})",
                    path.display()
                ),
                None => write!(f, "{} belongs to a run that no longer runs", path.display()),
            },
            Problem::LeftoverTemp { path } => write!(
                f,
                "{} is a temporary file of an mmm process that no longer runs",
                path.display()
            ),
        }
    }
}

impl std::fmt::Display for DoctorAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DoctorAction::FastForward { spec, from, to } => match from {
                Some(from) => write!(
                    f,
                    "fast-forward mmm/{spec} from {} to {}",
                    short(from),
                    short(to)
                ),
                None => write!(f, "create mmm/{spec} at {}", short(to)),
            },
            DoctorAction::Archive { spec, commit } => {
                write!(f, "keep {} in refs/mmm/{spec}/archive", short(commit))
            }
            DoctorAction::ArchiveWip { spec, wip_ref } => {
                write!(
                    f,
                    "keep {wip_ref} in refs/mmm/{spec}/archive, then delete the ref"
                )
            }
            DoctorAction::PruneWorktree { name } => write!(f, "prune worktree {name}"),
            DoctorAction::Remove { path } => write!(f, "remove {}", path.display()),
        }
    }
}

/// How the loop's worktree locks begin (`mmm run <name> pid <pid>`); an idle kept worktree's
/// begins with [`MMM_KEPT_PREFIX`].
pub const MMM_LOCK_PREFIX: &str = "mmm run ";

/// True when a lock reason names a process (`… pid N`) that is known not to run. Without
/// `/proc` nothing is known, and the lock is respected.
fn owner_is_dead(reason: &str) -> bool {
    let Some(pid) = reason
        .rsplit_once(" pid ")
        .and_then(|(_, p)| p.trim().parse::<u32>().ok())
    else {
        return false;
    };
    pid_is_dead(pid)
}

/// True when process `pid` is known not to run (on this host). Without `/proc` nothing is
/// known.
pub(super) fn pid_is_dead(pid: u32) -> bool {
    let proc = std::path::Path::new("/proc");
    proc.join("self").exists() && !proc.join(pid.to_string()).exists()
}

/// Removes a file or a directory tree; a failure goes to the report. Whether it is gone.
fn remove_path(path: &Path, report: &mut DoctorReport) -> bool {
    let removed = match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    };
    match removed {
        Ok(()) => true,
        Err(e) => {
            report.failures.push(DoctorFailure {
                what: format!("remove {}", path.display()),
                error: e.to_string(),
            });
            false
        }
    }
}
