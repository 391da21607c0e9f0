//! Benchmark (run on demand, not a test): what a kept worktree (`[loop] keep_worktrees`) saves.
//!
//! For each repository, three runs of one spec, one iteration each, with an instant scripted
//! model: the first run with `keep_worktree` (it makes the spec's worktree), the second with it
//! (it resets the kept one), and a third without it (a new worktree, removed at the end: what
//! every run did before). Each run's setup runs from the call of `run_spec` to the first
//! prompt (the agent stage begins; the worktree part is `Started` to the context stage), and
//! its teardown from the `Recorded` event to `run_spec`'s return.
//!
//! Repositories: tokio (cloned from `../shared/bench-repos/tokio.bundle`, skipped when it is
//! not there), a generated tree of `MMM_BENCH_FILES` files (100,000), and the demo crate
//! (`fixtures/demo/`) with a `cargo build` gate, whose time in the first and second run is the
//! cold and the warm build.
//!
//!     cargo bench --bench worktree    # MMM_BENCH_FILES, MMM_BENCH_ONLY=tokio|tree|demo

#[path = "common/mod.rs"]
mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mmm::agent::scripted::Answer;
use mmm::agent::{Cancel, PriceTable, ScriptedAgent};
use mmm::clock::{SystemClock, UlidGen};
use mmm::context::Templates;
use mmm::engine::{DailyLedger, Event, Job, Redactor, Services, Stage, run_spec};
use mmm::spec::Spec;
use mmm::store::{Store, StoreOptions};
use mmm::validate::{Gate, GateKind};

use common::ms;

/// The times of one run.
#[derive(Debug, Default, Clone, Copy)]
struct RunTimes {
    setup: Duration,
    worktree: Duration,
    teardown: Duration,
    gate: Option<Duration>,
}

fn main() {
    let only = std::env::var("MMM_BENCH_ONLY").unwrap_or_default();
    let files = common::env_num("MMM_BENCH_FILES", 100_000);
    let bundle =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/bench-repos/tokio.bundle");
    if (only.is_empty() || only == "tokio") && bundle.is_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = dir.path().join("tokio");
        common::git(
            dir.path(),
            &["clone", "--quiet", &bundle.to_string_lossy(), "tokio"],
        );
        report("tokio", &three_runs(&repo, None));
    } else if only.is_empty() || only == "tokio" {
        println!("tokio: skipped ({} not found)", bundle.display());
    }
    if only.is_empty() || only == "tree" {
        let dir = tempfile::tempdir().expect("tempdir");
        let t = Instant::now();
        common::build_repo(dir.path(), files);
        println!(
            "generated a tree of {files} files in {:.1}s",
            t.elapsed().as_secs_f64()
        );
        report(&format!("{files} files"), &three_runs(dir.path(), None));
    }
    if only.is_empty() || only == "demo" {
        let dir = tempfile::tempdir().expect("tempdir");
        copy_dir(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/demo"),
            dir.path(),
        );
        std::fs::write(dir.path().join(".gitignore"), "target/\n").expect("write");
        common::git(dir.path(), &["init", "--quiet", "--initial-branch=main"]);
        common::git(dir.path(), &["add", "--all"]);
        common::git(dir.path(), &["commit", "--quiet", "--message", "demo"]);
        let gate = Gate {
            name: "build".into(),
            kind: GateKind::Build,
            command: "env -u CARGO_TARGET_DIR cargo build --quiet --offline".into(),
        };
        report("demo crate", &three_runs(dir.path(), Some(gate)));
    }
}

/// The first run (keep, makes the worktree), the second (keep, reuses it), a third without
/// keeping (the old way).
fn three_runs(repo: &Path, gate: Option<Gate>) -> [RunTimes; 3] {
    let store = Store::open(
        repo,
        StoreOptions::new(Arc::new(SystemClock), Arc::new(UlidGen)),
    )
    .expect("open store");
    let base = store
        .repo()
        .head()
        .and_then(|h| h.peel_to_commit())
        .expect("HEAD")
        .id();
    [true, true, false]
        .iter()
        .enumerate()
        .map(|(i, keep)| one_run(&store, base, i, *keep, gate.clone()))
        .collect::<Vec<_>>()
        .try_into()
        .expect("three runs")
}

/// One run of one iteration; each run is a new revision of the spec, so that it iterates.
fn one_run(store: &Store, base: git2::Oid, n: usize, keep: bool, gate: Option<Gate>) -> RunTimes {
    let text = format!("{}\nRevision {n}.\n", common::SPEC);
    let spec = Spec::parse(Path::new("specs/counters.md"), text.as_bytes()).expect("spec");
    let agent = ScriptedAgent::new(vec![Answer {
        text: format!("Nothing to change.\n\n@mmm:summary run {n}\n"),
        when: None,
        model: None,
        input_tokens: 1000,
        output_tokens: 100,
        cache_read_input_tokens: 0,
        cache_creation_input_tokens: 0,
    }]);
    let mut settings = common::settings(1);
    settings.keep_worktree = keep;
    settings.gates = gate.into_iter().collect();
    settings.gate_options.timeout = Duration::from_secs(600);
    let templates = Templates::builtin();
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
        store,
        agent: &agent,
        prices: &PriceTable::builtin(),
        redactor: &Redactor::new(Vec::new()),
        cancel: &Cancel::new(),
        daily: &DailyLedger::default(),
        review: None,
    };
    let (mut started, mut context, mut prompt, mut recorded, mut gate) =
        (None, None, None, None, None);
    let t0 = Instant::now();
    let outcome = run_spec(&services, &job, &mut |e| {
        let now = Instant::now();
        match e {
            Event::Started { .. } => started = Some(now),
            Event::Stage { stage, .. } if stage == Stage::Context && context.is_none() => {
                context = Some(now)
            }
            Event::Stage { stage, .. } if stage == Stage::Agent && prompt.is_none() => {
                prompt = Some(now)
            }
            Event::Checked { duration_ms, .. } if gate.is_none() => {
                gate = Some(Duration::from_millis(duration_ms))
            }
            Event::Recorded { .. } => recorded = Some(now),
            _ => {}
        }
    })
    .expect("the loop runs");
    let end = Instant::now();
    assert_eq!(outcome.iterations, 1, "{}", outcome.detail);
    let at = |o: Option<Instant>| o.expect("every event is reported");
    RunTimes {
        setup: at(prompt) - t0,
        worktree: at(context) - at(started),
        teardown: end - at(recorded),
        gate,
    }
}

fn report(name: &str, runs: &[RunTimes; 3]) {
    println!("{name}:");
    for (label, r) in ["first run (keep)", "second run (kept)", "without keeping"]
        .iter()
        .zip(runs)
    {
        print!(
            "  {label:<18} setup {:>8.1} ms (worktree {:>8.1} ms), teardown {:>8.1} ms",
            ms(r.setup),
            ms(r.worktree),
            ms(r.teardown)
        );
        match r.gate {
            Some(g) => println!(", first gate {:>8.1} ms", ms(g)),
            None => println!(),
        }
    }
    println!(
        "  second run's setup: {:.1} % of the first's (worktree part {:.1} %; goal: under 10 %)",
        100.0 * runs[1].setup.as_secs_f64() / runs[0].setup.as_secs_f64(),
        100.0 * runs[1].worktree.as_secs_f64() / runs[0].worktree.as_secs_f64()
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dir").flatten() {
        let target = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).expect("copy");
        }
    }
}
