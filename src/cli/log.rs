//! `git mmm log SPEC`: the iterations of one spec, newest first.

use std::io::Write;

use serde_json::json;

use super::common::{open_store, require_spec, short_oid, short_time, spec_id};
use super::{CliResult, Ctx, out};

/// Arguments of `git mmm log`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The spec.
    pub spec: String,
    /// One JSON object: `{"spec", "iterations": [{"iteration", "commit", "status", "run",
    /// "spec_revision", "summary", "time"}]}`, newest first.
    #[arg(long)]
    pub json: bool,
}

/// Runs `git mmm log`.
pub fn run(ctx: &Ctx, args: &Args) -> CliResult {
    let spec = spec_id(&args.spec)?;
    let store = open_store(ctx)?;
    require_spec(ctx, &store, &spec)?;
    // The store reads oldest first; like `git log`, show the newest first.
    let mut history = store.history(&spec)?;
    history.reverse();
    let mut out = out();
    if args.json {
        let items: Vec<_> = history
            .iter()
            .map(|i| {
                json!({
                    "iteration": i.n,
                    "commit": i.commit.to_string(),
                    "status": i.status.as_ref().map(|s| s.to_string()),
                    "run": i.run,
                    "spec_revision": i.spec_revision,
                    "summary": i.summary,
                    "time": mmm::clock::rfc3339(i.time),
                })
            })
            .collect();
        serde_json::to_writer_pretty(&mut out, &json!({"spec": spec, "iterations": items}))?;
        writeln!(out)?;
        return Ok(());
    }
    let statuses: Vec<String> = history
        .iter()
        .map(|i| {
            i.status
                .as_ref()
                .map(|s| s.to_string())
                .unwrap_or_else(|| "?".into())
        })
        .collect();
    // Columns as wide as their widest value, so that rows line up whatever the numbers.
    let n_width = history
        .iter()
        .map(|i| i.n.to_string().len())
        .max()
        .unwrap_or(1);
    let s_width = statuses.iter().map(String::len).max().unwrap_or(1);
    for (i, status) in history.iter().zip(&statuses) {
        writeln!(
            out,
            "{:>n_width$}  {status:<s_width$}  {}  {}  {}",
            i.n,
            short_oid(i.commit),
            short_time(i.time),
            i.summary
        )?;
    }
    Ok(())
}
