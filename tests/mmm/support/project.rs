//! A tiny project for end-to-end runs of `git mmm run` (shell gates, `.mmm/config.toml`,
//! `specs/*.md`), and readers of what the loop recorded, all through plain `git`.

use std::process::{Command, Output};

use serde_json::Value;

use super::TestRepo;
use super::fake_anthropic::{FakeAnthropic, KEY};

/// A repository with `.mmm/config.toml`, the given specs (`specs/<id>.md`) and files, committed
/// on `main`.
pub fn project(config: &str, specs: &[(&str, &str)], files: &[(&str, &str)]) -> TestRepo {
    let repo = TestRepo::new();
    repo.write(".mmm/config.toml", config);
    for (id, body) in specs {
        repo.write(&format!("specs/{id}.md"), body);
    }
    for (path, content) in files {
        repo.write(path, content);
    }
    repo.commit_all("a tiny project");
    repo
}

/// A spec with optional TOML front matter (without the `+++` lines), one objective and one
/// criterion.
pub fn spec(title: &str, front: &str) -> String {
    let front = if front.is_empty() {
        String::new()
    } else {
        format!("+++\n{front}\n+++\n\n")
    };
    format!(
        "{front}# {title}\n\n## Objective\n\nMake `check.sh` pass for {title}.\n\n\
         ## Acceptance criteria\n\n- check.sh exits 0.\n  verify: `sh check.sh`\n"
    )
}

/// `git-mmm` with the `api` agent pointed at the fake.
pub fn api_cmd(repo: &TestRepo, fake: &FakeAnthropic) -> Command {
    let mut cmd = repo.mmm_cmd();
    cmd.env("ANTHROPIC_BASE_URL", fake.base_url())
        .env("ANTHROPIC_API_KEY", KEY);
    cmd
}

/// Runs `git-mmm ARGS` against the fake and returns the output.
pub fn run_api(repo: &TestRepo, fake: &FakeAnthropic, args: &[&str]) -> Output {
    api_cmd(repo, fake)
        .args(args)
        .output()
        .expect("run git-mmm")
}

/// stdout and stderr of an output, for assertion messages.
pub fn show(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// One iteration commit on `mmm/<spec>`, read with `git log`.
#[derive(Debug, Clone)]
pub struct Iteration {
    /// The commit id.
    pub commit: String,
    /// The whole message.
    pub message: String,
}

impl Iteration {
    /// The value of a trailer.
    pub fn trailer(&self, key: &str) -> Option<String> {
        let prefix = format!("{key}: ");
        self.message
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .map(str::to_owned)
    }

    /// `Mmm-Status`.
    pub fn status(&self) -> String {
        self.trailer("Mmm-Status").unwrap_or_default()
    }

    /// `Mmm-Iteration`.
    pub fn n(&self) -> u32 {
        self.trailer("Mmm-Iteration")
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }
}

/// The iteration commits of `mmm/<spec>` along the first-parent chain, oldest first.
pub fn iterations(repo: &TestRepo, spec: &str) -> Vec<Iteration> {
    let out = repo.git(&[
        "log",
        "--first-parent",
        "--reverse",
        "--format=%H%x00%B%x1e",
        &format!("refs/heads/mmm/{spec}"),
    ]);
    out.split('\x1e')
        .filter_map(|entry| {
            let (commit, message) = entry.trim_start_matches('\n').split_once('\0')?;
            Some(Iteration {
                commit: commit.to_owned(),
                message: message.to_owned(),
            })
        })
        .filter(|i| i.trailer("Mmm-Spec").as_deref() == Some(spec))
        .collect()
}

/// The JSON lines of a note (`git notes --ref=mmm/<spec>/<kind> show <commit>`).
pub fn note(repo: &TestRepo, spec: &str, kind: &str, commit: &str) -> Vec<Value> {
    let text = repo.git(&["notes", &format!("--ref=mmm/{spec}/{kind}"), "show", commit]);
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l}: {e}")))
        .collect()
}

/// The `metrics` record of an iteration.
pub fn metrics(repo: &TestRepo, spec: &str, commit: &str) -> Value {
    note(repo, spec, "metrics", commit)
        .into_iter()
        .find(|r| r["kind"] == "metrics")
        .unwrap_or_else(|| panic!("no metrics record on {commit}"))
}

/// The transcript records of an iteration.
pub fn transcript(repo: &TestRepo, spec: &str, commit: &str) -> Vec<Value> {
    note(repo, spec, "transcripts", commit)
}

/// The text of every note under `refs/notes/`, concatenated.
pub fn all_notes(repo: &TestRepo) -> String {
    let refs = repo.git(&["for-each-ref", "--format=%(refname)", "refs/notes/"]);
    let mut all = String::new();
    for r in refs.lines() {
        for line in repo.git(&["notes", &format!("--ref={r}"), "list"]).lines() {
            if let Some((blob, _)) = line.split_once(' ') {
                all.push_str(&repo.git(&["cat-file", "-p", blob]));
            }
        }
    }
    all
}

/// `git fsck --strict` passes and no worktree but the main one and the specs' kept ones (idle,
/// locked `mmm kept <spec>`) is left.
pub fn assert_clean(repo: &TestRepo) {
    repo.assert_fsck();
    let list = repo.git(&["worktree", "list", "--porcelain"]);
    let count = list
        .split("\n\n")
        .filter(|b| b.starts_with("worktree ") && !b.contains("\nlocked mmm kept "))
        .count();
    assert_eq!(count, 1, "a worktree was left behind:\n{list}");
}

/// The JSON events of a `--json` run's stdout.
pub fn events(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect()
}

/// A whole-file edit in the format the parser understands.
pub fn write_file(path: &str, content: &str) -> String {
    format!("{path}\n```text\n{content}\n```\n")
}

/// `git mmm show SPEC N` reads every iteration's notes back (a note the store cannot parse
/// fails here).
pub fn assert_readable(repo: &TestRepo, spec: &str) {
    for it in iterations(repo, spec) {
        let out = repo.mmm(&["show", spec, &it.n().to_string()]);
        assert!(
            out.status.success(),
            "show {spec} {}: {}",
            it.n(),
            show(&out)
        );
    }
}
