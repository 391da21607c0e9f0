//! Sync: mmm's refs exchanged with a remote, through the `git` command.
//!
//! Owns: the fetch of mmm's refs into tracking refs (never into mmm's own refs), their
//! integration in-process, the one atomic push with leases of what is new, and retrying the
//! three when the remote moved meanwhile; the fetch refspecs `git mmm init --remote` adds.
//! The network is only ever reached by running `git` (credential helpers, `http.extraheader`
//! and CI tokens work; `GIT_TERMINAL_PROMPT=0`, each step with a timeout): libgit2 never talks
//! to it. Local refs move only through `refs.rs`.
//!
//! Integration rules (`reference/git-state.md`, "Sync protocol"), per spec:
//!
//! * archive: fast-forward, or a merge commit (`Mmm-Archive: merge`) with both sides as
//!   parents; never rewritten;
//! * branch: behind → fast-forward; ahead → push; diverged → the remote wins and the local tip
//!   goes to the archive. A side whose archive holds a tip the other side's branch still has
//!   rolled back: its branch wins (a rollback is pushed with a lease on the remote's tip; a
//!   stale clone never brings rolled-back iterations back);
//! * notes: merged per annotated commit, as a union of JSON Lines records deduplicated by `id`
//!   (what `git notes merge -s cat_sort_uniq` does with such notes), in a commit with the local
//!   and the remote tip as parents, so the push is a fast-forward;
//! * wip refs: one writer each, so the remote's is adopted unless ours descends from it.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::ffi::OsStr;
use std::time::Duration;

use git2::{ErrorCode, Oid};
use serde::Serialize;

use super::trailers::{Trailers, key};
use super::write::ArchiveKind;
use super::{
    Result, Store, StoreError, archive_ref, branch_ref, metrics_ref, trailers, transcripts_ref,
};
use crate::process::{Group, Spawn, join_reader, spawn_reader};
use crate::spec::SpecId;

/// The value of the `Mmm-Archive` trailer on the commit that merges two archives.
pub const ARCHIVE_MERGE: &str = "merge";

/// The fetch refspecs of a remote: mmm's refs into tracking refs only (never pushed).
pub fn fetch_refspecs(remote: &str) -> [String; 3] {
    [
        format!("+refs/heads/mmm/*:refs/remotes/{remote}/mmm/*"),
        format!("+refs/notes/mmm/*:refs/notes/remotes/{remote}/mmm/*"),
        format!("+refs/mmm/*:refs/mmm-remotes/{remote}/*"),
    ]
}

/// The tracking ref of one of mmm's refs, for `remote`.
pub fn tracking_ref(remote: &str, name: &str) -> Option<String> {
    if let Some(rest) = name.strip_prefix("refs/heads/mmm/") {
        Some(format!("refs/remotes/{remote}/mmm/{rest}"))
    } else if let Some(rest) = name.strip_prefix("refs/notes/mmm/") {
        Some(format!("refs/notes/remotes/{remote}/mmm/{rest}"))
    } else {
        name.strip_prefix("refs/mmm/")
            .map(|rest| format!("refs/mmm-remotes/{remote}/{rest}"))
    }
}

/// Options of [`Store::sync`].
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// The remote's name (`git remote`).
    pub remote: String,
    /// The specs to sync; empty: every spec either side has.
    pub specs: Vec<SpecId>,
    /// The time limit of each network step (one fetch, one push).
    pub timeout: Duration,
    /// Fetch-integrate-push rounds before giving up while the remote keeps moving.
    pub attempts: u32,
}

impl SyncOptions {
    /// Every spec, two minutes per network step, eight rounds.
    pub fn new(remote: impl Into<String>) -> SyncOptions {
        SyncOptions {
            remote: remote.into(),
            specs: Vec::new(),
            timeout: Duration::from_secs(120),
            attempts: 8,
        }
    }
}

/// What a sync did to one spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SpecSyncStatus {
    /// Both sides already had the same.
    UpToDate,
    /// The remote had more: the local refs moved forward.
    FastForwarded,
    /// We had more: the remote's refs moved forward.
    Pushed,
    /// Both sides had new iterations: the remote's won, ours are in the archive.
    Diverged,
    /// A branch `mmm/<spec>` on one side is not mmm's (its tip has no `Mmm-Spec` trailer):
    /// the spec was left alone, neither integrated nor pushed.
    Foreign,
}

impl SpecSyncStatus {
    /// The words the CLI prints.
    pub fn as_str(self) -> &'static str {
        match self {
            SpecSyncStatus::UpToDate => "up to date",
            SpecSyncStatus::FastForwarded => "fast-forwarded",
            SpecSyncStatus::Pushed => "pushed",
            SpecSyncStatus::Diverged => "diverged",
            SpecSyncStatus::Foreign => "not mmm's, left alone",
        }
    }
}

/// One spec's line of a sync.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SpecSync {
    /// The spec.
    pub spec: SpecId,
    /// What happened.
    pub status: SpecSyncStatus,
    /// The local tips that went to the archive because the remote's won.
    #[serde(serialize_with = "oids")]
    pub archived: Vec<Oid>,
    /// The branch tip after the sync (None: neither side has a branch).
    #[serde(serialize_with = "opt_oid")]
    pub tip: Option<Oid>,
    /// What was wrong on the remote and left as it is (a branch that is not mmm's, a note
    /// that is not JSON Lines).
    pub problems: Vec<String>,
}

fn oids<S: serde::Serializer>(v: &[Oid], s: S) -> std::result::Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(Oid::to_string))
}

fn opt_oid<S: serde::Serializer>(v: &Option<Oid>, s: S) -> std::result::Result<S::Ok, S::Error> {
    match v {
        Some(o) => s.serialize_str(&o.to_string()),
        None => s.serialize_none(),
    }
}

/// The outcome of [`Store::sync`].
#[derive(Debug, Clone, Serialize)]
pub struct SyncReport {
    /// The remote.
    pub remote: String,
    /// One entry per spec, sorted by spec.
    pub specs: Vec<SpecSync>,
    /// How many refs the push moved (0: nothing was pushed).
    pub pushed_refs: usize,
    /// Fetch-integrate-push rounds it took.
    pub rounds: u32,
}

/// Why a sync failed. Local state is complete either way: the next sync finishes the job.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// No such remote in the repository's config.
    #[error(
        "no remote `{remote}` in this repository; add it with `git remote add {remote} URL`, or name another with --remote or `[sync] remote`"
    )]
    NoRemote {
        /// The remote.
        remote: String,
    },
    /// The remote repository is not there.
    #[error(
        "the remote `{remote}` is not a reachable git repository ({detail}); check its URL with `git remote -v`; nothing local changed"
    )]
    RemoteMissing {
        /// The remote.
        remote: String,
        /// git's words.
        detail: String,
    },
    /// The remote refused our credentials.
    #[error(
        "the remote `{remote}` refused the credentials ({detail}); set up a credential helper or token (mmm never prompts), then sync again"
    )]
    Auth {
        /// The remote.
        remote: String,
        /// git's words.
        detail: String,
    },
    /// The network failed or a step ran out of time.
    #[error(
        "could not reach the remote `{remote}` during {step} ({detail}); nothing local is lost: run `git mmm sync` again when the network is back"
    )]
    Network {
        /// The remote.
        remote: String,
        /// fetch or push.
        step: &'static str,
        /// git's words.
        detail: String,
    },
    /// A server hook or branch protection rejected the push.
    #[error(
        "the remote `{remote}` rejected the push of {refs} ({detail}); allow mmm's refs (refs/heads/mmm/*, refs/notes/mmm/*, refs/mmm/*) in its hooks or branch protection, then sync again; nothing local is lost"
    )]
    Rejected {
        /// The remote.
        remote: String,
        /// The refs refused.
        refs: String,
        /// The server's reason.
        detail: String,
    },
    /// The remote kept moving while we integrated.
    #[error(
        "the remote `{remote}` kept moving: gave up after {rounds} fetch-integrate-push rounds; run `git mmm sync` again"
    )]
    KeptMoving {
        /// The remote.
        remote: String,
        /// Rounds tried.
        rounds: u32,
    },
    /// `git` failed in another way.
    #[error("`git {step}` failed: {detail}")]
    Git {
        /// fetch or push.
        step: &'static str,
        /// git's words.
        detail: String,
    },
    /// `git` could not be started.
    #[error("could not run `git`: {0}; install git and put it on PATH")]
    Spawn(#[source] std::io::Error),
    /// A local store operation failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One ref a push moves: our value, and what we last saw on the remote (the lease).
#[derive(Debug, Clone, PartialEq, Eq)]
struct PushRef {
    name: String,
    new: Oid,
    expected: Option<Oid>,
}

/// One spec's refs: ours and the remote's (tracking), by shared name.
#[derive(Debug, Default)]
struct SpecRefs {
    ours: BTreeMap<String, Oid>,
    theirs: BTreeMap<String, Oid>,
}

/// How one spec's branch was integrated.
#[derive(Debug, Clone, Default)]
struct SpecMoves {
    fetched: bool,
    diverged: bool,
    archived: Vec<Oid>,
    foreign: bool,
    problems: Vec<String>,
}

/// What one run of `git` printed.
pub(super) struct GitOutput {
    pub(super) ok: bool,
    pub(super) timed_out: bool,
    pub(super) stdout: String,
    pub(super) stderr: String,
}

/// Above this many refs, a sync of every spec pushes by namespace (see `Store::push`).
const BULK_PUSH_AFTER: usize = 64;

/// The reflog message of a wip ref a sync took from the remote.
const ADOPTED_WIP: &str = "mmm: sync, wip ref of a run elsewhere";

const NOTES_MERGE_MESSAGE: &str = "Notes merged by 'git mmm sync'\n";

impl Store {
    /// Adds the fetch refspecs of mmm's refs to `remote.<remote>.fetch`, idempotently; never
    /// touches `remote.*.push`. Returns the refspecs it added.
    pub fn configure_remote(&self, remote: &str) -> Result<Vec<String>, SyncError> {
        self.require_remote(remote)?;
        let mut cfg = self
            .repo
            .config()
            .and_then(|c| c.open_level(git2::ConfigLevel::Local))
            .map_err(StoreError::git("open the repository's config"))?;
        let name = format!("remote.{remote}.fetch");
        let mut present = HashSet::new();
        if let Ok(mut entries) = cfg.multivar(&name, None) {
            while let Some(Ok(e)) = entries.next() {
                if let Ok(v) = e.value() {
                    present.insert(v.to_owned());
                }
            }
        }
        let mut added = Vec::new();
        for spec in fetch_refspecs(remote) {
            if !present.contains(&spec) {
                // A regex that matches nothing: set_multivar then appends a value.
                cfg.set_multivar(&name, "^$ mmm never matches", &spec)
                    .map_err(StoreError::git(format!("add {spec} to {name}")))?;
                added.push(spec);
            }
        }
        Ok(added)
    }

    /// The remote of the current branch's upstream (`branch.<name>.remote`), if any.
    pub fn upstream_remote(&self) -> Option<String> {
        let head = self.repo.head().ok()?;
        let name = head.name().ok()?.to_owned();
        let buf = self.repo.branch_upstream_remote(&name).ok()?;
        buf.as_str().ok().map(str::to_owned).filter(|s| s != ".")
    }

    fn require_remote(&self, remote: &str) -> Result<(), SyncError> {
        match self.repo.find_remote(remote) {
            Ok(_) => Ok(()),
            Err(e) if matches!(e.code(), ErrorCode::NotFound | ErrorCode::InvalidSpec) => {
                Err(SyncError::NoRemote {
                    remote: remote.to_owned(),
                })
            }
            Err(e) => Err(StoreError::git(format!("read the remote {remote}"))(e).into()),
        }
    }

    /// Fetches mmm's refs from the remote into tracking refs, integrates them with the local
    /// ones and pushes what is new in one atomic push with leases; again, a bounded number of
    /// times, while the remote moved meanwhile.
    pub fn sync(&self, opts: &SyncOptions) -> Result<SyncReport, SyncError> {
        self.require_remote(&opts.remote)?;
        let mut moves: BTreeMap<SpecId, SpecMoves> = BTreeMap::new();
        let mut pushed: BTreeSet<SpecId> = BTreeSet::new();
        for round in 1..=opts.attempts.max(1) {
            self.fetch(opts)?;
            let snapshot = self.snapshot(&opts.remote)?;
            let specs = match opts.specs.is_empty() {
                true => snapshot.keys().cloned().collect(),
                false => self.sync_specs(opts)?,
            };
            let mut push = Vec::new();
            for spec in &specs {
                // Every ref the same on both sides: nothing to integrate, nothing to push.
                if snapshot.get(spec).is_some_and(|r| r.ours == r.theirs) {
                    continue;
                }
                if let Some(problem) = self.foreign_branch(&opts.remote, spec)? {
                    let entry = moves.entry(spec.clone()).or_default();
                    entry.foreign = true;
                    if !entry.problems.contains(&problem) {
                        entry.problems.push(problem);
                    }
                    continue;
                }
                let m = self.integrate_spec(&opts.remote, spec)?;
                let entry = moves.entry(spec.clone()).or_default();
                entry.fetched |= m.fetched;
                entry.diverged |= m.diverged;
                entry.archived.extend(m.archived);
                for p in m.problems {
                    if !entry.problems.contains(&p) {
                        entry.problems.push(p);
                    }
                }
                let refs = self.refs_to_push(&opts.remote, spec)?;
                if !refs.is_empty() {
                    push.push((spec.clone(), refs));
                }
            }
            let refs: Vec<PushRef> = push.iter().flat_map(|(_, r)| r.iter().cloned()).collect();
            // A branch that is not mmm's must not ride along in a push by namespace.
            let bulk = !moves.values().any(|m| m.foreign);
            if refs.is_empty() || self.push(opts, &refs, bulk)? {
                pushed.extend(push.into_iter().map(|(s, _)| s));
                let specs = self.report_specs(&specs, &moves, &pushed)?;
                return Ok(SyncReport {
                    remote: opts.remote.clone(),
                    specs,
                    pushed_refs: refs.len(),
                    rounds: round,
                });
            }
            round_backoff(round);
        }
        Err(SyncError::KeptMoving {
            remote: opts.remote.clone(),
            rounds: opts.attempts.max(1),
        })
    }

    fn report_specs(
        &self,
        specs: &[SpecId],
        moves: &BTreeMap<SpecId, SpecMoves>,
        pushed: &BTreeSet<SpecId>,
    ) -> Result<Vec<SpecSync>> {
        let mut out = Vec::new();
        for spec in specs {
            let m = moves.get(spec).cloned().unwrap_or_default();
            let status = if m.foreign {
                SpecSyncStatus::Foreign
            } else if m.diverged {
                SpecSyncStatus::Diverged
            } else if pushed.contains(spec) {
                SpecSyncStatus::Pushed
            } else if m.fetched {
                SpecSyncStatus::FastForwarded
            } else {
                SpecSyncStatus::UpToDate
            };
            out.push(SpecSync {
                spec: spec.clone(),
                status,
                archived: m.archived,
                tip: self.ref_target(&branch_ref(spec))?,
                problems: m.problems,
            });
        }
        Ok(out)
    }

    /// Every spec's refs on both sides, read in one pass over the refs: ours (mmm's refs) and
    /// theirs (the tracking refs), each keyed by the name they share.
    fn snapshot(&self, remote: &str) -> Result<BTreeMap<SpecId, SpecRefs>> {
        let tracking = [
            format!("refs/remotes/{remote}/mmm/"),
            format!("refs/notes/remotes/{remote}/mmm/"),
            format!("refs/mmm-remotes/{remote}/"),
        ];
        let mine = ["refs/heads/mmm/", "refs/notes/mmm/", "refs/mmm/"];
        let mut out: BTreeMap<SpecId, SpecRefs> = BTreeMap::new();
        let refs = self
            .repo
            .references()
            .map_err(StoreError::git("list the refs"))?;
        for r in refs {
            let r = r.map_err(StoreError::git("list the refs"))?;
            let (Ok(name), Some(oid)) = (r.name(), r.target()) else {
                continue;
            };
            let side = |prefixes: &[&str]| {
                prefixes.iter().enumerate().find_map(|(i, p)| {
                    let rest = name.strip_prefix(p)?;
                    let (spec, tail) = rest.split_once('/').unwrap_or((rest, ""));
                    Some((i, spec.to_owned(), tail.to_owned()))
                })
            };
            let tracking: Vec<&str> = tracking.iter().map(String::as_str).collect();
            let (theirs, found) = match side(&tracking) {
                Some(f) => (true, f),
                None => match side(&mine) {
                    Some(f) => (false, f),
                    None => continue,
                },
            };
            let (kind, spec, tail) = found;
            // A lease lives on the remote only (`lease.rs`): never integrated, never pushed.
            if kind == 2 && tail == "lease" {
                continue;
            }
            let Ok(spec) = SpecId::new(&spec) else {
                continue;
            };
            let entry = out.entry(spec).or_default();
            let key = format!("{kind}/{tail}");
            if theirs {
                entry.theirs.insert(key, oid);
            } else {
                entry.ours.insert(key, oid);
            }
        }
        Ok(out)
    }

    /// The specs a sync looks at: those asked for, or every spec with a ref on either side.
    fn sync_specs(&self, opts: &SyncOptions) -> Result<Vec<SpecId>, SyncError> {
        if !opts.specs.is_empty() {
            let mut v = opts.specs.clone();
            v.sort();
            v.dedup();
            return Ok(v);
        }
        let r = &opts.remote;
        let mut found = BTreeSet::new();
        for prefix in [
            "refs/heads/mmm/".to_owned(),
            "refs/notes/mmm/".to_owned(),
            "refs/mmm/".to_owned(),
            format!("refs/remotes/{r}/mmm/"),
            format!("refs/notes/remotes/{r}/mmm/"),
            format!("refs/mmm-remotes/{r}/"),
        ] {
            for name in self.ref_names(&prefix)? {
                let first = name[prefix.len()..].split('/').next().unwrap_or("");
                if let Ok(id) = SpecId::new(first) {
                    found.insert(id);
                }
            }
        }
        Ok(found.into_iter().collect())
    }

    /// The names of the refs under `prefix` (which ends in `/`).
    pub(super) fn ref_names(&self, prefix: &str) -> Result<Vec<String>> {
        let glob = format!("{prefix}*");
        let refs = self
            .repo
            .references_glob(&glob)
            .map_err(StoreError::git(format!("list {glob}")))?;
        let mut out = Vec::new();
        for r in refs {
            let r = r.map_err(StoreError::git(format!("list {glob}")))?;
            if let Ok(n) = r.name() {
                out.push(n.to_owned());
            }
        }
        Ok(out)
    }

    /// Runs `git` in the repository with a time limit, never prompting.
    pub(super) fn run_git(&self, args: &[&str], timeout: Duration) -> Result<GitOutput, SyncError> {
        // git reads a relative remote path from where it runs: the top of the work tree, as a
        // user's own `git fetch` there would.
        let dir = self.repo.workdir().unwrap_or_else(|| self.repo.path());
        let git_dir = format!("--git-dir={}", self.repo.path().display());
        let mut argv: Vec<&OsStr> = vec![OsStr::new(&git_dir)];
        argv.extend(args.iter().map(OsStr::new));
        let env = [
            ("GIT_TERMINAL_PROMPT".to_owned(), "0".to_owned()),
            // ssh must not ask either.
            ("GIT_SSH_VARIANT".to_owned(), "ssh".to_owned()),
            ("SSH_ASKPASS_REQUIRE".to_owned(), "never".to_owned()),
        ];
        let mut group = Group::spawn(&Spawn {
            program: OsStr::new("git"),
            args: &argv,
            dir,
            stdin: None,
            env: &env,
            env_remove: &[],
        })
        .map_err(SyncError::Spawn)?;
        const LIMIT: usize = 256 << 20;
        let stdout = group.stdout.take().map(|s| spawn_reader(s, LIMIT));
        let stderr = group.stderr.take().map(|s| spawn_reader(s, LIMIT));
        let timed_out = !group.wait_timeout(timeout);
        let status = group.end().map_err(SyncError::Spawn)?;
        Ok(GitOutput {
            ok: !timed_out && status.success(),
            timed_out,
            stdout: stdout.map(join_reader).unwrap_or_default(),
            stderr: stderr.map(join_reader).unwrap_or_default(),
        })
    }

    /// Fetches mmm's refs into the remote's tracking refs.
    fn fetch(&self, opts: &SyncOptions) -> Result<(), SyncError> {
        let specs = fetch_refspecs(&opts.remote);
        let mut args = vec![
            "fetch",
            "--no-tags",
            "--no-write-fetch-head",
            "--prune",
            "--quiet",
            "--no-auto-gc",
            "--no-recurse-submodules",
            opts.remote.as_str(),
        ];
        args.extend(specs.iter().map(String::as_str));
        let out = self.run_git(&args, opts.timeout)?;
        if out.ok {
            return Ok(());
        }
        Err(classify(&opts.remote, "fetch", &out, opts.timeout))
    }

    /// Pushes `refs` atomically with a lease each (by namespace when `bulk` allows it and
    /// there are many). `Ok(false)`: the remote moved since the fetch (fetch, integrate and
    /// push again).
    fn push(&self, opts: &SyncOptions, refs: &[PushRef], bulk: bool) -> Result<bool, SyncError> {
        self.flush()?;
        let mut args: Vec<String> = [
            "push",
            "--atomic",
            "--porcelain",
            "--no-verify",
            "--quiet",
            opts.remote.as_str(),
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        // git matches every explicit refspec against every ref, so thousands of them take
        // seconds: a whole sync with many refs pushes the three namespaces instead (after
        // integration no local ref there is behind the remote's), non-forced, with a lease on
        // each ref that is not a fast-forward (a rollback). Non-forced refspecs already refuse
        // to overwrite what we have not seen.
        let bulk = bulk && opts.specs.is_empty() && refs.len() > BULK_PUSH_AFTER;
        for r in refs {
            let forced = match r.expected {
                Some(e) => !self.reaches(r.new, e)?,
                None => false,
            };
            if !bulk || forced {
                let expected = r.expected.map(|o| o.to_string()).unwrap_or_default();
                args.push(format!("--force-with-lease={}:{expected}", r.name));
            }
        }
        if bulk {
            args.extend(
                ["refs/heads/mmm/*", "refs/notes/mmm/*", "refs/mmm/*"].map(|g| format!("{g}:{g}")),
            );
        } else {
            args.extend(refs.iter().map(|r| format!("{}:{}", r.name, r.name)));
        }
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = self.run_git(&argv, opts.timeout)?;
        if out.ok {
            self.note_pushed(&opts.remote, refs)?;
            return Ok(true);
        }
        let rejected = porcelain_rejections(&out.stdout);
        if !rejected.is_empty() && rejected.iter().all(|(_, why)| retriable_rejection(why)) {
            return Ok(false);
        }
        if let Some((_, why)) = rejected.iter().find(|(_, why)| !retriable_rejection(why)) {
            let refs: Vec<&str> = rejected
                .iter()
                .filter(|(_, w)| !retriable_rejection(w))
                .map(|(r, _)| r.as_str())
                .collect();
            return Err(SyncError::Rejected {
                remote: opts.remote.clone(),
                refs: refs.join(", "),
                detail: format!("{why}{}", remote_lines(&out.stderr)),
            });
        }
        Err(classify(&opts.remote, "push", &out, opts.timeout))
    }

    /// After a push: the tracking refs now hold what we pushed (as the next fetch would write).
    /// Tracking refs mirror the remote and are not mmm's refs: like `git fetch`, this forces
    /// them and does not sync them to the disk (a lost update only costs a fetch).
    fn note_pushed(&self, remote: &str, refs: &[PushRef]) -> Result<()> {
        for r in refs {
            if let Some(t) = tracking_ref(remote, &r.name)
                && self.ref_target(&t)? != Some(r.new)
            {
                self.repo
                    .reference(&t, r.new, true, "mmm: pushed")
                    .map_err(StoreError::git(format!("update {t}")))?;
            }
        }
        Ok(())
    }

    /// The refs of `spec` whose local value the remote does not have yet.
    fn refs_to_push(&self, remote: &str, spec: &SpecId) -> Result<Vec<PushRef>> {
        let mut names = vec![
            archive_ref(spec),
            branch_ref(spec),
            transcripts_ref(spec),
            metrics_ref(spec),
        ];
        names.extend(self.ref_names(&format!("refs/mmm/{spec}/wip/"))?);
        let mut out = Vec::new();
        for name in names {
            let Some(local) = self.ref_target(&name)? else {
                continue;
            };
            let tracking = tracking_ref(remote, &name).expect("mmm's refs have tracking refs");
            let expected = self.ref_target(&tracking)?;
            if expected != Some(local) {
                out.push(PushRef {
                    name,
                    new: local,
                    expected,
                });
            }
        }
        Ok(out)
    }

    /// Why the spec's branch on either side is not mmm's (its tip is no iteration of the
    /// spec: a branch of someone else's under `refs/heads/mmm/`), if it is not.
    fn foreign_branch(&self, remote: &str, spec: &SpecId) -> Result<Option<String>> {
        let name = branch_ref(spec);
        let tracking = tracking_ref(remote, &name).expect("the branch is tracked");
        for (side, r) in [("the remote's", &tracking), ("the local", &name)] {
            let Some(tip) = self.ref_target(r)? else {
                continue;
            };
            let c = self
                .repo
                .find_commit(tip)
                .map_err(StoreError::git(format!("read {r}")))?;
            if self.iteration_of(spec, &c).is_none() {
                return Ok(Some(format!(
                    "{side} {name} is not mmm's (its tip {} has no Mmm-Spec: {spec} trailer); \
                     left alone, not integrated or pushed: rename that branch, or remove it",
                    &tip.to_string()[..12]
                )));
            }
        }
        Ok(None)
    }

    /// The notes `new` brings that `local` did not have and that are not JSON Lines (each line
    /// a JSON object), one problem each: they are taken as they are, never rewritten.
    fn malformed_notes(&self, name: &str, local: Option<Oid>, new: Oid) -> Result<Vec<String>> {
        let what = "read the notes fetched";
        let entries = |c: Option<Oid>| -> Result<BTreeMap<String, (Oid, i32)>> {
            let mut out = BTreeMap::new();
            if let Some(c) = c {
                let tree = self
                    .repo
                    .find_commit(c)
                    .and_then(|c| c.tree())
                    .map_err(StoreError::git(what))?;
                note_entries(&self.repo, &tree, "", &mut out).map_err(StoreError::git(what))?;
            }
            Ok(out)
        };
        let (before, after) = (entries(local)?, entries(Some(new))?);
        let mut out = Vec::new();
        for (key, (blob, _)) in &after {
            if before.get(key).is_some_and(|(b, _)| b == blob) {
                continue;
            }
            let b = self.repo.find_blob(*blob).map_err(StoreError::git(what))?;
            let bad = match std::str::from_utf8(b.content()) {
                Err(_) => Some("not UTF-8".to_owned()),
                Ok(text) => text
                    .split('\n')
                    .enumerate()
                    .filter(|(_, l)| !l.trim().is_empty())
                    .find(|(_, l)| {
                        !serde_json::from_str::<serde_json::Value>(l).is_ok_and(|v| v.is_object())
                    })
                    .map(|(i, _)| format!("line {} is not a JSON object", i + 1)),
            };
            if let Some(why) = bad {
                let short = key.get(..12).unwrap_or(key);
                out.push(format!(
                    "the note on {short} in {name} is malformed ({why}); left as it is"
                ));
            }
        }
        Ok(out)
    }

    /// Integrates one spec's tracking refs into its local refs.
    fn integrate_spec(&self, remote: &str, spec: &SpecId) -> Result<SpecMoves> {
        let mut moves = SpecMoves::default();
        let (ours_only, theirs_only) = self.integrate_archive(remote, spec, &mut moves)?;
        self.integrate_branch(remote, spec, &ours_only, &theirs_only, &mut moves)?;
        for notes in [transcripts_ref(spec), metrics_ref(spec)] {
            self.integrate_notes(remote, &notes, &mut moves)?;
        }
        self.integrate_wips(remote, spec, &mut moves)?;
        Ok(moves)
    }

    /// Merges the archives. Returns the archived tips only ours has, and only theirs has.
    fn integrate_archive(
        &self,
        remote: &str,
        spec: &SpecId,
        moves: &mut SpecMoves,
    ) -> Result<(Vec<Oid>, Vec<Oid>)> {
        let name = archive_ref(spec);
        let tracking = tracking_ref(remote, &name).expect("the archive is tracked");
        for attempt in 0..super::refs::MAX_ATTEMPTS {
            let (local, theirs) = (self.ref_target(&name)?, self.ref_target(&tracking)?);
            if local == theirs {
                return Ok((Vec::new(), Vec::new()));
            }
            let tips = |a: Option<Oid>| match a {
                Some(a) => self.archived_tips(a),
                None => Ok(BTreeSet::new()),
            };
            let (ours_tips, their_tips) = (tips(local)?, tips(theirs)?);
            let only = |a: &BTreeSet<Oid>, b: &BTreeSet<Oid>| a.difference(b).copied().collect();
            let sides = (only(&ours_tips, &their_tips), only(&their_tips, &ours_tips));
            let Some(theirs) = theirs else {
                return Ok(sides);
            };
            let new = match local {
                None => theirs,
                Some(l) if self.reaches(theirs, l)? => theirs,
                Some(l) if self.reaches(l, theirs)? => return Ok(sides),
                Some(l) => self.archive_merge(spec, l, theirs)?,
            };
            if self.cas_ref(&name, local, new, "mmm: sync archive")? {
                moves.fetched = true;
                return Ok(sides);
            }
            super::refs::backoff(attempt);
        }
        Err(StoreError::Contention {
            what: name,
            attempts: super::refs::MAX_ATTEMPTS,
        })
    }

    /// A merge of two archives: the empty tree, parents `[ours, theirs]`.
    fn archive_merge(&self, spec: &SpecId, ours: Oid, theirs: Oid) -> Result<Oid> {
        let what = "write the archive merge";
        let tree = self
            .repo
            .treebuilder(None)
            .and_then(|b| b.write())
            .and_then(|t| self.repo.find_tree(t))
            .map_err(StoreError::git(what))?;
        let a = self.repo.find_commit(ours).map_err(StoreError::git(what))?;
        let b = self
            .repo
            .find_commit(theirs)
            .map_err(StoreError::git(what))?;
        let msg = trailers::message(
            &format!("mmm({spec}): archive merged from the remote"),
            "",
            &[
                (key::SPEC, spec.to_string()),
                (key::ARCHIVE, ARCHIVE_MERGE.to_owned()),
            ],
        );
        let sig = self.signature()?;
        self.repo
            .commit(None, &sig, &sig, &msg, &tree, &[&a, &b])
            .map_err(StoreError::git(what))
    }

    /// The commits an archive keeps: the second parent of each entry (or the only parent of
    /// the first), through merges of archives.
    fn archived_tips(&self, archive: Oid) -> Result<BTreeSet<Oid>> {
        let mut tips = BTreeSet::new();
        let mut seen = HashSet::new();
        let mut todo = vec![archive];
        while let Some(oid) = todo.pop() {
            if !seen.insert(oid) {
                continue;
            }
            let c = self
                .repo
                .find_commit(oid)
                .map_err(StoreError::git("read the archive"))?;
            let t = Trailers::parse(&String::from_utf8_lossy(c.message_bytes()));
            let parents: Vec<Oid> = c.parent_ids().collect();
            if t.get(key::ARCHIVE) == Some(ARCHIVE_MERGE) {
                todo.extend(parents);
            } else if let [target] = parents[..] {
                tips.insert(target);
            } else if let [prev, target, ..] = parents[..] {
                tips.insert(target);
                todo.push(prev);
            }
        }
        Ok(tips)
    }

    /// True when `a` is `b` or descends from it.
    fn reaches(&self, a: Oid, b: Oid) -> Result<bool> {
        Ok(a == b
            || self
                .repo
                .graph_descendant_of(a, b)
                .map_err(StoreError::git("compare two commits"))?)
    }

    /// Integrates the branch: behind → fast-forward, ahead → stays (pushed), diverged → the
    /// remote wins and our tip is archived; a side that rolled back wins.
    fn integrate_branch(
        &self,
        remote: &str,
        spec: &SpecId,
        ours_only: &[Oid],
        theirs_only: &[Oid],
        moves: &mut SpecMoves,
    ) -> Result<()> {
        let name = branch_ref(spec);
        let tracking = tracking_ref(remote, &name).expect("the branch is tracked");
        let Some(theirs) = self.ref_target(&tracking)? else {
            return Ok(());
        };
        let Some(local) = self.ref_target(&name)? else {
            if self.cas_ref(&name, None, theirs, "mmm: sync from the remote")? {
                moves.fetched = true;
            }
            return Ok(());
        };
        if local == theirs {
            return Ok(());
        }
        // A rolled-back tip still on the other side's branch: that side's rollback wins.
        let mut we_rolled_back = false;
        for &x in ours_only {
            we_rolled_back |= self.reaches(theirs, x)? && !self.reaches(local, x)?;
        }
        let mut they_rolled_back = false;
        for &x in theirs_only {
            they_rolled_back |= self.reaches(local, x)? && !self.reaches(theirs, x)?;
        }
        if we_rolled_back && !they_rolled_back {
            // Ours is pushed with a lease on theirs; theirs is kept.
            self.keep_in_archive(spec, theirs, remote)?;
            return Ok(());
        }
        if !they_rolled_back {
            if self.reaches(local, theirs)? {
                return Ok(());
            }
            if self.reaches(theirs, local)? {
                if self.cas_ref(&name, Some(local), theirs, "mmm: sync fast-forward")? {
                    moves.fetched = true;
                }
                return Ok(());
            }
        }
        // Diverged (or the remote rolled back): the remote wins, our tip is kept.
        self.keep_in_archive(spec, local, remote)?;
        if self.cas_ref(&name, Some(local), theirs, "mmm: sync, the remote won")? {
            moves.fetched = true;
            moves.diverged = true;
            moves.archived.push(local);
        }
        Ok(())
    }

    /// Archives `commit` unless the archive already keeps it.
    fn keep_in_archive(&self, spec: &SpecId, commit: Oid, remote: &str) -> Result<()> {
        if let Some(a) = self.ref_target(&archive_ref(spec))?
            && self.archived_tips(a)?.contains(&commit)
        {
            return Ok(());
        }
        self.archive(
            spec,
            commit,
            ArchiveKind::Superseded,
            &[("Mmm-Remote", remote.to_owned())],
        )?;
        Ok(())
    }

    /// Integrates a notes ref: fast-forward, or a merge commit with both tips as parents.
    fn integrate_notes(&self, remote: &str, name: &str, moves: &mut SpecMoves) -> Result<()> {
        let tracking = tracking_ref(remote, name).expect("notes are tracked");
        for attempt in 0..super::refs::MAX_ATTEMPTS {
            let Some(theirs) = self.ref_target(&tracking)? else {
                return Ok(());
            };
            let local = self.ref_target(name)?;
            let new = match local {
                None => theirs,
                Some(l) if l == theirs => return Ok(()),
                Some(l) if self.reaches(l, theirs)? => return Ok(()),
                Some(l) if self.reaches(theirs, l)? => theirs,
                Some(l) => self.merge_notes(l, theirs)?,
            };
            if self.cas_ref(name, local, new, "mmm: sync notes")? {
                moves.fetched = true;
                moves
                    .problems
                    .extend(self.malformed_notes(name, local, new)?);
                return Ok(());
            }
            super::refs::backoff(attempt);
        }
        Err(StoreError::Contention {
            what: name.to_owned(),
            attempts: super::refs::MAX_ATTEMPTS,
        })
    }

    /// The notes commit merging two notes tips (parents `[ours, theirs]`), on logical keys:
    /// each annotated object's note is the side that changed since the merge base, or, when
    /// both did, the union of their records ([`merge_note_text`]). The tree is flat.
    pub(super) fn merge_notes(&self, ours: Oid, theirs: Oid) -> Result<Oid> {
        let what = "merge two notes refs";
        let base = match self.repo.merge_base(ours, theirs) {
            Ok(b) => Some(b),
            Err(e) if e.code() == ErrorCode::NotFound => None,
            Err(e) => return Err(StoreError::git(what)(e)),
        };
        let map = |c: Option<Oid>| -> Result<BTreeMap<String, (Oid, i32)>> {
            match c {
                None => Ok(BTreeMap::new()),
                Some(c) => {
                    let tree = self
                        .repo
                        .find_commit(c)
                        .and_then(|c| c.tree())
                        .map_err(StoreError::git(what))?;
                    let mut out = BTreeMap::new();
                    note_entries(&self.repo, &tree, "", &mut out).map_err(StoreError::git(what))?;
                    Ok(out)
                }
            }
        };
        let (b, l, r) = (map(base)?, map(Some(ours))?, map(Some(theirs))?);
        let keys: BTreeSet<&String> = l.keys().chain(r.keys()).collect();
        let mut tb = self.repo.treebuilder(None).map_err(StoreError::git(what))?;
        for k in keys {
            let (lv, rv, bv) = (l.get(k), r.get(k), b.get(k));
            let entry = match (lv, rv) {
                (Some(x), Some(y)) if x == y => *x,
                (Some(x), Some(_)) if rv == bv => *x,
                (Some(_), Some(y)) if lv == bv => *y,
                (Some(x), Some(y)) => {
                    let text = merge_note_text(&self.blob_text(x.0)?, &self.blob_text(y.0)?);
                    let blob = self
                        .repo
                        .blob(text.as_bytes())
                        .map_err(StoreError::git(what))?;
                    (blob, 0o100644)
                }
                (Some(x), None) | (None, Some(x)) => *x,
                (None, None) => continue,
            };
            tb.insert(k, entry.0, entry.1)
                .map_err(StoreError::git(what))?;
        }
        let tree = tb.write().map_err(StoreError::git(what))?;
        let tree = self.repo.find_tree(tree).map_err(StoreError::git(what))?;
        let a = self.repo.find_commit(ours).map_err(StoreError::git(what))?;
        let b = self
            .repo
            .find_commit(theirs)
            .map_err(StoreError::git(what))?;
        let sig = self.signature()?;
        self.repo
            .commit(None, &sig, &sig, NOTES_MERGE_MESSAGE, &tree, &[&a, &b])
            .map_err(StoreError::git(what))
    }

    fn blob_text(&self, oid: Oid) -> Result<String> {
        let blob = self
            .repo
            .find_blob(oid)
            .map_err(StoreError::git("read a note"))?;
        Ok(String::from_utf8_lossy(blob.content()).into_owned())
    }

    /// Integrates a spec's wip refs: the remote's is adopted unless ours descends from it (a
    /// run here is its writer); a local one the remote replaced is archived first.
    fn integrate_wips(&self, remote: &str, spec: &SpecId, moves: &mut SpecMoves) -> Result<()> {
        // A wip ref we took from the remote that the remote no longer has: its run finished
        // (or was archived) there; pushing it back would bring it back to life.
        for name in self.ref_names(&format!("refs/mmm/{spec}/wip/"))? {
            let tracking = tracking_ref(remote, &name).expect("wip refs are tracked");
            if self.ref_target(&tracking)?.is_none() && self.adopted(&name) {
                self.delete_ref(&name)?;
            }
        }
        let prefix = format!("refs/mmm-remotes/{remote}/{spec}/wip/");
        for tracking in self.ref_names(&prefix)? {
            let run = &tracking[prefix.len()..];
            let name = super::wip_ref(spec, run);
            let Some(theirs) = self.ref_target(&tracking)? else {
                continue;
            };
            let local = self.ref_target(&name)?;
            match local {
                Some(l) if self.reaches(l, theirs)? => continue,
                Some(l) => {
                    self.archive(spec, l, ArchiveKind::Wip, &[(key::RUN, run.to_owned())])?;
                }
                None => {}
            }
            if self.cas_ref(&name, local, theirs, ADOPTED_WIP)? {
                moves.fetched = true;
            }
        }
        Ok(())
    }
}

/// `git mmm run --push`: pushes after each write, best effort (a failure is logged; the sync
/// at the end of the run reports it, and the next sync finishes the job).
impl Store {
    /// Where each recorded iteration and checkpoint is pushed (`None`: nowhere). Stores
    /// reopened from this one (the checkpoint thread's) push there too.
    pub fn set_push(&mut self, push: Option<SyncOptions>) {
        self.opts.push = push;
    }

    /// After an iteration was recorded: fetch, integrate and push its spec. False when the
    /// remote's iterations won and `commit` left the branch (it is kept in the archive).
    pub(super) fn push_recorded(&self, spec: &SpecId, commit: Oid) -> Result<bool> {
        let Some(opts) = &self.opts.push else {
            return Ok(true);
        };
        let mut opts = opts.clone();
        opts.specs = vec![spec.clone()];
        if let Err(e) = self.sync(&opts) {
            tracing::warn!(spec = %spec, error = %e, "push after the iteration failed");
            return Ok(true);
        }
        match self.ref_target(&branch_ref(spec))? {
            Some(tip) => self.reaches(tip, commit),
            None => Ok(true),
        }
    }

    /// After a checkpoint: push the run's wip ref (its only writer is this run).
    pub(super) fn push_wip(&self, name: &str) {
        let Some(opts) = &self.opts.push else {
            return;
        };
        let Some(tracking) = tracking_ref(&opts.remote, name) else {
            return;
        };
        let (Ok(Some(new)), Ok(expected)) = (self.ref_target(name), self.ref_target(&tracking))
        else {
            return;
        };
        let push = PushRef {
            name: name.to_owned(),
            new,
            expected,
        };
        match self.push(opts, &[push], false) {
            Ok(true) => {}
            Ok(false) => tracing::warn!(wip = name, "the remote's wip ref moved; not pushed"),
            Err(e) => tracing::warn!(wip = name, error = %e, "push of the checkpoint failed"),
        }
    }

    /// When a run finishes: delete its wip ref on the remote too (with a lease on the value
    /// pushed last), so that other clones do not adopt it.
    pub(super) fn push_wip_deleted(&self, name: &str) {
        let Some(opts) = &self.opts.push else {
            return;
        };
        let Some(tracking) = tracking_ref(&opts.remote, name) else {
            return;
        };
        let Ok(Some(old)) = self.ref_target(&tracking) else {
            return;
        };
        let lease = format!("--force-with-lease={name}:{old}");
        let delete = format!(":{name}");
        let args = [
            "push",
            "--atomic",
            "--porcelain",
            "--no-verify",
            "--quiet",
            opts.remote.as_str(),
            lease.as_str(),
            delete.as_str(),
        ];
        match self.run_git(&args, opts.timeout) {
            Ok(out) if out.ok => {
                let _ = self.delete_ref(&tracking);
            }
            Ok(out) => {
                tracing::warn!(wip = name, stderr = %out.stderr, "wip ref not deleted on the remote")
            }
            Err(e) => tracing::warn!(wip = name, error = %e, "wip ref not deleted on the remote"),
        }
    }
}

impl Store {
    /// True when a ref's reflog starts with a sync adopting it from a remote (its writer is
    /// a run elsewhere).
    fn adopted(&self, name: &str) -> bool {
        let Ok(log) = self.repo.reflog(name) else {
            return false;
        };
        // Entries are newest first; the last one created the ref.
        let first = log.len().checked_sub(1).and_then(|i| log.get(i));
        first.is_some_and(|e| matches!(e.message(), Ok(Some(m)) if m == ADOPTED_WIP))
    }
}

/// The entries of a notes tree by logical key (the annotated object's hex id), following
/// the fanout directories git makes (`ab/cdef…`).
fn note_entries(
    repo: &git2::Repository,
    tree: &git2::Tree<'_>,
    prefix: &str,
    out: &mut BTreeMap<String, (Oid, i32)>,
) -> std::result::Result<(), git2::Error> {
    for e in tree.iter() {
        let name = e.name().unwrap_or_default();
        let fanout = e.kind() == Some(git2::ObjectType::Tree)
            && name.len() == 2
            && name.bytes().all(|b| b.is_ascii_hexdigit());
        if fanout {
            let sub = repo.find_tree(e.id())?;
            note_entries(repo, &sub, &format!("{prefix}{name}"), out)?;
        } else {
            out.insert(format!("{prefix}{name}"), (e.id(), e.filemode()));
        }
    }
    Ok(())
}

/// Two notes' records merged: every line of both, sorted (bytewise) and unique, then a
/// record whose `id` an earlier line has is dropped. On notes whose records each have one
/// line per id this is exactly `git notes merge -s cat_sort_uniq`.
pub fn merge_note_text(ours: &str, theirs: &str) -> String {
    let mut lines: Vec<&str> = ours
        .split('\n')
        .chain(theirs.split('\n'))
        .filter(|l| !l.is_empty())
        .collect();
    lines.sort_unstable();
    lines.dedup();
    let mut ids = HashSet::new();
    let mut out = String::new();
    for line in lines {
        let id = serde_json::from_str::<serde_json::Value>(line)
            .ok()
            .and_then(|v| v.get("id")?.as_str().map(str::to_owned));
        if id.is_none_or(|id| ids.insert(id)) {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Sleeps before another fetch-integrate-push round: a random 0.5–1.5 times 100 ms, 200 ms,
/// 400 ms… (at most 1.6 s), so that writers racing for the same refs fall out of step.
fn round_backoff(round: u32) {
    use std::hash::{BuildHasher, Hasher};
    let base_ms = 100u64 << round.saturating_sub(1).min(4);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(round);
    let ms = base_ms / 2 + h.finish() % (base_ms + 1);
    std::thread::sleep(Duration::from_millis(ms));
}

/// The refused refs of `git push --porcelain` output: `(ref, reason)`.
pub(super) fn porcelain_rejections(stdout: &str) -> Vec<(String, String)> {
    stdout
        .lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, '\t');
            let (flag, refs, why) = (parts.next()?, parts.next()?, parts.next()?);
            (flag == "!").then(|| {
                let to = refs.rsplit(':').next().unwrap_or(refs);
                (to.to_owned(), why.to_owned())
            })
        })
        .collect()
}

/// A rejection that a fetch and a new push can fix: the remote moved since we looked (also
/// between the server's lease check and its ref transaction, when another push won the lock).
pub(super) fn retriable_rejection(why: &str) -> bool {
    [
        "(stale info)",
        "(fetch first)",
        "(non-fast-forward)",
        "(atomic push failed)",
        "(atomic transaction failed)",
        "(failed to lock)",
        "(failed to update ref)",
    ]
    .iter()
    .any(|w| why.contains(w))
}

/// The server's own words (`remote: …` lines), if any, after a separator.
fn remote_lines(stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("remote: "))
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if lines.is_empty() {
        String::new()
    } else {
        format!("; the remote said: {}", lines.join(" / "))
    }
}

/// The error for a failed `git fetch` or `git push`, from what git printed.
pub(super) fn classify(
    remote: &str,
    step: &'static str,
    out: &GitOutput,
    timeout: Duration,
) -> SyncError {
    let remote = remote.to_owned();
    if out.timed_out {
        return SyncError::Network {
            remote,
            step,
            detail: format!("no answer within {}s", timeout.as_secs()),
        };
    }
    let detail = crate::process::trim_lines(out.stderr.trim(), 6)
        .replace('\n', " / ")
        .trim()
        .to_owned();
    let lower = out.stderr.to_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| lower.contains(w));
    if has(&[
        "authentication failed",
        "permission denied",
        "could not read username",
        "could not read password",
        "terminal prompts disabled",
        "403",
        "401",
        "invalid credentials",
    ]) {
        SyncError::Auth { remote, detail }
    } else if has(&[
        "does not appear to be a git repository",
        "repository not found",
        "not found",
        "no such file or directory",
    ]) {
        SyncError::RemoteMissing { remote, detail }
    } else if has(&[
        "could not resolve",
        "connection refused",
        "timed out",
        "network is unreachable",
        "unable to access",
        "connection reset",
        "could not read from remote repository",
        "the remote end hung up",
    ]) {
        SyncError::Network {
            remote,
            step,
            detail,
        }
    } else {
        SyncError::Git {
            step,
            detail: if detail.is_empty() {
                "no message".to_owned()
            } else {
                detail
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn note_text_merge_sorts_unions_and_dedupes_by_id() {
        let ours = "{\"id\":\"b\",\"x\":1}\n{\"id\":\"a\"}\n";
        let theirs = "{\"id\":\"c\"}\n{\"id\":\"a\"}\n\nplain\n";
        assert_eq!(
            merge_note_text(ours, theirs),
            "plain\n{\"id\":\"a\"}\n{\"id\":\"b\",\"x\":1}\n{\"id\":\"c\"}\n"
        );
        // The same id written twice differently: the first line in sorted order stays.
        assert_eq!(
            merge_note_text("{\"id\":\"a\",\"v\":2}\n", "{\"id\":\"a\",\"v\":1}\n"),
            "{\"id\":\"a\",\"v\":1}\n"
        );
    }

    #[test]
    fn tracking_refs_live_outside_the_pushed_namespaces() {
        assert_eq!(
            tracking_ref("o", "refs/heads/mmm/a").as_deref(),
            Some("refs/remotes/o/mmm/a")
        );
        assert_eq!(
            tracking_ref("o", "refs/notes/mmm/a/metrics").as_deref(),
            Some("refs/notes/remotes/o/mmm/a/metrics")
        );
        assert_eq!(
            tracking_ref("o", "refs/mmm/a/wip/r1").as_deref(),
            Some("refs/mmm-remotes/o/a/wip/r1")
        );
        assert_eq!(tracking_ref("o", "refs/heads/main"), None);
    }

    #[test]
    fn push_rejections_are_read_from_porcelain_output() {
        let out = "To ../r.git\n!\trefs/heads/mmm/a:refs/heads/mmm/a\t[rejected] (stale info)\n!\trefs/mmm/a/archive:refs/mmm/a/archive\t[rejected] (atomic push failed)\nDone\n";
        let r = porcelain_rejections(out);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].0, "refs/heads/mmm/a");
        assert!(r.iter().all(|(_, w)| retriable_rejection(w)));
        assert!(!retriable_rejection(
            "[remote rejected] (pre-receive hook declined)"
        ));
    }

    #[test]
    fn failures_are_told_apart() {
        let out = |stderr: &str| GitOutput {
            ok: false,
            timed_out: false,
            stdout: String::new(),
            stderr: stderr.to_owned(),
        };
        let t = Duration::from_secs(1);
        assert!(matches!(
            classify(
                "o",
                "fetch",
                &out(
                    "fatal: '/x' does not appear to be a git repository\nfatal: Could not read from remote repository."
                ),
                t
            ),
            SyncError::RemoteMissing { .. }
        ));
        assert!(matches!(
            classify(
                "o",
                "fetch",
                &out("fatal: could not read Username for 'https://h': terminal prompts disabled"),
                t
            ),
            SyncError::Auth { .. }
        ));
        assert!(matches!(
            classify(
                "o",
                "push",
                &out("fatal: unable to access 'https://h/': Could not resolve host: h"),
                t
            ),
            SyncError::Network { .. }
        ));
        let mut slow = out("");
        slow.timed_out = true;
        assert!(matches!(
            classify("o", "push", &slow, t),
            SyncError::Network { .. }
        ));
    }
}
