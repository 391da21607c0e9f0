//! `git mmm plumbing …`: hidden low-level commands used by tests and benchmarks.
//!
//! Environment: `MMM_KILL_AT=<step>` aborts the process after that write step (see
//! `mmm::store::KILL_POINTS`); `MMM_TEST_CLOCK=<unix secs>` pins the clock.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use mmm::clock::{Clock, FixedClock, SystemClock, UlidGen};
use mmm::spec::SpecId;
use mmm::store::{DoctorOptions, IterationStatus, NewIteration, Store, StoreOptions};

use super::{CliError, CliResult, Ctx, out};

/// Plumbing subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Record synthetic iterations (with small transcript and metrics notes) on a spec's
    /// branch; prints `<commit> <iteration> recorded|superseded` per iteration.
    Record(RecordArgs),
    /// Run the store's doctor; prints one line per finding.
    Doctor(DoctorArgs),
    /// Roll a spec's branch back to an iteration (or undo the last rollback); prints
    /// `<from> <to> <archive>`.
    Rollback(RollbackArgs),
}

/// Arguments of `plumbing rollback`.
#[derive(Debug, clap::Args)]
pub struct RollbackArgs {
    /// The spec id.
    pub spec: String,
    /// The iteration to go back to.
    #[arg(long, required_unless_present = "undo", conflicts_with = "undo")]
    pub to: Option<u32>,
    /// Undo the last rollback.
    #[arg(long)]
    pub undo: bool,
}

/// Arguments of `plumbing record`.
#[derive(Debug, clap::Args)]
pub struct RecordArgs {
    /// The spec id.
    pub spec: String,
    /// The run id (default: a new ULID).
    #[arg(long)]
    pub run_id: Option<String>,
    /// The base revision of a new branch.
    #[arg(long, default_value = "HEAD")]
    pub base: String,
    /// The status of every iteration.
    #[arg(long, default_value = "passed")]
    pub status: String,
    /// The summary (commit subject) of every iteration.
    #[arg(long, default_value = "synthetic iteration")]
    pub summary: String,
    /// How many iterations to record.
    #[arg(long, default_value_t = 1)]
    pub iterations: u32,
    /// Keep the parent's tree (an iteration that changed nothing).
    #[arg(long)]
    pub same_tree: bool,
    /// The spec revision (git blob id) to record in every iteration's `Mmm-Spec-Revision`.
    #[arg(long, value_name = "HEX")]
    pub spec_revision: Option<String>,
    /// Keep the wip ref at the end (do not finish the run).
    #[arg(long)]
    pub keep_wip: bool,
}

/// Arguments of `plumbing doctor`.
#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    /// Repair what is found.
    #[arg(long)]
    pub repair: bool,
    /// Treat every wip ref as stale.
    #[arg(long)]
    pub all_wip: bool,
}

/// Runs a plumbing command.
pub fn run(ctx: &Ctx, cmd: Command) -> CliResult {
    match cmd {
        Command::Record(args) => record(ctx, &args),
        Command::Doctor(args) => doctor(ctx, &args),
        Command::Rollback(args) => rollback(ctx, &args),
    }
}

fn open(ctx: &Ctx) -> Result<Store, CliError> {
    let clock: Arc<dyn Clock> = match ctx.var("MMM_TEST_CLOCK") {
        Some(s) => {
            let secs = s.parse().map_err(|_| {
                CliError::usage(anyhow::anyhow!(
                    "MMM_TEST_CLOCK={s} is not a number of seconds"
                ))
            })?;
            Arc::new(FixedClock::new(secs, Duration::from_secs(1)))
        }
        None => Arc::new(SystemClock),
    };
    let mut opts = StoreOptions::new(clock, Arc::new(UlidGen));
    opts.kill_point = ctx.var("MMM_KILL_AT").map(str::to_owned);
    Ok(Store::open(&ctx.cwd, opts)?)
}

fn spec_id(s: &str) -> Result<SpecId, CliError> {
    SpecId::new(s).map_err(|suggestion| {
        let e = anyhow::anyhow!("`{s}` is not a valid spec id");
        match suggestion {
            Some(s) => CliError::with_hint(e, format!("try `{s}`")),
            None => CliError::usage(e),
        }
    })
}

fn rollback(ctx: &Ctx, args: &RollbackArgs) -> CliResult {
    let spec = spec_id(&args.spec)?;
    let store = open(ctx)?;
    let r = match args.to {
        Some(n) if !args.undo => store.rollback(&spec, n)?,
        _ => store.undo_rollback(&spec)?,
    };
    writeln!(out(), "{} {} {}", r.from, r.to, r.archive)?;
    Ok(())
}

fn record(ctx: &Ctx, args: &RecordArgs) -> CliResult {
    let spec = spec_id(&args.spec)?;
    let store = open(ctx)?;
    let base = store
        .repo()
        .revparse_single(&args.base)
        .and_then(|o| o.peel_to_commit())
        .with_context(|| format!("resolve the base revision `{}`", args.base))?
        .id();
    let mut run = match &args.run_id {
        Some(id) => store.start_run_with_id(&spec, base, id.clone())?,
        None => store.start_run(&spec, base)?,
    };
    let status: IterationStatus = args
        .status
        .parse()
        .unwrap_or_else(|e: std::convert::Infallible| match e {});
    let mut stdout = out();
    for _ in 0..args.iterations {
        let n = run.next_iteration;
        let prompt = store
            .new_record(&mut run, "turn")
            .with("role", "user")
            .with("text", format!("work on {spec}, iteration {n}"));
        store.checkpoint(&mut run, std::slice::from_ref(&prompt))?;
        let answer = store
            .new_record(&mut run, "turn")
            .with("role", "assistant")
            .with("text", "done");
        let usage = store
            .new_record(&mut run, "usage")
            .with("input_tokens", 100)
            .with("output_tokens", 20);
        let parent_tree = store
            .repo()
            .find_commit(run.parent())
            .and_then(|c| c.tree())
            .context("read the parent's tree")?;
        let tree = if args.same_tree {
            parent_tree.id()
        } else {
            let repo = store.repo();
            let blob = repo
                .blob(format!("{spec}: run {} iteration {n}\n", run.id).as_bytes())
                .context("write the synthetic file")?;
            let mut tb = repo
                .treebuilder(Some(&parent_tree))
                .context("build the synthetic tree")?;
            tb.insert(format!("mmm-synthetic-{spec}.txt"), blob, 0o100644)
                .context("build the synthetic tree")?;
            tb.write().context("write the synthetic tree")?
        };
        let rec = store.record_iteration(
            &mut run,
            NewIteration {
                tree,
                status: status.clone(),
                summary: args.summary.clone(),
                body: String::new(),
                spec_revision: args.spec_revision.clone(),
                transcript: vec![prompt, answer],
                metrics: vec![usage],
            },
        )?;
        writeln!(
            stdout,
            "{} {} {}",
            rec.commit,
            rec.iteration,
            if rec.superseded {
                "superseded"
            } else {
                "recorded"
            }
        )?;
        stdout.flush()?;
    }
    if !args.keep_wip {
        store.finish_run(&run)?;
    }
    Ok(())
}

fn doctor(ctx: &Ctx, args: &DoctorArgs) -> CliResult {
    let store = open(ctx)?;
    let report = store.doctor(&DoctorOptions {
        repair: args.repair,
        all_wip: args.all_wip,
        ..DoctorOptions::default()
    })?;
    let mut stdout = out();
    for f in &report.findings {
        let state = match (&f.action, f.done) {
            (None, _) => "report",
            (Some(_), true) => "done",
            (Some(_), false) => "todo",
        };
        writeln!(stdout, "{state}: {:?} -> {:?}", f.problem, f.action)?;
    }
    Ok(())
}
