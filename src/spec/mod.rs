//! Specs: discovery of `specs/**/*.md`, parsing (front matter, title, objective, acceptance
//! criteria with `verify` commands, context, notes), slug validation, and the dependency graph.
//!
//! Owns: the [`Spec`] model, [`SpecSet`] and their errors. Must not touch: git refs, the
//! network, the terminal.
//!
//! A spec file looks like this (front matter is optional; `---` YAML works too):
//!
//! ```markdown
//! +++
//! priority = "high"
//! depends_on = ["session"]
//! +++
//! # Login page
//!
//! ## Objective
//! Users can log in.
//!
//! ## Acceptance criteria
//! - Login works, verify: `cargo test login`
//! - Logout works
//!   - verify: cargo test logout
//!
//! ## Context
//! - `src/auth/**/*.rs`
//! ```

mod body;
mod error;
mod front;
mod graph;
mod load;
mod yaml;

use std::path::{Path, PathBuf};
use std::time::Duration;

use error::Problem;
pub use error::{SpecError, SpecErrorKind, SpecErrors};
pub use graph::SpecSet;
pub use load::{Discovered, MAX_SPEC_BYTES, discover, load_file};

use std::fmt;

/// The most iterations a spec (front matter `max_iterations`) or the configuration
/// (`[loop] max_iterations`, `--max-iterations`) may ask for: a bound, so that a typo of many
/// digits is an error, not a loop without end.
pub const MAX_ITERATIONS: u64 = 10_000;

/// A spec's identifier: a slug (`[a-z0-9][a-z0-9._-]*`) that names its branch
/// `refs/heads/mmm/<id>` and its notes refs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct SpecId(String);

impl SpecId {
    /// Validates a slug. On failure the error is a suggested valid slug, if one can be made.
    pub fn new(s: &str) -> Result<SpecId, Option<String>> {
        if is_slug(s) {
            Ok(SpecId(s.to_owned()))
        } else {
            Err(suggest_slug(s))
        }
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SpecId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

impl AsRef<str> for SpecId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// How urgent a spec is. Orders scheduling: `critical` first, `low` last.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// Run before everything else.
    Critical,
    /// Run before medium and low.
    High,
    /// The default.
    #[default]
    Medium,
    /// Run last.
    Low,
}

impl Priority {
    /// The lower-case name, as written in front matter.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Critical => "critical",
            Priority::High => "high",
            Priority::Medium => "medium",
            Priority::Low => "low",
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One acceptance criterion: a top-level item of the acceptance-criteria list.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Criterion {
    /// The item's text, without checkbox and without the `verify:` part.
    pub text: String,
    /// The command that checks it, from a nested `verify: …` item or an inline code span
    /// after `verify:`.
    pub verify: Option<String>,
    /// The 1-based line of the item in the spec file.
    pub line: usize,
}

/// A parsed spec: front matter, the known sections of the body, and the whole text.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Spec {
    /// The front-matter `id`, or the file stem.
    pub id: SpecId,
    /// The file, relative to the repository root.
    pub path: PathBuf,
    /// The git blob id (hex) of the file's bytes: a changed file is a new revision.
    pub revision: String,
    /// Scheduling priority (front matter `priority`, default `medium`).
    pub priority: Priority,
    /// Specs that must be complete before this one (front matter `depends_on`).
    pub depends_on: Vec<SpecId>,
    /// Per-spec iteration limit (front matter `max_iterations`); `None`: the configured one.
    pub max_iterations: Option<u32>,
    /// Model override (front matter `model`).
    pub model: Option<String>,
    /// Agent override (front matter `agent`).
    pub agent: Option<String>,
    /// Labels for pull requests and filtering (front matter `labels`).
    pub labels: Vec<String>,
    /// Wall-clock limit for a run (front matter `timeout`, e.g. `"30m"`).
    #[serde(serialize_with = "ser_duration")]
    pub timeout: Option<Duration>,
    /// The text of the first `# ` heading.
    pub title: String,
    /// The objective section's markdown.
    pub objective: String,
    /// The acceptance criteria, in order.
    pub criteria: Vec<Criterion>,
    /// Paths and globs from the context section, relative to the repository root.
    pub context: Vec<String>,
    /// Every other section (and text before the first section), as markdown.
    pub notes: String,
    /// The whole file.
    #[serde(skip)]
    pub content: String,
    /// The line of `depends_on` in the front matter, for dependency errors.
    #[serde(skip)]
    depends_on_line: Option<usize>,
}

fn ser_duration<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&humantime::format_duration(*d).to_string()),
        None => s.serialize_none(),
    }
}

impl Spec {
    /// Parses a spec from its bytes. `path` (relative to the repository root) names the file
    /// in errors and gives the id when the front matter has none. Every problem found is
    /// reported, in file order, as a compiler does: a broken front matter does not hide the
    /// problems of the body.
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Spec, SpecErrors> {
        let err = |line: Option<usize>, kind| SpecError::new(path, line, kind);
        if bytes.contains(&0) {
            return Err(err(None, SpecErrorKind::Binary).into());
        }
        let content = match std::str::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => {
                let line = bytes[..e.valid_up_to()]
                    .iter()
                    .filter(|&&b| b == b'\n')
                    .count()
                    + 1;
                return Err(err(Some(line), SpecErrorKind::NotUtf8).into());
            }
        };
        if content.trim_start_matches('\u{feff}').trim().is_empty() {
            return Err(err(None, SpecErrorKind::Empty).into());
        }
        let mut problems = Vec::new();
        let split = front::split(content).map_err(|p| SpecErrors(vec![located(path, p)]))?;
        let front = match &split.front {
            Some(raw) => {
                let (front, mut found) = front::parse(raw);
                problems.append(&mut found);
                front
            }
            None => front::Front::default(),
        };
        let (body, mut found) = body::parse(content, split.body_start);
        problems.append(&mut found);
        let (line, column) = body.title_at;
        if !body.title.is_empty() && body.objective.trim().is_empty() {
            problems.push(Problem::at(
                line,
                Some(column),
                SpecErrorKind::MissingObjective,
            ));
        }
        if !body.title.is_empty() && body.criteria.is_empty() && !front.no_criteria {
            problems.push(Problem::at(
                line,
                Some(column),
                SpecErrorKind::MissingCriteria,
            ));
        }
        let id = spec_id(path, &front, &mut problems);
        let mut errors: Vec<SpecError> = Vec::new();
        let revision = match git2::Oid::hash_object(git2::ObjectType::Blob, bytes) {
            Ok(oid) => oid.to_string(),
            Err(e) => {
                errors.push(err(None, SpecErrorKind::Io(e.message().to_owned())));
                String::new()
            }
        };
        problems.sort_by_key(|p| (p.line, p.column));
        errors.splice(0..0, problems.into_iter().map(|p| located(path, p)));
        match id {
            Some(id) if errors.is_empty() => Ok(Spec {
                id,
                path: path.to_owned(),
                revision,
                priority: front.priority,
                depends_on: front.depends_on,
                max_iterations: front.max_iterations,
                model: front.model,
                agent: front.agent,
                labels: front.labels,
                timeout: front.timeout,
                title: body.title,
                objective: body.objective,
                criteria: body.criteria,
                context: body.context,
                notes: body.notes,
                content: content.to_owned(),
                depends_on_line: front.depends_on_line,
            }),
            _ => Err(SpecErrors(errors)),
        }
    }
}

/// A problem of the file at `path` as an error naming it.
fn located(path: &Path, p: Problem) -> SpecError {
    SpecError::new(path, Some(p.line).filter(|l| *l > 0), p.kind).with_column(p.column)
}

/// The spec's id: the front matter's `id`, or the file stem. A bad one is a problem (with no
/// line when it comes from the file name, which is put first).
fn spec_id(path: &Path, front: &front::Front, problems: &mut Vec<Problem>) -> Option<SpecId> {
    match &front.id {
        Some((id, line)) => match SpecId::new(id) {
            Ok(id) => Some(id),
            Err(suggestion) => {
                problems.push(Problem::at(
                    *line,
                    None,
                    SpecErrorKind::BadId {
                        id: id.clone(),
                        from_file_name: false,
                        suggestion,
                    },
                ));
                None
            }
        },
        None => {
            let stem = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            match SpecId::new(&stem) {
                Ok(id) => Some(id),
                Err(suggestion) => {
                    // Line 0 sorts first and is shown without a line.
                    problems.push(Problem::at(
                        0,
                        None,
                        SpecErrorKind::BadId {
                            id: stem,
                            from_file_name: true,
                            suggestion,
                        },
                    ));
                    None
                }
            }
        }
    }
}

fn is_slug(s: &str) -> bool {
    let mut chars = s.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    first_ok
        && s.len() <= 100
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
        && !s.ends_with('.')
        && !s.ends_with(".lock")
        && !s.contains("..")
}

/// Lower-cases, turns runs of other characters into `-`, trims leading and trailing
/// separators. `None` when nothing usable is left.
fn suggest_slug(s: &str) -> Option<String> {
    let mut out = String::new();
    for c in s.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let out = out
        .trim_matches(|c| c == '-' || c == '_')
        .chars()
        .take(100)
        .collect::<String>();
    let out = out.trim_end_matches('-').to_owned();
    is_slug(&out).then_some(out)
}

#[cfg(test)]
mod id_tests {
    use super::*;

    #[test]
    fn slugs() {
        assert!(SpecId::new("login-flow").is_ok());
        assert!(SpecId::new("v1.2_x").is_ok());
        assert_eq!(SpecId::new("Login Flow!"), Err(Some("login-flow".into())));
        assert_eq!(SpecId::new("-x"), Err(Some("x".into())));
        assert_eq!(SpecId::new("a..b"), Err(Some("a-b".into())));
        assert_eq!(SpecId::new("!!!"), Err(None));
        assert!(SpecId::new("x.lock").is_err());
        assert!(SpecId::new("").is_err());
    }
}

#[cfg(test)]
mod parse_tests {
    use super::*;

    fn parse(s: &str) -> Result<Spec, SpecError> {
        parse_all(s).map_err(|e| e[0].clone())
    }

    fn parse_all(s: &str) -> Result<Spec, Vec<SpecError>> {
        Spec::parse(Path::new("specs/x.md"), s.as_bytes()).map_err(|e| e.0)
    }

    /// An objective and a criterion, so that a test is about something else.
    const REST: &str = "## Objective\nDo it.\n## Acceptance criteria\n- done\n";

    #[test]
    fn byte_order_mark_is_tolerated() {
        let s = parse(&format!("\u{feff}# Title\n{REST}")).expect("bom, no front matter");
        assert_eq!(s.title, "Title");
        let s = parse(&format!(
            "\u{feff}+++\npriority = \"low\"\n+++\n# Title\n{REST}"
        ))
        .expect("bom + toml");
        assert_eq!(s.priority, Priority::Low);
    }

    #[test]
    fn every_problem_is_reported_at_once_with_line_and_column() {
        let text = "+++\nprority = \"high\"\n  timeout = \"soon\"\nmax_iterations = 0\n+++\n\
                    # T\n## Context\n- `/etc/passwd`\n  - `../up`\n";
        let errors = parse_all(text).expect_err("broken");
        let shown: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            shown,
            [
                "specs/x.md:2:1: unknown front-matter key `prority` (did you mean `priority`?)",
                "specs/x.md:3:3: front-matter key `timeout`: `soon` is not a duration",
                "specs/x.md:4:1: front-matter key `max_iterations`: 0 is not a whole number from 1 to 10000",
                "specs/x.md:6:1: spec has no objective (a `## Objective` section saying what to build)",
                "specs/x.md:6:1: spec has no acceptance criteria",
                "specs/x.md:8:1: context item `/etc/passwd` is not a valid path or glob: it must be relative to the repository root",
                "specs/x.md:9:3: context item `../up` is not a valid path or glob: it must not leave the repository (`..`)",
            ]
        );
    }

    #[test]
    fn a_spec_needs_an_objective_and_criteria_unless_it_says_none() {
        let e = parse_all("# T\n## Acceptance criteria\n- done\n").expect_err("no objective");
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].kind, SpecErrorKind::MissingObjective);
        let e = parse_all("# T\n## Objective\n\n## Criteria\n- x\n").expect_err("empty");
        assert_eq!(e[0].kind, SpecErrorKind::MissingObjective);
        let e = parse_all("# T\n## Objective\nDo it.\n").expect_err("no criteria");
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].kind, SpecErrorKind::MissingCriteria);
        assert!(
            e[0].hint()
                .is_some_and(|h| h.contains("criteria = \"none\""))
        );
        let s = parse("+++\ncriteria = \"none\"\n+++\n# T\n## Objective\nDo it.\n")
            .expect("the checks alone decide");
        assert!(s.criteria.is_empty());
        let s = parse("---\ncriteria: none\n---\n# T\n## Objective\nDo it.\n").expect("yaml");
        assert!(s.criteria.is_empty());
        let e = parse("+++\ncriteria = \"some\"\n+++\n# T\n## Objective\nDo it.\n")
            .expect_err("only none");
        assert_eq!(
            e.to_string(),
            "specs/x.md:2:1: front-matter key `criteria`: `some` is not `none`"
        );
    }

    #[test]
    fn odd_inputs_give_errors_or_specs_never_panics() {
        let cases = [
            "+++",
            "---",
            "+++\n+++",
            "---\n---\n",
            "+++\n+++\n# T",
            "---\n\n---\n# T",
            "# ",
            "#",
            "\u{feff}",
            "- [",
            "+++\n[a]\nb = 1\n+++\n# T",
            "+++\ntimeout = 1979-05-27T07:32:00Z\n+++\n# T",
            "+++\nmax_iterations = -1\n+++\n# T",
            "+++\nmax_iterations = 1.5\n+++\n# T",
            "+++\nmax_iterations = 99999999999\n+++\n# T",
            "+++\n\"id\" = \"q\"\n+++\n# T",
            "---\n1: x\n---\n# T",
            "---\nid: [a\n---\n# T",
            "---\n? [a]\n: b\n---\n# T",
            "---\n*anchor\n---\n# T",
            "---\nlabels: [1, 2]\n---\n# T",
            "# T\n## Acceptance criteria\n- verify:\n  - verify:\n- `x` verify: `y`\n",
            "# T\n## Acceptance criteria\n- a\n  - b\n    - verify: deep\n",
            "# T\n## Acceptance criteria\n```\n- not a list\n```\n- ok\n",
            "# T\n## Context\n- \n- ``\n- [x](/abs)\n",
            "# T\n## Context\n- src/[\n",
            "# T\n## Files\n1) C:\\\\x\n",
            "## Objective\n# Title inside\ntext\n## Notes\n",
            "# Ünïcödé title ✓\n## Context\n- `ü/**`\n",
        ];
        for case in cases {
            let _ = parse(case);
        }
        // A deterministic soup of markdown and front-matter fragments.
        let parts = [
            "+++",
            "---",
            "\n",
            "# ",
            "## ",
            "Acceptance criteria",
            "Context",
            "Goal",
            "- ",
            "  - ",
            "verify:",
            "`",
            "[ ]",
            "[x]",
            "id = ",
            "\"",
            "priority: ",
            "high",
            "=",
            ":",
            "[",
            "]",
            "*",
            "**",
            "ü",
            "\t",
            "1. ",
            "```",
            "> ",
            "|",
            "\u{feff}",
        ];
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..3000 {
            let mut s = String::new();
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 40) as usize;
            for _ in 0..len {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                s.push_str(parts[(seed % parts.len() as u64) as usize]);
            }
            let _ = parse(&s);
        }
    }

    #[test]
    fn context_rejects_absolute_paths() {
        let e = parse(&format!("# T\n## Context\n- `/etc/passwd`\n{REST}")).expect_err("absolute");
        assert_eq!(e.line, Some(3));
        assert!(e.to_string().contains("relative to the repository root"));
    }

    #[test]
    fn table_in_front_matter_is_an_unknown_key() {
        let e = parse(&format!(
            "+++\nlabels = []\n[loop]\nmax = 1\n+++\n# T\n{REST}"
        ))
        .expect_err("table");
        assert_eq!(
            e.to_string(),
            "specs/x.md:3:1: unknown front-matter key `loop`"
        );
    }
}
