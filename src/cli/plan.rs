//! `git mmm plan`: the specs ready to run now, in order, for a CI fan-out (a job matrix) or a
//! push hook.

use std::io::Write;

use anyhow::anyhow;
use git2::Oid;
use serde::Serialize;

use super::common::open_store;
use super::{CliError, CliResult, Ctx, out};

/// Arguments of `git mmm plan`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Ready: not complete at the spec's current revision, and every spec it depends on \
complete at its current revision, and not leased by a live runner elsewhere (as of the last \
fetch of the remote, `git mmm sync`). Output: one spec id per line, in dependency order.\n--json \
(stable): {\"specs\": [{\"spec\", \"path\", \"revision\", \"depends_on\": [id…], \"iterations\", \
\"status\"}], \"leased\": [{\"spec\", \"holder\", \"host\", \"pid\", \"run\", \"taken\", \
\"expires\", \"expired\"}]}, where path is relative to the repository root, iterations is the last \
iteration's number (0: never run) and status its status (null: never run); leased lists the \
ready specs left out because a live lease holds them. Fields are only ever added."
)]
pub struct Args {
    /// One JSON object (documented above, stable).
    #[arg(long)]
    pub json: bool,
    /// Keep only the specs whose file, or a file their context names, changed in A..B (an all-zero
    /// A, as a push of a new branch gives, counts every file of B as changed).
    #[arg(long, value_name = "A..B")]
    pub changed: Option<String>,
}

/// One ready spec.
#[derive(Debug, Serialize)]
struct Row {
    spec: String,
    path: String,
    revision: String,
    depends_on: Vec<String>,
    iterations: u32,
    status: Option<String>,
}

/// Runs `git mmm plan`.
pub fn run(ctx: &Ctx, args: &Args) -> CliResult {
    let (root, loaded) = super::config::load(ctx, Vec::new())?;
    let root = root.ok_or_else(|| {
        CliError::with_hint(
            anyhow!("not inside a git repository"),
            "run `git mmm plan` inside the repository that holds your specs",
        )
    })?;
    let store = open_store(ctx)?;
    let specs = super::specs::discover_strict(&root, &loaded.config)?;
    let states = store.status_all()?;
    let mut ready = mmm::engine::plan::ready(&specs, &states);
    if let Some(range) = &args.changed {
        let (from, to) = range_ends(&store, range)?;
        let changed = mmm::engine::plan::changed_paths(store.repo(), from, to)?;
        ready.retain(|s| mmm::engine::plan::touched(s, &root, &changed));
    }
    let leases = super::sync::known_leases(ctx, &store);
    let mut leased = Vec::new();
    ready.retain(|s| match leases.get(&s.id) {
        Some(l) if !l.expired => {
            leased.push(l.clone());
            false
        }
        _ => true,
    });
    let rows: Vec<Row> = ready
        .iter()
        .map(|s| {
            let state = states.iter().find(|st| st.spec == s.id);
            Row {
                spec: s.id.to_string(),
                path: s
                    .path
                    .strip_prefix(&root)
                    .unwrap_or(&s.path)
                    .to_string_lossy()
                    .into_owned(),
                revision: s.revision.clone(),
                depends_on: s.depends_on.iter().map(|d| d.to_string()).collect(),
                iterations: state.and_then(|st| st.iteration).unwrap_or(0),
                status: state.and_then(|st| st.status.as_ref().map(|x| x.to_string())),
            }
        })
        .collect();
    let mut w = out();
    if args.json {
        writeln!(
            w,
            "{}",
            serde_json::json!({ "specs": rows, "leased": leased })
        )?;
    } else {
        for r in &rows {
            writeln!(w, "{}", r.spec)?;
        }
        for l in &leased {
            eprintln!("mmm: {} left out: {l}", l.spec);
        }
    }
    Ok(())
}

/// The two ends of `A..B`; `None` for an all-zero A.
fn range_ends(store: &mmm::store::Store, range: &str) -> Result<(Option<Oid>, Oid), CliError> {
    let bad = || {
        CliError::usage(anyhow!(
            "--changed takes a range A..B of two commits, not `{range}`"
        ))
    };
    let (a, b) = range.split_once("..").ok_or_else(bad)?;
    if a.is_empty() || b.is_empty() || b.starts_with('.') {
        return Err(bad());
    }
    let resolve = |r: &str| {
        store
            .repo()
            .revparse_single(r)
            .map(|o| o.id())
            .map_err(|e| {
                CliError::with_hint(
                    anyhow!("cannot resolve `{r}` of --changed: {}", e.message()),
                    "fetch the commits first (in CI: a checkout with fetch-depth: 0)",
                )
            })
    };
    let from = if a.chars().all(|c| c == '0') {
        None
    } else {
        Some(resolve(a)?)
    };
    Ok((from, resolve(b)?))
}
