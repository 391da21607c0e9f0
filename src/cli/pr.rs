//! `git mmm pr SPEC`: pushes the spec's branch and opens or updates its pull request on
//! GitHub, from `mmm/<spec>` into the branch the run started from, with one status comment.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::anyhow;
use mmm::config::Config;
use mmm::github::pull::{self, Labels, Outcome, Plan, Standing};
use mmm::github::{CallCounts, ClientOptions, GitHub, GithubError, TargetInputs, target};
use mmm::review::{CommentOptions, SpecReport, render_status};
use mmm::spec::Spec;
use mmm::store::{Iteration, IterationStatus, Store};

use super::common::{open_store, short_oid, spec_id};
use super::{CliError, CliResult, Ctx, out};

/// Arguments of `git mmm pr`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Needs GITHUB_TOKEN or GH_TOKEN (pull-requests: write, issues: write, contents: \
write). The repository is `[github] repo`, else GITHUB_REPOSITORY, else the remote's URL.\n\
--json: one object {\"number\", \"url\", \"opened\", \"updated\", \"marked_ready\", \"draft\", \
\"labels_added\", \"reviewers_requested\", \"comment\", \"comment_id\", \"calls\"}."
)]
pub struct Args {
    /// The spec whose pull request to open or update.
    pub spec: String,
    /// The branch to merge into (default: the current branch).
    #[arg(long, value_name = "BRANCH")]
    pub base: Option<String>,
    /// The remote to push to (default: `[sync] remote`, else the upstream, else origin).
    #[arg(long, value_name = "NAME")]
    pub remote: Option<String>,
    /// Print one JSON object instead of lines.
    #[arg(long)]
    pub json: bool,
}

/// Runs `git mmm pr`.
pub fn run(ctx: &Ctx, args: &Args) -> CliResult {
    let (root, loaded) = super::config::load(ctx, Vec::new())?;
    let root = root.ok_or_else(|| {
        CliError::with_hint(
            anyhow!("not in a git repository"),
            "run it inside the repository",
        )
    })?;
    let config = loaded.config;
    let id = spec_id(&args.spec)?;
    let found = mmm::spec::discover(&root, Path::new(&config.specs.dir));
    let spec = found.specs.get(&id).cloned().ok_or_else(|| {
        CliError::with_hint(anyhow!("no spec `{id}`"), "`git mmm specs` lists the specs")
    })?;
    let store = open_store(ctx)?;
    let history = store.history(&id)?;
    let last = history.last().cloned().ok_or_else(|| {
        CliError::with_hint(
            anyhow!("spec `{id}` has no iteration yet"),
            format!("run `git mmm run {id}` first"),
        )
    })?;
    let token = token(ctx)?;
    let base = base_branch(&store, args.base.as_deref())?;
    let mut opts = super::sync::options(&store, &config, args.remote.as_deref());
    opts.specs.push(id.clone());
    super::sync::sync(&store, &opts)?;
    let client = client(ctx, &config, &store, &opts.remote, token)?;
    let mut plan = plan(&config, &spec, &last, base);
    plan.status = report_status(&store, &config, &spec, &client).unwrap_or(plan.status);
    let outcome = pull::publish(&client, &plan).map_err(github_error)?;
    render(&outcome, &client.calls(), args.json)
}

/// The token, from GITHUB_TOKEN or GH_TOKEN only.
pub(super) fn token(ctx: &Ctx) -> Result<String, CliError> {
    ["GITHUB_TOKEN", "GH_TOKEN"]
        .iter()
        .find_map(|k| ctx.var(k).filter(|v| !v.is_empty()))
        .map(str::to_owned)
        .ok_or_else(|| {
            CliError::with_hint(
                anyhow!("no GitHub token: GITHUB_TOKEN and GH_TOKEN are both unset"),
                "export GITHUB_TOKEN (or GH_TOKEN) with pull-requests: write, issues: write and \
                 contents: write; mmm never reads a token from its configuration",
            )
        })
}

/// `--base`, else the current branch.
pub(super) fn base_branch(store: &Store, flag: Option<&str>) -> Result<String, CliError> {
    if let Some(b) = flag {
        return Ok(b.to_owned());
    }
    let head = store.repo().head().ok();
    head.filter(|h| h.is_branch())
        .and_then(|h| h.shorthand().ok().map(str::to_owned))
        .filter(|b| !b.starts_with("mmm/"))
        .ok_or_else(|| {
            CliError::with_hint(
                anyhow!("no base branch: HEAD is not on a branch"),
                "name the branch to merge into with --base BRANCH",
            )
        })
}

/// The GitHub client: repository and endpoints from config, environment and the remote.
pub(super) fn client(
    ctx: &Ctx,
    config: &Config,
    store: &Store,
    remote: &str,
    token: String,
) -> Result<GitHub, CliError> {
    let var = |k: &str| ctx.var(k).map(str::to_owned);
    let remote_url = store
        .repo()
        .find_remote(remote)
        .ok()
        .and_then(|r| r.url().ok().map(str::to_owned));
    let inputs = TargetInputs {
        config_repo: config.github.repo.clone(),
        env_repo: var("GITHUB_REPOSITORY"),
        remote_url,
        config_api_url: config.github.api_url.clone(),
        env_api_url: var("GITHUB_API_URL"),
        config_graphql_url: config.github.graphql_url.clone(),
        env_graphql_url: var("GITHUB_GRAPHQL_URL"),
    };
    let target = target::resolve(&inputs).map_err(github_error)?;
    let mut opts = ClientOptions::new(target, token);
    opts.secondary_wait = config.github.secondary_wait;
    opts.timeout = Duration::from_secs(30);
    opts.cache_file = Some(
        store
            .repo()
            .commondir()
            .join("mmm")
            .join("github-etags.json"),
    );
    GitHub::new(opts).map_err(github_error)
}

/// What the pull request should say, from the spec and its last iteration.
pub fn plan(config: &Config, spec: &Spec, last: &Iteration, base: String) -> Plan {
    let standing = match &last.status {
        Some(IterationStatus::Complete) => Standing::Complete,
        Some(IterationStatus::NeedsReview) => Standing::NeedsReview,
        Some(
            IterationStatus::Stuck
            | IterationStatus::BudgetExceeded
            | IterationStatus::Error
            | IterationStatus::Interrupted,
        ) => Standing::Stopped,
        _ => Standing::Running,
    };
    let g = &config.github;
    Plan {
        spec: spec.id.to_string(),
        head: format!("mmm/{}", spec.id),
        base,
        title: spec.title.clone(),
        body: body(spec),
        standing,
        draft: g.draft,
        labels: Labels {
            always: g.labels.clone(),
            needs_review: g.needs_review_label.clone(),
            stopped: g.stopped_label.clone(),
        },
        reviewers: g.reviewers.clone(),
        team_reviewers: g.team_reviewers.clone(),
        status: status(spec, last),
    }
}

/// The body: the objective and the acceptance criteria, and who maintains it.
fn body(spec: &Spec) -> String {
    let mut b = String::new();
    b.push_str(spec.objective.trim());
    b.push_str("\n\n## Acceptance criteria\n\n");
    for c in &spec.criteria {
        b.push_str(&format!("- {}\n", c.text));
    }
    b.push_str(&format!(
        "\n---\n_mmm maintains this pull request from `{}` (spec `{}`) and rewrites this \
         description as the spec changes; edit the spec, not this text._\n",
        spec.path.display(),
        spec.id
    ));
    b
}

/// The status comment from `review`'s renderer, over the spec's whole history (the marker
/// line is left out: `pull::publish` puts it first). `None` when the history cannot be read.
pub(super) fn report_status(
    store: &Store,
    config: &Config,
    spec: &Spec,
    client: &GitHub,
) -> Option<String> {
    let b = &config.budget;
    let report =
        SpecReport::from_store(store, spec, Some(b.per_spec_usd), b.per_spec_tokens).ok()?;
    let opts = CommentOptions {
        commit_url: Some(client.commit_url()),
        ..CommentOptions::default()
    };
    let text = render_status(&report, &opts);
    let m = mmm::review::marker(spec.id.as_str());
    Some(
        text.strip_prefix(&m)
            .map_or(text.clone(), |t| t.trim_start_matches('\n').to_owned()),
    )
}

/// A simple status comment (when the history cannot be rendered).
fn status(spec: &Spec, last: &Iteration) -> String {
    let status = last.status.as_ref().map_or("unknown", |s| s.as_str());
    format!(
        "### mmm status: `{}`\n\nIteration {}: **{status}** (commit `{}`).\n\n\
         _mmm rewrites this comment after every iteration._\n",
        spec.id,
        last.n,
        short_oid(last.commit)
    )
}

/// A GitHub failure, with what to do: local history is complete either way.
pub(super) fn github_error(e: GithubError) -> CliError {
    let hint = match &e {
        GithubError::NoRepository | GithubError::BadRepository(_) => {
            "set `[github] repo = \"owner/name\"` in .mmm/config.toml"
        }
        _ => "the local history is complete; `git mmm pr SPEC` again catches the pull request up",
    };
    CliError::with_hint(e, hint)
}

fn render(o: &Outcome, calls: &CallCounts, json: bool) -> CliResult {
    let mut w = out();
    if json {
        let mut v = serde_json::to_value(o)?;
        v["calls"] = serde_json::to_value(calls)?;
        writeln!(w, "{v}")?;
        return Ok(());
    }
    let what = if o.opened { "opened" } else { "found" };
    let kind = if o.draft { "draft" } else { "ready for review" };
    writeln!(w, "pull request #{} {what} ({kind}): {}", o.number, o.url)?;
    if o.updated {
        writeln!(w, "title and description updated")?;
    }
    if o.marked_ready {
        writeln!(w, "marked ready for review")?;
    }
    if !o.labels_added.is_empty() {
        writeln!(w, "labels added: {}", o.labels_added.join(", "))?;
    }
    if !o.reviewers_requested.is_empty() {
        writeln!(w, "reviews requested: {}", o.reviewers_requested.join(", "))?;
    }
    let comment = match o.comment {
        pull::CommentAction::Created => "created",
        pull::CommentAction::Updated => "updated",
        pull::CommentAction::Unchanged => "unchanged",
    };
    writeln!(w, "status comment {comment}")?;
    writeln!(
        w,
        "GitHub calls: {} ({} answered 304, free)",
        calls.counted(),
        calls.not_modified()
    )?;
    Ok(())
}
