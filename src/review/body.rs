//! The pull request's title and body, written from the spec when mmm opens the pull request
//! and rewritten when the spec changes.
//!
//! Owns: their text. Must not touch: the store, the network.

use std::fmt::Write as _;

use crate::spec::Spec;

/// The longest title GitHub accepts, in characters.
const MAX_TITLE_CHARS: usize = 256;

/// The objective's characters kept, so that the body stays far below the forge's limit.
const MAX_OBJECTIVE_CHARS: usize = 20_000;

/// The title and body of a spec's pull request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrText {
    /// The spec's title (its id when it has none), on one line.
    pub title: String,
    /// Markdown: the objective, the criteria, who maintains the pull request, a hidden marker.
    pub body: String,
}

/// The hidden line that marks a pull request's body as mmm's, for `spec`.
pub fn body_marker(spec: &str) -> String {
    format!("<!-- mmm:pr spec={spec} -->")
}

/// The title and body of `spec`'s pull request.
pub fn pr_text(spec: &Spec) -> PrText {
    let title = spec.title.split_whitespace().collect::<Vec<_>>().join(" ");
    let title = if title.is_empty() {
        spec.id.to_string()
    } else {
        clip(&title, MAX_TITLE_CHARS)
    };
    let mut body = String::new();
    let objective = spec.objective.trim();
    if !objective.is_empty() {
        let _ = writeln!(
            body,
            "## Objective\n\n{}\n",
            clip(objective, MAX_OBJECTIVE_CHARS)
        );
    }
    if !spec.criteria.is_empty() {
        body.push_str("## Acceptance criteria\n\n");
        for c in &spec.criteria {
            let text = c.text.split_whitespace().collect::<Vec<_>>().join(" ");
            match &c.verify {
                Some(cmd) => {
                    let _ = writeln!(body, "- {text} (checked by {})", code(cmd));
                }
                None => {
                    let _ = writeln!(body, "- {text}");
                }
            }
        }
        body.push('\n');
    }
    let _ = write!(
        body,
        "---\n_mmm maintains this pull request: it is the branch `mmm/{id}`, one commit per \
         iteration of the spec {path}, and the status comment below follows every iteration. \
         A review that requests changes, and comments from people with write access, are fed \
         to the next iterations; an approval passes the spec's checkpoint._\n\n{marker}\n",
        id = spec.id,
        path = code(&spec.path.display().to_string()),
        marker = body_marker(spec.id.as_str()),
    );
    PrText { title, body }
}

/// `s` as an inline code span, with a fence of backticks longer than any run inside it.
fn code(s: &str) -> String {
    let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    let longest = s.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest + 1);
    if longest > 0 {
        format!("{fence} {s} {fence}")
    } else {
        format!("{fence}{s}{fence}")
    }
}

fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max.saturating_sub(1)) {
        Some((i, _)) if s[i..].chars().nth(1).is_some() => format!("{}…", &s[..i]),
        _ => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn spec(text: &str) -> Spec {
        Spec::parse(Path::new("specs/auth/login.md"), text.as_bytes()).expect("a spec")
    }

    #[test]
    fn title_and_body_come_from_the_spec() {
        let s = spec(
            "+++\nid = \"login\"\n+++\n# Users   log in\n\n## Objective\n\nUsers log in with a \
             **password**.\n\nSessions last a day.\n\n## Acceptance criteria\n\n\
             - a right password logs in, verify: `cargo test login_ok`\n\
             - the page looks calm\n",
        );
        let pr = pr_text(&s);
        assert_eq!(pr.title, "Users log in");
        insta::assert_snapshot!(pr.body, @r#"
        ## Objective

        Users log in with a **password**.

        Sessions last a day.

        ## Acceptance criteria

        - a right password logs in (checked by `cargo test login_ok`)
        - the page looks calm

        ---
        _mmm maintains this pull request: it is the branch `mmm/login`, one commit per iteration of the spec `specs/auth/login.md`, and the status comment below follows every iteration. A review that requests changes, and comments from people with write access, are fed to the next iterations; an approval passes the spec's checkpoint._

        <!-- mmm:pr spec=login -->
        "#);
    }

    #[test]
    fn a_command_with_backticks_keeps_its_span() {
        assert_eq!(code("echo `date`"), "`` echo `date` ``");
        assert_eq!(code("a``b"), "``` a``b ```");
        assert_eq!(code("cargo test"), "`cargo test`");
    }

    #[test]
    fn a_long_title_is_clipped() {
        let long = "word ".repeat(100);
        let s = spec(&format!(
            "# {long}\n\n## Objective\n\nx\n\n## Acceptance criteria\n\n- y\n"
        ));
        let pr = pr_text(&s);
        assert_eq!(pr.title.chars().count(), MAX_TITLE_CHARS);
        assert!(pr.title.ends_with('…'));
        assert!(pr.body.ends_with("<!-- mmm:pr spec=login -->\n"));
    }
}
