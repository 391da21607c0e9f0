//! The review host: GitHub, behind the small [`ReviewHost`] trait, so that the loop can be
//! tested with fakes and another forge can come later.
//!
//! Owns: which repository and endpoints to talk to ([`target`]), the HTTP client over octocrab
//! with rate limits, conditional requests and pagination ([`client`]), the trait's GitHub
//! implementation ([`host`]), and keeping one pull request per spec current ([`pull`]).
//! Must not touch: the store, the engine's decisions, or the process environment (the token
//! and the `GITHUB_*` variables come in as arguments).

mod client;
mod error;
mod host;
pub mod pull;
pub mod source;
pub mod target;

use serde::{Deserialize, Serialize};

pub use client::{CallCounts, ClientOptions, EndpointCalls, GitHub};
pub use error::GithubError;
pub use target::{Target, TargetInputs};

/// What a review host answers with.
pub type Result<T, E = GithubError> = std::result::Result<T, E>;

/// A user or bot account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// The login.
    pub login: String,
    /// `User`, `Bot` or `Organization`.
    #[serde(rename = "type", default)]
    pub kind: String,
}

impl User {
    /// A bot account (`github-actions[bot]`, an app): never a reviewer that steers the loop.
    pub fn is_bot(&self) -> bool {
        self.kind == "Bot" || self.login.ends_with("[bot]")
    }
}

/// A pull request, as much of it as the loop needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PullRequest {
    /// Its number (also its issue number).
    pub number: u64,
    /// Its GraphQL id (for draft → ready).
    pub node_id: String,
    /// The title.
    pub title: String,
    /// The body (empty when none).
    pub body: String,
    /// A draft.
    pub draft: bool,
    /// `open` or `closed`.
    pub state: String,
    /// Merged.
    pub merged: bool,
    /// The head branch's name.
    pub head: String,
    /// The head commit.
    pub head_sha: String,
    /// The base branch's name.
    pub base: String,
    /// Its page on the forge.
    pub html_url: String,
    /// The names of its labels.
    pub labels: Vec<String>,
}

/// What opening a pull request needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPull {
    /// The title.
    pub title: String,
    /// The body.
    pub body: String,
    /// The head branch (in the same repository).
    pub head: String,
    /// The base branch.
    pub base: String,
    /// Open it as a draft.
    pub draft: bool,
}

/// A comment on the pull request's conversation (an issue comment).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Comment {
    /// Its id.
    pub id: u64,
    /// The text.
    #[serde(default)]
    pub body: String,
    /// Its author.
    pub user: User,
    /// When it was written (RFC 3339).
    #[serde(default)]
    pub created_at: String,
    /// When it was last edited.
    #[serde(default)]
    pub updated_at: String,
    /// Its page.
    #[serde(default)]
    pub html_url: String,
}

/// The state of a review, as GitHub spells it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReviewState {
    /// The reviewer approved.
    Approved,
    /// The reviewer asked for changes.
    ChangesRequested,
    /// Only comments.
    Commented,
    /// Dismissed by someone.
    Dismissed,
    /// Not submitted yet.
    Pending,
    /// A state this version does not know.
    #[serde(other)]
    Other,
}

/// A submitted review.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Review {
    /// Its id.
    pub id: u64,
    /// The reviewer (None: a deleted account).
    pub user: Option<User>,
    /// Its state.
    pub state: ReviewState,
    /// Its summary text.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub body: String,
    /// The head commit it reviewed.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub commit_id: String,
    /// When it was submitted.
    #[serde(default)]
    pub submitted_at: Option<String>,
    /// Its page.
    #[serde(default)]
    pub html_url: String,
}

/// A comment on a line of the diff (part of a review).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewComment {
    /// Its id.
    pub id: u64,
    /// The review it belongs to.
    #[serde(default, rename = "pull_request_review_id")]
    pub review_id: Option<u64>,
    /// The comment it answers (a thread).
    #[serde(default, rename = "in_reply_to_id")]
    pub in_reply_to: Option<u64>,
    /// Its author.
    pub user: Option<User>,
    /// The text.
    #[serde(default)]
    pub body: String,
    /// The file.
    #[serde(default)]
    pub path: String,
    /// The line in the file (None: an outdated comment, or one on the file).
    #[serde(default)]
    pub line: Option<u64>,
    /// The first line of a multi-line comment.
    #[serde(default)]
    pub start_line: Option<u64>,
    /// The line where it was first made.
    #[serde(default)]
    pub original_line: Option<u64>,
    /// The hunk of the diff it points into.
    #[serde(default)]
    pub diff_hunk: String,
    /// The commit it was made on.
    #[serde(default)]
    pub commit_id: String,
    /// When it was written.
    #[serde(default)]
    pub created_at: String,
    /// Its page.
    #[serde(default)]
    pub html_url: String,
}

/// What a user may do in the repository (the collaborator permission endpoint).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Permission {
    /// Admin.
    Admin,
    /// Write (also `maintain`).
    Write,
    /// Read (also `triage`).
    Read,
    /// Nothing.
    #[serde(other)]
    None,
}

impl Permission {
    /// Whether this user's reviews and comments may steer the loop: write or admin.
    pub fn can_steer(self) -> bool {
        matches!(self, Permission::Admin | Permission::Write)
    }
}

/// How a pull request is merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MergeMethod {
    /// A merge commit.
    Merge,
    /// One squashed commit.
    Squash,
    /// The commits rebased.
    Rebase,
}

/// The operations the loop needs from a forge. Lists are read across all their pages.
pub trait ReviewHost: Send + Sync {
    /// The token's own user (learnt once, then remembered).
    fn whoami(&self) -> Result<User>;
    /// The open pull request whose head is `head`, if any.
    fn find_pull(&self, head: &str) -> Result<Option<PullRequest>>;
    /// Opens a pull request; if one already exists for that head, returns it instead.
    fn open_pull(&self, new: &NewPull) -> Result<PullRequest>;
    /// Sets a pull request's title and body.
    fn update_pull(&self, number: u64, title: &str, body: &str) -> Result<PullRequest>;
    /// Marks a draft ready for review.
    fn mark_ready(&self, pull: &PullRequest) -> Result<()>;
    /// Creates those of `names` the repository does not have yet.
    fn create_labels(&self, names: &[String]) -> Result<()>;
    /// Adds labels to a pull request.
    fn add_labels(&self, number: u64, names: &[String]) -> Result<()>;
    /// Asks users and teams to review.
    fn request_reviewers(&self, number: u64, users: &[String], teams: &[String]) -> Result<()>;
    /// The pull request's conversation comments.
    fn issue_comments(&self, number: u64) -> Result<Vec<Comment>>;
    /// Writes a conversation comment.
    fn create_comment(&self, number: u64, body: &str) -> Result<Comment>;
    /// Rewrites a conversation comment.
    fn update_comment(&self, id: u64, body: &str) -> Result<Comment>;
    /// The pull request's reviews, oldest first.
    fn reviews(&self, number: u64) -> Result<Vec<Review>>;
    /// The pull request's review comments (on lines of the diff).
    fn review_comments(&self, number: u64) -> Result<Vec<ReviewComment>>;
    /// A user's permission in the repository (remembered per user).
    fn permission(&self, login: &str) -> Result<Permission>;
    /// Merges the pull request, if its head is still `sha`.
    fn merge(&self, number: u64, method: MergeMethod, sha: &str) -> Result<()>;
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
}
