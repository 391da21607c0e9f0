//! The markdown body of a spec: the title, the known sections (objective, acceptance
//! criteria with their `verify` commands, context) and the rest kept as notes.
//!
//! Owns: heading variants and list-item conventions. Must not touch: front matter, files.

use std::ops::Range;

use pulldown_cmark::{CodeBlockKind, Event, HeadingLevel, Options, Parser, Tag, TagEnd};

use super::Criterion;
use super::error::{Problem, SpecErrorKind};

/// The parsed body of a spec.
#[derive(Debug, Default)]
pub(crate) struct Body {
    pub title: String,
    /// Where the title is (line, column), or the start of the body when there is none: where
    /// a missing section is reported.
    pub title_at: (usize, usize),
    pub objective: String,
    pub criteria: Vec<Criterion>,
    pub context: Vec<String>,
    pub notes: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Objective,
    Criteria,
    Context,
    Notes,
}

/// Which known section a heading opens, if any. Case-insensitive; a trailing `:` is allowed.
fn classify(heading: &str) -> Kind {
    let norm = heading
        .trim()
        .trim_end_matches(':')
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase();
    match norm.as_str() {
        "objective" | "objectives" | "goal" | "goals" => Kind::Objective,
        "acceptance criteria" | "done when" | "criteria" => Kind::Criteria,
        "context" | "files" => Kind::Context,
        _ => Kind::Notes,
    }
}

struct Heading {
    level: HeadingLevel,
    text: String,
    range: Range<usize>,
}

struct Section {
    kind: Kind,
    /// From the start of its heading (or of the preamble) to the next section.
    range: Range<usize>,
    /// Where the content after the heading starts.
    content_start: usize,
}

/// Maps byte offsets of the file to 1-based lines.
pub(crate) struct Lines {
    starts: Vec<usize>,
}

impl Lines {
    pub(crate) fn new(content: &str) -> Lines {
        let mut starts = vec![0];
        starts.extend(
            content
                .bytes()
                .enumerate()
                .filter(|(_, b)| *b == b'\n')
                .map(|(i, _)| i + 1),
        );
        Lines { starts }
    }

    pub(crate) fn line(&self, offset: usize) -> usize {
        self.starts.partition_point(|&s| s <= offset)
    }

    /// The 1-based line and column (in characters) of a byte offset of `content`.
    pub(crate) fn at(&self, content: &str, offset: usize) -> (usize, usize) {
        let line = self.line(offset);
        let start = self.starts[line - 1];
        let column = content
            .get(start..offset.min(content.len()))
            .map_or(1, |s| s.chars().count() + 1);
        (line, column)
    }
}

/// Parses the body, which starts at byte `body_start` of `content`: what it says, and every
/// problem found in it (each with its file line and column).
pub(crate) fn parse(content: &str, body_start: usize) -> (Body, Vec<Problem>) {
    let mut problems = Vec::new();
    let lines = Lines::new(content);
    let body = &content[body_start..];
    let mut opts = Options::empty();
    opts.insert(Options::ENABLE_TASKLISTS);
    opts.insert(Options::ENABLE_TABLES);
    opts.insert(Options::ENABLE_STRIKETHROUGH);
    let events: Vec<(Event<'_>, Range<usize>)> = Parser::new_ext(body, opts)
        .into_offset_iter()
        .map(|(e, r)| (e, (r.start + body_start)..(r.end + body_start)))
        .collect();

    let headings = headings(&events);
    let title_idx = headings.iter().position(|h| h.level == HeadingLevel::H1);
    let title_at = match title_idx {
        Some(i) => lines.at(content, headings[i].range.start),
        None => (
            lines.line(body_start.min(content.len().saturating_sub(1))),
            1,
        ),
    };
    let title = match title_idx {
        Some(i) if !headings[i].text.trim().is_empty() => headings[i].text.trim().to_owned(),
        Some(i) => {
            let (line, column) = lines.at(content, headings[i].range.start);
            problems.push(Problem::at(line, Some(column), SpecErrorKind::MissingTitle));
            String::new()
        }
        None => {
            let line = lines.line(body_start.min(content.len().saturating_sub(1)));
            problems.push(Problem::at(line, Some(1), SpecErrorKind::MissingTitle));
            String::new()
        }
    };

    let sections = sections(&headings, title_idx, body_start, content.len());
    let mut out = Body {
        title,
        title_at,
        ..Body::default()
    };
    let mut objectives = Vec::new();
    let mut notes = Vec::new();
    for section in &sections {
        let text = content[section.content_start..section.range.end].trim();
        match section.kind {
            Kind::Objective => {
                if !text.is_empty() {
                    objectives.push(text.to_owned());
                }
            }
            Kind::Notes => {
                let all = if let Some(i) = title_idx {
                    // The preamble section may contain the title: leave it out.
                    let t = &headings[i].range;
                    if section.range.start <= t.start && t.end <= section.range.end {
                        format!(
                            "{}\n\n{}",
                            content[section.range.start..t.start].trim(),
                            content[t.end..section.range.end].trim()
                        )
                    } else {
                        content[section.range.clone()].to_owned()
                    }
                } else {
                    content[section.range.clone()].to_owned()
                };
                let all = all.trim();
                if !all.is_empty() {
                    notes.push(all.to_owned());
                }
            }
            Kind::Criteria => {
                out.criteria.extend(criteria(&events, section, &lines));
            }
            Kind::Context => {
                out.context
                    .extend(context(&events, section, content, &lines, &mut problems));
            }
        }
    }
    out.objective = objectives.join("\n\n");
    out.notes = notes.join("\n\n");
    (out, problems)
}

fn headings(events: &[(Event<'_>, Range<usize>)]) -> Vec<Heading> {
    let mut out = Vec::new();
    let mut current: Option<Heading> = None;
    for (event, range) in events {
        match event {
            Event::Start(Tag::Heading { level, .. }) => {
                current = Some(Heading {
                    level: *level,
                    text: String::new(),
                    range: range.clone(),
                });
            }
            Event::End(TagEnd::Heading(_)) => {
                if let Some(h) = current.take() {
                    out.push(h);
                }
            }
            Event::Text(t) | Event::Code(t) => {
                if let Some(h) = current.as_mut() {
                    h.text.push_str(t);
                }
            }
            Event::SoftBreak | Event::HardBreak => {
                if let Some(h) = current.as_mut() {
                    h.text.push(' ');
                }
            }
            _ => {}
        }
    }
    out
}

/// Splits the body into sections. A heading with a known name always opens a section; any
/// other heading opens a notes section unless it is a sub-heading of a known section.
fn sections(
    headings: &[Heading],
    title_idx: Option<usize>,
    body_start: usize,
    end: usize,
) -> Vec<Section> {
    let mut out = vec![Section {
        kind: Kind::Notes,
        range: body_start..end,
        content_start: body_start,
    }];
    let mut current_level: Option<HeadingLevel> = None;
    for (i, h) in headings.iter().enumerate() {
        if Some(i) == title_idx {
            continue;
        }
        let kind = classify(&h.text);
        let opens = match (kind, current_level) {
            (Kind::Notes, Some(level)) => h.level <= level,
            _ => true,
        };
        if !opens {
            continue;
        }
        if let Some(last) = out.last_mut() {
            last.range.end = h.range.start;
        }
        out.push(Section {
            kind,
            range: h.range.start..end,
            content_start: h.range.end,
        });
        current_level = (kind != Kind::Notes).then_some(h.level);
    }
    out
}

fn in_section(range: &Range<usize>, section: &Section) -> bool {
    range.start >= section.content_start && range.start < section.range.end
}

/// Collects the acceptance criteria: top-level list items, with `verify` commands from a
/// nested `verify: …` item or an inline code span after `verify:`.
fn criteria(
    events: &[(Event<'_>, Range<usize>)],
    section: &Section,
    lines: &Lines,
) -> Vec<Criterion> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    // The criterion being built, and whether its verify came inline.
    let mut current: Option<(Criterion, bool)> = None;
    // Text of nested items, one buffer per open nested item.
    let mut nested: Vec<String> = Vec::new();
    let mut in_code_block = false;
    for (event, range) in events.iter().filter(|(_, r)| in_section(r, section)) {
        match event {
            Event::Start(Tag::List(_)) => depth += 1,
            Event::End(TagEnd::List(_)) => depth = depth.saturating_sub(1),
            Event::Start(Tag::Item) if depth == 1 => {
                current = Some((
                    Criterion {
                        text: String::new(),
                        verify: None,
                        line: lines.line(range.start),
                    },
                    false,
                ));
            }
            Event::Start(Tag::Item) if depth >= 2 => nested.push(String::new()),
            Event::End(TagEnd::Item) if depth >= 2 => {
                let text = nested.pop().unwrap_or_default();
                let text = strip_checkbox(text.trim());
                if let Some((c, _)) = current.as_mut()
                    && let Some(cmd) = strip_prefix_ci(text, "verify:")
                {
                    let cmd = cmd.trim().trim_matches('`').trim();
                    if !cmd.is_empty() {
                        c.verify = Some(match c.verify.take() {
                            Some(prev) => format!("{prev} && {cmd}"),
                            None => cmd.to_owned(),
                        });
                    }
                }
            }
            Event::End(TagEnd::Item) if depth == 1 => {
                if let Some((mut c, inline)) = current.take() {
                    let mut text = strip_checkbox(c.text.trim()).to_owned();
                    if inline {
                        text = text.replace("()", "");
                        text = text
                            .trim_end_matches(|ch: char| {
                                ch.is_whitespace()
                                    || matches!(ch, ',' | ';' | ':' | '(' | '—' | '–' | '-')
                            })
                            .to_owned();
                    }
                    c.text = text;
                    if !c.text.is_empty() || c.verify.is_some() {
                        out.push(c);
                    }
                }
            }
            Event::Start(Tag::CodeBlock(CodeBlockKind::Fenced(_) | CodeBlockKind::Indented)) => {
                in_code_block = true
            }
            Event::End(TagEnd::CodeBlock) => in_code_block = false,
            Event::Text(t) if !in_code_block => {
                if let Some(buf) = nested.last_mut() {
                    buf.push_str(t);
                } else if let Some((c, _)) = current.as_mut() {
                    c.text.push_str(t);
                }
            }
            Event::Code(code) => {
                if let Some(buf) = nested.last_mut() {
                    buf.push_str(code);
                } else if let Some((c, inline)) = current.as_mut() {
                    let trimmed = c.text.trim_end();
                    if c.verify.is_none() && ends_with_ci(trimmed, "verify:") {
                        let cut = trimmed.len() - "verify:".len();
                        c.text.truncate(cut);
                        c.verify = Some(code.trim().to_owned());
                        *inline = true;
                    } else {
                        c.text.push('`');
                        c.text.push_str(code);
                        c.text.push('`');
                    }
                }
            }
            Event::SoftBreak | Event::HardBreak | Event::Start(Tag::Paragraph) => {
                if let Some(buf) = nested.last_mut() {
                    buf.push(' ');
                } else if let Some((c, _)) = current.as_mut()
                    && !c.text.is_empty()
                {
                    c.text.push(' ');
                }
            }
            _ => {}
        }
    }
    for c in &mut out {
        c.text = c.text.split_whitespace().collect::<Vec<_>>().join(" ");
    }
    out
}

/// Collects context items: list items whose code span, link target or first word is a path
/// or glob relative to the repository root.
fn context(
    events: &[(Event<'_>, Range<usize>)],
    section: &Section,
    content: &str,
    lines: &Lines,
    problems: &mut Vec<Problem>,
) -> Vec<String> {
    let mut out = Vec::new();
    // (item range, first code span, first link target)
    let mut open: Vec<(Range<usize>, Option<String>, Option<String>)> = Vec::new();
    for (event, range) in events.iter().filter(|(_, r)| in_section(r, section)) {
        match event {
            Event::Start(Tag::Item) => open.push((range.clone(), None, None)),
            Event::Code(code) => {
                if let Some(item) = open.last_mut()
                    && item.1.is_none()
                {
                    item.1 = Some(code.to_string());
                }
            }
            Event::Start(Tag::Link { dest_url, .. }) => {
                if let Some(item) = open.last_mut()
                    && item.2.is_none()
                {
                    item.2 = Some(dest_url.to_string());
                }
            }
            Event::End(TagEnd::Item) => {
                if let Some((range, code, link)) = open.pop() {
                    let (line, column) = lines.at(content, range.start);
                    let item = match code.or(link) {
                        Some(s) => s.trim().to_owned(),
                        None => first_word(&content[range]).to_owned(),
                    };
                    if item.is_empty() {
                        continue;
                    }
                    match check_context_item(&item) {
                        Ok(()) => out.push(item),
                        Err(message) => problems.push(Problem::at(
                            line,
                            Some(column),
                            SpecErrorKind::BadContext { item, message },
                        )),
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// The first word of a list item's source, after its marker and any checkbox.
fn first_word(item_src: &str) -> &str {
    let first = item_src.lines().next().unwrap_or("").trim_start();
    let rest = if let Some(r) = first.strip_prefix(['-', '*', '+']) {
        r
    } else {
        let digits = first.len() - first.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        let r = &first[digits..];
        r.strip_prefix(['.', ')']).unwrap_or(first)
    };
    let rest = strip_checkbox(rest.trim_start());
    rest.split_whitespace().next().unwrap_or("")
}

fn check_context_item(item: &str) -> Result<(), String> {
    if item.starts_with('/') || item.starts_with('\\') || item.get(1..2) == Some(":") {
        return Err("it must be relative to the repository root".to_owned());
    }
    if item.split(['/', '\\']).any(|part| part == "..") {
        return Err("it must not leave the repository (`..`)".to_owned());
    }
    globset::Glob::new(item).map_err(|e| e.kind().to_string())?;
    Ok(())
}

fn strip_checkbox(s: &str) -> &str {
    for box_ in ["[ ]", "[x]", "[X]"] {
        if let Some(rest) = s.strip_prefix(box_) {
            return rest.trim_start();
        }
    }
    s
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

fn ends_with_ci(s: &str, suffix: &str) -> bool {
    s.len() >= suffix.len()
        && s.is_char_boundary(s.len() - suffix.len())
        && s[s.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headings_classify() {
        assert_eq!(classify("Acceptance Criteria"), Kind::Criteria);
        assert_eq!(classify("acceptance  criteria:"), Kind::Criteria);
        assert_eq!(classify("DONE WHEN"), Kind::Criteria);
        assert_eq!(classify("Goals"), Kind::Objective);
        assert_eq!(classify("Files"), Kind::Context);
        assert_eq!(classify("Background"), Kind::Notes);
    }

    #[test]
    fn lines_map() {
        let l = Lines::new("a\nb\n\nc");
        assert_eq!(l.line(0), 1);
        assert_eq!(l.line(2), 2);
        assert_eq!(l.line(4), 3);
        assert_eq!(l.line(5), 4);
    }

    #[test]
    fn first_words() {
        assert_eq!(first_word("- src/**/*.rs — all"), "src/**/*.rs");
        assert_eq!(first_word("1. [ ] docs/a.md"), "docs/a.md");
    }
}
