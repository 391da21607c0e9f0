//! The kill -9 torture (issue 11; docs/RELIABILITY.md): rounds of `git mmm run` on several
//! specs with a `command` agent of random latency, one spec or all at once (and `--push`, a
//! rollback or a sync to a bare remote), killed with
//! SIGKILL at a random moment; after each round an independent consistency check with plain
//! git, then `git mmm doctor`, then the next round resumes.
//!
//! Reproducible from a seed. The short version runs with the tests (30 rounds); the long one:
//!
//! ```text
//! MMM_TORTURE_ROUNDS=200 MMM_TORTURE_SEED=7 cargo test --test mmm -- --ignored torture --nocapture
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::TestRepo;
use crate::support::project::{project, show, spec};

const SPECS: [&str; 3] = ["alpha", "beta", "gamma"];

/// splitmix64: a seeded generator without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// What the rounds did, for the report.
#[derive(Debug, Default)]
pub struct Figures {
    rounds: u32,
    acknowledged: usize,
    /// Acknowledged iterations not reachable after a round (the check fails on the first).
    lost: usize,
    iterations: usize,
    locks_cleared: usize,
    doctor_repairs: usize,
    /// Doctor runs that failed (and succeeded when run again).
    doctor_failures: usize,
    /// Rounds by what was killed: run, run --push, rollback, sync.
    actions: [u32; 4],
}

/// The bare remote is sound: `git fsck --strict` clean, whatever a killed push left.
fn remote_sound(tools: &Path) {
    let out = Command::new("git")
        .args(["fsck", "--strict", "--no-progress"])
        .current_dir(tools.join("remote.git"))
        .output()
        .expect("git fsck");
    assert!(
        out.status.success(),
        "git fsck of the remote: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The project: three specs, a `command` agent that sleeps `$TORTURE_SLEEP` then appends a
/// line to `work.txt` in its worktree (no gate: every iteration passes, no run ends by itself).
fn torture_project(tools: &Path) -> TestRepo {
    use std::os::unix::fs::PermissionsExt as _;
    let agent = tools.join("agent.sh");
    std::fs::write(
        &agent,
        "#!/bin/sh\nsleep \"${TORTURE_SLEEP:-0}\"\necho \"$$ $(date +%s%N)\" >> work.txt\necho \"@mmm:summary appended a line\"\n",
    )
    .expect("agent");
    std::fs::set_permissions(&agent, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let config = format!(
        "[agent]\nkind = \"command\"\ncommand = \"{} {{prompt_file}}\"\n\n[loop]\nmax_iterations = 10000\nstuck_after = 10000\nconcurrency = 3\ncheckpoint_after = \"200ms\"\n",
        agent.display()
    );
    let specs: Vec<(String, String)> = SPECS
        .iter()
        .map(|s| ((*s).to_owned(), spec(s, "")))
        .collect();
    let specs: Vec<(&str, &str)> = specs
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let repo = project(&config, &specs, &[("README.md", "torture\n")]);
    // A bare remote for `sync` and `run --push`.
    let remote = tools.join("remote.git");
    let init = Command::new("git")
        .args(["init", "-q", "--bare", "-b", "main"])
        .arg(&remote)
        .status()
        .expect("git init --bare");
    assert!(init.success());
    let url = format!("file://{}", remote.display());
    repo.git(&["remote", "add", "origin", &url]);
    repo.git(&["push", "-q", "origin", "main"]);
    repo
}

/// What a round does before the kill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    /// `git mmm run`, `--push` or not.
    Run { push: bool },
    /// `git mmm rollback SPEC --to N`.
    Rollback,
    /// `git mmm sync`.
    Sync,
}

fn action(rng: &mut Rng) -> Action {
    match rng.below(10) {
        0..=4 => Action::Run { push: false },
        5 | 6 => Action::Run { push: true },
        7 | 8 => Action::Rollback,
        _ => Action::Sync,
    }
}

/// The iterations on `mmm/<spec>`, 0 without a branch.
fn iterations_of(repo: &TestRepo, spec: &str) -> u64 {
    let out = repo.git_output(&[
        "rev-list",
        "--first-parent",
        "--count",
        &format!("refs/heads/mmm/{spec}"),
        "--not",
        "main",
    ]);
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

/// A rollback or a sync killed at a random moment.
fn other_round(repo: &TestRepo, rng: &mut Rng, what: Action) {
    let mut cmd = repo.mmm_cmd();
    let wait_ms = match what {
        Action::Rollback => {
            let spec = SPECS[rng.below(SPECS.len() as u64) as usize];
            let n = iterations_of(repo, spec);
            let to = if n == 0 { 1 } else { 1 + rng.below(n) };
            cmd.args(["rollback", spec, "--to", &to.to_string()]);
            rng.below(60)
        }
        _ => {
            cmd.args(["sync", "--json"]);
            rng.below(400)
        }
    };
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    std::thread::sleep(Duration::from_millis(wait_ms));
    let _ = Command::new("kill")
        .args(["-KILL", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

/// The user's state that no round may touch: HEAD, the index, the worktree.
fn user_state(repo: &TestRepo) -> String {
    format!(
        "{}{}{}",
        repo.git(&["rev-parse", "HEAD"]),
        repo.git(&["ls-files", "-s"]),
        repo.git(&["status", "--porcelain", "--untracked-files=all"])
    )
}

/// Runs one round: starts the run, kills it at a random moment. Returns the commits the run
/// acknowledged (`recorded` events) before it died, by spec.
fn round(repo: &TestRepo, rng: &mut Rng, push: bool) -> BTreeMap<String, Vec<String>> {
    let mut cmd = repo.mmm_cmd();
    cmd.args(["run", "--json"]);
    if push {
        cmd.arg("--push");
    }
    if rng.below(2) == 0 {
        cmd.arg(SPECS[rng.below(SPECS.len() as u64) as usize]);
    }
    let sleep_ms = rng.below(300);
    cmd.env("TORTURE_SLEEP", format!("0.{sleep_ms:03}"));
    // A process group of its own, so that the check below can wait for the git processes the
    // killed run had started (`git worktree add`, a checkout): they outlive it and finish their
    // work, and a check racing them sees a worktree half made (`HEAD` still the null id).
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut acked: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if v["event"] == "recorded"
                && let (Some(spec), Some(commit)) = (v["spec"].as_str(), v["commit"].as_str())
            {
                acked
                    .entry(spec.to_owned())
                    .or_default()
                    .push(commit.to_owned());
            }
        }
        acked
    });
    std::thread::sleep(Duration::from_millis(rng.below(1000)));
    let _ = Command::new("kill")
        .args(["-KILL", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let acked = reader.join().expect("reader");
    wait_for_orphans(&repo.dir.path().to_string_lossy());
    acked
}

/// Waits until no process is left that the killed run started in the repository: a `git
/// worktree add` or an agent goes on after its parent's SIGKILL, and a check made while one of
/// them is half done would blame mmm for a state that process completes a moment later (a new
/// worktree's HEAD is the null id until `git worktree add` sets it). Gives up after 30 s.
fn wait_for_orphans(root: &str) {
    let me = std::process::id().to_string();
    for _ in 0..600 {
        let busy = std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| {
                let pid = e.file_name().to_string_lossy().into_owned();
                if !pid.bytes().all(|b| b.is_ascii_digit()) || pid == me {
                    return false;
                }
                let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
                let cwd = std::fs::read_link(e.path().join("cwd")).unwrap_or_default();
                String::from_utf8_lossy(&cmdline).contains(root) || cwd.starts_with(root)
            });
        if !busy {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The independent check after a kill, with plain git only.
fn consistent(repo: &TestRepo, acked: &BTreeMap<String, BTreeSet<String>>, user: &str) -> usize {
    repo.assert_fsck();
    assert_eq!(
        user_state(repo),
        user,
        "the user's HEAD, index or worktree changed"
    );
    let mut iterations = 0;
    for s in SPECS {
        let branch = format!("refs/heads/mmm/{s}");
        let exists = repo
            .git_output(&["rev-parse", "--verify", "-q", &branch])
            .status
            .success();
        if exists {
            // Iteration numbers count down by one from the tip to 1, each commit with both
            // notes and the spec's trailers.
            let log = repo.git(&[
                "log",
                "--first-parent",
                "--format=%H %(trailers:key=Mmm-Spec,valueonly,separator=)|%(trailers:key=Mmm-Iteration,valueonly,separator=)",
                &branch,
                "--not",
                "main",
            ]);
            let annotated = |kind: &str| -> BTreeSet<String> {
                let list = repo.git_output(&["notes", &format!("--ref=mmm/{s}/{kind}"), "list"]);
                String::from_utf8_lossy(&list.stdout)
                    .lines()
                    .filter_map(|l| l.split(' ').nth(1).map(str::to_owned))
                    .collect()
            };
            let noted = [annotated("transcripts"), annotated("metrics")];
            let mut expected: Option<u32> = None;
            for line in log.lines() {
                let (commit, rest) = line.split_once(' ').expect("line");
                let (spec_t, n) = rest.split_once('|').expect("trailers");
                assert_eq!(spec_t.trim(), s, "{commit} has the spec's trailer");
                let n: u32 = n.trim().parse().expect("iteration number");
                if let Some(e) = expected {
                    assert_eq!(n, e, "{s}: iteration numbers without gaps");
                }
                expected = Some(n - 1);
                for (kind, set) in ["transcripts", "metrics"].iter().zip(&noted) {
                    assert!(
                        set.contains(commit),
                        "{s}: iteration {n} ({commit}) has no {kind} note"
                    );
                }
                iterations += 1;
            }
            if let Some(e) = expected {
                assert_eq!(e, 0, "{s}: the chain reaches iteration 1");
            }
        }
        // No note on a missing commit.
        for kind in ["transcripts", "metrics"] {
            let notes_ref = format!("refs/notes/mmm/{s}/{kind}");
            let list = repo.git_output(&["notes", "--ref", &notes_ref, "list"]);
            let targets: Vec<String> = String::from_utf8_lossy(&list.stdout)
                .lines()
                .filter_map(|l| l.split(' ').nth(1).map(str::to_owned))
                .collect();
            if targets.is_empty() {
                continue;
            }
            let mut check = std::process::Command::new("git")
                .args(["cat-file", "--batch-check"])
                .current_dir(&repo.path)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("cat-file");
            std::io::Write::write_all(
                &mut check.stdin.take().expect("stdin"),
                (targets.join("\n") + "\n").as_bytes(),
            )
            .expect("write");
            let out = check.wait_with_output().expect("cat-file");
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                !text.contains("missing"),
                "{notes_ref}: a note on a missing object:\n{text}"
            );
        }
        // Every acknowledged iteration is still reachable from the branch or the archive.
        let archive = format!("refs/mmm/{s}/archive");
        let tips: Vec<&str> = [branch.as_str(), archive.as_str()]
            .into_iter()
            .filter(|r| {
                repo.git_output(&["rev-parse", "--verify", "-q", r])
                    .status
                    .success()
            })
            .collect();
        let mut args = vec!["rev-list"];
        args.extend(&tips);
        let reachable: BTreeSet<String> = if tips.is_empty() {
            BTreeSet::new()
        } else {
            repo.git(&args).lines().map(str::to_owned).collect()
        };
        for commit in acked.get(s).into_iter().flatten() {
            assert!(
                reachable.contains(commit),
                "{s}: acknowledged {commit} was lost"
            );
        }
    }
    iterations
}

/// The `*.lock` files under the git directory.
fn locks(git_dir: &Path) -> Vec<String> {
    let out = Command::new("find")
        .arg(git_dir)
        .args(["-name", "*.lock"])
        .output()
        .expect("find");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Doctor after a round: it must succeed and leave no lock behind (a lock too young to judge
/// is judged again once it is old enough).
fn doctor(repo: &TestRepo, figures: &mut Figures) {
    let git_dir = repo.path.join(".git");
    let before = locks(&git_dir).len();
    let mut out = repo.mmm(&["doctor"]);
    if !out.status.success() {
        // Seen once in a loaded full test run and not reproduced since (docs/RELIABILITY.md):
        // printed, counted, and doctor must then succeed.
        eprintln!("torture: doctor failed once: {}", show(&out));
        figures.doctor_failures += 1;
        out = repo.mmm(&["doctor"]);
        assert!(out.status.success(), "doctor, again: {}", show(&out));
    }
    if !locks(&git_dir).is_empty() {
        std::thread::sleep(mmm::store::LOCK_STALE_AFTER + Duration::from_millis(200));
        out = repo.mmm(&["doctor"]);
        assert!(out.status.success(), "doctor: {}", show(&out));
    }
    let said = String::from_utf8_lossy(&out.stdout);
    figures.doctor_repairs += said.matches("repaired:").count();
    assert_eq!(locks(&git_dir), Vec::<String>::new(), "doctor left a lock");
    figures.locks_cleared += before;
}

/// `rounds` rounds from `seed`.
pub fn torture(seed: u64, rounds: u32) -> Figures {
    let tools = tempfile::tempdir().expect("tempdir");
    let repo = torture_project(tools.path());
    let user = user_state(&repo);
    let mut rng = Rng(seed);
    let mut figures = Figures::default();
    let mut acked: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let started = Instant::now();
    for r in 0..rounds {
        let what = action(&mut rng);
        match what {
            Action::Run { push } => {
                for (spec, commits) in round(&repo, &mut rng, push) {
                    figures.acknowledged += commits.len();
                    acked.entry(spec).or_default().extend(commits);
                }
            }
            Action::Rollback | Action::Sync => other_round(&repo, &mut rng, what),
        }
        figures.actions[match what {
            Action::Run { push: false } => 0,
            Action::Run { push: true } => 1,
            Action::Rollback => 2,
            Action::Sync => 3,
        }] += 1;
        figures.iterations = consistent(&repo, &acked, &user);
        doctor(&repo, &mut figures);
        // Doctor's repairs keep everything consistent too.
        consistent(&repo, &acked, &user);
        remote_sound(tools.path());
        figures.rounds = r + 1;
    }
    eprintln!(
        "torture seed {seed}: {} rounds in {:.1?}, {} iterations acknowledged, {} on the branches, {} lost, {} doctor repairs, {} doctor failures, {} lock files seen; killed: {} runs, {} runs --push, {} rollbacks, {} syncs",
        figures.rounds,
        started.elapsed(),
        figures.acknowledged,
        figures.iterations,
        figures.lost,
        figures.doctor_repairs,
        figures.doctor_failures,
        figures.locks_cleared,
        figures.actions[0],
        figures.actions[1],
        figures.actions[2],
        figures.actions[3],
    );
    figures
}

#[test]
fn kill_9_rounds_lose_nothing() {
    let figures = torture(11, 30);
    assert_eq!(figures.rounds, 30);
    assert!(
        figures.acknowledged > 0,
        "the rounds acknowledged iterations: {figures:?}"
    );
}

#[test]
#[ignore = "the long torture: MMM_TORTURE_ROUNDS (default 200), MMM_TORTURE_SEED (default 1)"]
fn torture_long() {
    let rounds = std::env::var("MMM_TORTURE_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(200);
    let seed = std::env::var("MMM_TORTURE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let figures = torture(seed, rounds);
    assert_eq!(figures.lost, 0);
}
