//! Tests of the context area: packing by priority within the budget, what may never enter,
//! files named in failures, project metadata, the stable prefix, and templates.

use std::path::{Path, PathBuf};

use mmm::context::{
    ContextInput, CriterionView, Failure, Priority, Prompt, Template, Templates, TokenBudget,
    build_prompt, repo_snapshot,
};

use crate::support::TestRepo;

const SPEC: &str = "# Login\n\n## Objective\n\nAdd a login handler with password checks.\n\n\
## Acceptance criteria\n\n- login accepts the right password\n  verify: cargo test login_ok\n";

fn input(root: &Path) -> ContextInput {
    ContextInput {
        worktree: root.to_path_buf(),
        spec_id: "login".to_owned(),
        spec_content: SPEC.to_owned(),
        criteria: vec![
            CriterionView {
                text: "login accepts the right password".to_owned(),
                verify: Some("cargo test login_ok".to_owned()),
                last_result: None,
            },
            CriterionView {
                text: "wrong passwords are refused".to_owned(),
                verify: None,
                last_result: None,
            },
        ],
        iteration: 1,
        max_iterations: 3,
        ..ContextInput::default()
    }
}

fn full_text(p: &Prompt) -> String {
    p.system
        .iter()
        .chain(&p.user)
        .map(|b| b.text.as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

fn file_priority(p: &Prompt, path: &str) -> Option<Priority> {
    p.files.iter().find(|f| f.path == path).map(|f| f.priority)
}

/// A tiny window keeps the critical items, cuts a high-priority file with the marker, drops
/// the low-priority and medium ones, and lists all of that.
#[test]
fn tiny_window_drops_low_cuts_high_keeps_critical() {
    let repo = TestRepo::new();
    let big: String = (0..400).map(|i| format!("pub fn f{i}() {{}}\n")).collect();
    repo.write("src/core.rs", &big);
    repo.write("src/login.rs", "pub fn login() {}\n");
    repo.write("src/password.rs", "pub fn check() {}\n");
    repo.commit_all("code");

    let mut inp = input(&repo.path);
    inp.context_globs = vec!["src/core.rs".to_owned()];
    inp.failures = vec![Failure {
        name: "test".to_owned(),
        command: "cargo test".to_owned(),
        output: "test login_ok ... FAILED\n".to_owned(),
    }];
    inp.memory = vec!["Iteration 1 wrote the handler.".to_owned()];

    // With a roomy window everything enters.
    let roomy = build_prompt(&inp, &Templates::builtin()).expect("build");
    assert_eq!(file_priority(&roomy, "src/core.rs"), Some(Priority::High));
    assert_eq!(file_priority(&roomy, "src/login.rs"), Some(Priority::Low));
    assert_eq!(
        file_priority(&roomy, "src/password.rs"),
        Some(Priority::Low)
    );
    assert!(roomy.omitted.is_empty(), "{:?}", roomy.omitted);

    // A window just large enough for the instructions, the critical items and part of
    // src/core.rs.
    let critical_only = {
        let mut i = inp.clone();
        i.context_globs.clear();
        i.options.repo_map = false;
        // No ranked files either (how many rank depends on the ranking's signals).
        i.options.files_share = 0;
        i.memory.clear();
        i.spec_content = "# Nothing".to_owned();
        build_prompt(&i, &Templates::builtin()).expect("build")
    };
    inp.budget = TokenBudget {
        window: critical_only.token_estimate + 1_000,
        output_reserve: 500,
    };
    let tight = build_prompt(&inp, &Templates::builtin()).expect("build");
    let text = full_text(&tight);

    // Critical: the spec, criteria and failure are whole.
    assert!(text.contains("Add a login handler with password checks."));
    assert!(text.contains("2. wrong passwords are refused"));
    assert!(text.contains("test login_ok ... FAILED"));
    // High: cut at a line boundary with the visible marker.
    let core = tight
        .files
        .iter()
        .find(|f| f.path == "src/core.rs")
        .expect("core kept");
    assert!(core.cut);
    assert!(text.contains("pub fn f0() {}\n"));
    assert!(!text.contains("pub fn f399() {}"));
    assert!(text.contains("more lines …]"), "{text}");
    // Low and medium: dropped; the repository map, which is part of the cached prefix, is
    // packed before what changes between iterations (within its share), so it stays.
    assert_eq!(file_priority(&tight, "src/login.rs"), None);
    assert!(text.contains("src/login.rs: fn login"));
    assert!(!text.contains("Iteration 1 wrote the handler."));
    // The budget is honoured.
    assert!(tight.token_estimate <= inp.budget.window - inp.budget.output_reserve);

    let omitted: Vec<(&str, &str)> = tight
        .omitted
        .iter()
        .map(|o| (o.what.as_str(), o.reason.as_str()))
        .collect();
    assert!(
        omitted
            .iter()
            .any(|(w, r)| *w == "file src/core.rs (spec context)"
                && r.starts_with("cut to ")
                && r.ends_with("of 400 lines to fit the token budget"))
    );
    for what in [
        "memory 1",
        "file src/login.rs (relevant to the spec)",
        "file src/password.rs (relevant to the spec)",
    ] {
        assert!(
            omitted.contains(&(what, "did not fit the token budget")),
            "{what} not in {omitted:?}"
        );
    }
    assert!(tight.omitted.iter().all(|o| o.tokens > 0));
}

/// The spec itself is cut, never dropped, when even it does not fit.
#[test]
fn critical_items_are_cut_not_dropped() {
    let repo = TestRepo::new();
    let mut inp = input(&repo.path);
    inp.spec_content = (0..2_000).map(|i| format!("requirement {i}\n")).collect();
    inp.budget = TokenBudget {
        window: 3_000,
        output_reserve: 100,
    };
    let p = build_prompt(&inp, &Templates::builtin()).expect("build");
    let text = full_text(&p);
    assert!(text.contains("requirement 0\n"));
    assert!(text.contains("[… truncated by mmm: "));
    assert!(
        p.omitted
            .iter()
            .any(|o| o.what == "spec login" && o.reason.starts_with("cut to"))
    );
}

/// Long failure output keeps its first and last lines with a visible marker.
#[test]
fn long_failure_output_is_trimmed() {
    let repo = TestRepo::new();
    let mut inp = input(&repo.path);
    inp.failures = vec![Failure {
        name: "build".to_owned(),
        command: "cargo build".to_owned(),
        output: (0..500).map(|i| format!("out {i}\n")).collect(),
    }];
    let text = full_text(&build_prompt(&inp, &Templates::builtin()).expect("build"));
    assert!(text.contains("#### build failed: `cargo build`"));
    assert!(text.contains("out 0\n"));
    assert!(text.contains("out 499"));
    assert!(text.contains("[… 460 lines cut …]"));
    assert!(!text.contains("out 250\n"));
}

/// Files ignored by .gitignore, binary files and `.git` never enter, whatever names them.
#[test]
fn ignored_binary_and_git_never_enter() {
    let repo = TestRepo::new();
    repo.write(".gitignore", "secret.env\ntarget/\n");
    repo.write("secret.env", "LOGIN_PASSWORD=hunter2\n");
    repo.write("target/login.rs", "pub fn stale_login_build() {}\n");
    repo.write("src/login.rs", "pub fn login() {}\n");
    std::fs::write(repo.path.join("login.png"), b"\x89PNG\r\n\x1a\n\0\0\0login").expect("write");
    std::fs::write(repo.path.join("login.dat"), b"login \xff\xfe not utf-8").expect("write");
    repo.commit_all("files");

    let mut inp = input(&repo.path);
    inp.context_globs = vec!["**".to_owned(), "secret.env".to_owned()];
    inp.touched_files = vec![PathBuf::from("target/login.rs")];
    inp.failures = vec![Failure {
        name: "test".to_owned(),
        command: "cargo test".to_owned(),
        output: "secret.env:1: bad\n.git/HEAD:1: x\n".to_owned(),
    }];
    let p = build_prompt(&inp, &Templates::builtin()).expect("build");
    let text = full_text(&p);
    assert!(!text.contains("hunter2"));
    assert!(!text.contains("stale_login_build"));
    assert!(!text.contains("ref: refs/heads/main"));
    assert!(!text.contains("PNG"));
    assert!(!text.contains("not utf-8"));
    let map_and_files: Vec<&str> = p.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(map_and_files, [".gitignore", "README.md", "src/login.rs"]);
    let system = &p.system[0].text;
    assert!(!system.contains("target/"));
    assert!(!system.lines().any(|l| l.starts_with(".git/")), "{system}");
    assert!(!system.contains("secret.env\n"));

    let omitted: Vec<(&str, &str)> = p
        .omitted
        .iter()
        .map(|o| (o.what.as_str(), o.reason.as_str()))
        .collect();
    assert!(omitted.contains(&(
        "file login.png (spec context)",
        "binary file (NUL bytes or not UTF-8)"
    )));
    assert!(omitted.contains(&(
        "file login.dat (spec context)",
        "binary file (NUL bytes or not UTF-8)"
    )));
    assert!(
        omitted
            .iter()
            .any(|(w, _)| *w == "context entry `secret.env`")
    );
    assert!(
        omitted
            .iter()
            .any(|(w, _)| *w == "file target/login.rs (touched earlier)")
    );
}

/// In a linked worktree (`.git` is a file) the .gitignore still applies and `.git` is skipped.
#[test]
fn linked_worktree_is_walked_like_a_checkout() {
    let repo = TestRepo::new();
    repo.write(".gitignore", "build/\n");
    repo.write("src/login.rs", "pub fn login() {}\n");
    repo.commit_all("code");
    let wt = repo.dir.path().join("wt");
    repo.git(&[
        "worktree",
        "add",
        "-q",
        wt.to_str().expect("utf-8 path"),
        "-b",
        "w",
    ]);
    std::fs::create_dir_all(wt.join("build")).expect("mkdir");
    std::fs::write(wt.join("build/login.rs"), "ignored_login").expect("write");

    let p = build_prompt(&input(&wt), &Templates::builtin()).expect("build");
    let text = full_text(&p);
    assert!(!text.contains("ignored_login"));
    assert!(!text.contains("gitdir:"));
    assert!(p.system[0].text.contains("src/login.rs: fn login"));
}

/// Files named in failure output (`path:line`, `path(line)`, Python tracebacks, absolute
/// paths inside the worktree) enter with high priority; names of missing files are ignored.
#[test]
fn files_named_in_failures_are_picked_up() {
    let repo = TestRepo::new();
    repo.write("src/parse.rs", "pub fn parse() {}\n");
    repo.write("web/app.ts", "export function app() {}\n");
    repo.write("tools/gen.py", "def gen():\n    pass\n");
    repo.write("src/other.rs", "pub fn other() {}\n");
    repo.commit_all("code");

    let mut inp = input(&repo.path);
    inp.spec_content = "# Unrelated\n".to_owned();
    let abs = repo.path.join("src/other.rs");
    inp.failures = vec![Failure {
        name: "test".to_owned(),
        command: "make test".to_owned(),
        output: format!(
            "error[E0425]: cannot find value\n --> src/parse.rs:12:5\n\
             web/app.ts(3,7): error TS2304\n\
             Traceback:\n  File \"tools/gen.py\", line 2, in gen\n\
             {}:1: warning\nsrc/missing.rs:3: nope\n",
            abs.display()
        ),
    }];
    let p = build_prompt(&inp, &Templates::builtin()).expect("build");
    for f in ["src/parse.rs", "web/app.ts", "tools/gen.py", "src/other.rs"] {
        assert_eq!(file_priority(&p, f), Some(Priority::High), "{f}");
    }
    assert_eq!(p.files.len(), 4);
    assert!(
        p.user[0]
            .text
            .contains("```rust path=src/parse.rs\npub fn parse() {}\n```")
    );
}

/// Files touched earlier enter with high priority, in the given order after the spec's own.
#[test]
fn touched_files_and_context_dirs() {
    let repo = TestRepo::new();
    repo.write("src/auth/mod.rs", "pub mod token;\n");
    repo.write("src/auth/token.rs", "pub struct Token;\n");
    repo.write("src/db.rs", "pub fn db() {}\n");
    repo.commit_all("code");
    let mut inp = input(&repo.path);
    inp.spec_content = "# Unrelated\n".to_owned();
    inp.context_globs = vec!["src/auth/".to_owned()];
    inp.touched_files = vec![
        repo.path.join("src/db.rs"),
        PathBuf::from("src/auth/mod.rs"),
    ];
    let p = build_prompt(&inp, &Templates::builtin()).expect("build");
    let files: Vec<&str> = p.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(files, ["src/auth/mod.rs", "src/auth/token.rs", "src/db.rs"]);
}

/// `[context] include` is a filter: when set, only matching files enter the repository map and
/// the files ranked by relevance; files the spec's context names enter whatever it says.
#[test]
fn include_filters_the_ranking_and_the_map_not_the_named_files() {
    let repo = TestRepo::new();
    repo.write("src/login.rs", "pub fn login(password: &str) {}\n");
    repo.write(
        "lib/login_helper.rs",
        "pub fn login_helper(password: &str) {}\n",
    );
    repo.write("lib/other.rs", "pub fn other() {}\n");
    repo.write("src/core.rs", "pub fn core() {}\n");
    repo.commit_all("code");
    let mut inp = input(&repo.path);
    inp.context_globs = vec!["src/core.rs".to_owned()];
    let all = build_prompt(&inp, &Templates::builtin()).expect("build");
    assert_eq!(file_priority(&all, "src/login.rs"), Some(Priority::Low));
    inp.options.include = vec!["lib/**".to_owned()];
    let p = build_prompt(&inp, &Templates::builtin()).expect("build");
    assert_eq!(file_priority(&p, "src/core.rs"), Some(Priority::High));
    assert_eq!(
        file_priority(&p, "lib/login_helper.rs"),
        Some(Priority::Low)
    );
    assert_eq!(file_priority(&p, "src/login.rs"), None);
    let map = repo_snapshot(&inp)
        .expect("snapshot")
        .repo_map
        .expect("a map");
    assert!(map.contains("lib/login_helper.rs"), "{map}");
    assert!(
        !map.contains("src/login.rs") && !map.contains("src/core.rs"),
        "{map}"
    );
}

/// A file over max_file_bytes enters as its outline (top-level signatures with their line
/// numbers, in a fence without `path=`); one in a language without an outline stays out.
#[test]
fn oversized_files_enter_as_outlines() {
    let repo = TestRepo::new();
    let mut big = String::from("//! Login.\n\npub fn login(user: &str) -> bool {\n");
    big.push_str(&"    // check\n".repeat(100));
    big.push_str("}\n\npub struct Password;\n");
    repo.write("src/login.rs", &big);
    repo.write("docs/login.txt", &"login notes\n".repeat(100));
    repo.commit_all("code");
    let mut inp = input(&repo.path);
    inp.options.max_file_bytes = 400;
    let p = build_prompt(&inp, &Templates::builtin()).expect("build");
    let text = full_text(&p);
    assert!(
        text.contains(
            "### src/login.rs (outline)\n```text\n[outline by mmm: 106 lines, 1371 bytes, over \
             max_file_bytes; the top-level items with their line numbers]\n\
             3: pub fn login(user: &str) -> bool\n106: pub struct Password;\n```"
        ),
        "{text}"
    );
    assert!(!text.contains("// check"));
    let login = p
        .files
        .iter()
        .find(|f| f.path == "src/login.rs")
        .expect("in");
    assert!(login.outline && !login.cut);
    assert!(
        p.omitted
            .iter()
            .any(|o| o.what == "file src/login.rs (relevant to the spec)"
                && o.reason == "larger than max_file_bytes (400): its outline instead of its text")
    );
    assert!(!text.contains("login notes"));
    assert!(
        p.omitted
            .iter()
            .any(|o| o.what == "file docs/login.txt (relevant to the spec)"
                && o.reason == "larger than max_file_bytes (400), and mmm knows no outline for it")
    );
}

fn meta(files: &[(&str, &str)]) -> (String, String, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    for (path, content) in files {
        let p = dir.path().join(path);
        std::fs::create_dir_all(p.parent().expect("has parent")).expect("mkdir");
        std::fs::write(p, content).expect("write");
    }
    let p = build_prompt(&input(dir.path()), &Templates::builtin()).expect("build");
    let system = &p.system[0].text;
    assert!(system.contains(&format!(
        "project {} (primary language:\n{}, framework: {})",
        p.project.name, p.project.primary_language, p.project.framework
    )));
    (
        p.project.name,
        p.project.primary_language,
        p.project.framework,
    )
}

fn s(a: &str, b: &str, c: &str) -> (String, String, String) {
    (a.to_owned(), b.to_owned(), c.to_owned())
}

#[test]
fn metadata_from_cargo_toml() {
    let cargo = "[package]\nname = \"shop\"\n\n[dependencies]\ntokio = \"1\"\naxum = \"0.8\"\n";
    assert_eq!(meta(&[("Cargo.toml", cargo)]), s("shop", "Rust", "axum"));
    let cli = "[package]\nname = \"tool\"\n[dependencies]\nclap = { version = \"4\" }\n";
    assert_eq!(meta(&[("Cargo.toml", cli)]), s("tool", "Rust", "clap"));
}

#[test]
fn metadata_from_package_json() {
    let next = r#"{"name": "site", "dependencies": {"react": "19", "next": "15"}}"#;
    assert_eq!(
        meta(&[("package.json", next)]),
        s("site", "JavaScript", "next")
    );
    let express = r#"{"name": "api", "dependencies": {"express": "5"},
        "devDependencies": {"typescript": "5"}}"#;
    assert_eq!(
        meta(&[("package.json", express)]),
        s("api", "TypeScript", "express")
    );
    let vue = r#"{"name": "ui", "dependencies": {"vue": "3"}}"#;
    assert_eq!(
        meta(&[("package.json", vue), ("tsconfig.json", "{}")]),
        s("ui", "TypeScript", "vue")
    );
}

#[test]
fn metadata_from_pyproject_toml() {
    let pep621 =
        "[project]\nname = \"svc\"\ndependencies = [\"FastAPI[all]>=0.110\", \"uvicorn\"]\n";
    assert_eq!(
        meta(&[("pyproject.toml", pep621)]),
        s("svc", "Python", "fastapi")
    );
    let poetry = "[tool.poetry]\nname = \"blog\"\n[tool.poetry.dependencies]\npython = \"^3.12\"\nDjango = \"5\"\n";
    assert_eq!(
        meta(&[("pyproject.toml", poetry)]),
        s("blog", "Python", "django")
    );
    let tests = "[project]\nname = \"lib\"\n[dependency-groups]\ndev = [\"pytest>=8\"]\n";
    assert_eq!(
        meta(&[("pyproject.toml", tests)]),
        s("lib", "Python", "pytest")
    );
}

#[test]
fn metadata_from_go_mod() {
    let gin =
        "module example.com/shop\n\ngo 1.22\n\nrequire (\n\tgithub.com/gin-gonic/gin v1.10.0\n)\n";
    assert_eq!(meta(&[("go.mod", gin)]), s("example.com/shop", "Go", "gin"));
    let echo = "module example.com/api\n\nrequire github.com/labstack/echo/v4 v4.12.0\n";
    assert_eq!(
        meta(&[("go.mod", echo)]),
        s("example.com/api", "Go", "echo")
    );
}

#[test]
fn metadata_falls_back_to_extensions() {
    let files = [("a.py", ""), ("b.py", ""), ("c.rb", ""), ("notes.md", "")];
    assert_eq!(meta(&files), s("(unnamed)", "Python", "none"));
    // A malformed manifest is a hint lost, not an error.
    assert_eq!(
        meta(&[("Cargo.toml", "[package\n"), ("x.go", "")]),
        s("(unnamed)", "Go", "none")
    );
}

/// Two iterations with different feedback, failures, memory and criteria results produce a
/// byte-identical system prompt (the cached prefix), with the breakpoint on its last block.
#[test]
fn stable_prefix_is_identical_across_iterations() {
    let repo = TestRepo::new();
    repo.write("Cargo.toml", "[package]\nname = \"shop\"\n");
    repo.write("src/login.rs", "pub fn login() {}\n");
    repo.write("src/db.rs", "pub fn db() {}\n");
    repo.commit_all("code");

    let mut first = input(&repo.path);
    first.dependency_summaries = vec![("users".to_owned(), "A users table.".to_owned())];
    first.completed_specs = vec!["users".to_owned()];
    let mut second = first.clone();
    second.iteration = 2;
    second.failures = vec![Failure {
        name: "test".to_owned(),
        command: "cargo test".to_owned(),
        output: "src/db.rs:1: boom\n".to_owned(),
    }];
    second.review_feedback = vec!["Use argon2.".to_owned()];
    second.problems = vec!["SEARCH block did not match src/login.rs".to_owned()];
    second.memory = vec!["Wrote the handler.".to_owned()];
    second.touched_files = vec![PathBuf::from("src/login.rs")];
    second.criteria[0].last_result = Some(false);

    let t = Templates::builtin();
    let a = build_prompt(&first, &t).expect("build");
    let b = build_prompt(&second, &t).expect("build");
    // The template block is identical; the related-files block lost src/login.rs, which the
    // second iteration shows in its user part as a touched file.
    assert_eq!(a.system[0], b.system[0]);
    assert!(a.system.iter().chain(&b.system).all(|b| b.cache));
    assert!(a.system[1].text.contains("### src/login.rs"));
    assert!(!b.system[1].text.contains("### src/login.rs"));
    assert!(b.user[0].text.contains("### src/login.rs"));
    assert!(b.user.iter().all(|u| !u.cache));
    assert_ne!(a.user, b.user);

    let sys = &b.system[0].text;
    assert!(sys.contains("src/login.rs: fn login"));
    assert!(sys.contains("## users\n\nA users table."));
    assert!(sys.contains("1. login accepts the right password\n   verify: `cargo test login_ok`"));
    assert!(!sys.contains("Iteration") && !sys.contains("argon2"));

    let user = &b.user[0].text;
    assert!(user.starts_with("# Iteration 2 of 3\n"));
    assert!(user.contains("- Use argon2."));
    assert!(user.contains("- SEARCH block did not match src/login.rs"));
    assert!(user.contains("- Wrote the handler."));
    assert!(user.contains(
        "1. FAILED: login accepts the right password\n\
         2. no check command; judged by review: wrong passwords are refused"
    ));
    assert!(user.contains("### src/db.rs\n```rust path=src/db.rs"));
    assert!(b.token_estimate > b.stable_tokens);
}

/// With the run's repository snapshot, a change to a file's top-level symbols leaves the
/// system prompt byte-identical (the map is the run's start), while the changed file itself is
/// shown whole in the user part; without it, the map follows the worktree.
#[test]
fn repo_snapshot_keeps_the_prefix_when_symbols_change() {
    let repo = TestRepo::new();
    repo.write("Cargo.toml", "[package]\nname = \"shop\"\n");
    repo.write("src/login.rs", "pub fn login() {}\n");
    repo.commit_all("code");

    let t = Templates::builtin();
    let mut inp = input(&repo.path);
    let snapshot = std::sync::Arc::new(repo_snapshot(&inp).expect("snapshot"));
    assert_eq!(snapshot.project.name, "shop");
    let map = snapshot.repo_map.clone().expect("a map");
    assert!(map.contains("src/login.rs: fn login"), "{map}");
    let fresh = build_prompt(&inp, &t).expect("build");
    inp.repo = Some(snapshot);
    let cached = build_prompt(&inp, &t).expect("build");
    assert_eq!(fresh, cached);

    repo.write("src/login.rs", "pub fn login() {}\npub fn logout() {}\n");
    inp.iteration = 2;
    inp.touched_files = vec![PathBuf::from("src/login.rs")];
    let second = build_prompt(&inp, &t).expect("build");
    assert_eq!(second.system[0], cached.system[0]);
    assert!(second.user[0].text.contains("pub fn logout() {}"));

    inp.repo = None;
    let rebuilt = build_prompt(&inp, &t).expect("build");
    assert!(
        rebuilt.system[0]
            .text
            .contains("src/login.rs: fn login, fn logout")
    );
}

/// A spec that names `src/…` files does not make every file under `src/` relevant: a path word
/// found in most paths does not rank, while a distinctive one still does.
#[test]
fn words_common_to_most_paths_do_not_rank_files() {
    let repo = TestRepo::new();
    for i in 0..30 {
        repo.write(&format!("src/m{i:02}/item.rs"), "pub fn item() {}\n");
    }
    repo.write("src/login.rs", "pub fn login() {}\n");
    repo.commit_all("code");

    let mut inp = input(&repo.path);
    inp.spec_content = format!("{SPEC}\n## Context\n\n- `src/m00/item.rs`\n");
    inp.context_globs = vec!["src/m00/item.rs".to_owned()];
    let p = build_prompt(&inp, &Templates::builtin()).expect("build");
    let files: Vec<(&str, Priority)> = p
        .files
        .iter()
        .map(|f| (f.path.as_str(), f.priority))
        .collect();
    assert_eq!(
        files,
        vec![
            ("src/m00/item.rs", Priority::High),
            ("src/login.rs", Priority::Low)
        ]
    );
}

/// The repository map lists paths with the top-level symbols of Rust and Python files.
#[test]
fn repo_map_symbols_for_rust_and_python() {
    let repo = TestRepo::new();
    repo.write(
        "src/lib.rs",
        "//! Lib.\npub mod spec;\npub struct Engine {\n    fn_ptr: fn(),\n}\n\
         impl Engine {\n    pub fn run(&self) {}\n}\npub enum Stop { Done }\n\
         pub(crate) trait Agent {}\nasync fn helper() {}\n",
    );
    repo.write(
        "tools/gen.py",
        "import os\n\nclass Generator:\n    def inner(self):\n        pass\n\n\
         def main():\n    pass\n\nasync def fetch():\n    pass\n",
    );
    repo.commit_all("code");
    let p = build_prompt(&input(&repo.path), &Templates::builtin()).expect("build");
    let sys = &p.system[0].text;
    assert!(
        sys.contains(
            "src/lib.rs: mod spec, struct Engine, impl Engine, enum Stop, trait Agent, fn helper\n"
        ),
        "{sys}"
    );
    assert!(sys.contains("tools/gen.py: class Generator, def main, def fetch\n"));
    assert!(sys.contains("README.md\n"));
}

/// Templates in the given directory override the built-in ones, one by one.
#[test]
fn template_override_from_dir() {
    let repo = TestRepo::new();
    repo.write(
        ".mmm/templates/iteration.md",
        "Round {iteration}/{max_iterations} for {project_name}. {{literal}}\n{previous_feedback}\n",
    );
    let t = Templates::load(Some(&repo.path.join(".mmm/templates"))).expect("load");
    assert_eq!(
        t.iteration.source(),
        repo.path.join(".mmm/templates/iteration.md")
    );
    assert_eq!(t.system.source(), Path::new("<built-in>/system.md"));
    let p = build_prompt(&input(&repo.path), &t).expect("build");
    insta::assert_snapshot!(p.user[0].text, @r"
    Round 1/3 for (unnamed). {literal}
    (none yet)
    ");
    assert_eq!(
        p.system,
        build_prompt(&input(&repo.path), &Templates::builtin())
            .expect("b")
            .system
    );
}

fn load_error(name: &str, text: &str) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join(name), text).expect("write");
    let err = Templates::load(Some(dir.path())).expect_err("must fail");
    err.to_string()
        .replace(&dir.path().display().to_string(), "[DIR]")
}

#[test]
fn unknown_placeholder_is_a_load_error() {
    let msg = load_error(
        "iteration.md",
        "# Round\n\nIteration {itration} of {max_iterations}\n",
    );
    insta::assert_snapshot!(msg, @"[DIR]/iteration.md:3: unknown placeholder `{itration}`; did you mean `{iteration}`? Known placeholders: {project_name}, {primary_language}, {framework}, {spec_content}, {acceptance_criteria}, {completed_specs}, {iteration}, {max_iterations}, {previous_feedback}, {relevant_code}, {project_structure}, {dependencies}. Write `{{` and `}}` for literal braces");
}

#[test]
fn unclosed_brace_is_a_load_error() {
    let msg = load_error(
        "system.md",
        "Spec:\n{spec_content}\nfn main() {\n    body\n}\n",
    );
    insta::assert_snapshot!(msg, @"[DIR]/system.md:3: unclosed `{` in the line `fn main() {`; close the placeholder with `}` on the same line, or write `{{` for a literal brace");
    let msg = load_error("iteration.md", "Spec:\n{spec_content\n");
    insta::assert_snapshot!(msg, @"[DIR]/iteration.md:2: unclosed `{` in the line `{spec_content`; close the placeholder with `}` on the same line, or write `{{` for a literal brace");
    let msg = load_error("iteration.md", "a { } b\n");
    insta::assert_snapshot!(msg, @"[DIR]/iteration.md:1: unknown placeholder `{ }`; known placeholders: {project_name}, {primary_language}, {framework}, {spec_content}, {acceptance_criteria}, {completed_specs}, {iteration}, {max_iterations}, {previous_feedback}, {relevant_code}, {project_structure}, {dependencies}. Write `{{` and `}}` for literal braces");
}

#[test]
fn volatile_placeholder_in_system_template_is_a_load_error() {
    let msg = load_error(
        "system.md",
        "{spec_content}\n\nYou are on iteration {iteration}.\n",
    );
    insta::assert_snapshot!(msg, @"[DIR]/system.md:3: the system template uses `{iteration}`, which changes from one iteration to the next; the system template is the cached prefix of the prompt and must stay identical between iterations, so move `{iteration}` to iteration.md");
}

#[test]
fn template_parse_names_the_file() {
    let err = Template::parse(Path::new(".mmm/templates/x.md"), "a } b").expect_err("fails");
    insta::assert_snapshot!(err.to_string(), @".mmm/templates/x.md:1: unmatched `}`; write `}}` for a literal brace");
}

/// The whole prompt of a small project, as the model sees it.
#[test]
fn rendered_prompt_snapshot() {
    let repo = TestRepo::new();
    repo.write(
        "Cargo.toml",
        "[package]\nname = \"shop\"\n[dependencies]\naxum = \"0.8\"\n",
    );
    repo.write("src/login.rs", "pub fn login() -> bool {\n    false\n}\n");
    repo.commit_all("code");
    let mut inp = input(&repo.path);
    inp.iteration = 2;
    inp.failures = vec![Failure {
        name: "test".to_owned(),
        command: "cargo test login_ok".to_owned(),
        output: "thread 'login_ok' panicked at src/login.rs:2:5\n".to_owned(),
    }];
    inp.memory = vec!["Added a stub login.".to_owned()];
    inp.criteria[0].last_result = Some(false);
    let p = build_prompt(&inp, &Templates::builtin()).expect("build");
    insta::assert_snapshot!(p.user[0].text, @r#"
    # Iteration 2 of 3

    ## Feedback from earlier iterations

    ### Failed checks (run by mmm)

    #### test failed: `cargo test login_ok`
    ```
    thread 'login_ok' panicked at src/login.rs:2:5
    ```

    ### Acceptance criteria as last checked

    1. FAILED: login accepts the right password
    2. no check command; judged by review: wrong passwords are refused

    ### Summaries of earlier iterations

    - Added a stub login.

    ## Relevant code

    ### src/login.rs
    ```rust path=src/login.rs
    pub fn login() -> bool {
        false
    }
    ```

    Make the next changes towards the acceptance criteria with the edit formats above, fix what
    failed, and end with `@mmm:summary`. Say `@mmm:complete` only when every criterion is met.
    "#);
    // Cargo.toml matches the spec by a word ("cargo"): it goes into the second cached block.
    insta::assert_snapshot!(p.system[1].text, @r#"
    # Related code

    Files whose words match the spec's, most relevant first (files you change are shown in the iteration message instead).

    ### Cargo.toml
    ```toml path=Cargo.toml
    [package]
    name = "shop"
    [dependencies]
    axum = "0.8"
    ```
    "#);
}
