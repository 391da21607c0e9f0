//! `git mmm demo [DIR]`: the embedded default for a newcomer. Copies a small sample project
//! with one spec (compiled into the binary) into a new directory, makes it a git repository,
//! and runs the real loop on it with the `scripted` agent: no network, no key.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

use super::{CliError, CliResult, Ctx, out};

/// The sample project, as (path, content).
const FILES: &[(&str, &str)] = &[
    ("Cargo.toml", include_str!("../../fixtures/demo/Cargo.toml")),
    (".gitignore", include_str!("../../fixtures/demo/.gitignore")),
    ("src/lib.rs", include_str!("../../fixtures/demo/src/lib.rs")),
    (
        "specs/slugify.md",
        include_str!("../../fixtures/demo/specs/slugify.md"),
    ),
    (
        ".mmm/config.toml",
        include_str!("../../fixtures/demo/.mmm/config.toml"),
    ),
    (
        ".mmm/demo-script.toml",
        include_str!("../../fixtures/demo/.mmm/demo-script.toml"),
    ),
];

/// Arguments of `git mmm demo`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to create the demo project (must not exist or be empty; default: a new
    /// `mmm-demo` directory here).
    pub dir: Option<PathBuf>,
    /// Print the engine's events as JSON lines.
    #[arg(long)]
    pub json: bool,
}

/// Runs `git mmm demo`.
pub fn run(ctx: &Ctx, args: &Args) -> CliResult {
    let dir = match &args.dir {
        Some(d) => ctx.cwd.join(d),
        None => fresh_dir(&ctx.cwd),
    };
    if dir.exists()
        && std::fs::read_dir(&dir)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        return Err(CliError::with_hint(
            anyhow::anyhow!("{} exists and is not empty", dir.display()),
            "name a new directory: `git mmm demo DIR`",
        ));
    }
    write_project(&dir)?;
    git(&dir, &["init", "--quiet", "--initial-branch=main"])?;
    git(&dir, &["add", "--all"])?;
    git(
        &dir,
        &[
            "-c",
            "user.name=mmm demo",
            "-c",
            "user.email=demo@mmm.invalid",
            "commit",
            "--quiet",
            "--message",
            "A small Rust crate with one spec",
        ],
    )?;
    let mut msg = out();
    writeln!(
        msg,
        "mmm demo: a sample project with one spec in {}\n",
        dir.display()
    )?;
    drop(msg);

    let demo_ctx = Ctx {
        cwd: dir.clone(),
        ..ctx.clone()
    };
    super::init::configure_git(&demo_ctx)?;
    let outcome = super::run::execute(
        &demo_ctx,
        &super::run::Args {
            specs: Vec::new(),
            agent: None,
            model: None,
            max_iterations: None,
            budget_usd: None,
            json: args.json,
            stream: false,
            push: false,
            pr: false,
            lease: false,
            fresh: false,
        },
    );
    let mut msg = out();
    writeln!(msg)?;
    drop(msg);
    super::status::run(&demo_ctx, &super::status::Args { json: args.json })?;
    if !args.json {
        let d = dir.display();
        let mut msg = out();
        // `git mmm` works only once `git-mmm` is on PATH; until then the hints name this
        // binary, so that they work as printed.
        let mmm = if on_path(ctx, "git-mmm") {
            "git mmm".to_owned()
        } else {
            writeln!(
                msg,
                "\n(`git mmm` needs `git-mmm` on PATH: run `cargo install --path . --locked` in \
                 the mmm checkout, then `git mmm install-extras` for `git mmm --help` and \
                 completion; until then the commands below name this binary)"
            )?;
            std::env::current_exe()
                .map(|p| shell_word(&p.display().to_string()))
                .unwrap_or_else(|_| "git-mmm".to_owned())
        };
        let lines = [
            (format!("cd {d}"), ""),
            (format!("{mmm} log slugify"), "the iterations"),
            (
                format!("{mmm} show slugify 1"),
                "the failing first iteration: prompt, answer, checks",
            ),
            (format!("{mmm} show slugify"), "the last iteration"),
            (
                "git log --format=%B mmm/slugify".into(),
                "commits with Mmm-* trailers",
            ),
            (
                "git notes --ref=mmm/slugify/metrics show mmm/slugify".into(),
                "",
            ),
            ("git diff main...mmm/slugify".into(), "the whole change"),
        ];
        let width = lines
            .iter()
            .filter(|(_, what)| !what.is_empty())
            .map(|(cmd, _)| cmd.len())
            .max()
            .unwrap_or(0);
        writeln!(
            msg,
            "\nLook at what the loop recorded (plain git works too):"
        )?;
        for (cmd, what) in lines {
            if what.is_empty() {
                writeln!(msg, "  {cmd}")?;
            } else {
                writeln!(msg, "  {cmd:<width$}  # {what}")?;
            }
        }
    }
    outcome
}

/// `s` quoted for a POSIX shell when it holds anything but safe characters.
fn shell_word(s: &str) -> String {
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+:@%,=".contains(c))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// True when an executable of that name is in one of `PATH`'s directories.
fn on_path(ctx: &Ctx, name: &str) -> bool {
    ctx.var("PATH")
        .is_some_and(|p| std::env::split_paths(p).any(|d| d.join(name).is_file()))
}

fn fresh_dir(cwd: &Path) -> PathBuf {
    let first = cwd.join("mmm-demo");
    if !first.exists() {
        return first;
    }
    (2..)
        .map(|i| cwd.join(format!("mmm-demo-{i}")))
        .find(|p| !p.exists())
        .expect("some numbered directory name is free")
}

fn write_project(dir: &Path) -> anyhow::Result<()> {
    for (rel, content) in FILES {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, content)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

fn git(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .output()
        .context("cannot run git; is it installed and on PATH?")?;
    if !out.status.success() {
        bail!(
            "git {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
