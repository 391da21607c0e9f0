//! `git mmm log SPEC`: the iterations of one spec, newest first.

use std::io::Write;

use serde_json::json;

use super::common::{open_store, short_oid, short_time, spec_id};
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
    for i in &history {
        writeln!(
            out,
            "{:>4}  {:<12}  {}  {}  {}",
            i.n,
            i.status
                .as_ref()
                .map(|s| s.to_string())
                .unwrap_or_else(|| "?".into()),
            short_oid(i.commit),
            short_time(i.time),
            i.summary
        )?;
    }
    Ok(())
}
