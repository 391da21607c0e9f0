//! Front matter: splitting it off the top of a spec (TOML between `+++` lines, YAML between
//! `---` lines) and checking every key and value, with the file line of each problem.
//!
//! Owns: the list of known keys and their types. Must not touch: the markdown body.

use std::time::Duration;

use super::error::{Problem, SpecErrorKind};
use super::{Priority, SpecId, yaml};

/// The front-matter keys mmm knows.
pub(crate) const KNOWN_KEYS: &[&str] = &[
    "id",
    "priority",
    "depends_on",
    "max_iterations",
    "model",
    "agent",
    "labels",
    "timeout",
    "criteria",
];

/// The front matter of one spec, checked.
#[derive(Debug, Default)]
pub(crate) struct Front {
    pub id: Option<(String, usize)>,
    pub priority: Priority,
    pub depends_on: Vec<SpecId>,
    pub depends_on_line: Option<usize>,
    pub max_iterations: Option<u32>,
    pub model: Option<String>,
    pub agent: Option<String>,
    pub labels: Vec<String>,
    pub timeout: Option<Duration>,
    /// `criteria = "none"`: the spec has no acceptance criteria on purpose; the checks of
    /// `[validate]` alone decide.
    pub no_criteria: bool,
}

/// The front matter's text and where the body starts.
pub(crate) struct Split<'a> {
    /// `None` when the spec has no front matter.
    pub front: Option<RawFront<'a>>,
    /// Byte offset of the body in the file.
    pub body_start: usize,
}

/// Front matter text, not yet parsed.
pub(crate) struct RawFront<'a> {
    pub format: Format,
    pub text: &'a str,
    /// The file line of the first line of `text`.
    pub first_line: usize,
}

/// The front-matter language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Toml,
    Yaml,
}

impl Format {
    fn name(self) -> &'static str {
        match self {
            Format::Toml => "TOML",
            Format::Yaml => "YAML",
        }
    }
}

/// Splits front matter off the top of `content`. Errors carry a file line.
pub(crate) fn split(content: &str) -> Result<Split<'_>, Problem> {
    let start = if content.starts_with('\u{feff}') {
        3
    } else {
        0
    };
    let rest = &content[start..];
    let first_line_end = rest.find('\n').map_or(rest.len(), |i| i + 1);
    let fence = rest[..first_line_end].trim_end();
    let format = match fence {
        "+++" => Format::Toml,
        "---" => Format::Yaml,
        _ => {
            return Ok(Split {
                front: None,
                body_start: start,
            });
        }
    };
    let text_start = start + first_line_end;
    let mut pos = text_start;
    while pos < content.len() {
        let end = content[pos..]
            .find('\n')
            .map_or(content.len(), |i| pos + i + 1);
        if content[pos..end].trim_end() == fence {
            return Ok(Split {
                front: Some(RawFront {
                    format,
                    text: &content[text_start..pos],
                    first_line: 2,
                }),
                body_start: end,
            });
        }
        pos = end;
    }
    Err(Problem::at(
        1,
        Some(1),
        SpecErrorKind::UnterminatedFrontMatter(fence.to_owned()),
    ))
}

/// One top-level key with its value and file line and column.
struct Entry {
    key: String,
    line: usize,
    column: usize,
    value: serde_json::Value,
}

/// Parses and checks front matter: the keys that are right, and a problem for every key that
/// is not (a syntax error is the only problem, as nothing after it can be read).
pub(crate) fn parse(raw: &RawFront<'_>) -> (Front, Vec<Problem>) {
    let mut front = Front::default();
    let entries = match entries(raw) {
        Ok(entries) => entries,
        Err(p) => return (front, vec![p]),
    };
    let mut problems = Vec::new();
    for entry in entries {
        let (line, column) = (entry.line, entry.column);
        if let Err(kind) = take(&mut front, entry) {
            problems.push(Problem::at(line, Some(column), kind));
        }
    }
    (front, problems)
}

/// Checks one key and sets it in `front`.
fn take(front: &mut Front, entry: Entry) -> Result<(), SpecErrorKind> {
    let Entry {
        key, line, value, ..
    } = entry;
    let bad = |message: String| SpecErrorKind::BadValue {
        key: key.clone(),
        message,
    };
    {
        match key.as_str() {
            "id" => front.id = Some((string(value).map_err(bad)?, line)),
            "priority" => {
                front.priority = serde_json::from_value(value).map_err(|e| bad(e.to_string()))?
            }
            "depends_on" => {
                let mut ids = Vec::new();
                for id in strings(value).map_err(bad)? {
                    let id = SpecId::new(&id)
                        .map_err(|suggestion| SpecErrorKind::BadDependencyId { id, suggestion })?;
                    ids.push(id);
                }
                front.depends_on = ids;
                front.depends_on_line = Some(line);
            }
            "max_iterations" => {
                let n = match &value {
                    serde_json::Value::Number(n) => {
                        Some(n.as_u64().and_then(|n| u32::try_from(n).ok()))
                    }
                    _ => None,
                };
                match n {
                    Some(Some(n)) if n > 0 && u64::from(n) <= super::MAX_ITERATIONS => {
                        front.max_iterations = Some(n)
                    }
                    Some(_) => {
                        return Err(bad(format!(
                            "{value} is not a whole number from 1 to {}",
                            super::MAX_ITERATIONS
                        )));
                    }
                    None => {
                        return Err(bad(format!(
                            "expected a whole number, found {}",
                            describe(&value)
                        )));
                    }
                }
            }
            "model" => front.model = Some(string(value).map_err(bad)?),
            "agent" => front.agent = Some(string(value).map_err(bad)?),
            "labels" => front.labels = strings(value).map_err(bad)?,
            "timeout" => {
                let s = string(value).map_err(bad)?;
                let d = humantime::parse_duration(s.trim())
                    .map_err(|_| bad(format!("`{s}` is not a duration")))?;
                if d.is_zero() {
                    return Err(bad("must be longer than zero".to_owned()));
                }
                front.timeout = Some(d);
            }
            "criteria" => match string(value).map_err(bad)?.as_str() {
                "none" => front.no_criteria = true,
                other => return Err(bad(format!("`{other}` is not `none`"))),
            },
            _ => {
                let suggestion = closest_key(&key).map(str::to_owned);
                return Err(SpecErrorKind::UnknownKey { key, suggestion });
            }
        }
    }
    Ok(())
}

fn describe(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "nothing",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "a table",
    }
}

fn string(value: serde_json::Value) -> Result<String, String> {
    match value {
        serde_json::Value::String(s) => Ok(s),
        other => Err(format!("expected a string, found {}", describe(&other))),
    }
}

/// A list of strings; a single string is taken as a list of one.
fn strings(value: serde_json::Value) -> Result<Vec<String>, String> {
    match value {
        serde_json::Value::String(s) => Ok(vec![s]),
        serde_json::Value::Array(items) => items
            .into_iter()
            .map(|v| match v {
                serde_json::Value::String(s) => Ok(s),
                other => Err(format!(
                    "expected a list of strings, found {} in the list",
                    describe(&other)
                )),
            })
            .collect(),
        other => Err(format!(
            "expected a list of strings, found {}",
            describe(&other)
        )),
    }
}

fn entries(raw: &RawFront<'_>) -> Result<Vec<Entry>, Problem> {
    let syntax = |line: usize, column: Option<usize>, message: String| {
        Problem::at(
            line,
            column,
            SpecErrorKind::FrontMatterSyntax {
                format: raw.format.name(),
                message,
            },
        )
    };
    if raw.text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let pairs: Vec<(String, serde_json::Value)> = match raw.format {
        Format::Toml => {
            let table: toml::Table = toml::from_str(raw.text).map_err(|e| {
                let line = e.span().map_or(0, |s| line_of_offset(raw.text, s.start));
                let column = e.span().map(|s| column_of_offset(raw.text, s.start));
                syntax(line + raw.first_line, column, e.message().trim().to_owned())
            })?;
            table
                .into_iter()
                .map(|(k, v)| json(raw, k, &v))
                .collect::<Result<_, _>>()?
        }
        Format::Yaml => {
            let front = yaml::parse(raw.text).map_err(|(line, column, message)| {
                syntax(line.saturating_sub(1) + raw.first_line, column, message)
            })?;
            let mut pairs = Vec::new();
            for (k, v) in front.entries {
                let serde_json::Value::String(k) = k else {
                    return Err(syntax(
                        raw.first_line,
                        None,
                        format!("keys must be strings, found `{k}`"),
                    ));
                };
                pairs.push((k, v));
            }
            pairs
        }
    };
    let mut entries: Vec<Entry> = pairs
        .into_iter()
        .map(|(key, value)| {
            let (line, column) = key_line(raw, &key);
            Entry {
                line,
                column,
                key,
                value,
            }
        })
        .collect();
    // Report problems in the order they appear in the file.
    entries.sort_by_key(|e| e.line);
    Ok(entries)
}

/// Converts one value to JSON so that TOML and YAML are checked by the same code.
fn json<T: serde::Serialize>(
    raw: &RawFront<'_>,
    key: String,
    value: &T,
) -> Result<(String, serde_json::Value), Problem> {
    match serde_json::to_value(value) {
        Ok(v) => Ok((key, v)),
        Err(e) => {
            let (line, column) = key_line(raw, &key);
            Err(Problem::at(
                line,
                Some(column),
                SpecErrorKind::BadValue {
                    key,
                    message: e.to_string(),
                },
            ))
        }
    }
}

/// The 0-based line of a byte offset in `text`.
pub(crate) fn line_of_offset(text: &str, offset: usize) -> usize {
    crate::text::line_at(text, offset) - 1
}

/// The 1-based column (in characters) of a byte offset in `text`.
pub(crate) fn column_of_offset(text: &str, offset: usize) -> usize {
    let offset = offset.min(text.len());
    let start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    text.get(start..offset).map_or(1, |s| s.chars().count() + 1)
}

/// The file line and column where a top-level key is written; the first front-matter line if
/// it cannot be found (e.g. a TOML table header such as `[key]` spelled unusually).
fn key_line(raw: &RawFront<'_>, key: &str) -> (usize, usize) {
    for (i, line) in raw.text.lines().enumerate() {
        // Top-level keys in YAML are not indented; TOML allows indentation.
        if raw.format == Format::Yaml && line.starts_with([' ', '\t']) {
            continue;
        }
        let t = line.trim_start();
        let t = t.strip_prefix('[').unwrap_or(t).trim_start_matches('[');
        let name_end;
        let name = if let Some(q) = t.strip_prefix('"').or_else(|| t.strip_prefix('\'')) {
            let close = q.find(['"', '\'']).unwrap_or(q.len());
            name_end = &q[close.saturating_add(1).min(q.len())..];
            &q[..close]
        } else {
            let end = t
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-'))
                .unwrap_or(t.len());
            name_end = &t[end..];
            &t[..end]
        };
        let sep = name_end.trim_start();
        if name == key
            && (sep.starts_with('=')
                || sep.starts_with(':')
                || sep.starts_with(']')
                || sep.starts_with('.'))
        {
            let indent = line.len() - line.trim_start().len();
            return (raw.first_line + i, line[..indent].chars().count() + 1);
        }
    }
    (raw.first_line, 1)
}

/// The known key closest to `key`, if it is close enough to be a typo.
fn closest_key(key: &str) -> Option<&'static str> {
    let lower = key.to_ascii_lowercase().replace('-', "_");
    crate::text::closest(&lower, KNOWN_KEYS.iter().copied())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typo_suggestions() {
        assert_eq!(closest_key("prority"), Some("priority"));
        assert_eq!(closest_key("depends-on"), Some("depends_on"));
        assert_eq!(closest_key("dependson"), Some("depends_on"));
        assert_eq!(closest_key("label"), Some("labels"));
        assert_eq!(closest_key("colour"), None);
    }

    #[test]
    fn yaml_keys_must_be_strings() {
        let raw = RawFront {
            format: Format::Yaml,
            text: "id: x\n1: y\n",
            first_line: 2,
        };
        let (_, problems) = parse(&raw);
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].line, 2);
        assert_eq!(
            problems[0].kind.to_string(),
            "invalid YAML front matter: keys must be strings, found `1`"
        );
    }

    #[test]
    fn split_forms() {
        let s = split("+++\nid = \"x\"\n+++\n# T\n").expect("toml");
        let f = s.front.expect("front");
        assert_eq!(f.format, Format::Toml);
        assert_eq!(f.text, "id = \"x\"\n");
        assert_eq!(s.body_start, 17);
        let s = split("# T\n---\n").expect("none");
        assert!(s.front.is_none());
        let e = split("---\nid: x\n").err().expect("unterminated");
        assert_eq!(e.line, 1);
    }
}
