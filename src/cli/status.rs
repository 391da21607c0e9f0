//! `git mmm status`: every spec with its last iteration, and whether the spec changed since.

use std::collections::BTreeMap;
use std::io::Write;

use serde::Serialize;

use super::common::{open_store, short_time};
use super::{CliResult, Ctx, out};

/// Arguments of `git mmm status`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// One JSON object: `{"specs": [{"spec", "path", "iterations", "status", "run", "tip",
    /// "spec_revision", "current_revision", "changed", "updated"}]}` sorted by spec.
    #[arg(long)]
    pub json: bool,
}

/// One row of the status.
#[derive(Debug, Serialize)]
struct Row {
    spec: String,
    /// The spec file, if it still exists.
    path: Option<String>,
    /// The last iteration number (0: never run).
    iterations: u32,
    status: Option<String>,
    run: Option<String>,
    tip: Option<String>,
    /// The spec revision the last iteration ran against.
    spec_revision: Option<String>,
    /// The spec's revision now (None: the file is gone).
    current_revision: Option<String>,
    /// True when the spec changed since the last iteration.
    changed: bool,
    updated: Option<String>,
}

/// Runs `git mmm status`.
pub fn run(ctx: &Ctx, args: &Args) -> CliResult {
    let store = open_store(ctx)?;
    let (specs, problems) = super::specs::discover_lenient(ctx)?;
    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    for spec in &specs {
        rows.insert(
            spec.id.to_string(),
            Row {
                spec: spec.id.to_string(),
                path: Some(spec.path.display().to_string()),
                iterations: 0,
                status: None,
                run: None,
                tip: None,
                spec_revision: None,
                current_revision: Some(spec.revision.clone()),
                changed: false,
                updated: None,
            },
        );
    }
    for state in store.status_all()? {
        let row = rows.entry(state.spec.to_string()).or_insert_with(|| Row {
            spec: state.spec.to_string(),
            path: None,
            iterations: 0,
            status: None,
            run: None,
            tip: None,
            spec_revision: None,
            current_revision: None,
            changed: false,
            updated: None,
        });
        row.iterations = state.iteration.unwrap_or(0);
        row.status = state.status.as_ref().map(|s| s.to_string());
        row.run = state.run.clone();
        row.tip = Some(state.tip.to_string());
        row.spec_revision = state.spec_revision.clone();
        row.changed = match (&row.current_revision, &state.spec_revision) {
            (Some(now), Some(then)) => now != then,
            _ => false,
        };
        row.updated = Some(mmm::clock::rfc3339(state.time));
    }
    let mut out = out();
    if args.json {
        let rows: Vec<&Row> = rows.values().collect();
        serde_json::to_writer_pretty(&mut out, &serde_json::json!({ "specs": rows }))?;
        writeln!(out)?;
    } else if rows.is_empty() {
        writeln!(
            out,
            "no specs and no mmm branches yet: write specs/<name>.md, then `git mmm run`"
        )?;
    } else {
        let width = rows.keys().map(String::len).max().unwrap_or(4).max(4);
        writeln!(
            out,
            "{:<width$}  {:>4}  {:<14}  {:<16}  NOTE",
            "SPEC", "ITER", "STATUS", "UPDATED"
        )?;
        for row in rows.values() {
            let note = match (&row.path, row.changed, row.iterations) {
                (None, _, _) => "spec file is gone",
                (Some(_), true, _) => "spec changed since the last iteration",
                (Some(_), false, 0) => "not run yet",
                _ => "",
            };
            let updated = row
                .updated
                .as_deref()
                .and_then(|u| humantime::parse_rfc3339(u).ok())
                .map(short_time)
                .unwrap_or_else(|| "-".into());
            writeln!(
                out,
                "{:<width$}  {:>4}  {:<14}  {:<16}  {note}",
                row.spec,
                row.iterations,
                row.status.as_deref().unwrap_or("-"),
                updated,
            )?;
        }
    }
    drop(out);
    for p in problems {
        eprintln!("warning: {p}");
    }
    Ok(())
}
