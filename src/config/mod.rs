//! Configuration: built-in defaults, the user file, the repository's `.mmm/config.toml`,
//! `MMM_*` variables and flags, merged in that order, each value remembering its origin.
//!
//! Owns: the [`Config`] model (each key declared once, in `keys.rs`), the key schema, the layering ([`load`]), the commented default
//! file ([`default_config_toml`]) and the configuration errors. Must not read the process
//! environment or any file itself: the CLI reads them and passes their content in
//! ([`Sources`]). Must not touch git, the network or the terminal.

mod declare;
mod error;
mod keys;
mod layer;
mod schema;

use serde::{Deserialize, Serialize};

pub use error::{ConfigError, Location};
pub use keys::{
    AgentConfig, ApplyConfig, BudgetConfig, Checkpoint, CommandsConfig, Config, ContextConfig,
    GithubConfig, HooksConfig, LoopConfig, ModelConfig, PriceOverride, SecretsConfig, SpecsConfig,
    ValidateConfig,
};
pub use layer::{
    Entry, FlagValue, Loaded, Origin, SourceFile, Sources, load, repo_config_path, user_config_path,
};
pub use schema::default_config_toml;

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

/// What completes a spec (`[agent] complete_when`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CompleteWhen {
    /// The agent says `@mmm:complete` and every check passes (`directive`).
    #[default]
    Directive,
    /// Every check passes, at least one ran, whatever the agent said (`checks`): for agent CLIs
    /// that know nothing of mmm's directives.
    Checks,
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

/// The default of `[context] skip`: the context builder's list.
fn default_skip() -> Vec<String> {
    crate::context::DEFAULT_SKIP
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
}
