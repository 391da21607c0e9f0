//! Which repository, and at which REST and GraphQL endpoints.
//!
//! The repository comes from `[github] repo`, else `GITHUB_REPOSITORY`, else the remote's URL
//! (https, ssh and `git@host:` forms, Enterprise hosts). The REST base from `[github] api_url`,
//! else `GITHUB_API_URL`, else the host (`https://api.github.com`; Enterprise
//! `https://HOST/api/v3`); GraphQL from `[github] graphql_url`, else `GITHUB_GRAPHQL_URL`, else
//! derived (`…/graphql` on github.com, `https://HOST/api/graphql` on Enterprise).

use super::GithubError;

/// Where the pull requests live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The repository's owner.
    pub owner: String,
    /// The repository's name.
    pub repo: String,
    /// The REST base URL, without a trailing slash.
    pub api_url: String,
    /// The GraphQL endpoint.
    pub graphql_url: String,
}

impl Target {
    /// `owner/name`.
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.owner, self.repo)
    }
}

/// What the caller knows, by source; the first set value of each kind wins.
#[derive(Debug, Clone, Default)]
pub struct TargetInputs {
    /// `[github] repo`.
    pub config_repo: Option<String>,
    /// `GITHUB_REPOSITORY`.
    pub env_repo: Option<String>,
    /// The URL of the remote mmm pushes to.
    pub remote_url: Option<String>,
    /// `[github] api_url`.
    pub config_api_url: Option<String>,
    /// `GITHUB_API_URL`.
    pub env_api_url: Option<String>,
    /// `[github] graphql_url`.
    pub config_graphql_url: Option<String>,
    /// `GITHUB_GRAPHQL_URL`.
    pub env_graphql_url: Option<String>,
}

/// Resolves the target from what the caller knows.
pub fn resolve(inputs: &TargetInputs) -> Result<Target, GithubError> {
    let remote = inputs
        .remote_url
        .as_deref()
        .map(parse_remote)
        .transpose()
        .map(Option::flatten);
    let named = inputs
        .config_repo
        .as_deref()
        .or(inputs.env_repo.as_deref())
        .filter(|s| !s.is_empty());
    let (host, owner, repo) = match named {
        Some(n) => {
            let (o, r) = split_name(n).ok_or_else(|| GithubError::BadRepository(n.to_owned()))?;
            // The host of a named repository comes from the remote when it has one.
            let host = remote.ok().flatten().map(|(h, _, _)| h);
            (host.unwrap_or_else(|| "github.com".to_owned()), o, r)
        }
        None => remote?.ok_or(GithubError::NoRepository)?,
    };
    let api_url = inputs
        .config_api_url
        .clone()
        .or_else(|| inputs.env_api_url.clone())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| api_for(&host));
    let api_url = api_url.trim_end_matches('/').to_owned();
    let graphql_url = inputs
        .config_graphql_url
        .clone()
        .or_else(|| inputs.env_graphql_url.clone())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| graphql_for(&api_url));
    Ok(Target {
        owner,
        repo,
        api_url,
        graphql_url,
    })
}

fn api_for(host: &str) -> String {
    if host == "github.com" || host == "www.github.com" {
        "https://api.github.com".to_owned()
    } else {
        format!("https://{host}/api/v3")
    }
}

/// GraphQL beside a REST base: Enterprise's `/api/v3` becomes `/api/graphql`; otherwise
/// `/graphql` under it (github.com, and loopback fakes).
fn graphql_for(api_url: &str) -> String {
    match api_url.strip_suffix("/api/v3") {
        Some(root) => format!("{root}/api/graphql"),
        None => format!("{api_url}/graphql"),
    }
}

fn split_name(s: &str) -> Option<(String, String)> {
    let s = s.trim().trim_end_matches('/');
    let s = s.strip_suffix(".git").unwrap_or(s);
    let (o, r) = s.split_once('/')?;
    let ok = |p: &str| !p.is_empty() && !p.contains('/') && !p.contains(char::is_whitespace);
    (ok(o) && ok(r)).then(|| (o.to_owned(), r.to_owned()))
}

/// `(host, owner, repo)` of a remote URL: `https://host/o/r(.git)`, `ssh://git@host[:port]/o/r`,
/// `git@host:o/r.git`. A local path names no repository (`Ok(None)`).
pub fn parse_remote(url: &str) -> Result<Option<(String, String, String)>, GithubError> {
    let bad = || GithubError::BadRepository(without_userinfo(url));
    let url = url.trim();
    let (host, path) = if let Some((scheme, rest)) = url.split_once("://") {
        if scheme == "file" {
            return Ok(None);
        }
        let (authority, path) = rest.split_once('/').ok_or_else(bad)?;
        let host = authority.rsplit('@').next().unwrap_or(authority);
        let host = host.split(':').next().unwrap_or(host);
        (host.to_owned(), path)
    } else if let Some((left, path)) = url.split_once(':').filter(|(l, _)| !l.contains('/')) {
        let host = left.rsplit('@').next().unwrap_or(left);
        (host.to_owned(), path)
    } else {
        return Ok(None);
    };
    let (owner, repo) = split_name(path).ok_or_else(bad)?;
    Ok(Some((host.to_ascii_lowercase(), owner, repo)))
}

/// A URL without its `user:password@` part, to name it in an error (a token may be there).
fn without_userinfo(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
            let host = authority.rsplit('@').next().unwrap_or(authority);
            format!("{scheme}://{host}/{path}")
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_remote(url: &str) -> Target {
        resolve(&TargetInputs {
            remote_url: Some(url.into()),
            ..TargetInputs::default()
        })
        .expect("resolves")
    }

    #[test]
    fn remote_url_forms() {
        for url in [
            "https://github.com/octo/widgets.git",
            "https://x-access-token:abc@github.com/octo/widgets",
            "ssh://git@github.com:22/octo/widgets.git",
            "git@github.com:octo/widgets.git",
        ] {
            let t = from_remote(url);
            assert_eq!(t.full_name(), "octo/widgets", "{url}");
            assert_eq!(t.api_url, "https://api.github.com", "{url}");
            assert_eq!(t.graphql_url, "https://api.github.com/graphql", "{url}");
        }
    }

    #[test]
    fn enterprise_hosts_derive_v3_and_api_graphql() {
        let t = from_remote("git@ghe.example.com:team/tool.git");
        assert_eq!(t.full_name(), "team/tool");
        assert_eq!(t.api_url, "https://ghe.example.com/api/v3");
        assert_eq!(t.graphql_url, "https://ghe.example.com/api/graphql");
    }

    #[test]
    fn config_wins_over_environment_which_wins_over_the_remote() {
        let mut i = TargetInputs {
            config_repo: Some("a/one".into()),
            env_repo: Some("b/two".into()),
            remote_url: Some("https://github.com/c/three".into()),
            env_api_url: Some("https://env.example/api/v3/".into()),
            ..TargetInputs::default()
        };
        let t = resolve(&i).expect("resolves");
        assert_eq!(t.full_name(), "a/one");
        assert_eq!(t.api_url, "https://env.example/api/v3");
        assert_eq!(t.graphql_url, "https://env.example/api/graphql");
        i.config_repo = None;
        i.config_api_url = Some("http://127.0.0.1:9".into());
        i.env_graphql_url = Some("http://127.0.0.1:9/gql".into());
        let t = resolve(&i).expect("resolves");
        assert_eq!(t.full_name(), "b/two");
        assert_eq!(t.api_url, "http://127.0.0.1:9");
        assert_eq!(t.graphql_url, "http://127.0.0.1:9/gql");
    }

    #[test]
    fn no_repository_and_bad_names_are_errors() {
        let none = resolve(&TargetInputs {
            remote_url: Some("/srv/git/x.git".into()),
            ..TargetInputs::default()
        });
        assert!(matches!(none, Err(GithubError::NoRepository)));
        let bad = resolve(&TargetInputs {
            config_repo: Some("just-a-name".into()),
            ..TargetInputs::default()
        });
        assert!(matches!(bad, Err(GithubError::BadRepository(_))));
        let leaky = parse_remote("https://x-access-token:ghs_secret@github.com/only-owner");
        let Err(e) = leaky else {
            panic!("a URL without owner/name is an error")
        };
        assert!(!e.to_string().contains("ghs_secret"), "{e}");
    }
}
