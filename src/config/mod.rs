//! Configuration: built-in defaults, the user file, the repository's `.mmm/config.toml`,
//! `MMM_*` variables and flags, merged in that order, each value remembering its origin.
//!
//! Owns: the [`Config`] model, the key schema, the layering ([`load`]), the commented default
//! file ([`default_config_toml`]) and the configuration errors. Must not read the process
//! environment or any file itself: the CLI reads them and passes their content in
//! ([`Sources`]). Must not touch git, the network or the terminal.

mod error;
mod layer;
mod schema;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use error::{ConfigError, Location};
pub use layer::{
    Entry, FlagValue, Loaded, Origin, SourceFile, Sources, load, repo_config_path, user_config_path,
};
pub use schema::default_config_toml;

/// The effective configuration. Every key has a default (see [`Config::default`] and
/// [`default_config_toml`]); the files, `MMM_*` variables and flags override them.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `[loop]`: how long and how often a spec is iterated.
    #[serde(rename = "loop")]
    pub r#loop: LoopConfig,
    /// `[specs]`: where the specs live.
    pub specs: SpecsConfig,
    /// `[agent]`: which agent answers and how it is reached.
    pub agent: AgentConfig,
    /// `[model]`: which models are used.
    pub model: ModelConfig,
    /// `[budget]`: spending limits.
    pub budget: BudgetConfig,
    /// `[validate]`: the quality gates.
    pub validate: ValidateConfig,
    /// `[commands]`: the commands the model may ask to run.
    pub commands: CommandsConfig,
    /// `[apply]`: which paths edits may not touch.
    pub apply: ApplyConfig,
    /// `[context]`: what goes into the prompt.
    pub context: ContextConfig,
    /// `[github]`: pull requests and review.
    pub github: GithubConfig,
    /// `[[checkpoints]]`: where the loop waits for a human. Default: none. A layer that sets
    /// checkpoints replaces the whole list of the layers below it.
    pub checkpoints: Vec<Checkpoint>,
    /// `[prices."<model-id>"]`: overrides and extensions of the built-in price table, in USD
    /// per million tokens. Merged per model and per field across layers.
    pub prices: BTreeMap<String, PriceOverride>,
    /// `[secrets]`: what is redacted from transcripts and logs.
    pub secrets: SecretsConfig,
}

/// `[loop]`: how long and how often a spec is iterated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoopConfig {
    /// Iterations per spec and run before the loop stops (at least 1). Default 3.
    pub max_iterations: u64,
    /// Wall-clock limit of one run of one spec. Default `"2h"`.
    #[serde(with = "duration_serde")]
    pub timeout: Duration,
    /// Commit each iteration without asking. `false`: stop before committing and ask.
    /// Default `true`.
    pub auto_commit: bool,
    /// Stop as stuck after this many iterations in a row with the same diff or the same
    /// failures (at least 1). Default 2.
    pub stuck_after: u64,
    /// Specs run at the same time (at least 1). Default 2.
    pub concurrency: u64,
    /// An iteration that has gone unrecorded this long (a long model call, slow gates) is
    /// checkpointed to the run's wip ref, and again each time this long passes with
    /// something new; a killed run loses at most this much of an iteration. Default `"1s"`.
    #[serde(with = "duration_serde")]
    pub checkpoint_after: Duration,
}

impl Default for LoopConfig {
    fn default() -> Self {
        LoopConfig {
            max_iterations: 3,
            timeout: Duration::from_secs(2 * 3600),
            auto_commit: true,
            stuck_after: 2,
            concurrency: 2,
            checkpoint_after: Duration::from_secs(1),
        }
    }
}

/// `[specs]`: where the specs live.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpecsConfig {
    /// The directory of the specs, relative to the repository root. Default `"specs"`.
    pub dir: String,
}

impl Default for SpecsConfig {
    fn default() -> Self {
        SpecsConfig {
            dir: "specs".to_owned(),
        }
    }
}

/// Which kind of agent answers the prompts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AgentKind {
    /// The Anthropic Messages API (`api`).
    #[default]
    Api,
    /// The `claude` command-line tool (`claude-code`).
    ClaudeCode,
    /// Any command that reads the prompt on stdin and answers on stdout (`command`).
    Command,
    /// Recorded answers from a file, for tests and demos (`scripted`).
    Scripted,
}

impl AgentKind {
    /// The name used in configuration (`api`, `claude-code`, `command`, `scripted`).
    pub fn as_str(self) -> &'static str {
        match self {
            AgentKind::Api => "api",
            AgentKind::ClaudeCode => "claude-code",
            AgentKind::Command => "command",
            AgentKind::Scripted => "scripted",
        }
    }
}

impl std::fmt::Display for AgentKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for AgentKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            AgentKind::Api,
            AgentKind::ClaudeCode,
            AgentKind::Command,
            AgentKind::Scripted,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
        .ok_or_else(|| format!("unknown agent `{s}` (api, claude-code, command, scripted)"))
    }
}

/// `[agent]`: which agent answers and how it is reached.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfig {
    /// `api`, `claude-code`, `command` or `scripted`. Default `"api"`.
    pub kind: AgentKind,
    /// The file of scripted answers (for `kind = "scripted"`), relative to the repository
    /// root. Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub script: Option<String>,
    /// Base URL of the Messages API (`http://` or `https://`). Default: none, the client's
    /// own default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_base_url: Option<String>,
    /// The `anthropic-version` header sent to the API. Default `"2023-06-01"`.
    pub anthropic_version: String,
    /// Retries of a failed request (429, 529, network errors). Default 2.
    pub max_retries: u64,
    /// Time limit of one request, streaming included. Default `"10m"`.
    #[serde(with = "duration_serde")]
    pub request_timeout: Duration,
    /// The `claude` executable for `kind = "claude-code"`. Default: none, `claude` on `PATH`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claude_path: Option<String>,
    /// Claude Code's `--max-turns`. Default: none (Claude Code's own limit).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_turns: Option<u64>,
    /// Claude Code's `--permission-mode`. Default `"acceptEdits"`.
    pub permission_mode: String,
    /// Claude Code's `--allowedTools` entries. Default: none.
    pub allowed_tools: Vec<String>,
    /// Claude Code's `--disallowedTools` entries. Default: none.
    pub disallowed_tools: Vec<String>,
    /// The command line of `kind = "command"`, with `{prompt_file}`, `{worktree}` and
    /// `{model}` placeholders. Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// A regex whose first group is the cost in USD, over the command's output. Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_regex: Option<String>,
    /// A regex with named groups `input` and `output` (token counts). Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens_regex: Option<String>,
    /// A dotted path to the cost in the last JSON line of the command's stdout. Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_json_field: Option<String>,
    /// A dotted path to a usage object in the last JSON line of stdout. Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens_json_field: Option<String>,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            kind: AgentKind::Api,
            script: None,
            api_base_url: None,
            anthropic_version: "2023-06-01".to_owned(),
            max_retries: 2,
            request_timeout: Duration::from_secs(600),
            claude_path: None,
            max_turns: None,
            permission_mode: "acceptEdits".to_owned(),
            allowed_tools: Vec::new(),
            disallowed_tools: Vec::new(),
            command: None,
            cost_regex: None,
            tokens_regex: None,
            cost_json_field: None,
            tokens_json_field: None,
        }
    }
}

/// `[model]`: which models are used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// The model of ordinary iterations. Default `"claude-sonnet-5-5"`.
    pub default: String,
    /// The model used after `escalate_after` failed iterations. Default `"claude-opus-5-5"`.
    pub escalate_to: String,
    /// The model for summaries and easy specs. Default `"claude-haiku-5-5"`.
    pub small: String,
    /// Output tokens per answer (at least 1). Default 16000.
    pub max_tokens: u64,
    /// Failed iterations in a row before switching to `escalate_to` (at least 1). Default 2.
    pub escalate_after: u64,
    /// The model's context window in tokens (at least 1). Default 1000000.
    pub context_window: u64,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            default: "claude-sonnet-5-5".to_owned(),
            escalate_to: "claude-opus-5-5".to_owned(),
            small: "claude-haiku-5-5".to_owned(),
            max_tokens: 16000,
            escalate_after: 2,
            context_window: 1_000_000,
        }
    }
}

/// `[budget]`: spending limits. A run stops before it would exceed one of them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BudgetConfig {
    /// USD per iteration (greater than zero). Default 2.0.
    pub per_iteration_usd: f64,
    /// USD per spec and run (greater than zero). Default 10.0.
    pub per_spec_usd: f64,
    /// USD per day over all specs (greater than zero). Default 50.0.
    pub daily_usd: f64,
    /// Tokens (input and output) per iteration. Default: none, no limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_iteration_tokens: Option<u64>,
    /// Tokens per spec and run. Default: none, no limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_spec_tokens: Option<u64>,
    /// Tokens per day over all specs. Default: none, no limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub daily_tokens: Option<u64>,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        BudgetConfig {
            per_iteration_usd: 2.0,
            per_spec_usd: 10.0,
            daily_usd: 50.0,
            per_iteration_tokens: None,
            per_spec_tokens: None,
            daily_tokens: None,
        }
    }
}

/// `[validate]`: the quality gates, run by mmm in the iteration's worktree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ValidateConfig {
    /// The build command. Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build: Option<String>,
    /// The test command. Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test: Option<String>,
    /// The lint command. Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lint: Option<String>,
    /// The format check command. Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// Time limit of each gate. Default `"10m"`.
    #[serde(with = "duration_serde")]
    pub timeout: Duration,
    /// `[validate.custom]`: more gates, name → command. Default: none.
    pub custom: BTreeMap<String, String>,
}

impl Default for ValidateConfig {
    fn default() -> Self {
        ValidateConfig {
            build: None,
            test: None,
            lint: None,
            format: None,
            timeout: Duration::from_secs(600),
            custom: BTreeMap::new(),
        }
    }
}

/// `[commands]`: the commands the model may ask to run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CommandsConfig {
    /// Glob-like patterns of allowed command lines (`"cargo test *"`). Default: none allowed.
    pub allow: Vec<String>,
    /// Time limit of one command. Default `"2m"`.
    #[serde(with = "duration_serde")]
    pub timeout: Duration,
    /// Output kept per command, in bytes (at least 1). Default 65536.
    pub max_output_bytes: u64,
}

impl Default for CommandsConfig {
    fn default() -> Self {
        CommandsConfig {
            allow: Vec::new(),
            timeout: Duration::from_secs(120),
            max_output_bytes: 65536,
        }
    }
}

/// `[apply]`: which paths edits may not touch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApplyConfig {
    /// Globs of paths the model may not edit. Default `[".github/workflows/**"]`.
    pub deny: Vec<String>,
}

impl Default for ApplyConfig {
    fn default() -> Self {
        ApplyConfig {
            deny: vec![".github/workflows/**".to_owned()],
        }
    }
}

/// `[context]`: what goes into the prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ContextConfig {
    /// Globs of files always included, besides the spec's own context section. Default: none.
    pub include: Vec<String>,
    /// Globs of files never included (`.gitignore` is honoured anyway). Default: none.
    pub exclude: Vec<String>,
    /// Files larger than this many bytes are left out (at least 1). Default 100000.
    pub max_file_bytes: u64,
    /// Tokens of the context window kept free for the answer. Default 16000.
    pub output_reserve: u64,
    /// Include a map of the repository (paths and top-level items). Default `true`.
    pub repo_map: bool,
}

impl Default for ContextConfig {
    fn default() -> Self {
        ContextConfig {
            include: Vec::new(),
            exclude: Vec::new(),
            max_file_bytes: 100_000,
            output_reserve: 16000,
            repo_map: true,
        }
    }
}

/// `[github]`: pull requests and review.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GithubConfig {
    /// Logins asked to review each pull request. Default: none.
    pub reviewers: Vec<String>,
    /// Labels put on each pull request. Default `["mmm"]`.
    pub labels: Vec<String>,
    /// Open pull requests as drafts. Default `true`.
    pub draft: bool,
    /// Base URL of the GitHub API (GitHub Enterprise). Default: none, `https://api.github.com`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// Merge the pull request when it is approved. Default `false`.
    pub merge_on_approval: bool,
}

impl Default for GithubConfig {
    fn default() -> Self {
        GithubConfig {
            reviewers: Vec::new(),
            labels: vec!["mmm".to_owned()],
            draft: true,
            base_url: None,
            merge_on_approval: false,
        }
    }
}

/// When a checkpoint applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CheckpointAfter {
    /// After every iteration (`iteration`).
    Iteration,
    /// When the spec is complete (`complete`).
    #[default]
    Complete,
}

/// `[[checkpoints]]`: a point where the loop waits for a human.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Checkpoint {
    /// `"iteration"` or `"complete"`. Default `"complete"`.
    pub after: CheckpointAfter,
    /// The loop may not go on without an answer. Default `true`.
    pub required: bool,
    /// How long to wait for the answer before stopping. Default `"24h"`.
    #[serde(with = "duration_serde")]
    pub timeout: Duration,
}

impl Default for Checkpoint {
    fn default() -> Self {
        Checkpoint {
            after: CheckpointAfter::Complete,
            required: true,
            timeout: Duration::from_secs(24 * 3600),
        }
    }
}

/// `[prices."<model-id>"]`: prices in USD per million tokens; unset fields keep the
/// built-in price.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PriceOverride {
    /// Input tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<f64>,
    /// Output tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<f64>,
    /// Tokens written to the prompt cache with a 5-minute lifetime.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_write_5m: Option<f64>,
    /// Tokens written to the prompt cache with a 1-hour lifetime.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_write_1h: Option<f64>,
    /// Tokens read from the prompt cache.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_read: Option<f64>,
}

/// `[secrets]`: what is redacted from transcripts and logs, besides the API tokens mmm knows.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecretsConfig {
    /// Literal values, or names of environment variables whose values are redacted.
    /// Default: none.
    pub redact: Vec<String>,
}

/// Durations as humantime strings (`"2h"`, `"10m"`).
mod duration_serde {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(*d))
    }

    /// The shortest whole unit among hours, minutes and seconds (`"24h"` rather than
    /// humantime's `"1day"`); humantime's form for anything finer.
    fn format(d: Duration) -> String {
        let secs = d.as_secs();
        if d.subsec_nanos() != 0 || secs == 0 {
            humantime::format_duration(d).to_string()
        } else if secs.is_multiple_of(3600) {
            format!("{}h", secs / 3600)
        } else if secs.is_multiple_of(60) {
            format!("{}m", secs / 60)
        } else {
            format!("{secs}s")
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}
