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

/// How often the waiting loop looks at the stop flag and the clock.
const POLL: Duration = Duration::from_millis(100);

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
    let mut group = Group::spawn(&Spawn {
        program: spec.program,
        args: &args,
        dir: spec.dir,
        stdin: spec.stdin.clone(),
        env: spec.env,
        env_remove: spec.env_remove,
    })?;
    let (tx, lines) = mpsc::channel::<String>();
    let stdout_reader = group.stdout.take().map(|out| read_lines(out, tx));
    let stderr = group
        .stderr
        .take()
        .map(|err| process::spawn_reader(err, STDERR_LIMIT));
    let ending = wait(&group, &lines, cancel, start + spec.timeout, on_line);
    // End the group: on timeout or stop the child itself, otherwise whatever it left behind.
    let status = group.end()?;
    if let Some(h) = stdout_reader {
        let _ = h.join();
    }
    while let Ok(line) = lines.try_recv() {
        on_line(&line);
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

/// Why the wait for a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    Exited,
    TimedOut,
    Cancelled,
}

/// Passes stdout lines on until the child exits, the stop flag is set or `deadline` passes.
fn wait(
    group: &Group,
    lines: &mpsc::Receiver<String>,
    cancel: &Cancel,
    deadline: Instant,
    on_line: &mut dyn FnMut(&str),
) -> Ending {
    loop {
        match lines.recv_timeout(POLL) {
            Ok(line) => on_line(&line),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            // stdout is closed but the child still runs: wait without spinning.
            Err(mpsc::RecvTimeoutError::Disconnected) => thread::sleep(POLL),
        }
        if group.wait_timeout(Duration::ZERO) {
            return Ending::Exited;
        }
        if cancel.is_cancelled() {
            return Ending::Cancelled;
        }
        if Instant::now() >= deadline {
            return Ending::TimedOut;
        }
    }
}

/// Reads stdout line by line in a thread and sends each line (without its end) to `tx`.
/// Huge output (a runaway or hostile agent) is drained but not kept: it would end up in
/// memory and in the transcript note; a last line says how much was dropped.
fn read_lines(out: impl Read + Send + 'static, tx: mpsc::Sender<String>) -> thread::JoinHandle<()> {
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
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            }
        }
        if dropped > 0 {
            let _ = tx.send(format!(
                "[mmm: {dropped} more bytes of output were dropped (over {STDOUT_LIMIT} bytes)]"
            ));
        }
    })
}

/// The last `n` lines of `text`, for error messages.
pub(crate) fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.trim_end().lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
