//! `git mmm config`: prints the effective configuration and where each value comes from, and
//! [`load`], which every command uses to read the configuration.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use mmm::config::{
    self, ConfigError, Entry, FlagValue, Loaded, SourceFile, Sources, repo_config_path,
    user_config_path,
};

use super::{CliError, CliResult, Ctx, out};

/// Arguments of `git mmm config`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Output: one `origin<TAB>key = value` line per key, like \
`git config --show-origin --list`; origins are `file:<path>:<line>`, `env:<VAR>`, `flag:<--flag>` \
or `default`.\n--json: an array of {\"key\", \"value\", \"origin\"} objects, where \"value\" is the \
JSON form of the TOML value (durations are strings such as \"2h\")."
)]
pub struct Args {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,

    /// Print only this key's value (e.g. `loop.max_iterations`).
    #[arg(value_name = "KEY")]
    pub key: Option<String>,
}

/// Runs `git mmm config`.
pub fn run(ctx: &Ctx, args: &Args) -> CliResult {
    let (_root, loaded) = load(ctx, Vec::new())?;
    let mut w = out();
    match &args.key {
        Some(key) => {
            let entry = loaded.get(key).map_err(|e| {
                let mut usage = CliError::usage(e.clone());
                usage.hints.push(e.hint());
                usage
            })?;
            let entry = entry.ok_or_else(|| {
                CliError::with_hint(
                    anyhow::anyhow!("`{key}` is not set"),
                    "set it in .mmm/config.toml; `git mmm init` writes a file that documents it",
                )
            })?;
            if args.json {
                let json = serde_json::to_string_pretty(&json_entry(&entry))?;
                writeln!(w, "{json}")?;
            } else {
                match &entry.toml {
                    toml::Value::String(s) => writeln!(w, "{s}")?,
                    _ => writeln!(w, "{}", entry.value)?,
                }
            }
        }
        None => {
            let entries = loaded.entries();
            if args.json {
                let json: Vec<serde_json::Value> = entries.iter().map(json_entry).collect();
                writeln!(w, "{}", serde_json::to_string_pretty(&json)?)?;
            } else {
                print_entries(&mut w, &entries)?;
            }
        }
    }
    Ok(())
}

fn print_entries(w: &mut impl Write, entries: &[Entry]) -> io::Result<()> {
    for e in entries {
        writeln!(w, "{}\t{} = {}", e.origin, e.key, e.value)?;
    }
    Ok(())
}

fn json_entry(e: &Entry) -> serde_json::Value {
    serde_json::json!({
        "key": e.key,
        "value": serde_json::to_value(&e.toml).unwrap_or(serde_json::Value::Null),
        "origin": e.origin.to_string(),
    })
}

fn config_error(e: ConfigError) -> CliError {
    let hint = e.hint();
    // A bad value given as a flag is a usage error (exit 2), as clap and git report theirs.
    let usage = matches!(
        &e,
        ConfigError::BadValue {
            at: mmm::config::Location::Flag { .. },
            ..
        } | ConfigError::UnknownKey {
            at: mmm::config::Location::Flag { .. },
            ..
        }
    );
    let mut err = CliError::with_hint(e, hint);
    if usage {
        err.code = super::EXIT_USAGE;
    }
    err
}

/// Loads the configuration for a command: finds the repository root from `ctx.cwd` (none
/// outside a repository, or in a bare one), reads the user file (`$XDG_CONFIG_HOME` or
/// `~/.config`), the repository's `.mmm/config.toml`, the `MMM_*` variables of `ctx.env`, and
/// applies `flags` on top. Returns the repository root and the configuration.
pub fn load(ctx: &Ctx, flags: Vec<FlagValue>) -> Result<(Option<PathBuf>, Loaded), CliError> {
    let root = match git2::Repository::discover(&ctx.cwd) {
        Ok(repo) => repo.workdir().map(Path::to_path_buf),
        Err(e) if e.code() == git2::ErrorCode::NotFound => None,
        Err(e) => {
            return Err(CliError::with_hint(
                anyhow::Error::new(e).context(format!(
                    "cannot open the git repository at {}",
                    ctx.cwd.display()
                )),
                "run `git status` there to see what git thinks of it",
            ));
        }
    };
    let home = ctx.home();
    let xdg = ctx.var("XDG_CONFIG_HOME").map(PathBuf::from);
    let user = match user_config_path(home.as_deref(), xdg.as_deref()) {
        Some(path) => read_optional(&path)?,
        None => None,
    };
    let repo = match &root {
        Some(root) => read_optional(&repo_config_path(root))?,
        None => None,
    };
    let sources = Sources {
        user,
        repo,
        env: ctx.env.clone(),
        flags,
    };
    let loaded = config::load(&sources).map_err(config_error)?;
    Ok((root, loaded))
}

/// Reads a configuration file that may not exist.
fn read_optional(path: &Path) -> Result<Option<SourceFile>, CliError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(SourceFile {
            path: path.to_path_buf(),
            text,
        })),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CliError::with_hint(
            anyhow::Error::new(e).context(format!("cannot read {}", path.display())),
            "check that the file is readable UTF-8 text, or remove it",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_print_like_git_config_show_origin() {
        let loaded = config::load(&Sources::default()).expect("defaults load");
        let mut buf = Vec::new();
        print_entries(&mut buf, &loaded.entries()).expect("write to a vector");
        let text = String::from_utf8(buf).expect("utf-8");
        assert!(
            text.contains("default\tloop.max_iterations = 3\n"),
            "{text}"
        );
    }
}
