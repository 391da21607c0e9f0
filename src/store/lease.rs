//! Leases: the optional single-writer lock of a spec, held on the remote.
//!
//! Owns: `refs/mmm/<spec>/lease` on the remote, a parentless commit holding `lease.json`
//! (holder, host, pid, run id, taken, expires), taken with `git push --force-with-lease`
//! (must not exist, or must still be the expired value read), renewed by a thread while the
//! run lasts and deleted at its end ([`LeaseKeeper`]). A lease never has a local ref: only its
//! tracking ref `refs/mmm-remotes/<remote>/<spec>/lease` (written by fetch, and by this module
//! after a push), so no sync ever pushes one. `reference/git-state.md`, "Optional
//! single-writer lease".

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use git2::Oid;
use serde::{Deserialize, Serialize};

use super::sync::{SyncError, SyncOptions, classify, porcelain_rejections, retriable_rejection};
use super::trailers::{self, key};
use super::{Result, Store, StoreError};
use crate::spec::SpecId;

/// The name of a spec's lease ref (on the remote).
pub fn lease_ref(spec: &SpecId) -> String {
    format!("refs/mmm/{spec}/lease")
}

/// Who takes a lease: the same for every spec of one `git mmm run`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseHolder {
    /// A person or machine account (the git identity, say).
    pub holder: String,
    /// The host the run is on.
    pub host: String,
    /// The run's process id.
    pub pid: u32,
    /// An id of this run.
    pub run: String,
}

/// What `lease.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseFile {
    /// Format version (1).
    pub v: u32,
    /// Who holds it.
    pub holder: String,
    /// The host its runner is on.
    pub host: String,
    /// Its runner's process id.
    pub pid: u32,
    /// Its runner's run id.
    pub run: String,
    /// When it was first taken (RFC 3339).
    pub taken: String,
    /// When it expires unless renewed (RFC 3339).
    pub expires: String,
}

/// A lease found on the remote (as of the last fetch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lease {
    /// The spec leased.
    pub spec: SpecId,
    /// What its `lease.json` says (`None`: unreadable, counted as expired).
    #[serde(flatten)]
    pub file: Option<LeaseFile>,
    /// True when it expired: its holder died or stopped renewing it; anyone may take it over.
    pub expired: bool,
    /// The lease commit.
    #[serde(skip)]
    pub commit: Oid,
}

impl std::fmt::Display for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.file {
            Some(l) => write!(
                f,
                "leased by {} on {} (pid {}, run {}) until {}",
                l.holder, l.host, l.pid, l.run, l.expires
            ),
            None => write!(f, "leased (unreadable lease {})", self.commit),
        }
    }
}

/// The outcome of trying to take a spec's lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Take {
    /// Ours now: the lease commit pushed.
    Taken(Oid),
    /// A live runner elsewhere holds it.
    Held(Lease),
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

impl Store {
    /// The leases on `remote` as of the last fetch (tracking refs), by spec.
    pub fn leases(&self, remote: &str) -> Result<Vec<Lease>> {
        let prefix = format!("refs/mmm-remotes/{remote}/");
        let glob = format!("{prefix}*/lease");
        let refs = self
            .repo
            .references_glob(&glob)
            .map_err(StoreError::git(format!("list {glob}")))?;
        let names: Vec<String> = refs
            .filter_map(|r| r.ok().and_then(|r| r.name().ok().map(str::to_owned)))
            .collect();
        let now = self.opts.clock.now();
        let mut out = Vec::new();
        for name in names {
            let Some(spec) = name[prefix.len()..].strip_suffix("/lease") else {
                continue;
            };
            let (Ok(spec), Some(commit)) = (SpecId::new(spec), self.ref_target(&name)?) else {
                continue;
            };
            out.push(self.read_lease(spec, commit, now));
        }
        Ok(out)
    }

    fn read_lease(&self, spec: SpecId, commit: Oid, now: SystemTime) -> Lease {
        let file = self
            .repo
            .find_commit(commit)
            .and_then(|c| c.tree())
            .ok()
            .and_then(|t| t.get_name("lease.json").map(|e| e.id()))
            .and_then(|b| self.repo.find_blob(b).ok())
            .and_then(|b| serde_json::from_slice::<LeaseFile>(b.content()).ok());
        let expired = file
            .as_ref()
            .and_then(|f| humantime::parse_rfc3339(&f.expires).ok())
            .is_none_or(|e| e <= now);
        Lease {
            spec,
            file,
            expired,
            commit,
        }
    }

    fn lease_now(&self, remote: &str, spec: &SpecId) -> Result<Option<Lease>> {
        let name = super::sync::tracking_ref(remote, &lease_ref(spec)).expect("tracked");
        let now = self.opts.clock.now();
        Ok(self
            .ref_target(&name)?
            .map(|c| self.read_lease(spec.clone(), c, now)))
    }

    /// Fetches every lease on the remote into its tracking ref (and drops those of leases
    /// released there).
    pub fn fetch_leases(&self, opts: &SyncOptions) -> Result<(), SyncError> {
        let spec = format!("+refs/mmm/*/lease:refs/mmm-remotes/{}/*/lease", opts.remote);
        let args = [
            "fetch",
            "--no-tags",
            "--no-write-fetch-head",
            "--prune",
            "--quiet",
            "--no-auto-gc",
            "--no-recurse-submodules",
            opts.remote.as_str(),
            spec.as_str(),
        ];
        let out = self.run_git(&args, opts.timeout)?;
        if out.ok {
            return Ok(());
        }
        Err(classify(&opts.remote, "fetch", &out, opts.timeout))
    }

    /// A new lease commit for `spec`, expiring `ttl` from now.
    fn lease_commit(
        &self,
        spec: &SpecId,
        who: &LeaseHolder,
        taken: &str,
        ttl: Duration,
    ) -> Result<Oid> {
        let what = "write a lease";
        let expires = rfc3339(self.opts.clock.now() + ttl);
        let file = LeaseFile {
            v: 1,
            holder: who.holder.clone(),
            host: who.host.clone(),
            pid: who.pid,
            run: who.run.clone(),
            taken: taken.to_owned(),
            expires: expires.clone(),
        };
        let json = serde_json::to_string(&file).expect("a lease serializes") + "\n";
        let blob = self
            .repo
            .blob(json.as_bytes())
            .map_err(StoreError::git(what))?;
        let mut tb = self.repo.treebuilder(None).map_err(StoreError::git(what))?;
        tb.insert("lease.json", blob, 0o100644)
            .map_err(StoreError::git(what))?;
        let tree = tb
            .write()
            .and_then(|t| self.repo.find_tree(t))
            .map_err(StoreError::git(what))?;
        let msg = trailers::message(
            &format!("mmm({spec}): leased by {} until {expires}", who.holder),
            "",
            &[(key::SPEC, spec.to_string()), (key::RUN, who.run.clone())],
        );
        let sig = self.signature()?;
        self.repo
            .commit(None, &sig, &sig, &msg, &tree, &[])
            .map_err(StoreError::git(what))
    }

    /// Moves the remote's lease of `spec` from `expected` (`None`: must not exist) to `new`
    /// (`None`: delete). `Ok(false)`: the remote's lease is not `expected` any more.
    fn push_lease(
        &self,
        opts: &SyncOptions,
        spec: &SpecId,
        new: Option<Oid>,
        expected: Option<Oid>,
    ) -> Result<bool, SyncError> {
        self.flush()?;
        let name = lease_ref(spec);
        let lease = format!(
            "--force-with-lease={name}:{}",
            expected.map(|o| o.to_string()).unwrap_or_default()
        );
        let refspec = match new {
            Some(n) => format!("{n}:{name}"),
            None => format!(":{name}"),
        };
        let args = [
            "push",
            "--atomic",
            "--porcelain",
            "--no-verify",
            "--quiet",
            opts.remote.as_str(),
            lease.as_str(),
            refspec.as_str(),
        ];
        let out = self.run_git(&args, opts.timeout)?;
        let tracking = super::sync::tracking_ref(&opts.remote, &name).expect("tracked");
        if out.ok {
            match new {
                Some(n) => {
                    self.repo
                        .reference(&tracking, n, true, "mmm: lease pushed")
                        .map_err(StoreError::git(format!("update {tracking}")))?;
                }
                None => self.delete_ref(&tracking)?,
            }
            return Ok(true);
        }
        let rejected = porcelain_rejections(&out.stdout);
        if !rejected.is_empty() && rejected.iter().all(|(_, why)| retriable_rejection(why)) {
            return Ok(false);
        }
        if let Some((r, why)) = rejected.first() {
            return Err(SyncError::Rejected {
                remote: opts.remote.clone(),
                refs: r.clone(),
                detail: why.clone(),
            });
        }
        Err(classify(&opts.remote, "push", &out, opts.timeout))
    }

    /// Takes the lease of `spec` on the remote unless a live runner elsewhere holds it; an
    /// expired lease is taken over. Reads the lease fetched last ([`Store::fetch_leases`]).
    pub fn take_lease(
        &self,
        opts: &SyncOptions,
        spec: &SpecId,
        who: &LeaseHolder,
        ttl: Duration,
    ) -> Result<Take, SyncError> {
        let taken = rfc3339(self.opts.clock.now());
        for _ in 0..opts.attempts.max(1) {
            let current = self.lease_now(&opts.remote, spec)?;
            if let Some(l) = &current
                && !l.expired
            {
                return Ok(Take::Held(l.clone()));
            }
            let new = self.lease_commit(spec, who, &taken, ttl)?;
            if self.push_lease(opts, spec, Some(new), current.map(|l| l.commit))? {
                return Ok(Take::Taken(new));
            }
            // Someone else moved it meanwhile: look again.
            self.fetch_leases(opts)?;
        }
        Err(SyncError::KeptMoving {
            remote: opts.remote.clone(),
            rounds: opts.attempts.max(1),
        })
    }

    /// Renews our lease `old` for another `ttl`. `Ok(None)`: it is not ours any more (it
    /// expired and another runner took it over).
    pub fn renew_lease(
        &self,
        opts: &SyncOptions,
        spec: &SpecId,
        who: &LeaseHolder,
        old: Oid,
        ttl: Duration,
    ) -> Result<Option<Oid>, SyncError> {
        let taken = self
            .read_lease(spec.clone(), old, self.opts.clock.now())
            .file
            .map(|f| f.taken)
            .unwrap_or_else(|| rfc3339(self.opts.clock.now()));
        let new = self.lease_commit(spec, who, &taken, ttl)?;
        Ok(self
            .push_lease(opts, spec, Some(new), Some(old))?
            .then_some(new))
    }

    /// Deletes our lease `old` on the remote (left alone if another runner took it over).
    pub fn release_lease(
        &self,
        opts: &SyncOptions,
        spec: &SpecId,
        old: Oid,
    ) -> Result<(), SyncError> {
        self.push_lease(opts, spec, None, Some(old)).map(|_| ())
    }
}

/// The leases a run holds: renewed by a thread every third of their time to live, released
/// by [`LeaseKeeper::release`] or when dropped.
pub struct LeaseKeeper {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

struct Shared {
    stop: Mutex<bool>,
    wake: Condvar,
}

impl LeaseKeeper {
    /// Starts renewing `held` (spec → our lease commit) with `store` (a store of its own: the
    /// thread keeps it).
    pub fn start(
        store: Store,
        opts: SyncOptions,
        who: LeaseHolder,
        ttl: Duration,
        held: BTreeMap<SpecId, Oid>,
    ) -> LeaseKeeper {
        let shared = Arc::new(Shared {
            stop: Mutex::new(false),
            wake: Condvar::new(),
        });
        let mine = Arc::clone(&shared);
        let thread = std::thread::spawn(move || keep(&store, &opts, &who, ttl, held, &mine));
        LeaseKeeper {
            shared,
            thread: Mutex::new(Some(thread)),
        }
    }

    /// Stops renewing and deletes the leases on the remote; waits until that is done. Calling
    /// it again does nothing.
    pub fn release(&self) {
        *self
            .shared
            .stop
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = true;
        self.shared.wake.notify_all();
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        self.release();
    }
}

/// The keeper's thread: renews until told to stop, then releases.
fn keep(
    store: &Store,
    opts: &SyncOptions,
    who: &LeaseHolder,
    ttl: Duration,
    mut held: BTreeMap<SpecId, Oid>,
    shared: &Shared,
) {
    let every = (ttl / 3).max(Duration::from_millis(100));
    loop {
        let stop = shared.stop.lock().unwrap_or_else(PoisonError::into_inner);
        let (stop, _) = shared
            .wake
            .wait_timeout_while(stop, every, |s| !*s)
            .unwrap_or_else(PoisonError::into_inner);
        if *stop {
            break;
        }
        drop(stop);
        held.retain(
            |spec, old| match store.renew_lease(opts, spec, who, *old, ttl) {
                Ok(Some(new)) => {
                    *old = new;
                    true
                }
                Ok(None) => {
                    tracing::warn!(spec = %spec, "the lease expired and another runner took it over");
                    false
                }
                Err(e) => {
                    tracing::warn!(spec = %spec, error = %e, "could not renew the lease; trying again");
                    true
                }
            },
        );
    }
    for (spec, old) in held {
        if let Err(e) = store.release_lease(opts, &spec, old) {
            tracing::warn!(spec = %spec, error = %e, "could not release the lease; it expires by itself");
        }
    }
}
