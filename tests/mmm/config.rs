//! Tests of the config area: fixtures (valid and broken) with snapshots of the error messages,
//! the precedence of the layers, `MMM_*` variables, flags, the default file, and
//! `git mmm config` end to end.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mmm::config::{
    AgentKind, CheckpointAfter, Config, ConfigError, FlagValue, Origin, SourceFile, Sources,
    default_config_toml, load, repo_config_path, user_config_path,
};

use crate::support::TestRepo;

const REPO_FILE: &str = "/repo/.mmm/config.toml";
const USER_FILE: &str = "/home/u/.config/mmm/config.toml";

fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/config")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn repo_file(text: &str) -> Option<SourceFile> {
    Some(SourceFile {
        path: PathBuf::from(REPO_FILE),
        text: text.to_owned(),
    })
}

fn user_file(text: &str) -> Option<SourceFile> {
    Some(SourceFile {
        path: PathBuf::from(USER_FILE),
        text: text.to_owned(),
    })
}

/// The error message of loading a fixture as the repository file.
fn fixture_error(name: &str) -> String {
    let sources = Sources {
        repo: repo_file(&fixture(name)),
        ..Sources::default()
    };
    match load(&sources) {
        Ok(_) => panic!("{name} loaded without error"),
        Err(e) => format!("{e}\nhint: {}", e.hint()),
    }
}

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn repo_origin(line: usize) -> Origin {
    Origin::Repo {
        path: PathBuf::from(REPO_FILE),
        line,
    }
}

#[test]
fn valid_fixture_sets_every_section() {
    let sources = Sources {
        repo: repo_file(&fixture("valid.toml")),
        ..Sources::default()
    };
    let loaded = load(&sources).expect("valid.toml loads");
    let c = &loaded.config;
    assert_eq!(c.r#loop.max_iterations, 5);
    assert_eq!(c.r#loop.timeout, Duration::from_secs(90 * 60));
    assert!(!c.r#loop.auto_commit);
    assert_eq!(c.r#loop.checkpoint_after, Duration::from_secs(3));
    assert!(!c.r#loop.keep_worktrees);
    assert_eq!(c.specs.dir, "docs/specs");
    assert_eq!(c.agent.kind, AgentKind::Scripted);
    assert_eq!(c.agent.script.as_deref(), Some("fixtures/answers.jsonl"));
    assert_eq!(c.agent.max_turns, Some(12));
    assert_eq!(c.agent.permission_mode, "bypassPermissions");
    assert_eq!(c.agent.allowed_tools, vec!["Read", "Bash(cargo test *)"]);
    assert_eq!(c.agent.cost_regex.as_deref(), Some(r"Cost: \$([0-9.]+)"));
    assert_eq!(c.agent.request_timeout, Duration::from_secs(300));
    assert_eq!(c.model.context_window, 200_000);
    assert_eq!(c.budget.per_iteration_usd, 1.0);
    assert_eq!(c.budget.daily_tokens, Some(2_000_000));
    assert_eq!(c.validate.format.as_deref(), Some("cargo fmt --check"));
    assert_eq!(c.validate.custom["docs"], "cargo doc --no-deps");
    assert_eq!(c.commands.timeout, Duration::from_secs(30));
    assert_eq!(c.apply.deny, vec![".github/**", "secrets/**"]);
    assert!(!c.context.repo_map);
    assert_eq!(c.github.reviewers, vec!["alice", "bob"]);
    assert!(c.github.merge_on_approval);
    assert_eq!(
        c.github.api_url.as_deref(),
        Some("https://github.example.com/api/v3")
    );
    assert_eq!(c.github.repo.as_deref(), Some("octo/widgets"));
    assert_eq!(c.github.team_reviewers, vec!["core"]);
    assert_eq!(
        (
            c.github.needs_review_label.as_str(),
            c.github.stopped_label.as_str()
        ),
        ("review-me", "halted")
    );
    assert_eq!(c.github.merge_method, "squash");
    assert_eq!(c.github.secondary_wait, Duration::from_secs(120));
    assert!(c.github.pr);
    assert_eq!(c.github.review_poll, Duration::from_secs(5));
    assert_eq!(c.checkpoints.len(), 2);
    assert_eq!(c.checkpoints[0].after, CheckpointAfter::Iteration);
    assert!(!c.checkpoints[0].required);
    assert_eq!(c.checkpoints[0].timeout, Duration::from_secs(3600));
    // Missing fields of a checkpoint take their defaults.
    assert_eq!(c.checkpoints[1].after, CheckpointAfter::Complete);
    assert!(c.checkpoints[1].required);
    assert_eq!(c.checkpoints[1].timeout, Duration::from_secs(24 * 3600));
    assert_eq!(c.prices["claude-sonnet-5-5"].input, Some(3.0));
    assert_eq!(c.prices["claude-sonnet-5-5"].cache_read, Some(0.3));
    assert_eq!(c.secrets.redact, vec!["MY_TOKEN", "hunter2"]);
    assert_eq!(c.agent.complete_when, mmm::config::CompleteWhen::Checks);
    assert_eq!(c.agent.failure_pattern.as_deref(), Some("^Error: "));
    assert_eq!(c.agent.ignore, vec![".scratch/"]);
    assert_eq!(c.redact.env, vec!["MY_CORP_SECRET"]);
    assert_eq!(c.redact.patterns, vec!["corp_[0-9]{8}"]);
    assert_eq!(c.agent.retry_budget, Duration::from_secs(120));
    assert_eq!(c.agent.idle_timeout, Duration::from_secs(30));
    assert_eq!(c.agent.retry_backoff, Duration::from_millis(100));
    assert_eq!(c.sync.remote.as_deref(), Some("upstream"));
    assert!(c.sync.push);
    assert_eq!(c.sync.timeout, Duration::from_secs(45));
    assert_eq!(c.sync.attempts, 3);
    assert!(c.sync.lease);
    assert_eq!(c.sync.lease_ttl, Duration::from_secs(90));
    assert_eq!(c.context.budget_tokens, 30_000);
    assert_eq!(
        (
            c.context.map_share,
            c.context.files_share,
            c.context.memory_share
        ),
        (10, 70, 5)
    );
    assert_eq!(c.context.skip, vec!["**/*.lock", "gen/**"]);
    assert!(!c.context.skip_generated);

    // Origins name the line of each key.
    assert_eq!(loaded.origins["loop.max_iterations"], repo_origin(3));
    assert_eq!(loaded.origins["secrets.redact"], repo_origin(118));
    assert_eq!(loaded.origins["validate.custom.audit"], repo_origin(62));
    assert_eq!(
        loaded.origins["prices.claude-sonnet-5-5.output"],
        repo_origin(112)
    );
    assert_eq!(loaded.origins["checkpoints"], repo_origin(102));
    assert_eq!(
        loaded.origins["loop.max_iterations"].to_string(),
        "file:/repo/.mmm/config.toml:3"
    );
    // Every entry of this file comes from it.
    let entries = loaded.entries();
    assert!(
        entries.iter().all(|e| e.origin != Origin::Default),
        "{entries:#?}"
    );
}

#[test]
fn unknown_key_is_named_with_file_and_line() {
    insta::assert_snapshot!(fixture_error("unknown-key.toml"), @r#"
        /repo/.mmm/config.toml:3: unknown key `loop.colour`
        hint: remove the key or correct its name; `git mmm config` lists every key
        "#);
}

#[test]
fn typo_key_gets_a_suggestion() {
    insta::assert_snapshot!(fixture_error("typo-key.toml"), @r#"
        /repo/.mmm/config.toml:4: unknown key `loop.max_iteration` (did you mean `max_iterations`?)
        hint: remove the key or correct its name; `git mmm config` lists every key
        "#);
}

#[test]
fn bad_type_names_the_expected_type() {
    insta::assert_snapshot!(fixture_error("bad-type.toml"), @r#"
        /repo/.mmm/config.toml:7: `budget.daily_usd`: expected a number, found a string
        hint: correct the value; the file that `git mmm init` writes documents every key and its default
        "#);
}

#[test]
fn bad_duration_is_rejected() {
    insta::assert_snapshot!(fixture_error("bad-duration.toml"), @r#"
        /repo/.mmm/config.toml:2: `loop.timeout`: expected a duration such as "90s", "10m" or "2h", found "2 hourz" (unknown time unit "hourz", supported units: ns, us/µs, ms, sec, min, hours, days, weeks, months, years (and few variations))
        hint: correct the value; the file that `git mmm init` writes documents every key and its default
        "#);
}

#[test]
fn bad_enum_lists_the_choices() {
    insta::assert_snapshot!(fixture_error("bad-enum.toml"), @r#"
        /repo/.mmm/config.toml:2: `agent.kind`: expected one of "api", "claude-code", "command", "scripted", found "claude_code" (did you mean "claude-code"?)
        hint: correct the value; the file that `git mmm init` writes documents every key and its default
        "#);
}

#[test]
fn unknown_section_gets_a_suggestion() {
    insta::assert_snapshot!(fixture_error("unknown-section.toml"), @r#"
        /repo/.mmm/config.toml:4: unknown section `[lop]` (did you mean `loop`?)
        hint: the sections are loop, specs, agent, model, budget, validate, commands, apply, context, github, sync, hooks, secrets, redact, checkpoints, prices; `git mmm init` writes a file with every key documented
        "#);
}

#[test]
fn negative_budget_is_rejected() {
    insta::assert_snapshot!(fixture_error("negative-budget.toml"), @r#"
        /repo/.mmm/config.toml:2: `budget.per_spec_usd`: expected an amount greater than zero, found -5
        hint: correct the value; the file that `git mmm init` writes documents every key and its default
        "#);
}

#[test]
fn zero_iterations_is_rejected() {
    insta::assert_snapshot!(fixture_error("zero-iterations.toml"), @r#"
        /repo/.mmm/config.toml:2: `loop.max_iterations`: expected an integer from 1 to 10000, found 0
        hint: correct the value; the file that `git mmm init` writes documents every key and its default
        "#);
}

#[test]
fn malformed_toml_names_the_line() {
    insta::assert_snapshot!(fixture_error("malformed.toml"), @r#"
        /repo/.mmm/config.toml:3: invalid TOML: invalid basic string, expected `"`
        hint: fix the TOML syntax on that line (the format is described at https://toml.io)
        "#);
}

#[test]
fn bad_checkpoint_names_the_entry() {
    insta::assert_snapshot!(fixture_error("bad-checkpoint.toml"), @r#"
        /repo/.mmm/config.toml:5: `checkpoints[1].after`: expected one of "iteration", "complete", found "merge"
        hint: correct the value; the file that `git mmm init` writes documents every key and its default
        "#);
}

#[test]
fn bad_price_field_gets_a_suggestion() {
    insta::assert_snapshot!(fixture_error("bad-price.toml"), @r#"
        /repo/.mmm/config.toml:3: unknown key `prices.claude-x.outptu` (did you mean `output`?)
        hint: remove the key or correct its name; `git mmm config` lists every key
        "#);
}

#[test]
fn errors_in_the_user_file_name_the_user_file() {
    let sources = Sources {
        user: user_file("[model]\nmax_tokens = \"many\"\n"),
        repo: repo_file("[model]\nmax_tokens = 100\n"),
        ..Sources::default()
    };
    let err = load(&sources).expect_err("bad user file");
    assert_eq!(
        err.to_string(),
        "/home/u/.config/mmm/config.toml:2: `model.max_tokens`: expected an integer, found a string"
    );
}

/// The default file, as `git mmm init` writes it: generated from the one declaration of each
/// key, it must not change by accident.
#[test]
fn default_file_is_stable() {
    insta::assert_snapshot!(default_config_toml(), @r#"
    # mmm configuration (.mmm/config.toml). Every key is shown with its default value;
    # keys that are commented out have no default. Precedence: command-line flags >
    # MMM_<SECTION>_<KEY> environment variables > this file > ~/.config/mmm/config.toml >
    # built-in defaults. `git mmm config` shows the effective values and their origins.

    # How long and how often a spec is iterated.
    [loop]
    # Iterations per spec and run before the loop stops.
    max_iterations = 3
    # Wall-clock limit of one run of one spec.
    timeout = "2h"
    # Commit each iteration without asking (false: stop before committing and ask).
    auto_commit = true
    # Stop as stuck after this many iterations in a row with the same diff or failures.
    stuck_after = 2
    # Specs run at the same time.
    concurrency = 2
    # Checkpoint an iteration in flight to the run's wip ref once it has run this long.
    checkpoint_after = "1s"
    # Keep one worktree per spec between runs (reset to the run's start, ignored build outputs kept warm); `git mmm clean` removes them.
    keep_worktrees = true

    # Where the specs live.
    [specs]
    # Directory of the specs, relative to the repository root.
    dir = "specs"

    # Which agent answers the prompts, and how it is reached.
    [agent]
    # api | claude-code | command | scripted.
    kind = "api"
    # File of scripted answers for kind = "scripted", relative to the repository root.
    # script = "fixtures/answers.jsonl"
    # Base URL of the Messages API (default: the client's own).
    # api_base_url = "https://api.anthropic.com"
    # The anthropic-version header sent to the API.
    anthropic_version = "2023-06-01"
    # Retries of a failed request (429, 529, 5xx, network errors, a stalled stream) made whatever the time; more follow while within retry_budget.
    max_retries = 2
    # How long after a request's first attempt a retry may still start (honouring the API's retry-after): only a failure that outlasts it stops the run.
    retry_budget = "5m"
    # First wait before retrying a failure the API gave no retry-after for; it doubles with each retry (up to 8 s), with jitter.
    retry_backoff = "500ms"
    # Time limit of one request, streaming included.
    request_timeout = "10m"
    # A stream silent this long (no headers, no event) fails the attempt, which is retried.
    idle_timeout = "1m"
    # The `claude` executable for kind = "claude-code" (default: `claude` on PATH).
    # claude_path = "/usr/local/bin/claude"
    # Claude Code's --max-turns (default: Claude Code's own limit).
    # max_turns = 40
    # Claude Code's --permission-mode (the worktree is disposable and every change is gated).
    permission_mode = "acceptEdits"
    # Claude Code's --allowedTools, e.g. "Bash(cargo test *)".
    allowed_tools = []
    # Claude Code's --disallowedTools, e.g. "WebFetch".
    disallowed_tools = []
    # Command line of kind = "command"; placeholders {prompt_file} (else the prompt is on stdin), {worktree}, {model} (a provider prefix goes before it: anthropic/{model}), {budget_usd} (also $MMM_BUDGET_USD). This is docs/AGENTS.md's aider recipe.
    # command = "aider --model anthropic/{model} --edit-format diff --message-file {prompt_file} --yes-always --no-auto-commits --no-dirty-commits --no-gitignore --no-pretty --no-stream --no-check-update --no-show-release-notes --analytics-disable --no-suggest-shell-commands --no-show-model-warnings"
    # What completes a spec: "directive" (the agent's @mmm:complete and every check passing) or "checks" (every check passing, for CLIs that know no directives).
    complete_when = "directive"
    # Regex matched against each line of the command's output: a match fails the call although the command exited with 0 (aider reports a failed model call that way).
    # failure_pattern = "^litellm\\.[A-Za-z]*Error"
    # Paths (.gitignore patterns) that never enter an iteration commit: the scratch files of aider, Claude Code and codex. Nothing is written to .gitignore.
    ignore = [".aider*", ".claude/settings.local.json", ".codex/"]
    # Regex over the command's output whose first group is the cost in USD (last match wins).
    # cost_regex = "Cost: \\$[0-9.]+ message, \\$([0-9.]+) session"
    # Regex over the command's output with named groups `input` and `output` (token counts).
    # tokens_regex = "Tokens: (?P<input>[0-9.,k]+) sent, (?P<output>[0-9.,k]+) received"
    # Dotted path to the cost in USD in the last JSON line of the command's stdout.
    # cost_json_field = "total_cost_usd"
    # Dotted path to an object with input_tokens/output_tokens in that JSON line.
    # tokens_json_field = "usage"

    # Which models are used.
    [model]
    # Model of ordinary iterations.
    default = "claude-sonnet-5-5"
    # Model used after escalate_after failed iterations.
    escalate_to = "claude-opus-5-5"
    # Model for summaries and easy specs.
    small = "claude-haiku-5-5"
    # Output tokens per answer.
    max_tokens = 16000
    # Failed iterations in a row before switching to escalate_to.
    escalate_after = 2
    # The model's context window, in tokens.
    context_window = 1000000

    # Spending limits: a run stops before it would exceed one of them.
    [budget]
    # USD per iteration.
    per_iteration_usd = 2.0
    # USD per spec, over all its runs (what earlier runs spent counts).
    per_spec_usd = 10.0
    # USD per day over all specs.
    daily_usd = 50.0
    # Tokens (input and output) per iteration (default: no limit).
    # per_iteration_tokens = 200000
    # Tokens per spec, over all its runs (default: no limit).
    # per_spec_tokens = 1000000
    # Tokens per day over all specs (default: no limit).
    # daily_tokens = 10000000

    # Quality gates, run by mmm in the iteration's worktree (a gate that is not set is skipped).
    [validate]
    # Build command.
    # build = "cargo build"
    # Test command.
    # test = "cargo test"
    # Lint command.
    # lint = "cargo clippy -- -D warnings"
    # Format check command.
    # format = "cargo fmt --check"
    # Time limit of each gate.
    timeout = "10m"
    # More gates: [validate.custom], one command per name, e.g.
    # [validate.custom]
    # audit = "cargo audit"

    # Commands the model may ask mmm to run.
    [commands]
    # Glob-like patterns of command lines the model may run, e.g. "cargo test *".
    allow = []
    # Time limit of one command.
    timeout = "2m"
    # Output kept per command, in bytes.
    max_output_bytes = 65536

    # Paths that the model's edits may not touch.
    [apply]
    # Globs of paths the model may not edit.
    deny = [".github/workflows/**"]

    # What goes into the prompt.
    [context]
    # If set, only files matching these globs enter the repository map and the files ranked by relevance (files the spec names or the model touched enter anyway).
    include = []
    # Globs of files never included (.gitignore is honoured anyway).
    exclude = []
    # Files larger than this many bytes enter as an outline (their top-level signatures with line numbers), or not at all when mmm knows no outline for them.
    max_file_bytes = 32000
    # Tokens of the context window kept free for the answer.
    output_reserve = 16000
    # Include a map of the repository (paths and top-level items).
    repo_map = true
    # Tokens the prompt may use, instructions included; the model's context window minus output_reserve stays the hard ceiling, and the spec, its criteria and the latest failures are never dropped.
    budget_tokens = 40000
    # Percent of budget_tokens for the repository map (the most relevant files first).
    map_share = 5
    # Percent of budget_tokens for files: those the spec names, then by relevance.
    files_share = 85
    # Percent of budget_tokens for memory: summaries of earlier iterations and of the specs this one depends on.
    memory_share = 10
    # Globs of files that enter only when the spec's context names them: lock files, snapshots, machine-written text, test fixtures.
    skip = ["**/*.lock", "**/package-lock.json", "**/pnpm-lock.yaml", "**/go.sum", "**/*.svg", "**/*.snap", "**/*.golden", "**/*.min.js", "**/*.min.css", "**/*.map", "**/__snapshots__/**", "**/snapshots/**", "**/golden/**", "**/testdata/**", "**/test_data/**", "**/fixtures/**", "**/__fixtures__/**", "**/vendor/**", "**/node_modules/**"]
    # Also skip the files .gitattributes marks linguist-generated, linguist-vendored or -diff.
    skip_generated = true

    # Pull requests and review on GitHub.
    [github]
    # Logins asked to review each pull request.
    reviewers = []
    # Labels put on each pull request.
    labels = ["mmm"]
    # Open pull requests as drafts.
    draft = true
    # Open and keep the spec's pull request current during `git mmm run` (as --pr).
    pr = false
    # Merge the pull request when it is approved.
    merge_on_approval = false
    # The repository, owner/name (default: GITHUB_REPOSITORY, else the remote's URL).
    # repo = "octo/widgets"
    # Base URL of the REST API (default: GITHUB_API_URL, else https://api.github.com, or https://HOST/api/v3 for a GitHub Enterprise remote).
    # api_url = "https://github.example.com/api/v3"
    # The GraphQL endpoint (default: GITHUB_GRAPHQL_URL, else derived from api_url: .../graphql, or https://HOST/api/graphql on GitHub Enterprise).
    # graphql_url = "https://github.example.com/api/graphql"
    # Teams (slugs) asked to review each pull request when it becomes ready.
    team_reviewers = []
    # Label put on a pull request whose loop stopped asking for a human.
    needs_review_label = "mmm:needs-review"
    # Label put on a pull request whose loop stopped for another reason than complete.
    stopped_label = "mmm:stopped"
    # How merge_on_approval merges: merge | squash | rebase.
    merge_method = "merge"
    # The first wait after a secondary rate limit that gives no retry-after (then doubling, for a bounded number of tries).
    secondary_wait = "1m"
    # How often a required checkpoint asks GitHub for a review (conditional requests: an unchanged answer costs nothing against the rate limit).
    review_poll = "1m"

    # Sharing mmm's history through a git remote (`git mmm sync`, `git mmm run --push`).
    [sync]
    # The remote (default: the current branch's upstream, else "origin").
    # remote = "origin"
    # Push each recorded iteration and checkpoint, as `git mmm run --push`.
    push = false
    # Time limit of each fetch and each push.
    timeout = "2m"
    # Fetch-integrate-push rounds before giving up while the remote keeps moving.
    attempts = 8
    # Take each spec's single-writer lease on the remote before running it, as `git mmm run --lease`; a spec leased by a live runner elsewhere is skipped.
    lease = false
    # How long a lease lasts unless renewed (a run renews it every third of this).
    lease_ttl = "10m"

    # What the pre-push hook (`git mmm hooks install`) does when a push adds or changes specs.
    [hooks]
    # "run" (start those runs in the background, logs in .git/mmm/logs/), "announce" (only print what would run) or "off".
    on_push = "run"
    # Fail the push when mmm itself fails in the hook (false: warn and push).
    strict = false

    # What is redacted from transcripts and logs, besides the API tokens mmm knows.
    [secrets]
    # Literal values, or names of environment variables whose values are redacted.
    redact = []

    # More secrets to redact from everything mmm prints or writes, besides variables named *_KEY, *_TOKEN, *_SECRET, *_PASSWORD, *_PAT, *_ACCESS_KEY_ID, *_CREDENTIALS, AWS access key ids and the passwords of URLs.
    [redact]
    # Names of environment variables whose values are secrets (gates and the model's commands run without them).
    env = []
    # Regular expressions of secrets; with a group, only the group is redacted.
    patterns = []

    # Points where the loop waits for a human (default: none). A file that sets
    # checkpoints replaces the list of the files below it.
    # [[checkpoints]]
    # "iteration" (after every iteration) or "complete" (when the spec is done).
    # after = "complete"
    # The loop may not go on without an answer.
    # required = true
    # How long to wait for the answer before stopping.
    # timeout = "24h"

    # Prices in USD per million tokens: override or extend the built-in price table,
    # per model and per field (default: the built-in table only).
    # [prices."claude-sonnet-5-5"]
    # input = 3.0
    # output = 15.0
    # cache_write_5m = 3.75
    # cache_write_1h = 6.0
    # cache_read = 0.3
    "#);
}

#[test]
fn default_file_parses_back_into_the_defaults() {
    let text = default_config_toml();
    let sources = Sources {
        repo: repo_file(&text),
        ..Sources::default()
    };
    let loaded = load(&sources).expect("the default file loads");
    assert_eq!(loaded.config, Config::default());
    // Every key with a default is written out (not commented) in the file.
    for entry in loaded.entries() {
        if entry.key == "checkpoints" {
            assert_eq!(
                entry.origin,
                Origin::Default,
                "checkpoints are commented out"
            );
            continue;
        }
        assert!(
            matches!(entry.origin, Origin::Repo { .. }),
            "{} is not set in the default file",
            entry.key
        );
    }
    // Uncommenting the examples still gives a valid file.
    let uncommented: String = text
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest) if is_setting(rest) => rest,
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let sources = Sources {
        repo: repo_file(&uncommented),
        ..Sources::default()
    };
    let loaded = load(&sources).expect("the uncommented default file loads");
    assert_eq!(loaded.config.checkpoints.len(), 1);
    assert_eq!(loaded.config.validate.custom["audit"], "cargo audit");
    assert_eq!(loaded.config.budget.daily_tokens, Some(10_000_000));
}

/// A commented-out line of the default file that is a setting or a table header.
fn is_setting(line: &str) -> bool {
    line.starts_with('[')
        || line.split_once(" = ").is_some_and(|(k, _)| {
            !k.is_empty()
                && k.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        })
}

/// `loop.max_iterations` set at every layer, then the layers removed one by one.
#[test]
fn precedence_is_flag_env_repo_user_default() {
    let mut sources = Sources {
        user: user_file("[loop]\nmax_iterations = 2\n"),
        repo: repo_file("\n[loop]\nmax_iterations = 3\n"),
        env: env(&[("MMM_LOOP_MAX_ITERATIONS", "4")]),
        flags: vec![FlagValue {
            key: "loop.max_iterations".to_owned(),
            value: "5".to_owned(),
            flag: "--max-iterations".to_owned(),
        }],
    };
    let expect = |sources: &Sources, value: u64, origin: &str| {
        let loaded = load(sources).expect("loads");
        assert_eq!(loaded.config.r#loop.max_iterations, value);
        assert_eq!(loaded.origins["loop.max_iterations"].to_string(), origin);
        let entry = loaded
            .get("loop.max_iterations")
            .expect("known key")
            .expect("has a value");
        assert_eq!(entry.value, value.to_string());
    };
    expect(&sources, 5, "flag:--max-iterations");
    sources.flags.clear();
    expect(&sources, 4, "env:MMM_LOOP_MAX_ITERATIONS");
    sources.env.clear();
    expect(&sources, 3, "file:/repo/.mmm/config.toml:3");
    sources.repo = None;
    expect(&sources, 2, "file:/home/u/.config/mmm/config.toml:2");
    sources.user = None;
    expect(&sources, 3, "default");
}

#[test]
fn layers_merge_key_by_key() {
    let sources = Sources {
        user: user_file(
            "[model]\ndefault = \"claude-user\"\n[github]\nreviewers = [\"alice\"]\n\
             [prices.m]\ninput = 1.0\noutput = 2.0\n[[checkpoints]]\nafter = \"iteration\"\n\
             [validate.custom]\naudit = \"cargo audit\"\n",
        ),
        repo: repo_file(
            "[model]\nsmall = \"claude-small\"\n[prices.m]\noutput = 5.0\n\
             [[checkpoints]]\nafter = \"complete\"\n[[checkpoints]]\nrequired = false\n\
             [validate.custom]\ndocs = \"cargo doc\"\n",
        ),
        ..Sources::default()
    };
    let loaded = load(&sources).expect("loads");
    let c = &loaded.config;
    assert_eq!(c.model.default, "claude-user");
    assert_eq!(c.model.small, "claude-small");
    assert_eq!(c.model.escalate_to, "claude-opus-5-5");
    assert_eq!(c.github.reviewers, vec!["alice"]);
    // Prices merge per field, custom gates per name; checkpoints are replaced as a list.
    assert_eq!(c.prices["m"].input, Some(1.0));
    assert_eq!(c.prices["m"].output, Some(5.0));
    assert_eq!(c.validate.custom.len(), 2);
    assert_eq!(c.checkpoints.len(), 2);
    assert_eq!(c.checkpoints[0].after, CheckpointAfter::Complete);
    assert!(!c.checkpoints[1].required);
    assert!(matches!(
        loaded.origins["prices.m.input"],
        Origin::User { line: 6, .. }
    ));
    assert!(matches!(
        loaded.origins["prices.m.output"],
        Origin::Repo { line: 4, .. }
    ));
    assert_eq!(loaded.origins["model.escalate_to"], Origin::Default);
}

#[test]
fn env_variables_are_parsed_by_the_key_kind() {
    let sources = Sources {
        env: env(&[
            ("MMM_BUDGET_PER_SPEC_USD", "3"),
            ("MMM_BUDGET_DAILY_TOKENS", "1_000"),
            ("MMM_GITHUB_LABELS", "mmm, bot ,"),
            ("MMM_LOOP_AUTO_COMMIT", "false"),
            ("MMM_LOOP_TIMEOUT", "30m"),
            ("MMM_AGENT_KIND", "claude-code"),
            ("MMM_MODEL_DEFAULT", "claude-x"),
            // Not configuration: other sections and other variables are ignored.
            ("MMM_KILL_POINT", "after-notes"),
            ("MMM", "1"),
            ("PATH", "/bin"),
        ]),
        ..Sources::default()
    };
    let loaded = load(&sources).expect("loads");
    let c = &loaded.config;
    assert_eq!(c.budget.per_spec_usd, 3.0);
    assert_eq!(c.budget.daily_tokens, Some(1000));
    assert_eq!(c.github.labels, vec!["mmm", "bot"]);
    assert!(!c.r#loop.auto_commit);
    assert_eq!(c.r#loop.timeout, Duration::from_secs(1800));
    assert_eq!(c.agent.kind, AgentKind::ClaudeCode);
    assert_eq!(c.model.default, "claude-x");
    let entry = loaded.get("github.labels").expect("known").expect("set");
    assert_eq!(entry.value, r#"["mmm", "bot"]"#);
    assert_eq!(entry.origin.to_string(), "env:MMM_GITHUB_LABELS");
}

#[test]
fn env_errors_name_the_variable() {
    let err = |pairs: &[(&str, &str)]| -> ConfigError {
        load(&Sources {
            env: env(pairs),
            ..Sources::default()
        })
        .expect_err("bad variable")
    };
    let e = err(&[("MMM_LOOP_MAX_ITERATION", "5")]);
    insta::assert_snapshot!(format!("{e}\nhint: {}", e.hint()), @r#"
        MMM_LOOP_MAX_ITERATION: unknown key `loop.max_iteration` (did you mean `max_iterations`?)
        hint: unset the variable or correct its name: MMM_<SECTION>_<KEY> must name a known key; `git mmm config` lists every key
        "#);
    insta::assert_snapshot!(err(&[("MMM_BUDGET_DAILY_USD", "lots")]), @r#"MMM_BUDGET_DAILY_USD: `budget.daily_usd`: expected a number, found "lots""#);
    insta::assert_snapshot!(err(&[("MMM_LOOP_AUTO_COMMIT", "maybe")]), @r#"MMM_LOOP_AUTO_COMMIT: `loop.auto_commit`: expected true or false, found "maybe""#);
}

#[test]
fn flag_errors_name_the_flag() {
    let flag = |key: &str, value: &str| Sources {
        flags: vec![FlagValue {
            key: key.to_owned(),
            value: value.to_owned(),
            flag: "--max-iterations".to_owned(),
        }],
        ..Sources::default()
    };
    let e = load(&flag("loop.max_iterations", "-1")).expect_err("negative");
    insta::assert_snapshot!(e, @"--max-iterations: `loop.max_iterations`: expected an integer from 1 to 10000, found -1");
    let e = load(&flag("loop.max_iteration", "2")).expect_err("unknown key");
    insta::assert_snapshot!(e, @"--max-iterations: unknown key `loop.max_iteration` (did you mean `loop.max_iterations`?)");
}

#[test]
fn unknown_and_unset_keys_are_told_apart() {
    let loaded = load(&Sources::default()).expect("defaults");
    assert_eq!(loaded.get("validate.build").expect("known key"), None);
    assert_eq!(
        loaded.get("validate.custom.audit").expect("known key"),
        None
    );
    assert_eq!(loaded.get("prices.m.input").expect("known key"), None);
    let e = loaded.get("loop.timout").expect_err("unknown key");
    insta::assert_snapshot!(e, @"unknown key `loop.timout` (did you mean `loop.timeout`?)");
}

#[test]
fn config_file_paths() {
    let home = Path::new("/home/u");
    assert_eq!(
        user_config_path(Some(home), None),
        Some(PathBuf::from("/home/u/.config/mmm/config.toml"))
    );
    assert_eq!(
        user_config_path(Some(home), Some(Path::new("/xdg"))),
        Some(PathBuf::from("/xdg/mmm/config.toml"))
    );
    // A relative XDG_CONFIG_HOME is invalid by the XDG spec and ignored.
    assert_eq!(
        user_config_path(Some(home), Some(Path::new("rel"))),
        Some(PathBuf::from("/home/u/.config/mmm/config.toml"))
    );
    assert_eq!(user_config_path(None, None), None);
    assert_eq!(
        repo_config_path(Path::new("/repo")),
        PathBuf::from("/repo/.mmm/config.toml")
    );
}

/// The repository, the user file (under the private HOME's XDG dir) and a variable.
fn configured_repo() -> TestRepo {
    let repo = TestRepo::new();
    repo.write(
        ".mmm/config.toml",
        "[loop]\nmax_iterations = 4\n\n[github]\nlabels = [\"mmm\", \"auto\"]\n",
    );
    let user = repo.home.join(".config/mmm/config.toml");
    std::fs::create_dir_all(user.parent().expect("has a parent")).expect("mkdir");
    std::fs::write(&user, "[model]\ndefault = \"claude-mine\"\n").expect("write user file");
    repo
}

#[test]
fn git_mmm_config_shows_origins() {
    let repo = configured_repo();
    let out = repo
        .mmm_cmd()
        .args(["config"])
        .env("MMM_BUDGET_DAILY_USD", "7.5")
        .output()
        .expect("run git-mmm");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let repo_file = repo.path.join(".mmm/config.toml");
    let user_file = repo.home.join(".config/mmm/config.toml");
    for line in [
        format!("file:{}:2\tloop.max_iterations = 4", repo_file.display()),
        format!(
            "file:{}:5\tgithub.labels = [\"mmm\", \"auto\"]",
            repo_file.display()
        ),
        format!(
            "file:{}:2\tmodel.default = \"claude-mine\"",
            user_file.display()
        ),
        "env:MMM_BUDGET_DAILY_USD\tbudget.daily_usd = 7.5".to_owned(),
        "default\tloop.timeout = \"2h\"".to_owned(),
        "default\tcheckpoints = []".to_owned(),
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in:\n{text}"
        );
    }
    // Sorted by key, one line per key.
    let keys: Vec<&str> = text
        .lines()
        .map(|l| {
            l.split('\t')
                .nth(1)
                .and_then(|kv| kv.split(" = ").next())
                .unwrap_or("")
        })
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);

    // One key: the bare value.
    assert_eq!(repo.mmm_ok(&["config", "loop.max_iterations"]), "4\n");
    assert_eq!(repo.mmm_ok(&["config", "model.default"]), "claude-mine\n");
}

#[test]
fn git_mmm_config_json() {
    let repo = configured_repo();
    let out = repo.mmm_ok(&["config", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&out).expect("valid JSON");
    let entries = json.as_array().expect("an array");
    let find = |key: &str| {
        entries
            .iter()
            .find(|e| e["key"] == key)
            .unwrap_or_else(|| panic!("{key} missing"))
    };
    let e = find("loop.max_iterations");
    assert_eq!(e["value"], 4);
    assert_eq!(
        e["origin"],
        format!("file:{}:2", repo.path.join(".mmm/config.toml").display())
    );
    assert_eq!(
        find("github.labels")["value"],
        serde_json::json!(["mmm", "auto"])
    );
    assert_eq!(find("loop.timeout")["value"], "2h");
    assert_eq!(find("loop.timeout")["origin"], "default");

    let one: serde_json::Value =
        serde_json::from_str(&repo.mmm_ok(&["config", "--json", "model.default"]))
            .expect("valid JSON");
    assert_eq!(one["value"], "claude-mine");
}

#[test]
fn git_mmm_config_outside_a_repository_uses_user_env_and_defaults() {
    let repo = configured_repo();
    let outside = repo.dir.path().join("elsewhere");
    std::fs::create_dir_all(&outside).expect("mkdir");
    let out = crate::support::mmm_cmd(&outside, &repo.home)
        .args(["config", "loop.max_iterations"])
        .env("GIT_CEILING_DIRECTORIES", repo.dir.path())
        .output()
        .expect("run git-mmm");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "3\n");
}

#[test]
fn git_mmm_config_reports_bad_files_with_a_hint() {
    let repo = TestRepo::new();
    repo.write(".mmm/config.toml", "[loop]\nmax_iteration = 4\n");
    let out = repo.mmm(&["config"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr).replace(
        &repo.path.join(".mmm/config.toml").display().to_string(),
        "<repo>/.mmm/config.toml",
    );
    insta::assert_snapshot!(stderr, @r#"
        error: <repo>/.mmm/config.toml:2: unknown key `loop.max_iteration` (did you mean `max_iterations`?)
        hint: remove the key or correct its name; `git mmm config` lists every key
        "#);

    let repo = TestRepo::new();
    let out = repo.mmm(&["config", "loop.nope"]);
    assert_eq!(out.status.code(), Some(2));
    let out = repo.mmm(&["config", "validate.build"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn odd_shapes_are_reported_in_file_order() {
    let err = |text: &str| {
        load(&Sources {
            repo: repo_file(text),
            ..Sources::default()
        })
        .expect_err("bad file")
        .to_string()
    };
    // The first bad key in the file is reported, not the first in alphabetical order.
    insta::assert_snapshot!(err("[loop]\nzzz = 1\naaa = 2\n"), @"/repo/.mmm/config.toml:2: unknown key `loop.zzz`");
    insta::assert_snapshot!(err("loop = 3\n"), @"/repo/.mmm/config.toml:1: `loop`: expected a table ([loop]), found an integer");
    insta::assert_snapshot!(err("verbose = true\n"), @"/repo/.mmm/config.toml:1: unknown key `verbose`");
    insta::assert_snapshot!(err("[validate.custom]\naudit = 3\n"), @"/repo/.mmm/config.toml:2: `validate.custom.audit`: expected a string, found an integer");
    insta::assert_snapshot!(err("checkpoints = \"always\"\n"), @"/repo/.mmm/config.toml:1: `checkpoints`: expected an array of tables ([[checkpoints]]), found a string");
    insta::assert_snapshot!(err("[[checkpoints]]\nafter = \"complete\"\nrequierd = true\n"), @"/repo/.mmm/config.toml:3: unknown key `checkpoints[0].requierd` (did you mean `required`?)");
    insta::assert_snapshot!(err("[github]\nlabels = [\"mmm\", 3]\n"), @"/repo/.mmm/config.toml:2: `github.labels`: expected an array of strings, found an integer at index 1");
    insta::assert_snapshot!(err("[agent]\napi_base_url = \"localhost:8080\"\n"), @r#"/repo/.mmm/config.toml:2: `agent.api_base_url`: expected an http:// or https:// URL, found "localhost:8080""#);
}
