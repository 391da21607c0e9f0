//! Validation: the quality gates of `[validate]` (build, test, lint, format, custom) and each
//! acceptance criterion's `verify` command, run by mmm itself in the iteration's worktree with
//! timeouts. The model's word is never taken as proof.
//!
//! Owns: turning gate definitions into results. Must not touch: git, the model, the decision of
//! what to do next (the engine reads the results).

use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::process::{self, ShellCommand};

/// What kind of check a gate is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GateKind {
    /// `[validate] build`.
    Build,
    /// `[validate] test`.
    Test,
    /// `[validate] lint`.
    Lint,
    /// `[validate] format`.
    Format,
    /// `[validate.custom]`.
    Custom,
    /// An acceptance criterion's `verify` command.
    Criterion,
}

/// One check to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Gate {
    /// A short name: `build`, `test`, a custom name, or `criterion 2`.
    pub name: String,
    /// The kind of check.
    pub kind: GateKind,
    /// The shell command.
    pub command: String,
}

/// The result of one check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GateResult {
    /// The gate's name.
    pub name: String,
    /// The kind of check.
    pub kind: GateKind,
    /// The command that ran.
    pub command: String,
    /// True when it exited 0 in time.
    pub passed: bool,
    /// The exit code, if it exited.
    pub exit_code: Option<i32>,
    /// True when it was ended by the timeout.
    pub timed_out: bool,
    /// Duration in milliseconds.
    pub duration_ms: u64,
    /// Stdout and stderr, trimmed to what matters (the head and the tail).
    pub output: String,
}

/// How gates run.
#[derive(Debug, Clone)]
pub struct GateOptions {
    /// Per-gate timeout.
    pub timeout: Duration,
    /// Bytes of output kept per stream.
    pub max_output_bytes: usize,
    /// Lines of output kept in the result (first and last).
    pub max_output_lines: usize,
    /// Variables removed from the gates' environment (for example API keys).
    pub env_remove: Vec<String>,
}

impl Default for GateOptions {
    fn default() -> Self {
        GateOptions {
            timeout: Duration::from_secs(600),
            max_output_bytes: 64 * 1024,
            max_output_lines: 80,
            env_remove: Vec::new(),
        }
    }
}

/// Runs one gate in `dir` (the engine runs them in order, reporting each). A gate that cannot
/// even be started counts as failed with the reason as its output, so that the model and the
/// user see it.
pub fn run_gate(dir: &Path, gate: &Gate, opts: &GateOptions) -> GateResult {
    let outcome = process::run(&ShellCommand {
        command: &gate.command,
        dir,
        timeout: opts.timeout,
        max_output_bytes: opts.max_output_bytes,
        env: &[],
        env_remove: &opts.env_remove,
    });
    match outcome {
        Ok(out) => {
            let mut output = process::trim_lines(&out.combined(), opts.max_output_lines);
            if out.timed_out {
                output.push_str(&format!(
                    "\n[mmm: ended after the timeout of {}]",
                    humantime::format_duration(opts.timeout)
                ));
            }
            GateResult {
                name: gate.name.clone(),
                kind: gate.kind,
                command: gate.command.clone(),
                passed: out.success(),
                exit_code: out.exit_code,
                timed_out: out.timed_out,
                duration_ms: out.duration_ms,
                output,
            }
        }
        Err(e) => GateResult {
            name: gate.name.clone(),
            kind: gate.kind,
            command: gate.command.clone(),
            passed: false,
            exit_code: None,
            timed_out: false,
            duration_ms: 0,
            output: format!("mmm could not start the command: {e}"),
        },
    }
}

/// True when every result passed (an empty list passes).
pub fn all_passed(results: &[GateResult]) -> bool {
    results.iter().all(|r| r.passed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gates_report_pass_fail_and_output() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("f.txt"), "hello").expect("write");
        let gates = [
            Gate {
                name: "build".into(),
                kind: GateKind::Build,
                command: "grep -q hello f.txt".into(),
            },
            Gate {
                name: "criterion 1".into(),
                kind: GateKind::Criterion,
                command: "echo missing >&2; test -e g.txt".into(),
            },
        ];
        let results: Vec<GateResult> = gates
            .iter()
            .map(|g| run_gate(dir.path(), g, &GateOptions::default()))
            .collect();
        assert!(results[0].passed);
        assert!(!results[1].passed);
        assert_eq!(results[1].exit_code, Some(1));
        assert_eq!(results[1].output.trim(), "missing");
        assert!(!all_passed(&results));
    }

    #[test]
    fn timeout_is_a_failure_with_a_note() {
        let dir = tempfile::tempdir().expect("tempdir");
        let opts = GateOptions {
            timeout: Duration::from_millis(100),
            ..GateOptions::default()
        };
        let gate = Gate {
            name: "test".into(),
            kind: GateKind::Test,
            command: "sleep 20".into(),
        };
        let r = &run_gate(dir.path(), &gate, &opts);
        assert!(!r.passed && r.timed_out);
        assert!(r.output.contains("ended after the timeout"), "{}", r.output);
    }
}
