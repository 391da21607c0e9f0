//! A fake GitHub on loopback, faithful to contracts.md §3: REST for the pull-request flow and
//! the GraphQL `markPullRequestReadyForReview` mutation.
//!
//! Real HTTP/1.1 over `std::net::TcpListener` on 127.0.0.1:0, one thread per connection,
//! `connection: close` on every response (as the fake Messages API does). Answers are built
//! from GitHub's own example payloads (`github/*.json`, copied from the reference), with the
//! fields that matter filled in from the fake's state. Request bodies are checked against the
//! endpoint schemas of `github/endpoints.json` (type, required, enum, minItems; unknown fields
//! are ignored, as GitHub ignores them): a mismatch is a 422 `Validation Failed`.
//!
//! Every request needs `Authorization: Bearer <token>` (or `token <token>`) of a known token
//! (401 otherwise) and `X-GitHub-Api-Version` (400 otherwise). Every response carries the
//! rate-limit headers; a 304 does not count against the limit. Lists are paginated at 30 per
//! page (`per_page` up to 100) with `Link` headers, and answer `If-None-Match` with 304 when
//! their `ETag` is unchanged.
//!
//! The repository is a bare git repository on disk ([`FakeGitHub::bare`]): a pull request's
//! head and base must really be branches there. Scriptable: users and their tokens,
//! permissions, reviews, review comments, issue comments, labels, and one-shot failures
//! ([`Scripted`]) for requests whose `METHOD path` contains a needle.

use std::collections::{BTreeMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

/// The token of the fake's own bot user ([`BOT`]).
pub const TOKEN: &str = "ghp_fakeToken0123456789abcdefABCDEF0123";
/// The login the default token belongs to.
pub const BOT: &str = "mmm-bot";
/// The repository's owner.
pub const OWNER: &str = "octo";
/// The repository's name.
pub const REPO: &str = "widgets";

const ENDPOINTS: &str = include_str!("github/endpoints.json");
const PULL: &str = include_str!("github/pull-request.json");
const ISSUE_COMMENT: &str = include_str!("github/issue-comment.json");
const REVIEW: &str = include_str!("github/pull-request-review.json");
const REVIEW_COMMENT: &str = include_str!("github/pull-request-review-comment.json");
const LABELS: &str = include_str!("github/label-items.json");

/// A one-shot failure for the next request whose `METHOD path` contains the needle.
#[derive(Debug, Clone)]
pub enum Scripted {
    /// 403 "You have exceeded a secondary rate limit", with `retry-after` if given.
    SecondaryLimit {
        /// Seconds in `retry-after`.
        retry_after: Option<u64>,
    },
    /// 403 with `x-ratelimit-remaining: 0` and a reset this many seconds from now.
    PrimaryExhausted {
        /// Seconds until `x-ratelimit-reset`.
        reset_in: u64,
    },
    /// 403 "Resource not accessible by integration".
    NotAccessible,
    /// Any status with a JSON body.
    Status(u16, Value),
}

/// A request as the fake saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// `GET`, `POST`, …
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Lower-cased header names with values.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: String,
    /// The status answered.
    pub status: u16,
}

impl Seen {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A pull request in the fake.
#[derive(Debug, Clone)]
pub struct Pull {
    /// Its number.
    pub number: u64,
    /// Its GraphQL id.
    pub node_id: String,
    /// Title.
    pub title: String,
    /// Body.
    pub body: String,
    /// Head branch (in the fake's repository).
    pub head: String,
    /// Base branch.
    pub base: String,
    /// Head commit.
    pub head_sha: String,
    /// Draft or not.
    pub draft: bool,
    /// "open" or "closed".
    pub state: String,
    /// Merged by the merge endpoint.
    pub merged: bool,
    /// Who opened it.
    pub user: String,
    /// Label names.
    pub labels: Vec<String>,
    /// Requested reviewers' logins.
    pub reviewers: Vec<String>,
    /// Requested teams' slugs.
    pub teams: Vec<String>,
}

/// An issue comment in the fake.
#[derive(Debug, Clone)]
pub struct IssueComment {
    /// Id.
    pub id: u64,
    /// The issue (pull request) number.
    pub issue: u64,
    /// Author's login.
    pub user: String,
    /// Text.
    pub body: String,
}

#[derive(Debug, Clone)]
struct Review {
    id: u64,
    pull: u64,
    user: String,
    state: String,
    body: String,
    commit_id: String,
}

#[derive(Debug, Clone)]
struct ReviewComment {
    id: u64,
    pull: u64,
    review: u64,
    user: String,
    path: String,
    line: u64,
    body: String,
}

#[derive(Debug, Default)]
struct State {
    tokens: BTreeMap<String, String>,
    users: BTreeMap<String, (u64, String)>,
    permissions: BTreeMap<String, String>,
    pulls: Vec<Pull>,
    labels: Vec<String>,
    comments: Vec<IssueComment>,
    reviews: Vec<Review>,
    review_comments: Vec<ReviewComment>,
    script: VecDeque<(String, Scripted)>,
    seen: Vec<Seen>,
    remaining: u64,
    next_id: u64,
}

/// The running fake; stops when dropped.
pub struct FakeGitHub {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// Keeps the bare repository alive.
    _dir: tempfile::TempDir,
    /// The repository on disk (bare): push here, the pull requests' heads come from here.
    pub bare: PathBuf,
}

impl FakeGitHub {
    /// A fake with an empty bare repository, the bot user ([`BOT`], admin, token [`TOKEN`])
    /// and the labels of GitHub's example payload.
    pub fn start() -> FakeGitHub {
        let dir = tempfile::tempdir().expect("tempdir");
        let bare = dir.path().join("remote.git");
        let st = std::process::Command::new("git")
            .args(["init", "-q", "--bare", "-b", "main"])
            .arg(&bare)
            .status()
            .expect("git init --bare");
        assert!(st.success());
        let labels: Vec<Value> = serde_json::from_str(LABELS).expect("labels json");
        let mut state = State {
            remaining: 5000,
            next_id: 1000,
            labels: labels
                .iter()
                .map(|l| l["name"].as_str().unwrap_or_default().to_owned())
                .collect(),
            ..State::default()
        };
        state.users.insert(BOT.into(), (41, "User".into()));
        state.tokens.insert(TOKEN.into(), BOT.into());
        state.permissions.insert(BOT.into(), "admin".into());
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(Mutex::new(state));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp, b) = (state.clone(), stop.clone(), bare.clone());
        let base = format!("http://{addr}");
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if sp.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (st, b, base) = (st.clone(), b.clone(), base.clone());
                std::thread::spawn(move || {
                    let _ = handle(conn, &st, &b, &base);
                });
            }
        });
        FakeGitHub {
            addr,
            state,
            stop,
            thread: Some(thread),
            _dir: dir,
            bare,
        }
    }

    /// `http://127.0.0.1:PORT` (REST base; GraphQL is `{url}/graphql`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Adds a user (type "User" or "Bot") with a repository permission ("admin", "write",
    /// "read", "none") and, if given, a token that authenticates as them.
    pub fn add_user(&self, login: &str, kind: &str, permission: &str, token: Option<&str>) {
        let mut st = self.lock();
        let id = st.users.len() as u64 + 100;
        st.users.insert(login.into(), (id, kind.into()));
        st.permissions.insert(login.into(), permission.into());
        if let Some(t) = token {
            st.tokens.insert(t.into(), login.into());
        }
    }

    /// Queues a one-shot failure for the next request whose `METHOD path` contains `needle`.
    pub fn script(&self, needle: &str, reply: Scripted) {
        self.lock().script.push_back((needle.into(), reply));
    }

    /// Sets what `x-ratelimit-remaining` counts down from.
    pub fn set_remaining(&self, n: u64) {
        self.lock().remaining = n;
    }

    /// Opens a pull request directly (as someone else would have), from a pushed branch.
    pub fn add_pull(&self, head: &str, base: &str, user: &str, draft: bool) -> u64 {
        let sha = rev_parse(&self.bare, head).expect("head pushed");
        let mut st = self.lock();
        new_pull(&mut st, "someone's", "", head, base, &sha, draft, user)
    }

    /// Posts an issue comment on a pull request as `user`; returns its id.
    pub fn add_comment(&self, pull: u64, user: &str, body: &str) -> u64 {
        let mut st = self.lock();
        let id = next(&mut st);
        st.comments.push(IssueComment {
            id,
            issue: pull,
            user: user.into(),
            body: body.into(),
        });
        id
    }

    /// Submits a review (`APPROVED`, `CHANGES_REQUESTED`, `COMMENTED`) as `user` on the pull
    /// request's current head, with `comments` as (path, line, body) review comments.
    pub fn add_review(
        &self,
        pull: u64,
        user: &str,
        state: &str,
        body: &str,
        comments: &[(&str, u64, &str)],
    ) -> u64 {
        let mut st = self.lock();
        let commit_id = st
            .pulls
            .iter()
            .find(|p| p.number == pull)
            .map(|p| p.head_sha.clone())
            .unwrap_or_default();
        let id = next(&mut st);
        st.reviews.push(Review {
            id,
            pull,
            user: user.into(),
            state: state.into(),
            body: body.into(),
            commit_id,
        });
        for (path, line, text) in comments {
            let cid = next(&mut st);
            st.review_comments.push(ReviewComment {
                id: cid,
                pull,
                review: id,
                user: user.into(),
                path: (*path).into(),
                line: *line,
                body: (*text).into(),
            });
        }
        id
    }

    /// Moves each open pull request's head to its branch's tip in the bare repository, as
    /// GitHub does on a push (reviews added after this are on the new head).
    pub fn sync_heads(&self) {
        let mut st = self.lock();
        for p in st.pulls.iter_mut().filter(|p| p.state == "open") {
            if let Some(sha) = rev_parse(&self.bare, &p.head) {
                p.head_sha = sha;
            }
        }
    }

    /// The pull requests, in the order they were opened.
    pub fn pulls(&self) -> Vec<Pull> {
        self.lock().pulls.clone()
    }

    /// The issue comments of a pull request.
    pub fn comments(&self, pull: u64) -> Vec<IssueComment> {
        self.lock()
            .comments
            .iter()
            .filter(|c| c.issue == pull)
            .cloned()
            .collect()
    }

    /// The repository's labels.
    pub fn labels(&self) -> Vec<String> {
        self.lock().labels.clone()
    }

    /// Every request seen, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.lock().seen.clone()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }
}

impl Drop for FakeGitHub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

fn next(st: &mut State) -> u64 {
    st.next_id += 1;
    st.next_id
}

#[allow(clippy::too_many_arguments)]
fn new_pull(
    st: &mut State,
    title: &str,
    body: &str,
    head: &str,
    base: &str,
    sha: &str,
    draft: bool,
    user: &str,
) -> u64 {
    let number = st.pulls.len() as u64 + 1;
    st.pulls.push(Pull {
        number,
        node_id: format!("PR_kwfake{number}"),
        title: title.into(),
        body: body.into(),
        head: head.into(),
        base: base.into(),
        head_sha: sha.into(),
        draft,
        state: "open".into(),
        merged: false,
        user: user.into(),
        labels: Vec::new(),
        reviewers: Vec::new(),
        teams: Vec::new(),
    });
    number
}

fn rev_parse(bare: &Path, branch: &str) -> Option<String> {
    let out = std::process::Command::new("git")
        .arg("--git-dir")
        .arg(bare)
        .args(["rev-parse", "--verify", "-q"])
        .arg(format!("refs/heads/{branch}^{{commit}}"))
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// One HTTP answer.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Option<String>,
}

impl Answer {
    fn json(status: u16, v: &Value) -> Answer {
        Answer {
            status,
            headers: Vec::new(),
            body: Some(v.to_string()),
        }
    }

    fn error(status: u16, message: &str) -> Answer {
        Answer::json(
            status,
            &json!({"message": message, "documentation_url": "https://docs.github.com/rest", "status": status.to_string()}),
        )
    }

    fn invalid(errors: Value) -> Answer {
        Answer::json(
            422,
            &json!({"message": "Validation Failed", "errors": errors,
                    "documentation_url": "https://docs.github.com/rest", "status": "422"}),
        )
    }
}

struct Request {
    method: String,
    path: String,
    query: BTreeMap<String, String>,
    headers: Vec<(String, String)>,
    body: String,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Option<Value> {
        serde_json::from_str(&self.body).ok()
    }
}

fn read_request(conn: &TcpStream) -> std::io::Result<Option<Request>> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let target = parts.next().unwrap_or_default().to_owned();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 {
            return Ok(None);
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body)?;
    let (path, q) = target.split_once('?').unwrap_or((&target, ""));
    let query = q
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (
                k.to_owned(),
                v.replace("%3A", ":")
                    .replace("%3a", ":")
                    .replace("%2F", "/"),
            )
        })
        .collect();
    Ok(Some(Request {
        method,
        path: path.to_owned(),
        query,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }))
}

fn handle(
    mut conn: TcpStream,
    state: &Mutex<State>,
    bare: &Path,
    base: &str,
) -> std::io::Result<()> {
    let Some(req) = read_request(&conn)? else {
        return Ok(());
    };
    let mut answer = answer(&req, state, bare, base);
    let mut st = lock(state);
    if answer.status != 304
        && !answer
            .headers
            .iter()
            .any(|(k, _)| k == "x-ratelimit-remaining")
    {
        st.remaining = st.remaining.saturating_sub(1);
    }
    let reset = now() + 3600;
    let limits = [
        ("x-ratelimit-limit", "5000".to_owned()),
        ("x-ratelimit-remaining", st.remaining.to_string()),
        (
            "x-ratelimit-used",
            (5000 - st.remaining.min(5000)).to_string(),
        ),
        ("x-ratelimit-reset", reset.to_string()),
        ("x-ratelimit-resource", "core".to_owned()),
    ];
    for (k, v) in limits {
        if !answer.headers.iter().any(|(h, _)| h == k) {
            answer.headers.push((k.to_owned(), v));
        }
    }
    st.seen.push(Seen {
        method: req.method.clone(),
        path: if req.query.is_empty() {
            req.path.clone()
        } else {
            format!("{}?{}", req.path, query_string(&req.query))
        },
        headers: req.headers.clone(),
        body: req.body.clone(),
        status: answer.status,
    });
    drop(st);
    send(&mut conn, &answer)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn query_string(q: &BTreeMap<String, String>) -> String {
    q.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn send(w: &mut TcpStream, a: &Answer) -> std::io::Result<()> {
    let reason = match a.status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        _ => "Status",
    };
    let mut head = format!("HTTP/1.1 {} {reason}\r\nconnection: close\r\n", a.status);
    for (k, v) in &a.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    match &a.body {
        Some(b) => head.push_str(&format!(
            "content-type: application/json; charset=utf-8\r\ncontent-length: {}\r\n\r\n{b}",
            b.len()
        )),
        None => head.push_str("content-length: 0\r\n\r\n"),
    }
    w.write_all(head.as_bytes())?;
    w.flush()
}

/// Checks, scripted failures, then the route.
fn answer(req: &Request, state: &Mutex<State>, bare: &Path, base: &str) -> Answer {
    let login = {
        let st = lock(state);
        let auth = req.header("authorization").unwrap_or_default();
        let token = auth
            .strip_prefix("Bearer ")
            .or_else(|| auth.strip_prefix("token "))
            .unwrap_or_default();
        st.tokens.get(token).cloned()
    };
    let Some(login) = login else {
        return Answer::error(
            401,
            if req.header("authorization").is_some() {
                "Bad credentials"
            } else {
                "Requires authentication"
            },
        );
    };
    if !matches!(
        req.header("x-github-api-version"),
        Some("2022-11-28" | "2026-03-10")
    ) {
        return Answer::error(
            400,
            "The X-GitHub-Api-Version header is missing or names no supported version",
        );
    }
    if let Some(a) = scripted(req, state) {
        return a;
    }
    if req.method == "POST" && (req.path == "/graphql" || req.path == "/api/graphql") {
        return graphql(req, state);
    }
    let Some(rest) = req.path.strip_prefix(&format!("/repos/{OWNER}/{REPO}")) else {
        return match (req.method.as_str(), req.path.as_str()) {
            ("GET", "/user") => Answer::json(200, &user_json(state, &login)),
            _ => Answer::error(404, "Not Found"),
        };
    };
    if let Some(a) = check_body(req, rest) {
        return a;
    }
    let seg: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
    route(req, &seg, state, bare, base, &login)
}

fn scripted(req: &Request, state: &Mutex<State>) -> Option<Answer> {
    let line = format!("{} {}", req.method, req.path);
    let mut st = lock(state);
    let at = st
        .script
        .iter()
        .position(|(needle, _)| line.contains(needle.as_str()))?;
    let (_, s) = st.script.remove(at)?;
    Some(match s {
        Scripted::SecondaryLimit { retry_after } => {
            let mut a = Answer::error(
                403,
                "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
            );
            if let Some(r) = retry_after {
                a.headers.push(("retry-after".into(), r.to_string()));
            }
            a
        }
        Scripted::PrimaryExhausted { reset_in } => {
            let mut a = Answer::error(403, "API rate limit exceeded for user ID 41.");
            a.headers.push(("x-ratelimit-remaining".into(), "0".into()));
            a.headers
                .push(("x-ratelimit-reset".into(), (now() + reset_in).to_string()));
            a
        }
        Scripted::NotAccessible => Answer::error(403, "Resource not accessible by integration"),
        Scripted::Status(code, body) => Answer::json(code, &body),
    })
}

/// Validates the body against the endpoint's schema in endpoints.json, if it has one.
fn check_body(req: &Request, rest: &str) -> Option<Answer> {
    let endpoints: Value = serde_json::from_str(ENDPOINTS).expect("endpoints json");
    let template = endpoints.as_object()?.keys().find(|k| {
        let (m, p) = k.split_once(' ').unwrap_or_default();
        m == req.method && path_matches(p.trim_start_matches("/repos/{owner}/{repo}"), rest)
    })?;
    let schema = &endpoints[template]["requestBody"];
    if schema.is_null() {
        return None;
    }
    let Some(body) = req.json() else {
        return Some(Answer::error(400, "Problems parsing JSON"));
    };
    let mut errors = Vec::new();
    validate(schema, &body, "", &mut errors);
    (!errors.is_empty()).then(|| Answer::invalid(Value::Array(errors)))
}

fn path_matches(template: &str, path: &str) -> bool {
    let t: Vec<&str> = template.split('/').collect();
    let p: Vec<&str> = path.split('/').collect();
    t.len() == p.len() && t.iter().zip(&p).all(|(a, b)| a.starts_with('{') || a == b)
}

fn validate(schema: &Value, v: &Value, field: &str, errors: &mut Vec<Value>) {
    if let Some(alts) = schema["oneOf"].as_array() {
        let fits = alts.iter().any(|s| {
            let mut e = Vec::new();
            validate(s, v, field, &mut e);
            e.is_empty()
        });
        if !fits {
            errors.push(json!({"resource": "Body", "field": field, "code": "invalid"}));
        }
        return;
    }
    if v.is_null() && schema["nullable"] == json!(true) {
        return;
    }
    let ok = match schema["type"].as_str() {
        Some("object") => v.is_object(),
        Some("array") => v.is_array(),
        Some("string") => v.is_string(),
        Some("integer") => v.is_i64() || v.is_u64(),
        Some("boolean") => v.is_boolean(),
        _ => true,
    };
    if !ok {
        errors.push(
            json!({"resource": "Body", "field": field, "code": "invalid",
                           "message": format!("{field} is not of type {}", schema["type"])}),
        );
        return;
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(v)
    {
        errors.push(json!({"resource": "Body", "field": field, "code": "invalid", "value": v}));
    }
    for r in schema["required"].as_array().into_iter().flatten() {
        let name = r.as_str().unwrap_or_default();
        if v.get(name).is_none() {
            errors.push(json!({"resource": "Body", "field": name, "code": "missing_field"}));
        }
    }
    if let (Some(props), Some(obj)) = (schema["properties"].as_object(), v.as_object()) {
        for (k, s) in props {
            if let Some(x) = obj.get(k) {
                validate(s, x, k, errors);
            }
        }
    }
    if let Some(items) = v.as_array() {
        if let Some(min) = schema["minItems"].as_u64()
            && (items.len() as u64) < min
        {
            errors.push(json!({"resource": "Body", "field": field, "code": "invalid"}));
        }
        if !schema["items"].is_null() {
            for x in items {
                validate(&schema["items"], x, field, errors);
            }
        }
    }
}

fn route(
    req: &Request,
    seg: &[&str],
    state: &Mutex<State>,
    bare: &Path,
    base: &str,
    login: &str,
) -> Answer {
    let num = |i: usize| seg.get(i).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
    match (req.method.as_str(), seg) {
        ("GET", ["pulls"]) => list(req, base, list_pulls(req, state)),
        ("POST", ["pulls"]) => create_pull(req, state, bare, login),
        ("PATCH", ["pulls", _]) => update_pull(req, state, num(1)),
        ("GET", ["pulls", _]) => with_pull(state, num(1), |p| Answer::json(200, &pull_json(p))),
        ("POST", ["pulls", _, "requested_reviewers"]) => request_reviewers(req, state, num(1)),
        ("GET", ["pulls", _, "reviews"]) => list(req, base, reviews(state, num(1))),
        ("GET", ["pulls", _, "comments"]) => list(req, base, review_comments(state, num(1))),
        ("PUT", ["pulls", _, "merge"]) => merge(state, num(1)),
        ("GET", ["issues", _, "comments"]) => list(req, base, issue_comments(state, num(1))),
        ("POST", ["issues", _, "comments"]) => create_comment(req, state, num(1), login),
        ("PATCH", ["issues", "comments", _]) => update_comment(req, state, num(2), login),
        ("POST", ["issues", _, "labels"]) => add_labels(req, state, num(1)),
        ("GET", ["labels"]) => {
            let all = lock(state).labels.clone();
            list(req, base, all.iter().map(|l| label_json(l)).collect())
        }
        ("POST", ["labels"]) => create_label(req, state),
        ("GET", ["collaborators", user, "permission"]) => permission(state, user),
        _ => Answer::error(404, "Not Found"),
    }
}

/// One page of `items` with `Link` and `ETag`; 304 when `If-None-Match` matches.
fn list(req: &Request, base: &str, items: Vec<Value>) -> Answer {
    let per_page = req
        .query
        .get("per_page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(30)
        .clamp(1, 100);
    let page = req
        .query
        .get("page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    let last = items.len().div_ceil(per_page).max(1);
    let slice: Vec<Value> = items
        .into_iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .collect();
    let body = Value::Array(slice).to_string();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    body.hash(&mut h);
    let etag = format!("W/\"{:016x}\"", h.finish());
    let mut a = if req.header("if-none-match") == Some(etag.as_str()) {
        Answer {
            status: 304,
            headers: Vec::new(),
            body: None,
        }
    } else {
        Answer {
            status: 200,
            headers: Vec::new(),
            body: Some(body),
        }
    };
    a.headers.push(("etag".into(), etag));
    let link = |p: usize, rel: &str| {
        let mut q = req.query.clone();
        q.insert("page".into(), p.to_string());
        format!("<{base}{}?{}>; rel=\"{rel}\"", req.path, query_string(&q))
    };
    let mut links = Vec::new();
    if page < last {
        links.push(link(page + 1, "next"));
        links.push(link(last, "last"));
    }
    if page > 1 {
        links.push(link(1, "first"));
        links.push(link(page - 1, "prev"));
    }
    if !links.is_empty() {
        a.headers.push(("link".into(), links.join(", ")));
    }
    a
}

fn user_value(state_users: &BTreeMap<String, (u64, String)>, login: &str) -> Value {
    let sample: Value = serde_json::from_str(ISSUE_COMMENT).expect("issue comment json");
    let (id, kind) = state_users
        .get(login)
        .cloned()
        .unwrap_or((9, "User".into()));
    let text = sample["user"].to_string().replace("octocat", login);
    let mut u: Value = serde_json::from_str(&text).expect("user json");
    u["id"] = json!(id);
    u["node_id"] = json!(format!("U_fake{id}"));
    u["type"] = json!(kind);
    u
}

fn user_json(state: &Mutex<State>, login: &str) -> Value {
    user_value(&lock(state).users, login)
}

fn label_json(name: &str) -> Value {
    let samples: Value = serde_json::from_str(LABELS).expect("labels json");
    let mut l = samples[0].clone();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    name.hash(&mut h);
    let id = h.finish() % 1_000_000_000;
    l["id"] = json!(id);
    l["node_id"] = json!(format!("LA_fake{id}"));
    l["url"] = json!(format!(
        "https://api.github.com/repos/{OWNER}/{REPO}/labels/{name}"
    ));
    l["name"] = json!(name);
    l["description"] = Value::Null;
    l["default"] = json!(false);
    l
}

fn pull_json_in(users: &BTreeMap<String, (u64, String)>, p: &Pull) -> Value {
    let mut v: Value = serde_json::from_str(PULL).expect("pull json");
    let n = p.number;
    v["id"] = json!(n * 1000 + 7);
    v["node_id"] = json!(p.node_id);
    v["number"] = json!(n);
    v["url"] = json!(format!(
        "https://api.github.com/repos/{OWNER}/{REPO}/pulls/{n}"
    ));
    v["html_url"] = json!(format!("https://github.com/{OWNER}/{REPO}/pull/{n}"));
    v["state"] = json!(p.state);
    v["title"] = json!(p.title);
    v["body"] = json!(p.body);
    v["draft"] = json!(p.draft);
    v["merged"] = json!(p.merged);
    v["user"] = user_value(users, &p.user);
    v["labels"] = Value::Array(p.labels.iter().map(|l| label_json(l)).collect());
    v["requested_reviewers"] =
        Value::Array(p.reviewers.iter().map(|r| user_value(users, r)).collect());
    v["head"]["ref"] = json!(p.head);
    v["head"]["label"] = json!(format!("{OWNER}:{}", p.head));
    v["head"]["sha"] = json!(p.head_sha);
    v["base"]["ref"] = json!(p.base);
    v["base"]["label"] = json!(format!("{OWNER}:{}", p.base));
    v
}

fn pull_json(p: &Pull) -> Value {
    pull_json_in(&BTreeMap::new(), p)
}

fn with_pull(state: &Mutex<State>, n: u64, f: impl FnOnce(&Pull) -> Answer) -> Answer {
    let st = lock(state);
    match st.pulls.iter().find(|p| p.number == n) {
        Some(p) => f(p),
        None => Answer::error(404, "Not Found"),
    }
}

fn list_pulls(req: &Request, state: &Mutex<State>) -> Vec<Value> {
    let st = lock(state);
    let want_state = req.query.get("state").map(String::as_str).unwrap_or("open");
    st.pulls
        .iter()
        .filter(|p| want_state == "all" || p.state == want_state)
        .filter(|p| match req.query.get("head") {
            Some(h) => h
                .split_once(':')
                .map(|(o, b)| o == OWNER && b == p.head)
                .unwrap_or(false),
            None => true,
        })
        .filter(|p| req.query.get("base").is_none_or(|b| *b == p.base))
        .map(|p| pull_json_in(&st.users, p))
        .collect()
}

fn create_pull(req: &Request, state: &Mutex<State>, bare: &Path, login: &str) -> Answer {
    let body = req.json().unwrap_or_default();
    let head = body["head"].as_str().unwrap_or_default();
    let head = head.split_once(':').map(|(_, b)| b).unwrap_or(head);
    let base = body["base"].as_str().unwrap_or_default();
    let Some(title) = body["title"].as_str() else {
        return Answer::invalid(
            json!([{"resource": "PullRequest", "field": "title", "code": "missing_field"}]),
        );
    };
    let Some(sha) = rev_parse(bare, head) else {
        return Answer::invalid(
            json!([{"resource": "PullRequest", "field": "head", "code": "invalid"}]),
        );
    };
    if rev_parse(bare, base).is_none() {
        return Answer::invalid(
            json!([{"resource": "PullRequest", "field": "base", "code": "invalid"}]),
        );
    }
    let mut st = lock(state);
    if st
        .pulls
        .iter()
        .any(|p| p.head == head && p.base == base && p.state == "open")
    {
        return Answer::invalid(json!([{"resource": "PullRequest", "code": "custom",
            "message": format!("A pull request already exists for {OWNER}:{head}.")}]));
    }
    let draft = body["draft"].as_bool().unwrap_or(false);
    let text = body["body"].as_str().unwrap_or_default();
    let n = new_pull(&mut st, title, text, head, base, &sha, draft, login);
    let p = st.pulls.iter().find(|p| p.number == n).expect("just added");
    let mut a = Answer::json(201, &pull_json_in(&st.users, p));
    a.headers.push((
        "location".into(),
        format!("https://api.github.com/repos/{OWNER}/{REPO}/pulls/{n}"),
    ));
    a
}

fn update_pull(req: &Request, state: &Mutex<State>, n: u64) -> Answer {
    let body = req.json().unwrap_or_default();
    let mut st = lock(state);
    let users = st.users.clone();
    let Some(p) = st.pulls.iter_mut().find(|p| p.number == n) else {
        return Answer::error(404, "Not Found");
    };
    if let Some(t) = body["title"].as_str() {
        p.title = t.into();
    }
    if let Some(b) = body["body"].as_str() {
        p.body = b.into();
    }
    if let Some(s) = body["state"].as_str() {
        p.state = s.into();
    }
    Answer::json(200, &pull_json_in(&users, p))
}

fn request_reviewers(req: &Request, state: &Mutex<State>, n: u64) -> Answer {
    let body = req.json().unwrap_or_default();
    let mut st = lock(state);
    let users = st.users.clone();
    let Some(p) = st.pulls.iter_mut().find(|p| p.number == n) else {
        return Answer::error(404, "Not Found");
    };
    for r in body["reviewers"].as_array().into_iter().flatten() {
        let login = r.as_str().unwrap_or_default();
        if !users.contains_key(login) {
            return Answer::error(
                422,
                "Reviews may only be requested from collaborators. One or more of the users or teams you specified is not a collaborator of the octo/widgets repository.",
            );
        }
        if !p.reviewers.iter().any(|x| x == login) {
            p.reviewers.push(login.into());
        }
    }
    for t in body["team_reviewers"].as_array().into_iter().flatten() {
        p.teams.push(t.as_str().unwrap_or_default().into());
    }
    Answer::json(201, &pull_json_in(&users, p))
}

fn merge(state: &Mutex<State>, n: u64) -> Answer {
    let mut st = lock(state);
    let Some(p) = st.pulls.iter_mut().find(|p| p.number == n) else {
        return Answer::error(404, "Not Found");
    };
    if p.draft {
        return Answer::error(405, "Pull Request is still a draft");
    }
    if p.merged || p.state != "open" {
        return Answer::error(405, "Pull Request is not mergeable");
    }
    p.merged = true;
    p.state = "closed".into();
    Answer::json(
        200,
        &json!({"sha": p.head_sha, "merged": true, "message": "Pull Request successfully merged"}),
    )
}

fn reviews(state: &Mutex<State>, n: u64) -> Vec<Value> {
    let st = lock(state);
    let sample: Value = serde_json::from_str(REVIEW).expect("review json");
    st.reviews
        .iter()
        .filter(|r| r.pull == n)
        .map(|r| {
            let mut v = sample.clone();
            v["id"] = json!(r.id);
            v["node_id"] = json!(format!("PRR_fake{}", r.id));
            v["user"] = user_value(&st.users, &r.user);
            v["body"] = json!(r.body);
            v["state"] = json!(r.state);
            v["commit_id"] = json!(r.commit_id);
            v["author_association"] = json!("COLLABORATOR");
            v
        })
        .collect()
}

fn review_comments(state: &Mutex<State>, n: u64) -> Vec<Value> {
    let st = lock(state);
    let sample: Value = serde_json::from_str(REVIEW_COMMENT).expect("review comment json");
    st.review_comments
        .iter()
        .filter(|c| c.pull == n)
        .map(|c| {
            let mut v = sample.clone();
            v["id"] = json!(c.id);
            v["node_id"] = json!(format!("PRRC_fake{}", c.id));
            v["pull_request_review_id"] = json!(c.review);
            v["user"] = user_value(&st.users, &c.user);
            v["path"] = json!(c.path);
            v["line"] = json!(c.line);
            v["original_line"] = json!(c.line);
            v["start_line"] = Value::Null;
            v["body"] = json!(c.body);
            v["in_reply_to_id"] = Value::Null;
            v
        })
        .collect()
}

fn comment_value(users: &BTreeMap<String, (u64, String)>, c: &IssueComment) -> Value {
    let mut v: Value = serde_json::from_str(ISSUE_COMMENT).expect("issue comment json");
    v["id"] = json!(c.id);
    v["node_id"] = json!(format!("IC_fake{}", c.id));
    v["url"] = json!(format!(
        "https://api.github.com/repos/{OWNER}/{REPO}/issues/comments/{}",
        c.id
    ));
    v["html_url"] = json!(format!(
        "https://github.com/{OWNER}/{REPO}/pull/{}#issuecomment-{}",
        c.issue, c.id
    ));
    v["issue_url"] = json!(format!(
        "https://api.github.com/repos/{OWNER}/{REPO}/issues/{}",
        c.issue
    ));
    v["body"] = json!(c.body);
    v["user"] = user_value(users, &c.user);
    v
}

fn issue_comments(state: &Mutex<State>, n: u64) -> Vec<Value> {
    let st = lock(state);
    st.comments
        .iter()
        .filter(|c| c.issue == n)
        .map(|c| comment_value(&st.users, c))
        .collect()
}

fn create_comment(req: &Request, state: &Mutex<State>, n: u64, login: &str) -> Answer {
    let body = req.json().unwrap_or_default();
    let mut st = lock(state);
    if !st.pulls.iter().any(|p| p.number == n) {
        return Answer::error(404, "Not Found");
    }
    let id = next(&mut st);
    let c = IssueComment {
        id,
        issue: n,
        user: login.into(),
        body: body["body"].as_str().unwrap_or_default().into(),
    };
    let v = comment_value(&st.users, &c);
    st.comments.push(c);
    Answer::json(201, &v)
}

fn update_comment(req: &Request, state: &Mutex<State>, id: u64, login: &str) -> Answer {
    let body = req.json().unwrap_or_default();
    let mut st = lock(state);
    let users = st.users.clone();
    let Some(c) = st.comments.iter_mut().find(|c| c.id == id) else {
        return Answer::error(404, "Not Found");
    };
    if c.user != login {
        return Answer::error(403, "You must have write access to edit this comment");
    }
    c.body = body["body"].as_str().unwrap_or_default().into();
    Answer::json(200, &comment_value(&users, c))
}

fn add_labels(req: &Request, state: &Mutex<State>, n: u64) -> Answer {
    let body = req.json().unwrap_or_default();
    let names: Vec<String> = body["labels"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l.as_str().or_else(|| l["name"].as_str()).map(str::to_owned))
        .collect();
    let mut st = lock(state);
    for name in &names {
        if !st.labels.contains(name) {
            st.labels.push(name.clone());
        }
    }
    let Some(p) = st.pulls.iter_mut().find(|p| p.number == n) else {
        return Answer::error(404, "Not Found");
    };
    for name in names {
        if !p.labels.contains(&name) {
            p.labels.push(name);
        }
    }
    Answer::json(
        200,
        &Value::Array(p.labels.iter().map(|l| label_json(l)).collect()),
    )
}

fn create_label(req: &Request, state: &Mutex<State>) -> Answer {
    let body = req.json().unwrap_or_default();
    let Some(name) = body["name"].as_str() else {
        return Answer::invalid(
            json!([{"resource": "Label", "field": "name", "code": "missing_field"}]),
        );
    };
    let mut st = lock(state);
    if st.labels.iter().any(|l| l == name) {
        return Answer::invalid(
            json!([{"resource": "Label", "field": "name", "code": "already_exists"}]),
        );
    }
    st.labels.push(name.into());
    Answer::json(201, &label_json(name))
}

fn permission(state: &Mutex<State>, user: &str) -> Answer {
    let st = lock(state);
    if !st.users.contains_key(user) {
        return Answer::error(404, "Not Found");
    }
    let perm = st
        .permissions
        .get(user)
        .cloned()
        .unwrap_or_else(|| "read".into());
    let role = if perm == "none" {
        "read".to_owned()
    } else {
        perm.clone()
    };
    Answer::json(
        200,
        &json!({"permission": perm, "role_name": role, "user": user_value(&st.users, user)}),
    )
}

fn graphql(req: &Request, state: &Mutex<State>) -> Answer {
    let body = req.json().unwrap_or_default();
    let query = body["query"].as_str().unwrap_or_default();
    let id = body["variables"]["id"].as_str().unwrap_or_default();
    let ready = query.contains("markPullRequestReadyForReview");
    if !ready && !query.contains("convertPullRequestToDraft") {
        return Answer::json(
            200,
            &json!({"errors": [{"type": "UNKNOWN", "message": "the fake knows only markPullRequestReadyForReview and convertPullRequestToDraft"}]}),
        );
    }
    let mut st = lock(state);
    let Some(p) = st.pulls.iter_mut().find(|p| p.node_id == id) else {
        return Answer::json(
            200,
            &json!({"data": null, "errors": [{"type": "NOT_FOUND", "path": ["markPullRequestReadyForReview"],
            "message": format!("Could not resolve to a node with the global id of '{id}'")}]}),
        );
    };
    p.draft = !ready;
    let field = if ready {
        "markPullRequestReadyForReview"
    } else {
        "convertPullRequestToDraft"
    };
    Answer::json(
        200,
        &json!({"data": {field: {"pullRequest": {"isDraft": p.draft}}}}),
    )
}
