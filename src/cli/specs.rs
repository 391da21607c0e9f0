//! `git mmm specs`: lists the specs in dependency order, or every problem found in them.

use std::io::Write;
use std::path::Path;

use anyhow::anyhow;
use mmm::config::Config;
use mmm::spec::{Discovered, Spec, SpecError, SpecSet};

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
    mmm::spec::discover(root, Path::new(&config.specs.dir))
        .strict()
        .map_err(|e| spec_errors(e.errors()))
}

/// Every spec that is sound, and every problem of the others (for `status` and `run`, which
/// go on with the sound ones). `None` outside a repository.
pub fn discover_lenient(ctx: &Ctx) -> Result<Option<Discovered>, CliError> {
    let (root, loaded) = super::config::load(ctx, Vec::new())?;
    Ok(root.map(|root| mmm::spec::discover(&root, Path::new(&loaded.config.specs.dir))))
}

/// Prints every problem of the specs as warnings, with their hints (once each).
pub fn warn(errors: &[SpecError]) {
    if errors.is_empty() {
        return;
    }
    eprintln!(
        "warning: {} problem(s) in the specs; the specs they name are left out until fixed:",
        errors.len()
    );
    for e in errors {
        eprintln!("  {e}");
    }
    let mut hints: Vec<String> = errors.iter().filter_map(|e| e.hint()).collect();
    hints.dedup();
    for h in hints {
        eprintln!("hint: {h}");
    }
}

/// Every problem of the specs as one error, with their hints.
pub fn spec_errors(errors: &[SpecError]) -> CliError {
    let n = errors.len();
    let mut hints: Vec<String> = errors.iter().filter_map(|e| e.hint()).collect();
    hints.dedup();
    CliError {
        error: anyhow!(
            "{n} problem(s) in the specs:\n{}",
            errors
                .iter()
                .map(|e| format!("  {e}"))
                .collect::<Vec<_>>()
                .join("\n")
        ),
        hints,
        code: super::EXIT_FAILURE,
    }
}
