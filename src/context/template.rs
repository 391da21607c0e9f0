//! Prompt templates: the built-in `system.md` and `iteration.md` compiled into the binary,
//! overridable by files in `.mmm/templates/`, with `{name}` placeholders checked at load time.
//!
//! Owns: template parsing and rendering. Must not touch: anything but the template directory
//! the caller names.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::ContextError;

/// Every placeholder a template may use (DESIGN.md, "Configuration").
pub const PLACEHOLDERS: &[&str] = &[
    "project_name",
    "primary_language",
    "framework",
    "spec_content",
    "acceptance_criteria",
    "completed_specs",
    "iteration",
    "max_iterations",
    "previous_feedback",
    "relevant_code",
    "project_structure",
    "dependencies",
];

/// Placeholders whose value changes from one iteration to the next. The system template is the
/// cached prefix of the prompt, so it must not use them.
pub const VOLATILE_PLACEHOLDERS: &[&str] = &["iteration", "previous_feedback", "relevant_code"];

const BUILTIN_SYSTEM: &str = include_str!("../../templates/system.md");
const BUILTIN_ITERATION: &str = include_str!("../../templates/iteration.md");

/// One piece of a parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Text(String),
    Placeholder(&'static str),
}

/// A parsed template: literal text and known placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    source: PathBuf,
    segments: Vec<Segment>,
}

impl Template {
    /// Parses `text`; `source` names the file in errors (`<built-in>/system.md` for built-ins).
    pub fn parse(source: &Path, text: &str) -> Result<Template, ContextError> {
        let mut segments = Vec::new();
        let mut lit = String::new();
        let mut line = 1;
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    lit.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    lit.push('}');
                }
                '}' => {
                    return Err(ContextError::TemplateUnmatchedClose {
                        file: source.to_path_buf(),
                        line,
                    });
                }
                '{' => {
                    let mut name = String::new();
                    let mut closed = false;
                    for n in chars.by_ref() {
                        if n == '}' {
                            closed = true;
                            break;
                        }
                        if n == '\n' {
                            break;
                        }
                        name.push(n);
                    }
                    if !closed {
                        return Err(ContextError::TemplateUnclosed {
                            file: source.to_path_buf(),
                            line,
                            text: text.lines().nth(line - 1).unwrap_or("").trim().to_owned(),
                        });
                    }
                    let Some(known) = PLACEHOLDERS.iter().find(|p| **p == name.trim()) else {
                        return Err(ContextError::TemplateUnknownPlaceholder {
                            file: source.to_path_buf(),
                            line,
                            hint: did_you_mean(name.trim()),
                            name,
                        });
                    };
                    if !lit.is_empty() {
                        segments.push(Segment::Text(std::mem::take(&mut lit)));
                    }
                    segments.push(Segment::Placeholder(known));
                }
                '\n' => {
                    line += 1;
                    lit.push(c);
                }
                _ => lit.push(c),
            }
        }
        if !lit.is_empty() {
            segments.push(Segment::Text(lit));
        }
        Ok(Template {
            source: source.to_path_buf(),
            segments,
        })
    }

    /// The file the template came from.
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// The placeholders used, in order of appearance (with repeats).
    pub fn placeholders(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.segments.iter().filter_map(|s| match s {
            Segment::Placeholder(p) => Some(*p),
            Segment::Text(_) => None,
        })
    }

    /// The literal text alone (what the template costs before any value is filled in).
    pub fn literal_len(&self) -> usize {
        self.segments
            .iter()
            .map(|s| match s {
                Segment::Text(t) => t.len(),
                Segment::Placeholder(_) => 0,
            })
            .sum()
    }

    /// Fills the placeholders from `values`; a placeholder without a value renders empty.
    pub fn render(&self, values: &BTreeMap<&str, String>) -> String {
        let mut out = String::new();
        for s in &self.segments {
            match s {
                Segment::Text(t) => out.push_str(t),
                Segment::Placeholder(p) => {
                    if let Some(v) = values.get(p) {
                        out.push_str(v);
                    }
                }
            }
        }
        out
    }
}

/// The built-in templates as `(name, text)`, for `git mmm init --templates`.
pub fn builtin_templates() -> [(&'static str, &'static str); 2] {
    [("system", BUILTIN_SYSTEM), ("iteration", BUILTIN_ITERATION)]
}

/// The two templates of a prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Templates {
    /// The system prompt: the stable, cached prefix (instructions, project, spec, criteria).
    pub system: Template,
    /// The user message of one iteration: iteration number, feedback, code.
    pub iteration: Template,
}

impl Templates {
    /// The built-in templates compiled into the binary.
    pub fn builtin() -> Templates {
        Templates::load(None).expect("the built-in templates are checked by a unit test")
    }

    /// Loads `system.md` and `iteration.md` from `dir` (usually `<repo>/.mmm/templates`) where
    /// present, else the built-in ones. Every template is checked here: an unknown placeholder,
    /// an unclosed `{`, or a volatile placeholder in the system template is an error now, not
    /// at iteration 3.
    pub fn load(dir: Option<&Path>) -> Result<Templates, ContextError> {
        let system = load_one(dir, "system.md", BUILTIN_SYSTEM)?;
        if let Some(name) = system
            .placeholders()
            .find(|p| VOLATILE_PLACEHOLDERS.contains(p))
        {
            return Err(ContextError::TemplateVolatileInSystem {
                file: system.source.clone(),
                line: line_of_placeholder(&system, name),
                name: name.to_owned(),
            });
        }
        let iteration = load_one(dir, "iteration.md", BUILTIN_ITERATION)?;
        Ok(Templates { system, iteration })
    }
}

fn load_one(dir: Option<&Path>, name: &str, builtin: &str) -> Result<Template, ContextError> {
    if let Some(dir) = dir {
        let path = dir.join(name);
        match std::fs::read_to_string(&path) {
            Ok(text) => return Template::parse(&path, &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(ContextError::Io { path, source }),
        }
    }
    Template::parse(&Path::new("<built-in>").join(name), builtin)
}

/// The line of the first use of `name`, found again by re-scanning the segments.
fn line_of_placeholder(t: &Template, name: &str) -> usize {
    let mut line = 1;
    for s in &t.segments {
        match s {
            Segment::Text(text) => {
                // Escaped braces were unescaped but newlines are intact.
                line += text.matches('\n').count();
            }
            Segment::Placeholder(p) if *p == name => return line,
            Segment::Placeholder(_) => {}
        }
    }
    line
}

fn did_you_mean(name: &str) -> String {
    let best = crate::text::closest(name, PLACEHOLDERS.iter().copied());
    let known = PLACEHOLDERS
        .iter()
        .map(|p| format!("{{{p}}}"))
        .collect::<Vec<_>>()
        .join(", ");
    match best {
        Some(p) => format!("did you mean `{{{p}}}`? Known placeholders: {known}"),
        None => format!("known placeholders: {known}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_templates_load() {
        let t = Templates::load(None).expect("built-ins are valid");
        assert!(t.system.placeholders().any(|p| p == "spec_content"));
        assert!(t.iteration.placeholders().any(|p| p == "previous_feedback"));
    }

    #[test]
    fn escapes_and_render() {
        let t = Template::parse(Path::new("t.md"), "a {{x}} {iteration}\n").expect("valid");
        let mut v = BTreeMap::new();
        v.insert("iteration", "2".to_owned());
        assert_eq!(t.render(&v), "a {x} 2\n");
    }
}
