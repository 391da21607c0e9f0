//! Runs: which mmm process runs which spec of this repository.
//!
//! Owns: `.git/mmm/runs/<spec>.json`, one file per spec a live `git mmm run` is running, holding
//! the run's pid, host, start time and run id, and locked (`flock`) by that process for as long
//! as the run lasts. The kernel drops the lock when the process ends, however it ends, so a
//! file whose lock can be taken belongs to a dead run (`kill -9`): it blocks nothing, and
//! `doctor` removes it. A second run of the same spec finds the lock held and refuses, naming
//! the holder ([`StoreError::Busy`]). Other rooms ask [`Store::live_runs`] whether any process
//! of this repository is running a spec (a ref lock is stale only if none is).

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use super::{Result, Store, StoreError};
use crate::clock::rfc3339;
use crate::spec::SpecId;

/// The directory of the run files, in the common git directory.
pub(super) fn runs_dir(common: &Path) -> PathBuf {
    common.join("mmm").join("runs")
}

/// Who runs a spec: what its run file says.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Holder {
    /// The spec.
    pub spec: String,
    /// The process id.
    pub pid: u32,
    /// The host the process runs on.
    pub host: String,
    /// When the run started (RFC 3339).
    pub started: String,
    /// The run id.
    pub run: String,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pid {} on {}, started {}, run {}",
            self.pid, self.host, self.started, self.run
        )
    }
}

/// A spec claimed by this process: its run file, locked. Dropping it removes the file.
#[derive(Debug)]
pub struct Claim {
    file: File,
    path: PathBuf,
    holder: Holder,
}

impl Claim {
    /// What the run file says.
    pub fn holder(&self) -> &Holder {
        &self.holder
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        // Removed while still locked, so that a process taking the lock next finds the file
        // gone (see `same_file`) and starts a new one.
        let _ = std::fs::remove_file(&self.path);
        let _ = self.file.unlock();
    }
}

/// The name of this host (`unknown` when it cannot be read).
pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: `buf` is valid for `buf.len()` bytes; gethostname writes at most that many.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// Whether `file` is still the file at `path` (not removed or replaced since it was opened).
fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Reads a run file's holder (`None` when it is empty or unreadable: being written).
fn read_holder(file: &mut File) -> Option<Holder> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut text).ok()?;
    serde_json::from_str(&text).ok()
}

/// A run file as [`Store::live_runs`] found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunFile {
    /// A live process holds it.
    Live(Holder),
    /// Nobody holds it: left by a process that ended without removing it.
    Dead {
        /// The file.
        path: PathBuf,
        /// What it says, if readable.
        holder: Option<Holder>,
    },
}

impl Store {
    /// Claims `spec` for a run of this process: refuses with [`StoreError::Busy`] when a live
    /// process (this one included) runs it already. A run file left by a dead process is taken
    /// over. The claim lasts until the returned guard is dropped.
    pub fn claim(&self, spec: &SpecId, run: &str) -> Result<Claim> {
        let dir = runs_dir(self.repo.commondir());
        let io = |source| StoreError::Io {
            what: format!("claim spec `{spec}` in {}", dir.display()),
            source,
        };
        std::fs::create_dir_all(&dir).map_err(io)?;
        let path = dir.join(format!("{spec}.json"));
        let mut busy = 0;
        for _ in 0..40 {
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(io)?;
            match file.try_lock() {
                Ok(()) => {}
                // A file system without locks: the run goes on unguarded, as before run files.
                Err(TryLockError::Error(e)) if e.kind() == std::io::ErrorKind::Unsupported => {}
                Err(TryLockError::WouldBlock) if busy < 5 => {
                    // Perhaps only `live_runs` of another process looking (a shared lock for
                    // microseconds): look again before refusing.
                    busy += 1;
                    std::thread::sleep(std::time::Duration::from_millis(10));
                    continue;
                }
                Err(TryLockError::WouldBlock) => {
                    let holder = read_holder(&mut file).unwrap_or_else(|| Holder {
                        spec: spec.to_string(),
                        pid: 0,
                        host: "?".into(),
                        started: "just now".into(),
                        run: "?".into(),
                    });
                    return Err(StoreError::Busy {
                        spec: spec.clone(),
                        holder: Box::new(holder),
                    });
                }
                Err(TryLockError::Error(e)) => return Err(io(e)),
            }
            if !same_file(&file, &path) {
                // The previous holder removed it between our open and our lock.
                continue;
            }
            let holder = Holder {
                spec: spec.to_string(),
                pid: std::process::id(),
                host: host_name(),
                started: rfc3339(self.opts.clock.now()),
                run: run.to_owned(),
            };
            let json = serde_json::to_string(&holder).unwrap_or_default();
            file.set_len(0).map_err(io)?;
            file.rewind().map_err(io)?;
            file.write_all(json.as_bytes()).map_err(io)?;
            return Ok(Claim { file, path, holder });
        }
        Err(StoreError::Contention {
            what: format!("claim spec `{spec}`"),
            attempts: 40,
        })
    }

    /// The run files of this repository: held by a live process, or left by a dead one.
    pub fn live_runs(&self) -> Vec<RunFile> {
        let dir = runs_dir(self.repo.commondir());
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        let mut paths: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        paths.sort();
        let mut out = Vec::new();
        for path in paths {
            let Ok(mut file) = File::open(&path) else {
                continue;
            };
            match file.try_lock_shared() {
                Err(TryLockError::WouldBlock) => {
                    if let Some(h) = read_holder(&mut file) {
                        out.push(RunFile::Live(h));
                    } else {
                        let spec = path.file_stem().map(|s| s.to_string_lossy().into_owned());
                        out.push(RunFile::Live(Holder {
                            spec: spec.unwrap_or_default(),
                            pid: 0,
                            host: "?".into(),
                            started: "just now".into(),
                            run: "?".into(),
                        }));
                    }
                }
                Ok(()) => {
                    let holder = read_holder(&mut file);
                    let _ = file.unlock();
                    out.push(RunFile::Dead { path, holder });
                }
                Err(TryLockError::Error(_)) => {}
            }
        }
        out
    }

    /// Whether a live process (this one included) runs `spec`.
    pub fn is_running(&self, spec: &str) -> Option<Holder> {
        self.live_runs().into_iter().find_map(|r| match r {
            RunFile::Live(h) if h.spec == spec => Some(h),
            _ => None,
        })
    }

    /// Removes a run file left by a dead process, if it still is one (taking its lock first,
    /// so that a run claiming it meanwhile keeps it). `Ok(false)`: a live process holds it now.
    pub(super) fn remove_dead_run(&self, path: &Path) -> Result<bool> {
        let io = |source| StoreError::Io {
            what: format!("remove {}", path.display()),
            source,
        };
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(true),
            Err(e) => return Err(io(e)),
        };
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Ok(false),
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        if same_file(&file, path) {
            std::fs::remove_file(path).map_err(io)?;
        }
        let _ = file.unlock();
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::clock::{FixedClock, SeqIdGen};
    use crate::store::StoreOptions;

    fn store(dir: &Path) -> Store {
        git2::Repository::init(dir).expect("init");
        let opts = StoreOptions::new(
            Arc::new(FixedClock::new(1_700_000_000, std::time::Duration::ZERO)),
            Arc::new(SeqIdGen::new("r")),
        );
        Store::open(dir, opts).expect("open")
    }

    #[test]
    fn a_claimed_spec_refuses_a_second_claim_until_released() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store(dir.path());
        let spec = SpecId::new("s").expect("id");
        let first = store.claim(&spec, "RUN1").expect("claim");
        assert_eq!(first.holder().pid, std::process::id());
        // A second open of the file conflicts even within one process (flock).
        match store.claim(&spec, "RUN2") {
            Err(StoreError::Busy { holder, .. }) => {
                assert_eq!(holder.run, "RUN1");
                assert_eq!(holder.started, "2023-11-14T22:13:20Z");
            }
            other => panic!("expected Busy, got {other:?}"),
        }
        assert_eq!(store.is_running("s").map(|h| h.run), Some("RUN1".into()));
        drop(first);
        assert_eq!(
            store.live_runs(),
            Vec::new(),
            "a released claim leaves no file"
        );
        let again = store.claim(&spec, "RUN3").expect("claim again");
        assert_eq!(again.holder().run, "RUN3");
    }

    #[test]
    fn a_file_left_by_a_dead_run_blocks_nothing_and_is_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store(dir.path());
        let runs = runs_dir(store.repo.commondir());
        std::fs::create_dir_all(&runs).expect("mkdir");
        let path = runs.join("s.json");
        std::fs::write(&path, "{}").expect("left by a kill");
        assert!(matches!(
            store.live_runs().as_slice(),
            [RunFile::Dead { holder: None, .. }]
        ));
        assert!(store.remove_dead_run(&path).expect("remove"));
        assert!(!path.exists());
        std::fs::write(&path, "{}").expect("left by a kill");
        let spec = SpecId::new("s").expect("id");
        let claim = store.claim(&spec, "RUN").expect("taken over");
        assert!(
            !store.remove_dead_run(&path).expect("held"),
            "a live run keeps it"
        );
        drop(claim);
    }
}
