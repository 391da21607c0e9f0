//! Text surgery: search/replace with whitespace tolerance, and hunk application with offset
//! tolerance. Pure functions on strings; no file system.

use crate::response::{Hunk, HunkLine};

use super::ApplyError;

fn excerpt(s: &str) -> String {
    let line = s
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    let mut out: String = line.chars().take(60).collect();
    if line.chars().count() > 60 {
        out.push('…');
    }
    out
}

fn to_crlf(s: &str) -> String {
    s.replace("\r\n", "\n").replace('\n', "\r\n")
}

fn indent_of(s: &str) -> &str {
    &s[..s.len() - s.trim_start().len()]
}

/// Replaces the one occurrence of `search` in `content` with `replace`: exact first, then
/// ignoring trailing whitespace and indentation (re-indenting the replacement to match).
pub(super) fn replace(content: &str, search: &str, replace: &str) -> Result<String, ApplyError> {
    let crlf = content.contains("\r\n");
    let (search_x, replace_x) = if crlf {
        (to_crlf(search), to_crlf(replace))
    } else {
        (search.to_string(), replace.to_string())
    };
    if search_x.trim().is_empty() {
        if content.is_empty() {
            return Ok(replace_x);
        }
        return Err(ApplyError::EmptySearch);
    }
    match content.match_indices(&search_x).take(2).count() {
        1 => return Ok(content.replacen(&search_x, &replace_x, 1)),
        0 => {}
        _ => {
            return Err(ApplyError::Ambiguous {
                count: content.matches(&search_x).count(),
                first_line: excerpt(search),
            });
        }
    }
    tolerant_replace(content, search, replace, crlf)
}

fn tolerant_replace(
    content: &str,
    search: &str,
    replace: &str,
    crlf: bool,
) -> Result<String, ApplyError> {
    let file: Vec<&str> = content.split_inclusive('\n').collect();
    let mut want: Vec<&str> = search.lines().collect();
    while want.last().is_some_and(|l| l.trim().is_empty()) {
        want.pop();
    }
    let lead = want.iter().take_while(|l| l.trim().is_empty()).count();
    let want = &want[lead..];
    let not_found = || ApplyError::SearchNotFound {
        first_line: excerpt(search),
    };
    if want.is_empty() || want.len() > file.len() {
        return Err(not_found());
    }
    let hits: Vec<usize> = (0..=file.len() - want.len())
        .filter(|&i| {
            want.iter()
                .zip(&file[i..])
                .all(|(w, f)| w.trim() == f.trim())
        })
        .collect();
    let at = match hits.as_slice() {
        [] => return Err(not_found()),
        [one] => *one,
        many => {
            return Err(ApplyError::Ambiguous {
                count: many.len(),
                first_line: excerpt(search),
            });
        }
    };
    let first = want
        .iter()
        .position(|l| !l.trim().is_empty())
        .expect("a search with only blank lines was refused above");
    let s_ind = indent_of(want[first]);
    let f_ind = indent_of(file[at + first]);
    let eol = if crlf { "\r\n" } else { "\n" };
    let mut out = String::with_capacity(content.len() + replace.len());
    for l in &file[..at] {
        out.push_str(l);
    }
    for l in replace.lines() {
        if !l.trim().is_empty() {
            match l.strip_prefix(s_ind) {
                Some(rest) => {
                    out.push_str(f_ind);
                    out.push_str(rest);
                }
                None => out.push_str(l),
            }
        }
        out.push_str(eol);
    }
    let end = at + want.len();
    if !file[end - 1].ends_with('\n') && out.ends_with(eol) && end == file.len() {
        out.truncate(out.len() - eol.len());
    }
    for l in &file[end..] {
        out.push_str(l);
    }
    Ok(out)
}

/// How strictly lines are compared when placing a hunk.
#[derive(Clone, Copy)]
enum Fuzz {
    Exact,
    TrailingSpace,
    Indentation,
}

fn same(a: &str, b: &str, fuzz: Fuzz) -> bool {
    match fuzz {
        Fuzz::Exact => a == b,
        Fuzz::TrailingSpace => a.trim_end() == b.trim_end(),
        Fuzz::Indentation => a.trim() == b.trim(),
    }
}

fn find_hunk(lines: &[String], old: &[&str], expected: usize, min: usize) -> Option<usize> {
    if old.len() > lines.len() {
        return None;
    }
    let max = lines.len() - old.len();
    if min > max {
        return None;
    }
    let expected = expected.clamp(min, max);
    for fuzz in [Fuzz::Exact, Fuzz::TrailingSpace, Fuzz::Indentation] {
        let fits = |p: usize| old.iter().zip(&lines[p..]).all(|(o, l)| same(l, o, fuzz));
        // Nearest to where the header says first, in both directions.
        for d in 0..=(max - min) {
            if expected + d <= max && fits(expected + d) {
                return Some(expected + d);
            }
            if d > 0 && expected >= min + d && fits(expected - d) {
                return Some(expected - d);
            }
            if expected + d > max && expected < min + d {
                break;
            }
        }
    }
    None
}

/// Applies the hunks to `content` in order. Context must match (exactly, or up to
/// whitespace); the position may be off from the header's line numbers.
pub(super) fn patch(content: &str, hunks: &[Hunk]) -> Result<String, ApplyError> {
    let crlf = content.contains("\r\n");
    let mut ends_nl = content.is_empty() || content.ends_with('\n');
    let mut lines: Vec<String> = content.lines().map(str::to_string).collect();
    let mut offset: isize = 0;
    let mut min = 0;
    for (k, h) in hunks.iter().enumerate() {
        let old = h.old_lines();
        let header = h.old_start.saturating_sub(1);
        let expected = (header as isize + offset).max(0) as usize;
        let at = if old.is_empty() {
            if h.old_start == 0 {
                // `@@ -0,0 +1 @@`: a new file, or (with a bare `@@`) an append.
                lines.len().min(expected.max(min))
            } else {
                (expected + 1).clamp(min, lines.len())
            }
        } else {
            find_hunk(&lines, &old, expected, min).ok_or_else(|| ApplyError::HunkMismatch {
                hunk: k + 1,
                line: h.old_start,
                first_line: excerpt(&old.join("\n")),
            })?
        };
        let mut new = Vec::new();
        let mut i = at;
        for l in &h.lines {
            match l {
                // Keep the file's own context line (it may differ in whitespace).
                HunkLine::Context(_) => {
                    new.push(lines[i].clone());
                    i += 1;
                }
                HunkLine::Remove(_) => i += 1,
                HunkLine::Add(s) => new.push(s.clone()),
            }
        }
        let added = new.len();
        lines.splice(at..at + old.len(), new);
        if at + added == lines.len() {
            if h.no_newline_at_end {
                ends_nl = false;
            } else if added > 0 {
                ends_nl = true;
            }
        }
        offset = (at + added) as isize - (header + old.len()) as isize;
        min = at + added;
    }
    if lines.is_empty() {
        return Ok(String::new());
    }
    let eol = if crlf { "\r\n" } else { "\n" };
    let mut out = lines.join(eol);
    if ends_nl {
        out.push_str(eol);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_and_tolerant_replace() {
        assert_eq!(
            replace("a\nb\nc\n", "b\n", "B\n").expect("the edit applies"),
            "a\nB\nc\n"
        );
        // Indentation differs: the replacement is re-indented to the file's.
        let file = "fn f() {\n        let x = 1;   \n        x\n}\n";
        let got = replace(file, "let x = 1;\nx\n", "let x = 2;\n    // more\nx + 1\n")
            .expect("the edit applies");
        assert_eq!(
            got,
            "fn f() {\n        let x = 2;\n            // more\n        x + 1\n}\n"
        );
    }

    #[test]
    fn ambiguous_and_missing() {
        assert!(matches!(
            replace("x\nx\n", "x\n", "y\n"),
            Err(ApplyError::Ambiguous { count: 2, .. })
        ));
        assert!(matches!(
            replace("  x\n y\n\tx\n y \n", "x\ny\n", "z\n"),
            Err(ApplyError::Ambiguous { count: 2, .. })
        ));
        assert!(matches!(
            replace("a\n", "b\n", "c\n"),
            Err(ApplyError::SearchNotFound { .. })
        ));
        assert!(matches!(
            replace("a\n", "", "c\n"),
            Err(ApplyError::EmptySearch)
        ));
    }

    #[test]
    fn crlf_is_kept() {
        assert_eq!(
            replace("a\r\nb\r\n", "a\n", "A\n").expect("the edit applies"),
            "A\r\nb\r\n"
        );
    }

    #[test]
    fn line_endings_are_kept() {
        assert_eq!(
            patch("a\r\nb\r\n", &[hunk(1, &["-a", "+A", " b"])]).expect("the edit applies"),
            "A\r\nb\r\n"
        );
        // Tolerant match on the last line of a file without a final newline.
        assert_eq!(
            replace("x\n  end", "end\n", "END\n").expect("the edit applies"),
            "x\n  END"
        );
        let mut h = hunk(2, &[" a", "-b", "+c"]);
        h.no_newline_at_end = true;
        assert_eq!(patch("a\nb\n", &[h]).expect("the edit applies"), "a\nc");
    }

    fn hunk(old_start: usize, lines: &[&str]) -> Hunk {
        Hunk {
            old_start,
            no_newline_at_end: false,
            lines: lines
                .iter()
                .map(|l| match l.split_at(1) {
                    ("+", s) => HunkLine::Add(s.into()),
                    ("-", s) => HunkLine::Remove(s.into()),
                    (_, s) => HunkLine::Context(s.into()),
                })
                .collect(),
        }
    }

    #[test]
    fn patch_with_offset_and_two_hunks() {
        let file = "0\n1\n2\n3\n4\n5\n6\n7\n8\n9\n";
        // Headers are off by two lines; the context still places them.
        let hunks = [
            hunk(1, &[" 2", "-3", "+three"]),
            hunk(6, &[" 7", "+7b", " 8"]),
        ];
        assert_eq!(
            patch(file, &hunks).expect("the edit applies"),
            "0\n1\n2\nthree\n4\n5\n6\n7\n7b\n8\n9\n"
        );
        let bad = [hunk(1, &[" nope", "-3"])];
        assert!(matches!(
            patch(file, &bad),
            Err(ApplyError::HunkMismatch { hunk: 1, .. })
        ));
        assert_eq!(
            patch("", &[hunk(0, &["+a", "+b"])]).expect("the edit applies"),
            "a\nb\n"
        );
    }
}
