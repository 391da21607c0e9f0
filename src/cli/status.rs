//! `git mmm status`: every spec with its last iteration, and whether the spec changed since.

use std::collections::BTreeMap;
use std::io::Write;

use mmm::spec::{SpecError, SpecErrorKind};
use serde::Serialize;

use super::common::{open_store, short_time};
use super::{CliResult, Ctx, out};

/// Arguments of `git mmm status`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// One JSON object: `{"specs": [{"spec", "path", "iterations", "status", "run", "tip",
    /// "spec_revision", "current_revision", "changed", "updated", "errors", "behind", "running"}]}` sorted
    /// by spec; `behind` counts the commits of HEAD the spec's base lacks;
    /// `errors` lists a broken spec's problems (it is left out of runs); `lease` is the spec's
    /// lease on the remote as of the last fetch (`{"holder", "host", "pid", "run", "taken",
    /// "expires", "expired"}`, null: none); `running` is the pid of a live run of the spec on
    /// this machine.
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
    /// The spec's problems (empty when it is sound): a broken spec is left out of runs.
    errors: Vec<String>,
    /// How many commits HEAD has that the spec's base has not (None: no branch).
    behind: Option<usize>,
    /// The spec's lease on the remote, as of the last fetch.
    lease: Option<mmm::store::Lease>,
    /// The pid of the live `git mmm run` running the spec on this machine, if any.
    running: Option<u32>,
}

impl Row {
    fn new(spec: String) -> Row {
        Row {
            spec,
            path: None,
            iterations: 0,
            status: None,
            run: None,
            tip: None,
            spec_revision: None,
            current_revision: None,
            changed: false,
            updated: None,
            errors: Vec::new(),
            behind: None,
            lease: None,
            running: None,
        }
    }
}

/// The spec a problem belongs to: the one it names, or its file's stem.
fn broken_id(e: &SpecError) -> Option<String> {
    match &e.kind {
        SpecErrorKind::MissingDependency { spec, .. }
        | SpecErrorKind::BrokenDependency { spec, .. } => Some(spec.clone()),
        SpecErrorKind::MissingDir | SpecErrorKind::NotADir => None,
        _ => e
            .file
            .extension()
            .is_some_and(|x| x == "md")
            .then(|| e.file.file_stem().map(|s| s.to_string_lossy().into_owned()))
            .flatten(),
    }
}

/// Runs `git mmm status`.
pub fn run(ctx: &Ctx, args: &Args) -> CliResult {
    let store = open_store(ctx)?;
    let found = super::specs::discover_lenient(ctx)?;
    let (specs, problems) = match &found {
        Some(f) => (f.specs.iter().collect::<Vec<_>>(), f.errors.as_slice()),
        None => (Vec::new(), &[][..]),
    };
    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    for spec in specs {
        let mut row = Row::new(spec.id.to_string());
        row.path = Some(spec.path.display().to_string());
        row.current_revision = Some(spec.revision.clone());
        rows.insert(spec.id.to_string(), row);
    }
    for e in problems {
        if let Some(id) = broken_id(e) {
            let row = rows.entry(id.clone()).or_insert_with(|| Row::new(id));
            row.path = Some(e.file.display().to_string());
            row.errors.push(e.to_string());
        }
    }
    let head = store
        .repo()
        .head()
        .ok()
        .and_then(|h| h.peel_to_commit().ok())
        .map(|c| c.id());
    let mut since: std::collections::HashMap<git2::Oid, usize> = std::collections::HashMap::new();
    for state in store.status_all()? {
        let spec = state.spec.to_string();
        let row = rows.entry(spec.clone()).or_insert_with(|| Row::new(spec));
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
        if let (Some(head), Some(n)) = (head, state.iteration) {
            // Specs mostly share a base: count the commits since each base once.
            // The tip's `Mmm-Base`; a tip written before it: a walk down its first parents.
            let base = match state.base {
                Some(base) => Some(base),
                None => store.base_below(state.tip, n)?,
            };
            if let Some(base) = base {
                let behind = match since.get(&base) {
                    Some(&k) => k,
                    None => *since
                        .entry(base)
                        .or_insert(store.commits_since(base, head)?),
                };
                row.behind = Some(behind);
            }
        }
    }
    for (spec, lease) in super::sync::known_leases(ctx, &store) {
        let id = spec.to_string();
        rows.entry(id.clone()).or_insert_with(|| Row::new(id)).lease = Some(lease);
    }
    for run in store.live_runs() {
        if let mmm::store::RunFile::Live(h) = run {
            let row = rows
                .entry(h.spec.clone())
                .or_insert_with(|| Row::new(h.spec.clone()));
            row.running = Some(h.pid);
        }
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
            let broken;
            let note = match (&row.path, row.changed, row.iterations) {
                _ if !row.errors.is_empty() => {
                    broken = format!(
                        "has {} problem(s), left out of runs: {}",
                        row.errors.len(),
                        row.errors[0]
                    );
                    broken.as_str()
                }
                (None, _, _) => "spec file is gone",
                (Some(_), true, _) => "spec changed since the last iteration",
                (Some(_), false, 0) => "not run yet",
                _ => "",
            };
            let behind;
            let note = match row.behind {
                Some(n) if n > 0 && row.errors.is_empty() => {
                    behind = format!(
                        "{note}{}base is {n} commit(s) behind HEAD (`git mmm run {} --fresh` starts again from it)",
                        if note.is_empty() { "" } else { "; " },
                        row.spec
                    );
                    behind.as_str()
                }
                _ => note,
            };
            let leased;
            let note = match &row.lease {
                Some(l) => {
                    let state = if l.expired { "expired: " } else { "" };
                    leased = format!(
                        "{note}{}{state}{l}",
                        if note.is_empty() { "" } else { "; " }
                    );
                    leased.as_str()
                }
                None => note,
            };
            let running;
            let note = match row.running {
                Some(pid) => {
                    running = format!(
                        "running (pid {pid}){}{note}",
                        if note.is_empty() { "" } else { "; " }
                    );
                    running.as_str()
                }
                None => note,
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
    // Every problem, with its hint, where the table has room for the first of each spec.
    super::specs::warn(problems);
    Ok(())
}
