//! Token estimates, cutting text at line boundaries, trimming long command output, and the
//! greedy packer that fits prioritised items into the budget.
//!
//! Owns: the estimate heuristic and the visible markers. Must not touch: the file system.

use serde::Serialize;

/// How much an item matters; items are packed in this order (critical first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// Instructions, the spec, its criteria, the latest failures, feedback and edit problems.
    /// Cut to fit if needed, never dropped.
    Critical,
    /// Files named by the spec's context, touched earlier, or named in failures. Cut to fit.
    High,
    /// Repository map, memory, dependency summaries. Dropped whole if they do not fit.
    Medium,
    /// Other files ranked by relevance. Dropped whole if they do not fit.
    Low,
}

/// Estimates the number of tokens of `text`.
///
/// The heuristic is 3.5 bytes per token, rounded up: a little more pessimistic than the usual
/// "4 characters per token" for English prose, because source code (short identifiers,
/// punctuation, indentation) tokenises denser. Over-estimating keeps the packer from
/// overshooting the window; the provider reports the real count afterwards.
pub fn estimate_tokens(text: &str) -> usize {
    (text.len() * 2).div_ceil(7)
}

/// The marker that replaces the lines of an item cut to fit.
pub fn truncation_marker(more_lines: usize) -> String {
    format!("[… truncated by mmm: {more_lines} more lines …]")
}

/// Cuts `text` at a line boundary so that the kept lines plus the marker fit in `max_tokens`.
/// At least `min_lines` lines are kept even when they do not fit. Returns the cut text, the
/// number of kept lines and the total number of lines; `None` when the text fits whole.
pub fn cut_to_tokens(text: &str, max_tokens: usize, min_lines: usize) -> Option<Cut> {
    if estimate_tokens(text) <= max_tokens {
        return None;
    }
    let lines: Vec<&str> = text.lines().collect();
    let total = lines.len();
    let mut kept_bytes = 0;
    let mut kept = 0;
    for line in &lines {
        let marker = truncation_marker(total - kept - 1);
        let next = kept_bytes + line.len() + 1;
        if kept >= min_lines && (next + marker.len() + 1) * 2 > max_tokens * 7 {
            break;
        }
        kept_bytes = next;
        kept += 1;
        if kept == total {
            break;
        }
    }
    let mut out = String::with_capacity(kept_bytes + 64);
    for line in &lines[..kept] {
        out.push_str(line);
        out.push('\n');
    }
    if kept < total {
        out.push_str(&truncation_marker(total - kept));
        out.push('\n');
    }
    Some(Cut {
        text: out,
        kept_lines: kept,
        total_lines: total,
    })
}

/// The result of [`cut_to_tokens`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cut {
    /// The kept lines followed by the marker.
    pub text: String,
    /// How many lines were kept.
    pub kept_lines: usize,
    /// How many lines the text had.
    pub total_lines: usize,
}

/// Lines kept from the start of a long command output.
pub const OUTPUT_HEAD_LINES: usize = 15;
/// Lines kept from the end of a long command output (where compilers and test runners put
/// their summary).
pub const OUTPUT_TAIL_LINES: usize = 25;

/// Trims a long command output to its first [`OUTPUT_HEAD_LINES`] and last
/// [`OUTPUT_TAIL_LINES`] lines, with a visible `[… N lines cut …]` marker between them.
pub fn trim_output(output: &str) -> String {
    let lines: Vec<&str> = output.lines().collect();
    if lines.len() <= OUTPUT_HEAD_LINES + OUTPUT_TAIL_LINES + 1 {
        return output.trim_end().to_owned();
    }
    let cut = lines.len() - OUTPUT_HEAD_LINES - OUTPUT_TAIL_LINES;
    let mut out = lines[..OUTPUT_HEAD_LINES].join("\n");
    out.push_str(&format!("\n[… {cut} lines cut …]\n"));
    out.push_str(&lines[lines.len() - OUTPUT_TAIL_LINES..].join("\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimate_is_pessimistic_for_code() {
        assert_eq!(estimate_tokens(""), 0);
        assert_eq!(estimate_tokens("abcdefg"), 2);
        assert_eq!(estimate_tokens("a"), 1);
    }

    #[test]
    fn cut_keeps_whole_lines_and_marks() {
        let text: String = (0..100).map(|i| format!("line {i}\n")).collect();
        let cut = cut_to_tokens(&text, 30, 1).expect("must cut");
        assert!(
            cut.text
                .ends_with("[… truncated by mmm: 91 more lines …]\n"),
            "{}",
            cut.text
        );
        assert_eq!(cut.kept_lines, 9);
        assert!(estimate_tokens(&cut.text) <= 30);
        assert!(cut_to_tokens("short\n", 30, 1).is_none());
    }

    #[test]
    fn cut_keeps_min_lines() {
        let text = "a very long first line that does not fit\nsecond\n";
        let cut = cut_to_tokens(text, 1, 1).expect("must cut");
        assert_eq!(cut.kept_lines, 1);
        assert!(cut.text.contains("1 more lines"));
    }

    #[test]
    fn trim_keeps_head_and_tail() {
        let out: String = (0..100).map(|i| format!("l{i}\n")).collect();
        let t = trim_output(&out);
        assert!(t.starts_with("l0\n"));
        assert!(t.contains("[… 60 lines cut …]"));
        assert!(t.ends_with("l99"));
        assert_eq!(trim_output("a\nb\n"), "a\nb");
    }
}
