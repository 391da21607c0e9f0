//! Errors of the spec area: one [`SpecError`] per problem, located by file and line, and
//! [`SpecErrors`] to report every broken spec at once.
//!
//! Owns: the wording of spec errors and their hints. Must not touch: the terminal (the CLI
//! renders these).

use std::fmt;
use std::path::PathBuf;

/// One problem with one spec file (or with the spec directory), with the place it was found.
///
/// Displays as `specs/login.md:3: unknown front-matter key `prority` (did you mean
/// `priority`?)`; [`SpecError::hint`] says what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct SpecError {
    /// The file (or directory), relative to the repository root where possible.
    pub file: PathBuf,
    /// The 1-based line in `file`, when the problem has one.
    pub line: Option<usize>,
    /// The 1-based column (in characters) on `line`, when the problem has one.
    pub column: Option<usize>,
    /// What went wrong.
    pub kind: SpecErrorKind,
}

/// A problem found inside one file, before it is given the file's name: its line, its
/// column when known, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    pub line: usize,
    pub column: Option<usize>,
    pub kind: SpecErrorKind,
}

impl Problem {
    /// A problem at `line`, `column`.
    pub(crate) fn at(line: usize, column: Option<usize>, kind: SpecErrorKind) -> Problem {
        Problem { line, column, kind }
    }
}

impl SpecError {
    /// An error at `file`, optionally at `line`.
    pub fn new(file: impl Into<PathBuf>, line: Option<usize>, kind: SpecErrorKind) -> SpecError {
        SpecError {
            file: file.into(),
            line,
            column: None,
            kind,
        }
    }

    /// The same error at `column` of its line.
    pub fn with_column(mut self, column: Option<usize>) -> SpecError {
        self.column = column;
        self
    }

    /// What the user can do about it, when there is something useful to say.
    pub fn hint(&self) -> Option<String> {
        self.kind.hint()
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(line), Some(col)) => {
                write!(f, "{}:{line}:{col}: {}", self.file.display(), self.kind)
            }
            (Some(line), None) => write!(f, "{}:{line}: {}", self.file.display(), self.kind),
            (None, _) => write!(f, "{}: {}", self.file.display(), self.kind),
        }
    }
}

/// What went wrong with a spec. The message says what; [`SpecErrorKind::hint`] says what to
/// do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpecErrorKind {
    /// The spec directory does not exist.
    #[error("spec directory not found")]
    MissingDir,
    /// The spec directory path is a file.
    #[error("spec directory is not a directory")]
    NotADir,
    /// Reading the file or directory failed.
    #[error("cannot read: {0}")]
    Io(String),
    /// A markdown file whose name starts with two dots: hidden, so not read as a spec.
    #[error(
        "this markdown file is hidden (its name starts with dots), so mmm does not read it as a spec"
    )]
    Hidden,
    /// The file is a symlink whose target lies outside the repository.
    #[error("spec file is a symlink that leads outside the repository")]
    OutsideRepository,
    /// The file is larger than the limit.
    #[error("spec file is too large ({size} bytes; the limit is {limit} bytes)")]
    TooLarge {
        /// The file's size in bytes.
        size: u64,
        /// The limit in bytes.
        limit: u64,
    },
    /// The file has NUL bytes.
    #[error("spec file is binary (it contains NUL bytes)")]
    Binary,
    /// The file is not valid UTF-8.
    #[error("spec file is not valid UTF-8")]
    NotUtf8,
    /// The file is empty or only whitespace.
    #[error("spec file is empty")]
    Empty,
    /// Front matter was opened but never closed.
    #[error("front matter opened with `{0}` is never closed")]
    UnterminatedFrontMatter(String),
    /// The front matter is not valid TOML or YAML.
    #[error("invalid {format} front matter: {message}")]
    FrontMatterSyntax {
        /// `TOML` or `YAML`.
        format: &'static str,
        /// The parser's message.
        message: String,
    },
    /// A front-matter key that mmm does not know.
    #[error("unknown front-matter key `{key}`{}", did_you_mean(.suggestion))]
    UnknownKey {
        /// The key as written.
        key: String,
        /// The closest known key, if it looks like a typo.
        suggestion: Option<String>,
    },
    /// A known front-matter key with a value of the wrong type or form.
    #[error("front-matter key `{key}`: {message}")]
    BadValue {
        /// The key.
        key: String,
        /// What is wrong with its value.
        message: String,
    },
    /// A spec id (from the front matter or the file name) that is not a valid slug.
    #[error("spec id `{id}` {} is not a valid slug (`[a-z0-9][a-z0-9._-]*`){}",
        if *.from_file_name { "(from the file name)" } else { "(from the front matter)" },
        did_you_mean(.suggestion))]
    BadId {
        /// The id as written.
        id: String,
        /// Whether the id came from the file name (no `id` key).
        from_file_name: bool,
        /// A valid slug close to it.
        suggestion: Option<String>,
    },
    /// An id in `depends_on` that is not a valid slug.
    #[error("dependency `{id}` is not a valid spec id{}", did_you_mean(.suggestion))]
    BadDependencyId {
        /// The id as written.
        id: String,
        /// A valid slug close to it.
        suggestion: Option<String>,
    },
    /// The spec has no `# Title` heading.
    #[error("spec has no title (a `# ` heading)")]
    MissingTitle,
    /// The spec has no objective section, or an empty one.
    #[error("spec has no objective (a `## Objective` section saying what to build)")]
    MissingObjective,
    /// The spec has no acceptance criteria and does not say it relies on the checks alone.
    #[error("spec has no acceptance criteria")]
    MissingCriteria,
    /// A spec that depends on a spec that is broken (or itself excluded).
    #[error("spec `{spec}` depends on `{broken}`, which has errors")]
    BrokenDependency {
        /// The spec that declares the dependency.
        spec: String,
        /// The dependency that could not be loaded.
        broken: String,
    },
    /// A context item that is not a usable path or glob.
    #[error("context item `{item}` is not a valid path or glob: {message}")]
    BadContext {
        /// The item as written.
        item: String,
        /// Why it is not usable.
        message: String,
    },
    /// Two spec files have the same id.
    #[error("duplicate spec id `{id}` (also used by {other})")]
    DuplicateId {
        /// The id.
        id: String,
        /// The other file, relative to the repository root.
        other: String,
    },
    /// A `depends_on` entry names a spec that does not exist.
    #[error("spec `{spec}` depends on `{missing}`, which does not exist")]
    MissingDependency {
        /// The spec that declares the dependency.
        spec: String,
        /// The missing id.
        missing: String,
    },
    /// The specs depend on each other in a cycle.
    #[error("dependency cycle: {} (each depends on the next)", .0.join(" → "))]
    Cycle(Vec<String>),
}

fn did_you_mean(suggestion: &Option<String>) -> String {
    match suggestion {
        Some(s) => format!(" (did you mean `{s}`?)"),
        None => String::new(),
    }
}

impl SpecErrorKind {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        let hint = match self {
            SpecErrorKind::MissingDir => {
                "create it with `mkdir specs`, or point `[specs] dir` in .mmm/config.toml at your specs".to_owned()
            }
            SpecErrorKind::NotADir => {
                "point `[specs] dir` in .mmm/config.toml at a directory".to_owned()
            }
            SpecErrorKind::Io(_) => "check the file's permissions".to_owned(),
            SpecErrorKind::Hidden => {
                "rename it without the leading dots to make it a spec, or move it out of the spec directory".to_owned()
            }
            SpecErrorKind::OutsideRepository => {
                "copy the spec into the repository instead of linking to it".to_owned()
            }
            SpecErrorKind::TooLarge { .. } => {
                "a spec is a short markdown document; move large material to files named in its context section".to_owned()
            }
            SpecErrorKind::Binary | SpecErrorKind::NotUtf8 => {
                "specs must be UTF-8 markdown text; move other files out of the spec directory".to_owned()
            }
            SpecErrorKind::Empty => {
                "write at least a `# Title` line, or delete the file".to_owned()
            }
            SpecErrorKind::UnterminatedFrontMatter(fence) => {
                format!("add a closing `{fence}` line after the front matter")
            }
            SpecErrorKind::FrontMatterSyntax { format, .. } => {
                format!("fix the {format} syntax at that line")
            }
            SpecErrorKind::UnknownKey { suggestion, .. } => match suggestion {
                Some(s) => format!("rename the key to `{s}`"),
                None => format!("known keys: {}", crate::spec::front::KNOWN_KEYS.join(", ")),
            },
            SpecErrorKind::BadValue { key, .. } => expected_for(key).to_owned(),
            SpecErrorKind::BadId {
                suggestion,
                from_file_name,
                ..
            } => match (suggestion, from_file_name) {
                (Some(s), true) => {
                    format!("rename the file to `{s}.md`, or set `id = \"{s}\"` in the front matter")
                }
                (Some(s), false) => format!("set `id = \"{s}\"`"),
                (None, _) => {
                    "use lower-case letters, digits, `.`, `_` and `-`, starting with a letter or digit".to_owned()
                }
            },
            SpecErrorKind::BadDependencyId { suggestion, .. } => match suggestion {
                Some(s) => format!("write `{s}`"),
                None => "name another spec by its id".to_owned(),
            },
            SpecErrorKind::MissingTitle => {
                "start the spec with a title line such as `# Add a login page`".to_owned()
            }
            SpecErrorKind::MissingObjective => {
                "add a `## Objective` section with a sentence or two on what the change must achieve".to_owned()
            }
            SpecErrorKind::MissingCriteria => {
                "add a `## Acceptance criteria` list (each item may end with `verify: `cmd``), or write `criteria = \"none\"` in the front matter to let the checks of [validate] alone decide".to_owned()
            }
            SpecErrorKind::BrokenDependency { broken, .. } => {
                format!("fix `{broken}` first (see its errors)")
            }
            SpecErrorKind::BadContext { .. } => {
                "write one path or glob per list item, e.g. `src/auth/**/*.rs`".to_owned()
            }
            SpecErrorKind::DuplicateId { .. } => {
                "give one of them another `id` in its front matter, or rename the file".to_owned()
            }
            SpecErrorKind::MissingDependency { missing, .. } => {
                format!("add a spec with id `{missing}`, or remove it from `depends_on`")
            }
            SpecErrorKind::Cycle(_) => {
                "remove one of these `depends_on` entries to break the cycle".to_owned()
            }
        };
        Some(hint)
    }
}

fn expected_for(key: &str) -> &'static str {
    match key {
        "id" => "write a slug such as `id = \"login\"`",
        "priority" => "use one of critical, high, medium, low",
        "depends_on" => "write a list of spec ids, e.g. `depends_on = [\"login\"]`",
        "max_iterations" => "write a whole number from 1 to 10000, e.g. `max_iterations = 5`",
        "model" | "agent" => "write a string",
        "labels" => "write a list of strings, e.g. `labels = [\"auth\"]`",
        "timeout" => "write a duration such as \"30m\" or \"2h\"",
        "criteria" => "write `criteria = \"none\"` (the checks alone decide), or leave it out",
        _ => "see the spec format in the README",
    }
}

/// Every error found while loading specs, in file order. Never empty when returned as an
/// error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct SpecErrors(pub Vec<SpecError>);

impl SpecErrors {
    /// The errors, in file order.
    pub fn errors(&self) -> &[SpecError] {
        &self.0
    }
}

impl From<SpecError> for SpecErrors {
    fn from(e: SpecError) -> SpecErrors {
        SpecErrors(vec![e])
    }
}

impl fmt::Display for SpecErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}
