//! The set of specs of a repository and their dependency graph: unique ids, every
//! `depends_on` resolved, no cycles, and a deterministic topological order.
//!
//! Owns: ordering for scheduling. Must not touch: files, git.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use super::error::{SpecError, SpecErrorKind, SpecErrors};
use super::{Priority, Spec, SpecId};

/// A checked set of specs: ids are unique, every dependency exists, and there are no
/// cycles.
#[derive(Debug, Clone)]
pub struct SpecSet {
    specs: BTreeMap<SpecId, Spec>,
    order: Vec<SpecId>,
}

impl SpecSet {
    /// Checks ids and dependencies of `specs` (in file order, which decides which file of a
    /// duplicate pair is reported) and computes the order. Reports every problem found.
    pub fn new(specs: Vec<Spec>) -> Result<SpecSet, SpecErrors> {
        match SpecSet::sound(specs, &[]) {
            (set, errors) if errors.is_empty() => Ok(set),
            (_, errors) => Err(SpecErrors(errors)),
        }
    }

    /// A set without specs.
    pub fn empty() -> SpecSet {
        SpecSet {
            specs: BTreeMap::new(),
            order: Vec::new(),
        }
    }

    /// The sound part of `specs` and the problems of the rest: a second spec with an id
    /// already taken, a spec whose dependency is missing (or is one of the `broken` files,
    /// which did not parse), the specs of a cycle, and every spec that depends on one left out
    /// are left out, each with an error; the others are ordered.
    pub fn sound(specs: Vec<Spec>, broken: &[PathBuf]) -> (SpecSet, Vec<SpecError>) {
        let mut errors = Vec::new();
        let mut map: BTreeMap<SpecId, Spec> = BTreeMap::new();
        for spec in specs {
            if let Some(first) = map.get(&spec.id) {
                errors.push(SpecError::new(
                    &spec.path,
                    None,
                    SpecErrorKind::DuplicateId {
                        id: spec.id.to_string(),
                        other: first.path.display().to_string(),
                    },
                ));
                continue;
            }
            map.insert(spec.id.clone(), spec);
        }
        let is_broken = |id: &SpecId| {
            broken
                .iter()
                .any(|p| p.file_stem().is_some_and(|s| s == id.as_str()))
        };
        // Leave out, until none is left to leave out, every spec with a dependency that is
        // not in the set; a dependency left out earlier is broken, not missing.
        let mut left_out: BTreeSet<SpecId> = BTreeSet::new();
        loop {
            let mut out = Vec::new();
            for spec in map.values() {
                if let Some(dep) = spec.depends_on.iter().find(|d| !map.contains_key(*d)) {
                    let kind = if left_out.contains(dep) || is_broken(dep) {
                        SpecErrorKind::BrokenDependency {
                            spec: spec.id.to_string(),
                            broken: dep.to_string(),
                        }
                    } else {
                        SpecErrorKind::MissingDependency {
                            spec: spec.id.to_string(),
                            missing: dep.to_string(),
                        }
                    };
                    errors.push(SpecError::new(&spec.path, spec.depends_on_line, kind));
                    out.push(spec.id.clone());
                }
            }
            if out.is_empty() {
                break;
            }
            for id in out {
                map.remove(&id);
                left_out.insert(id);
            }
        }
        let (order, cycles) = topo_order(&map);
        let in_cycle: BTreeSet<String> = cycles
            .iter()
            .flat_map(|e| match &e.kind {
                SpecErrorKind::Cycle(ids) => ids.clone(),
                _ => Vec::new(),
            })
            .collect();
        errors.extend(cycles);
        let ordered: BTreeSet<&SpecId> = order.iter().collect();
        let stuck: BTreeSet<SpecId> = map
            .keys()
            .filter(|id| !ordered.contains(id))
            .cloned()
            .collect();
        for id in &stuck {
            let spec = &map[id];
            // A spec behind a cycle, not in it: its dependency is left out.
            if !in_cycle.contains(id.as_str())
                && let Some(dep) = spec.depends_on.iter().find(|d| stuck.contains(*d))
            {
                errors.push(SpecError::new(
                    &spec.path,
                    spec.depends_on_line,
                    SpecErrorKind::BrokenDependency {
                        spec: id.to_string(),
                        broken: dep.to_string(),
                    },
                ));
            }
        }
        for id in &stuck {
            map.remove(id);
        }
        (SpecSet { specs: map, order }, errors)
    }

    /// The spec with this id.
    pub fn get(&self, id: &SpecId) -> Option<&Spec> {
        self.specs.get(id)
    }

    /// The spec with this id, by string.
    pub fn get_str(&self, id: &str) -> Option<&Spec> {
        SpecId::new(id).ok().and_then(|id| self.specs.get(&id))
    }

    /// Every spec, by id.
    pub fn iter(&self) -> impl Iterator<Item = &Spec> {
        self.specs.values()
    }

    /// How many specs there are.
    pub fn len(&self) -> usize {
        self.specs.len()
    }

    /// Whether there are no specs.
    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }

    /// The ids in dependency order: every spec comes after everything it depends on. Among
    /// specs that are ready at the same time, higher priority comes first, then the smaller
    /// id.
    pub fn order(&self) -> &[SpecId] {
        &self.order
    }

    /// Everything `id` depends on, directly or transitively, in [`SpecSet::order`]. Empty for
    /// an unknown id.
    pub fn dependencies_of(&self, id: &SpecId) -> Vec<&SpecId> {
        let mut seen: BTreeSet<&SpecId> = BTreeSet::new();
        let mut stack: Vec<&SpecId> = match self.specs.get(id) {
            Some(spec) => spec.depends_on.iter().collect(),
            None => Vec::new(),
        };
        while let Some(dep) = stack.pop() {
            if seen.insert(dep)
                && let Some(spec) = self.specs.get(dep)
            {
                stack.extend(spec.depends_on.iter());
            }
        }
        self.order.iter().filter(|i| seen.contains(i)).collect()
    }

    /// The specs that depend on `id` directly, by id.
    pub fn dependents_of(&self, id: &SpecId) -> Vec<&SpecId> {
        self.specs
            .values()
            .filter(|s| s.depends_on.contains(id))
            .map(|s| &s.id)
            .collect()
    }
}

impl<'a> IntoIterator for &'a SpecSet {
    type Item = &'a Spec;
    type IntoIter = std::collections::btree_map::Values<'a, SpecId, Spec>;

    fn into_iter(self) -> Self::IntoIter {
        self.specs.values()
    }
}

/// Kahn's algorithm with a ready set ordered by (priority, id), ignoring dependencies that
/// are not in `map`: the order of every spec not in or behind a cycle, and each distinct
/// cycle once, starting at its smallest id.
fn topo_order(map: &BTreeMap<SpecId, Spec>) -> (Vec<SpecId>, Vec<SpecError>) {
    let mut missing: BTreeMap<&SpecId, usize> = BTreeMap::new();
    let mut dependents: BTreeMap<&SpecId, Vec<&SpecId>> = BTreeMap::new();
    for spec in map.values() {
        // Missing dependencies are reported separately; they cannot be part of a cycle.
        let deps: BTreeSet<&SpecId> = spec
            .depends_on
            .iter()
            .filter(|d| map.contains_key(*d))
            .collect();
        missing.insert(&spec.id, deps.len());
        for dep in deps {
            dependents.entry(dep).or_default().push(&spec.id);
        }
    }
    let mut ready: BTreeSet<(Priority, &SpecId)> = missing
        .iter()
        .filter(|(_, n)| **n == 0)
        .map(|(id, _)| (map[*id].priority, *id))
        .collect();
    let mut order = Vec::with_capacity(map.len());
    while let Some((_, id)) = ready.pop_first() {
        order.push(id.clone());
        for dependent in dependents.get(id).into_iter().flatten() {
            if let Some(n) = missing.get_mut(dependent) {
                *n -= 1;
                if *n == 0 {
                    ready.insert((map[*dependent].priority, dependent));
                }
            }
        }
    }
    if order.len() == map.len() {
        return (order, Vec::new());
    }
    // Every spec left has a dependency that is also left, so walking dependencies from any
    // of them must come back to a spec already visited: that closes a cycle.
    let left: BTreeSet<&SpecId> = missing
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(id, _)| *id)
        .collect();
    let mut reported: BTreeSet<&SpecId> = BTreeSet::new();
    let mut errors = Vec::new();
    for &start in &left {
        let mut path: Vec<&SpecId> = vec![start];
        let cycle = loop {
            let here = path[path.len() - 1];
            let next = map[here]
                .depends_on
                .iter()
                .filter(|d| left.contains(d))
                .min()
                .expect("a spec left after Kahn has a dependency that is left too");
            if let Some(pos) = path.iter().position(|p| *p == next) {
                break path.split_off(pos);
            }
            path.push(next);
        };
        if cycle.iter().any(|id| reported.contains(id)) {
            continue;
        }
        reported.extend(cycle.iter().copied());
        let min = cycle
            .iter()
            .enumerate()
            .min_by_key(|(_, id)| **id)
            .map_or(0, |(i, _)| i);
        let mut names: Vec<String> = cycle[min..]
            .iter()
            .chain(cycle[..min].iter())
            .map(|id| id.to_string())
            .collect();
        names.push(names[0].clone());
        let first = &map[cycle[min]];
        errors.push(SpecError::new(
            &first.path,
            first.depends_on_line,
            SpecErrorKind::Cycle(names),
        ));
    }
    (order, errors)
}
