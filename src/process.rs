//! Running shell commands for the loop: gates, `verify` commands and the commands a model asks
//! for. Each runs through `sh -c` in a given directory, in its own process group (so a timeout
//! or an interrupt ends everything it started), with stdin closed and output captured up to a
//! limit (the head and the tail are kept, the middle is cut with a visible marker).
//!
//! Owns: child processes. Must not decide whether a command is allowed: callers do that.

use std::ffi::OsStr;
use std::io::{Read, Write as _};
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{ChildStderr, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// What to run and how.
#[derive(Debug, Clone)]
pub struct ShellCommand<'a> {
    /// The command line, given to `sh -c`.
    pub command: &'a str,
    /// The working directory.
    pub dir: &'a Path,
    /// Ends the whole process group after this long.
    pub timeout: Duration,
    /// At most this many bytes of stdout and of stderr are kept (head and tail).
    pub max_output_bytes: usize,
    /// Extra environment variables.
    pub env: &'a [(String, String)],
    /// Variables removed from the child's environment.
    pub env_remove: &'a [String],
}

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CommandOutput {
    /// The exit code, if the command exited normally.
    pub exit_code: Option<i32>,
    /// True when the command was ended because it ran too long.
    pub timed_out: bool,
    /// Captured stdout, trimmed to the limit.
    pub stdout: String,
    /// Captured stderr, trimmed to the limit.
    pub stderr: String,
    /// Wall-clock duration in milliseconds.
    pub duration_ms: u64,
}

impl CommandOutput {
    /// True when the command exited with status 0 in time.
    pub fn success(&self) -> bool {
        !self.timed_out && self.exit_code == Some(0)
    }

    /// Stdout and stderr together, for feedback to the model.
    pub fn combined(&self) -> String {
        match (self.stdout.is_empty(), self.stderr.is_empty()) {
            (_, true) => self.stdout.clone(),
            (true, false) => self.stderr.clone(),
            (false, false) => format!("{}\n{}", self.stdout.trim_end(), self.stderr),
        }
    }
}

/// Runs a command to completion or timeout. An error means the command could not be started
/// at all (for example, no `sh`); a failing command is an `Ok` with its exit code.
pub fn run(cmd: &ShellCommand<'_>) -> std::io::Result<CommandOutput> {
    let start = Instant::now();
    let mut group = Group::spawn(&Spawn {
        program: OsStr::new("sh"),
        args: &[OsStr::new("-c"), OsStr::new(cmd.command)],
        dir: cmd.dir,
        stdin: None,
        env: cmd.env,
        env_remove: cmd.env_remove,
    })?;
    let limit = cmd.max_output_bytes;
    let stdout = group.stdout.take().map(|s| spawn_reader(s, limit));
    let stderr = group.stderr.take().map(|s| spawn_reader(s, limit));
    let timed_out = !group.wait_timeout(cmd.timeout);
    // Ends the group: on timeout the command itself, otherwise descendants that outlive the
    // shell and would keep the pipes open.
    let status = group.end()?;
    let stdout = stdout.map(join_reader).unwrap_or_default();
    let stderr = stderr.map(join_reader).unwrap_or_default();
    Ok(CommandOutput {
        exit_code: if timed_out { None } else { status.code() },
        timed_out,
        stdout,
        stderr,
        duration_ms: u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX),
    })
}

/// What to start: a program with its arguments, in a directory, with its environment adjusted.
#[derive(Debug)]
pub(crate) struct Spawn<'a> {
    /// The executable.
    pub program: &'a OsStr,
    /// Its arguments.
    pub args: &'a [&'a OsStr],
    /// The working directory.
    pub dir: &'a Path,
    /// Bytes written to stdin, which is then closed; `None`: stdin is closed from the start.
    pub stdin: Option<Vec<u8>>,
    /// Extra environment variables.
    pub env: &'a [(String, String)],
    /// Variables removed from the child's environment (API keys, `CLAUDECODE`, …).
    pub env_remove: &'a [String],
}

/// A child running in its own process group, so that ending the group ends everything it
/// started. Its group is known to [`kill_all_groups`] until [`Group::end`] (or drop) kills it.
#[derive(Debug)]
pub(crate) struct Group {
    pid: u32,
    /// Signalled by the waiter thread when the child has exited.
    exited: mpsc::Receiver<()>,
    waiter: Option<thread::JoinHandle<std::io::Result<ExitStatus>>>,
    /// The child's stdout, for the caller to read.
    pub stdout: Option<ChildStdout>,
    /// The child's stderr, for the caller to read.
    pub stderr: Option<ChildStderr>,
}

impl Group {
    /// Starts `spec` in a new process group with stdout and stderr piped. An error means it
    /// could not be started.
    pub(crate) fn spawn(spec: &Spawn<'_>) -> std::io::Result<Group> {
        Group::spawn_notifying(spec, || {})
    }

    /// [`Group::spawn`], calling `on_exit` from the thread that waits for the child as soon as
    /// it has exited: a caller that also waits for other things (output lines) wakes up at once
    /// instead of polling.
    pub(crate) fn spawn_notifying(
        spec: &Spawn<'_>,
        on_exit: impl FnOnce() + Send + 'static,
    ) -> std::io::Result<Group> {
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
        track(pid);
        if let (Some(bytes), Some(mut stdin)) = (spec.stdin.clone(), child.stdin.take()) {
            // A child that does not read its stdin must not block us: write from a thread.
            thread::spawn(move || {
                let _ = stdin.write_all(&bytes);
            });
        }
        let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
        let (tx, exited) = mpsc::channel();
        let waiter = thread::spawn(move || {
            let status = child.wait();
            let _ = tx.send(());
            on_exit();
            status
        });
        Ok(Group {
            pid,
            exited,
            waiter: Some(waiter),
            stdout,
            stderr,
        })
    }

    /// Waits up to `timeout` for the child to exit: true once it has, false while it runs.
    pub(crate) fn wait_timeout(&self, timeout: Duration) -> bool {
        !matches!(
            self.exited.recv_timeout(timeout),
            Err(mpsc::RecvTimeoutError::Timeout)
        )
    }

    /// Kills the group (the child if it still runs, whatever it left behind otherwise) and
    /// returns how the child ended.
    pub(crate) fn end(mut self) -> std::io::Result<ExitStatus> {
        self.kill();
        // The group is dead or the child exited; waiting cannot block for long now.
        self.waiter
            .take()
            .expect("a group is ended once")
            .join()
            .map_err(|_| std::io::Error::other("the waiter thread panicked"))?
    }

    fn kill(&self) {
        kill_group(self.pid);
        untrack(self.pid);
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        if self.waiter.is_some() {
            self.kill();
        }
    }
}

/// The process groups of the children running now, so that an abort can end them all.
static LIVE_GROUPS: std::sync::Mutex<Vec<u32>> = std::sync::Mutex::new(Vec::new());

/// Notes a child's process group as running (until [`untrack`]).
fn track(pid: u32) {
    LIVE_GROUPS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(pid);
}

/// Forgets a child's process group.
fn untrack(pid: u32) {
    LIVE_GROUPS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|p| *p != pid);
}

/// Ends every child process group mmm started and that still runs: gates, commands, agent
/// CLIs. For an abort (a second Ctrl-C), so that nothing keeps running or spending.
pub fn kill_all_groups() {
    let groups = std::mem::take(&mut *LIVE_GROUPS.lock().unwrap_or_else(|e| e.into_inner()));
    for pid in groups {
        kill_group(pid);
    }
}

/// Sends SIGKILL to a process group.
fn kill_group(pid: u32) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: killpg only sends a signal; a stale group id yields ESRCH, which is ignored.
        unsafe {
            libc::killpg(pid, libc::SIGKILL);
        }
    }
}

/// The text a reader thread kept, once its pipe has closed.
pub(crate) type Reader = mpsc::Receiver<String>;

/// How long to wait for a pipe to drain once the process group is gone. A descendant that left
/// the group (`setsid`) can hold the pipe open for ever; its output is then given up.
const DRAIN: Duration = Duration::from_secs(2);

/// Reads `source` to its end in a thread, keeping the first and last `limit / 2` bytes.
pub(crate) fn spawn_reader(mut source: impl Read + Send + 'static, limit: usize) -> Reader {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut kept = HeadTail::new(limit);
        let mut buf = [0u8; 8192];
        loop {
            match source.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => kept.push(&buf[..n]),
            }
        }
        let _ = tx.send(kept.finish());
    });
    rx
}

pub(crate) fn join_reader(rx: Reader) -> String {
    rx.recv_timeout(DRAIN).unwrap_or_else(|_| {
        "[mmm: output not collected: a process outside the group kept the pipe open]".to_owned()
    })
}

/// Keeps the first and last `limit / 2` bytes of a stream.
struct HeadTail {
    limit: usize,
    head: Vec<u8>,
    tail: std::collections::VecDeque<u8>,
    total: usize,
}

impl HeadTail {
    fn new(limit: usize) -> Self {
        HeadTail {
            limit,
            head: Vec::new(),
            tail: std::collections::VecDeque::new(),
            total: 0,
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        self.total += bytes.len();
        let head_cap = self.limit / 2;
        let take = head_cap.saturating_sub(self.head.len()).min(bytes.len());
        self.head.extend_from_slice(&bytes[..take]);
        let tail_cap = self.limit - head_cap;
        for &b in &bytes[take..] {
            if self.tail.len() == tail_cap {
                self.tail.pop_front();
            }
            if tail_cap > 0 {
                self.tail.push_back(b);
            }
        }
    }

    fn finish(self) -> String {
        let kept = self.head.len() + self.tail.len();
        let mut out = String::from_utf8_lossy(&self.head).into_owned();
        if kept < self.total {
            out.push_str(&format!("\n[… {} bytes cut by mmm …]\n", self.total - kept));
        }
        let tail: Vec<u8> = self.tail.into_iter().collect();
        out.push_str(&String::from_utf8_lossy(&tail));
        out
    }
}

/// Shortens text to at most `max_lines` lines, keeping the first and the last lines and
/// marking the cut, which is where compiler and test output keeps what matters.
pub fn trim_lines(text: &str, max_lines: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    if lines.len() <= max_lines || max_lines < 2 {
        return text.to_owned();
    }
    let head = max_lines / 2;
    let tail = max_lines - head;
    let mut out = lines[..head].join("\n");
    out.push_str(&format!(
        "\n[… {} lines cut by mmm …]\n",
        lines.len() - head - tail
    ));
    out.push_str(&lines[lines.len() - tail..].join("\n"));
    out
}

/// Starts `program args` in `dir` detached from this process, for work that outlives it (the
/// runs a push hook starts): in a session of its own (`setsid`, so that neither the terminal's
/// Ctrl-C nor the end of the push reaches it), stdin from `/dev/null`, stdout and stderr
/// appended to `log`. It is not waited for; its pid is returned.
pub fn spawn_detached(
    program: &OsStr,
    args: &[&OsStr],
    dir: &Path,
    log: std::fs::File,
    env_remove: &[String],
) -> std::io::Result<u32> {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    for k in env_remove {
        cmd.env_remove(k);
    }
    // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    // Dropped without a wait: the child is reparented to init when this process ends.
    Ok(cmd.spawn()?.id())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(command: &str, timeout_ms: u64, limit: usize) -> CommandOutput {
        let dir = std::env::temp_dir();
        run(&ShellCommand {
            command,
            dir: &dir,
            timeout: Duration::from_millis(timeout_ms),
            max_output_bytes: limit,
            env: &[],
            env_remove: &[],
        })
        .expect("sh runs")
    }

    #[test]
    fn exit_codes_and_output() {
        let out = sh("echo out; echo err >&2; exit 3", 5000, 1000);
        assert_eq!(out.exit_code, Some(3));
        assert_eq!(out.stdout, "out\n");
        assert_eq!(out.stderr, "err\n");
        assert!(!out.success());
        assert!(sh("true", 5000, 10).success());
    }

    #[test]
    fn removed_variables_are_not_seen() {
        let dir = std::env::temp_dir();
        let out = run(&ShellCommand {
            command: "echo ${HOME:-unset}",
            dir: &dir,
            timeout: Duration::from_secs(5),
            max_output_bytes: 100,
            env: &[],
            env_remove: &["HOME".to_string()],
        })
        .expect("sh runs");
        assert_eq!(out.stdout, "unset\n");
    }

    #[test]
    fn timeout_kills_the_group() {
        let start = Instant::now();
        let out = sh("sleep 30 & sleep 30; echo never", 200, 1000);
        assert!(out.timed_out);
        assert_eq!(out.exit_code, None);
        assert!(start.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn huge_output_is_cut_in_the_middle() {
        let out = sh(
            "yes abcdefgh | head -c 1000000; echo; echo END",
            10_000,
            100,
        );
        assert!(out.stdout.len() < 200, "{}", out.stdout.len());
        assert!(out.stdout.contains("bytes cut by mmm"));
        assert!(out.stdout.starts_with("abcdefgh"));
        assert!(out.stdout.ends_with("END\n"));
    }

    #[test]
    fn trims_lines() {
        let text = (1..=10)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join("\n");
        assert_eq!(
            trim_lines(&text, 4),
            "1\n2\n[… 6 lines cut by mmm …]\n9\n10"
        );
        assert_eq!(trim_lines("a\nb", 4), "a\nb");
    }

    #[test]
    fn a_group_feeds_stdin_and_scrubs_the_environment() {
        let dir = std::env::temp_dir();
        let mut group = Group::spawn(&Spawn {
            program: OsStr::new("sh"),
            args: &[
                OsStr::new("-c"),
                OsStr::new("cat; echo ${HOME:-unset} $MMM_X"),
            ],
            dir: &dir,
            stdin: Some(b"fed ".to_vec()),
            env: &[("MMM_X".to_string(), "x".to_string())],
            env_remove: &["HOME".to_string()],
        })
        .expect("sh runs");
        let out = spawn_reader(group.stdout.take().expect("piped"), 100);
        assert!(group.wait_timeout(Duration::from_secs(10)));
        assert!(group.end().expect("waited").success());
        assert_eq!(join_reader(out), "fed unset x\n");
    }

    #[test]
    fn a_dropped_group_is_killed() {
        let dir = std::env::temp_dir();
        let group = Group::spawn(&Spawn {
            program: OsStr::new("sleep"),
            args: &[OsStr::new("30")],
            dir: &dir,
            stdin: None,
            env: &[],
            env_remove: &[],
        })
        .expect("sleep runs");
        assert!(!group.wait_timeout(Duration::from_millis(50)));
        let pid = group.pid;
        drop(group);
        let tracked = LIVE_GROUPS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&pid);
        assert!(!tracked, "a dropped group is forgotten");
        let pid = libc::pid_t::try_from(pid).expect("a pid");
        let start = Instant::now();
        // SAFETY: signal 0 only checks that the process exists (the waiter thread reaps it).
        while unsafe { libc::kill(pid, 0) } == 0 {
            assert!(start.elapsed() < Duration::from_secs(10), "still running");
            thread::sleep(Duration::from_millis(10));
        }
    }
}
