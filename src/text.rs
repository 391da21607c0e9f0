//! Small text helpers shared by the parsers: the "did you mean" of their error messages, and
//! the line of a byte offset.

/// How alike a name and a candidate must be for the candidate to be suggested: `similar`'s
/// ratio (twice the matching characters over both lengths), as in Python's `difflib`.
/// Typos (a missing, doubled, swapped or wrong letter) score well above it; unrelated words
/// of similar length well below.
const CLOSE_ENOUGH: f32 = 0.7;

/// The candidate closest to `name`, if it is close enough to be a typo of it (the best ratio
/// wins; ties go to the candidate first in alphabetical order).
pub fn closest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let candidates: Vec<&'a str> = candidates.into_iter().collect();
    similar::get_close_matches(name, &candidates, 1, CLOSE_ENOUGH)
        .into_iter()
        .next()
}

/// The 1-based line of a byte offset in `text` (an offset past the end counts as the end).
pub fn line_at(text: &str, offset: usize) -> usize {
    let offset = offset.min(text.len());
    text.as_bytes()[..offset]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The suggestions the parsers' messages make (spec front matter, configuration,
    /// templates), and the ones they must not make.
    #[test]
    fn typos_are_caught_and_other_words_are_not() {
        let front = [
            "id",
            "priority",
            "depends_on",
            "max_iterations",
            "model",
            "agent",
            "labels",
            "timeout",
        ];
        assert_eq!(closest("prority", front), Some("priority"));
        assert_eq!(closest("depends_on", front), Some("depends_on"));
        assert_eq!(closest("dependson", front), Some("depends_on"));
        assert_eq!(closest("label", front), Some("labels"));
        assert_eq!(closest("colour", front), None);
        let looping = [
            "max_iterations",
            "timeout",
            "auto_commit",
            "stuck_after",
            "concurrency",
            "checkpoint_after",
        ];
        assert_eq!(closest("max_iteration", looping), Some("max_iterations"));
        assert_eq!(closest("timout", looping), Some("timeout"));
        assert_eq!(closest("colour", looping), None);
        let kinds = ["api", "claude-code", "command", "scripted"];
        assert_eq!(closest("claude_code", kinds), Some("claude-code"));
        let sections = ["loop", "specs", "agent", "model", "budget", "validate"];
        assert_eq!(closest("lop", sections), Some("loop"));
        assert_eq!(closest("colour", sections), None);
        let prices = [
            "input",
            "output",
            "cache_write_5m",
            "cache_write_1h",
            "cache_read",
        ];
        assert_eq!(closest("outptu", prices), Some("output"));
        assert_eq!(
            closest("requierd", ["after", "required", "timeout"]),
            Some("required")
        );
        let placeholders = [
            "project_name",
            "iteration",
            "max_iterations",
            "dependencies",
        ];
        assert_eq!(closest("itration", placeholders), Some("iteration"));
        assert_eq!(closest(" ", placeholders), None);
        assert_eq!(closest("", placeholders), None);
    }

    #[test]
    fn lines() {
        assert_eq!(line_at("a\nb\nc", 0), 1);
        assert_eq!(line_at("a\nb\nc", 2), 2);
        assert_eq!(line_at("a\nb\nc", 100), 3);
    }
}
