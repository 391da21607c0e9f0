//! Path confinement: a model-given path becomes a file inside the worktree, or a refusal.
//!
//! Two steps. The lexical check looks at the text alone (absolute, `..`, `.git`, NUL, deny
//! globs). The resolution walks the existing ancestors on disk, canonicalizes each one and
//! checks that it stays inside the worktree, so that a symlink cannot lead a write outside; the
//! resolved path is then checked lexically once more (a symlink to `.git` inside the worktree
//! must not open `.git` either).

use std::io;
use std::path::{Component, Path, PathBuf};

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use super::{ApplyError, RefusalReason};

/// The deny-list, compiled.
pub(super) struct Deny {
    set: GlobSet,
    patterns: Vec<String>,
}

impl Deny {
    pub(super) fn new(patterns: &[String]) -> Result<Deny, ApplyError> {
        let mut b = GlobSetBuilder::new();
        let mut kept = Vec::new();
        for p in patterns {
            let base = p.trim().trim_end_matches('/');
            // `dir` and `dir/` deny the directory and everything under it.
            for g in [base.to_string(), format!("{base}/**")] {
                let glob = GlobBuilder::new(&g)
                    .case_insensitive(true)
                    .literal_separator(true)
                    .build()
                    .map_err(|e| ApplyError::BadDenyGlob {
                        pattern: p.clone(),
                        message: e.kind().to_string(),
                    })?;
                b.add(glob);
                kept.push(p.clone());
            }
        }
        let set = b.build().map_err(|e| ApplyError::BadDenyGlob {
            pattern: patterns.join(", "),
            message: e.to_string(),
        })?;
        Ok(Deny {
            set,
            patterns: kept,
        })
    }

    fn check(&self, rel: &str) -> Result<(), RefusalReason> {
        match self.set.matches(rel).first() {
            Some(&i) => Err(RefusalReason::Denied {
                pattern: self.patterns[i].clone(),
            }),
            None => Ok(()),
        }
    }
}

fn is_git_dir_name(component: &str) -> bool {
    // Windows ignores trailing dots and spaces: `.git.` and `.git ` name `.git` there.
    component
        .trim_end_matches([' ', '.'])
        .eq_ignore_ascii_case(".git")
        || component.eq_ignore_ascii_case(".git")
}

/// Checks the text of a path and returns it normalized (`/`-separated, no `.` or empty
/// components).
pub(super) fn check_lexical(path: &str, deny: &Deny) -> Result<String, RefusalReason> {
    if path.contains('\0') {
        return Err(RefusalReason::NulByte);
    }
    // Models on Windows habits write `src\lib.rs`; treat `\` as a separator so that `..\x`
    // cannot slip through as a single odd file name.
    let p = path.trim().replace('\\', "/");
    if p.is_empty() {
        return Err(RefusalReason::EmptyPath);
    }
    let b = p.as_bytes();
    if p.starts_with('/') || (b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':') {
        return Err(RefusalReason::Absolute);
    }
    let mut parts = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => return Err(RefusalReason::ParentDir),
            c if is_git_dir_name(c) => return Err(RefusalReason::GitDir),
            c => parts.push(c),
        }
    }
    if parts.is_empty() {
        return Err(RefusalReason::EmptyPath);
    }
    let rel = parts.join("/");
    deny.check(&rel)?;
    Ok(rel)
}

/// Where an edit will land on disk.
pub(super) struct Target {
    /// The file to read and to replace: the canonical parent joined with the file name, or the
    /// canonical target of a symlink that points inside the worktree.
    pub(super) file: PathBuf,
    /// The path itself (not following a final symlink), for deletion.
    pub(super) link: PathBuf,
    /// Whether `file` exists now.
    pub(super) exists: bool,
}

/// Why a path could not be resolved.
pub(super) enum Unresolved {
    Refused(RefusalReason),
    Failed(ApplyError),
}

impl From<RefusalReason> for Unresolved {
    fn from(r: RefusalReason) -> Self {
        Unresolved::Refused(r)
    }
}

fn io_failed(action: &'static str, source: io::Error) -> Unresolved {
    Unresolved::Failed(ApplyError::Io { action, source })
}

fn escape(what: &str) -> Unresolved {
    Unresolved::Refused(RefusalReason::SymlinkEscape {
        component: what.to_string(),
    })
}

/// Resolves the normalized relative path `rel` under the canonical worktree `root`.
pub(super) fn resolve(root: &Path, rel: &str, deny: &Deny) -> Result<Target, Unresolved> {
    let parts: Vec<&str> = rel.split('/').collect();
    let (last, dirs) = parts
        .split_last()
        .expect("check_lexical never returns an empty path");
    let mut cur = root.to_path_buf();
    let mut missing = false;
    let mut walked = String::new();
    for d in dirs {
        if !walked.is_empty() {
            walked.push('/');
        }
        walked.push_str(d);
        let next = cur.join(d);
        if missing {
            cur = next;
            continue;
        }
        match std::fs::symlink_metadata(&next) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                missing = true;
                cur = next;
            }
            Err(e) => return Err(io_failed("inspect", e)),
            Ok(_) => {
                // A dangling symlink cannot be proven to stay inside: refuse it.
                let canon = next.canonicalize().map_err(|_| escape(&walked))?;
                if !canon.starts_with(root) {
                    return Err(escape(&walked));
                }
                if !canon.is_dir() {
                    return Err(Unresolved::Failed(ApplyError::NotADirectory {
                        component: walked.clone(),
                    }));
                }
                cur = canon;
            }
        }
    }
    let link = cur.join(last);
    let mut file = link.clone();
    let mut exists = false;
    if !missing {
        match std::fs::symlink_metadata(&link) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_failed("inspect", e)),
            Ok(meta) => {
                if meta.file_type().is_symlink() {
                    let canon = link.canonicalize().map_err(|_| escape(rel))?;
                    if !canon.starts_with(root) {
                        return Err(escape(rel));
                    }
                    file = canon;
                }
                if file.is_dir() {
                    return Err(Unresolved::Failed(ApplyError::IsADirectory));
                }
                exists = true;
            }
        }
    }
    // Check where we really land: a symlink inside the worktree may point into `.git/` or a
    // denied directory.
    let landed = file
        .strip_prefix(root)
        .map_err(|_| escape(rel))?
        .components()
        .map(|c| match c {
            Component::Normal(s) => Ok(s.to_string_lossy().into_owned()),
            _ => Err(escape(rel)),
        })
        .collect::<Result<Vec<_>, _>>()?
        .join("/");
    if landed != rel {
        check_lexical(&landed, deny)?;
    }
    Ok(Target { file, link, exists })
}
