//! The hostile-input corpus (issue 11; docs/RELIABILITY.md): every form of
//! `fixtures/hostile/forms.toml` (specs, configurations, command lines, model answers) is tried
//! in a fresh project beside a directory `outside/` that holds a secret and is reached from the
//! repository by symlinks. Each form must have its expected outcome (exit code, words of the
//! error), and none may write outside the repository, touch `.git/config` or `.git/hooks`, or
//! leave `git fsck --strict` unclean.
//!
//! Forms tried elsewhere at the library level (`apply::refuses_every_escape`, the spec and
//! config tests) are tried here end to end, through the binary.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::support::TestRepo;
use crate::support::project::{all_notes, show};

/// A sound spec body.
const BODY: &str = "# B\n\n## Objective\n\nDo it.\n\n## Acceptance criteria\n\n- done\n";

const SECRET_SPEC: &str =
    "# Secret title\n\n## Objective\n\nsecret\n\n## Acceptance criteria\n\n- secret\n";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Corpus {
    form: Vec<Form>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Form {
    name: String,
    kind: String,
    #[serde(default)]
    text: String,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    bytes: Vec<u8>,
    #[serde(default)]
    repeat: Option<usize>,
    #[serde(default)]
    symlink: Option<String>,
    #[serde(default)]
    files: Option<usize>,
    #[serde(default)]
    args: Option<Vec<String>>,
    /// More configuration for an answer's run.
    #[serde(default)]
    config: String,
    #[serde(default)]
    exit: Option<i32>,
    #[serde(default)]
    expect: Vec<String>,
    #[serde(default)]
    absent: Vec<String>,
}

impl Form {
    /// The form's content: `text` (repeated, `{n}` numbered), `{body}` filled, `bytes` after.
    fn content(&self) -> Vec<u8> {
        let text = self.text.replace("{body}", BODY);
        let text = match self.repeat {
            Some(n) => (0..n)
                .map(|i| text.replace("{n}", &i.to_string()))
                .collect(),
            None => text,
        };
        let mut bytes = text.into_bytes();
        bytes.extend(&self.bytes);
        bytes
    }
}

/// Everything under `dir`, by relative path, with the content of files.
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            let rel = p.strip_prefix(dir).expect("inside").display().to_string();
            let ty = e.file_type().expect("file type");
            if ty.is_dir() {
                stack.push(p);
                out.insert(rel, Vec::new());
            } else {
                out.insert(rel, std::fs::read(&p).unwrap_or_default());
            }
        }
    }
    out
}

/// The entries beside the repository (its temporary directory's top level).
fn siblings(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("list")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A project: the sound spec `a`, a sibling `outside/` with a secret, symlinks `out` and
/// `link.txt` leading to it.
fn setup(config: &[u8]) -> TestRepo {
    let repo = TestRepo::new();
    let outside = repo.dir.path().join("outside");
    std::fs::create_dir_all(&outside).expect("mkdir outside");
    std::fs::write(outside.join("secret.txt"), "TOP-SECRET\n").expect("secret");
    std::fs::write(outside.join("secret.md"), SECRET_SPEC).expect("secret spec");
    std::os::unix::fs::symlink(&outside, repo.path.join("out")).expect("symlink dir");
    std::os::unix::fs::symlink(outside.join("secret.txt"), repo.path.join("link.txt"))
        .expect("symlink file");
    repo.write("specs/a.md", &BODY.replace("# B", "# A"));
    std::fs::create_dir_all(repo.path.join(".mmm")).expect("mkdir .mmm");
    std::fs::write(repo.path.join(".mmm/config.toml"), config).expect("config");
    repo.commit_all("a project beside a secret");
    repo
}

/// Puts the form in place and returns the arguments to run.
fn prepare(repo: &TestRepo, form: &Form) -> Vec<String> {
    let outside = repo.dir.path().join("outside");
    let path = form.path.clone().unwrap_or_else(|| "specs/b.md".into());
    let full = repo.path.join(&path);
    if let Some(parent) = full.parent() {
        std::fs::create_dir_all(parent).expect("mkdir");
    }
    let args = |default: &[&str]| {
        form.args
            .clone()
            .unwrap_or_else(|| default.iter().map(|s| (*s).to_owned()).collect())
    };
    match form.kind.as_str() {
        "spec" => {
            if let Some(target) = &form.symlink {
                let target = target.replace("{outside}", &outside.display().to_string());
                std::os::unix::fs::symlink(target, &full).expect("symlink");
            } else if let Some(n) = form.files {
                let dir = repo.path.join("specs/many");
                std::fs::create_dir_all(&dir).expect("mkdir many");
                for i in 0..n {
                    let text = BODY.replace("# B", &format!("# S{i}"));
                    std::fs::write(dir.join(format!("s{i}.md")), text).expect("spec");
                }
            } else {
                std::fs::write(&full, form.content()).expect("write form");
            }
            args(&["specs"])
        }
        "config" => args(&["config"]),
        "cli" => args(&[]),
        "answer" => {
            let mut script = toml::Table::new();
            let mut answer = toml::Table::new();
            let text = String::from_utf8(form.content()).expect("an answer is text");
            answer.insert("text".into(), toml::Value::String(text));
            script.insert(
                "answer".into(),
                toml::Value::Array(vec![toml::Value::Table(answer)]),
            );
            repo.write("answers.toml", &toml::to_string(&script).expect("toml"));
            repo.write("specs/s.md", &BODY.replace("# B", "# S"));
            repo.commit_all("the form");
            args(&["run", "s", "--json"])
        }
        other => panic!("{}: unknown kind {other}", form.name),
    }
}

const ANSWER_CONFIG: &str =
    "[agent]\nkind = \"scripted\"\nscript = \"answers.toml\"\n\n[loop]\nmax_iterations = 1\n";

/// Tries one form; returns what went wrong, if anything.
fn try_form(form: &Form) -> Result<(), String> {
    let config = match form.kind.as_str() {
        "config" => form.content(),
        "answer" => format!("{ANSWER_CONFIG}\n{}", form.config).into_bytes(),
        _ => Vec::new(),
    };
    let repo = setup(&config);
    let outside = repo.dir.path().join("outside");
    let before = (
        tree(&outside),
        siblings(repo.dir.path()),
        std::fs::read(repo.path.join(".git/config")).expect("git config"),
        tree(&repo.path.join(".git/hooks")),
    );
    let args = prepare(&repo, form);
    let t = std::time::Instant::now();
    let out = repo.mmm_cmd().args(&args).output().expect("run git-mmm");
    let took = t.elapsed();
    let mut said = show(&out);
    if form.kind == "answer" {
        said.push_str(&all_notes(&repo));
    }
    let mut wrong = Vec::new();
    if let Some(code) = form.exit
        && out.status.code() != Some(code)
    {
        wrong.push(format!("exit {:?}, expected {code}", out.status.code()));
    }
    for w in &form.expect {
        if !said.contains(w.as_str()) {
            wrong.push(format!("no `{w}` in the output"));
        }
    }
    for w in &form.absent {
        if said.contains(w.as_str()) {
            wrong.push(format!("`{w}` in the output"));
        }
    }
    let after = (
        tree(&outside),
        siblings(repo.dir.path()),
        std::fs::read(repo.path.join(".git/config")).expect("git config"),
        tree(&repo.path.join(".git/hooks")),
    );
    if after.0 != before.0 || after.1 != before.1 {
        wrong.push("something was written outside the repository".into());
    }
    if after.2 != before.2 || after.3 != before.3 {
        wrong.push(".git/config or .git/hooks changed".into());
    }
    if Path::new("/tmp/mmm-hostile-owned").exists() {
        wrong.push("/tmp/mmm-hostile-owned was written".into());
    }
    let fsck = repo.git_output(&["fsck", "--strict", "--no-progress"]);
    if !fsck.status.success() {
        wrong.push(format!("fsck: {}", String::from_utf8_lossy(&fsck.stderr)));
    }
    if std::env::var_os("MMM_HOSTILE_SHOW").is_some() {
        eprintln!("==== {} ({took:.1?})\n{said:.4000}", form.name);
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(format!("{}: {}\n{said:.3000}", form.name, wrong.join("; ")))
    }
}

#[test]
fn every_hostile_form_has_its_expected_outcome_and_nothing_escapes() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/hostile/forms.toml");
    let corpus: Corpus = toml::from_str(&std::fs::read_to_string(&path).expect("corpus"))
        .expect("the corpus parses");
    assert!(corpus.form.len() >= 60, "{} forms", corpus.form.len());
    // Four forms at a time: each is a project of its own.
    let failures: Vec<String> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..4)
            .map(|w| {
                let forms = &corpus.form;
                scope.spawn(move || {
                    forms
                        .iter()
                        .skip(w)
                        .step_by(4)
                        .filter_map(|f| try_form(f).err())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|h| h.join().expect("a worker"))
            .collect()
    });
    eprintln!(
        "hostile corpus: {} forms, {} as expected",
        corpus.form.len(),
        corpus.form.len() - failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
