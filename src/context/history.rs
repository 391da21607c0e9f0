//! Co-change: which files changed together in the repository's recent history. A bounded
//! walk of the first-parent-free history from `HEAD` (the newest [`MAX_COMMITS`] non-merge
//! commits), each commit's changed paths read from a tree-to-tree diff without contents.
//!
//! Owns: reading history for the ranking. Must not touch: refs, the index, the worktree; it
//! never writes.

use std::collections::HashMap;
use std::path::Path;

/// Commits read, newest first, at most.
pub(crate) const MAX_COMMITS: usize = 1000;
/// A commit that changes more files than this (a rename sweep, a format run) says nothing
/// about which files belong together, and is left out.
const MAX_FILES_PER_COMMIT: usize = 30;

/// Files that changed together: for each path, the commits that changed it.
#[derive(Debug, Default)]
pub(crate) struct CoChange {
    /// Path → numbers of the commits (in `commits`) that changed it.
    by_path: HashMap<String, Vec<u32>>,
    /// Each commit's changed paths.
    commits: Vec<Vec<String>>,
}

impl CoChange {
    /// Reads the history of the repository at `root` (a worktree or its main directory).
    /// A directory that is not a repository, or any error of git, gives an empty history:
    /// co-change is a hint, never a reason to fail.
    pub(crate) fn read(root: &Path, max_commits: usize) -> CoChange {
        Self::try_read(root, max_commits).unwrap_or_default()
    }

    fn try_read(root: &Path, max_commits: usize) -> Result<CoChange, git2::Error> {
        let repo = git2::Repository::open(root)?;
        let mut walk = repo.revwalk()?;
        walk.push_head()?;
        let mut out = CoChange::default();
        let mut seen = 0;
        for oid in walk {
            if seen == max_commits {
                break;
            }
            let commit = repo.find_commit(oid?)?;
            if commit.parent_count() != 1 {
                continue;
            }
            seen += 1;
            let parent = commit.parent(0)?.tree()?;
            let diff = repo.diff_tree_to_tree(Some(&parent), Some(&commit.tree()?), None)?;
            if diff.deltas().len() > MAX_FILES_PER_COMMIT || diff.deltas().len() < 2 {
                continue;
            }
            let paths: Vec<String> = diff
                .deltas()
                .filter_map(|d| d.new_file().path().or_else(|| d.old_file().path()))
                .filter_map(|p| p.to_str().map(str::to_owned))
                .collect();
            let n = u32::try_from(out.commits.len()).unwrap_or(u32::MAX);
            for p in &paths {
                out.by_path.entry(p.clone()).or_default().push(n);
            }
            out.commits.push(paths);
        }
        Ok(out)
    }

    /// The files that changed with `path`, each with the share of `path`'s commits (of those
    /// read, with at least one other file) that changed it too.
    pub(crate) fn partners(&self, path: &str) -> HashMap<&str, f64> {
        let mut out: HashMap<&str, f64> = HashMap::new();
        let Some(commits) = self.by_path.get(path) else {
            return out;
        };
        let share = 1.0 / commits.len() as f64;
        for &c in commits {
            for p in &self.commits[c as usize] {
                if p != path {
                    *out.entry(p.as_str()).or_default() += share;
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn git(dir: &Path, args: &[&str]) {
        let ok = Command::new("git")
            .args([
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
                "-c",
                "commit.gpgsign=false",
            ])
            .args(args)
            .current_dir(dir)
            .env("GIT_AUTHOR_DATE", "2026-01-01T00:00:00Z")
            .env("GIT_COMMITTER_DATE", "2026-01-01T00:00:00Z")
            .status()
            .expect("git runs")
            .success();
        assert!(ok, "git {args:?}");
    }

    fn commit(dir: &Path, files: &[&str], n: u32) {
        for f in files {
            let p = dir.join(f);
            std::fs::create_dir_all(p.parent().expect("a parent")).expect("mkdir");
            std::fs::write(&p, format!("{n}\n")).expect("write");
        }
        git(dir, &["add", "-A"]);
        git(dir, &["commit", "-q", "-m", &format!("c{n}")]);
    }

    #[test]
    fn files_that_changed_together_are_partners() {
        let dir = tempfile::tempdir().expect("tempdir");
        git(dir.path(), &["init", "-q"]);
        commit(dir.path(), &["a.rs", "b.rs", "c.rs"], 0);
        commit(dir.path(), &["a.rs", "tests/a.rs"], 1);
        commit(dir.path(), &["a.rs", "tests/a.rs"], 2);
        commit(dir.path(), &["a.rs"], 3);
        commit(dir.path(), &["b.rs", "c.rs"], 4);
        let h = CoChange::read(dir.path(), MAX_COMMITS);
        let a = h.partners("a.rs");
        // The first commit has no parent and the fourth changes one file: neither counts.
        assert_eq!(a.len(), 1);
        assert!((a["tests/a.rs"] - 1.0).abs() < 1e-9);
        assert_eq!(h.partners("b.rs").keys().collect::<Vec<_>>(), [&"c.rs"]);
        // A bounded walk reads only the newest commits.
        assert!(CoChange::read(dir.path(), 1).partners("a.rs").is_empty());
        // Not a repository: no history, no error.
        let plain = tempfile::tempdir().expect("tempdir");
        assert!(
            CoChange::read(plain.path(), MAX_COMMITS)
                .partners("a.rs")
                .is_empty()
        );
    }
}
