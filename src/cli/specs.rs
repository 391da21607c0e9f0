//! `git mmm specs`: lists the specs in dependency order, or every problem found in them.

use std::io::Write;
use std::path::Path;

use anyhow::anyhow;
use mmm::config::Config;
use mmm::spec::{Spec, SpecErrors, SpecSet};

use super::{CliError, CliResult, Ctx, out};

/// Arguments of `git mmm specs`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A JSON array of specs in dependency order: `[{"id", "path", "revision", "priority",
    /// "depends_on", "max_iterations", "model", "agent", "labels", "timeout", "title",
    /// "objective", "criteria": [{"text", "verify", "line"}], "context", "notes"}]`.
    #[arg(long)]
    pub json: bool,
}

/// Runs `git mmm specs`.
pub fn run(ctx: &Ctx, args: &Args) -> CliResult {
    let (root, loaded) = super::config::load(ctx, Vec::new())?;
    let root = root.ok_or_else(|| {
        CliError::with_hint(
            anyhow!("not inside a git repository"),
            "run `git mmm specs` inside the repository that holds your specs",
        )
    })?;
    let set = discover_strict(&root, &loaded.config)?;
    let ordered: Vec<&Spec> = set.order().iter().filter_map(|id| set.get(id)).collect();
    let mut out = out();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &ordered)?;
        writeln!(out)?;
        return Ok(());
    }
    if ordered.is_empty() {
        writeln!(
            out,
            "no specs in {}/: write one as {}/<name>.md (see the README for the format)",
            loaded.config.specs.dir, loaded.config.specs.dir
        )?;
        return Ok(());
    }
    let width = ordered
        .iter()
        .map(|s| s.id.as_str().len())
        .max()
        .unwrap_or(2)
        .max(2);
    writeln!(
        out,
        "{:<width$}  {:<8}  {:>8}  {:<20}  TITLE",
        "ID", "PRIORITY", "CRITERIA", "DEPENDS ON"
    )?;
    for s in ordered {
        let verifiable = s.criteria.iter().filter(|c| c.verify.is_some()).count();
        let deps = s
            .depends_on
            .iter()
            .map(|d| d.as_str())
            .collect::<Vec<_>>()
            .join(",");
        writeln!(
            out,
            "{:<width$}  {:<8}  {:>8}  {:<20}  {}",
            s.id.as_str(),
            s.priority.as_str(),
            format!("{}/{}", verifiable, s.criteria.len()),
            if deps.is_empty() {
                "-".to_owned()
            } else {
                deps
            },
            s.title
        )?;
    }
    Ok(())
}

/// Every spec, or an error listing every problem (each with file, line and a hint).
pub fn discover_strict(root: &Path, config: &Config) -> Result<SpecSet, CliError> {
    mmm::spec::discover(root, Path::new(&config.specs.dir)).map_err(spec_errors)
}

/// The specs that parse, with the problems of the others as messages (for `status`, which
/// still shows what it can).
pub fn discover_lenient(ctx: &Ctx) -> Result<(Vec<Spec>, Vec<String>), CliError> {
    let (root, loaded) = super::config::load(ctx, Vec::new())?;
    let Some(root) = root else {
        return Ok((Vec::new(), Vec::new()));
    };
    match mmm::spec::discover(&root, Path::new(&loaded.config.specs.dir)) {
        Ok(set) => Ok((set.iter().cloned().collect(), Vec::new())),
        Err(errors) => Ok((
            Vec::new(),
            errors
                .errors()
                .iter()
                .map(|e| format!("{e} (spec changes are not shown until this is fixed)"))
                .collect(),
        )),
    }
}

fn spec_errors(errors: SpecErrors) -> CliError {
    let n = errors.errors().len();
    let hints = errors.errors().iter().filter_map(|e| e.hint()).collect();
    CliError {
        error: anyhow!(
            "{n} problem(s) in the specs:\n{}",
            errors
                .errors()
                .iter()
                .map(|e| format!("  {e}"))
                .collect::<Vec<_>>()
                .join("\n")
        ),
        hints,
        code: super::EXIT_FAILURE,
    }
}
