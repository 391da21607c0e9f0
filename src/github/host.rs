//! [`ReviewHost`] for GitHub: one REST (or GraphQL) call per operation, lists across pages.

use http::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use super::client::{GitHub, message_of};
use super::{
    Comment, GithubError, MergeMethod, NewPull, Permission, PullRequest, Result, Review,
    ReviewComment, ReviewHost, User,
};

/// Who writes with an Actions `GITHUB_TOKEN`, which cannot read `GET /user`.
const ACTIONS_BOT: &str = "github-actions[bot]";
const PULLS: &str = "GET /repos/{owner}/{repo}/pulls";
const READY: &str = "mutation($id:ID!){markPullRequestReadyForReview(input:{pullRequestId:$id}){pullRequest{isDraft}}}";

#[derive(Deserialize)]
struct WireRef {
    #[serde(rename = "ref")]
    name: String,
    #[serde(default)]
    sha: String,
}

#[derive(Deserialize)]
struct WireLabel {
    name: String,
}

#[derive(Deserialize)]
struct WirePull {
    number: u64,
    #[serde(default)]
    node_id: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    draft: Option<bool>,
    #[serde(default)]
    state: String,
    #[serde(default)]
    merged: Option<bool>,
    head: WireRef,
    base: WireRef,
    #[serde(default)]
    html_url: String,
    #[serde(default)]
    labels: Vec<WireLabel>,
}

impl From<WirePull> for PullRequest {
    fn from(w: WirePull) -> PullRequest {
        PullRequest {
            number: w.number,
            node_id: w.node_id,
            title: w.title,
            body: w.body.unwrap_or_default(),
            draft: w.draft.unwrap_or(false),
            state: w.state,
            merged: w.merged.unwrap_or(false),
            head: w.head.name,
            head_sha: w.head.sha,
            base: w.base.name,
            html_url: w.html_url,
            labels: w.labels.into_iter().map(|l| l.name).collect(),
        }
    }
}

/// The 422 GitHub answers when an open pull request has the same head and base.
fn already_exists(e: &GithubError) -> bool {
    matches!(e, GithubError::Invalid { errors, .. }
        if errors.iter().any(|m| m.starts_with("A pull request already exists")))
}

impl ReviewHost for GitHub {
    fn whoami(&self) -> Result<User> {
        if let Some(me) = self.me.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            return Ok(me);
        }
        let me = match self.send("GET /user", Method::GET, &self.api("/user"), None) {
            Ok(reply) => reply.json::<User>("GET /user")?,
            // An Actions GITHUB_TOKEN may not read /user; it writes as github-actions[bot].
            Err(GithubError::NotAccessible { .. }) => User {
                login: ACTIONS_BOT.to_owned(),
                kind: "Bot".to_owned(),
            },
            Err(e) => return Err(e),
        };
        *self.me.lock().unwrap_or_else(|e| e.into_inner()) = Some(me.clone());
        Ok(me)
    }

    fn find_pull(&self, head: &str) -> Result<Option<PullRequest>> {
        let owner = &self.opts.target.owner;
        let url = self.repo_url(&format!("/pulls?state=open&head={owner}:{head}"));
        let pulls: Vec<WirePull> = self.get_all(PULLS, &url)?;
        Ok(pulls
            .into_iter()
            .map(PullRequest::from)
            .find(|p| p.head == head))
    }

    fn open_pull(&self, new: &NewPull) -> Result<PullRequest> {
        const E: &str = "POST /repos/{owner}/{repo}/pulls";
        let body = json!({"title": new.title, "head": new.head, "base": new.base,
                          "body": new.body, "draft": new.draft});
        match self.send(E, Method::POST, &self.repo_url("/pulls"), Some(&body)) {
            Ok(reply) => Ok(reply.json::<WirePull>(E)?.into()),
            // Someone (another runner) opened it since we looked: find it.
            Err(e) if already_exists(&e) => self.find_pull(&new.head)?.ok_or(e),
            Err(e) => Err(e),
        }
    }

    fn update_pull(&self, number: u64, title: &str, body: &str) -> Result<PullRequest> {
        const E: &str = "PATCH /repos/{owner}/{repo}/pulls/{n}";
        let url = self.repo_url(&format!("/pulls/{number}"));
        let reply = self.send(
            E,
            Method::PATCH,
            &url,
            Some(&json!({"title": title, "body": body})),
        )?;
        Ok(reply.json::<WirePull>(E)?.into())
    }

    fn mark_ready(&self, pull: &PullRequest) -> Result<()> {
        const E: &str = "POST graphql markPullRequestReadyForReview";
        let body = json!({"query": READY, "variables": {"id": pull.node_id}});
        let url = self.opts.target.graphql_url.clone();
        let reply = self.send(E, Method::POST, &url, Some(&body))?;
        let v: Value = reply.json(E)?;
        if let Some(errors) = v["errors"].as_array().filter(|e| !e.is_empty()) {
            let message = errors
                .iter()
                .map(|e| e["message"].as_str().unwrap_or("?").to_owned())
                .collect::<Vec<_>>()
                .join("; ");
            return Err(GithubError::GraphQl {
                operation: "markPullRequestReadyForReview".into(),
                message,
            });
        }
        Ok(())
    }

    fn create_labels(&self, names: &[String]) -> Result<()> {
        let have: Vec<WireLabel> = self.get_all(
            "GET /repos/{owner}/{repo}/labels",
            &self.repo_url("/labels"),
        )?;
        for name in names {
            if have.iter().any(|l| l.name.eq_ignore_ascii_case(name)) {
                continue;
            }
            let body = json!({"name": name, "color": "5319e7",
                              "description": "Managed by mmm"});
            let made = self.send(
                "POST /repos/{owner}/{repo}/labels",
                Method::POST,
                &self.repo_url("/labels"),
                Some(&body),
            );
            match made {
                // Created meanwhile by another runner: fine.
                Err(GithubError::Invalid { errors, .. })
                    if errors.iter().any(|e| e.contains("already_exists")) => {}
                other => {
                    other?;
                }
            }
        }
        Ok(())
    }

    fn add_labels(&self, number: u64, names: &[String]) -> Result<()> {
        let url = self.repo_url(&format!("/issues/{number}/labels"));
        self.send(
            "POST /repos/{owner}/{repo}/issues/{n}/labels",
            Method::POST,
            &url,
            Some(&json!({ "labels": names })),
        )?;
        Ok(())
    }

    fn request_reviewers(&self, number: u64, users: &[String], teams: &[String]) -> Result<()> {
        if users.is_empty() && teams.is_empty() {
            return Ok(());
        }
        let url = self.repo_url(&format!("/pulls/{number}/requested_reviewers"));
        let body = json!({"reviewers": users, "team_reviewers": teams});
        self.send(
            "POST /repos/{owner}/{repo}/pulls/{n}/requested_reviewers",
            Method::POST,
            &url,
            Some(&body),
        )?;
        Ok(())
    }

    fn issue_comments(&self, number: u64) -> Result<Vec<Comment>> {
        let url = self.repo_url(&format!("/issues/{number}/comments"));
        self.get_all("GET /repos/{owner}/{repo}/issues/{n}/comments", &url)
    }

    fn create_comment(&self, number: u64, body: &str) -> Result<Comment> {
        const E: &str = "POST /repos/{owner}/{repo}/issues/{n}/comments";
        let url = self.repo_url(&format!("/issues/{number}/comments"));
        self.send(E, Method::POST, &url, Some(&json!({ "body": body })))?
            .json(E)
    }

    fn update_comment(&self, id: u64, body: &str) -> Result<Comment> {
        const E: &str = "PATCH /repos/{owner}/{repo}/issues/comments/{id}";
        let url = self.repo_url(&format!("/issues/comments/{id}"));
        self.send(E, Method::PATCH, &url, Some(&json!({ "body": body })))?
            .json(E)
    }

    fn reviews(&self, number: u64) -> Result<Vec<Review>> {
        let url = self.repo_url(&format!("/pulls/{number}/reviews"));
        self.get_all("GET /repos/{owner}/{repo}/pulls/{n}/reviews", &url)
    }

    fn review_comments(&self, number: u64) -> Result<Vec<ReviewComment>> {
        let url = self.repo_url(&format!("/pulls/{number}/comments"));
        self.get_all("GET /repos/{owner}/{repo}/pulls/{n}/comments", &url)
    }

    fn permission(&self, login: &str) -> Result<Permission> {
        const E: &str = "GET /repos/{owner}/{repo}/collaborators/{user}/permission";
        if let Some(p) = self
            .permissions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(login)
        {
            return Ok(*p);
        }
        let url = self.repo_url(&format!("/collaborators/{login}/permission"));
        let p = match self.send(E, Method::GET, &url, None) {
            Ok(reply) => {
                let v: Value = reply.json(E)?;
                serde_json::from_value(v["permission"].clone()).unwrap_or(Permission::None)
            }
            // Not a user GitHub knows in this repository: no say.
            Err(GithubError::NotFound { .. }) => Permission::None,
            Err(e) => return Err(e),
        };
        self.permissions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(login.to_owned(), p);
        Ok(p)
    }

    fn merge(&self, number: u64, method: MergeMethod, sha: &str) -> Result<()> {
        const E: &str = "PUT /repos/{owner}/{repo}/pulls/{n}/merge";
        let url = self.repo_url(&format!("/pulls/{number}/merge"));
        let body = json!({"merge_method": method, "sha": sha});
        let reply = self.send(E, Method::PUT, &url, Some(&body))?;
        let v: Value = reply.json(E)?;
        if v["merged"] == json!(true) {
            Ok(())
        } else {
            Err(GithubError::Status {
                endpoint: E.into(),
                status: reply.status,
                message: message_of(&reply.body),
            })
        }
    }
}
