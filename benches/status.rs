//! Benchmark (run on demand, not a test): `git mmm status` over a synthetic history of
//! 1,000 specs × 10 iterations, compared with `git for-each-ref refs/heads/mmm` on the same
//! repository. Prints the median wall time and the peak memory of the `status` process
//! (`MMM_BENCH_KEEP=1` keeps the repository for a closer look).
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
    // The history is built by a child process (this program again): a child inherits its
    // parent's peak memory in its own, so a parent that had built 10,000 iterations would
    // inflate the memory measured for `status`.
    if let Some(dir) = std::env::var_os("MMM_BENCH_BUILD_INTO") {
        build_history(Path::new(&dir), specs, iterations);
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = dir.path();
    let keep = std::env::var_os("MMM_BENCH_KEEP").is_some();
    if keep {
        println!("keeping the repository at {}", repo.display());
    }
    let t = Instant::now();
    let status = Command::new(std::env::current_exe().expect("this program"))
        .env("MMM_BENCH_BUILD_INTO", repo)
        .status()
        .expect("build the history");
    assert!(status.success(), "building the history failed");
    println!(
        "built {specs} specs × {iterations} iterations ({} commits with 2 notes each) in {:.1}s",
        specs * iterations as usize,
        t.elapsed().as_secs_f64()
    );
    let packs: Vec<u64> = std::fs::read_dir(repo.join(".git/objects/pack"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "pack"))
                .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
                .collect()
        })
        .unwrap_or_default();
    println!(
        "objects: {} packs, {:.1} MB",
        packs.len(),
        packs.iter().sum::<u64>() as f64 / 1e6
    );

    let bin = env!("CARGO_BIN_EXE_git-mmm");
    let (mmm_median, mmm_peak) = measure(runs, || {
        let mut cmd = Command::new(bin);
        cmd.args(["status", "--json"]).current_dir(repo);
        cmd
    });
    let (git_median, _) = measure(runs, || {
        let mut cmd = Command::new("git");
        cmd.args(["for-each-ref", "refs/heads/mmm"])
            .current_dir(repo);
        cmd
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
    if keep {
        let _ = dir.keep();
    }
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

/// Runs the command `make` builds `runs` times; returns the median duration and the largest
/// peak RSS (KiB) of those processes, each read from its own `wait4` usage.
fn measure(runs: usize, mut make: impl FnMut() -> Command) -> (Duration, i64) {
    let mut peak = 0;
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            let child = make()
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("spawn");
            let pid = libc::pid_t::try_from(child.id()).expect("pid");
            let mut status = 0;
            // SAFETY: wait4 reaps our own child and writes into the zeroed struct we own; the
            // `Child` handle is forgotten so that it never waits for the reaped pid again.
            let usage = unsafe {
                let mut usage: libc::rusage = std::mem::zeroed();
                let r = libc::wait4(pid, &mut status, 0, &mut usage);
                assert_eq!(r, pid, "wait4");
                usage
            };
            std::mem::forget(child);
            let elapsed = t.elapsed();
            assert!(
                libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
                "the measured command failed"
            );
            peak = peak.max(usage.ru_maxrss);
            elapsed
        })
        .collect();
    times.sort();
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
        // A store per run, as each `git mmm run` process has its own.
        let store = Store::open(
            repo,
            StoreOptions::new(Arc::new(SystemClock), Arc::new(UlidGen)),
        )
        .expect("open store");
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
