//! A scenario of `git mmm run` against the fake Messages API: the answers, a tiny project
//! (configuration, specs, files), the run, and what it recorded read back with plain git.
//!
//! ```ignore
//! let ran = Scenario::spec_s().config("[loop]\nmax_iterations = 1\n")
//!     .answer(NEEDLE, Reply::Text(done()))
//!     .run(&["run", "s"]);
//! assert_eq!(ran.statuses("s"), ["complete"]);
//! assert_eq!(ran.metrics("s")[0]["stop_reason"], "complete");
//! ```

use std::ops::Deref;
use std::process::{Command, Output};

use serde_json::Value;

use super::TestRepo;
use super::fake_anthropic::{FakeAnthropic, Reply, Rule};
use super::project::{self, Iteration, api_cmd, iterations, metrics, project, run_api, show};

/// The gate: passes once `done.txt` exists; its failure output is computed, so that the
/// marker only reaches the prompt through the gate's output.
pub const CHECK: &str =
    "test -e done.txt && exit 0\necho \"GATE-$((6*7))-NO: done.txt is missing\"\nexit 1\n";

/// The needle every prompt for a spec made by [`project::spec`] contains.
pub const NEEDLE: &str = "Make `check.sh` pass";

/// A config for the `api` agent with a shell gate, plus `extra` sections.
pub fn config(extra: &str) -> String {
    format!(
        "[agent]\nkind = \"api\"\nmax_retries = 3\n\n[validate]\ntest = \"sh check.sh\"\ntimeout = \"30s\"\n\n{extra}"
    )
}

/// The answer that finishes the spec.
pub fn done() -> String {
    format!(
        "Creating the file.\n\n{}\n@mmm:summary created done.txt\n@mmm:complete\n",
        project::write_file("done.txt", "ok")
    )
}

/// What to set up before a run.
#[derive(Default)]
pub struct Scenario {
    rules: Vec<Rule>,
    config: String,
    specs: Vec<(String, String)>,
    files: Vec<(String, String)>,
}

impl Scenario {
    /// The `api` agent with the gate `sh check.sh` ([`config`] with no extra section); no spec,
    /// no file, no answer yet.
    pub fn new() -> Scenario {
        Scenario {
            config: config(""),
            ..Scenario::default()
        }
    }

    /// The project most tests use: [`Scenario::new`] with one spec `s` (no front matter) and
    /// [`CHECK`] as `check.sh`.
    pub fn spec_s() -> Scenario {
        Scenario::new().spec("s", "").check(CHECK)
    }

    /// The `api` configuration with these extra sections.
    pub fn config(mut self, extra: &str) -> Scenario {
        self.config = config(extra);
        self
    }

    /// The whole `.mmm/config.toml`, as it is.
    pub fn raw_config(mut self, text: &str) -> Scenario {
        self.config = text.to_owned();
        self
    }

    /// A spec made by [`project::spec`] with this front matter (TOML without the `+++` lines).
    pub fn spec(self, id: &str, front: &str) -> Scenario {
        let text = project::spec(id, front);
        self.spec_text(id, &text)
    }

    /// `specs/<id>.md` with this text (replacing a spec of that id).
    pub fn spec_text(mut self, id: &str, text: &str) -> Scenario {
        self.specs.retain(|(i, _)| i != id);
        self.specs.push((id.to_owned(), text.to_owned()));
        self
    }

    /// A file of the project (replacing one at that path).
    pub fn file(mut self, path: &str, content: &str) -> Scenario {
        self.files.retain(|(p, _)| p != path);
        self.files.push((path.to_owned(), content.to_owned()));
        self
    }

    /// `check.sh`, the script the gate runs.
    pub fn check(self, script: &str) -> Scenario {
        self.file("check.sh", script)
    }

    /// The fake answers prompts containing `needle` with `reply`.
    pub fn answer(self, needle: &str, reply: Reply) -> Scenario {
        self.rule(Rule::new(needle, reply))
    }

    /// A rule of the fake (rules are tried in the order given).
    pub fn rule(mut self, rule: Rule) -> Scenario {
        self.rules.push(rule);
        self
    }

    /// Starts the fake and commits the project, without running.
    pub fn build(self) -> Project {
        let fake = FakeAnthropic::start(self.rules);
        let specs: Vec<(&str, &str)> = self
            .specs
            .iter()
            .map(|(i, t)| (i.as_str(), t.as_str()))
            .collect();
        let files: Vec<(&str, &str)> = self
            .files
            .iter()
            .map(|(p, c)| (p.as_str(), c.as_str()))
            .collect();
        let repo = project(&self.config, &specs, &files);
        Project { repo, fake }
    }

    /// Builds the project and runs `git-mmm ARGS` against the fake.
    pub fn run(self, args: &[&str]) -> Ran {
        let project = self.build();
        let out = project.run(args);
        Ran { project, out }
    }
}

/// A project committed on `main` and the fake its runs talk to.
pub struct Project {
    /// The repository.
    pub repo: TestRepo,
    /// The fake Messages API.
    pub fake: FakeAnthropic,
}

impl Project {
    /// `git-mmm` with the `api` agent pointed at the fake.
    pub fn cmd(&self) -> Command {
        api_cmd(&self.repo, &self.fake)
    }

    /// Runs `git-mmm ARGS` against the fake.
    pub fn run(&self, args: &[&str]) -> Output {
        run_api(&self.repo, &self.fake, args)
    }

    /// The iteration commits of `mmm/<spec>`, oldest first.
    pub fn iterations(&self, spec: &str) -> Vec<Iteration> {
        iterations(&self.repo, spec)
    }

    /// The `Mmm-Status` of every iteration of `spec`, oldest first.
    pub fn statuses(&self, spec: &str) -> Vec<String> {
        self.iterations(spec).iter().map(|i| i.status()).collect()
    }

    /// The metrics record of every iteration of `spec`, oldest first.
    pub fn metrics(&self, spec: &str) -> Vec<Value> {
        self.iterations(spec)
            .iter()
            .map(|i| metrics(&self.repo, spec, &i.commit))
            .collect()
    }
}

/// A project after one run.
pub struct Ran {
    /// The project.
    pub project: Project,
    /// What the run printed and its exit status.
    pub out: Output,
}

impl Ran {
    /// The run's exit code.
    pub fn code(&self) -> Option<i32> {
        self.out.status.code()
    }

    /// The run's stdout.
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.stdout).into_owned()
    }

    /// The run's stderr.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).into_owned()
    }

    /// stdout and stderr, for assertion messages.
    pub fn show(&self) -> String {
        show(&self.out)
    }
}

impl Deref for Ran {
    type Target = Project;

    fn deref(&self) -> &Project {
        &self.project
    }
}
