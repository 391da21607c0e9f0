//! Events a CI system hands to `git mmm event`: the name and the JSON payload of a GitHub
//! Actions event (`GITHUB_EVENT_NAME`, `GITHUB_EVENT_PATH`). Only the fields mmm uses are read;
//! the rest of the payload is ignored.

use serde::Deserialize;

/// The event names `git mmm event` handles.
pub const HANDLED: &[&str] = &["push"];

/// A `push` event's payload (GitHub's `webhook-push`): the ref and the range it moved.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct PushEvent {
    /// The updated ref (`refs/heads/main`).
    #[serde(rename = "ref")]
    pub git_ref: String,
    /// The ref's id before the push (40 zeros: the ref was created).
    pub before: String,
    /// The ref's id after the push (40 zeros: the ref was deleted).
    pub after: String,
    /// The ref was created.
    #[serde(default)]
    pub created: bool,
    /// The ref was deleted.
    #[serde(default)]
    pub deleted: bool,
    /// The push was forced.
    #[serde(default)]
    pub forced: bool,
    /// The repository, for its default branch.
    #[serde(default)]
    pub repository: Option<Repository>,
}

/// The payload's repository, as far as mmm reads it.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Repository {
    /// The default branch (`main`).
    #[serde(default)]
    pub default_branch: Option<String>,
}

impl PushEvent {
    /// True when `before` is all zeros (a new branch).
    pub fn is_new_branch(&self) -> bool {
        self.created || is_zero(&self.before)
    }

    /// True when the ref was deleted (nothing to run).
    pub fn is_deletion(&self) -> bool {
        self.deleted || is_zero(&self.after)
    }
}

fn is_zero(id: &str) -> bool {
    !id.is_empty() && id.chars().all(|c| c == '0')
}

/// Reads a push payload, saying which field is missing or malformed.
pub fn parse_push(json: &str) -> Result<PushEvent, serde_json::Error> {
    serde_json::from_str(json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_created_branch_has_a_zero_before() {
        let e = parse_push(
            r#"{"ref":"refs/heads/f","before":"0000000000000000000000000000000000000000",
            "after":"1111111111111111111111111111111111111111","created":true,"deleted":false,
            "forced":false,"commits":[],"repository":{"default_branch":"main"}}"#,
        )
        .expect("payload");
        assert!(e.is_new_branch());
        assert!(!e.is_deletion());
        assert_eq!(
            e.repository.and_then(|r| r.default_branch).as_deref(),
            Some("main")
        );
        assert!(parse_push(r#"{"before":"x"}"#).is_err());
    }
}
