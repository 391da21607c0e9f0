//! Benchmark (run on demand, not a test): the share of input tokens served from the prompt
//! cache from the second iteration on, on a multi-iteration run of the `api` agent against the
//! loopback fake Messages API (the tests' `fake_anthropic`), on a repository of 2,000 small
//! source files. Each answer makes a small edit that adds a function, so the repository map
//! would change between iterations if it were rebuilt from the worktree.
//!
//! share = cache_read / (input + cache_read + cache_write), summed over iterations 2..n, with
//! the fake's token estimate (ceil(bytes / 4) of each block's canonical JSON).
//!
//!     cargo bench --bench cache    # MMM_BENCH_FILES, MMM_BENCH_ITERATIONS

#[path = "common/mod.rs"]
mod common;

#[allow(dead_code, unreachable_pub)]
#[path = "../tests/mmm/support/fake_anthropic.rs"]
mod fake;

use std::sync::Arc;
use std::time::Duration;

use mmm::agent::{ApiAgent, Auth, Cancel, ClientConfig, PriceTable, TokenUsage};
use mmm::clock::{SystemClock, UlidGen};
use mmm::context::Templates;
use mmm::engine::{DailyLedger, Event, Job, Redactor, Services, run_spec};
use mmm::store::{Store, StoreOptions};

use fake::{FakeAnthropic, KEY, Reply, Rule};

fn main() {
    let files = common::env_num("MMM_BENCH_FILES", 2000);
    let iterations = common::env_num("MMM_BENCH_ITERATIONS", 5) as u32;

    let dir = tempfile::tempdir().expect("tempdir");
    let repo = dir.path();
    let spec = common::build_repo(repo, files);
    let mut rule = Rule::new("# Iteration", Reply::text(&common::answer(1)));
    for n in 2..=iterations {
        rule = rule.then(Reply::text(&common::answer(n)));
    }
    let server = FakeAnthropic::start(vec![rule]);
    let mut config = ClientConfig::new(Auth::ApiKey(KEY.into()));
    config.base_url = server.base_url();
    config.retry.initial_backoff = Duration::from_millis(1);
    config.retry.max_backoff = Duration::from_millis(4);
    let agent = ApiAgent::new(config).expect("agent");

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
    let templates = Templates::builtin();
    let prices = PriceTable::builtin();
    let redactor = Redactor::new(Vec::new());
    let cancel = Cancel::new();
    let job = Job {
        spec: &spec,
        base,
        settings: common::settings(iterations),
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
    let mut usages: Vec<TokenUsage> = Vec::new();
    let outcome = run_spec(&services, &job, &mut |e| {
        if let Event::Recorded { tokens, .. } = e {
            usages.push(tokens);
        }
    })
    .expect("the loop runs");
    assert_eq!(outcome.iterations, iterations, "{}", outcome.detail);

    println!("prompt cache on a {iterations}-iteration run ({files} files, fake Messages API):");
    println!("  iteration   input  cache_read  cache_write  share");
    let mut later = TokenUsage::default();
    for (i, u) in usages.iter().enumerate() {
        let total = u.input_tokens + u.cache_read_input_tokens + u.cache_creation_input_tokens;
        println!(
            "  {:>9} {:>7} {:>11} {:>12} {:>5.1}%",
            i + 1,
            u.input_tokens,
            u.cache_read_input_tokens,
            u.cache_creation_input_tokens,
            100.0 * u.cache_read_input_tokens as f64 / total.max(1) as f64
        );
        if i > 0 {
            later.add(u);
        }
    }
    let total =
        later.input_tokens + later.cache_read_input_tokens + later.cache_creation_input_tokens;
    println!(
        "share of input tokens read from the cache, iterations 2..{iterations}: {:.1}% (goal: at least 80%)",
        100.0 * later.cache_read_input_tokens as f64 / total.max(1) as f64
    );
}
