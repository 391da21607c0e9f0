//! Records (the lines of a transcript or metrics note) and iteration statuses.
//!
//! Owns: the JSON Lines format of notes and its union merge. Must not touch: git.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The format version written in every record's `v` field.
pub const RECORD_VERSION: u32 = 1;

/// One line of a transcript or metrics note.
///
/// Readers must not rely on line order: sort by `(run, seq)` and dedupe by `id`
/// ([`normalize`] does both).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Format version ([`RECORD_VERSION`]).
    pub v: u32,
    /// What the record is (`turn`, `gate`, `usage`, `iteration`, …).
    pub kind: String,
    /// A unique id (a ULID in production).
    pub id: String,
    /// The run that wrote the record.
    pub run: String,
    /// Sequence number within the run.
    pub seq: u64,
    /// When the record was made, RFC 3339 UTC.
    pub ts: String,
    /// Everything else, flattened into the same JSON object.
    #[serde(flatten)]
    pub data: serde_json::Map<String, serde_json::Value>,
}

impl Record {
    /// The record as one JSON line (no trailing newline). Strings are escaped by JSON, so the
    /// line never contains a newline or a NUL byte.
    pub fn to_line(&self) -> String {
        serde_json::to_string(self)
            .expect("a Record of strings, numbers and JSON values serializes")
    }

    /// Adds a field to `data` (builder style).
    pub fn with(mut self, key: &str, value: impl Into<serde_json::Value>) -> Record {
        self.data.insert(key.to_owned(), value.into());
        self
    }
}

/// Records as JSON Lines, one per line, each line ending in `\n`.
pub fn to_jsonl(records: &[Record]) -> String {
    let mut out = String::new();
    for r in records {
        out.push_str(&r.to_line());
        out.push('\n');
    }
    out
}

/// A line of a note that is not a valid record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub message: String,
}

/// Parses JSON Lines (blank lines are skipped). Fails on the first bad line.
pub fn parse_jsonl(text: &str) -> Result<Vec<Record>, BadLine> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let r: Record = serde_json::from_str(line).map_err(|e| BadLine {
            line: i + 1,
            message: e.to_string(),
        })?;
        out.push(r);
    }
    Ok(out)
}

/// Sorts records by `(run, seq)` (then `ts`, `id`) and drops later duplicates of an `id`.
pub fn normalize(mut records: Vec<Record>) -> Vec<Record> {
    let mut seen = HashSet::new();
    records.retain(|r| seen.insert(r.id.clone()));
    records.sort_by(|a, b| (&a.run, a.seq, &a.ts, &a.id).cmp(&(&b.run, b.seq, &b.ts, &b.id)));
    records
}

/// The union of two notes' lines: every line of `old` is kept as it is (even one that does not
/// parse: a note is never silently shortened), then each line of `new` whose record id is not
/// already present (or which is not identical to a kept line) is appended.
pub fn union_jsonl(old: &str, new: &str) -> String {
    let mut out = String::new();
    let mut ids = HashSet::new();
    let mut lines = HashSet::new();
    for line in old.lines().filter(|l| !l.trim().is_empty()) {
        if let Some(id) = line_id(line) {
            ids.insert(id);
        }
        lines.insert(line.to_owned());
        out.push_str(line);
        out.push('\n');
    }
    for line in new.lines().filter(|l| !l.trim().is_empty()) {
        let dup = match line_id(line) {
            Some(id) => ids.contains(&id),
            None => lines.contains(line),
        };
        if !dup {
            if let Some(id) = line_id(line) {
                ids.insert(id);
            }
            lines.insert(line.to_owned());
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

fn line_id(line: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    v.get("id")?.as_str().map(str::to_owned)
}

/// The outcome of an iteration, as written in the `Mmm-Status` trailer (kebab-case).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum IterationStatus {
    /// Still in progress (used for checkpoints).
    Running,
    /// Gates passed, the spec is not complete yet.
    Passed,
    /// Gates or verify commands failed.
    Failed,
    /// The model said it is done and every gate and criterion passed.
    Complete,
    /// Stopped by a human or a signal; the partial work is recorded.
    Interrupted,
    /// The model asked for a human.
    NeedsReview,
    /// The same failure or diff repeated.
    Stuck,
    /// A budget stopped the run.
    BudgetExceeded,
    /// A critical error (auth, hostile output, …).
    Error,
    /// A status this version does not know, kept verbatim.
    Other(String),
}

impl IterationStatus {
    /// The kebab-case name.
    pub fn as_str(&self) -> &str {
        match self {
            IterationStatus::Running => "running",
            IterationStatus::Passed => "passed",
            IterationStatus::Failed => "failed",
            IterationStatus::Complete => "complete",
            IterationStatus::Interrupted => "interrupted",
            IterationStatus::NeedsReview => "needs-review",
            IterationStatus::Stuck => "stuck",
            IterationStatus::BudgetExceeded => "budget-exceeded",
            IterationStatus::Error => "error",
            IterationStatus::Other(s) => s,
        }
    }
}

impl fmt::Display for IterationStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for IterationStatus {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.trim() {
            "running" => IterationStatus::Running,
            "passed" => IterationStatus::Passed,
            "failed" => IterationStatus::Failed,
            "complete" => IterationStatus::Complete,
            "interrupted" => IterationStatus::Interrupted,
            "needs-review" => IterationStatus::NeedsReview,
            "stuck" => IterationStatus::Stuck,
            "budget-exceeded" => IterationStatus::BudgetExceeded,
            "error" => IterationStatus::Error,
            other => IterationStatus::Other(other.to_owned()),
        })
    }
}

impl Serialize for IterationStatus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for IterationStatus {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(s.parse()
            .unwrap_or_else(|e: std::convert::Infallible| match e {}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str, run: &str, seq: u64) -> Record {
        Record {
            v: 1,
            kind: "turn".into(),
            id: id.into(),
            run: run.into(),
            seq,
            ts: "2026-01-01T00:00:00Z".into(),
            data: Default::default(),
        }
        .with("text", "hi")
    }

    #[test]
    fn roundtrip_and_flatten() {
        let r = rec("a", "r1", 1);
        let line = r.to_line();
        assert_eq!(
            line,
            r#"{"v":1,"kind":"turn","id":"a","run":"r1","seq":1,"ts":"2026-01-01T00:00:00Z","text":"hi"}"#
        );
        assert_eq!(parse_jsonl(&line).expect("parses"), vec![r]);
    }

    #[test]
    fn bad_line_is_located() {
        let text = format!("{}\n\nnot json\n", rec("a", "r", 1).to_line());
        assert_eq!(parse_jsonl(&text).expect_err("bad").line, 3);
    }

    #[test]
    fn union_keeps_everything_once() {
        let old = to_jsonl(&[rec("a", "r", 1), rec("b", "r", 2)]) + "garbage\n";
        let new = to_jsonl(&[rec("b", "r", 2), rec("c", "r", 3)]) + "garbage\n";
        let merged = union_jsonl(&old, &new);
        assert_eq!(merged.lines().count(), 4);
        assert!(merged.contains(r#""id":"c""#));
    }

    #[test]
    fn normalize_sorts_and_dedupes() {
        let out = normalize(vec![rec("b", "r", 2), rec("a", "r", 1), rec("b", "r", 2)]);
        let ids: Vec<_> = out.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
    }

    #[test]
    fn status_names() {
        for s in ["running", "needs-review", "budget-exceeded", "complete"] {
            assert_eq!(
                s.parse::<IterationStatus>()
                    .expect("infallible")
                    .to_string(),
                s
            );
        }
        assert_eq!(
            "weird".parse::<IterationStatus>().expect("infallible"),
            IterationStatus::Other("weird".into())
        );
    }
}
