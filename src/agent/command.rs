//! The `command` agent: any agent CLI (aider, codex, a script) run once per iteration in the
//! worktree, from a configured command line with placeholders:
//!
//! * `{prompt_file}`: a file holding the whole prompt (without it, the prompt goes to stdin);
//! * `{worktree}`: the iteration's worktree (also the working directory);
//! * `{model}`: the model id;
//! * `{budget_usd}`: the USD left for the call (the tightest of the iteration's, the spec's
//!   and the day's budgets, e.g. `0.4700`), also in the environment as `MMM_BUDGET_USD`;
//!   empty, and the variable unset, when no USD budget applies.
//!
//! Placeholders are replaced by shell-quoted values and the line runs through `sh -c`. The
//! command edits the worktree itself; its stdout is the model's text (directives such as
//! `@mmm:complete` are read from it), stdout and stderr are the transcript, and the exit code
//! decides failure, unless a line of the output matches `failure_pattern` (agents such as aider
//! report a failed model call and exit 0). Cost and tokens come from an optional regex or JSON
//! field of the output; a cost printed with fewer than three significant digits (aider's
//! `Cost: $0.01`) is marked rounded, and without a cost the engine prices the tokens.
//!
//! Owns: the command line and the reading of its output. Must not decide completion.

use std::ffi::OsString;

use regex::Regex;
use serde_json::{Value, json};

use super::child::{self, ChildSpec};
use super::turn::{Agent, AgentError, AgentEvent, AgentReply, AgentRequest, Cancel, TokenUsage};

/// A command agent that cannot be built from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum CommandAgentError {
    /// The command line is empty.
    #[error("the `command` agent has no command line")]
    NoCommand,
    /// A regex does not compile.
    #[error("`agent.{key}` is not a valid regex: {message}")]
    BadRegex {
        /// The configuration key.
        key: &'static str,
        /// The compiler's message.
        message: String,
    },
}

/// How to run the command and read what it spent.
#[derive(Debug, Clone, Default)]
pub struct CommandConfig {
    /// The command line with placeholders.
    pub command: String,
    /// A regex over stdout and stderr whose first capture group is the cost in USD (the last
    /// match wins).
    pub cost_regex: Option<String>,
    /// A regex with named groups `input` and/or `output` (token counts; the last match wins).
    pub tokens_regex: Option<String>,
    /// A dotted path into the last JSON object line of stdout giving the cost in USD
    /// (e.g. `total_cost_usd`).
    pub cost_json_field: Option<String>,
    /// A dotted path into the last JSON object line of stdout giving an object with
    /// `input_tokens` and `output_tokens` (e.g. `usage`).
    pub tokens_json_field: Option<String>,
    /// A regex matched against each line of stdout and stderr: a match is a failure the agent
    /// reported although it exited with 0.
    pub failure_pattern: Option<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// Variables removed from the child's environment.
    pub env_remove: Vec<String>,
}

/// The command agent.
#[derive(Debug)]
pub struct CommandAgent {
    config: CommandConfig,
    cost_regex: Option<Regex>,
    tokens_regex: Option<Regex>,
    failure: Option<Regex>,
    /// Where the prompt file goes (see [`CommandAgent::with_temp_dir`]).
    temp_dir: Option<std::path::PathBuf>,
}

/// A cost read from the agent's output.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Reported {
    usd: f64,
    /// Printed with fewer than three significant digits.
    rounded: bool,
}

impl CommandAgent {
    /// Checks the configuration and builds the agent.
    pub fn new(config: CommandConfig) -> Result<Self, CommandAgentError> {
        if config.command.trim().is_empty() {
            return Err(CommandAgentError::NoCommand);
        }
        let compile = |key: &'static str, re: &Option<String>| {
            re.as_deref()
                .map(Regex::new)
                .transpose()
                .map_err(|e| CommandAgentError::BadRegex {
                    key,
                    message: e.to_string(),
                })
        };
        let cost_regex = compile("cost_regex", &config.cost_regex)?;
        let tokens_regex = compile("tokens_regex", &config.tokens_regex)?;
        let failure = compile("failure_pattern", &config.failure_pattern)?;
        Ok(CommandAgent {
            config,
            cost_regex,
            tokens_regex,
            failure,
            temp_dir: None,
        })
    }

    /// Writes the prompt file of each call in a new directory `<pid>-…` under `dir` (mmm's
    /// `.git/mmm/tmp/`, where `git mmm doctor` removes what a killed run left) instead of the
    /// system's temporary directory.
    pub fn with_temp_dir(mut self, dir: std::path::PathBuf) -> Self {
        self.temp_dir = Some(dir);
        self
    }

    /// The command line with its placeholders replaced (shell-quoted); `{budget_usd}` is
    /// replaced when the call is made ([`with_budget`]).
    pub fn expand(&self, prompt_file: &str, worktree: &str, model: &str) -> String {
        self.config
            .command
            .replace("{prompt_file}", &shell_quote(prompt_file))
            .replace("{worktree}", &shell_quote(worktree))
            .replace("{model}", &shell_quote(model))
    }

    fn cost(&self, stdout: &str, all: &str) -> Option<Reported> {
        if let Some(path) = &self.config.cost_json_field
            && let Some(v) = last_json(stdout).and_then(|j| lookup(&j, path).cloned())
        {
            return match v.as_f64() {
                Some(usd) => Some(Reported {
                    usd,
                    rounded: false,
                }),
                None => reported(v.as_str()?),
            };
        }
        let re = self.cost_regex.as_ref()?;
        re.captures_iter(all)
            .last()
            .and_then(|c| c.get(1))
            .and_then(|m| reported(m.as_str()))
    }

    /// The first line of `stdout` or `stderr` that matches `failure_pattern`.
    fn reported_failure<'t>(&self, stdout: &'t str, stderr: &'t str) -> Option<&'t str> {
        let re = self.failure.as_ref()?;
        stdout
            .lines()
            .chain(stderr.lines())
            .find(|l| re.is_match(l))
    }

    fn usage(&self, stdout: &str, all: &str) -> TokenUsage {
        let mut usage = TokenUsage::default();
        if let Some(path) = &self.config.tokens_json_field
            && let Some(u) = last_json(stdout).and_then(|j| lookup(&j, path).cloned())
        {
            let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
            usage.input_tokens = n("input_tokens");
            usage.output_tokens = n("output_tokens");
            usage.cache_creation_input_tokens = n("cache_creation_input_tokens");
            usage.cache_read_input_tokens = n("cache_read_input_tokens");
            return usage;
        }
        if let Some(c) = self
            .tokens_regex
            .as_ref()
            .and_then(|re| re.captures_iter(all).last())
        {
            let n = |name: &str| {
                c.name(name)
                    .and_then(|m| parse_count(m.as_str()))
                    .unwrap_or(0)
            };
            usage.input_tokens = n("input");
            usage.output_tokens = n("output");
        }
        usage
    }
}

/// A printed cost (`0.0091`, `1,234.50`), rounded when it has fewer than three significant
/// digits: `0.01` may be anything from 0.005 to 0.015.
fn reported(text: &str) -> Option<Reported> {
    let text = text.trim().replace(',', "");
    let usd: f64 = text.parse().ok()?;
    let significant = text
        .trim_start_matches(['0', '.'])
        .chars()
        .filter(char::is_ascii_digit)
        .count();
    Some(Reported {
        usd,
        rounded: significant < 3,
    })
}

/// Parses `12,345`, `12.3k` or `1.2M` as a token count.
fn parse_count(s: &str) -> Option<u64> {
    let s = s.trim().replace(',', "");
    let (num, mult) = match s.chars().last()? {
        'k' | 'K' => (&s[..s.len() - 1], 1_000.0),
        'm' | 'M' => (&s[..s.len() - 1], 1_000_000.0),
        _ => (s.as_str(), 1.0),
    };
    let v: f64 = num.parse().ok()?;
    // Token counts are far below 2^53: the conversion is exact enough.
    Some((v * mult).round() as u64)
}

/// The last line of `text` that is a JSON object.
fn last_json(text: &str) -> Option<Value> {
    text.lines()
        .rev()
        .filter(|l| l.trim_start().starts_with('{'))
        .find_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
}

fn lookup<'v>(v: &'v Value, dotted: &str) -> Option<&'v Value> {
    dotted.split('.').try_fold(v, |v, k| v.get(k))
}

/// Quotes a value for `sh`: single quotes, with embedded ones escaped.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

impl CommandAgent {
    /// Why a finished call failed, if it did: stopped, timed out, a non-zero exit, or a line
    /// matching `failure_pattern`.
    fn failure(
        &self,
        outcome: &child::ChildOutcome,
        stdout: &str,
        timeout: std::time::Duration,
    ) -> Result<(), AgentError> {
        if outcome.cancelled {
            return Err(AgentError::Interrupted);
        }
        if outcome.timed_out {
            return Err(AgentError::Failed {
                message: format!(
                    "the agent command did not finish within the run's remaining time ({}); its \
                     process group was ended",
                    humantime::format_duration(timeout)
                ),
                hint: "raise [loop] timeout or the spec's `timeout`".into(),
            });
        }
        if outcome.exit_code != Some(0) {
            let how = match outcome.exit_code {
                Some(c) => format!("exited with code {c}"),
                None => "was killed by a signal".to_owned(),
            };
            let tail = child::tail_lines(
                if outcome.stderr.trim().is_empty() {
                    stdout
                } else {
                    &outcome.stderr
                },
                5,
            );
            return Err(AgentError::Failed {
                message: format!("the agent command {how}: {tail}"),
                hint: "run [agent] command by hand in the repository to see why".into(),
            });
        }
        if let Some(line) = self.reported_failure(stdout, &outcome.stderr) {
            return Err(AgentError::Failed {
                message: format!(
                    "the agent command exited with 0 but reported a failure: {}",
                    line.trim()
                ),
                hint: "the line matched [agent] failure_pattern; run [agent] command by hand in \
                       the repository to see why"
                    .into(),
            });
        }
        Ok(())
    }
}

impl Agent for CommandAgent {
    fn kind(&self) -> &'static str {
        "command"
    }

    fn output_bounds_cost(&self) -> bool {
        false
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
        let prompt = request.full_text();
        let io_err = |e: std::io::Error| AgentError::Failed {
            message: format!("cannot write the prompt file: {e}"),
            hint: "check the temporary directory (TMPDIR)".into(),
        };
        // The prompt file lives outside the worktree, so it is never committed.
        let dir = match &self.temp_dir {
            Some(parent) => {
                std::fs::create_dir_all(parent).map_err(io_err)?;
                tempfile::Builder::new()
                    .prefix(&format!("{}-", std::process::id()))
                    .tempdir_in(parent)
            }
            None => tempfile::tempdir(),
        }
        .map_err(io_err)?;
        let prompt_file = dir.path().join("mmm-prompt.md");
        std::fs::write(&prompt_file, &prompt).map_err(io_err)?;
        let uses_file = self.config.command.contains("{prompt_file}");
        let line = self.expand(
            &prompt_file.to_string_lossy(),
            &request.worktree.to_string_lossy(),
            request.model,
        );
        let (line, env) = with_budget(line, &self.config.env, request.budget_left_usd);
        let program: OsString = "sh".into();
        let args: Vec<OsString> = vec!["-c".into(), line.clone().into()];
        let mut stdout = String::new();
        let outcome = child::run(
            &ChildSpec {
                program: &program,
                args: &args,
                dir: request.worktree,
                stdin: (!uses_file).then(|| prompt.clone().into_bytes()),
                env: &env,
                env_remove: &self.config.env_remove,
                timeout: request.timeout,
            },
            cancel,
            &mut |l| {
                stdout.push_str(l);
                stdout.push('\n');
                events(AgentEvent::Text(format!("{l}\n")));
            },
        )
        .map_err(|e| AgentError::Critical {
            message: format!("cannot run the agent command `{line}`: {e}"),
            hint: "check [agent] command".into(),
        })?;
        drop(dir);
        self.failure(&outcome, &stdout, request.timeout)?;
        let all = format!("{stdout}\n{}", outcome.stderr);
        let cost = self.cost(&stdout, &all);
        let usage = self.usage(&stdout, &all);
        Ok(AgentReply {
            model: request.model.to_owned(),
            usage,
            // No cost found: the engine prices the tokens by the model id (and records 0 for a
            // model its price table does not know).
            cost_usd: cost.map(|c| c.usd),
            cost_rounded: cost.is_some_and(|c| c.rounded),
            stop_reason: None,
            attempts: 1,
            edits_in_worktree: true,
            records: vec![json!({
                "command": line,
                "exit_code": outcome.exit_code,
                "duration_ms": u64::try_from(outcome.duration.as_millis()).unwrap_or(u64::MAX),
                "stdout": stdout,
                "stderr": outcome.stderr,
                "cost_usd": cost.map(|c| c.usd),
                "cost_rounded": cost.is_some_and(|c| c.rounded),
            })],
            text: stdout,
            ..AgentReply::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_and_counts() {
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(parse_count("12,345"), Some(12_345));
        assert_eq!(parse_count("1.5k"), Some(1_500));
        assert_eq!(parse_count("x"), None);
    }

    #[test]
    fn a_cost_with_fewer_than_three_significant_digits_is_rounded() {
        let rounded = |t: &str| reported(t).map(|r| r.rounded);
        assert_eq!(rounded("0.01"), Some(true));
        assert_eq!(rounded("0.00"), Some(true));
        assert_eq!(rounded("0.0091"), Some(true));
        assert_eq!(rounded("0.10"), Some(true));
        assert_eq!(rounded("0.00912"), Some(false));
        assert_eq!(rounded("1.25"), Some(false));
        assert_eq!(rounded("1,234.5"), Some(false));
        assert_eq!(reported("1,234.5").map(|r| r.usd), Some(1234.5));
        assert_eq!(rounded("x"), None);
    }

    #[test]
    fn a_failure_is_a_line_that_matches_the_pattern() {
        let agent = CommandAgent::new(CommandConfig {
            command: "true".into(),
            failure_pattern: Some(r"^litellm\.[A-Za-z]*Error".into()),
            ..CommandConfig::default()
        })
        .expect("valid");
        let err = "litellm.BadRequestError: LLM Provider NOT provided\n";
        assert_eq!(
            agent.reported_failure("ok\n", err),
            Some("litellm.BadRequestError: LLM Provider NOT provided")
        );
        assert_eq!(
            agent.reported_failure("see litellm.BadRequestError\n", ""),
            None
        );
        let none = CommandAgent::new(CommandConfig {
            command: "true".into(),
            ..CommandConfig::default()
        })
        .expect("valid");
        assert_eq!(none.reported_failure("", err), None);
    }

    #[test]
    fn a_provider_prefix_goes_before_the_placeholder() {
        let agent = CommandAgent::new(CommandConfig {
            command: "aider --model anthropic/{model}".into(),
            ..CommandConfig::default()
        })
        .expect("valid");
        let line = agent.expand("/p", "/w", "claude-sonnet-5-5");
        assert_eq!(line, "aider --model anthropic/'claude-sonnet-5-5'");
        let out = std::process::Command::new("sh")
            .args(["-c", &line.replace("aider", "echo")])
            .output()
            .expect("sh");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "--model anthropic/claude-sonnet-5-5\n"
        );
    }

    #[test]
    fn cost_and_tokens_from_regex_or_json() {
        let agent = CommandAgent::new(CommandConfig {
            command: "true".into(),
            cost_regex: Some(r"Cost: \$[0-9.]+ message, \$([0-9.]+) session".into()),
            tokens_regex: Some(r"Tokens: (?P<input>[0-9.,k]+) sent, (?P<output>[0-9.,k]+)".into()),
            ..CommandConfig::default()
        })
        .expect("valid");
        let out = "Tokens: 1.2k sent, 300 received. Cost: $0.01 message, $0.05 session.\n";
        assert_eq!(
            agent.cost(out, out),
            Some(Reported {
                usd: 0.05,
                rounded: true
            })
        );
        let u = agent.usage(out, out);
        assert_eq!((u.input_tokens, u.output_tokens), (1_200, 300));

        let agent = CommandAgent::new(CommandConfig {
            command: "true".into(),
            cost_json_field: Some("total_cost_usd".into()),
            tokens_json_field: Some("usage".into()),
            ..CommandConfig::default()
        })
        .expect("valid");
        let out =
            "hello\n{\"total_cost_usd\":0.25,\"usage\":{\"input_tokens\":7,\"output_tokens\":9}}\n";
        assert_eq!(
            agent.cost(out, out),
            Some(Reported {
                usd: 0.25,
                rounded: false
            })
        );
        assert_eq!(agent.usage(out, out).output_tokens, 9);

        let err = CommandAgent::new(CommandConfig {
            command: "true".into(),
            cost_regex: Some("(".into()),
            ..CommandConfig::default()
        })
        .expect_err("bad regex");
        assert!(
            err.to_string()
                .starts_with("`agent.cost_regex` is not a valid regex")
        );
    }
}

/// The command line with `{budget_usd}` replaced by the USD left (4 decimals, empty without
/// a limit), and the environment with `MMM_BUDGET_USD` set to the same value when there is one.
fn with_budget(
    line: String,
    env: &[(String, String)],
    left: Option<f64>,
) -> (String, Vec<(String, String)>) {
    let value = left.map(|usd| format!("{:.4}", usd.max(0.0)));
    let line = line.replace("{budget_usd}", value.as_deref().unwrap_or(""));
    let mut env = env.to_vec();
    if let Some(v) = value {
        env.push(("MMM_BUDGET_USD".to_owned(), v));
    }
    (line, env)
}

#[cfg(test)]
mod budget_tests {
    use super::with_budget;

    #[test]
    fn the_budget_left_reaches_the_command() {
        let env = vec![("A".to_owned(), "1".to_owned())];
        let (line, env2) = with_budget("agent --max {budget_usd}".into(), &env, Some(0.47));
        assert_eq!(line, "agent --max 0.4700");
        assert_eq!(env2[1], ("MMM_BUDGET_USD".to_owned(), "0.4700".to_owned()));
        let (line, env2) = with_budget("agent --max '{budget_usd}'".into(), &env, None);
        assert_eq!((line.as_str(), env2.len()), ("agent --max ''", 1));
    }
}
