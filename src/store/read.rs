//! Reading: what the CLI shows and the engine resumes from, as plain data.
//!
//! Owns: the history of a spec's branch (a first-parent walk over its iteration commits'
//! trailers), one iteration with its notes, the notes' records, the system prompts a
//! transcript refers to instead of repeating them, and the state of every spec from its branch
//! tip alone. Nothing here writes.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use git2::{ErrorCode, Oid};

use super::trailers::{Trailers, key};
use super::{
    IterationStatus, Record, Result, Store, StoreError, branch_ref, metrics_ref, record,
    transcripts_ref,
};
use crate::spec::SpecId;

/// One iteration commit, read from its trailers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Iteration {
    /// The spec.
    pub spec: SpecId,
    /// The iteration number.
    pub n: u32,
    /// The commit.
    pub commit: Oid,
    /// Its first parent.
    pub parent: Option<Oid>,
    /// Its tree.
    pub tree: Oid,
    /// The run that wrote it.
    pub run: Option<String>,
    /// Its status (`None` if the trailer is missing).
    pub status: Option<IterationStatus>,
    /// The spec file's blob id.
    pub spec_revision: Option<String>,
    /// The attempt's base from the `Mmm-Base` trailer (`None` on commits written before it).
    pub base: Option<Oid>,
    /// The commit subject.
    pub summary: String,
    /// The commit time.
    pub time: SystemTime,
}

/// An iteration with its notes.
#[derive(Debug, Clone, PartialEq)]
pub struct IterationDetail {
    /// The iteration.
    pub iteration: Iteration,
    /// The full commit message.
    pub message: String,
    /// The transcript records, sorted by `(run, seq)` and deduped; `None` if the note is missing.
    pub transcript: Option<Vec<Record>>,
    /// The metrics records, likewise.
    pub metrics: Option<Vec<Record>>,
}

/// The state of one spec, read from its branch tip's trailers only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecState {
    /// The spec.
    pub spec: SpecId,
    /// The branch tip.
    pub tip: Oid,
    /// The last iteration number (`None` if the tip is not an mmm iteration commit).
    pub iteration: Option<u32>,
    /// The last status.
    pub status: Option<IterationStatus>,
    /// The run that wrote the tip.
    pub run: Option<String>,
    /// The spec revision the tip was made from.
    pub spec_revision: Option<String>,
    /// The attempt's base, from the tip's `Mmm-Base` trailer (`None` on older commits: see
    /// [`Store::base_below`]).
    pub base: Option<Oid>,
    /// The tip's commit time.
    pub time: SystemTime,
}

/// The key of a prompt record's `system` object that refers to an earlier iteration's
/// transcript instead of repeating its system prompt: `{"same_as": "<commit>", "iteration": k}`.
/// [`Store::resolve_prompts`] follows it.
pub const SYSTEM_SAME_AS: &str = "same_as";

impl Store {
    /// The trailers of a commit, and its iteration number if it is an iteration of `spec`.
    pub(super) fn trailers_of(&self, oid: Oid) -> Result<(Trailers, Option<u32>)> {
        let c = self
            .repo
            .find_commit(oid)
            .map_err(StoreError::git(format!("read commit {oid}")))?;
        let t = Trailers::parse(&String::from_utf8_lossy(c.message_bytes()));
        let n = t.iteration();
        Ok((t, n))
    }

    /// The iteration `c` is, if its trailers name `spec` and an iteration number.
    pub(super) fn iteration_of(&self, spec: &SpecId, c: &git2::Commit<'_>) -> Option<Iteration> {
        let t = Trailers::parse(&String::from_utf8_lossy(c.message_bytes()));
        if t.get(key::SPEC) != Some(spec.as_str()) {
            return None;
        }
        let n = t.iteration()?;
        Some(Iteration {
            spec: spec.clone(),
            n,
            commit: c.id(),
            parent: c.parent_id(0).ok(),
            tree: c.tree_id(),
            run: t.get(key::RUN).map(str::to_owned),
            status: t.get(key::STATUS).map(|s| {
                s.parse()
                    .unwrap_or_else(|e: std::convert::Infallible| match e {})
            }),
            spec_revision: t.get(key::SPEC_REVISION).map(str::to_owned),
            base: t.get(key::BASE).and_then(|b| Oid::from_str(b).ok()),
            summary: String::from_utf8_lossy(c.summary_bytes().unwrap_or_default()).into_owned(),
            time: git_time(c.time()),
        })
    }

    /// The iterations on the spec's branch, oldest first: a first-parent walk from the tip
    /// that stops at the first commit without this spec's trailers (the base).
    pub fn history(&self, spec: &SpecId) -> Result<Vec<Iteration>> {
        let tip = self
            .ref_target(&branch_ref(spec))?
            .ok_or_else(|| StoreError::NoBranch { spec: spec.clone() })?;
        let mut out = Vec::new();
        let mut cur = Some(tip);
        while let Some(oid) = cur {
            let c = self
                .repo
                .find_commit(oid)
                .map_err(StoreError::git(format!("read commit {oid}")))?;
            match self.iteration_of(spec, &c) {
                // Numbers count down by one to iteration 1; an older chain of the same spec
                // below it (a branch merged into the base and deleted) is not this branch.
                Some(it)
                    if out
                        .last()
                        .is_none_or(|newer: &Iteration| newer.n == it.n + 1) =>
                {
                    cur = if it.n <= 1 { None } else { it.parent };
                    out.push(it);
                }
                _ => break,
            }
        }
        out.reverse();
        Ok(out)
    }

    /// One iteration of the spec's branch with its notes.
    pub fn iteration(&self, spec: &SpecId, n: u32) -> Result<IterationDetail> {
        let history = self.history(spec)?;
        let Some(it) = history.iter().find(|i| i.n == n).cloned() else {
            return Err(no_such_iteration(spec, n, &history));
        };
        let c = self
            .repo
            .find_commit(it.commit)
            .map_err(StoreError::git("read the iteration commit"))?;
        let message = String::from_utf8_lossy(c.message_bytes()).into_owned();
        let transcript = self.read_note(&transcripts_ref(spec), it.commit)?;
        let metrics = self.read_note(&metrics_ref(spec), it.commit)?;
        Ok(IterationDetail {
            iteration: it,
            message,
            transcript,
            metrics,
        })
    }

    /// Replaces, in the `prompt` records of `records`, a system prompt written as a reference
    /// to an earlier iteration's (`{"same_as": "<commit>", "iteration": k}`, see
    /// [`SYSTEM_SAME_AS`]) by the blocks that iteration's transcript holds, and notes where
    /// they came from in `system_from`. A reference whose target cannot be read is left as it
    /// is.
    pub fn resolve_prompts(&self, spec: &SpecId, records: &mut [Record]) -> Result<()> {
        for r in records.iter_mut().filter(|r| r.kind == "prompt") {
            let Some(target) = r
                .data
                .get("system")
                .and_then(|s| s.get(SYSTEM_SAME_AS))
                .and_then(serde_json::Value::as_str)
                .and_then(|s| Oid::from_str(s).ok())
            else {
                continue;
            };
            let Some(earlier) = self.read_note(&transcripts_ref(spec), target)? else {
                continue;
            };
            let blocks = earlier
                .iter()
                .filter(|e| e.kind == "prompt")
                .find_map(|e| e.data.get("system").filter(|s| s.is_array()).cloned());
            if let Some(blocks) = blocks
                && let Some(reference) = r.data.insert("system".into(), blocks)
            {
                r.data.insert("system_from".into(), reference);
            }
        }
        Ok(())
    }

    /// The records of a note, sorted and deduped; `None` if there is no note.
    pub fn read_note(&self, notes_ref: &str, commit: Oid) -> Result<Option<Vec<Record>>> {
        let note = match self.repo.find_note(Some(notes_ref), commit) {
            Ok(n) => n,
            Err(e) if e.code() == ErrorCode::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::git(format!("read the note {notes_ref}"))(e)),
        };
        let text = String::from_utf8_lossy(note.message_bytes());
        let records = record::parse_jsonl(&text).map_err(|b| StoreError::BadNote {
            notes_ref: notes_ref.to_owned(),
            commit,
            line: b.line,
            message: b.message,
        })?;
        Ok(Some(record::normalize(records)))
    }

    /// The state of every spec that has a branch, sorted by spec id. Reads only each tip
    /// commit (no history walk).
    pub fn status_all(&self) -> Result<Vec<SpecState>> {
        let refs = self
            .repo
            .references_glob("refs/heads/mmm/*")
            .map_err(StoreError::git("list the mmm branches"))?;
        let mut out = Vec::new();
        for r in refs {
            let r = r.map_err(StoreError::git("list the mmm branches"))?;
            let Some(name) = r
                .name()
                .ok()
                .and_then(|n| n.strip_prefix("refs/heads/mmm/"))
            else {
                continue;
            };
            let Ok(spec) = SpecId::new(name) else {
                continue;
            };
            let c = r
                .peel_to_commit()
                .map_err(StoreError::git(format!("read the tip of mmm/{spec}")))?;
            let it = self.iteration_of(&spec, &c);
            out.push(SpecState {
                tip: c.id(),
                iteration: it.as_ref().map(|i| i.n),
                status: it.as_ref().and_then(|i| i.status.clone()),
                run: it.as_ref().and_then(|i| i.run.clone()),
                base: it.as_ref().and_then(|i| i.base),
                spec_revision: it.and_then(|i| i.spec_revision),
                time: git_time(c.time()),
                spec,
            });
        }
        out.sort_by(|a, b| a.spec.cmp(&b.spec));
        Ok(out)
    }
}

fn git_time(t: git2::Time) -> SystemTime {
    let secs = t.seconds();
    if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    }
}

/// The error for an iteration `n` that `history` (a spec's branch) does not hold, naming the
/// iterations it does hold.
pub(super) fn no_such_iteration(spec: &SpecId, n: u32, history: &[Iteration]) -> StoreError {
    let range = match (history.first(), history.last()) {
        (Some(a), Some(b)) => format!("{}..={}", a.n, b.n),
        _ => "none".to_owned(),
    };
    StoreError::NoSuchIteration {
        spec: spec.clone(),
        n,
        range,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn it(n: u32) -> Iteration {
        Iteration {
            spec: SpecId::new("x").expect("a valid spec id"),
            n,
            commit: Oid::ZERO_SHA1,
            parent: None,
            tree: Oid::ZERO_SHA1,
            run: None,
            status: None,
            spec_revision: None,
            base: None,
            summary: String::new(),
            time: UNIX_EPOCH,
        }
    }

    #[test]
    fn a_missing_iteration_names_the_range_there_is() {
        let spec = SpecId::new("x").expect("a valid spec id");
        let err = no_such_iteration(&spec, 7, &[it(2), it(3), it(4)]);
        assert_eq!(
            err.to_string(),
            "spec `x` has no iteration 7 (its branch has iterations 2..=4); see `git mmm log x`"
        );
        let err = no_such_iteration(&spec, 1, &[]);
        assert!(err.to_string().contains("(its branch has iterations none)"));
    }

    #[test]
    fn git_times_before_the_epoch_stay_before_it() {
        let t = |s| git_time(git2::Time::new(s, 0));
        assert_eq!(t(90), UNIX_EPOCH + Duration::from_secs(90));
        assert_eq!(t(-90), UNIX_EPOCH - Duration::from_secs(90));
    }
}
