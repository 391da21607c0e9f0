//! The `claude-code` agent: runs the Claude Code CLI headless (`claude -p --output-format
//! stream-json --verbose`) in the iteration's worktree, where it edits files itself. The stream
//! is parsed by `type` (`system`, `assistant`, `user`, `result`; unknown types are kept in the
//! transcript and otherwise ignored); cost, tokens, turns, duration and permission denials come
//! from the `result` line. Commits Claude Code makes despite the instruction are folded back
//! (HEAD is reset, softly, to where it started) so that the engine records one commit per
//! iteration.
//!
//! Owns: the `claude` command line and the reading of its stream. Must not decide completion or
//! run gates: the engine does, from the text and the worktree.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::child::{self, ChildOutcome, ChildSpec};
use super::turn::{Agent, AgentError, AgentEvent, AgentReply, AgentRequest, Cancel, TokenUsage};

/// Prompts longer than this many bytes are passed in a file (the argument length is limited).
const MAX_PROMPT_ARG: usize = 100_000;

/// The instructions appended to Claude Code's system prompt.
pub const MMM_INSTRUCTIONS: &str = "You are driven by mmm, which runs you once per iteration \
in a disposable git worktree. Edit the files of the working directory with your own tools \
(Write, Edit) to meet the spec's acceptance criteria; the edit formats described above are not \
needed, your changes are read from the worktree. Do NOT commit, branch or push: mmm commits every iteration itself and runs \
the quality gates after you finish. When you believe every acceptance criterion is met, end \
your final message with the line `@mmm:complete`. You may add one line `@mmm:summary <one \
line>` saying what you did. If you need a human decision, end with `@mmm:needs-review \
<question>` instead.";

/// How to run Claude Code.
#[derive(Debug, Clone)]
pub struct ClaudeCodeConfig {
    /// The `claude` executable (a path, or a name looked up on `PATH`).
    pub program: PathBuf,
    /// `--max-turns`, if set.
    pub max_turns: Option<u32>,
    /// `--permission-mode` (default `acceptEdits`).
    pub permission_mode: String,
    /// `--allowedTools` entries.
    pub allowed_tools: Vec<String>,
    /// `--disallowedTools` entries.
    pub disallowed_tools: Vec<String>,
    /// Extra environment variables for the child.
    pub env: Vec<(String, String)>,
    /// Variables removed from the child's environment (`CLAUDECODE` always is).
    pub env_remove: Vec<String>,
}

impl ClaudeCodeConfig {
    /// Defaults: `claude` on `PATH`, `acceptEdits`, no turn limit, no tool lists.
    pub fn new(program: impl Into<PathBuf>) -> Self {
        ClaudeCodeConfig {
            program: program.into(),
            max_turns: None,
            permission_mode: "acceptEdits".into(),
            allowed_tools: Vec::new(),
            disallowed_tools: Vec::new(),
            env: Vec::new(),
            env_remove: Vec::new(),
        }
    }
}

/// The Claude Code agent.
#[derive(Debug, Clone)]
pub struct ClaudeCodeAgent {
    config: ClaudeCodeConfig,
}

impl ClaudeCodeAgent {
    /// The error when the executable cannot be started, with how to install it when missing.
    fn cannot_run(&self, e: &std::io::Error) -> AgentError {
        AgentError::Critical {
            message: format!(
                "cannot run Claude Code (`{}`): {e}",
                self.config.program.display()
            ),
            hint: if e.kind() == std::io::ErrorKind::NotFound {
                "install it (scripts/install-claude-code.sh, or npm install -g \
                 @anthropic-ai/claude-code) and put `claude` on PATH, or set [agent] \
                 claude_path"
                    .into()
            } else {
                "check [agent] claude_path".into()
            },
        }
    }

    /// An agent with this configuration.
    pub fn new(config: ClaudeCodeConfig) -> Self {
        ClaudeCodeAgent { config }
    }

    /// The command-line arguments for a request (the prompt last). `prompt_file`, when set,
    /// holds the user text and the prompt only points at it.
    pub fn args(&self, request: &AgentRequest<'_>, prompt_file: Option<&Path>) -> Vec<OsString> {
        let c = &self.config;
        let mut args: Vec<OsString> = vec![
            "-p".into(),
            "--output-format".into(),
            "stream-json".into(),
            "--verbose".into(),
            "--model".into(),
            request.model.into(),
            "--permission-mode".into(),
            c.permission_mode.clone().into(),
        ];
        if let Some(n) = c.max_turns {
            args.push("--max-turns".into());
            args.push(n.to_string().into());
        }
        if let Some(usd) = request.budget_left_usd {
            args.push("--max-budget-usd".into());
            args.push(format!("{usd:.4}").into());
        }
        if !c.allowed_tools.is_empty() {
            args.push("--allowedTools".into());
            args.push(c.allowed_tools.join(",").into());
        }
        if !c.disallowed_tools.is_empty() {
            args.push("--disallowedTools".into());
            args.push(c.disallowed_tools.join(",").into());
        }
        let mut system = String::new();
        for b in request.system {
            system.push_str(b.text.trim_end());
            system.push_str("\n\n");
        }
        system.push_str(MMM_INSTRUCTIONS);
        args.push("--append-system-prompt".into());
        args.push(system.into());
        // `--` so that a prompt starting with `-` is not taken for a flag.
        args.push("--".into());
        args.push(match prompt_file {
            Some(f) => format!(
                "Your task for this iteration is in the file {} (outside the worktree). Read \
                 it whole first, then do it.",
                f.display()
            )
            .into(),
            None => user_text(request).into(),
        });
        args
    }
}

fn user_text(request: &AgentRequest<'_>) -> String {
    let mut out = String::new();
    for b in request.user {
        out.push_str(&b.text);
        if !b.text.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}

/// What the stream said, gathered line by line.
#[derive(Debug, Default)]
pub struct StreamSummary {
    /// Every line, as JSON (non-JSON lines as `{"type":"raw","line":…}`).
    pub records: Vec<Value>,
    /// The text blocks of the assistant messages, in order.
    pub texts: Vec<String>,
    /// The model named by `system/init`.
    pub init_model: Option<String>,
    /// The `result` line, if one came.
    pub result: Option<Value>,
    /// `system/permission_denied` lines seen.
    pub denials: Vec<Value>,
}

impl StreamSummary {
    /// Takes one line of the stream; returns the assistant text it carried, if any.
    pub fn push_line(&mut self, line: &str) -> Vec<String> {
        let line = line.trim();
        if line.is_empty() {
            return Vec::new();
        }
        let Ok(value) = serde_json::from_str::<Value>(line) else {
            self.records.push(json!({"type": "raw", "line": line}));
            return Vec::new();
        };
        let mut new_texts = Vec::new();
        match value.get("type").and_then(Value::as_str) {
            Some("system") => match value.get("subtype").and_then(Value::as_str) {
                Some("init") => {
                    self.init_model = value.get("model").and_then(Value::as_str).map(Into::into);
                }
                Some("permission_denied") => self.denials.push(value.clone()),
                _ => {}
            },
            Some("assistant") => {
                let blocks = value
                    .pointer("/message/content")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten();
                for b in blocks {
                    if b.get("type").and_then(Value::as_str) == Some("text")
                        && let Some(t) = b.get("text").and_then(Value::as_str)
                    {
                        new_texts.push(t.to_owned());
                    }
                }
                self.texts.extend(new_texts.iter().cloned());
            }
            Some("result") => self.result = Some(value.clone()),
            // `user` (tool results) and unknown types are only kept in the transcript.
            _ => {}
        }
        self.records.push(value);
        new_texts
    }

    /// The model's text: every assistant text block, then the result text if it differs from
    /// the last block (directives are read from this).
    pub fn text(&self) -> String {
        let mut text = self.texts.join("\n\n");
        if let Some(r) = self.result_str("result")
            && self.texts.last().map(String::as_str) != Some(r)
        {
            if !text.is_empty() {
                text.push_str("\n\n");
            }
            text.push_str(r);
        }
        text
    }

    fn result_str(&self, key: &str) -> Option<&str> {
        self.result.as_ref()?.get(key)?.as_str()
    }

    /// Token usage from the result's `usage` (or, without it, summed over `modelUsage`).
    pub fn usage(&self) -> TokenUsage {
        let Some(r) = &self.result else {
            return TokenUsage::default();
        };
        let n = |v: &Value, k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
        if let Some(u) = r.get("usage").filter(|u| u.is_object()) {
            return TokenUsage {
                input_tokens: n(u, "input_tokens"),
                output_tokens: n(u, "output_tokens"),
                cache_creation_input_tokens: n(u, "cache_creation_input_tokens"),
                cache_read_input_tokens: n(u, "cache_read_input_tokens"),
            };
        }
        let mut total = TokenUsage::default();
        for m in r
            .get("modelUsage")
            .and_then(Value::as_object)
            .into_iter()
            .flat_map(|o| o.values())
        {
            total.add(&TokenUsage {
                input_tokens: n(m, "inputTokens"),
                output_tokens: n(m, "outputTokens"),
                cache_creation_input_tokens: n(m, "cacheCreationInputTokens"),
                cache_read_input_tokens: n(m, "cacheReadInputTokens"),
            });
        }
        total
    }

    /// The model that did most of the work: the `modelUsage` entry with the most output
    /// tokens, else the init message's model.
    pub fn model(&self) -> Option<String> {
        let by_usage = self
            .result
            .as_ref()
            .and_then(|r| r.get("modelUsage"))
            .and_then(Value::as_object)
            .and_then(|o| {
                o.iter()
                    .max_by_key(|(_, m)| m.get("outputTokens").and_then(Value::as_u64))
                    .map(|(k, _)| k.clone())
            });
        by_usage.or_else(|| self.init_model.clone())
    }

    /// The summary record kept in the transcript: what the metrics of a run are made of.
    pub fn summary_record(&self) -> Value {
        let r = self.result.as_ref();
        let get = |k: &str| r.and_then(|r| r.get(k)).cloned().unwrap_or(Value::Null);
        let mut denials: Vec<Value> = match get("permission_denials") {
            Value::Array(a) => a,
            _ => Vec::new(),
        };
        if denials.is_empty() {
            denials = self.denials.clone();
        }
        json!({
            "type": "mmm_summary",
            "subtype": get("subtype"),
            "is_error": get("is_error"),
            "terminal_reason": get("terminal_reason"),
            "api_error_status": get("api_error_status"),
            "total_cost_usd": get("total_cost_usd"),
            "num_turns": get("num_turns"),
            "duration_ms": get("duration_ms"),
            "duration_api_ms": get("duration_api_ms"),
            "session_id": get("session_id"),
            "model_usage": get("modelUsage"),
            "permission_denials": denials,
        })
    }

    /// Why the run failed, if it did, judged from the result line, the exit code and stderr.
    pub fn failure(&self, exit_code: Option<i32>, stderr: &str) -> Option<AgentError> {
        let is_error = self
            .result
            .as_ref()
            .and_then(|r| r.get("is_error"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if exit_code == Some(0) && !is_error && self.result.is_some() {
            return None;
        }
        let result_text = self.result_str("result").unwrap_or("");
        let all = format!("{result_text}\n{stderr}");
        if all.contains("root/sudo privileges") {
            return Some(AgentError::Critical {
                message: format!(
                    "Claude Code refused the permission mode as root: {}",
                    first_line_with(&all, "root/sudo")
                ),
                hint: "as root, bypassPermissions needs IS_SANDBOX=1 in the environment (only \
                       in a sandbox), or use [agent] permission_mode = \"acceptEdits\""
                    .into(),
            });
        }
        let status = self
            .result
            .as_ref()
            .and_then(|r| r.get("api_error_status"))
            .and_then(Value::as_u64);
        if all.contains("Not logged in") || status == Some(401) {
            return Some(AgentError::Critical {
                message: format!(
                    "Claude Code is not authenticated: {}",
                    first_nonempty(result_text, stderr)
                ),
                hint: "run `claude` once and /login, or export ANTHROPIC_API_KEY".into(),
            });
        }
        if let Some(code) = status {
            let what = match code {
                429 => "rate limited (429)".to_owned(),
                529 => "overloaded (529)".to_owned(),
                402 => "billing error (402)".to_owned(),
                403 => "permission denied by the API (403)".to_owned(),
                c if c >= 500 => format!("server error ({c})"),
                c => format!("API error ({c})"),
            };
            let message = format!("Claude Code stopped on an API error: {what}: {result_text}");
            return Some(if matches!(code, 402 | 403) {
                AgentError::Critical {
                    message,
                    hint: "check the account's billing and the key's permissions".into(),
                }
            } else {
                AgentError::Failed {
                    message,
                    hint: "the API is busy or limiting this key; `git mmm run` later resumes \
                           where this run stopped"
                        .into(),
                }
            });
        }
        let subtype = self.result_str("subtype").unwrap_or("");
        let terminal = self.result_str("terminal_reason").unwrap_or("");
        let errors: Vec<&str> = self
            .result
            .as_ref()
            .and_then(|r| r.get("errors"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let detail = if errors.is_empty() {
            first_nonempty(result_text, stderr)
        } else {
            errors.join("; ")
        };
        if subtype == "error_max_turns" || terminal == "max_turns" {
            return Some(AgentError::Failed {
                message: format!("Claude Code reached its maximum number of turns: {detail}"),
                hint: "raise [agent] max_turns, or split the spec".into(),
            });
        }
        if subtype == "error_max_budget_usd" || terminal == "budget_exhausted" {
            return Some(AgentError::Failed {
                message: format!("Claude Code reached the budget it was given: {detail}"),
                hint: "raise [budget] per_spec_usd".into(),
            });
        }
        if self.result.is_some() {
            let reason = [subtype, terminal]
                .iter()
                .filter(|s| !s.is_empty())
                .copied()
                .collect::<Vec<_>>()
                .join(", ");
            return Some(AgentError::Failed {
                message: format!("Claude Code reported an error ({reason}): {detail}"),
                hint: "see the transcript (`git mmm show SPEC`)".into(),
            });
        }
        let how = match exit_code {
            Some(c) => format!("exited with code {c}"),
            None => "was killed by a signal".to_owned(),
        };
        let stderr_tail = child::tail_lines(stderr, 5);
        Some(AgentError::Failed {
            message: format!(
                "Claude Code {how} without a result{}",
                if stderr_tail.is_empty() {
                    String::new()
                } else {
                    format!(": {stderr_tail}")
                }
            ),
            hint: "run the same `claude -p` by hand in the repository to see why".into(),
        })
    }
}

fn first_nonempty(a: &str, b: &str) -> String {
    let a = a.trim();
    if a.is_empty() {
        child::tail_lines(b, 3)
    } else {
        a.to_owned()
    }
}

fn first_line_with(text: &str, needle: &str) -> String {
    text.lines()
        .find(|l| l.contains(needle))
        .unwrap_or("")
        .trim()
        .to_owned()
}

/// The worktree's HEAD commit, if it can be read.
fn head_of(worktree: &Path) -> Option<git2::Oid> {
    let repo = git2::Repository::open(worktree).ok()?;
    let head = repo.head().ok()?;
    head.peel_to_commit().ok().map(|c| c.id())
}

/// Moves HEAD back to `start` keeping the files (a soft reset): commits the agent made are
/// folded into the iteration. Returns how many commits were folded.
fn fold_commits(worktree: &Path, start: git2::Oid) -> Result<usize, git2::Error> {
    let repo = git2::Repository::open(worktree)?;
    let head = repo.head()?.peel_to_commit()?;
    if head.id() == start {
        return Ok(0);
    }
    let mut walk = repo.revwalk()?;
    walk.push(head.id())?;
    walk.hide(start)?;
    let folded = walk.count();
    let target = repo.find_object(start, None)?;
    if repo.head_detached()? {
        repo.reset(&target, git2::ResetType::Soft, None)?;
    } else {
        // The agent checked out a branch: go back to a detached HEAD at the start.
        repo.set_head_detached(start)?;
    }
    Ok(folded)
}

/// Writes a prompt too long for the command line to a file in a new temporary directory
/// (kept alive by the returned handle); `None` when it fits as an argument.
fn prompt_file(user: &str) -> Result<Option<(tempfile::TempDir, PathBuf)>, AgentError> {
    if user.len() <= MAX_PROMPT_ARG {
        return Ok(None);
    }
    let dir = tempfile::tempdir().map_err(|e| AgentError::Failed {
        message: format!("cannot write the prompt file: {e}"),
        hint: "check the temporary directory (TMPDIR)".into(),
    })?;
    let file = dir.path().join("mmm-prompt.md");
    std::fs::write(&file, user).map_err(|e| AgentError::Failed {
        message: format!("cannot write the prompt file {}: {e}", file.display()),
        hint: "check the temporary directory (TMPDIR)".into(),
    })?;
    Ok(Some((dir, file)))
}

/// The reply of a run that succeeded: text, usage and cost from the stream, and a summary
/// record (exit code, folded commits, stderr) whose run facts also go to the metrics.
fn reply(
    mut summary: StreamSummary,
    outcome: &ChildOutcome,
    folded: usize,
    default_model: &str,
) -> AgentReply {
    let mut records = std::mem::take(&mut summary.records);
    let mut record = summary.summary_record();
    record["exit_code"] = json!(outcome.exit_code);
    record["folded_commits"] = json!(folded);
    if !outcome.stderr.trim().is_empty() {
        record["stderr"] = json!(outcome.stderr);
    }
    let mut metrics = serde_json::Map::new();
    for key in [
        "num_turns",
        "duration_ms",
        "duration_api_ms",
        "terminal_reason",
        "permission_denials",
        "model_usage",
        "folded_commits",
    ] {
        if let Some(v) = record.get(key).filter(|v| !v.is_null()) {
            metrics.insert(key.to_owned(), v.clone());
        }
    }
    records.push(record);
    let result = summary.result.as_ref();
    AgentReply {
        text: summary.text(),
        model: summary.model().unwrap_or_else(|| default_model.to_owned()),
        usage: summary.usage(),
        cost_usd: result
            .and_then(|r| r.get("total_cost_usd"))
            .and_then(Value::as_f64),
        cost_rounded: false,
        stop_reason: result
            .and_then(|r| r.get("stop_reason"))
            .and_then(Value::as_str)
            .map(Into::into),
        attempts: 1,
        edits_in_worktree: true,
        records,
        metrics,
    }
}

impl Agent for ClaudeCodeAgent {
    fn kind(&self) -> &'static str {
        "claude-code"
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
        let prompt_dir = prompt_file(&user_text(request))?;
        let args = self.args(request, prompt_dir.as_ref().map(|(_, f)| f.as_path()));
        let mut env_remove = vec!["CLAUDECODE".to_owned()];
        env_remove.extend(self.config.env_remove.iter().cloned());
        let program: OsString = self.config.program.clone().into();
        let start = head_of(request.worktree);

        let mut summary = StreamSummary::default();
        let outcome = child::run(
            &ChildSpec {
                program: &program,
                args: &args,
                dir: request.worktree,
                stdin: None,
                env: &self.config.env,
                env_remove: &env_remove,
                timeout: request.timeout,
            },
            cancel,
            &mut |line| {
                for t in summary.push_line(line) {
                    events(AgentEvent::Text(t));
                }
            },
        );
        drop(prompt_dir);
        let outcome = outcome.map_err(|e| self.cannot_run(&e))?;
        let folded = match start {
            Some(start) => fold_commits(request.worktree, start).map_err(|e| AgentError::Critical {
                message: format!(
                    "Claude Code committed in the worktree and the commits cannot be folded: {e}"
                ),
                hint: "this is a bug in mmm; the run stopped before recording, and `git mmm doctor` cleans up".into(),
            })?,
            None => 0,
        };
        if outcome.cancelled {
            return Err(AgentError::Interrupted);
        }
        if outcome.timed_out {
            return Err(AgentError::Failed {
                message: format!(
                    "Claude Code did not finish within the run's remaining time ({}); its \
                     process group was ended",
                    humantime::format_duration(request.timeout)
                ),
                hint: "raise [loop] timeout or the spec's `timeout`, or lower [agent] max_turns"
                    .into(),
            });
        }
        if let Some(err) = summary.failure(outcome.exit_code, &outcome.stderr) {
            return Err(err);
        }
        Ok(reply(summary, &outcome, folded, request.model))
    }
}
