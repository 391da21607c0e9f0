//! Commands the model asked to run: checked against the allow-list, run with `sh -c` in the
//! worktree in their own process group, killed (the whole group) on timeout, output captured
//! and cut to a size limit (head and tail kept).
//!
//! This module runs only what [`CommandPolicy::allow`] permits; it does not decide which
//! commands the model may ask for (the configuration does) and does not run the quality gates
//! (that is [`crate::validate`]).

use std::io;
use std::path::Path;
use std::time::Duration;

/// Characters a `*` in an allow pattern never matches: shell control and substitution, so that
/// `cargo test*` cannot allow `cargo test; rm -rf ~`.
const SHELL_META: &str = ";&|`$<>(){}\\\n\r";

/// What commands may run, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandPolicy {
    /// Patterns a command must match whole: `*` matches any run of characters except shell
    /// metacharacters (`;&|$<>(){}` backquote, backslash, newline); everything else is literal.
    /// Empty: nothing runs.
    pub allow: Vec<String>,
    /// Wall-clock limit; the whole process group is killed when it passes.
    pub timeout: Duration,
    /// The most output kept per stream; beyond it the head and the tail are kept with a
    /// `[… N bytes cut …]` marker between them.
    pub max_output_bytes: usize,
    /// Environment variables the command must not see (API keys, tokens).
    pub env_remove: Vec<String>,
}

/// What happened to one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutcome {
    /// The command as asked.
    pub command: String,
    /// Whether the allow-list permitted it (if not, it did not run).
    pub allowed: bool,
    /// Why it was not allowed.
    pub refusal: Option<String>,
    /// The exit code; `None` when it did not run, was killed, or died by a signal.
    pub exit_code: Option<i32>,
    /// Standard output, cut to the limit.
    pub stdout: String,
    /// Standard error, cut to the limit.
    pub stderr: String,
    /// Wall-clock time it ran.
    pub duration: Duration,
    /// It was killed because it ran past the timeout.
    pub timed_out: bool,
}

impl CommandOutcome {
    /// It ran, finished in time, and exited with 0.
    pub fn succeeded(&self) -> bool {
        self.allowed && !self.timed_out && self.exit_code == Some(0)
    }
}

/// Errors running an allowed command.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// `sh` could not be started in the worktree.
    #[error(
        "could not start `sh -c {command:?}` in {worktree}: {source}; check that the worktree exists and `sh` is on PATH"
    )]
    Spawn {
        /// The command.
        command: String,
        /// The worktree.
        worktree: String,
        /// The underlying error.
        source: io::Error,
    },
}

/// The allow-list pattern that permits `cmd`, or why none does.
pub fn allowed_by<'p>(cmd: &str, allow: &'p [String]) -> Result<&'p str, String> {
    let cmd = cmd.trim();
    if cmd.is_empty() {
        return Err("the command is empty".into());
    }
    if cmd.contains('\0') {
        return Err("the command contains a NUL byte".into());
    }
    if allow.is_empty() {
        return Err("no commands are allowed (the allow-list is empty)".into());
    }
    allow
        .iter()
        .find(|p| pattern_matches(p, cmd))
        .map(String::as_str)
        .ok_or_else(|| {
            format!(
                "`{cmd}` matches no allow-list pattern ({})",
                allow.join(", ")
            )
        })
}

fn pattern_matches(pattern: &str, cmd: &str) -> bool {
    let mut re = String::from("^");
    for c in pattern.trim().chars() {
        if c == '*' {
            re.push_str("[^");
            re.push_str(
                &regex::escape(SHELL_META)
                    .replace('\n', "\\n")
                    .replace('\r', "\\r"),
            );
            re.push_str("]*");
        } else {
            re.push_str(&regex::escape(&c.to_string()));
        }
    }
    re.push('$');
    regex::Regex::new(&re).is_ok_and(|r| r.is_match(cmd))
}

/// Runs `cmd` with `sh -c` in `worktree` if the policy allows it. A refused command is not an
/// error: the outcome says `allowed: false` and why.
pub fn run_command(
    worktree: &Path,
    cmd: &str,
    policy: &CommandPolicy,
) -> Result<CommandOutcome, CommandError> {
    let mut outcome = CommandOutcome {
        command: cmd.to_string(),
        allowed: false,
        refusal: None,
        exit_code: None,
        stdout: String::new(),
        stderr: String::new(),
        duration: Duration::ZERO,
        timed_out: false,
    };
    if let Err(why) = allowed_by(cmd, &policy.allow) {
        outcome.refusal = Some(why);
        return Ok(outcome);
    }
    outcome.allowed = true;
    let out = crate::process::run(&crate::process::ShellCommand {
        command: cmd.trim(),
        dir: worktree,
        timeout: policy.timeout,
        max_output_bytes: policy.max_output_bytes,
        env: &[],
        env_remove: &policy.env_remove,
    })
    .map_err(|source| CommandError::Spawn {
        command: cmd.to_string(),
        worktree: worktree.display().to_string(),
        source,
    })?;
    outcome.timed_out = out.timed_out;
    outcome.exit_code = out.exit_code;
    outcome.duration = Duration::from_millis(out.duration_ms);
    outcome.stdout = out.stdout;
    outcome.stderr = out.stderr;
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        let allow = vec!["cargo test*".to_string(), "npm run *".to_string()];
        assert!(allowed_by("cargo test", &allow).is_ok());
        assert!(allowed_by("cargo test --lib spec", &allow).is_ok());
        assert!(allowed_by("npm run build", &allow).is_ok());
        assert!(allowed_by("cargo test; rm -rf ~", &allow).is_err());
        assert!(allowed_by("cargo test && curl x", &allow).is_err());
        assert!(allowed_by("cargo test $(whoami)", &allow).is_err());
        assert!(allowed_by("rm -rf /", &allow).is_err());
        assert!(allowed_by("cargo build", &allow).is_err());
        assert!(allowed_by("cargo test", &[]).is_err());
    }
}
