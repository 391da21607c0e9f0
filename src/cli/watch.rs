//! `git mmm watch`: watches the specs directory and runs the specs that are added or changed
//! (once they have settled, `--debounce`), those ready as `git mmm plan` says, one loop per spec
//! at a time and up to `[loop] concurrency` at once; a spec edited while its loop runs gets one
//! more run of its new revision. Each run is a `git mmm run SPEC` child process. Ctrl-C stops
//! cleanly: every running loop is asked to stop after its current stage (as Ctrl-C does to
//! `run`), and watch exits once they have.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use mmm::config::Config;
use mmm::trigger::watch::Queue;
use notify_debouncer_mini::notify::RecursiveMode;
use notify_debouncer_mini::{DebounceEventResult, new_debouncer};

use super::{CliError, CliResult, Ctx, out};

/// Arguments of `git mmm watch`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// How long a spec file must stay unchanged before it runs.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = humantime::parse_duration)]
    pub debounce: Duration,
    /// Sync with the remote first, push every iteration and checkpoint (as `run --push`).
    #[arg(long)]
    pub push: bool,
}

enum Msg {
    Changed(Vec<PathBuf>),
    WatchError(String),
    Done(String, Option<i32>),
    Interrupt,
}

/// Runs `git mmm watch`.
pub fn run(ctx: &Ctx, args: &Args) -> CliResult {
    let (root, loaded) = super::config::load(ctx, Vec::new())?;
    let root = root.ok_or_else(|| {
        CliError::with_hint(
            anyhow!("not inside a git repository"),
            "run `git mmm watch` inside the repository that holds your specs",
        )
    })?;
    let config = loaded.config;
    let dir = root.join(&config.specs.dir);
    if !dir.is_dir() {
        return Err(CliError::with_hint(
            anyhow!("the specs directory {} does not exist", dir.display()),
            "create it (or set [specs] dir), then watch again",
        ));
    }
    // The specs as they are before the watch starts: a change after that runs.
    let seen = mmm::spec::discover(&root, Path::new(&config.specs.dir))
        .specs
        .iter()
        .map(|s| (s.id.to_string(), s.revision.clone()))
        .collect();
    let (tx, rx) = mpsc::channel();
    let fs = tx.clone();
    let mut debouncer = new_debouncer(args.debounce, move |res: DebounceEventResult| {
        let _ = fs.send(match res {
            Ok(events) => Msg::Changed(events.into_iter().map(|e| e.path).collect()),
            Err(e) => Msg::WatchError(e.to_string()),
        });
    })
    .context("cannot start watching files")?;
    debouncer
        .watcher()
        .watch(&dir, RecursiveMode::Recursive)
        .with_context(|| format!("cannot watch {}", dir.display()))?;
    on_ctrl_c(tx.clone());
    say(&format!(
        "watching {}/ (Ctrl-C stops)",
        config.specs.dir.trim_end_matches('/')
    ))?;
    let concurrency = usize::try_from(config.r#loop.concurrency).unwrap_or(usize::MAX);
    let mut w = Watcher {
        store: super::common::open_store(ctx)?,
        root: &root,
        config: &config,
        push: args.push,
        queue: Queue::new(concurrency),
        seen,
        stamps: HashMap::new(),
        children: HashMap::new(),
        tx,
    };
    w.serve(&rx)
}

/// The state of a watch.
struct Watcher<'a> {
    store: mmm::store::Store,
    root: &'a Path,
    config: &'a Config,
    push: bool,
    queue: Queue,
    /// The revision of each spec when it was last seen: a spec runs when its file has another
    /// (reading a file is reported as an event too, and must not start a run).
    seen: HashMap<String, String>,
    /// The modification time and size of each spec file an event named: reading a file (as
    /// discovering the specs does) is reported too, and must not start a discovery.
    stamps: HashMap<PathBuf, Option<(std::time::SystemTime, u64)>>,
    /// The pid of each running loop.
    children: HashMap<String, u32>,
    tx: mpsc::Sender<Msg>,
}

impl Watcher<'_> {
    fn serve(&mut self, rx: &mpsc::Receiver<Msg>) -> CliResult {
        let mut stopping = false;
        loop {
            let msg = rx.recv().context("the file watcher stopped")?;
            match msg {
                Msg::Changed(paths) if !stopping => {
                    // A failure to read the specs now (one half written, say) is not the end
                    // of the watch: the next change reads them again.
                    if let Err(e) = self.changed(&paths) {
                        say(&format!("{:#}", e.error))?;
                    }
                }
                Msg::Changed(_) => {}
                Msg::WatchError(e) => eprintln!("mmm watch: {e}"),
                Msg::Done(spec, code) => {
                    self.queue.finished(&spec);
                    self.children.remove(&spec);
                    let code = code.map_or_else(|| "by a signal".to_owned(), |c| c.to_string());
                    say(&format!("{spec} finished (exit {code})"))?;
                }
                Msg::Interrupt => {
                    stopping = true;
                    say("stopping: each running loop stops after its current stage")?;
                    for pid in self.children.values() {
                        interrupt(*pid);
                    }
                }
            }
            if stopping {
                if self.queue.idle() {
                    say("stopped")?;
                    return Ok(());
                }
                continue;
            }
            while let Some(spec) = self.queue.start_next() {
                self.start(&spec)?;
            }
        }
    }

    /// Queues the ready specs among `paths` whose revision is not the one last seen.
    fn changed(&mut self, paths: &[PathBuf]) -> CliResult {
        tracing::debug!(?paths, "changed");
        let mut any = false;
        for p in paths
            .iter()
            .filter(|p| p.extension().is_some_and(|x| x == "md"))
        {
            let stamp = std::fs::metadata(p)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())));
            if self.stamps.insert(p.clone(), stamp) != Some(stamp) {
                any = true;
            }
        }
        if !any {
            return Ok(());
        }
        let found = mmm::spec::discover(self.root, Path::new(&self.config.specs.dir));
        let states = self.store.status_all()?;
        let ready = mmm::engine::plan::ready(&found.specs, &states);
        tracing::debug!(
            specs = found.specs.len(),
            ready = ready.len(),
            errors = ?found.errors,
            "discovered"
        );
        for s in found.specs.iter() {
            if !paths.contains(&self.root.join(&s.path)) {
                continue;
            }
            let id = s.id.to_string();
            if self.seen.get(&id) == Some(&s.revision) {
                continue;
            }
            self.seen.insert(id.clone(), s.revision.clone());
            if ready.iter().any(|r| r.id == s.id) {
                self.queue.changed(&id);
            } else if !s.depends_on.is_empty() {
                say(&format!("{id} changed; it waits for what it depends on"))?;
            }
        }
        for e in found
            .errors
            .iter()
            .filter(|e| paths.contains(&self.root.join(&e.file)))
        {
            say(&format!("{e}"))?;
        }
        Ok(())
    }

    /// Starts `git mmm run SPEC` in its own process group (so that Ctrl-C reaches it once,
    /// from here) and a thread that reports its end.
    fn start(&mut self, spec: &str) -> CliResult {
        let revision = mmm::spec::discover(self.root, Path::new(&self.config.specs.dir))
            .specs
            .iter()
            .find(|s| s.id.as_str() == spec)
            .map(|s| s.revision.clone())
            .unwrap_or_default();
        let exe = std::env::current_exe().context("cannot find the git-mmm executable")?;
        let mut cmd = Command::new(exe);
        cmd.arg("-C").arg(self.root).args(["run", spec]);
        if self.push {
            cmd.arg("--push");
        }
        cmd.stdin(Stdio::null()).process_group(0);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start `git mmm run {spec}`"))?;
        self.children.insert(spec.to_owned(), child.id());
        say(&format!(
            "started {spec} at revision {}",
            &revision[..revision.len().min(12)]
        ))?;
        let tx = self.tx.clone();
        let spec = spec.to_owned();
        std::thread::spawn(move || {
            let code = child.wait().ok().and_then(|s| s.code());
            let _ = tx.send(Msg::Done(spec, code));
        });
        Ok(())
    }
}

fn say(line: &str) -> CliResult {
    let mut o = out();
    writeln!(o, "mmm watch: {line}")?;
    o.flush()?;
    Ok(())
}

/// Sends SIGINT to a running loop: it stops after its current stage.
fn interrupt(pid: u32) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill only sends a signal; a process already gone yields ESRCH, ignored.
        unsafe {
            libc::kill(pid, libc::SIGINT);
        }
    }
}

/// Each Ctrl-C becomes a message (the first stops the watch; loops take a second as abort).
fn on_ctrl_c(tx: mpsc::Sender<Msg>) {
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async {
            while tokio::signal::ctrl_c().await.is_ok() {
                if tx.send(Msg::Interrupt).is_err() {
                    return;
                }
            }
        });
    });
}
