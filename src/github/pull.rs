//! One pull request per spec, kept current: found (never duplicated) or opened, title and
//! body rewritten, marked ready when the spec completes, labelled, reviewers requested when it
//! becomes ready, and ONE status comment, recognised by a hidden marker *and* the token's own
//! login (a marker planted by someone else is ignored).
//!
//! Works on any [`ReviewHost`]; it knows nothing of the store or the engine: the caller says
//! what the spec is and where it stands.

use serde::Serialize;

use super::{Comment, NewPull, PullRequest, Result, ReviewHost, User};

/// Label names (`[github] labels`, `needs_review_label`, `stopped_label`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Labels {
    /// Always on the pull request.
    pub always: Vec<String>,
    /// When the loop stopped with needs-review.
    pub needs_review: String,
    /// When the loop stopped for any other reason than complete.
    pub stopped: String,
}

/// Where the spec stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// The loop runs (or will run again).
    Running,
    /// Complete: ready for review.
    Complete,
    /// Stopped and asking a human.
    NeedsReview,
    /// Stopped for another reason (budget, stuck, error, max iterations…).
    Stopped,
}

/// What the pull request should be.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The spec's id (names the status marker).
    pub spec: String,
    /// The head branch, `mmm/<spec>`.
    pub head: String,
    /// The base branch.
    pub base: String,
    /// The title.
    pub title: String,
    /// The body.
    pub body: String,
    /// Where the spec stands.
    pub standing: Standing,
    /// Open as a draft while not complete.
    pub draft: bool,
    /// Label names.
    pub labels: Labels,
    /// Reviewers asked when it becomes ready.
    pub reviewers: Vec<String>,
    /// Team reviewers asked when it becomes ready.
    pub team_reviewers: Vec<String>,
    /// The status comment's text (the marker is added).
    pub status: String,
}

/// What happened to the status comment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CommentAction {
    /// Written for the first time.
    Created,
    /// Rewritten.
    Updated,
    /// Already said the same.
    Unchanged,
}

/// What [`publish`] did.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// The pull request's number.
    pub number: u64,
    /// Its page.
    pub url: String,
    /// Opened now (false: found).
    pub opened: bool,
    /// Title or body rewritten.
    pub updated: bool,
    /// Marked ready for review now.
    pub marked_ready: bool,
    /// Still a draft.
    pub draft: bool,
    /// Labels added now.
    pub labels_added: Vec<String>,
    /// Reviewers (and teams) asked now.
    pub reviewers_requested: Vec<String>,
    /// The status comment.
    pub comment: CommentAction,
    /// The status comment's id.
    pub comment_id: u64,
}

/// The hidden marker of a spec's status comment.
pub fn marker(spec: &str) -> String {
    format!("<!-- mmm:status spec={spec} -->")
}

/// The status comment of `spec` among `comments`: the marker, written by `me`.
pub fn status_comment<'a>(comments: &'a [Comment], spec: &str, me: &User) -> Option<&'a Comment> {
    let m = marker(spec);
    comments
        .iter()
        .find(|c| c.user.login == me.login && c.body.contains(&m))
}

/// Brings the spec's pull request to `plan`: at most one pull request and one status comment.
pub fn publish(host: &dyn ReviewHost, plan: &Plan) -> Result<Outcome> {
    let me = host.whoami()?;
    let complete = plan.standing == Standing::Complete;
    let (mut pr, opened) = match host.find_pull(&plan.head)? {
        Some(pr) => (pr, false),
        None => {
            let new = NewPull {
                title: plan.title.clone(),
                body: plan.body.clone(),
                head: plan.head.clone(),
                base: plan.base.clone(),
                draft: plan.draft && !complete,
            };
            (host.open_pull(&new)?, true)
        }
    };
    let updated = !opened && (pr.title != plan.title || pr.body != plan.body);
    if updated {
        pr = host.update_pull(pr.number, &plan.title, &plan.body)?;
    }
    let marked_ready = complete && pr.draft;
    if marked_ready {
        host.mark_ready(&pr)?;
        pr.draft = false;
    }
    // Reviewers are asked once, when the pull request becomes ready (or opens ready).
    let becomes_ready = marked_ready || (opened && !pr.draft);
    let mut reviewers_requested = Vec::new();
    if becomes_ready && !(plan.reviewers.is_empty() && plan.team_reviewers.is_empty()) {
        host.request_reviewers(pr.number, &plan.reviewers, &plan.team_reviewers)?;
        reviewers_requested.extend(plan.reviewers.iter().cloned());
        reviewers_requested.extend(plan.team_reviewers.iter().map(|t| format!("team:{t}")));
    }
    let labels_added = label(host, &pr, plan)?;
    let (comment, comment_id) = status(host, &pr, plan, &me)?;
    Ok(Outcome {
        number: pr.number,
        url: pr.html_url.clone(),
        opened,
        updated,
        marked_ready,
        draft: pr.draft,
        labels_added,
        reviewers_requested,
        comment,
        comment_id,
    })
}

fn label(host: &dyn ReviewHost, pr: &PullRequest, plan: &Plan) -> Result<Vec<String>> {
    let mut wanted = plan.labels.always.clone();
    match plan.standing {
        Standing::NeedsReview => wanted.push(plan.labels.needs_review.clone()),
        Standing::Stopped => wanted.push(plan.labels.stopped.clone()),
        Standing::Running | Standing::Complete => {}
    }
    let mut missing: Vec<String> = wanted
        .into_iter()
        .filter(|l| !l.is_empty() && !pr.labels.iter().any(|h| h.eq_ignore_ascii_case(l)))
        .collect();
    missing.dedup();
    if !missing.is_empty() {
        host.create_labels(&missing)?;
        host.add_labels(pr.number, &missing)?;
    }
    Ok(missing)
}

fn status(
    host: &dyn ReviewHost,
    pr: &PullRequest,
    plan: &Plan,
    me: &User,
) -> Result<(CommentAction, u64)> {
    let text = format!("{}\n{}", marker(&plan.spec), plan.status);
    let comments = host.issue_comments(pr.number)?;
    match status_comment(&comments, &plan.spec, me) {
        Some(c) if c.body == text => Ok((CommentAction::Unchanged, c.id)),
        Some(c) => Ok((CommentAction::Updated, host.update_comment(c.id, &text)?.id)),
        None => Ok((
            CommentAction::Created,
            host.create_comment(pr.number, &text)?.id,
        )),
    }
}
