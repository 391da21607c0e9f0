//! Unified diffs inside ```diff / ```patch fences: file headers, hunks, create and delete.
//!
//! Tolerant of what models get wrong: wrong or missing line counts in `@@` headers, a bare
//! `@@ @@`, context lines whose leading space was dropped, missing `a/`/`b/` prefixes.

use super::{Edit, Problem, ProblemKind, excerpt};

/// One line of a hunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HunkLine {
    /// A line that must be present and stays (` ` prefix).
    Context(String),
    /// A line that must be present and goes (`-` prefix).
    Remove(String),
    /// A line that is added (`+` prefix).
    Add(String),
}

/// One hunk of a unified diff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hunk {
    /// The 1-based line in the old file where the hunk starts, as the header says; 0 when the
    /// header gave none (the hunk is then placed by its context alone).
    pub old_start: usize,
    /// The lines, in order.
    pub lines: Vec<HunkLine>,
    /// `\ No newline at end of file` followed the last line of the new side.
    pub no_newline_at_end: bool,
}

impl Hunk {
    /// The lines the old file must contain (context and removed lines).
    pub fn old_lines(&self) -> Vec<&str> {
        self.lines
            .iter()
            .filter_map(|l| match l {
                HunkLine::Context(s) | HunkLine::Remove(s) => Some(s.as_str()),
                HunkLine::Add(_) => None,
            })
            .collect()
    }

    /// The lines the new file will contain in their place (context and added lines).
    pub fn new_lines(&self) -> Vec<&str> {
        self.lines
            .iter()
            .filter_map(|l| match l {
                HunkLine::Context(s) | HunkLine::Add(s) => Some(s.as_str()),
                HunkLine::Remove(_) => None,
            })
            .collect()
    }
}

const DEV_NULL: &str = "/dev/null";

struct FileDiff {
    old: String,
    new: String,
    hunks: Vec<Hunk>,
    line: usize,
}

/// Parses the body of a diff fence. `first_line` is the 1-based response line of `body[0]`.
pub(super) fn parse(body: &[&str], first_line: usize) -> (Vec<Edit>, Vec<Problem>) {
    let mut edits = Vec::new();
    let mut problems = Vec::new();
    let mut cur: Option<FileDiff> = None;
    let mut saw_file = false;
    let mut stray_reported = false;
    let n = body.len();
    let mut i = 0;
    while i < n {
        let l = body[i];
        let line_no = first_line + i;
        if l.starts_with("diff --git ") {
            flush(cur.take(), &mut edits, &mut problems);
            i += 1;
        } else if is_file_header(body, i) {
            flush(cur.take(), &mut edits, &mut problems);
            saw_file = true;
            cur = Some(FileDiff {
                old: header_path(&l[4..], "a/"),
                new: header_path(&body[i + 1][4..], "b/"),
                hunks: Vec::new(),
                line: line_no,
            });
            i += 2;
        } else if l.starts_with("@@") {
            let (hunk, next) = read_hunk(body, i);
            match (&mut cur, hunk) {
                (Some(file), Some(h)) => file.hunks.push(h),
                (None, _) => problems.push(Problem {
                    kind: ProblemKind::BadDiff,
                    message: "hunk without a `--- a/path` / `+++ b/path` header before it".into(),
                    line: line_no,
                }),
                (Some(_), None) => problems.push(Problem {
                    kind: ProblemKind::BadDiff,
                    message: "hunk with no lines".into(),
                    line: line_no,
                }),
            }
            i = next;
        } else if l.starts_with("Binary files ") || l.starts_with("GIT binary patch") {
            problems.push(Problem {
                kind: ProblemKind::BadDiff,
                message: "binary patches are not supported; write text files only".into(),
                line: line_no,
            });
            i += 1;
        } else {
            let meta = [
                "index ",
                "new file mode",
                "deleted file mode",
                "old mode",
                "new mode",
                "similarity index",
                "dissimilarity index",
                "rename from",
                "rename to",
                "copy from",
                "copy to",
            ];
            if !l.trim().is_empty() && !meta.iter().any(|m| l.starts_with(m)) && !stray_reported {
                stray_reported = true;
                problems.push(Problem {
                    kind: ProblemKind::BadDiff,
                    message: format!("unexpected line in diff outside a hunk: {:?}", excerpt(l)),
                    line: line_no,
                });
            }
            i += 1;
        }
    }
    flush(cur.take(), &mut edits, &mut problems);
    if !saw_file {
        problems.push(Problem {
            kind: ProblemKind::BadDiff,
            message: "diff block without any `--- a/path` / `+++ b/path` file header".into(),
            line: first_line.saturating_sub(1).max(1),
        });
    }
    (edits, problems)
}

fn is_file_header(body: &[&str], i: usize) -> bool {
    body[i].starts_with("--- ") && body.get(i + 1).is_some_and(|l| l.starts_with("+++ "))
}

fn header_path(raw: &str, prefix: &str) -> String {
    // `--- a/x\t2024-01-01 ...`: drop the timestamp git and diff(1) may append.
    let p = raw.split('\t').next().unwrap_or(raw).trim();
    let p = p
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(p);
    if p == DEV_NULL {
        return p.to_string();
    }
    p.strip_prefix(prefix).unwrap_or(p).to_string()
}

/// Parses `@@ -a,b +c,d @@`; returns (old_start, old_len) when the numbers are there.
fn hunk_header(l: &str) -> (usize, Option<usize>) {
    let rest = l.trim_start_matches('@').trim_start();
    let Some(old) = rest.strip_prefix('-') else {
        return (0, None);
    };
    let old = old.split_whitespace().next().unwrap_or("");
    let mut parts = old.splitn(2, ',');
    let start = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let len = match parts.next() {
        Some(s) => s.parse().ok(),
        None => Some(1),
    };
    (start, len)
}

fn read_hunk(body: &[&str], at: usize) -> (Option<Hunk>, usize) {
    let (old_start, old_len) = hunk_header(body[at]);
    let mut lines = Vec::new();
    let mut blank_origin = Vec::new();
    let mut no_newline_at_end = false;
    let mut j = at + 1;
    while j < body.len() {
        let m = body[j];
        if m.starts_with("@@") || m.starts_with("diff --git ") || is_file_header(body, j) {
            break;
        }
        let (line, blank) = match m.as_bytes().first() {
            Some(b' ') => (HunkLine::Context(m[1..].to_string()), false),
            Some(b'+') => (HunkLine::Add(m[1..].to_string()), false),
            Some(b'-') => (HunkLine::Remove(m[1..].to_string()), false),
            Some(b'\\') => {
                if matches!(lines.last(), Some(HunkLine::Add(_) | HunkLine::Context(_))) {
                    no_newline_at_end = true;
                }
                j += 1;
                continue;
            }
            // Models (and some editors) drop the single space of an empty context line.
            None => (HunkLine::Context(String::new()), true),
            Some(_) => break,
        };
        // A line after a `\ No newline` marker means the marker was not at the end.
        if !matches!(line, HunkLine::Remove(_)) {
            no_newline_at_end = false;
        }
        lines.push(line);
        blank_origin.push(blank);
        j += 1;
    }
    // Trailing empty lines are usually the blank line before the closing fence, not context;
    // drop them when the header's count says they do not belong.
    while blank_origin.last() == Some(&true) {
        let old_count = lines
            .iter()
            .filter(|l| !matches!(l, HunkLine::Add(_)))
            .count();
        if old_len.is_some_and(|n| old_count > n) || old_len.is_none() {
            lines.pop();
            blank_origin.pop();
        } else {
            break;
        }
    }
    if lines.is_empty() {
        return (None, j);
    }
    (
        Some(Hunk {
            old_start,
            lines,
            no_newline_at_end,
        }),
        j,
    )
}

fn flush(file: Option<FileDiff>, edits: &mut Vec<Edit>, problems: &mut Vec<Problem>) {
    let Some(f) = file else { return };
    if f.new == DEV_NULL {
        if f.old == DEV_NULL {
            problems.push(Problem {
                kind: ProblemKind::BadDiff,
                message: "diff from /dev/null to /dev/null".into(),
                line: f.line,
            });
        } else {
            edits.push(Edit::Delete { path: f.old });
        }
        return;
    }
    if f.old != DEV_NULL && f.old != f.new {
        problems.push(Problem {
            kind: ProblemKind::BadDiff,
            message: format!(
                "renames are not supported ({} -> {}); delete the old file with a diff to \
                 /dev/null and write the new one whole",
                f.old, f.new
            ),
            line: f.line,
        });
        return;
    }
    if f.hunks.is_empty() {
        problems.push(Problem {
            kind: ProblemKind::BadDiff,
            message: format!("diff for {} has no hunks", f.new),
            line: f.line,
        });
        return;
    }
    edits.push(Edit::Patch {
        path: f.new,
        hunks: f.hunks,
    });
}
