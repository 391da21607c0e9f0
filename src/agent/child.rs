//! Running an agent's executable through the one spawn path of `process` (its own process
//! group, stdin closed or fed once and closed, the environment adjusted): stdout read line by
//! line while it runs, stderr kept (head and tail), and the whole group ended on timeout, on a
//! stop request, and after the child exits (so that helpers it left behind cannot keep the
//! pipes open).
//!
//! Owns: the agent child processes. Must not interpret their output: the agents do.

use std::ffi::{OsStr, OsString};
use std::io::{BufRead as _, BufReader, Read};
use std::path::Path;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use super::turn::Cancel;
use crate::process::{self, Group, Spawn};

/// How often the wait looks at the stop flag (a plain flag that cannot wake it). The child's
/// exit and its output wake the wait at once.
const CANCEL_POLL: Duration = Duration::from_millis(100);

/// Bytes of stderr kept (half head, half tail).
const STDERR_LIMIT: usize = 256 * 1024;

/// The most stdout kept from an agent (lines past it are read and dropped).
const STDOUT_LIMIT: usize = 8 * 1024 * 1024;

/// What to run.
pub(crate) struct ChildSpec<'a> {
    /// The executable.
    pub program: &'a OsString,
    /// Its arguments.
    pub args: &'a [OsString],
    /// The working directory.
    pub dir: &'a Path,
    /// Bytes written to stdin, which is then closed; `None`: stdin is closed from the start.
    pub stdin: Option<Vec<u8>>,
    /// Extra environment variables.
    pub env: &'a [(String, String)],
    /// Variables removed from the child's environment.
    pub env_remove: &'a [String],
    /// Ends the group after this long.
    pub timeout: Duration,
}

/// How the child ended.
#[derive(Debug)]
pub(crate) struct ChildOutcome {
    /// The exit code, when it exited normally.
    pub exit_code: Option<i32>,
    /// Ended because it ran too long.
    pub timed_out: bool,
    /// Ended because the stop flag was set.
    pub cancelled: bool,
    /// Captured stderr (head and tail).
    pub stderr: String,
    /// Wall-clock time.
    pub duration: Duration,
}

/// Runs the child; every stdout line (without its newline) goes to `on_line` as it arrives.
/// An error means the executable could not be started.
pub(crate) fn run(
    spec: &ChildSpec<'_>,
    cancel: &Cancel,
    on_line: &mut dyn FnMut(&str),
) -> std::io::Result<ChildOutcome> {
    let start = Instant::now();
    let args: Vec<&OsStr> = spec.args.iter().map(OsString::as_os_str).collect();
    let (tx, messages) = mpsc::channel::<Message>();
    let exited = tx.clone();
    let mut group = Group::spawn_notifying(
        &Spawn {
            program: spec.program,
            args: &args,
            dir: spec.dir,
            stdin: spec.stdin.clone(),
            env: spec.env,
            env_remove: spec.env_remove,
        },
        move || {
            let _ = exited.send(Message::Exited);
        },
    )?;
    let stdout_reader = group.stdout.take().map(|out| read_lines(out, tx));
    let stderr = group
        .stderr
        .take()
        .map(|err| process::spawn_reader(err, STDERR_LIMIT));
    let ending = wait(&group, &messages, cancel, start + spec.timeout, on_line);
    // End the group: on timeout or stop the child itself, otherwise whatever it left behind.
    let status = group.end()?;
    if let Some(h) = stdout_reader {
        let _ = h.join();
    }
    // Lines still in the pipe when the child exited.
    while let Ok(message) = messages.try_recv() {
        if let Message::Line(line) = message {
            on_line(&line);
        }
    }
    Ok(ChildOutcome {
        exit_code: match ending {
            Ending::Exited => status.code(),
            Ending::TimedOut | Ending::Cancelled => None,
        },
        timed_out: ending == Ending::TimedOut,
        cancelled: ending == Ending::Cancelled,
        stderr: stderr.and_then(|rx| rx.recv().ok()).unwrap_or_default(),
        duration: start.elapsed(),
    })
}

/// What wakes the wait: a line of stdout, or the child's exit.
enum Message {
    Line(String),
    Exited,
}

/// Why the wait for a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    Exited,
    TimedOut,
    Cancelled,
}

/// Passes stdout lines on until the child exits, the stop flag is set or `deadline` passes.
/// Lines and the exit arrive on one channel, so the wait ends as soon as the child does.
fn wait(
    group: &Group,
    messages: &mpsc::Receiver<Message>,
    cancel: &Cancel,
    deadline: Instant,
    on_line: &mut dyn FnMut(&str),
) -> Ending {
    loop {
        if cancel.is_cancelled() {
            return Ending::Cancelled;
        }
        let now = Instant::now();
        if now >= deadline {
            return Ending::TimedOut;
        }
        let tick = CANCEL_POLL.min(deadline - now);
        match messages.recv_timeout(tick) {
            Ok(Message::Line(line)) => on_line(&line),
            Ok(Message::Exited) => return Ending::Exited,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            // Every sender is gone (the waiter thread died): ask the group itself.
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                if group.wait_timeout(tick) {
                    return Ending::Exited;
                }
            }
        }
    }
}

/// Reads stdout line by line in a thread and sends each line (without its end) to `tx`.
/// Huge output (a runaway or hostile agent) is drained but not kept: it would end up in
/// memory and in the transcript note; a last line says how much was dropped.
fn read_lines(
    out: impl Read + Send + 'static,
    tx: mpsc::Sender<Message>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut reader = BufReader::new(out);
        let mut buf = Vec::new();
        let (mut kept, mut dropped) = (0usize, 0usize);
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) if kept + n > STDOUT_LIMIT => dropped += n,
                Ok(n) => {
                    kept += n;
                    let line = String::from_utf8_lossy(&buf);
                    let line = line.trim_end_matches(['\n', '\r']).to_owned();
                    if tx.send(Message::Line(line)).is_err() {
                        break;
                    }
                }
            }
        }
        if dropped > 0 {
            let _ = tx.send(Message::Line(format!(
                "[mmm: {dropped} more bytes of output were dropped (over {STDOUT_LIMIT} bytes)]"
            )));
        }
    })
}

/// The last `n` lines of `text`, for error messages.
pub(crate) fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.trim_end().lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str, timeout: Duration, cancel: &Cancel) -> (ChildOutcome, Vec<String>) {
        let program: OsString = "sh".into();
        let args: Vec<OsString> = vec!["-c".into(), script.into()];
        let dir = std::env::temp_dir();
        let mut lines = Vec::new();
        let outcome = run(
            &ChildSpec {
                program: &program,
                args: &args,
                dir: &dir,
                stdin: None,
                env: &[],
                env_remove: &[],
                timeout,
            },
            cancel,
            &mut |l| lines.push(l.to_owned()),
        )
        .expect("sh runs");
        (outcome, lines)
    }

    #[test]
    fn a_child_that_exits_at_once_is_not_waited_for() {
        // The fastest of a few runs, so that a busy machine does not make the test flaky: a
        // wait that polled would take its polling interval every time.
        let fastest = (0..5)
            .map(|_| {
                let (outcome, lines) = sh(
                    "echo one; echo two",
                    Duration::from_secs(30),
                    &Cancel::new(),
                );
                assert_eq!(outcome.exit_code, Some(0));
                assert_eq!(lines, ["one", "two"]);
                outcome.duration
            })
            .min()
            .expect("five runs");
        assert!(fastest < CANCEL_POLL / 2, "{fastest:?}");
    }

    #[test]
    fn lines_arrive_while_the_child_runs_and_the_timeout_ends_it() {
        let program: OsString = "sh".into();
        let args: Vec<OsString> = vec!["-c".into(), "echo early; sleep 30".into()];
        let dir = std::env::temp_dir();
        let start = Instant::now();
        let mut first_line_after = None;
        let outcome = run(
            &ChildSpec {
                program: &program,
                args: &args,
                dir: &dir,
                stdin: None,
                env: &[],
                env_remove: &[],
                timeout: Duration::from_secs(2),
            },
            &Cancel::new(),
            &mut |_| {
                first_line_after.get_or_insert(start.elapsed());
            },
        )
        .expect("sh runs");
        assert!(outcome.timed_out);
        assert_eq!(outcome.exit_code, None);
        let first = first_line_after.expect("the line was passed on");
        assert!(
            first < Duration::from_secs(1),
            "streamed, not at the end: {first:?}"
        );
        assert!(outcome.duration < Duration::from_secs(10));
    }

    #[test]
    fn a_stop_request_ends_the_child() {
        let cancel = Cancel::new();
        cancel.cancel();
        let (outcome, _) = sh("sleep 30", Duration::from_secs(30), &cancel);
        assert!(outcome.cancelled);
        assert!(outcome.duration < Duration::from_secs(10));
    }

    #[test]
    fn the_exit_code_and_stderr_are_kept() {
        let (outcome, lines) = sh(
            "echo out; echo err >&2; exit 7",
            Duration::from_secs(30),
            &Cancel::new(),
        );
        assert_eq!(outcome.exit_code, Some(7));
        assert_eq!(outcome.stderr, "err\n");
        assert_eq!(lines, ["out"]);
    }
}
