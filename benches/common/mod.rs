//! Shared by the loop benchmarks: a synthetic repository of small Rust files committed with the
//! real `git`, a spec for it, engine settings without gates, and an agent wrapper that times
//! the model call so that it can be subtracted from an iteration.

#![allow(dead_code)]

use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use mmm::agent::{Agent, AgentError, AgentEvent, AgentReply, AgentRequest, Cancel};
use mmm::apply::{ApplyPolicy, CommandPolicy};
use mmm::context::{ContextOptions, TokenBudget};
use mmm::engine::{Limits, Settings};
use mmm::spec::Spec;
use mmm::validate::GateOptions;

/// The model the benches ask for (priced in the built-in table).
pub const MODEL: &str = "claude-sonnet-5-5";

/// Reads a number from the environment (benches are programs, not library code).
pub fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs `git` in `repo` with a fixed identity.
pub fn git(repo: &Path, args: &[&str]) {
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

/// The relative path of the `i`-th generated source file (20 × 10 × 10 nested directories).
pub fn source_path(i: usize) -> String {
    format!("src/m{:02}/s{}/f{:02}.rs", i / 100, (i / 10) % 10, i % 10)
}

/// The text of a generated source file, with `extra` functions appended.
pub fn source_text(i: usize, extra: &[String]) -> String {
    let mut s = format!(
        "//! Module {i}.\n\npub struct Item{i} {{\n    pub value: u64,\n}}\n\n\
         pub fn make_{i}(value: u64) -> Item{i} {{\n    Item{i} {{ value }}\n}}\n\n\
         pub fn double_{i}(item: &Item{i}) -> u64 {{\n    item.value * 2\n}}\n"
    );
    for f in extra {
        s.push('\n');
        s.push_str(f);
    }
    s
}

/// The spec the benches run.
pub const SPEC: &str = "# Counters\n\n## Objective\n\nGive the items of the modules listed under \
context a counter function that returns how often an item was made.\n\n## Context\n\n\
- `src/m00/s0/f00.rs`\n- `src/m00/s0/f01.rs`\n\n## Acceptance criteria\n\n\
- Each listed module has a counter function.\n";

/// Creates a repository of `files` small Rust files in nested directories, a `Cargo.toml`
/// and `specs/counters.md`, all in one commit; returns the spec.
pub fn build_repo(repo: &Path, files: usize) -> Spec {
    git(repo, &["init", "--quiet", "--initial-branch=main"]);
    std::fs::write(
        repo.join("Cargo.toml"),
        "[package]\nname = \"bench-project\"\nversion = \"0.1.0\"\nedition = \"2024\"\n",
    )
    .expect("write Cargo.toml");
    for i in 0..files {
        let path = repo.join(source_path(i));
        std::fs::create_dir_all(path.parent().expect("has a parent")).expect("mkdir");
        std::fs::write(&path, source_text(i, &[])).expect("write source");
    }
    std::fs::create_dir_all(repo.join("specs")).expect("mkdir specs");
    std::fs::write(repo.join("specs/counters.md"), SPEC).expect("write spec");
    git(repo, &["add", "--all"]);
    git(
        repo,
        &["commit", "--quiet", "--message", "synthetic project"],
    );
    Spec::parse(Path::new("specs/counters.md"), SPEC.as_bytes()).expect("the bench spec parses")
}

/// The answer of iteration `n`: rewrites one of the files listed in the spec with one more
/// function (a small edit whose diff differs every time), and a summary.
pub fn answer(n: u32) -> String {
    let i = (n as usize) % 2;
    let extra: Vec<String> = (1..=n)
        .filter(|k| (*k as usize) % 2 == i)
        .map(|k| format!("pub fn counter_{k}() -> u64 {{\n    {k}\n}}\n"))
        .collect();
    let path = source_path(i);
    format!(
        "Adding a counter.\n\n```rust path={path}\n{}```\n\n@mmm:summary added counter_{n} to {path}\n",
        source_text(i, &extra)
    )
}

/// Settings for `iterations` iterations without gates or budgets.
pub fn settings(iterations: u32) -> Settings {
    Settings {
        max_iterations: iterations,
        timeout: Duration::from_secs(3600),
        stuck_after: 0,
        model: MODEL.into(),
        escalate_to: None,
        escalate_after: 0,
        max_tokens: 8192,
        limits: Limits::default(),
        gates: Vec::new(),
        gate_options: GateOptions::default(),
        apply_policy: ApplyPolicy::default(),
        command_policy: CommandPolicy {
            allow: Vec::new(),
            timeout: Duration::from_secs(10),
            max_output_bytes: 10_000,
            env_remove: Vec::new(),
        },
        context: ContextOptions::default(),
        token_budget: TokenBudget::default(),
        checkpoint_after_iteration: false,
        checkpoint_after_complete: false,
        checkpoint_timeout: Duration::from_secs(3600),
        review_poll: Duration::from_secs(1),
        hostile_after: 2,
        worktree_root: None,
        keep_worktree: false,
        checkpoint_after: Duration::from_secs(1),
        complete_when: Default::default(),
        ignore: Vec::new(),
    }
}

/// Wraps an agent and records how long each call took, so that the model's time can be
/// subtracted from the iteration's.
pub struct Timed<A> {
    /// The wrapped agent.
    pub inner: A,
    /// Duration of each call, in order.
    pub calls: Mutex<Vec<Duration>>,
}

impl<A> Timed<A> {
    /// Wraps `inner`.
    pub fn new(inner: A) -> Self {
        Timed {
            inner,
            calls: Mutex::new(Vec::new()),
        }
    }
}

impl<A: Agent> Agent for Timed<A> {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn invoke(
        &self,
        request: &AgentRequest<'_>,
        cancel: &Cancel,
        events: &mut dyn FnMut(AgentEvent),
    ) -> Result<AgentReply, AgentError> {
        let t = Instant::now();
        let r = self.inner.invoke(request, cancel, events);
        self.calls.lock().expect("not poisoned").push(t.elapsed());
        r
    }
}

/// The median of `v` (sorted in place); zero when empty.
pub fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

/// `p`-th percentile (0..=100) of a sorted slice.
pub fn percentile(sorted: &[Duration], p: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[(sorted.len() - 1) * p / 100]
}

/// Milliseconds with a fraction.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
