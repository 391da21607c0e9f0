//! The command-line interface: one file per command. This is the only place that reads the
//! process environment, loads configuration files from the user's home, and writes to the
//! terminal; the library gets everything as arguments.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

mod clean;
mod common;
mod completions;
mod config;
mod context;
mod demo;
mod doctor;
mod event;
mod hook;
mod hooks;
mod init;
mod install;
mod log;
mod plan;
mod plumbing;
mod pr;
mod pr_loop;
mod progress;
mod rebase;
mod review;
mod rollback;
mod run;
mod show;
mod specs;
mod status;
mod stop;
mod sync;
mod watch;

/// Exit code for success.
pub const EXIT_OK: u8 = 0;
/// Exit code for a failure (bad input, a git error, a failed run).
pub const EXIT_FAILURE: u8 = 1;
/// Exit code for a usage error (unknown flag, missing argument).
pub const EXIT_USAGE: u8 = 2;

/// Turns markdown specs into working code through bounded LLM loops; all state lives in git.
#[derive(Debug, Parser)]
#[command(
    name = "git-mmm",
    bin_name = "git mmm",
    version,
    propagate_version = true
)]
#[command(
    about = "Turn markdown specs into working code through bounded LLM loops, with all state in git"
)]
#[command(
    after_help = "Exit codes: 0 success, 1 failure, 2 usage error.\nDocs: README.md and docs/ARCHITECTURE.md in the mmm repository."
)]
pub struct Cli {
    /// Run as if started in this directory (like `git -C`).
    #[arg(short = 'C', long = "directory", global = true, value_name = "DIR")]
    pub directory: Option<PathBuf>,

    /// More logging on stderr (-v info, -vv debug, -vvv trace); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the loop on specs until each is complete or a limit is reached.
    Run(run::Args),
    /// Ask a running loop to stop after its current stage.
    Stop(stop::Args),
    /// Run the offline demo: a sample project, the real loop, the scripted agent.
    Demo(demo::Args),
    /// Set up mmm in this repository: `.mmm/config.toml` and git notes settings (idempotent).
    Init(init::Args),
    /// List the specs under the spec directory, in dependency order.
    Specs(specs::Args),
    /// Show the state of every spec: iterations, last status, whether the spec changed.
    Status(status::Args),
    /// List the specs ready to run now, in order (for CI job matrices and hooks).
    Plan(plan::Args),
    /// Show the iterations of one spec.
    Log(log::Args),
    /// Show one iteration of a spec: commit, metrics and transcript.
    Show(show::Args),
    /// Show the prompt the next iteration of a spec would send, item by item, and its cost.
    Context(context::Args),
    /// Reset a spec's branch to an earlier iteration (or undo the last rollback).
    Rollback(rollback::Args),
    /// Exchange mmm's history with a git remote: fetch, integrate, push what is new.
    Sync(sync::Args),
    /// Push a spec's branch and open or update its pull request on GitHub.
    Pr(pr::Args),
    /// Print what a spec's pull request would feed back to the loop, and what it ignores.
    Review(review::Args),
    /// Replay a spec's iterations onto the current HEAD (or REV), notes included.
    Rebase(rebase::Args),
    /// Find and repair what an interrupted run left behind.
    Doctor(doctor::Args),
    /// Remove the worktrees kept between runs (`[loop] keep_worktrees`) to reclaim the space.
    Clean(clean::Args),
    /// Print the effective configuration and where each value comes from.
    Config(config::Args),
    /// Print shell completions or the man page, generated from these definitions.
    Completions(completions::Args),
    /// Install the man pages and shell completions where `man` and the shells find them.
    InstallExtras(install::Args),
    /// Watch the specs directory and run the specs that are added or changed.
    Watch(watch::Args),
    /// Act on a CI event (GitHub Actions: a push runs the specs it adds or changes).
    Event(event::Args),
    /// Install, remove or inspect mmm's git hooks (pre-push; --server: post-receive).
    Hooks(hooks::Args),
    /// What mmm's git hooks call, with git's input on stdin (hidden).
    #[command(hide = true)]
    Hook(hook::Args),
    /// Low-level commands for scripts, tests and benchmarks (hidden).
    #[command(hide = true, subcommand)]
    Plumbing(plumbing::Command),
}

/// What every command gets: where it runs and the process environment, read once here.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The directory the command runs in (after `-C`).
    pub cwd: PathBuf,
    /// The process environment.
    pub env: BTreeMap<String, String>,
}

impl Ctx {
    /// The value of an environment variable, if set and valid UTF-8.
    pub fn var(&self, name: &str) -> Option<&str> {
        self.env.get(name).map(String::as_str)
    }

    /// The user's home directory, if known.
    pub fn home(&self) -> Option<PathBuf> {
        self.var("HOME")
            .filter(|h| !h.is_empty())
            .map(PathBuf::from)
    }
}

/// An error for the user: what failed, why, and what to do about it.
#[derive(Debug)]
pub struct CliError {
    /// The error and its causes.
    pub error: anyhow::Error,
    /// Suggestions printed after the error.
    pub hints: Vec<String>,
    /// The exit code.
    pub code: u8,
}

impl CliError {
    /// A failure (exit code 1) with a hint.
    pub fn with_hint(error: impl Into<anyhow::Error>, hint: impl Into<String>) -> Self {
        CliError {
            error: error.into(),
            hints: vec![hint.into()],
            code: EXIT_FAILURE,
        }
    }

    /// A usage error (exit code 2).
    pub fn usage(error: impl Into<anyhow::Error>) -> Self {
        CliError {
            error: error.into(),
            hints: Vec::new(),
            code: EXIT_USAGE,
        }
    }
}

impl<E: Into<anyhow::Error>> From<E> for CliError {
    fn from(e: E) -> Self {
        CliError {
            error: e.into(),
            hints: Vec::new(),
            code: EXIT_FAILURE,
        }
    }
}

/// The result of a command.
pub type CliResult = Result<(), CliError>;

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_USAGE } else { EXIT_OK };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let env: BTreeMap<String, String> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    init_tracing(cli.verbose, env.get("RUST_LOG").map(String::as_str));
    let cwd = match std::env::current_dir() {
        Ok(cwd) => cwd,
        Err(e) => {
            return report(
                &CliError::with_hint(e, "run mmm from an existing directory"),
                cli.verbose > 0,
            );
        }
    };
    let cwd = match &cli.directory {
        Some(dir) => cwd.join(dir),
        None => cwd,
    };
    let ctx = Ctx { cwd, env };
    match dispatch(&ctx, cli.command) {
        Ok(()) => ExitCode::from(EXIT_OK),
        Err(e) => report(&e, cli.verbose > 0),
    }
}

fn dispatch(ctx: &Ctx, command: Command) -> CliResult {
    match command {
        Command::Run(args) => run::run(ctx, &args),
        Command::Stop(args) => stop::run(ctx, &args),
        Command::Demo(args) => demo::run(ctx, &args),
        Command::Init(args) => init::run(ctx, &args),
        Command::Specs(args) => specs::run(ctx, &args),
        Command::Status(args) => status::run(ctx, &args),
        Command::Plan(args) => plan::run(ctx, &args),
        Command::Log(args) => log::run(ctx, &args),
        Command::Show(args) => show::run(ctx, &args),
        Command::Context(args) => context::run(ctx, &args),
        Command::Rollback(args) => rollback::run(ctx, &args),
        Command::Sync(args) => sync::run(ctx, &args),
        Command::Pr(args) => pr::run(ctx, &args),
        Command::Review(args) => review::run(ctx, &args),
        Command::Rebase(args) => rebase::run(ctx, &args),
        Command::Doctor(args) => doctor::run(ctx, &args),
        Command::Clean(args) => clean::run(ctx, &args),
        Command::Config(args) => config::run(ctx, &args),
        Command::Completions(args) => completions::run(ctx, &args),
        Command::InstallExtras(args) => install::run(ctx, &args),
        Command::Watch(args) => watch::run(ctx, &args),
        Command::Event(args) => event::run(ctx, &args),
        Command::Hooks(args) => hooks::run(ctx, &args),
        Command::Hook(args) => hook::run(ctx, &args),
        Command::Plumbing(cmd) => plumbing::run(ctx, cmd),
    }
}

/// The clap command, for completions and the man page.
pub fn command() -> clap::Command {
    Cli::command()
}

fn init_tracing(verbose: u8, rust_log: Option<&str>) {
    let default = match verbose {
        0 => "warn",
        1 => "mmm=info,git_mmm=info",
        2 => "mmm=debug,git_mmm=debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_new(rust_log.unwrap_or(default))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .with_target(false)
        .try_init();
}

/// Prints an error with its causes and hints; a broken pipe is not an error. A libgit2 error
/// is told by its message; its class and code are internals, shown with `-v`.
fn report(e: &CliError, verbose: bool) -> ExitCode {
    if is_broken_pipe(&e.error) {
        return ExitCode::from(EXIT_OK);
    }
    let mut err = io::stderr().lock();
    let mut chain = e.error.chain();
    if let Some(top) = chain.next() {
        let _ = writeln!(err, "error: {}", in_user_terms(top, verbose));
    }
    for cause in chain {
        let _ = writeln!(err, "  caused by: {}", in_user_terms(cause, verbose));
    }
    for hint in &e.hints {
        let _ = writeln!(err, "hint: {hint}");
    }
    ExitCode::from(e.code)
}

/// An error's message; for libgit2's, without `; class=…; code=…` unless `verbose`.
fn in_user_terms(e: &(dyn std::error::Error + 'static), verbose: bool) -> String {
    match e.downcast_ref::<git2::Error>() {
        Some(g) if !verbose => git_message(g),
        _ => e.to_string(),
    }
}

/// libgit2's own message, without its class and code.
fn git_message(e: &git2::Error) -> String {
    let m = e.message().trim().trim_end_matches('.');
    if m.is_empty() {
        "git reported an error (run with -v for the details)".to_owned()
    } else {
        m.to_owned()
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
            // serde_json wraps the io::Error and does not expose it as a source.
            || c.downcast_ref::<serde_json::Error>()
                .is_some_and(|j| j.io_error_kind() == Some(io::ErrorKind::BrokenPipe))
    })
}

/// Writes to stdout, turning a closed pipe into a quiet success further up.
pub fn out() -> io::StdoutLock<'static> {
    io::stdout().lock()
}
