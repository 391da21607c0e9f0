//! Commit messages of iteration and archive commits, and their `Mmm-*` trailers.
//!
//! Owns: the message format. Must not touch: git objects or refs.

/// Trailer keys.
pub mod key {
    /// The spec id.
    pub const SPEC: &str = "Mmm-Spec";
    /// The iteration number (1-based).
    pub const ITERATION: &str = "Mmm-Iteration";
    /// The run id.
    pub const RUN: &str = "Mmm-Run";
    /// The iteration status.
    pub const STATUS: &str = "Mmm-Status";
    /// The blob id of the spec file the iteration worked from.
    pub const SPEC_REVISION: &str = "Mmm-Spec-Revision";
    /// The commit the attempt's first iteration started from (its parent): readers such as
    /// `status` get a spec's base from the tip without walking to it. Commits written before
    /// it existed lack it; readers fall back to the walk.
    pub const BASE: &str = "Mmm-Base";
    /// On archive commits: why the commit was archived.
    pub const ARCHIVE: &str = "Mmm-Archive";
    /// On archive commits: the commit that was archived.
    pub const ARCHIVED: &str = "Mmm-Archived";
    /// On rollback archive commits: the branch tip before the rollback.
    pub const ROLLBACK_FROM: &str = "Mmm-Rollback-From";
    /// On rollback archive commits: the commit the branch was reset to.
    pub const ROLLBACK_TO: &str = "Mmm-Rollback-To";
    /// On checkpoint commits: the checkpoint number within the run.
    pub const CHECKPOINT: &str = "Mmm-Checkpoint";
}

/// The trailers of a message: the `Key: value` lines of its last paragraph.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trailers(Vec<(String, String)>);

impl Trailers {
    /// Parses the last paragraph of `message`. Lines that are not `Key: value` are ignored.
    pub fn parse(message: &str) -> Trailers {
        let trimmed = message.trim_end();
        let last = trimmed.rsplit("\n\n").next().unwrap_or("");
        // A one-paragraph message has no trailers (its only paragraph is the subject).
        if last.len() == trimmed.len() {
            return Trailers::default();
        }
        let mut out = Vec::new();
        for line in last.lines() {
            if let Some((k, v)) = line.split_once(": ") {
                let k = k.trim();
                if !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                    out.push((k.to_owned(), v.trim().to_owned()));
                }
            }
        }
        Trailers(out)
    }

    /// The last value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }

    /// The iteration number, if present and numeric.
    pub fn iteration(&self) -> Option<u32> {
        self.get(key::ITERATION)?.parse().ok()
    }
}

/// Builds a message: subject, optional body, then the trailers as the last paragraph.
pub fn message(subject: &str, body: &str, trailers: &[(&str, String)]) -> String {
    let mut msg = one_line(subject);
    msg.push_str("\n\n");
    let body = body.trim();
    if !body.is_empty() {
        msg.push_str(body);
        msg.push_str("\n\n");
    }
    for (k, v) in trailers {
        msg.push_str(k);
        msg.push_str(": ");
        msg.push_str(&one_line(v));
        msg.push('\n');
    }
    msg
}

/// `message` with the trailer `key` set to `value`: its line in the trailers replaced, or
/// added at their end.
pub fn with_trailer(message: &str, key: &str, value: &str) -> String {
    let trimmed = message.trim_end();
    let start = trimmed.rfind("\n\n").map_or(trimmed.len(), |i| i + 2);
    let (head, last) = trimmed.split_at(start);
    if last.is_empty() || Trailers::parse(trimmed) == Trailers::default() {
        return format!("{trimmed}\n\n{key}: {}\n", one_line(value));
    }
    let mut lines: Vec<String> = Vec::new();
    let mut found = false;
    for line in last.lines() {
        match line.split_once(": ") {
            Some((k, _)) if k.trim().eq_ignore_ascii_case(key) => {
                found = true;
                lines.push(format!("{key}: {}", one_line(value)));
            }
            _ => lines.push(line.to_owned()),
        }
    }
    if !found {
        lines.push(format!("{key}: {}", one_line(value)));
    }
    format!("{head}{}\n", lines.join("\n"))
}

/// Collapses whitespace runs (newlines included) into single spaces.
pub fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        let m = message(
            "mmm(x): iteration 2: did\nthings",
            "Body: looks like a trailer\n",
            &[(key::SPEC, "x".into()), (key::ITERATION, "2".into())],
        );
        assert_eq!(
            m,
            "mmm(x): iteration 2: did things\n\nBody: looks like a trailer\n\nMmm-Spec: x\nMmm-Iteration: 2\n"
        );
        let t = Trailers::parse(&m);
        assert_eq!(t.get("mmm-spec"), Some("x"));
        assert_eq!(t.iteration(), Some(2));
        assert_eq!(t.get("Body"), None);
        assert_eq!(
            Trailers::parse("Mmm-Spec: subject only"),
            Trailers::default()
        );
    }

    #[test]
    fn a_trailer_is_replaced_or_added() {
        let m = message(
            "s",
            "",
            &[(key::SPEC, "x".into()), (key::BASE, "old".into())],
        );
        let m = with_trailer(&m, key::BASE, "new");
        assert_eq!(m, "s\n\nMmm-Spec: x\nMmm-Base: new\n");
        let m = with_trailer("s\n\nbody\n\nMmm-Spec: x\n", key::BASE, "b");
        assert_eq!(m, "s\n\nbody\n\nMmm-Spec: x\nMmm-Base: b\n");
        assert_eq!(
            with_trailer("subject", key::BASE, "b"),
            "subject\n\nMmm-Base: b\n"
        );
    }
}
