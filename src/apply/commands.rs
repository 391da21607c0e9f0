//! Commands the model asked to run: checked against the allow-list, run with `sh -c` in the
//! worktree in their own process group, killed (the whole group) on timeout, output captured
//! and cut to a size limit (head and tail kept).
//!
//! This module runs only what [`CommandPolicy::allow`] permits; it does not decide which
//! commands the model may ask for (the configuration does) and does not run the quality gates
//! (that is [`crate::validate`]).

use std::collections::VecDeque;
use std::io::{self, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Characters a `*` in an allow pattern never matches: shell control and substitution, so that
/// `cargo test*` cannot allow `cargo test; rm -rf ~`.
const SHELL_META: &str = ";&|`$<>(){}\\\n\r";

/// How long to wait for the output pipes to drain after the process group is gone.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

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
    /// Waiting for the process failed.
    #[error("could not wait for `{command}`: {source}")]
    Wait {
        /// The command.
        command: String,
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
    let start = Instant::now();
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(cmd.trim())
        .current_dir(worktree)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        command.process_group(0);
    }
    let mut child = command.spawn().map_err(|source| CommandError::Spawn {
        command: cmd.to_string(),
        worktree: worktree.display().to_string(),
        source,
    })?;
    let out = Capture::start(child.stdout.take(), policy.max_output_bytes);
    let err = Capture::start(child.stderr.take(), policy.max_output_bytes);
    let wait_err = |source| CommandError::Wait {
        command: cmd.to_string(),
        source,
    };
    let mut pause = Duration::from_millis(1);
    let status = loop {
        if let Some(status) = child.try_wait().map_err(wait_err)? {
            break Some(status);
        }
        if start.elapsed() >= policy.timeout {
            outcome.timed_out = true;
            kill_group(&mut child);
            child.wait().map_err(wait_err)?;
            break None;
        }
        let left = policy.timeout.saturating_sub(start.elapsed());
        std::thread::sleep(pause.min(left).max(Duration::from_millis(1)));
        pause = (pause * 2).min(Duration::from_millis(25));
    };
    // Background children left in the group would keep the pipes open; they go too.
    kill_group(&mut child);
    outcome.duration = start.elapsed();
    outcome.exit_code = status.and_then(|s| s.code());
    outcome.stdout = out.finish(DRAIN_GRACE);
    outcome.stderr = err.finish(DRAIN_GRACE);
    Ok(outcome)
}

/// Kills the child's whole process group (the child leads it), or just the child where
/// process groups do not exist.
fn kill_group(child: &mut Child) {
    #[cfg(unix)]
    {
        // The shell's builtin `kill` takes a negative pid for a group; std has no killpg.
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!("kill -s KILL -- -{} 2>/dev/null", child.id()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    let _ = child.kill();
}

/// Head and tail of a stream, with the total size.
#[derive(Default)]
struct Kept {
    head: Vec<u8>,
    tail: VecDeque<u8>,
    total: u64,
}

impl Kept {
    fn push(&mut self, mut data: &[u8], max: usize) {
        self.total += data.len() as u64;
        let head_max = max / 2;
        let tail_max = max - head_max;
        let room = head_max.saturating_sub(self.head.len());
        let take = room.min(data.len());
        self.head.extend_from_slice(&data[..take]);
        data = &data[take..];
        if data.len() >= tail_max {
            self.tail.clear();
            self.tail.extend(&data[data.len() - tail_max..]);
        } else {
            let over = (self.tail.len() + data.len()).saturating_sub(tail_max);
            self.tail.drain(..over);
            self.tail.extend(data);
        }
    }

    fn render(&self) -> String {
        let kept = (self.head.len() + self.tail.len()) as u64;
        let tail: Vec<u8> = self.tail.iter().copied().collect();
        if kept == self.total {
            let mut all = self.head.clone();
            all.extend_from_slice(&tail);
            return String::from_utf8_lossy(&all).into_owned();
        }
        format!(
            "{}\n[… {} bytes cut …]\n{}",
            String::from_utf8_lossy(&self.head),
            self.total - kept,
            String::from_utf8_lossy(&tail)
        )
    }
}

/// Cuts `bytes` to at most `max` bytes plus a marker, keeping the head and the tail.
pub fn trim_output(bytes: &[u8], max: usize) -> String {
    let mut k = Kept::default();
    k.push(bytes, max);
    k.render()
}

/// A thread reading one pipe into a [`Kept`].
struct Capture {
    kept: Arc<Mutex<Kept>>,
    done: Option<mpsc::Receiver<()>>,
}

impl Capture {
    fn start<R: Read + Send + 'static>(pipe: Option<R>, max: usize) -> Capture {
        let kept = Arc::new(Mutex::new(Kept::default()));
        let Some(mut pipe) = pipe else {
            return Capture { kept, done: None };
        };
        let (tx, rx) = mpsc::channel();
        let shared = Arc::clone(&kept);
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            loop {
                match pipe.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => match shared.lock() {
                        Ok(mut k) => k.push(&buf[..n], max),
                        Err(_) => break,
                    },
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            let _ = tx.send(());
        });
        Capture {
            kept,
            done: Some(rx),
        }
    }

    /// Waits up to `grace` for the pipe to close, then renders what was read.
    fn finish(self, grace: Duration) -> String {
        if let Some(rx) = self.done {
            let _ = rx.recv_timeout(grace);
        }
        match self.kept.lock() {
            Ok(k) => k.render(),
            Err(poisoned) => poisoned.into_inner().render(),
        }
    }
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

    #[test]
    fn trimming_keeps_head_and_tail() {
        assert_eq!(trim_output(b"short", 100), "short");
        let data: Vec<u8> = (0..1000).map(|i| b'a' + (i % 26) as u8).collect();
        let got = trim_output(&data, 10);
        assert_eq!(got, "abcde\n[… 990 bytes cut …]\nhijkl");
        // Same result when the data arrives in small pieces.
        let mut k = Kept::default();
        for c in data.chunks(7) {
            k.push(c, 10);
        }
        assert_eq!(k.render(), got);
    }
}
