//! The `scripted` agent: replays answers from a TOML file, with no network and no key. Used by
//! `git mmm demo` and by tests.
//!
//! ```toml
//! [[answer]]
//! text = "…the model's answer…"
//! when = "text the prompt must contain"   # optional: otherwise answers are used in order
//! model = "claude-sonnet-5-5"             # optional, reported in the metrics
//! input_tokens = 1200                      # optional reported usage
//! output_tokens = 300
//! ```

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Deserialize;

use super::turn::{Agent, AgentError, AgentEvent, AgentReply, AgentRequest, Cancel, TokenUsage};

/// One scripted answer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Answer {
    /// The answer text.
    pub text: String,
    /// Used only when the prompt contains this text.
    #[serde(default)]
    pub when: Option<String>,
    /// The model reported for this answer.
    #[serde(default)]
    pub model: Option<String>,
    /// Reported input tokens.
    #[serde(default)]
    pub input_tokens: u64,
    /// Reported output tokens.
    #[serde(default)]
    pub output_tokens: u64,
    /// Reported cache-read tokens.
    #[serde(default)]
    pub cache_read_input_tokens: u64,
    /// Reported cache-write tokens.
    #[serde(default)]
    pub cache_creation_input_tokens: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Script {
    #[serde(default)]
    answer: Vec<Answer>,
}

/// A script that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    /// The file cannot be read.
    #[error("cannot read the agent script {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a valid script.
    #[error("{path}:{line}: invalid agent script: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The line of the problem (1-based).
        line: usize,
        /// What is wrong.
        message: String,
    },
}

/// Replays scripted answers.
#[derive(Debug)]
pub struct ScriptedAgent {
    answers: Vec<Answer>,
    used: Mutex<Vec<bool>>,
}

impl ScriptedAgent {
    /// An agent with these answers.
    pub fn new(answers: Vec<Answer>) -> Self {
        let used = Mutex::new(vec![false; answers.len()]);
        ScriptedAgent { answers, used }
    }

    /// Parses a script's text; `path` is used in error messages.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ScriptError> {
        let script: Script = toml::from_str(text).map_err(|e| ScriptError::Invalid {
            path: path.to_owned(),
            line: e
                .span()
                .map(|s| crate::text::line_at(text, s.start))
                .unwrap_or(1),
            message: e.message().to_owned(),
        })?;
        if script.answer.is_empty() {
            return Err(ScriptError::Invalid {
                path: path.to_owned(),
                line: 1,
                message: "the script has no [[answer]] entries".into(),
            });
        }
        Ok(ScriptedAgent::new(script.answer))
    }

    /// Reads and parses a script file.
    pub fn load(path: &Path) -> Result<Self, ScriptError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScriptError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    fn pick(&self, prompt: &str) -> Option<Answer> {
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        let matching =
            self.answers.iter().enumerate().position(|(i, a)| {
                !used[i] && a.when.as_deref().is_some_and(|w| prompt.contains(w))
            });
        let index = matching.or_else(|| {
            self.answers
                .iter()
                .enumerate()
                .position(|(i, a)| !used[i] && a.when.is_none())
        })?;
        used[index] = true;
        Some(self.answers[index].clone())
    }
}

impl Agent for ScriptedAgent {
    fn kind(&self) -> &'static str {
        "scripted"
    }

    fn invoke(
        &self,
        request: &AgentRequest<'_>,
        cancel: &Cancel,
        events: &mut dyn FnMut(AgentEvent),
    ) -> Result<AgentReply, AgentError> {
        if cancel.is_cancelled() {
            return Err(AgentError::Interrupted);
        }
        let answer = self
            .pick(&request.full_text())
            .ok_or_else(|| AgentError::Failed {
                message: "the agent script has no answer left for this prompt".into(),
                hint: "add an [[answer]] to the script, or raise no more iterations than it has"
                    .into(),
            })?;
        events(AgentEvent::Text(answer.text.clone()));
        Ok(AgentReply {
            model: answer.model.unwrap_or_else(|| request.model.to_owned()),
            usage: TokenUsage {
                input_tokens: answer.input_tokens,
                output_tokens: answer.output_tokens,
                cache_creation_input_tokens: answer.cache_creation_input_tokens,
                cache_read_input_tokens: answer.cache_read_input_tokens,
            },
            text: answer.text,
            cost_usd: None,
            stop_reason: Some("end_turn".into()),
            attempts: 1,
            edits_in_worktree: false,
            records: Vec::new(),
            ..AgentReply::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ask(agent: &ScriptedAgent, prompt: &str) -> Result<AgentReply, AgentError> {
        let user = [super::super::turn::PromptBlock {
            text: prompt.into(),
            cache: false,
        }];
        let req = AgentRequest {
            system: &[],
            user: &user,
            model: "m",
            max_tokens: 10,
            worktree: Path::new("."),
            iteration: 1,
            budget_left_usd: None,
            timeout: Duration::from_secs(1),
        };
        agent.invoke(&req, &Cancel::new(), &mut |_| {})
    }

    #[test]
    fn answers_by_content_then_order() {
        let agent = ScriptedAgent::parse(
            Path::new("s.toml"),
            "[[answer]]\ntext = 'first'\n[[answer]]\ntext = 'fix'\nwhen = 'FAILED'\n",
        )
        .expect("valid script");
        assert_eq!(ask(&agent, "go").expect("answer").text, "first");
        assert_eq!(ask(&agent, "test FAILED").expect("answer").text, "fix");
        assert!(matches!(
            ask(&agent, "again"),
            Err(AgentError::Failed { .. })
        ));
    }

    #[test]
    fn bad_scripts_name_the_line() {
        let err = ScriptedAgent::parse(Path::new("s.toml"), "[[answer]]\ntxt = 'x'\n")
            .expect_err("unknown key");
        assert!(
            err.to_string()
                .starts_with("s.toml:2: invalid agent script"),
            "{err}"
        );
        let err = ScriptedAgent::parse(Path::new("s.toml"), "").expect_err("empty");
        assert!(err.to_string().contains("no [[answer]]"), "{err}");
    }
}
