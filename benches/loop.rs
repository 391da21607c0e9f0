//! Benchmark (run on demand, not a test): mmm's own overhead per iteration of the loop, with an
//! instant scripted model, on a repository of 2,000 small source files.
//!
//! Each iteration's wall time runs from the context stage's start to the `Recorded` event (the
//! commit and notes written); the model call itself (timed around the agent) is subtracted, and
//! so is the gates' own time when there are gates. What remains is building the prompt and its
//! record, parsing and applying the answer, the snapshot and the decision, and the record step
//! (an iteration this quick is never checkpointed: see `[loop] checkpoint_after`). Prints the
//! median and the spread, and the share of each stage.
//!
//!     cargo bench --bench loop     # MMM_BENCH_FILES, MMM_BENCH_ITERATIONS, MMM_BENCH_RUNS
//!
//! `MMM_BENCH_FSYNC=0` opens the store with `sync: false` (new packs and moved refs are not
//! flushed to the disk: a diagnostic of what syncing costs; mmm itself always syncs). `MMM_BENCH_GATE=1` configures one gate that
//! runs `true`: the snapshot then scans the whole worktree (a gate may write anywhere), and the
//! validate stage includes starting that process.
//!
//! Then the agents side by side: the same loop with a fixed answer that edits nothing, given
//! once by the `scripted` agent and once by a `command` agent whose command line prints it and
//! exits at once (`printf …` through `sh -c`). Here nothing is subtracted: each iteration is
//! timed whole, from the context stage to `Recorded`, so that the difference is what running a
//! child process costs mmm (goal: within 5 ms). `MMM_BENCH_AGENTS=0` skips it.

#[path = "common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use mmm::agent::scripted::Answer;
use mmm::agent::{Agent, Cancel, CommandAgent, CommandConfig, PriceTable, ScriptedAgent};
use mmm::clock::{SystemClock, UlidGen};
use mmm::context::Templates;
use mmm::engine::{DailyLedger, Event, Job, Redactor, Services, Stage, run_spec};
use mmm::store::{Store, StoreOptions};
use mmm::validate::{Gate, GateKind};

use common::{Timed, ms, percentile};

/// Event timestamps of one iteration.
#[derive(Default, Clone, Copy)]
struct Marks {
    context: Option<Instant>,
    agent: Option<Instant>,
    apply: Option<Instant>,
    validate: Option<Instant>,
    /// The last gate finished.
    checked: Option<Instant>,
    record: Option<Instant>,
    recorded: Option<Instant>,
}

/// One run of the loop: its iterations' marks and the agent's calls.
struct Measured {
    marks: Vec<Marks>,
    calls: Vec<Duration>,
}

/// Runs `iterations` iterations of the bench spec on a new repository of `files` files with
/// the agent `make` builds.
fn measure<A: Agent>(files: usize, iterations: u32, fsync: bool, gate: bool, agent: A) -> Measured {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = dir.path();
    let spec = common::build_repo(repo, files);
    let mut options = StoreOptions::new(Arc::new(SystemClock), Arc::new(UlidGen));
    // Diagnostic only: mmm always syncs; this shows what the disk costs.
    options.sync = fsync;
    let store = Store::open(repo, options).expect("open store");
    let base = store
        .repo()
        .head()
        .and_then(|h| h.peel_to_commit())
        .expect("HEAD")
        .id();
    let agent = Timed::new(agent);
    let templates = Templates::builtin();
    let prices = PriceTable::builtin();
    let redactor = Redactor::new(Vec::new());
    let cancel = Cancel::new();
    let mut settings = common::settings(iterations);
    if gate {
        settings.gates = vec![Gate {
            name: "test".into(),
            kind: GateKind::Test,
            command: "true".into(),
        }];
    }
    let job = Job {
        spec: &spec,
        base,
        settings,
        templates: &templates,
        dependency_summaries: Vec::new(),
        dependency_files: Vec::new(),
        completed_specs: Vec::new(),
        review_feedback: Vec::new(),
        feedback: Vec::new(),
    };
    let services = Services {
        store: &store,
        agent: &agent,
        prices: &prices,
        redactor: &redactor,
        cancel: &cancel,
        daily: &DailyLedger::default(),
        review: None,
    };
    let mut marks: Vec<Marks> = Vec::new();
    let outcome = run_spec(&services, &job, &mut |e| mark(&mut marks, e)).expect("the loop runs");
    assert_eq!(
        outcome.iterations, iterations,
        "every iteration ran: {}",
        outcome.detail
    );
    let calls = agent.calls.lock().expect("not poisoned").clone();
    Measured { marks, calls }
}

/// Notes when an event came.
fn mark(marks: &mut Vec<Marks>, e: Event) {
    let now = Instant::now();
    match e {
        Event::Stage { stage, .. } => {
            if stage == Stage::Context {
                marks.push(Marks::default());
            }
            let m = marks.last_mut().expect("context comes first");
            let slot = match stage {
                Stage::Context => &mut m.context,
                Stage::Agent => &mut m.agent,
                Stage::Apply => &mut m.apply,
                Stage::Validate => &mut m.validate,
                Stage::Record => &mut m.record,
            };
            *slot = Some(now);
        }
        Event::Checked { .. } => {
            marks.last_mut().expect("an iteration").checked = Some(now);
        }
        Event::Recorded { .. } => {
            marks.last_mut().expect("an iteration").recorded = Some(now);
        }
        _ => {}
    }
}

/// The scripted answers of the overhead bench: a different edit each iteration.
fn editing_agent(iterations: u32) -> ScriptedAgent {
    let answers = (1..=iterations)
        .map(|n| scripted(common::answer(n)))
        .collect();
    ScriptedAgent::new(answers)
}

fn scripted(text: String) -> Answer {
    Answer {
        text,
        when: None,
        model: None,
        input_tokens: 1000,
        output_tokens: 100,
        cache_read_input_tokens: 0,
        cache_creation_input_tokens: 0,
    }
}

/// The answer both agents give in the comparison: no edit, a summary.
const FIXED: &str = "Nothing to change.\n\n@mmm:summary nothing to change\n";

fn main() {
    let files = common::env_num("MMM_BENCH_FILES", 2000);
    let iterations = common::env_num("MMM_BENCH_ITERATIONS", 30) as u32;
    let runs = common::env_num("MMM_BENCH_RUNS", 2);
    let fsync = common::env_num("MMM_BENCH_FSYNC", 1) != 0;
    let gate = common::env_num("MMM_BENCH_GATE", 0) != 0;
    let agents = common::env_num("MMM_BENCH_AGENTS", 1) != 0;

    let mut overhead = Vec::new();
    let mut gate_times = Vec::new();
    let mut stages: [Vec<Duration>; 5] = Default::default();
    for run in 0..runs {
        let t = Instant::now();
        let m = measure(files, iterations, fsync, gate, editing_agent(iterations));
        if run == 0 {
            println!(
                "one run of {iterations} iterations on {files} source files (the repository built first) in {:.1}s",
                t.elapsed().as_secs_f64()
            );
        }
        for (m, call) in m.marks.iter().zip(&m.calls) {
            let at = |o: Option<Instant>| o.expect("every stage is reported");
            let (c, a, p, v, r, done) = (
                at(m.context),
                at(m.agent),
                at(m.apply),
                at(m.validate),
                at(m.record),
                at(m.recorded),
            );
            // The gates' own time (starting and running their processes) is not mmm's.
            let gates = m.checked.map_or(Duration::ZERO, |g| g - v);
            overhead.push((done - c).saturating_sub(*call).saturating_sub(gates));
            stages[0].push(a - c);
            stages[1].push((p - a).saturating_sub(*call));
            stages[2].push(v - p);
            stages[3].push((r - v).saturating_sub(gates));
            stages[4].push(done - r);
            gate_times.push(gates);
        }
    }
    report_overhead(
        overhead,
        stages,
        gate_times,
        (runs, iterations, files, fsync, gate),
    );
    if agents {
        compare_agents(files, iterations, runs, fsync, gate);
    }
}

/// The scripted and the `command` agent with the same fixed answer, run alternately; each
/// iteration timed whole.
fn compare_agents(files: usize, iterations: u32, runs: usize, fsync: bool, gate: bool) {
    let mut scripted_times = Vec::new();
    let mut command_times = Vec::new();
    let mut command_calls = Vec::new();
    let (mut scripted_stages, mut command_stages) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let answers = (0..iterations)
            .map(|_| scripted(FIXED.to_owned()))
            .collect();
        let m = measure(files, iterations, fsync, gate, ScriptedAgent::new(answers));
        scripted_times.extend(whole(&m));
        scripted_stages.push(m);
        let agent = CommandAgent::new(CommandConfig {
            command: format!("printf '{FIXED}'"),
            ..CommandConfig::default()
        })
        .expect("a valid command agent");
        let m = measure(files, iterations, fsync, gate, agent);
        command_times.extend(whole(&m));
        command_calls.extend(m.calls.iter().copied());
        command_stages.push(m);
    }
    scripted_times.sort();
    command_times.sort();
    command_calls.sort();
    let (s, c) = (
        percentile(&scripted_times, 50),
        percentile(&command_times, 50),
    );
    println!(
        "agents side by side, the same fixed answer, each iteration timed whole ({} iterations each):",
        scripted_times.len()
    );
    for (name, v) in [
        ("scripted", &scripted_times),
        ("command (printf)", &command_times),
    ] {
        println!(
            "  {name:<18} median {:>6.2} ms, p10 {:>6.2} ms, p90 {:>6.2} ms",
            ms(percentile(v, 50)),
            ms(percentile(v, 10)),
            ms(percentile(v, 90)),
        );
    }
    println!(
        "  command - scripted: {:+.2} ms per iteration (goal: within 5 ms); the command's call itself: median {:.2} ms",
        ms(c) - ms(s),
        ms(percentile(&command_calls, 50)),
    );
    for (name, runs) in [("scripted", &scripted_stages), ("command", &command_stages)] {
        println!("  {name}: {}", stage_medians(runs));
    }
}

/// The median of each stage over the runs' iterations, the agent's call included in its own.
fn stage_medians(runs: &[Measured]) -> String {
    let mut stages: [Vec<Duration>; 5] = Default::default();
    for m in runs {
        for k in &m.marks {
            let at = |o: Option<Instant>| o.expect("every stage is reported");
            let (c, a, p, v, r, done) = (
                at(k.context),
                at(k.agent),
                at(k.apply),
                at(k.validate),
                at(k.record),
                at(k.recorded),
            );
            for (i, d) in [a - c, p - a, v - p, r - v, done - r]
                .into_iter()
                .enumerate()
            {
                stages[i].push(d);
            }
        }
    }
    let names = ["context", "agent", "apply", "decide", "record"];
    names
        .iter()
        .zip(stages.iter_mut())
        .map(|(n, v)| {
            v.sort();
            format!("{n} {:.2}", ms(percentile(v, 50)))
        })
        .collect::<Vec<_>>()
        .join(", ")
        + " ms (medians)"
}

/// Each iteration's whole time, context stage to `Recorded`.
fn whole(m: &Measured) -> Vec<Duration> {
    m.marks
        .iter()
        .map(|k| k.recorded.expect("recorded") - k.context.expect("context comes first"))
        .collect()
}

/// Prints the overhead of the editing run and its stages.
fn report_overhead(
    mut overhead: Vec<Duration>,
    mut stages: [Vec<Duration>; 5],
    mut gate_times: Vec<Duration>,
    (runs, iterations, files, fsync, gate): (usize, u32, usize, bool, bool),
) {
    overhead.sort();
    let n = overhead.len();
    println!(
        "orchestration overhead per iteration ({n} iterations, {runs} run(s) of {iterations}, {files} files, fsync {}{}):",
        if fsync { "on" } else { "off" },
        if gate {
            ", one gate running `true`"
        } else {
            ""
        }
    );
    println!(
        "  median {:.2} ms, p10 {:.2} ms, p90 {:.2} ms, max {:.2} ms (goal: median under 15 ms)",
        ms(percentile(&overhead, 50)),
        ms(percentile(&overhead, 10)),
        ms(percentile(&overhead, 90)),
        ms(overhead[n - 1]),
    );
    let names = [
        "context (build prompt, prompt record)",
        "around the agent (response record)",
        "apply (parse, write files)",
        "decide (snapshot, patch id; gates' own time excluded)",
        "record (commit, notes, one pack, refs)",
    ];
    for (name, v) in names.iter().zip(stages.iter_mut()) {
        v.sort();
        println!("  {name:<52} median {:>6.2} ms", ms(percentile(v, 50)));
    }
    if gate {
        gate_times.sort();
        println!(
            "  (the gate itself, excluded above: median {:.2} ms)",
            ms(percentile(&gate_times, 50))
        );
    }
}
