//! Apply: writes edits inside the iteration's worktree only, refusing every escape.
//!
//! This module owns the file system side of an iteration: it turns [`Edit`]s into files in
//! the worktree, and runs the commands the model asked for ([`commands`]). Every path is
//! confined to the worktree (no absolute paths, no `..`, nothing under `.git`, no symlink that
//! leads outside, nothing on the deny-list); every write is atomic (a temporary file in the
//! same directory, then a rename). It does not parse responses ([`crate::response`]) and does
//! not commit anything ([`crate::store`]).

pub mod commands;
mod path;
mod text;

use std::io::{self, Write};
use std::path::Path;

use crate::response::Edit;

pub use commands::{CommandError, CommandOutcome, CommandPolicy, run_command};

/// What the engine allows edits to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyPolicy {
    /// Globs (relative to the worktree, `/`-separated, case-insensitive) that edits may not
    /// touch, e.g. `.github/workflows/**`. A plain directory (`.github/workflows` or
    /// `.github/workflows/`) denies everything under it.
    pub deny: Vec<String>,
    /// The largest file an edit may produce, in bytes.
    pub max_file_bytes: u64,
}

impl Default for ApplyPolicy {
    /// No deny-list, files up to 1 MiB.
    fn default() -> Self {
        ApplyPolicy {
            deny: Vec::new(),
            max_file_bytes: 1 << 20,
        }
    }
}

/// What an applied edit did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AppliedKind {
    /// A new file was written.
    Created,
    /// An existing file was overwritten whole.
    Written,
    /// A search/replace block was applied.
    Replaced,
    /// A diff was applied.
    Patched,
    /// A file was deleted.
    Deleted,
}

/// An edit that was applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The path as the model wrote it.
    pub path: String,
    /// What happened.
    pub kind: AppliedKind,
    /// The size of the file after the edit (0 for a deletion).
    pub bytes: u64,
}

/// Why an edit was refused: it was not allowed, whatever its content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefusalReason {
    /// The path is empty.
    #[error("the path is empty; name a file relative to the repository root")]
    EmptyPath,
    /// The path contains a NUL byte.
    #[error("the path contains a NUL byte")]
    NulByte,
    /// The path is absolute.
    #[error("absolute paths are not allowed; use a path relative to the repository root")]
    Absolute,
    /// The path has a `..` component.
    #[error("`..` is not allowed in paths; use a path relative to the repository root")]
    ParentDir,
    /// The path is `.git` or under it (in any case).
    #[error("files under `.git` may not be edited")]
    GitDir,
    /// The path goes through a symlink that leaves the worktree (or cannot be resolved).
    #[error("`{component}` is a symlink that leads outside the repository")]
    SymlinkEscape {
        /// The path prefix that is the offending symlink.
        component: String,
    },
    /// The path matches the deny-list.
    #[error("the path matches the deny-list pattern `{pattern}`")]
    Denied {
        /// The deny-list pattern that matched.
        pattern: String,
    },
    /// The resulting file would be too large.
    #[error("the file would be {bytes} bytes, over the limit of {limit}")]
    TooLarge {
        /// The size the file would have.
        bytes: u64,
        /// The configured limit.
        limit: u64,
    },
    /// The content contains NUL bytes.
    #[error("binary content (NUL bytes) is not allowed; write text files only")]
    Binary,
}

/// An edit that was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The path as the model wrote it.
    pub path: String,
    /// Why.
    pub reason: RefusalReason,
}

/// Errors of this module: an edit that was allowed but could not be applied, or a policy or
/// worktree that makes applying impossible.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The worktree directory cannot be resolved.
    #[error("the worktree {path} cannot be opened: {source}")]
    Worktree {
        /// The worktree given.
        path: String,
        /// The underlying error.
        source: io::Error,
    },
    /// A deny-list pattern is not a valid glob.
    #[error(
        "deny-list pattern `{pattern}` is not a valid glob: {message}; fix it in the configuration"
    )]
    BadDenyGlob {
        /// The pattern.
        pattern: String,
        /// What is wrong with it.
        message: String,
    },
    /// A search/replace or diff targets a file that does not exist.
    #[error("the file does not exist; write it whole, or use an empty SEARCH to create it")]
    FileMissing,
    /// A diff creates a file that already exists.
    #[error(
        "the diff creates the file, but it already exists; send a diff against its current content or write it whole"
    )]
    FileExists,
    /// The SEARCH text is not in the file.
    #[error(
        "the SEARCH text (starting `{first_line}`) was not found; copy it exactly from the file"
    )]
    SearchNotFound {
        /// The first non-blank line of the SEARCH text.
        first_line: String,
    },
    /// The SEARCH text occurs more than once.
    #[error(
        "the SEARCH text (starting `{first_line}`) occurs {count} times; include more lines so that it is unique"
    )]
    Ambiguous {
        /// How many times it occurs.
        count: usize,
        /// The first non-blank line of the SEARCH text.
        first_line: String,
    },
    /// An empty SEARCH on a file that has content.
    #[error(
        "an empty SEARCH only creates a new file; this file has content, so quote the text to replace"
    )]
    EmptySearch,
    /// A hunk's context and removed lines were not found.
    #[error(
        "hunk {hunk} (at line {line}, starting `{first_line}`) does not match the file; re-read the file and send a fresh diff or a search/replace block"
    )]
    HunkMismatch {
        /// The 1-based number of the hunk in its file.
        hunk: usize,
        /// The line its header named.
        line: usize,
        /// The first old line of the hunk.
        first_line: String,
    },
    /// The file is not UTF-8 text.
    #[error("the file is not UTF-8 text and cannot be edited; write it whole instead")]
    NotUtf8,
    /// The path names a directory.
    #[error("the path is a directory, not a file")]
    IsADirectory,
    /// A component of the path exists and is not a directory.
    #[error("`{component}` exists and is not a directory")]
    NotADirectory {
        /// The path prefix that is a file.
        component: String,
    },
    /// A file system operation failed.
    #[error("could not {action} the file: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The underlying error.
        source: io::Error,
    },
}

/// An edit that was allowed but could not be applied.
#[derive(Debug)]
pub struct Failed {
    /// The path as the model wrote it.
    pub path: String,
    /// Why.
    pub reason: ApplyError,
}

/// What happened to each edit, in the order given.
#[derive(Debug, Default)]
pub struct ApplyReport {
    /// Edits applied.
    pub applied: Vec<Applied>,
    /// Edits refused by policy.
    pub refused: Vec<Refused>,
    /// Edits that could not be applied (no match, I/O error …).
    pub failed: Vec<Failed>,
}

/// How many edits applied, were refused and failed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ApplyCounts {
    /// Applied cleanly.
    pub applied: usize,
    /// Refused by policy.
    pub refused: usize,
    /// Allowed but failed.
    pub failed: usize,
}

impl ApplyReport {
    /// The counts, for the metrics note.
    pub fn counts(&self) -> ApplyCounts {
        ApplyCounts {
            applied: self.applied.len(),
            refused: self.refused.len(),
            failed: self.failed.len(),
        }
    }

    /// Every edit was applied.
    pub fn is_clean(&self) -> bool {
        self.refused.is_empty() && self.failed.is_empty()
    }
}

enum Outcome {
    Applied(AppliedKind, u64),
    Refused(RefusalReason),
    Failed(ApplyError),
}

impl From<path::Unresolved> for Outcome {
    fn from(u: path::Unresolved) -> Self {
        match u {
            path::Unresolved::Refused(r) => Outcome::Refused(r),
            path::Unresolved::Failed(e) => Outcome::Failed(e),
        }
    }
}

/// Applies `edits` in order inside `worktree` (later edits see earlier ones). Each edit is
/// applied whole or not at all. Fails only when the worktree cannot be opened or the policy is
/// invalid; everything about single edits is in the report.
pub fn apply(
    worktree: &Path,
    edits: &[Edit],
    policy: &ApplyPolicy,
) -> Result<ApplyReport, ApplyError> {
    let root = worktree
        .canonicalize()
        .map_err(|source| ApplyError::Worktree {
            path: worktree.display().to_string(),
            source,
        })?;
    let deny = path::Deny::new(&policy.deny)?;
    let mut report = ApplyReport::default();
    for edit in edits {
        let path = edit.path().to_string();
        match apply_one(&root, edit, &deny, policy) {
            Outcome::Applied(kind, bytes) => report.applied.push(Applied { path, kind, bytes }),
            Outcome::Refused(reason) => report.refused.push(Refused { path, reason }),
            Outcome::Failed(reason) => report.failed.push(Failed { path, reason }),
        }
    }
    Ok(report)
}

fn read(file: &Path) -> Result<String, ApplyError> {
    let bytes = std::fs::read(file).map_err(|source| ApplyError::Io {
        action: "read",
        source,
    })?;
    String::from_utf8(bytes).map_err(|_| ApplyError::NotUtf8)
}

fn apply_one(root: &Path, edit: &Edit, deny: &path::Deny, policy: &ApplyPolicy) -> Outcome {
    let rel = match path::check_lexical(edit.path(), deny) {
        Ok(rel) => rel,
        Err(r) => return Outcome::Refused(r),
    };
    let target = match path::resolve(root, &rel, deny) {
        Ok(t) => t,
        Err(u) => return u.into(),
    };
    let current = if target.exists {
        match read(&target.file) {
            Ok(s) => Some(s),
            Err(e) => {
                // A whole-file write or a deletion does not need to read the old content.
                if matches!(edit, Edit::Write { .. } | Edit::Delete { .. }) {
                    Some(String::new())
                } else {
                    return Outcome::Failed(e);
                }
            }
        }
    } else {
        None
    };
    let (content, kind) = match (edit, &current) {
        (Edit::Delete { .. }, None) => return Outcome::Failed(ApplyError::FileMissing),
        (Edit::Delete { .. }, Some(_)) => {
            // Remove the link itself, never what a symlink points to.
            return match std::fs::remove_file(&target.link) {
                Ok(()) => Outcome::Applied(AppliedKind::Deleted, 0),
                Err(source) => Outcome::Failed(ApplyError::Io {
                    action: "delete",
                    source,
                }),
            };
        }
        (Edit::Write { content, .. }, None) => (content.clone(), AppliedKind::Created),
        (Edit::Write { content, .. }, Some(_)) => (content.clone(), AppliedKind::Written),
        (
            Edit::Replace {
                search, replace, ..
            },
            None,
        ) => {
            if !search.trim().is_empty() {
                return Outcome::Failed(ApplyError::FileMissing);
            }
            (replace.clone(), AppliedKind::Created)
        }
        (
            Edit::Replace {
                search, replace, ..
            },
            Some(cur),
        ) => match text::replace(cur, search, replace) {
            Ok(c) => (c, AppliedKind::Replaced),
            Err(e) => return Outcome::Failed(e),
        },
        (Edit::Patch { hunks, .. }, cur) => {
            let creates = hunks.iter().all(|h| h.old_lines().is_empty());
            if cur.is_none() && !creates {
                return Outcome::Failed(ApplyError::FileMissing);
            }
            // A diff from /dev/null must not prepend itself to a file that already exists.
            let from_nothing = hunks.iter().all(|h| h.old_start == 0);
            if creates && from_nothing && cur.as_deref().is_some_and(|c| !c.is_empty()) {
                return Outcome::Failed(ApplyError::FileExists);
            }
            match text::patch(cur.as_deref().unwrap_or(""), hunks) {
                Ok(c) => (c, AppliedKind::Patched),
                Err(e) => return Outcome::Failed(e),
            }
        }
    };
    let bytes = content.len() as u64;
    if bytes > policy.max_file_bytes {
        return Outcome::Refused(RefusalReason::TooLarge {
            bytes,
            limit: policy.max_file_bytes,
        });
    }
    if content.contains('\0') {
        return Outcome::Refused(RefusalReason::Binary);
    }
    match write_atomic(&target.file, content.as_bytes()) {
        Ok(()) => Outcome::Applied(kind, bytes),
        Err(source) => Outcome::Failed(ApplyError::Io {
            action: "write",
            source,
        }),
    }
}

/// Writes `bytes` to `file` through a temporary file in the same directory and a rename, so
/// that a crash leaves the old file or the new one, never half of one. Keeps the permissions
/// of a file it replaces. Not synced to the disk: the worktree is scratch space, and what
/// lasts is the snapshot the store writes (and syncs) from it.
fn write_atomic(file: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = file
        .parent()
        .expect("a resolved target always has the worktree as an ancestor");
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".mmm-write-")
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    match std::fs::metadata(file) {
        Ok(meta) => tmp.as_file().set_permissions(meta.permissions())?,
        // Temporary files are private (0600); a new source file should be readable like any
        // other file in the checkout.
        #[cfg(unix)]
        Err(_) => {
            use std::os::unix::fs::PermissionsExt;
            tmp.as_file()
                .set_permissions(std::fs::Permissions::from_mode(0o644))?;
        }
        #[cfg(not(unix))]
        Err(_) => {}
    }
    tmp.persist(file).map_err(|e| e.error)?;
    Ok(())
}
