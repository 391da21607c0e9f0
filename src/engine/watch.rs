//! Which paths of a worktree changed since the last snapshot, without looking at every file.
//!
//! After a gate, a command or an agent that edits files has run in the worktree, anything in it
//! may have changed, and a snapshot would have to compare every file with the index (about
//! 8 ms for 2,000 files). On Linux the worktree's directories are watched with inotify instead:
//! the kernel queues an event when a file in a watched directory is created, written, deleted,
//! renamed or has its mode changed, at the moment that happens, so once the process that made
//! a change has exited, its events are in the queue; reading the queue without blocking gives
//! every path that changed (as git's `core.fsmonitor` does, with the kernel as the monitor).
//!
//! The watch is exact or it says it does not know ([`Changes::Unknown`]), and the caller scans:
//! when the kernel's queue overflowed, an ignore file or a directory was renamed, a watch could
//! not be added (the user's inotify limit), or too many paths changed for staging them one by
//! one to be cheaper than a scan. Directories that `.gitignore` excludes (`target/`,
//! `node_modules/`) are not watched: nothing in them enters a snapshot, and builds write there
//! by the thousand. Writes through a shared memory map are not reported by inotify; agents and
//! build tools write files with `write(2)`, and the engine scans fully before it records an
//! iteration as complete.
//!
//! Elsewhere than on Linux [`Watch::start`] returns `None` and snapshots scan.

use std::collections::BTreeSet;
use std::path::Path;

/// More changed paths than this are cheaper to find by a scan.
const MAX_PATHS: usize = 5_000;

/// What changed in the worktree since the watch started or was last drained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Changes {
    /// Exactly these paths (relative, `/`-separated) may have changed: files written, created,
    /// deleted or renamed, and directories deleted (whose files are gone with them). Files in a
    /// new directory are listed one by one.
    Paths(BTreeSet<String>),
    /// The watch lost track; the worktree must be scanned.
    Unknown,
}

#[cfg(target_os = "linux")]
pub use linux::Watch;

#[cfg(not(target_os = "linux"))]
pub use other::Watch;

#[cfg(not(target_os = "linux"))]
mod other {
    use super::Changes;
    use std::path::Path;

    /// No watching on this platform: every snapshot scans.
    #[derive(Debug)]
    pub struct Watch;

    impl Watch {
        /// Always `None` here.
        pub fn start(
            _root: &Path,
            _tracked_dirs: &[String],
            _is_ignored: &mut dyn FnMut(&str) -> bool,
        ) -> Option<Watch> {
            None
        }

        /// Never called (no watch is ever started).
        pub fn drain(&mut self, _is_ignored: &mut dyn FnMut(&str) -> bool) -> Changes {
            Changes::Unknown
        }
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::collections::{BTreeSet, HashMap};
    use std::path::{Path, PathBuf};

    use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask};

    use super::{Changes, MAX_PATHS, is_ignore_file, join};

    /// An inotify watch on every directory of a worktree that can hold a file of a snapshot.
    pub struct Watch {
        inotify: Inotify,
        root: PathBuf,
        /// Each watched directory, relative to the root (`""` for the root itself).
        dirs: HashMap<WatchDescriptor, String>,
        /// Changed since the last drain.
        paths: BTreeSet<String>,
        /// The watch lost track since the last drain.
        lost: bool,
        buffer: Vec<u8>,
    }

    impl std::fmt::Debug for Watch {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Watch")
                .field("root", &self.root)
                .field("dirs", &self.dirs.len())
                .finish()
        }
    }

    fn mask() -> WatchMask {
        WatchMask::CREATE
            | WatchMask::MODIFY
            | WatchMask::ATTRIB
            | WatchMask::DELETE
            | WatchMask::MOVED_FROM
            | WatchMask::MOVED_TO
            | WatchMask::DELETE_SELF
            | WatchMask::MOVE_SELF
            | WatchMask::ONLYDIR
            | WatchMask::DONT_FOLLOW
            | WatchMask::EXCL_UNLINK
    }

    impl Watch {
        /// Watches `root` and each directory below it that git does not ignore (`is_ignored`
        /// answers for a relative path), plus `tracked_dirs` (directories of tracked files,
        /// relative, which an ignore rule may cover). `None` when inotify is unavailable, a
        /// watch cannot be added or a name is not UTF-8.
        pub fn start(
            root: &Path,
            tracked_dirs: &[String],
            is_ignored: &mut dyn FnMut(&str) -> bool,
        ) -> Option<Watch> {
            let mut watch = Watch {
                inotify: Inotify::init().ok()?,
                root: root.to_path_buf(),
                dirs: HashMap::new(),
                paths: BTreeSet::new(),
                lost: false,
                buffer: vec![0; 64 * 1024],
            };
            watch.add_tree("", None, is_ignored).ok()?;
            for dir in tracked_dirs {
                let mut partial = String::new();
                for part in dir.split('/') {
                    partial = join(&partial, part);
                    watch.add_dir(&partial).ok()?;
                }
            }
            Some(watch)
        }

        /// Adds a watch for the directory `rel`.
        fn add_dir(&mut self, rel: &str) -> std::io::Result<()> {
            let wd = self.inotify.watches().add(self.root.join(rel), mask())?;
            self.dirs.insert(wd, rel.to_owned());
            Ok(())
        }

        /// Watches the directory `rel` and every directory below it that git does not ignore,
        /// each before its entries are read (so nothing created meanwhile is missed), and (with
        /// `files`) lists every file found as changed. Git's own rules decide (through
        /// `is_ignored`), not a walker's: an ignore file above the worktree, or a rule git does
        /// not have, must not hide a directory git tracks.
        fn add_tree(
            &mut self,
            rel: &str,
            mut files: Option<&mut Vec<String>>,
            is_ignored: &mut dyn FnMut(&str) -> bool,
        ) -> std::io::Result<()> {
            let mut pending = vec![rel.to_owned()];
            while let Some(dir) = pending.pop() {
                self.add_dir(&dir)?;
                for entry in std::fs::read_dir(self.root.join(&dir))? {
                    let entry = entry?;
                    let name = entry.file_name();
                    let Some(name) = name.to_str() else {
                        return Err(std::io::Error::other("a name that is not UTF-8"));
                    };
                    let sub = join(&dir, name);
                    let kind = entry.file_type()?;
                    if kind.is_dir() {
                        let git_dir = dir.is_empty() && name == ".git";
                        if !git_dir && !is_ignored(&sub) {
                            pending.push(sub);
                        }
                    } else if let Some(list) = files.as_deref_mut() {
                        list.push(sub);
                    }
                }
            }
            Ok(())
        }

        /// Reads every event queued so far and returns what changed since the last drain.
        /// `is_ignored` tells whether git ignores a new directory (relative path), which is
        /// then not watched.
        pub fn drain(&mut self, is_ignored: &mut dyn FnMut(&str) -> bool) -> Changes {
            loop {
                let events: Vec<(WatchDescriptor, EventMask, Option<String>)> =
                    match self.inotify.read_events(&mut self.buffer) {
                        Ok(events) => events
                            .map(|e| {
                                // A name that is not UTF-8 cannot be staged by its path.
                                let name = e.name.map(|n| match n.to_str() {
                                    Some(n) => n.to_owned(),
                                    None => {
                                        self.lost = true;
                                        String::new()
                                    }
                                });
                                (e.wd, e.mask, name)
                            })
                            .collect(),
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                        Err(_) => {
                            self.lost = true;
                            break;
                        }
                    };
                if events.is_empty() {
                    break;
                }
                for (wd, mask, name) in events {
                    self.event(wd, mask, name, is_ignored);
                }
            }
            let paths = std::mem::take(&mut self.paths);
            if std::mem::take(&mut self.lost) || paths.len() > MAX_PATHS {
                Changes::Unknown
            } else {
                Changes::Paths(paths)
            }
        }

        fn event(
            &mut self,
            wd: WatchDescriptor,
            mask: EventMask,
            name: Option<String>,
            is_ignored: &mut dyn FnMut(&str) -> bool,
        ) {
            if mask.contains(EventMask::Q_OVERFLOW) {
                self.lost = true;
                return;
            }
            if mask.contains(EventMask::IGNORED) {
                // The directory is gone (its parent reports it); so is its watch.
                self.dirs.remove(&wd);
                return;
            }
            let Some(dir) = self.dirs.get(&wd).cloned() else {
                return;
            };
            if mask.intersects(EventMask::DELETE_SELF | EventMask::MOVE_SELF) {
                if dir.is_empty() {
                    self.lost = true;
                }
                return;
            }
            let Some(name) = name else {
                return;
            };
            let rel = join(&dir, &name);
            if dir.is_empty() && name == ".git" {
                return;
            }
            if is_ignore_file(&name) {
                // What is ignored changed: directories may need watching, files staging.
                self.lost = true;
                return;
            }
            if mask.contains(EventMask::ISDIR) {
                if mask.intersects(EventMask::MOVED_FROM | EventMask::MOVED_TO) {
                    // The moved directory's watches now point at another path.
                    self.lost = true;
                } else if mask.contains(EventMask::CREATE) && !is_ignored(&rel) {
                    // Watched before its entries are listed: nothing created in it is missed.
                    let mut files = Vec::new();
                    if self.add_tree(&rel, Some(&mut files), is_ignored).is_err() {
                        self.lost = true;
                    }
                    self.paths.extend(files);
                } else if mask.contains(EventMask::DELETE) {
                    self.paths.insert(rel);
                }
                return;
            }
            self.paths.insert(rel);
        }
    }
}

fn is_ignore_file(name: &str) -> bool {
    name == ".gitignore" || name == ".ignore"
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_owned()
    } else {
        format!("{dir}/{name}")
    }
}

/// The directories (relative, `/`-separated) that hold the files at `paths`.
pub fn parent_dirs<'a>(paths: impl IntoIterator<Item = &'a Path>) -> Vec<String> {
    let mut dirs = BTreeSet::new();
    for p in paths {
        if let Some(parent) = p.parent().and_then(Path::to_str)
            && !parent.is_empty()
        {
            dirs.insert(parent.replace('\\', "/"));
        }
    }
    dirs.into_iter().collect()
}
