//! The line scanner behind [`super::parse`]: fences, path lines, search/replace blocks and
//! directives. One pass over the lines, linear in the size of the response.

use super::{DIRECTIVE_PREFIX, Edit, Parsed, Problem, ProblemKind, diff, excerpt};

struct Fence {
    ch: char,
    len: usize,
    indent: usize,
    info: String,
}

fn open_fence(line: &str) -> Option<Fence> {
    let trimmed = line.trim_start_matches([' ', '\t']);
    let indent = line.len() - trimmed.len();
    let ch = trimmed.chars().next()?;
    if ch != '`' && ch != '~' {
        return None;
    }
    let len = trimmed.chars().take_while(|&c| c == ch).count();
    if len < 3 {
        return None;
    }
    let info = trimmed[len..].trim();
    if ch == '`' && info.contains('`') {
        return None;
    }
    Some(Fence {
        ch,
        len,
        indent,
        info: info.to_string(),
    })
}

fn closes(fence: &Fence, line: &str) -> bool {
    let t = line.trim();
    let run = t.chars().take_while(|&c| c == fence.ch).count();
    run >= fence.len && run == t.chars().count()
}

/// What the info string of a fence says.
struct Info {
    lang: String,
    path: Option<String>,
    run: bool,
}

fn parse_info(info: &str) -> Info {
    let mut lang = String::new();
    let mut path = None;
    let mut run = false;
    for (k, word) in info.split_whitespace().enumerate() {
        if let Some((key, value)) = word.split_once('=') {
            if matches!(key, "path" | "file" | "filename") {
                let v = value.trim_matches(|c| c == '"' || c == '\'');
                if !v.is_empty() {
                    path = Some(v.to_string());
                }
            }
        } else if k == 0 {
            lang = word.to_ascii_lowercase();
        } else if word == "run" {
            run = true;
        }
    }
    Info { lang, path, run }
}

/// A line that names a path: `src/lib.rs`, `` `src/lib.rs` ``, `File: src/lib.rs`,
/// `### src/lib.rs`, `**src/lib.rs**`. Returns the path and whether the line used an explicit
/// `File:`/`Path:` label.
fn path_line(line: &str) -> Option<(String, bool)> {
    let mut t = line.trim();
    let mut loose = true; // bare, heading and bold forms need a `.` or `/` to count as a path
    while let Some(rest) = t.strip_prefix('#') {
        t = rest;
    }
    t = t.trim();
    if let Some(inner) = t.strip_prefix("**").and_then(|s| s.strip_suffix("**")) {
        t = inner.trim();
    }
    let mut explicit = false;
    if t.starts_with("**") && t[2..].to_ascii_lowercase().contains(":**") {
        t = &t[2..];
    }
    let lower = t.to_ascii_lowercase();
    for label in ["file:", "path:", "filename:", "file path:"] {
        if lower.starts_with(label) {
            t = t[label.len()..].trim();
            // `**File:** src/lib.rs`
            t = t.trim_start_matches("**").trim();
            explicit = true;
            loose = false;
            break;
        }
    }
    if let Some(inner) = t.strip_prefix('`').and_then(|s| s.strip_suffix('`')) {
        t = inner.trim();
        loose = false;
    } else if let Some(inner) = t.strip_prefix('`').and_then(|s| s.strip_suffix("`:")) {
        t = inner.trim();
        loose = false;
    } else {
        t = t.strip_suffix(':').unwrap_or(t);
    }
    if t.is_empty() || t.starts_with(DIRECTIVE_PREFIX) || t.chars().any(char::is_whitespace) {
        return None;
    }
    if t.chars().any(|c| "()[]{},;\"'<>|*?`=".contains(c)) || t.starts_with('-') {
        return None;
    }
    if !t.chars().any(char::is_alphanumeric) || t.ends_with('.') {
        return None;
    }
    if loose && !(t.contains('/') || t.contains('.')) {
        return None;
    }
    Some((t.to_string(), explicit))
}

fn marker(line: &str, ch: char, word: &str) -> bool {
    let t = line.trim();
    let run = t.chars().take_while(|&c| c == ch).count();
    if !(5..=9).contains(&run) {
        return false;
    }
    t[run..].trim() == word
}

fn is_search(line: &str) -> bool {
    marker(line, '<', "SEARCH")
}

fn is_divider(line: &str) -> bool {
    marker(line, '=', "")
}

fn is_replace(line: &str) -> bool {
    marker(line, '>', "REPLACE")
}

fn join_block(lines: &[&str]) -> String {
    if lines.is_empty() {
        return String::new();
    }
    let mut s = lines.join("\n");
    s.push('\n');
    s
}

pub(super) struct Parser<'a> {
    lines: Vec<&'a str>,
    out: Parsed,
    /// The path of the last search/replace block, for several blocks on one file.
    sr_path: Option<String>,
}

impl<'a> Parser<'a> {
    pub(super) fn new(text: &'a str) -> Parser<'a> {
        let lines = text
            .split('\n')
            .map(|l| l.strip_suffix('\r').unwrap_or(l))
            .collect();
        Parser {
            lines,
            out: Parsed::default(),
            sr_path: None,
        }
    }

    pub(super) fn run(mut self) -> Parsed {
        let n = self.lines.len();
        let mut i = 0;
        while i < n {
            let line = self.lines[i];
            if let Some(fence) = open_fence(line) {
                i = self.fenced(i, fence);
            } else if is_search(line) {
                let path = self.path_before(i);
                let lines = std::mem::take(&mut self.lines);
                i = self.search_replace(&lines, i, 1, path);
                self.lines = lines;
            } else if line.starts_with(DIRECTIVE_PREFIX) {
                i = self.directive(i);
            } else {
                if let Some((path, true)) = path_line(line) {
                    // Same allowance as `path_before`: at most one blank line in between.
                    let next = self.lines[i + 1..]
                        .iter()
                        .take(2)
                        .find(|l| !l.trim().is_empty())
                        .copied();
                    if !next.is_some_and(|l| open_fence(l).is_some() || is_search(l)) {
                        self.problem(
                            ProblemKind::PathWithoutBlock,
                            format!(
                                "`{path}` is named but no code block or search/replace block \
                                 follows it; put the fenced block on the next line"
                            ),
                            i + 1,
                        );
                    }
                }
                i += 1;
            }
        }
        self.out
    }

    fn problem(&mut self, kind: ProblemKind, message: String, line: usize) {
        self.out.problems.push(Problem {
            kind,
            message,
            line,
        });
    }

    /// The path named on the line just before line `i` (one blank line in between is allowed).
    fn path_before(&self, i: usize) -> Option<String> {
        let prev = i.checked_sub(1).map(|k| self.lines[k])?;
        if let Some((p, _)) = path_line(prev) {
            return Some(p);
        }
        if prev.trim().is_empty() {
            let prev2 = i.checked_sub(2).map(|k| self.lines[k])?;
            return path_line(prev2).map(|(p, _)| p);
        }
        None
    }

    /// Handles a fenced block opening at line `i`; returns the index of the line after it.
    fn fenced(&mut self, i: usize, fence: Fence) -> usize {
        let n = self.lines.len();
        let Some(close) = (i + 1..n).find(|&j| closes(&fence, self.lines[j])) else {
            self.problem(
                ProblemKind::UnterminatedFence,
                format!(
                    "the code block opened here with `{}` is never closed; nothing in it was \
                     applied",
                    excerpt(self.lines[i].trim())
                ),
                i + 1,
            );
            return n;
        };
        let body: Vec<&str> = self.lines[i + 1..close]
            .iter()
            .map(|l| strip_indent(l, fence.indent))
            .collect();
        let info = parse_info(&fence.info);
        let named = info.path.clone().or_else(|| self.path_before(i));
        if body.iter().any(|l| is_search(l)) {
            self.search_replace_all(&body, i + 2, named);
        } else if matches!(info.lang.as_str(), "diff" | "patch" | "udiff") {
            let (edits, problems) = diff::parse(&body, i + 2);
            self.out.edits.extend(edits);
            self.out.problems.extend(problems);
        } else if info.run && matches!(info.lang.as_str(), "sh" | "bash" | "shell" | "zsh") {
            self.commands(&body);
        } else if let Some(path) = named {
            self.out.edits.push(Edit::Write {
                path,
                content: join_block(&body),
            });
        }
        close + 1
    }

    fn commands(&mut self, body: &[&str]) {
        let mut pending = String::new();
        for l in body {
            let t = l.trim();
            if pending.is_empty() && (t.is_empty() || t.starts_with('#')) {
                continue;
            }
            if let Some(head) = t.strip_suffix('\\') {
                pending.push_str(head.trim_end());
                pending.push(' ');
                continue;
            }
            pending.push_str(t);
            let cmd = std::mem::take(&mut pending);
            self.out.commands.push(cmd.trim().to_string());
        }
        if !pending.trim().is_empty() {
            self.out.commands.push(pending.trim().to_string());
        }
    }

    /// Search/replace blocks inside a fence: each may be preceded by its own path line.
    fn search_replace_all(&mut self, body: &[&str], first_line: usize, named: Option<String>) {
        let mut path = named;
        let mut k = 0;
        while k < body.len() {
            if is_search(body[k]) {
                let own = k
                    .checked_sub(1)
                    .and_then(|p| path_line(body[p]))
                    .map(|(p, _)| p);
                if own.is_some() {
                    path = own;
                }
                k = self.search_replace(body, k, first_line, path.clone());
            } else {
                k += 1;
            }
        }
    }

    /// Reads one search/replace block starting at `lines[at]`; returns the index after it.
    /// `first_line` is the 1-based response line of `lines[0]`.
    fn search_replace(
        &mut self,
        lines: &[&str],
        at: usize,
        first_line: usize,
        path: Option<String>,
    ) -> usize {
        let line_no = first_line + at;
        let mut k = at + 1;
        let mut divider = None;
        while k < lines.len() {
            let l = lines[k];
            if divider.is_none() && is_divider(l) {
                divider = Some(k);
            } else if is_replace(l) && divider.is_some() {
                break;
            } else if is_search(l) {
                self.problem(
                    ProblemKind::UnterminatedSearchReplace,
                    "a `<<<<<<< SEARCH` block is not closed by `=======` and `>>>>>>> REPLACE` \
                     before the next one starts"
                        .into(),
                    line_no,
                );
                return k;
            }
            k += 1;
        }
        let Some(div) = divider.filter(|_| k < lines.len()) else {
            let missing = if divider.is_none() {
                "`=======`"
            } else {
                "`>>>>>>> REPLACE`"
            };
            self.problem(
                ProblemKind::UnterminatedSearchReplace,
                format!("this `<<<<<<< SEARCH` block has no {missing} line; nothing was applied"),
                line_no,
            );
            return lines.len();
        };
        let path = path.or_else(|| self.sr_path.clone());
        let Some(path) = path else {
            self.problem(
                ProblemKind::MissingPath,
                "a search/replace block needs the file's path on the line just before it".into(),
                line_no,
            );
            return k + 1;
        };
        self.sr_path = Some(path.clone());
        self.out.edits.push(Edit::Replace {
            path,
            search: join_block(&lines[at + 1..div]),
            replace: join_block(&lines[div + 1..k]),
        });
        k + 1
    }

    /// Handles a line starting with `@mmm:`; returns the index of the next line to scan.
    fn directive(&mut self, i: usize) -> usize {
        let rest = &self.lines[i][DIRECTIVE_PREFIX.len()..];
        let (name, arg) = match rest.split_once(char::is_whitespace) {
            Some((n, a)) => (n, a.trim()),
            None => (rest.trim(), ""),
        };
        match name {
            "complete" => self.out.directives.complete = true,
            "needs-review" => self.out.directives.needs_review = Some(arg.to_string()),
            "summary" => {
                let mut text = arg.to_string();
                let mut k = i + 1;
                while k < self.lines.len() {
                    let l = self.lines[k];
                    if l.trim().is_empty()
                        || l.starts_with(DIRECTIVE_PREFIX)
                        || open_fence(l).is_some()
                    {
                        break;
                    }
                    if !text.is_empty() {
                        text.push('\n');
                    }
                    text.push_str(l.trim_end());
                    k += 1;
                }
                let summary = match self.out.directives.summary.take() {
                    Some(prev) => format!("{prev}\n{text}"),
                    None => text,
                };
                self.out.directives.summary = Some(summary);
                return k;
            }
            "run" => {
                if arg.is_empty() {
                    self.problem(
                        ProblemKind::BadDirective,
                        "`@mmm:run` needs a command on the same line".into(),
                        i + 1,
                    );
                } else {
                    self.out.commands.push(arg.to_string());
                }
            }
            other => self.problem(
                ProblemKind::UnknownDirective,
                format!(
                    "unknown directive `@mmm:{}`; known: @mmm:complete, @mmm:needs-review, \
                     @mmm:summary, @mmm:run",
                    excerpt(other)
                ),
                i + 1,
            ),
        }
        i + 1
    }
}

/// Removes up to `n` leading spaces (the fence's own indentation) from a body line.
fn strip_indent(line: &str, n: usize) -> &str {
    let spaces = line.bytes().take(n).take_while(|&b| b == b' ').count();
    &line[spaces..]
}

#[cfg(test)]
mod tests {
    use super::path_line;

    #[test]
    fn path_line_forms() {
        for (line, want) in [
            ("src/lib.rs", Some("src/lib.rs")),
            ("`src/lib.rs`", Some("src/lib.rs")),
            ("`Makefile`", Some("Makefile")),
            ("File: src/lib.rs", Some("src/lib.rs")),
            ("**File:** src/lib.rs", Some("src/lib.rs")),
            ("### src/lib.rs", Some("src/lib.rs")),
            ("**src/lib.rs**", Some("src/lib.rs")),
            ("src/lib.rs:", Some("src/lib.rs")),
            ("Here is the file:", None),
            ("Done.", None),
            ("### Summary", None),
            ("Makefile", None),
            ("- item", None),
            ("", None),
        ] {
            assert_eq!(path_line(line).map(|(p, _)| p).as_deref(), want, "{line:?}");
        }
    }
}
