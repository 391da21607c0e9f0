//! Plan: the specs ready to run now, and the specs a range of commits touched.
//!
//! Owns: the readiness rule of `git mmm plan` (not complete at its current revision, every
//! spec it depends on complete at its current revision) and matching a spec to changed paths
//! (its own file, or a file its context section names). Must not touch: refs, the network.

use std::collections::BTreeMap;
use std::path::Path;

use git2::{Oid, Repository};
use globset::{GlobBuilder, GlobSetBuilder};

use crate::spec::{Spec, SpecId, SpecSet};
use crate::store::{IterationStatus, SpecState};

/// True when `spec` is complete at its current revision in `states` (a spec's last iteration
/// status and the revision it ran against).
fn complete(
    states: &BTreeMap<SpecId, (Option<IterationStatus>, Option<String>)>,
    spec: &Spec,
) -> bool {
    matches!(
        states.get(&spec.id),
        Some((Some(IterationStatus::Complete), Some(rev))) if *rev == spec.revision
    )
}

/// The specs ready to run now, in dependency order: not complete at their current revision,
/// and every spec they depend on complete at its current revision (a dependency with no
/// spec file is not complete).
pub fn ready<'a>(specs: &'a SpecSet, states: &[SpecState]) -> Vec<&'a Spec> {
    let states: BTreeMap<SpecId, (Option<IterationStatus>, Option<String>)> = states
        .iter()
        .map(|s| (s.spec.clone(), (s.status.clone(), s.spec_revision.clone())))
        .collect();
    specs
        .order()
        .iter()
        .filter_map(|id| specs.get(id))
        .filter(|s| !complete(&states, s))
        .filter(|s| {
            s.depends_on
                .iter()
                .all(|d| specs.get(d).is_some_and(|d| complete(&states, d)))
        })
        .collect()
}

/// True when one of `changed` (paths relative to the repository root, `/`-separated) is the
/// spec's file or matches a glob of its context section.
pub fn touched(spec: &Spec, root: &Path, changed: &[String]) -> bool {
    let own = spec.path.strip_prefix(root).unwrap_or(&spec.path);
    let own = own.to_string_lossy().replace('\\', "/");
    let mut globs = GlobSetBuilder::new();
    for c in &spec.context {
        let pattern = c.trim_start_matches("./").trim_end_matches('/');
        for p in [pattern.to_owned(), format!("{pattern}/**")] {
            if let Ok(g) = GlobBuilder::new(&p).literal_separator(true).build() {
                globs.add(g);
            }
        }
    }
    let globs = globs.build().unwrap_or_else(|_| globset::GlobSet::empty());
    changed.iter().any(|p| *p == own || globs.is_match(p))
}

/// The paths that differ between the trees of `from` and `to` (`None`, or the zero id: a new
/// branch, whose every file counts as changed).
pub fn changed_paths(
    repo: &Repository,
    from: Option<Oid>,
    to: Oid,
) -> Result<Vec<String>, git2::Error> {
    let tree_of = |oid: Oid| repo.find_object(oid, None)?.peel_to_tree();
    let new = tree_of(to)?;
    let old = match from.filter(|o| !o.is_zero()) {
        Some(o) => Some(tree_of(o)?),
        None => None,
    };
    let diff = repo.diff_tree_to_tree(old.as_ref(), Some(&new), None)?;
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
    use std::time::UNIX_EPOCH;

    use super::*;

    fn spec(id: &str, front: &str, context: &str) -> Spec {
        let text = format!(
            "+++\n{front}\n+++\n\n# {id}\n\n## Objective\n\nDo {id}.\n\n## Acceptance criteria\n\n- {id} works.\n\n## Context\n\n{context}\n"
        );
        Spec::parse(Path::new(&format!("specs/{id}.md")), text.as_bytes()).expect("a spec")
    }

    fn state(spec: &Spec, status: IterationStatus, revision: &str) -> SpecState {
        SpecState {
            spec: spec.id.clone(),
            tip: Oid::ZERO_SHA1,
            iteration: Some(1),
            status: Some(status),
            run: None,
            spec_revision: Some(revision.to_owned()),
            base: None,
            time: UNIX_EPOCH,
        }
    }

    fn ids(v: &[&Spec]) -> Vec<String> {
        v.iter().map(|s| s.id.to_string()).collect()
    }

    #[test]
    fn ready_means_incomplete_with_every_dependency_complete() {
        let a = spec("a", "", "");
        let b = spec("b", "depends_on = [\"a\"]", "");
        let c = spec("c", "depends_on = [\"b\"]", "");
        let set = SpecSet::new(vec![c.clone(), b.clone(), a.clone()]).expect("set");
        assert_eq!(ids(&ready(&set, &[])), ["a"]);
        // a complete at its revision: b is next.
        let done_a = state(&a, IterationStatus::Complete, &a.revision);
        assert_eq!(ids(&ready(&set, std::slice::from_ref(&done_a))), ["b"]);
        // a complete at an older revision: a again, b waits.
        let stale_a = state(&a, IterationStatus::Complete, "0000");
        assert_eq!(ids(&ready(&set, &[stale_a])), ["a"]);
        // a failed: still a.
        let failed_a = state(&a, IterationStatus::Failed, &a.revision);
        assert_eq!(ids(&ready(&set, &[failed_a])), ["a"]);
        // a and b complete: c.
        let done_b = state(&b, IterationStatus::Complete, &b.revision);
        assert_eq!(ids(&ready(&set, &[done_a, done_b])), ["c"]);
    }

    #[test]
    fn touched_by_its_file_or_its_context() {
        let s = spec("a", "", "- `src/auth/`\n- `docs/*.md`\n");
        let root = Path::new("");
        let t = |p: &[&str]| {
            let v: Vec<String> = p.iter().map(|s| (*s).to_owned()).collect();
            touched(&s, root, &v)
        };
        assert!(t(&["specs/a.md"]));
        assert!(t(&["src/auth/login.rs"]));
        assert!(t(&["docs/x.md"]));
        assert!(!t(&["docs/sub/x.md", "src/main.rs", "specs/b.md"]));
        assert!(!t(&[]));
    }
}
