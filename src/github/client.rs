//! The HTTP side of GitHub: octocrab for the transport (base URI, the bearer token, GitHub's
//! headers), and mmm's own handling of what octocrab's typed calls hide.
//!
//! Every call goes through octocrab's raw `_get_with_headers`/`_post`/`_patch`/`_put`, because
//! the loop needs each response's headers: `ETag` for conditional requests (a 304 is free),
//! `Link` for the next page, and the rate-limit headers; octocrab's typed calls drop them,
//! and its `graphql()` posts to `base + /graphql`, which is wrong on Enterprise. Requests are
//! sent to absolute URLs with octocrab's base set to the API's origin, so that its base-path
//! joining never rewrites them.
//!
//! Rate limits: `retry-after` is honoured; `x-ratelimit-remaining: 0` waits until
//! `x-ratelimit-reset` (up to [`ClientOptions::max_wait`]); a secondary limit without
//! `retry-after` waits `secondary_wait`, doubling, for a bounded number of tries.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::{HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::permission_for;
use super::{GithubError, Result, Target, User};

/// How the client talks to GitHub.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Repository and endpoints.
    pub target: Target,
    /// The token (from GITHUB_TOKEN or GH_TOKEN; never stored).
    pub token: String,
    /// The first wait after a secondary rate limit without `retry-after` (then doubling).
    pub secondary_wait: Duration,
    /// Tries of one call while rate limited.
    pub max_tries: u32,
    /// The longest single wait for a rate limit to reset; longer is an error.
    pub max_wait: Duration,
    /// Time limit of connecting and of reading an answer.
    pub timeout: Duration,
    /// The ETag cache file (under `.git/mmm/`); None: no conditional requests.
    pub cache_file: Option<PathBuf>,
}

impl ClientOptions {
    /// Defaults: a minute's secondary wait, 4 tries, 15 minutes' longest wait, 30 s timeout.
    pub fn new(target: Target, token: impl Into<String>) -> ClientOptions {
        ClientOptions {
            target,
            token: token.into(),
            secondary_wait: Duration::from_secs(60),
            max_tries: 4,
            max_wait: Duration::from_secs(15 * 60),
            timeout: Duration::from_secs(30),
            cache_file: None,
        }
    }
}

/// Calls made to one endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointCalls {
    /// Calls that count against the rate limit.
    pub counted: u64,
    /// Conditional requests answered 304 (free).
    pub not_modified: u64,
}

/// Calls by endpoint (`GET /repos/{owner}/{repo}/pulls`…), for the metrics note.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallCounts(pub BTreeMap<String, EndpointCalls>);

impl CallCounts {
    /// Calls that counted against the rate limit, over all endpoints.
    pub fn counted(&self) -> u64 {
        self.0.values().map(|c| c.counted).sum()
    }

    /// 304s, over all endpoints.
    pub fn not_modified(&self) -> u64 {
        self.0.values().map(|c| c.not_modified).sum()
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Cached {
    etag: String,
    body: String,
    next: Option<String>,
}

/// One answer: status, headers, text.
pub(super) struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as JSON of type `T`.
    pub fn json<T: for<'de> Deserialize<'de>>(&self, endpoint: &str) -> Result<T> {
        serde_json::from_str(&self.body).map_err(|e| GithubError::Decode {
            endpoint: endpoint.to_owned(),
            reason: e.to_string(),
        })
    }
}

/// The GitHub client: the [`ReviewHost`](super::ReviewHost) implementation lives in `host.rs`.
pub struct GitHub {
    pub(super) opts: ClientOptions,
    octo: octocrab::Octocrab,
    rt: tokio::runtime::Runtime,
    cache: Mutex<Option<BTreeMap<String, Cached>>>,
    calls: Mutex<CallCounts>,
    /// No calls before this time (epoch seconds): the primary limit is spent.
    resume_at: Mutex<u64>,
    pub(super) me: Mutex<Option<User>>,
    pub(super) permissions: Mutex<BTreeMap<String, super::Permission>>,
}

impl std::fmt::Debug for GitHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitHub")
            .field("target", &self.opts.target)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `scheme://authority` of a URL.
fn origin(url: &str) -> Result<String> {
    let bad = |reason: &str| GithubError::BadUrl {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let uri: http::Uri = url.parse().map_err(|_| bad("not a URL"))?;
    let scheme = uri.scheme_str().ok_or_else(|| bad("no scheme"))?;
    if scheme != "https" && scheme != "http" {
        return Err(bad("expected http or https"));
    }
    let authority = uri.authority().ok_or_else(|| bad("no host"))?;
    Ok(format!("{scheme}://{authority}"))
}

impl GitHub {
    /// A client for `opts.target` with `opts.token`.
    pub fn new(opts: ClientOptions) -> Result<GitHub> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| GithubError::Unreachable {
                url: opts.target.api_url.clone(),
                reason: format!("cannot start the HTTP runtime: {e}"),
            })?;
        let base = origin(&opts.target.api_url)?;
        origin(&opts.target.graphql_url)?;
        let built = rt.block_on(async {
            octocrab::Octocrab::builder()
                .base_uri(base.as_str())?
                .personal_token(opts.token.clone())
                .add_header(
                    http::header::ACCEPT,
                    "application/vnd.github+json".to_owned(),
                )
                .set_connect_timeout(Some(opts.timeout))
                .set_read_timeout(Some(opts.timeout))
                .build()
        });
        let octo = built.map_err(|e| GithubError::BadUrl {
            url: opts.target.api_url.clone(),
            reason: e.to_string(),
        })?;
        Ok(GitHub {
            opts,
            octo,
            rt,
            cache: Mutex::new(None),
            calls: Mutex::new(CallCounts::default()),
            resume_at: Mutex::new(0),
            me: Mutex::new(None),
            permissions: Mutex::new(BTreeMap::new()),
        })
    }

    /// The calls made so far, by endpoint.
    pub fn calls(&self) -> CallCounts {
        lock(&self.calls).clone()
    }

    /// The web address commit ids are appended to for a link: `https://github.com/OWNER/REPO/commit`
    /// (the API host without `api.` and `/api/v3` on GitHub Enterprise).
    pub fn commit_url(&self) -> String {
        let t = &self.opts.target;
        let web = t.api_url.trim_end_matches('/').trim_end_matches("/api/v3");
        let web = web.replacen("://api.github.com", "://github.com", 1);
        format!("{web}/{}/{}/commit", t.owner, t.repo)
    }

    /// `{api_url}/repos/{owner}/{repo}{rest}`.
    pub(super) fn repo_url(&self, rest: &str) -> String {
        let t = &self.opts.target;
        format!("{}/repos/{}/{}{rest}", t.api_url, t.owner, t.repo)
    }

    /// `{api_url}{path}`.
    pub(super) fn api(&self, path: &str) -> String {
        format!("{}{path}", self.opts.target.api_url)
    }

    /// Sends one call with the rate-limit handling; a non-2xx answer is an error.
    pub(super) fn send(
        &self,
        endpoint: &str,
        method: http::Method,
        url: &str,
        body: Option<&Value>,
    ) -> Result<Reply> {
        let reply = self.call(endpoint, &method, url, body, None)?;
        if (200..300).contains(&reply.status) {
            Ok(reply)
        } else {
            Err(self.error(endpoint, &reply))
        }
    }

    /// Every item of a list, across all pages (`Link: rel="next"`), with conditional
    /// requests against the ETag cache.
    pub(super) fn get_all<T: for<'de> Deserialize<'de>>(
        &self,
        endpoint: &str,
        url: &str,
    ) -> Result<Vec<T>> {
        let sep = if url.contains('?') { '&' } else { '?' };
        let mut next = Some(format!("{url}{sep}per_page=100"));
        let mut items = Vec::new();
        while let Some(page_url) = next.take() {
            let cached = self.cached(&page_url);
            let etag = cached.as_ref().map(|c| c.etag.as_str());
            let reply = self.call(endpoint, &http::Method::GET, &page_url, None, etag)?;
            let page = match (reply.status, cached) {
                (304, Some(c)) => c,
                (200, _) => {
                    let page = Cached {
                        etag: reply.header("etag").unwrap_or_default().to_owned(),
                        body: reply.body.clone(),
                        next: reply.header("link").and_then(next_link),
                    };
                    self.remember(&page_url, &page);
                    page
                }
                _ => return Err(self.error(endpoint, &reply)),
            };
            let mut batch: Vec<T> =
                serde_json::from_str(&page.body).map_err(|e| GithubError::Decode {
                    endpoint: endpoint.to_owned(),
                    reason: e.to_string(),
                })?;
            items.append(&mut batch);
            next = page.next;
        }
        Ok(items)
    }

    /// One call, tried again while rate limited.
    fn call(
        &self,
        endpoint: &str,
        method: &http::Method,
        url: &str,
        body: Option<&Value>,
        etag: Option<&str>,
    ) -> Result<Reply> {
        let mut attempt = 1;
        loop {
            self.wait_for_reset(endpoint)?;
            let reply = self
                .rt
                .block_on(self.once(method, url, body, etag))
                .map_err(|reason| GithubError::Unreachable {
                    url: url.to_owned(),
                    reason,
                })?;
            self.count(endpoint, reply.status == 304);
            self.note_remaining(&reply);
            let Some(wait) = self.rate_wait(&reply, attempt) else {
                return Ok(reply);
            };
            if attempt >= self.opts.max_tries || wait > self.opts.max_wait {
                return Err(GithubError::RateLimited {
                    endpoint: endpoint.to_owned(),
                    detail: format!(
                        "{} after {attempt} tries (the next wait would be {}s)",
                        message_of(&reply.body),
                        wait.as_secs()
                    ),
                });
            }
            tracing::info!(
                endpoint,
                wait_s = wait.as_secs_f64(),
                "GitHub rate limit: waiting"
            );
            std::thread::sleep(wait);
            attempt += 1;
        }
    }

    async fn once(
        &self,
        method: &http::Method,
        url: &str,
        body: Option<&Value>,
        etag: Option<&str>,
    ) -> std::result::Result<Reply, String> {
        let o = &self.octo;
        let resp = if method == http::Method::GET {
            let mut h = HeaderMap::new();
            if let Some(e) = etag.and_then(|e| HeaderValue::from_str(e).ok()) {
                h.insert(HeaderName::from_static("if-none-match"), e);
            }
            o._get_with_headers(url, Some(h)).await
        } else if method == http::Method::POST {
            o._post(url, body).await
        } else if method == http::Method::PATCH {
            o._patch(url, body).await
        } else if method == http::Method::PUT {
            o._put(url, body).await
        } else {
            return Err(format!("mmm sends no {method} requests"));
        }
        .map_err(|e| transport_reason(&e))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = o
            .body_to_string(resp)
            .await
            .map_err(|e| transport_reason(&e))?;
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    fn count(&self, endpoint: &str, not_modified: bool) {
        let mut calls = lock(&self.calls);
        let e = calls.0.entry(endpoint.to_owned()).or_default();
        if not_modified {
            e.not_modified += 1;
        } else {
            e.counted += 1;
        }
    }

    /// A spent primary limit makes the next call wait for its reset.
    fn note_remaining(&self, reply: &Reply) {
        if reply.header("x-ratelimit-remaining") == Some("0")
            && let Some(reset) = reply
                .header("x-ratelimit-reset")
                .and_then(|r| r.parse().ok())
        {
            *lock(&self.resume_at) = reset;
        }
    }

    fn wait_for_reset(&self, endpoint: &str) -> Result<()> {
        let at = std::mem::take(&mut *lock(&self.resume_at));
        let left = at.saturating_sub(now());
        if left == 0 {
            return Ok(());
        }
        if Duration::from_secs(left) > self.opts.max_wait {
            return Err(GithubError::RateLimited {
                endpoint: endpoint.to_owned(),
                detail: format!("the primary limit resets in {left}s"),
            });
        }
        std::thread::sleep(Duration::from_secs(left));
        Ok(())
    }

    /// How long to wait before trying again, if the answer is a rate limit.
    fn rate_wait(&self, reply: &Reply, attempt: u32) -> Option<Duration> {
        if reply.status != 403 && reply.status != 429 {
            return None;
        }
        let retry_after = reply
            .header("retry-after")
            .and_then(|v| v.trim().parse::<u64>().ok());
        let secondary = message_of(&reply.body)
            .to_ascii_lowercase()
            .contains("secondary rate limit");
        let spent = reply.header("x-ratelimit-remaining") == Some("0");
        if let Some(s) = retry_after {
            return Some(Duration::from_secs(s));
        }
        if spent {
            let reset: u64 = reply.header("x-ratelimit-reset")?.parse().ok()?;
            *lock(&self.resume_at) = 0;
            return Some(Duration::from_secs(reset.saturating_sub(now()).max(1)));
        }
        if secondary || reply.status == 429 {
            let factor = 1u32 << (attempt - 1).min(10);
            return Some(self.opts.secondary_wait * factor);
        }
        None
    }

    /// The typed error of a non-2xx answer.
    pub(super) fn error(&self, endpoint: &str, reply: &Reply) -> GithubError {
        let message = message_of(&reply.body);
        let endpoint = endpoint.to_owned();
        match reply.status {
            401 => GithubError::Unauthorized { endpoint, message },
            403 if message.contains("not accessible by integration") => {
                GithubError::NotAccessible {
                    permission: permission_for(&endpoint),
                    endpoint,
                    message,
                }
            }
            403 | 429 if message.to_ascii_lowercase().contains("rate limit") => {
                GithubError::RateLimited {
                    endpoint,
                    detail: message,
                }
            }
            404 => GithubError::NotFound {
                endpoint,
                repo: self.opts.target.full_name(),
            },
            422 => GithubError::Invalid {
                endpoint,
                message,
                errors: validation_errors(&reply.body),
            },
            status => GithubError::Status {
                endpoint,
                status,
                message,
            },
        }
    }

    fn cached(&self, url: &str) -> Option<Cached> {
        let path = self.opts.cache_file.as_ref()?;
        let mut cache = lock(&self.cache);
        let map = cache.get_or_insert_with(|| {
            std::fs::read(path)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or_default()
        });
        map.get(url).cloned()
    }

    /// Stores a page and writes the cache file (atomically; it can always be thrown away).
    fn remember(&self, url: &str, page: &Cached) {
        let Some(path) = self.opts.cache_file.as_ref() else {
            return;
        };
        if page.etag.is_empty() {
            return;
        }
        let mut cache = lock(&self.cache);
        let map = cache.get_or_insert_with(BTreeMap::new);
        map.insert(url.to_owned(), page.clone());
        let Ok(text) = serde_json::to_vec(&*map) else {
            return;
        };
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let written = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(&tmp, text))
            .and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = written {
            tracing::debug!(error = %e, "GitHub ETag cache not written");
        }
    }
}

fn transport_reason(e: &octocrab::Error) -> String {
    use std::error::Error as _;
    let mut reason = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        reason = format!("{reason}: {s}");
        source = s.source();
    }
    reason
}

/// GitHub's `message`, or the start of the body.
pub(super) fn message_of(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| body.chars().take(200).collect())
}

fn validation_errors(body: &str) -> Vec<String> {
    let v: Value = serde_json::from_str(body).unwrap_or_default();
    v["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| match e["message"].as_str() {
            Some(m) => m.to_owned(),
            None => format!(
                "{} {} {}",
                e["resource"].as_str().unwrap_or_default(),
                e["field"].as_str().unwrap_or_default(),
                e["code"].as_str().unwrap_or_default()
            )
            .trim()
            .to_owned(),
        })
        .collect()
}

/// The `rel="next"` URL of a `Link` header.
fn next_link(link: &str) -> Option<String> {
    link.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        params
            .split(';')
            .any(|p| p.trim() == "rel=\"next\"")
            .then(|| {
                url.trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_owned()
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_link_is_found_among_others() {
        let h = "<https://api.github.com/repositories/1/pulls/7/comments?page=2>; rel=\"next\", \
                 <https://api.github.com/repositories/1/pulls/7/comments?page=3>; rel=\"last\"";
        assert_eq!(
            next_link(h).as_deref(),
            Some("https://api.github.com/repositories/1/pulls/7/comments?page=2")
        );
        assert_eq!(next_link("<https://x/?page=1>; rel=\"prev\""), None);
    }

    #[test]
    fn validation_errors_read_message_or_fields() {
        let body = r#"{"message":"Validation Failed","errors":[{"resource":"PullRequest","code":"custom","message":"A pull request already exists for o:feat."},{"resource":"PullRequest","field":"head","code":"invalid"}]}"#;
        assert_eq!(
            validation_errors(body),
            [
                "A pull request already exists for o:feat.",
                "PullRequest head invalid"
            ]
        );
    }
}
