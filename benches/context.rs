//! Benchmark (run on demand, not a test): recall of the context on real commits. For the last
//! N non-merge commits of a repository that change 1–5 source files and carry a message of
//! three words or more, the commit's message becomes a spec at the commit's parent; the
//! context is built with default settings, and the harness reports
//!
//! - all-files recall: the share of commits whose changed files (those that existed at the
//!   parent) all entered the prompt (whole, cut or outline), and the mean per-file recall;
//! - tokens per prompt, and the time per context build (median, p90), cold (walk, index, map)
//!   and warm (the run's tree and snapshot reused, as from the second iteration on);
//! - the same recall for a plain BM25 baseline: files ranked by BM25 of the message against
//!   each file's path and contents (words split on non-alphanumerics only), whole files in
//!   rank order into the same `budget_tokens`, the classic retrieval baseline of SWE-bench.
//!
//! Run it with:
//!
//!     MMM_BENCH_BUNDLE=../shared/bench-repos/tokio.bundle MMM_BENCH_N=100 \
//!         cargo bench --bench context
//!
//! MMM_BENCH_FILES_SHARE, MMM_BENCH_MAP_SHARE and MMM_BENCH_MAX_FILE_BYTES override the
//! defaults, to choose them; so do the ranking's weights (`RankWeights`, in tenths):
//! MMM_BENCH_W_DEFS, MMM_BENCH_W_FRAGMENTS, MMM_BENCH_W_COCHANGE, and MMM_BENCH_W_SPLIT (0
//! turns identifier splitting off), for the ablation table of docs/BENCHMARKS.md.

#[path = "common/mod.rs"]
mod common;

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mmm::context::{
    ContextInput, ContextOptions, Templates, TokenBudget, build_prompt, estimate_tokens,
    repo_snapshot, walk_tree,
};

const SOURCE: &[&str] = &[
    "rs", "py", "js", "ts", "tsx", "go", "c", "h", "cc", "cpp", "hpp", "java", "rb", "toml",
];

fn git(repo: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(repo)
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

struct Task {
    commit: String,
    message: String,
    /// Changed source files that existed at the parent.
    files: Vec<String>,
}

/// The last `n` commits that fit the benchmark, newest first.
fn tasks(repo: &Path, n: usize) -> Vec<Task> {
    let mut out = Vec::new();
    for commit in git(repo, &["rev-list", "--no-merges", "HEAD"]).lines() {
        if out.len() == n {
            break;
        }
        let message = git(repo, &["log", "-1", "--format=%B", commit]);
        if message.split_whitespace().count() < 3 {
            continue;
        }
        let changed = git(
            repo,
            &["diff-tree", "--no-commit-id", "--name-status", "-r", commit],
        );
        let rows: Vec<(&str, &str)> = changed.lines().filter_map(|l| l.split_once('\t')).collect();
        let source: Vec<&(&str, &str)> = rows
            .iter()
            .filter(|(_, p)| SOURCE.contains(&p.rsplit_once('.').map_or("", |(_, e)| e)))
            .collect();
        if source.is_empty() || source.len() > 5 {
            continue;
        }
        let files: Vec<String> = source
            .iter()
            .filter(|(s, _)| !s.starts_with('A'))
            .map(|(_, p)| (*p).to_owned())
            .collect();
        if files.is_empty() {
            continue;
        }
        out.push(Task {
            commit: commit.to_owned(),
            message,
            files,
        });
    }
    out
}

/// Plain BM25 over path and contents, whole files in rank order into `budget` tokens.
fn bm25_baseline(
    root: &Path,
    files: &BTreeSet<String>,
    query: &str,
    budget: usize,
) -> BTreeSet<String> {
    let words = |s: &str| -> Vec<String> {
        s.split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
            .collect()
    };
    let mut docs: Vec<(&String, HashMap<String, u32>, u32, usize)> = Vec::new();
    let mut df: HashMap<String, u32> = HashMap::new();
    for f in files {
        let Ok(bytes) = std::fs::read(root.join(f)) else {
            continue;
        };
        let Ok(text) = String::from_utf8(bytes) else {
            continue;
        };
        let mut tf: HashMap<String, u32> = HashMap::new();
        for w in words(f).into_iter().chain(words(&text)) {
            *tf.entry(w).or_default() += 1;
        }
        let len = tf.values().sum();
        for w in tf.keys() {
            *df.entry(w.clone()).or_default() += 1;
        }
        docs.push((f, tf, len, estimate_tokens(&text) + 10));
    }
    let n = docs.len() as f64;
    let avg = docs.iter().map(|d| f64::from(d.2)).sum::<f64>() / n.max(1.0);
    let q: BTreeSet<String> = words(query).into_iter().collect();
    let mut scored: Vec<(f64, &String, usize)> = docs
        .iter()
        .map(|(f, tf, len, tokens)| {
            let s: f64 = q
                .iter()
                .filter_map(|w| {
                    let t = f64::from(*tf.get(w)?);
                    let d = f64::from(df[w]);
                    let idf = (1.0 + (n - d + 0.5) / (d + 0.5)).ln();
                    Some(idf * t * 2.2 / (t + 1.2 * (0.25 + 0.75 * f64::from(*len) / avg)))
                })
                .sum();
            (s, *f, *tokens)
        })
        .filter(|(s, _, _)| *s > 0.0)
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)));
    let mut used = 0;
    let mut chosen = BTreeSet::new();
    for (_, f, tokens) in scored {
        if used + tokens <= budget {
            used += tokens;
            chosen.insert(f.clone());
        }
    }
    chosen
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let bundle = std::env::var("MMM_BENCH_BUNDLE")
        .unwrap_or_else(|_| "../shared/bench-repos/tokio.bundle".to_owned());
    let n = common::env_num("MMM_BENCH_N", 100);
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = dir.path().join("repo");
    let status = Command::new("git")
        .args(["-c", "advice.detachedHead=false", "clone", "-q", &bundle])
        .arg(&repo)
        .status()
        .expect("git clone");
    assert!(status.success(), "clone {bundle}");
    let tasks = tasks(&repo, n);
    let templates = Templates::builtin();
    // The defaults, or the values under test (for choosing the weights).
    let mut options = ContextOptions::default();
    options.files_share = common::env_num("MMM_BENCH_FILES_SHARE", options.files_share);
    options.map_share = common::env_num("MMM_BENCH_MAP_SHARE", options.map_share);
    options.max_file_bytes = common::env_num("MMM_BENCH_MAX_FILE_BYTES", options.max_file_bytes);
    let w = &mut options.ranking;
    let tenths = |name: &str, v: u32| common::env_num(name, v as usize) as u32;
    w.definitions = tenths("MMM_BENCH_W_DEFS", w.definitions);
    w.fragments = tenths("MMM_BENCH_W_FRAGMENTS", w.fragments);
    w.cochange = tenths("MMM_BENCH_W_COCHANGE", w.cochange);
    w.split_identifiers = common::env_num("MMM_BENCH_W_SPLIT", 1) != 0;
    println!("weights: {:?}", options.ranking);
    let (mut all_mmm, mut all_bm25, mut per_mmm, mut per_bm25) = (0, 0, 0.0, 0.0);
    let (mut cold, mut warm, mut tokens) = (Vec::new(), Vec::new(), Vec::new());
    let mut over_budget = 0;
    for task in &tasks {
        git(
            &repo,
            &[
                "-c",
                "advice.detachedHead=false",
                "checkout",
                "-q",
                "--detach",
                &format!("{}^", task.commit),
            ],
        );
        let subject = task.message.lines().next().unwrap_or_default();
        let mut input = ContextInput {
            worktree: repo.clone(),
            spec_id: "bench".to_owned(),
            spec_content: format!("# {subject}\n\n{}", task.message),
            iteration: 1,
            max_iterations: 3,
            budget: TokenBudget {
                window: 1_000_000,
                output_reserve: 16_000,
            },
            options: options.clone(),
            ..ContextInput::default()
        };
        let start = Instant::now();
        let tree = Arc::new(walk_tree(&input).expect("walk"));
        input.tree = Some(tree.clone());
        input.repo = Some(Arc::new(repo_snapshot(&input).expect("snapshot")));
        let prompt = build_prompt(&input, &templates).expect("build");
        cold.push(start.elapsed());
        let start = Instant::now();
        let again = build_prompt(&input, &templates).expect("build");
        warm.push(start.elapsed());
        assert_eq!(again.system, prompt.system);
        tokens.push(prompt.token_estimate);
        if prompt.token_estimate > options.budget_tokens {
            over_budget += 1;
        }
        let shown: BTreeSet<&str> = prompt.files.iter().map(|f| f.path.as_str()).collect();
        let hit = task
            .files
            .iter()
            .filter(|f| shown.contains(f.as_str()))
            .count();
        all_mmm += usize::from(hit == task.files.len());
        per_mmm += hit as f64 / task.files.len() as f64;
        let base = bm25_baseline(&repo, &tree.files, &task.message, options.budget_tokens);
        let hit = task.files.iter().filter(|f| base.contains(*f)).count();
        all_bm25 += usize::from(hit == task.files.len());
        per_bm25 += hit as f64 / task.files.len() as f64;
    }
    let k = tasks.len().max(1) as f64;
    cold.sort();
    warm.sort();
    tokens.sort_unstable();
    println!("repository {bundle}, {} commits", tasks.len());
    println!(
        "mmm:  all-files recall {:.0} %, mean per-file recall {:.0} %",
        100.0 * all_mmm as f64 / k,
        100.0 * per_mmm / k
    );
    println!(
        "BM25: all-files recall {:.0} %, mean per-file recall {:.0} % (whole files into {} tokens)",
        100.0 * all_bm25 as f64 / k,
        100.0 * per_bm25 / k,
        options.budget_tokens
    );
    if !tasks.is_empty() {
        println!(
            "tokens per prompt: median {}, p90 {}, max {}; over budget: {over_budget}",
            tokens[tokens.len() / 2],
            tokens[(tokens.len() - 1) * 9 / 10],
            tokens[tokens.len() - 1]
        );
        println!(
            "context build: cold median {:?}, p90 {:?}; warm median {:?}, p90 {:?}",
            pct(&cold, 0.5),
            pct(&cold, 0.9),
            pct(&warm, 0.5),
            pct(&warm, 0.9)
        );
    }
}
