//! Benchmark (run on demand, not a test): `git mmm status` over a synthetic history of
//! 1,000 specs × 10 iterations, compared with `git for-each-ref refs/heads/mmm` on the same
//! repository. Prints the median wall time and the peak memory of the `status` process.
//!
//!     cargo bench --bench status            # MMM_BENCH_SPECS / MMM_BENCH_ITERATIONS to resize

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mmm::clock::{SystemClock, UlidGen};
use mmm::spec::SpecId;
use mmm::store::{IterationStatus, NewIteration, Store, StoreOptions};

fn main() {
    let specs: usize = env_num("MMM_BENCH_SPECS", 1000);
    let iterations: u32 = env_num("MMM_BENCH_ITERATIONS", 10) as u32;
    let runs: usize = env_num("MMM_BENCH_RUNS", 21);
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = dir.path();
    let t = Instant::now();
    build_history(repo, specs, iterations);
    println!(
        "built {specs} specs × {iterations} iterations ({} commits with 2 notes each) in {:.1}s",
        specs * iterations as usize,
        t.elapsed().as_secs_f64()
    );

    let bin = env!("CARGO_BIN_EXE_git-mmm");
    let (mmm_median, mmm_peak) = measure(runs, || {
        let out = Command::new(bin)
            .args(["status", "--json"])
            .current_dir(repo)
            .output()
            .expect("run git-mmm status");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
    let (git_median, _) = measure(runs, || {
        let out = Command::new("git")
            .args(["for-each-ref", "refs/heads/mmm"])
            .current_dir(repo)
            .output()
            .expect("run git for-each-ref");
        assert!(out.status.success());
    });
    println!(
        "git mmm status --json:           median {:>7.1} ms over {runs} runs, peak RSS {:.1} MB",
        ms(mmm_median),
        mmm_peak as f64 / 1024.0
    );
    println!(
        "git for-each-ref refs/heads/mmm: median {:>7.1} ms over {runs} runs",
        ms(git_median)
    );
    println!(
        "ratio: status takes {:.1}× the time of listing the refs (goal: under 100 ms, under 64 MB)",
        mmm_median.as_secs_f64() / git_median.as_secs_f64()
    );
}

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Runs `f` `runs` times; returns the median duration and the peak RSS (KiB) of children.
fn measure(runs: usize, mut f: impl FnMut()) -> (Duration, i64) {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    times.sort();
    // SAFETY: getrusage writes into the zeroed struct we own.
    let peak = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage);
        usage.ru_maxrss
    };
    (times[runs / 2], peak)
}

fn git(repo: &Path, args: &[&str]) {
    let status = Command::new("git")
        .args(args)
        .current_dir(repo)
        .env("GIT_AUTHOR_NAME", "bench")
        .env("GIT_AUTHOR_EMAIL", "bench@example.com")
        .env("GIT_COMMITTER_NAME", "bench")
        .env("GIT_COMMITTER_EMAIL", "bench@example.com")
        .status()
        .expect("run git");
    assert!(status.success(), "git {args:?}");
}

fn build_history(repo: &Path, specs: usize, iterations: u32) {
    git(repo, &["init", "--quiet", "--initial-branch=main"]);
    std::fs::create_dir_all(repo.join("specs")).expect("mkdir specs");
    for i in 0..specs {
        std::fs::write(
            repo.join(format!("specs/spec-{i:04}.md")),
            format!(
                "# Spec {i}\n\n## Objective\n\nDo thing {i}.\n\n## Acceptance criteria\n\n- It works. verify: `true`\n"
            ),
        )
        .expect("write spec");
    }
    git(repo, &["add", "--all"]);
    git(repo, &["commit", "--quiet", "--message", "specs"]);
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
    let tree = store.repo().find_commit(base).expect("base").tree_id();
    for i in 0..specs {
        let spec = SpecId::new(&format!("spec-{i:04}")).expect("slug");
        let mut run = store.start_run(&spec, base).expect("start run");
        for n in 1..=iterations {
            let transcript = vec![
                store
                    .new_record(&mut run, "response")
                    .with("text", format!("iteration {n}")),
            ];
            let metrics = vec![
                store
                    .new_record(&mut run, "metrics")
                    .with("cost_usd", 0.01)
                    .with("status", "passed"),
            ];
            let status = if n == iterations {
                IterationStatus::Complete
            } else {
                IterationStatus::Failed
            };
            store
                .record_iteration(
                    &mut run,
                    NewIteration {
                        tree,
                        status,
                        summary: format!("iteration {n}"),
                        body: String::new(),
                        spec_revision: None,
                        transcript,
                        metrics,
                    },
                )
                .expect("record");
        }
        store.finish_run(&run).expect("finish run");
    }
}
