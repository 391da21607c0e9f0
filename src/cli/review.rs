//! `git mmm review SPEC`: what the spec's pull request would feed the next iteration (the
//! writers' items not fed yet, as the prompt block carries them), what was ignored and why,
//! and the writers' verdict on the branch's head.

use std::io::Write;

use anyhow::anyhow;
use mmm::github::source::HostSource;
use mmm::review::{FeedItem, Verdict, render_block};

use super::common::{open_store, spec_id};
use super::{CliError, CliResult, Ctx, out};

/// Arguments of `git mmm review`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Needs GITHUB_TOKEN or GH_TOKEN (pull-requests: read). Nothing is recorded: the \
next `git mmm run --pr` feeds these items and records their ids.\n--json: one object \
{\"pull\": bool, \"verdict\", \"items\": [...], \"fed\": [ids], \"ignored\": {\"own\", \"bots\", \
\"outsiders\", \"already_fed\", \"empty\"}}."
)]
pub struct Args {
    /// The spec whose pull request to read.
    pub spec: String,
    /// The remote whose repository holds the pull request (default: `[sync] remote`, else the
    /// upstream, else origin).
    #[arg(long, value_name = "NAME")]
    pub remote: Option<String>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs `git mmm review`.
pub fn run(ctx: &Ctx, args: &Args) -> CliResult {
    let (_, loaded) = super::config::load(ctx, Vec::new())?;
    let config = loaded.config;
    let id = spec_id(&args.spec)?;
    let store = open_store(ctx)?;
    let head = store
        .history(&id)?
        .last()
        .map(|i| i.commit)
        .ok_or_else(|| {
            CliError::with_hint(
                anyhow!("spec `{id}` has no iteration yet: it has no pull request to read"),
                format!("run `git mmm run --pr {id}` first"),
            )
        })?;
    let opts = super::sync::options(&store, &config, args.remote.as_deref());
    let token = super::pr::token(ctx)?;
    let client = super::pr::client(ctx, &config, &store, &opts.remote, token)?;
    let source = HostSource::new(&client);
    let fed = mmm::engine::review::fed_ids(&store, &id)?;
    let Some(all) = source.conversation(&id).map_err(super::pr::github_error)? else {
        return none(&id, args.json);
    };
    let poll = source
        .judge(&all, &head.to_string(), &fed)
        .map_err(super::pr::github_error)?;
    let (items, ignored) = (&poll.selection.items, poll.selection.ignored);
    let mut w = out();
    if args.json {
        let v = serde_json::json!({
            "pull": true,
            "verdict": poll.verdict,
            "items": items,
            "fed": items.iter().map(|i| i.fed_id().to_string()).collect::<Vec<_>>(),
            "ignored": ignored,
        });
        writeln!(w, "{v}")?;
        return Ok(());
    }
    let verdict = match poll.verdict {
        Verdict::Approved => "approved",
        Verdict::ChangesRequested => "changes requested",
        Verdict::None => "no verdict yet",
    };
    writeln!(w, "spec `{id}`: {verdict} on {}", &head.to_string()[..7])?;
    writeln!(
        w,
        "{} item(s) would be fed; ignored: {} already fed, {} from people without write \
         access, {} from bots, {} of mmm's own, {} empty",
        items.len(),
        ignored.already_fed,
        ignored.outsiders,
        ignored.bots,
        ignored.own,
        ignored.empty
    )?;
    if !items.is_empty() {
        let ids: Vec<String> = items
            .iter()
            .map(|i| FeedItem::fed_id(i).to_string())
            .collect();
        writeln!(w, "ids: {}\n\n{}", ids.join(", "), render_block(items))?;
    }
    Ok(())
}

fn none(id: &mmm::spec::SpecId, json: bool) -> CliResult {
    let mut w = out();
    if json {
        writeln!(w, "{}", serde_json::json!({"pull": false}))?;
    } else {
        writeln!(
            w,
            "spec `{id}` has no open pull request: nothing to feed (`git mmm pr {id}` opens it)"
        )?;
    }
    Ok(())
}
