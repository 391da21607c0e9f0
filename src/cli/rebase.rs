//! `git mmm rebase SPEC [--onto REV]`: replays a spec's iterations onto the current HEAD (or
//! REV), carrying their notes; stops, changing nothing, on a conflict.

use std::io::Write;

use anyhow::anyhow;
use mmm::store::Rebase;

use super::common::{open_store, require_spec, short_oid, spec_id};
use super::{CliError, CliResult, Ctx, out};

/// Arguments of `git mmm rebase`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The spec.
    pub spec: String,
    /// The new base (default: HEAD); the old tip stays reachable from
    /// `refs/mmm/SPEC/archive`.
    #[arg(long, value_name = "REV")]
    pub onto: Option<String>,
}

/// Runs `git mmm rebase`.
pub fn run(ctx: &Ctx, args: &Args) -> CliResult {
    let spec = spec_id(&args.spec)?;
    let store = open_store(ctx)?;
    require_spec(ctx, &store, &spec)?;
    let rev = args.onto.as_deref().unwrap_or("HEAD");
    let onto = store
        .repo()
        .revparse_single(rev)
        .and_then(|o| o.peel_to_commit())
        .map_err(|_| {
            let mut e = CliError::usage(anyhow!("`{rev}` does not name a commit"));
            e.hints
                .push("name a branch, a tag or a commit id, e.g. `--onto main`".into());
            e
        })?
        .id();
    let mut out = out();
    match store.rebase(&spec, onto)? {
        Rebase::Done {
            from,
            to,
            iterations,
        } => writeln!(
            out,
            "rebased: {iterations} iteration(s) of mmm/{spec} now start from {} ({}); the old tip {} is kept in refs/mmm/{spec}/archive",
            short_oid(onto),
            short_oid(to),
            short_oid(from),
        )?,
        Rebase::UpToDate => writeln!(
            out,
            "mmm/{spec} already starts from {}: nothing to do",
            short_oid(onto)
        )?,
        Rebase::Conflict { iteration, paths } => {
            return Err(CliError::with_hint(
                anyhow!(
                    "iteration {iteration} of `{spec}` does not apply on {}: {} conflict(s); nothing was changed",
                    short_oid(onto),
                    paths.join(", ")
                ),
                format!(
                    "`git mmm run {spec} --fresh` starts the spec again from HEAD (the old attempt is archived)"
                ),
            ));
        }
    }
    Ok(())
}
