//! What a push updates: the lines git hands to `pre-push` and `post-receive`, and the spec
//! files that the pushed commits add, change or delete.
//!
//! For an updated branch the range is the remote's old tip to the new one (a force push
//! included: what differs between the two trees). For a new branch (an all-zero old id), or an
//! old tip this repository does not have, it is the commits of the new tip that no ref of the
//! other side has (`hide`), each compared with its first parent. Deletions of refs, and mmm's
//! own branches (`refs/heads/mmm/…`), start nothing.

use std::collections::BTreeSet;

use git2::{Oid, Repository, Tree};

/// One ref a push updates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefUpdate {
    /// The ref on the receiving side (`refs/heads/main`).
    pub remote_ref: String,
    /// Its id before the push (zero: the ref is new).
    pub old: Oid,
    /// Its id after the push (zero: the ref is deleted).
    pub new: Oid,
}

/// The lines `pre-push` reads: `<local ref> <local id> <remote ref> <remote id>`. Lines that
/// do not have that shape are skipped.
pub fn parse_pre_push(input: &str) -> Vec<RefUpdate> {
    input
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let [_, new, remote_ref, old] = f.as_slice() else {
                return None;
            };
            Some(RefUpdate {
                remote_ref: (*remote_ref).to_owned(),
                old: Oid::from_str(old).ok()?,
                new: Oid::from_str(new).ok()?,
            })
        })
        .collect()
}

/// The lines `post-receive` reads: `<old id> <new id> <ref>`.
pub fn parse_post_receive(input: &str) -> Vec<RefUpdate> {
    input
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let [old, new, name] = f.as_slice() else {
                return None;
            };
            Some(RefUpdate {
                remote_ref: (*name).to_owned(),
                old: Oid::from_str(old).ok()?,
                new: Oid::from_str(new).ok()?,
            })
        })
        .collect()
}

/// The spec files a push touches, relative to the repository root.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pushed {
    /// Added or changed, and present at the pushed tip.
    pub changed: BTreeSet<String>,
    /// Gone at the pushed tip.
    pub deleted: BTreeSet<String>,
}

/// True for a ref whose push can start runs: a branch, not one of mmm's.
pub fn is_trigger_ref(name: &str) -> bool {
    name.starts_with("refs/heads/") && !name.starts_with("refs/heads/mmm/")
}

/// The spec files (`<specs_dir>/**/*.md`) that `updates` add, change or delete. `hide` are
/// the refs whose commits the other side has already (for a new branch: the remote-tracking
/// refs of the remote pushed to).
pub fn pushed_specs(
    repo: &Repository,
    updates: &[RefUpdate],
    hide: &[Oid],
    specs_dir: &str,
) -> Result<Pushed, git2::Error> {
    let dir = format!("{}/", specs_dir.trim_matches('/'));
    let mut out = Pushed::default();
    for u in updates.iter().filter(|u| !u.new.is_zero()) {
        if !is_trigger_ref(&u.remote_ref) {
            continue;
        }
        let new_tree = repo.find_commit(u.new)?.tree()?;
        let (paths, before) = match (!u.old.is_zero())
            .then(|| repo.find_commit(u.old).ok())
            .flatten()
        {
            Some(old) => {
                let old = old.tree()?;
                (diff_paths(repo, Some(&old), &new_tree)?, vec![old])
            }
            None => new_commits_paths(repo, u.new, hide)?,
        };
        let has = |t: &Tree<'_>, p: &str| t.get_path(std::path::Path::new(p)).is_ok();
        for p in paths
            .into_iter()
            .filter(|p| p.starts_with(&dir) && p.ends_with(".md"))
        {
            if has(&new_tree, &p) {
                out.deleted.remove(&p);
                out.changed.insert(p);
            } else if before.iter().any(|t| has(t, &p)) {
                // Gone now, and there before the push: a spec the push deletes (one added and
                // deleted within the pushed commits never reached the other side).
                out.changed.remove(&p);
                out.deleted.insert(p);
            }
        }
    }
    Ok(out)
}

/// The paths changed by the commits of `tip` that none of `hide` reaches, each against its
/// first parent (a root commit: every file), and the trees the other side had below them (the
/// parents of those commits that are not among them).
fn new_commits_paths<'r>(
    repo: &'r Repository,
    tip: Oid,
    hide: &[Oid],
) -> Result<(Vec<String>, Vec<Tree<'r>>), git2::Error> {
    let mut walk = repo.revwalk()?;
    walk.push(tip)?;
    for h in hide {
        // A hidden tip this repository lacks hides nothing.
        let _ = walk.hide(*h);
    }
    let ids = walk.collect::<Result<BTreeSet<Oid>, _>>()?;
    let mut all = BTreeSet::new();
    let mut below = Vec::new();
    for id in &ids {
        let commit = repo.find_commit(*id)?;
        for p in commit.parents().filter(|p| !ids.contains(&p.id())) {
            below.push(p.tree()?);
        }
        let parent = match commit.parent(0) {
            Ok(p) => Some(p.tree()?),
            Err(_) => None,
        };
        all.extend(diff_paths(repo, parent.as_ref(), &commit.tree()?)?);
    }
    Ok((all.into_iter().collect(), below))
}

fn diff_paths(
    repo: &Repository,
    old: Option<&Tree<'_>>,
    new: &Tree<'_>,
) -> Result<Vec<String>, git2::Error> {
    let diff = repo.diff_tree_to_tree(old, Some(new), None)?;
    let mut out = Vec::new();
    for d in diff.deltas() {
        for f in [d.old_file(), d.new_file()] {
            if let Some(p) = f.path().and_then(|p| p.to_str()) {
                out.push(p.to_owned());
            }
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "1111111111111111111111111111111111111111";
    const Z: &str = "0000000000000000000000000000000000000000";

    #[test]
    fn pre_push_lines_new_deleted_and_odd_sources() {
        let input = format!(
            "refs/heads/main {A} refs/heads/main {Z}\n(delete) {Z} refs/heads/old {A}\nHEAD~1 {A} refs/heads/x {A}\ngarbage\n"
        );
        let u = parse_pre_push(&input);
        assert_eq!(u.len(), 3);
        assert!(u[0].old.is_zero() && !u[0].new.is_zero());
        assert!(u[1].new.is_zero());
        assert_eq!(u[2].remote_ref, "refs/heads/x");
        let r = parse_post_receive(&format!("{Z} {A} refs/heads/main\n"));
        assert_eq!(r[0].remote_ref, "refs/heads/main");
        assert!(r[0].old.is_zero());
    }

    #[test]
    fn only_branches_other_than_mmms_trigger() {
        assert!(is_trigger_ref("refs/heads/main"));
        assert!(!is_trigger_ref("refs/heads/mmm/login"));
        assert!(!is_trigger_ref("refs/notes/commits"));
        assert!(!is_trigger_ref("refs/tags/v1"));
    }
}
