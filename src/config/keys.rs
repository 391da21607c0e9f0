//! Every configuration key, declared once: its comment in the default file (which is also its
//! rustdoc), its name, type, default and kind. The structs, their `Default`s, the key schema
//! the layers check against and the commented default file all come from here (see
//! [`declare`](super::declare)). A new section is one more entry below.

// The doc comments are the default file's comments, where a URL is plain text.
#![allow(rustdoc::bare_urls)]

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::declare::settings;
use super::duration_serde;
use super::schema::{
    AGENT_KINDS, CHECKPOINT_AFTER, COMPLETE_WHEN, KeyDef, Kind, MERGE_METHODS, More, ON_PUSH,
    PERMISSION_MODES, Section,
};
use super::{AgentKind, CheckpointAfter, CompleteWhen};

settings! {
    /// The effective configuration. Every key has a default (see [`Config::default`] and
    /// [`default_config_toml`](super::default_config_toml)); the files, `MMM_*` variables and
    /// flags override them.
    pub struct Config;

    sections {
        /// How long and how often a spec is iterated.
        "loop" => r#loop: LoopConfig {
            /// Iterations per spec and run before the loop stops.
            max_iterations: u64 = 3, Kind::Bounded { min: 1, max: 10_000 };
            /// Wall-clock limit of one run of one spec.
            #[serde(with = "duration_serde")]
            timeout: Duration = Duration::from_secs(2 * 3600), Kind::Duration;
            /// Commit each iteration without asking (false: stop before committing and ask).
            auto_commit: bool = true, Kind::Bool;
            /// Stop as stuck after this many iterations in a row with the same diff or failures.
            stuck_after: u64 = 2, Kind::Count { min: 1 };
            /// Specs run at the same time.
            concurrency: u64 = 2, Kind::Count { min: 1 };
            /// Checkpoint an iteration in flight to the run's wip ref once it has run this long.
            #[serde(with = "duration_serde")]
            checkpoint_after: Duration = Duration::from_secs(1), Kind::Duration;
            /// Keep one worktree per spec between runs (reset to the run's start, ignored build
            /// outputs kept warm); `git mmm clean` removes them.
            keep_worktrees: bool = true, Kind::Bool;
        }

        /// Where the specs live.
        "specs" => specs: SpecsConfig {
            /// Directory of the specs, relative to the repository root.
            dir: String = "specs".to_owned(), Kind::RelPath;
        }

        /// Which agent answers the prompts, and how it is reached.
        "agent" => agent: AgentConfig {
            /// api | claude-code | command | scripted.
            kind: AgentKind = AgentKind::Api, Kind::Enum(AGENT_KINDS);
            /// File of scripted answers for kind = "scripted", relative to the repository root.
            #[serde(skip_serializing_if = "Option::is_none")]
            script: Option<String> = None, Kind::Str, example "\"fixtures/answers.jsonl\"";
            /// Base URL of the Messages API (default: the client's own).
            #[serde(skip_serializing_if = "Option::is_none")]
            api_base_url: Option<String> = None, Kind::Url,
                example "\"https://api.anthropic.com\"";
            /// The anthropic-version header sent to the API.
            anthropic_version: String = "2023-06-01".to_owned(), Kind::Str;
            /// Retries of a failed request (429, 529, 5xx, network errors, a stalled stream)
            /// made whatever the time; more follow while within retry_budget.
            max_retries: u64 = 2, Kind::Count { min: 0 };
            /// How long after a request's first attempt a retry may still start (honouring the
            /// API's retry-after): only a failure that outlasts it stops the run.
            #[serde(with = "duration_serde")]
            retry_budget: Duration = Duration::from_secs(300), Kind::Duration;
            /// First wait before retrying a failure the API gave no retry-after for; it doubles
            /// with each retry (up to 8 s), with jitter.
            #[serde(with = "duration_serde")]
            retry_backoff: Duration = Duration::from_millis(500), Kind::Duration;
            /// Time limit of one request, streaming included.
            #[serde(with = "duration_serde")]
            request_timeout: Duration = Duration::from_secs(600), Kind::Duration;
            /// A stream silent this long (no headers, no event) fails the attempt, which is
            /// retried.
            #[serde(with = "duration_serde")]
            idle_timeout: Duration = Duration::from_secs(60), Kind::Duration;
            /// The `claude` executable for kind = "claude-code" (default: `claude` on PATH).
            #[serde(skip_serializing_if = "Option::is_none")]
            claude_path: Option<String> = None, Kind::Str, example "\"/usr/local/bin/claude\"";
            /// Claude Code's --max-turns (default: Claude Code's own limit).
            #[serde(skip_serializing_if = "Option::is_none")]
            max_turns: Option<u64> = None, Kind::Count { min: 1 }, example "40";
            /// Claude Code's --permission-mode (the worktree is disposable and every change is
            /// gated).
            permission_mode: String = "acceptEdits".to_owned(), Kind::Enum(PERMISSION_MODES);
            /// Claude Code's --allowedTools, e.g. "Bash(cargo test *)".
            allowed_tools: Vec<String> = Vec::new(), Kind::List;
            /// Claude Code's --disallowedTools, e.g. "WebFetch".
            disallowed_tools: Vec<String> = Vec::new(), Kind::List;
            /// Command line of kind = "command"; placeholders {prompt_file} (else the prompt is
            /// on stdin), {worktree}, {model} (a provider prefix goes before it:
            /// anthropic/{model}), {budget_usd} (also $MMM_BUDGET_USD). This is docs/AGENTS.md's
            /// aider recipe.
            #[serde(skip_serializing_if = "Option::is_none")]
            command: Option<String> = None, Kind::Str,
                example "\"aider --model anthropic/{model} --edit-format diff --message-file \
                         {prompt_file} --yes-always --no-auto-commits --no-dirty-commits \
                         --no-gitignore --no-pretty --no-stream --no-check-update \
                         --no-show-release-notes --analytics-disable \
                         --no-suggest-shell-commands --no-show-model-warnings\"";
            /// What completes a spec: "directive" (the agent's @mmm:complete and every check
            /// passing) or "checks" (every check passing, for CLIs that know no directives).
            complete_when: CompleteWhen = CompleteWhen::Directive, Kind::Enum(COMPLETE_WHEN);
            /// Regex matched against each line of the command's output: a match fails the call
            /// although the command exited with 0 (aider reports a failed model call that way).
            #[serde(skip_serializing_if = "Option::is_none")]
            failure_pattern: Option<String> = None, Kind::Str,
                example "\"^litellm\\\\.[A-Za-z]*Error\"";
            /// Paths (.gitignore patterns) that never enter an iteration commit: the scratch
            /// files of aider, Claude Code and codex. Nothing is written to .gitignore.
            ignore: Vec<String> = default_agent_ignore(), Kind::List;
            /// Regex over the command's output whose first group is the cost in USD (last match
            /// wins).
            #[serde(skip_serializing_if = "Option::is_none")]
            cost_regex: Option<String> = None, Kind::Str,
                example "\"Cost: \\\\$[0-9.]+ message, \\\\$([0-9.]+) session\"";
            /// Regex over the command's output with named groups `input` and `output` (token
            /// counts).
            #[serde(skip_serializing_if = "Option::is_none")]
            tokens_regex: Option<String> = None, Kind::Str,
                example "\"Tokens: (?P<input>[0-9.,k]+) sent, (?P<output>[0-9.,k]+) received\"";
            /// Dotted path to the cost in USD in the last JSON line of the command's stdout.
            #[serde(skip_serializing_if = "Option::is_none")]
            cost_json_field: Option<String> = None, Kind::Str, example "\"total_cost_usd\"";
            /// Dotted path to an object with input_tokens/output_tokens in that JSON line.
            #[serde(skip_serializing_if = "Option::is_none")]
            tokens_json_field: Option<String> = None, Kind::Str, example "\"usage\"";
        }

        /// Which models are used.
        "model" => model: ModelConfig {
            /// Model of ordinary iterations.
            default: String = "claude-sonnet-5-5".to_owned(), Kind::Str;
            /// Model used after escalate_after failed iterations.
            escalate_to: String = "claude-opus-5-5".to_owned(), Kind::Str;
            /// Model for summaries and easy specs.
            small: String = "claude-haiku-5-5".to_owned(), Kind::Str;
            /// Output tokens per answer.
            max_tokens: u64 = 16000, Kind::Count { min: 1 };
            /// Failed iterations in a row before switching to escalate_to.
            escalate_after: u64 = 2, Kind::Count { min: 1 };
            /// The model's context window, in tokens.
            context_window: u64 = 1_000_000, Kind::Count { min: 1 };
        }

        /// Spending limits: a run stops before it would exceed one of them.
        "budget" => budget: BudgetConfig {
            /// USD per iteration.
            per_iteration_usd: f64 = 2.0, Kind::Usd;
            /// USD per spec, over all its runs (what earlier runs spent counts).
            per_spec_usd: f64 = 10.0, Kind::Usd;
            /// USD per day over all specs.
            daily_usd: f64 = 50.0, Kind::Usd;
            /// Tokens (input and output) per iteration (default: no limit).
            #[serde(skip_serializing_if = "Option::is_none")]
            per_iteration_tokens: Option<u64> = None, Kind::Count { min: 1 }, example "200000";
            /// Tokens per spec, over all its runs (default: no limit).
            #[serde(skip_serializing_if = "Option::is_none")]
            per_spec_tokens: Option<u64> = None, Kind::Count { min: 1 }, example "1000000";
            /// Tokens per day over all specs (default: no limit).
            #[serde(skip_serializing_if = "Option::is_none")]
            daily_tokens: Option<u64> = None, Kind::Count { min: 1 }, example "10000000";
        }

        /// Quality gates, run by mmm in the iteration's worktree (a gate that is not set is
        /// skipped).
        "validate" => validate: ValidateConfig {
            /// Build command.
            #[serde(skip_serializing_if = "Option::is_none")]
            build: Option<String> = None, Kind::Str, example "\"cargo build\"";
            /// Test command.
            #[serde(skip_serializing_if = "Option::is_none")]
            test: Option<String> = None, Kind::Str, example "\"cargo test\"";
            /// Lint command.
            #[serde(skip_serializing_if = "Option::is_none")]
            lint: Option<String> = None, Kind::Str, example "\"cargo clippy -- -D warnings\"";
            /// Format check command.
            #[serde(skip_serializing_if = "Option::is_none")]
            format: Option<String> = None, Kind::Str, example "\"cargo fmt --check\"";
            /// Time limit of each gate.
            #[serde(with = "duration_serde")]
            timeout: Duration = Duration::from_secs(600), Kind::Duration;
            more:
            /// `[validate.custom]`: more gates, name → command. Default: none.
            custom: BTreeMap<String, String> = BTreeMap::new(),
                file "# More gates: [validate.custom], one command per name, e.g.\n\
                      # [validate.custom]\n\
                      # audit = \"cargo audit\"\n";
        }

        /// Commands the model may ask mmm to run.
        "commands" => commands: CommandsConfig {
            /// Glob-like patterns of command lines the model may run, e.g. "cargo test *".
            allow: Vec<String> = Vec::new(), Kind::List;
            /// Time limit of one command.
            #[serde(with = "duration_serde")]
            timeout: Duration = Duration::from_secs(120), Kind::Duration;
            /// Output kept per command, in bytes.
            max_output_bytes: u64 = 65536, Kind::Count { min: 1 };
        }

        /// Paths that the model's edits may not touch.
        "apply" => apply: ApplyConfig {
            /// Globs of paths the model may not edit.
            deny: Vec<String> = vec![".github/workflows/**".to_owned()], Kind::List;
        }

        /// What goes into the prompt.
        "context" => context: ContextConfig {
            /// If set, only files matching these globs enter the repository map and the
            /// files ranked by relevance (files the spec names or the model touched enter anyway).
            include: Vec<String> = Vec::new(), Kind::List;
            /// Globs of files never included (.gitignore is honoured anyway).
            exclude: Vec<String> = Vec::new(), Kind::List;
            /// Files larger than this many bytes enter as an outline (their top-level
            /// signatures with line numbers), or not at all when mmm knows no outline for them.
            max_file_bytes: u64 = 32_000, Kind::Count { min: 1 };
            /// Tokens of the context window kept free for the answer.
            output_reserve: u64 = 16000, Kind::Count { min: 0 };
            /// Include a map of the repository (paths and top-level items).
            repo_map: bool = true, Kind::Bool;
            /// Tokens the prompt may use, instructions included; the model's context window
            /// minus output_reserve stays the hard ceiling, and the spec, its criteria and the
            /// latest failures are never dropped.
            budget_tokens: u64 = 40_000, Kind::Count { min: 1000 };
            /// Percent of budget_tokens for the repository map (the most relevant files first).
            map_share: u64 = 5, Kind::Count { min: 0 };
            /// Percent of budget_tokens for files: those the spec names, then by relevance.
            files_share: u64 = 85, Kind::Count { min: 0 };
            /// Percent of budget_tokens for memory: summaries of earlier iterations and of the
            /// specs this one depends on.
            memory_share: u64 = 10, Kind::Count { min: 0 };
            /// Globs of files that enter only when the spec's context names them: lock files,
            /// snapshots, machine-written text, test fixtures.
            skip: Vec<String> = super::default_skip(), Kind::List;
            /// Also skip the files .gitattributes marks linguist-generated, linguist-vendored
            /// or -diff.
            skip_generated: bool = true, Kind::Bool;
        }

        /// Pull requests and review on GitHub.
        "github" => github: GithubConfig {
            /// Logins asked to review each pull request.
            reviewers: Vec<String> = Vec::new(), Kind::List;
            /// Labels put on each pull request.
            labels: Vec<String> = vec!["mmm".to_owned()], Kind::List;
            /// Open pull requests as drafts.
            draft: bool = true, Kind::Bool;
            /// Open and keep the spec's pull request current during `git mmm run` (as --pr).
            pr: bool = false, Kind::Bool;
            /// Merge the pull request when it is approved.
            merge_on_approval: bool = false, Kind::Bool;
            /// The repository, owner/name (default: GITHUB_REPOSITORY, else the remote's URL).
            #[serde(skip_serializing_if = "Option::is_none")]
            repo: Option<String> = None, Kind::Str, example "\"octo/widgets\"";
            /// Base URL of the REST API (default: GITHUB_API_URL, else https://api.github.com,
            /// or https://HOST/api/v3 for a GitHub Enterprise remote).
            #[serde(skip_serializing_if = "Option::is_none")]
            api_url: Option<String> = None, Kind::Url,
                example "\"https://github.example.com/api/v3\"";
            /// The GraphQL endpoint (default: GITHUB_GRAPHQL_URL, else derived from api_url:
            /// .../graphql, or https://HOST/api/graphql on GitHub Enterprise).
            #[serde(skip_serializing_if = "Option::is_none")]
            graphql_url: Option<String> = None, Kind::Url,
                example "\"https://github.example.com/api/graphql\"";
            /// Teams (slugs) asked to review each pull request when it becomes ready.
            team_reviewers: Vec<String> = Vec::new(), Kind::List;
            /// Label put on a pull request whose loop stopped asking for a human.
            needs_review_label: String = "mmm:needs-review".to_owned(), Kind::Str;
            /// Label put on a pull request whose loop stopped for another reason than complete.
            stopped_label: String = "mmm:stopped".to_owned(), Kind::Str;
            /// How merge_on_approval merges: merge | squash | rebase.
            merge_method: String = "merge".to_owned(), Kind::Enum(MERGE_METHODS);
            /// The first wait after a secondary rate limit that gives no retry-after (then
            /// doubling, for a bounded number of tries).
            #[serde(with = "duration_serde")]
            secondary_wait: Duration = Duration::from_secs(60), Kind::Duration;
            /// How often a required checkpoint asks GitHub for a review (conditional requests:
            /// an unchanged answer costs nothing against the rate limit).
            #[serde(with = "duration_serde")]
            review_poll: Duration = Duration::from_secs(60), Kind::Duration;
        }

        /// Sharing mmm's history through a git remote (`git mmm sync`, `git mmm run --push`).
        "sync" => sync: SyncConfig {
            /// The remote (default: the current branch's upstream, else "origin").
            #[serde(skip_serializing_if = "Option::is_none")]
            remote: Option<String> = None, Kind::Str, example "\"origin\"";
            /// Push each recorded iteration and checkpoint, as `git mmm run --push`.
            push: bool = false, Kind::Bool;
            /// Time limit of each fetch and each push.
            #[serde(with = "duration_serde")]
            timeout: Duration = Duration::from_secs(120), Kind::Duration;
            /// Fetch-integrate-push rounds before giving up while the remote keeps moving.
            attempts: u64 = 8, Kind::Count { min: 1 };
            /// Take each spec's single-writer lease on the remote before running it, as
            /// `git mmm run --lease`; a spec leased by a live runner elsewhere is skipped.
            lease: bool = false, Kind::Bool;
            /// How long a lease lasts unless renewed (a run renews it every third of this).
            #[serde(with = "duration_serde")]
            lease_ttl: Duration = Duration::from_secs(600), Kind::Duration;
        }

        /// What the pre-push hook (`git mmm hooks install`) does when a push adds or changes
        /// specs.
        "hooks" => hooks: HooksConfig {
            /// "run" (start those runs in the background, logs in .git/mmm/logs/), "announce"
            /// (only print what would run) or "off".
            on_push: String = "run".to_owned(), Kind::Enum(ON_PUSH);
            /// Fail the push when mmm itself fails in the hook (false: warn and push).
            strict: bool = false, Kind::Bool;
        }

        /// What is redacted from transcripts and logs, besides the API tokens mmm knows.
        "secrets" => secrets: SecretsConfig {
            /// Literal values, or names of environment variables whose values are redacted.
            redact: Vec<String> = Vec::new(), Kind::List;
        }

        /// More secrets to redact from everything mmm prints or writes, besides variables
        /// named *_KEY, *_TOKEN, *_SECRET, *_PASSWORD, *_PAT, *_ACCESS_KEY_ID, *_CREDENTIALS,
        /// AWS access key ids and the passwords of URLs.
        "redact" => redact: RedactConfig {
            /// Names of environment variables whose values are secrets (gates and the
            /// model's commands run without them).
            env: Vec<String> = Vec::new(), Kind::List;
            /// Regular expressions of secrets; with a group, only the group is redacted.
            patterns: Vec<String> = Vec::new(), Kind::List;
        }
    }

    tables {
        /// `[[checkpoints]]`: where the loop waits for a human. Default: none. A layer that sets
        /// checkpoints replaces the whole list of the layers below it.
        "checkpoints" => checkpoints: Vec<Checkpoint>,
        /// `[prices."<model-id>"]`: overrides and extensions of the built-in price table, in USD
        /// per million tokens. Merged per model and per field across layers.
        "prices" => prices: BTreeMap<String, PriceOverride>,
    }
}

settings! {
    table
    /// `[[checkpoints]]`: a point where the loop waits for a human.
    "checkpoints" => Checkpoint, CHECKPOINT_KEYS {
        /// "iteration" (after every iteration) or "complete" (when the spec is done).
        after: CheckpointAfter = CheckpointAfter::Complete, Kind::Enum(CHECKPOINT_AFTER);
        /// The loop may not go on without an answer.
        required: bool = true, Kind::Bool;
        /// How long to wait for the answer before stopping.
        #[serde(with = "duration_serde")]
        timeout: Duration = Duration::from_secs(24 * 3600), Kind::Duration;
    }
}

settings! {
    table
    /// `[prices."<model-id>"]`: prices in USD per million tokens; unset fields keep the
    /// built-in price.
    "prices" => PriceOverride, PRICE_KEYS {
        /// Input tokens.
        #[serde(skip_serializing_if = "Option::is_none")]
        input: Option<f64> = None, Kind::Price;
        /// Output tokens.
        #[serde(skip_serializing_if = "Option::is_none")]
        output: Option<f64> = None, Kind::Price;
        /// Tokens written to the prompt cache with a 5-minute lifetime.
        #[serde(skip_serializing_if = "Option::is_none")]
        cache_write_5m: Option<f64> = None, Kind::Price;
        /// Tokens written to the prompt cache with a 1-hour lifetime.
        #[serde(skip_serializing_if = "Option::is_none")]
        cache_write_1h: Option<f64> = None, Kind::Price;
        /// Tokens read from the prompt cache.
        #[serde(skip_serializing_if = "Option::is_none")]
        cache_read: Option<f64> = None, Kind::Price;
    }
}

/// The scratch files of known agent CLIs, kept out of iteration commits: aider's chat and input
/// histories and tags cache (`.aider*`), Claude Code's local settings, codex's directory.
fn default_agent_ignore() -> Vec<String> {
    [".aider*", ".claude/settings.local.json", ".codex/"]
        .map(str::to_owned)
        .to_vec()
}
