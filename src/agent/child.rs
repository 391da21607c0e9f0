//! Running an agent's executable: its own process group, stdin closed (or fed once and
//! closed), stdout read line by line while it runs, stderr kept (head and tail), and the whole
//! group ended on timeout, on a stop request, and after the child exits (so that helpers it
//! left behind cannot keep the pipes open).
//!
//! Owns: the agent child processes. Must not interpret their output: the agents do.

use crate::process::kill_group;
use std::ffi::OsString;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use super::turn::Cancel;

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
    let mut command = Command::new(spec.program);
    command
        .args(spec.args)
        .current_dir(spec.dir)
        .stdin(if spec.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    for name in spec.env_remove {
        command.env_remove(name);
    }
    for (k, v) in spec.env {
        command.env(k, v);
    }
    let mut child = command.spawn()?;
    let pid = child.id();
    crate::process::track(pid);

    if let (Some(bytes), Some(mut stdin)) = (spec.stdin.clone(), child.stdin.take()) {
        // A child that does not read its stdin must not block us: write from a thread.
        thread::spawn(move || {
            let _ = stdin.write_all(&bytes);
        });
    }
    let (tx, rx) = mpsc::channel::<String>();
    let stdout_reader = child.stdout.take().map(|out| {
        thread::spawn(move || {
            let mut reader = BufReader::new(out);
            let mut buf = Vec::new();
            // Huge output (a runaway or hostile agent) is drained but not kept: it would end
            // up in memory and in the transcript note.
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
    });
    let stderr_reader = child.stderr.take().map(|mut err| {
        thread::spawn(move || {
            let mut kept = crate::process::HeadTail::new(STDERR_LIMIT);
            let mut buf = [0u8; 8192];
            loop {
                match err.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => kept.push(&buf[..n]),
                }
            }
            kept.finish()
        })
    });

    let deadline = start + spec.timeout;
    let mut timed_out = false;
    let mut cancelled = false;
    let status = loop {
        match rx.recv_timeout(POLL) {
            Ok(line) => on_line(&line),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            // stdout is closed but the child still runs: wait without spinning.
            Err(mpsc::RecvTimeoutError::Disconnected) => std::thread::sleep(POLL),
        }
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if cancel.is_cancelled() {
            cancelled = true;
            break None;
        }
        if Instant::now() >= deadline {
            timed_out = true;
            break None;
        }
    };
    // End the group: on timeout or stop the child itself, otherwise whatever it left behind.
    kill_group(pid);
    crate::process::untrack(pid);
    let status = match status {
        Some(s) => Some(s),
        None => Some(child.wait()?),
    };
    if let Some(h) = stdout_reader {
        let _ = h.join();
    }
    while let Ok(line) = rx.try_recv() {
        on_line(&line);
    }
    let stderr = stderr_reader
        .map(|h| h.join().unwrap_or_default())
        .unwrap_or_default();
    Ok(ChildOutcome {
        exit_code: if timed_out || cancelled {
            None
        } else {
            status.and_then(|s| s.code())
        },
        timed_out,
        cancelled,
        stderr,
        duration: start.elapsed(),
    })
}

/// The last `n` lines of `text`, for error messages.
pub(crate) fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.trim_end().lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
