//! `git mmm init`: sets mmm up in a repository. Idempotent and never destructive: an existing
//! `.mmm/config.toml` or template is left as it is.

use std::io::Write;
use std::path::Path;

use anyhow::Context as _;

use super::common::open_store;
use super::{CliError, CliResult, Ctx, out};

/// Arguments of `git mmm init`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Also write the built-in prompt templates to `.mmm/templates/` to customise them.
    #[arg(long)]
    pub templates: bool,
    /// Also add the fetch refspecs of mmm's refs to `remote.NAME.fetch` (never its push).
    #[arg(long, value_name = "NAME")]
    pub remote: Option<String>,
}

/// Runs `git mmm init`.
pub fn run(ctx: &Ctx, args: &Args) -> CliResult {
    let store = open_store(ctx)?;
    let root = store
        .repo()
        .workdir()
        .ok_or_else(|| {
            CliError::with_hint(
                anyhow::anyhow!("this is a bare repository"),
                "run `git mmm init` in a repository with a work tree",
            )
        })?
        .to_path_buf();
    let mut out = out();
    let config = mmm::config::repo_config_path(&root);
    if write_new(&config, &mmm::config::default_config_toml())? {
        writeln!(out, "wrote {}", rel(&root, &config))?;
    } else {
        writeln!(out, "kept {} (it exists)", rel(&root, &config))?;
    }
    if args.templates {
        for (name, text) in mmm::context::builtin_templates() {
            let path = root
                .join(".mmm")
                .join("templates")
                .join(format!("{name}.md"));
            if write_new(&path, text)? {
                writeln!(out, "wrote {}", rel(&root, &path))?;
            } else {
                writeln!(out, "kept {} (it exists)", rel(&root, &path))?;
            }
        }
    }
    let changed = store.configure()?;
    if changed.is_empty() {
        writeln!(out, "git notes settings already in place")?;
    }
    for c in changed {
        writeln!(out, "{c}")?;
    }
    if let Some(remote) = &args.remote {
        let added = store
            .configure_remote(remote)
            .map_err(|e| CliError::with_hint(e, "`git remote -v` lists the remotes"))?;
        if added.is_empty() {
            writeln!(out, "remote.{remote}.fetch already has mmm's refspecs")?;
        }
        for spec in added {
            writeln!(out, "added remote.{remote}.fetch = {spec}")?;
        }
    }
    writeln!(
        out,
        "next: write a spec in specs/<name>.md, check it with `git mmm specs`, run it with `git mmm run`"
    )?;
    Ok(())
}

/// Sets git's notes settings for mmm (used by `init` and the demo).
pub fn configure_git(ctx: &Ctx) -> CliResult {
    open_store(ctx)?.configure()?;
    Ok(())
}

/// Writes a file only if it does not exist; true if written.
fn write_new(path: &Path, content: &str) -> anyhow::Result<bool> {
    if path.exists() {
        return Ok(false);
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let mut file = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
        Err(e) => return Err(e).with_context(|| format!("cannot create {}", path.display())),
    };
    file.write_all(content.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(true)
}

fn rel(root: &Path, p: &Path) -> String {
    p.strip_prefix(root).unwrap_or(p).display().to_string()
}
