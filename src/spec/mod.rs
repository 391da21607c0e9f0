//! Specs: discovery of `specs/**/*.md`, parsing (front matter, title, objective, acceptance
//! criteria with `verify` commands, context, notes), slug validation, and the dependency graph.
//!
//! Owns: the [`Spec`] model and its errors. Must not touch: git refs, the network, the terminal.

use std::fmt;

/// A spec's identifier: a slug (`[a-z0-9][a-z0-9._-]*`) that names its branch
/// `refs/heads/mmm/<id>` and its notes refs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct SpecId(String);

impl SpecId {
    /// Validates a slug. On failure the error is a suggested valid slug, if one can be made.
    pub fn new(s: &str) -> Result<SpecId, Option<String>> {
        if is_slug(s) {
            Ok(SpecId(s.to_owned()))
        } else {
            Err(suggest_slug(s))
        }
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SpecId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for SpecId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

fn is_slug(s: &str) -> bool {
    let mut chars = s.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    first_ok
        && s.len() <= 100
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
        && !s.ends_with('.')
        && !s.ends_with(".lock")
        && !s.contains("..")
}

/// Lower-cases, turns runs of other characters into `-`, trims leading and trailing
/// separators. `None` when nothing usable is left.
fn suggest_slug(s: &str) -> Option<String> {
    let mut out = String::new();
    for c in s.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let out = out
        .trim_matches(|c| c == '-' || c == '_')
        .chars()
        .take(100)
        .collect::<String>();
    let out = out.trim_end_matches('-').to_owned();
    is_slug(&out).then_some(out)
}

#[cfg(test)]
mod id_tests {
    use super::*;

    #[test]
    fn slugs() {
        assert!(SpecId::new("login-flow").is_ok());
        assert!(SpecId::new("v1.2_x").is_ok());
        assert_eq!(SpecId::new("Login Flow!"), Err(Some("login-flow".into())));
        assert_eq!(SpecId::new("-x"), Err(Some("x".into())));
        assert_eq!(SpecId::new("a..b"), Err(Some("a-b".into())));
        assert_eq!(SpecId::new("!!!"), Err(None));
        assert!(SpecId::new("x.lock").is_err());
        assert!(SpecId::new("").is_err());
    }
}
