//! What can go wrong talking to GitHub, each with what to do about it.

/// A failed call to GitHub. Local history is never affected: the pull request catches up at
/// the next iteration or with `git mmm pr`.
#[derive(Debug, thiserror::Error)]
pub enum GithubError {
    /// No repository could be named.
    #[error(
        "no GitHub repository: set `[github] repo = \"owner/name\"`, or GITHUB_REPOSITORY, or a remote whose URL points at GitHub"
    )]
    NoRepository,
    /// A repository name or remote URL that is not `owner/name`.
    #[error("`{0}` names no GitHub repository: expected owner/name or a GitHub remote URL")]
    BadRepository(String),
    /// An endpoint URL that does not parse.
    #[error("`{url}` is not a usable GitHub API URL: {reason}")]
    BadUrl {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// GitHub could not be reached.
    #[error("GitHub is unreachable at {url} ({reason}); check the network or `[github] api_url`")]
    Unreachable {
        /// Where.
        url: String,
        /// The transport's words.
        reason: String,
    },
    /// 401.
    #[error(
        "GitHub refused the token (401 {message}) on {endpoint}: set GITHUB_TOKEN or GH_TOKEN to a valid token"
    )]
    Unauthorized {
        /// The call.
        endpoint: String,
        /// GitHub's message.
        message: String,
    },
    /// 403 "Resource not accessible by integration": the token lacks a permission.
    #[error(
        "the token may not do {endpoint} (403 {message}): it needs `{permission}`; in a workflow add `permissions: {permission}` (and, to open pull requests with GITHUB_TOKEN, allow Actions to create them in the repository's settings)"
    )]
    NotAccessible {
        /// The call.
        endpoint: String,
        /// The permission it needs, as a workflow's `permissions:` names it.
        permission: &'static str,
        /// GitHub's message.
        message: String,
    },
    /// 404: the repository (or the pull request) does not exist, or the token cannot see it.
    #[error(
        "GitHub answered 404 for {endpoint} in {repo}: the repository does not exist or the token cannot see it; check `[github] repo` or GITHUB_REPOSITORY"
    )]
    NotFound {
        /// The call.
        endpoint: String,
        /// owner/name.
        repo: String,
    },
    /// 422.
    #[error("GitHub refused {endpoint} (422 {message}){}", details(.errors))]
    Invalid {
        /// The call.
        endpoint: String,
        /// GitHub's message.
        message: String,
        /// The messages or codes of its `errors`.
        errors: Vec<String>,
    },
    /// Still rate limited after the bounded number of tries, or for longer than mmm waits.
    #[error(
        "GitHub rate limit on {endpoint}: {detail}; the next iteration or `git mmm pr` catches up"
    )]
    RateLimited {
        /// The call.
        endpoint: String,
        /// Which limit and until when.
        detail: String,
    },
    /// The GraphQL endpoint answered with errors.
    #[error("GitHub GraphQL refused {operation}: {message}")]
    GraphQl {
        /// The mutation.
        operation: String,
        /// Its errors' messages.
        message: String,
    },
    /// Any other status.
    #[error("GitHub answered {status} to {endpoint}: {message}")]
    Status {
        /// The call.
        endpoint: String,
        /// The HTTP status.
        status: u16,
        /// GitHub's message.
        message: String,
    },
    /// An answer that does not have the expected shape.
    #[error("unexpected answer from GitHub to {endpoint}: {reason}")]
    Decode {
        /// The call.
        endpoint: String,
        /// What did not fit.
        reason: String,
    },
}

fn details(errors: &[String]) -> String {
    if errors.is_empty() {
        String::new()
    } else {
        format!(": {}", errors.join("; "))
    }
}

/// The permission a call needs, as `permissions:` in a workflow names it (contracts §4.4).
pub(crate) fn permission_for(endpoint: &str) -> &'static str {
    if endpoint.contains("/merge") {
        "contents: write"
    } else if endpoint.contains("/issues/") || endpoint.contains("/labels") {
        if endpoint.starts_with("GET") {
            "issues: read"
        } else {
            "issues: write"
        }
    } else if endpoint.contains("/collaborators/") {
        "metadata: read"
    } else if endpoint == "GET /user" {
        "a user token (an installation token cannot read /user)"
    } else if endpoint.starts_with("GET") {
        "pull-requests: read"
    } else {
        "pull-requests: write"
    }
}
