//! Benchmark (run on demand, not a test): `git mmm sync` of a synthetic history of
//! 1,000 specs × 10 iterations, against plain git moving the same refs in the same run:
//!
//! * the first sync to an empty bare remote, against one `git push --atomic` of the same refs
//!   to another empty bare remote (goal: within 1.5×);
//! * a sync with nothing new, against a `git fetch` of the same refspecs with nothing new
//!   (goal: within 1.2×).
//!
//!     cargo bench --bench sync    # MMM_BENCH_SPECS, MMM_BENCH_ITERATIONS, MMM_BENCH_RUNS
//!
//! `MMM_BENCH_KEEP=1` keeps the directory for a closer look.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const REFSPECS: [&str; 3] = [
    "refs/heads/mmm/*:refs/heads/mmm/*",
    "refs/notes/mmm/*:refs/notes/mmm/*",
    "refs/mmm/*:refs/mmm/*",
];

fn main() {
    let specs = env_num("MMM_BENCH_SPECS", 1000);
    let iterations = env_num("MMM_BENCH_ITERATIONS", 10);
    let runs = env_num("MMM_BENCH_RUNS", 3).max(1);
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    if std::env::var_os("MMM_BENCH_KEEP").is_some() {
        println!("keeping {}", root.display());
    }
    let repo = root.join("repo");
    std::fs::create_dir_all(&repo).expect("mkdir");
    let t = Instant::now();
    build_history(&repo, specs, iterations);
    println!(
        "built {specs} specs × {iterations} iterations in {:.1}s",
        t.elapsed().as_secs_f64()
    );

    let mut first_mmm = Vec::new();
    let mut first_git = Vec::new();
    for run in 0..runs {
        let (mmm_remote, git_remote) = (format!("m{run}"), format!("g{run}"));
        for name in [&mmm_remote, &git_remote] {
            let bare = root.join(format!("{name}.git"));
            git(root, &["init", "-q", "--bare", &bare.display().to_string()]);
            git(&repo, &["remote", "add", name, &bare.display().to_string()]);
        }
        first_mmm.push(time(|| mmm(&repo, &["sync", "--remote", &mmm_remote])));
        let mut args = vec!["push", "-q", "--atomic", "--no-verify", git_remote.as_str()];
        args.extend(REFSPECS);
        first_git.push(time(|| git(&repo, &args)));
    }
    // The no-op: the last pair of remotes, both already holding every ref.
    let (mmm_remote, git_remote) = (format!("m{}", runs - 1), format!("g{}", runs - 1));
    let tracking = [
        format!("+refs/heads/mmm/*:refs/remotes/{git_remote}/mmm/*"),
        format!("+refs/notes/mmm/*:refs/notes/remotes/{git_remote}/mmm/*"),
        format!("+refs/mmm/*:refs/mmm-remotes/{git_remote}/*"),
    ];
    let mut fetch = vec!["fetch", "-q", "--no-tags", "--prune", git_remote.as_str()];
    fetch.extend(tracking.iter().map(String::as_str));
    git(&repo, &fetch);
    let noop_runs = runs.max(5);
    let noop_mmm: Vec<Duration> = (0..noop_runs)
        .map(|_| time(|| mmm(&repo, &["sync", "--remote", &mmm_remote])))
        .collect();
    let noop_git: Vec<Duration> = (0..noop_runs)
        .map(|_| time(|| git(&repo, &fetch)))
        .collect();

    let report = |what: &str, m: Vec<Duration>, g: Vec<Duration>, goal: f64| {
        let (m, g) = (median(m), median(g));
        println!(
            "{what}: git mmm sync {:>8.1} ms, plain git {:>8.1} ms, ratio {:.2}× (goal ≤ {goal}×)",
            ms(m),
            ms(g),
            m.as_secs_f64() / g.as_secs_f64()
        );
    };
    report("first sync", first_mmm, first_git, 1.5);
    report("no-op sync", noop_mmm, noop_git, 1.2);
    if std::env::var_os("MMM_BENCH_KEEP").is_some() {
        let _ = dir.keep();
    }
}

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn time(f: impl FnOnce()) -> Duration {
    let t = Instant::now();
    f();
    t.elapsed()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn git(dir: &Path, args: &[&str]) {
    let status = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "bench")
        .env("GIT_AUTHOR_EMAIL", "bench@example.com")
        .env("GIT_COMMITTER_NAME", "bench")
        .env("GIT_COMMITTER_EMAIL", "bench@example.com")
        .status()
        .expect("run git");
    assert!(status.success(), "git {args:?}");
}

fn mmm(dir: &Path, args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_git-mmm"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run git-mmm");
    assert!(
        out.status.success(),
        "git mmm {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One commit on `main`, then `iterations` synthetic iterations (with both notes) per spec,
/// each spec recorded by its own `git mmm plumbing record` process.
fn build_history(repo: &Path, specs: usize, iterations: usize) {
    git(repo, &["init", "-q", "--initial-branch=main"]);
    std::fs::write(repo.join("README.md"), "bench\n").expect("write");
    git(repo, &["add", "--all"]);
    git(repo, &["commit", "-q", "-m", "base"]);
    let n = iterations.to_string();
    for i in 0..specs {
        mmm(
            repo,
            &[
                "plumbing",
                "record",
                &format!("spec-{i:04}"),
                "--iterations",
                &n,
            ],
        );
    }
}
