//! Review: the forge-neutral half of human review on a pull request.
//!
//! Owns: what mmm writes on a pull request (its title and body, `body.rs`; the status comment
//! it keeps current, `comment.rs`, from a spec's history read out of the store, `report.rs`)
//! and what it takes back from reviewers (`feedback.rs`: reviews and comments, chosen and
//! rendered as untrusted data for the prompt; the verdict of each writer). Everything here is
//! pure text and data: no HTTP, no forge's wire types. The forge's client (GitHub's, in
//! `github/`) turns its payloads into these types and posts what these functions render.
//! Must not touch: the network, the terminal, the environment.

pub mod body;
pub mod comment;
pub mod feedback;
pub mod report;

pub use body::{PrText, body_marker, pr_text};
pub use comment::{CommentOptions, MAX_COMMENT_CHARS, marker, render_status};
pub use feedback::{
    Author, Conversation, FedId, FeedItem, Ignored, IssueComment, ItemKind, Review, ReviewComment,
    ReviewState, Selection, Verdict, Writers, overall, render_block, select, strip_hidden,
    verdicts,
};
pub use report::{BudgetUse, CriterionRow, IterationRow, SpecReport};
