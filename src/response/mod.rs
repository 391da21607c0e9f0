//! Response processing: the parser chain that turns the model's text into edits, commands and
//! directives.
//!
//! This module owns the edit format described in `docs/EDIT-FORMAT.md`: whole-file code blocks
//! that name their path, search/replace blocks, unified diffs, command blocks and the `@mmm:`
//! directives. It only reads text: it never touches the file system (that is [`crate::apply`]),
//! and it never fails — anything it cannot understand becomes a [`Problem`] that the engine
//! feeds back to the model in the next iteration.

// The chain reads one way: `parse` → `lines` (the scanner) → `diff` (unified diffs).
mod diff;
mod lines;

use std::fmt;

pub use diff::{Hunk, HunkLine};

/// One change to one file, as the model asked for it. Paths are as written by the model
/// (relative to the worktree); [`crate::apply`] decides whether they are acceptable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    /// Write the whole file (create or overwrite).
    Write {
        /// The path named by the model.
        path: String,
        /// The new content of the file.
        content: String,
    },
    /// Replace one occurrence of `search` with `replace`. An empty `search` on a missing file
    /// creates it.
    Replace {
        /// The path named by the model.
        path: String,
        /// The text to find.
        search: String,
        /// The text to put in its place.
        replace: String,
    },
    /// Apply the hunks of a unified diff. A diff from `/dev/null` creates the file.
    Patch {
        /// The path named by the model (the `+++` side).
        path: String,
        /// The hunks, in file order.
        hunks: Vec<Hunk>,
    },
    /// Delete the file (a diff to `/dev/null`).
    Delete {
        /// The path named by the model (the `---` side).
        path: String,
    },
}

impl Edit {
    /// The path this edit touches.
    pub fn path(&self) -> &str {
        match self {
            Edit::Write { path, .. }
            | Edit::Replace { path, .. }
            | Edit::Patch { path, .. }
            | Edit::Delete { path } => path,
        }
    }
}

/// The directives the model gave, each at the start of a line outside code fences.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Directives {
    /// `@mmm:complete`: the model believes the spec is done.
    pub complete: bool,
    /// `@mmm:needs-review [reason]`: the model asks a human; the reason may be empty.
    pub needs_review: Option<String>,
    /// `@mmm:summary <text>`: a short summary of the iteration, kept as memory.
    pub summary: Option<String>,
}

/// What kind of malformed input a [`Problem`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProblemKind {
    /// A code fence that is never closed.
    UnterminatedFence,
    /// A `<<<<<<< SEARCH` block without its `=======` or `>>>>>>> REPLACE` line.
    UnterminatedSearchReplace,
    /// A search/replace block with no path before it.
    MissingPath,
    /// A ```diff block that is not a unified diff.
    BadDiff,
    /// A `File: path` line that is not followed by a code block.
    PathWithoutBlock,
    /// A line starting with `@mmm:` that is not a known directive.
    UnknownDirective,
    /// A directive given more than once, or in a form that is not allowed.
    BadDirective,
}

impl fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            ProblemKind::UnterminatedFence => "unterminated code fence",
            ProblemKind::UnterminatedSearchReplace => "unterminated search/replace block",
            ProblemKind::MissingPath => "edit without a path",
            ProblemKind::BadDiff => "malformed diff",
            ProblemKind::PathWithoutBlock => "path without a code block",
            ProblemKind::UnknownDirective => "unknown directive",
            ProblemKind::BadDirective => "bad directive",
        };
        f.write_str(s)
    }
}

/// Something in the response that could not be understood. Never fatal: it is reported to the
/// model in the next iteration so it can fix its output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// What went wrong.
    pub kind: ProblemKind,
    /// A message for the model: what was wrong and how to write it instead.
    pub message: String,
    /// The 1-based line of the response where the problem starts.
    pub line: usize,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}: {}", self.line, self.kind, self.message)
    }
}

/// The longest excerpt of a response line quoted in a problem message.
const EXCERPT_CHARS: usize = 60;

/// A short, single-line excerpt of a response line, for a [`Problem`]'s message. Shared by
/// the line scanner and the diff parser, which it calls: both quote lines the same way.
fn excerpt(s: &str) -> String {
    let mut out: String = s.chars().take(EXCERPT_CHARS).collect();
    if s.chars().count() > EXCERPT_CHARS {
        out.push('…');
    }
    out
}

/// Everything the parser chain found in one response.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parsed {
    /// File edits, in the order they appear.
    pub edits: Vec<Edit>,
    /// Commands the model asks to run, in order (not yet checked against any allow-list).
    pub commands: Vec<String>,
    /// The directives.
    pub directives: Directives,
    /// Malformed parts of the response.
    pub problems: Vec<Problem>,
}

/// The prefix of every directive.
pub const DIRECTIVE_PREFIX: &str = "@mmm:";

/// Parses a model's full response. Never panics and never fails: what it cannot understand is
/// listed in [`Parsed::problems`].
pub fn parse(text: &str) -> Parsed {
    lines::Parser::new(text).run()
}
