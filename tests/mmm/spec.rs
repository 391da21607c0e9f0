//! Tests of the spec area: the fixture specs under `fixtures/specs/`, discovery in temporary
//! repositories, and the dependency graph.

use std::path::{Path, PathBuf};
use std::time::Duration;

use mmm::spec::{Criterion, Priority, Spec, SpecErrors, SpecId, SpecSet, discover, load_file};

use crate::support::TestRepo;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn id(s: &str) -> SpecId {
    SpecId::new(s).expect("valid id in test")
}

fn criterion(text: &str, verify: Option<&str>, line: usize) -> Criterion {
    Criterion {
        text: text.to_owned(),
        verify: verify.map(str::to_owned),
        line,
    }
}

fn valid() -> SpecSet {
    discover(root(), Path::new("fixtures/specs/valid"))
        .strict()
        .expect("the valid fixtures parse")
}

/// The error for one invalid fixture, rendered as the CLI would: message, then hint.
fn invalid(name: &str) -> String {
    let rel = Path::new("fixtures/specs/invalid").join(name);
    match load_file(root(), &rel) {
        Ok(spec) => panic!("{name} parsed: {spec:?}"),
        Err(e) => format!("{e}\nhint: {}", e.errors()[0].hint().unwrap_or_default()),
    }
}

/// Blob id as plain git computes it.
fn git_blob_id(path: &Path) -> String {
    let out = std::process::Command::new("git")
        .args(["hash-object", "--no-filters"])
        .arg(path)
        .output()
        .expect("run git hash-object");
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_owned()
}

#[test]
fn toml_front_matter_and_every_section() {
    let set = valid();
    let s = set.get(&id("login")).expect("login");
    assert_eq!(s.path, PathBuf::from("fixtures/specs/valid/auth/login.md"));
    assert_eq!(s.priority, Priority::High);
    assert_eq!(s.depends_on, vec![id("session")]);
    assert_eq!(s.max_iterations, Some(5));
    assert_eq!(s.model.as_deref(), Some("claude-opus-5-5"));
    assert_eq!(s.agent.as_deref(), Some("api"));
    assert_eq!(s.labels, vec!["auth", "web"]);
    assert_eq!(s.timeout, Some(Duration::from_secs(30 * 60)));
    assert_eq!(s.title, "Login page");
    assert_eq!(
        s.objective,
        "Users can log in with an email and a password.\nA failed login says why."
    );
    assert_eq!(
        s.criteria,
        vec![
            criterion("Login works", Some("cargo test login_ok"), 21),
            criterion(
                "A wrong password is refused",
                Some("cargo test login_bad_password"),
                22
            ),
            criterion("Logout clears the session", Some("cargo test logout"), 24),
            criterion("The `/health` endpoint still answers", None, 26),
            criterion("Errors are friendly", None, 27),
        ]
    );
    assert_eq!(
        s.context,
        vec!["src/auth/**/*.rs", "src/session.rs", "templates/login.html"]
    );
    assert_eq!(
        s.notes,
        "Some words before the first section.\n\n## Notes\n\nUse the existing session store.\n\n### Open questions\n\n- Remember-me?"
    );
    let on_disk = std::fs::read_to_string(root().join(&s.path)).expect("read fixture");
    assert_eq!(s.content, on_disk);
    assert_eq!(s.revision, git_blob_id(&root().join(&s.path)));
}

#[test]
fn yaml_front_matter_and_heading_variants() {
    let set = valid();
    let s = set.get(&id("session")).expect("session");
    assert_eq!(s.priority, Priority::Critical);
    assert_eq!(s.labels, vec!["auth"]);
    assert_eq!(s.timeout, Some(Duration::from_secs(2 * 3600)));
    assert_eq!(s.max_iterations, None);
    assert_eq!(s.title, "Sessions");
    assert_eq!(s.objective, "Keep a session per user.");
    assert_eq!(
        s.criteria,
        vec![
            criterion("Sessions expire", Some("cargo test session_expiry"), 15),
            criterion("Sessions survive a restart", None, 16),
        ]
    );
    assert_eq!(s.context, vec!["src/session.rs", "src/store/*.rs"]);
    assert_eq!(s.notes, "");
}

#[test]
fn no_front_matter() {
    let set = valid();
    let s = set.get(&id("plain")).expect("plain, from the file stem");
    assert_eq!(s.priority, Priority::Medium);
    assert!(s.depends_on.is_empty() && s.labels.is_empty());
    assert_eq!(s.timeout, None);
    assert_eq!(s.title, "Plain spec without front matter");
    assert_eq!(
        s.objective,
        "Show that front matter is optional.\n\n### Details\n\nHeadings below a known section belong to it."
    );
    assert_eq!(s.criteria, vec![criterion("It parses", Some("true"), 15)]);
    assert_eq!(
        s.notes,
        "Intro text that is not under any heading.\n\n## Background\n\nFree notes."
    );
}

#[test]
fn setext_title_upper_case_headings_and_single_string_dependency() {
    let set = valid();
    let s = set.get(&id("variants")).expect("variants");
    assert_eq!(s.title, "Variants");
    assert_eq!(s.depends_on, vec![id("plain")]);
    assert_eq!(s.objective, "Headings are matched case-insensitively.");
    assert_eq!(
        s.criteria,
        vec![
            criterion("Setext titles and star bullets work", None, 13),
            criterion(
                "Nested items that are not verify lines are ignored",
                None,
                14
            ),
        ]
    );
    assert_eq!(s.context, vec!["docs/*.md"]);
}

#[test]
fn valid_fixtures_order_and_json() {
    let set = valid();
    assert_eq!(set.len(), 4);
    assert_eq!(
        set.order(),
        &[id("session"), id("login"), id("plain"), id("variants")]
    );
    let ids: Vec<&str> = set.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["login", "plain", "session", "variants"]);
    let json = serde_json::to_value(set.get(&id("session")).expect("session")).expect("json");
    assert_eq!(json["priority"], "critical");
    assert_eq!(json["timeout"], "2h");
    assert_eq!(json["criteria"][0]["verify"], "cargo test session_expiry");
    assert_eq!(json["path"], "fixtures/specs/valid/session.md");
    assert!(json.get("content").is_none());
}

#[test]
fn invalid_empty_and_blank() {
    insta::assert_snapshot!(invalid("empty.md"), @r#"
        fixtures/specs/invalid/empty.md: spec file is empty
        hint: write at least a `# Title` line, or delete the file
    "#);
    insta::assert_snapshot!(invalid("blank.md"), @r#"
        fixtures/specs/invalid/blank.md: spec file is empty
        hint: write at least a `# Title` line, or delete the file
    "#);
}

#[test]
fn invalid_binary_and_not_utf8() {
    insta::assert_snapshot!(invalid("binary.md"), @r#"
        fixtures/specs/invalid/binary.md: spec file is binary (it contains NUL bytes)
        hint: specs must be UTF-8 markdown text; move other files out of the spec directory
    "#);
    insta::assert_snapshot!(invalid("not-utf8.md"), @r#"
        fixtures/specs/invalid/not-utf8.md:3: spec file is not valid UTF-8
        hint: specs must be UTF-8 markdown text; move other files out of the spec directory
    "#);
}

#[test]
fn invalid_unterminated_front_matter() {
    insta::assert_snapshot!(invalid("unterminated-toml.md"), @r#"
        fixtures/specs/invalid/unterminated-toml.md:1:1: front matter opened with `+++` is never closed
        hint: add a closing `+++` line after the front matter
    "#);
    insta::assert_snapshot!(invalid("unterminated-yaml.md"), @r#"
        fixtures/specs/invalid/unterminated-yaml.md:1:1: front matter opened with `---` is never closed
        hint: add a closing `---` line after the front matter
    "#);
}

#[test]
fn invalid_front_matter_syntax() {
    insta::assert_snapshot!(invalid("bad-toml.md"), @r#"
        fixtures/specs/invalid/bad-toml.md:4:16: invalid TOML front matter: unexpected `=` in array, expected value, `]`
        hint: fix the TOML syntax at that line
    "#);
    insta::assert_snapshot!(invalid("bad-yaml.md"), @r#"
        fixtures/specs/invalid/bad-yaml.md:4:6: invalid YAML front matter: illegal placement of ':' indicator
        hint: fix the YAML syntax at that line
    "#);
    insta::assert_snapshot!(invalid("yaml-list.md"), @r#"
        fixtures/specs/invalid/yaml-list.md:2:1: invalid YAML front matter: expected `key: value` lines, found a list
        hint: fix the YAML syntax at that line
    "#);
}

#[test]
fn invalid_unknown_keys() {
    insta::assert_snapshot!(invalid("unknown-key.md"), @r#"
        fixtures/specs/invalid/unknown-key.md:3:1: unknown front-matter key `prority` (did you mean `priority`?)
        hint: rename the key to `priority`
    "#);
    insta::assert_snapshot!(invalid("unknown-key-yaml.md"), @r#"
        fixtures/specs/invalid/unknown-key-yaml.md:3:1: unknown front-matter key `colour`
        hint: known keys: id, priority, depends_on, max_iterations, model, agent, labels, timeout, criteria
    "#);
}

#[test]
fn invalid_values() {
    insta::assert_snapshot!(invalid("wrong-type.md"), @r#"
        fixtures/specs/invalid/wrong-type.md:3:1: front-matter key `max_iterations`: expected a whole number, found a string
        hint: write a whole number from 1 to 10000, e.g. `max_iterations = 5`
    "#);
    insta::assert_snapshot!(invalid("bad-priority.md"), @r#"
        fixtures/specs/invalid/bad-priority.md:2:1: front-matter key `priority`: unknown variant `urgent`, expected one of `critical`, `high`, `medium`, `low`
        hint: use one of critical, high, medium, low
    "#);
    insta::assert_snapshot!(invalid("bad-timeout.md"), @r#"
        fixtures/specs/invalid/bad-timeout.md:2:1: front-matter key `timeout`: `soon` is not a duration
        hint: write a duration such as "30m" or "2h"
    "#);
    insta::assert_snapshot!(invalid("bad-dependency.md"), @r#"
        fixtures/specs/invalid/bad-dependency.md:2:1: dependency `Session Store` is not a valid spec id (did you mean `session-store`?)
        hint: write `session-store`
    "#);
}

#[test]
fn invalid_ids() {
    insta::assert_snapshot!(invalid("bad-id.md"), @r#"
        fixtures/specs/invalid/bad-id.md:2: spec id `Login Flow` (from the front matter) is not a valid slug (`[a-z0-9][a-z0-9._-]*`) (did you mean `login-flow`?)
        hint: set `id = "login-flow"`
    "#);
    insta::assert_snapshot!(invalid("Bad Name.md"), @r#"
        fixtures/specs/invalid/Bad Name.md: spec id `Bad Name` (from the file name) is not a valid slug (`[a-z0-9][a-z0-9._-]*`) (did you mean `bad-name`?)
        hint: rename the file to `bad-name.md`, or set `id = "bad-name"` in the front matter
    "#);
}

#[test]
fn invalid_title_and_context() {
    insta::assert_snapshot!(invalid("no-title.md"), @r#"
        fixtures/specs/invalid/no-title.md:4:1: spec has no title (a `# ` heading)
        hint: start the spec with a title line such as `# Add a login page`
    "#);
    insta::assert_snapshot!(invalid("bad-context.md"), @r#"
        fixtures/specs/invalid/bad-context.md:6:1: context item `../secrets.txt` is not a valid path or glob: it must not leave the repository (`..`)
        hint: write one path or glob per list item, e.g. `src/auth/**/*.rs`
    "#);
}

#[test]
fn discover_reports_every_broken_file() {
    let errors = discover(root(), Path::new("fixtures/specs/invalid"))
        .strict()
        .expect_err("invalid");
    let files: Vec<String> = std::fs::read_dir(root().join("fixtures/specs/invalid"))
        .expect("read fixtures")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(errors.errors().len(), files.len());
    let mut reported: Vec<PathBuf> = errors.errors().iter().map(|e| e.file.clone()).collect();
    let sorted = {
        let mut s = reported.clone();
        s.sort();
        s
    };
    assert_eq!(reported, sorted, "errors come in file order");
    reported.dedup();
    assert_eq!(reported.len(), files.len());
}

#[test]
fn a_50_mb_file_is_refused_from_its_size() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("specs")).expect("mkdir");
    let f = std::fs::File::create(dir.path().join("specs/huge.md")).expect("create");
    f.set_len(50 * 1024 * 1024).expect("sparse file");
    let err = load_file(dir.path(), Path::new("specs/huge.md")).expect_err("too large");
    insta::assert_snapshot!(format!("{err}\nhint: {}", err.errors()[0].hint().unwrap_or_default()), @r#"
        specs/huge.md: spec file is too large (52428800 bytes; the limit is 1048576 bytes)
        hint: a spec is a short markdown document; move large material to files named in its context section
    "#);
    let errors = discover(dir.path(), Path::new("specs"))
        .strict()
        .expect_err("too large");
    assert_eq!(errors.errors().len(), 1);
}

/// A "billion laughs" in YAML front matter: nine anchors each naming the one before nine
/// times. Refused at once with the file and line, without expanding it in memory.
#[test]
/// The bomb expands to 9^9 values; the parser stops at its cap of 10,000 (the error says so),
/// so it never builds the expansion.
fn a_yaml_alias_bomb_is_refused_at_the_cap() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("specs")).expect("mkdir");
    let mut text =
        String::from("---\nid: bomb\na: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i"];
    for pair in names.windows(2) {
        let refs = vec![format!("*{}", pair[0]); 9].join(", ");
        text.push_str(&format!("{}: &{} [{refs}]\n", pair[1], pair[1]));
    }
    text.push_str("labels: *i\n---\n# Bomb\n");
    text.push_str(BODY);
    std::fs::write(dir.path().join("specs/bomb.md"), text).expect("write");
    let err = load_file(dir.path(), Path::new("specs/bomb.md")).expect_err("refused");
    insta::assert_snapshot!(format!("{err}\nhint: {}", err.errors()[0].hint().unwrap_or_default()), @r#"
        specs/bomb.md:7:8: invalid YAML front matter: anchors and aliases expand to more than 10000 values (an alias bomb?); write the values out instead
        hint: fix the YAML syntax at that line
    "#);
}

#[test]
fn missing_spec_dir() {
    let repo = TestRepo::new();
    let err = discover(&repo.path, Path::new("specs"))
        .strict()
        .expect_err("no specs dir");
    insta::assert_snapshot!(render(&err), @r#"
        specs: spec directory not found
        hint: create it with `mkdir specs`, or point `[specs] dir` in .mmm/config.toml at your specs
    "#);
    repo.write("specs", "not a dir");
    let err = discover(&repo.path, Path::new("specs"))
        .strict()
        .expect_err("a file");
    insta::assert_snapshot!(render(&err), @r#"
        specs: spec directory is not a directory
        hint: point `[specs] dir` in .mmm/config.toml at a directory
    "#);
}

/// The objective and criteria every spec needs, for tests about something else.
const BODY: &str = "\n## Objective\n\nDo it.\n\n## Acceptance criteria\n\n- done\n";

fn md(text: &str) -> String {
    format!("{text}{BODY}")
}

fn render(errors: &SpecErrors) -> String {
    errors
        .errors()
        .iter()
        .map(|e| format!("{e}\nhint: {}", e.hint().unwrap_or_default()))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn discovery_walks_sorted_skips_hidden_and_non_markdown() {
    let repo = TestRepo::new();
    repo.write("specs/b.md", &md("# B\n"));
    repo.write("specs/a/c.md", &md("# C\n"));
    repo.write("specs/.hidden/d.md", "this would not parse");
    repo.write("specs/.e.md", "nor this");
    repo.write("specs/notes.txt", "not a spec");
    repo.write("specs/z/deeper/e.md", &md("+++\nid = \"e2\"\n+++\n# E\n"));
    repo.commit_all("specs");
    let set = discover(&repo.path, Path::new("specs"))
        .strict()
        .expect("discover");
    let paths: Vec<String> = set.iter().map(|s| s.path.display().to_string()).collect();
    assert_eq!(paths, ["specs/b.md", "specs/a/c.md", "specs/z/deeper/e.md"]);
    let e2 = set.get(&id("e2")).expect("id from front matter");
    // The revision is the blob id git stored for the file.
    assert_eq!(
        e2.revision,
        repo.git(&["rev-parse", "HEAD:specs/z/deeper/e.md"]).trim()
    );
    let c = set.get(&id("c")).expect("c");
    assert_eq!(
        c.revision,
        repo.git(&["rev-parse", "HEAD:specs/a/c.md"]).trim()
    );

    // Changing the file changes the revision.
    let before = c.revision.clone();
    repo.write("specs/a/c.md", &md("# C, changed\n"));
    let set = discover(&repo.path, Path::new("specs"))
        .strict()
        .expect("discover");
    assert_ne!(set.get(&id("c")).expect("c").revision, before);
}

#[test]
fn duplicate_ids_name_both_files() {
    let repo = TestRepo::new();
    repo.write("specs/a/login.md", &md("# One\n"));
    repo.write("specs/b/login.md", &md("# Two\n"));
    repo.write("specs/c.md", &md("+++\nid = \"login\"\n+++\n# Three\n"));
    let err = discover(&repo.path, Path::new("specs"))
        .strict()
        .expect_err("duplicates");
    insta::assert_snapshot!(render(&err), @r#"
        specs/b/login.md: duplicate spec id `login` (also used by specs/a/login.md)
        hint: give one of them another `id` in its front matter, or rename the file
        specs/c.md: duplicate spec id `login` (also used by specs/a/login.md)
        hint: give one of them another `id` in its front matter, or rename the file
    "#);
}

/// A spec with an id, a priority and dependencies, for graph tests.
fn spec(name: &str, priority: Priority, deps: &[&str]) -> Spec {
    let mut front = format!("+++\npriority = \"{priority}\"\n");
    if !deps.is_empty() {
        let list: Vec<String> = deps.iter().map(|d| format!("\"{d}\"")).collect();
        front.push_str(&format!("depends_on = [{}]\n", list.join(", ")));
    }
    front.push_str(&format!("+++\n# {name}\n{BODY}"));
    Spec::parse(Path::new(&format!("specs/{name}.md")), front.as_bytes()).expect("test spec")
}

fn graph_err(specs: Vec<Spec>) -> String {
    render(&SpecSet::new(specs).expect_err("graph error"))
}

#[test]
fn missing_dependency_names_both_specs() {
    let m = Priority::Medium;
    insta::assert_snapshot!(graph_err(vec![spec("a", m, &["b", "nope"]), spec("b", m, &[])]), @r#"
        specs/a.md:3: spec `a` depends on `nope`, which does not exist
        hint: add a spec with id `nope`, or remove it from `depends_on`
    "#);
}

#[test]
fn cycles_are_named_in_order() {
    let m = Priority::Medium;
    insta::assert_snapshot!(graph_err(vec![spec("a", m, &["a"])]), @r#"
        specs/a.md:3: dependency cycle: a → a (each depends on the next)
        hint: remove one of these `depends_on` entries to break the cycle
    "#);
    insta::assert_snapshot!(graph_err(vec![spec("b", m, &["a"]), spec("a", m, &["b"])]), @r#"
        specs/a.md:3: dependency cycle: a → b → a (each depends on the next)
        hint: remove one of these `depends_on` entries to break the cycle
    "#);
    insta::assert_snapshot!(
        graph_err(vec![
            spec("c", m, &["a"]),
            spec("a", m, &["b"]),
            spec("b", m, &["c"]),
            spec("d", m, &["c"]),
            spec("x", m, &["y"]),
            spec("y", m, &["x"]),
            spec("free", m, &[]),
        ]),
        @r#"
            specs/a.md:3: dependency cycle: a → b → c → a (each depends on the next)
            hint: remove one of these `depends_on` entries to break the cycle
            specs/x.md:3: dependency cycle: x → y → x (each depends on the next)
            hint: remove one of these `depends_on` entries to break the cycle
            specs/d.md:3: spec `d` depends on `c`, which has errors
            hint: fix `c` first (see its errors)
        "#
    );
}

#[test]
fn topological_order_breaks_ties_by_priority_then_id() {
    use Priority::*;
    let set = SpecSet::new(vec![
        spec("zeta", Low, &[]),
        spec("alpha", Medium, &[]),
        spec("beta", Medium, &[]),
        spec("urgent", Critical, &["zeta"]),
        spec("gamma", High, &["alpha", "beta"]),
        spec("omega", Critical, &["gamma", "urgent"]),
    ])
    .expect("acyclic");
    let order: Vec<&str> = set.order().iter().map(SpecId::as_str).collect();
    assert_eq!(order, ["alpha", "beta", "gamma", "zeta", "urgent", "omega"]);

    let deps: Vec<&str> = set
        .dependencies_of(&id("omega"))
        .into_iter()
        .map(SpecId::as_str)
        .collect();
    assert_eq!(deps, ["alpha", "beta", "gamma", "zeta", "urgent"]);
    assert!(set.dependencies_of(&id("alpha")).is_empty());
    assert!(set.dependencies_of(&id("unknown")).is_empty());
    let dependents: Vec<&str> = set
        .dependents_of(&id("gamma"))
        .into_iter()
        .map(SpecId::as_str)
        .collect();
    assert_eq!(dependents, ["omega"]);
    assert_eq!(set.get_str("zeta").map(|s| s.priority), Some(Low));
}

#[test]
fn a_dependency_on_a_broken_spec_is_reported_once() {
    let repo = TestRepo::new();
    repo.write(
        "specs/session.md",
        &md("+++\nprority = \"high\"\n+++\n# Session\n"),
    );
    repo.write(
        "specs/login.md",
        &md("+++\ndepends_on = [\"session\"]\n+++\n# Login\n"),
    );
    repo.write("specs/a.md", &md("+++\ndepends_on = [\"b\"]\n+++\n# A\n"));
    repo.write("specs/b.md", &md("+++\ndepends_on = [\"a\"]\n+++\n# B\n"));
    let err = discover(&repo.path, Path::new("specs"))
        .strict()
        .expect_err("broken");
    insta::assert_snapshot!(render(&err), @r#"
        specs/session.md:2:1: unknown front-matter key `prority` (did you mean `priority`?)
        hint: rename the key to `priority`
        specs/login.md:2: spec `login` depends on `session`, which has errors
        hint: fix `session` first (see its errors)
        specs/a.md:2: dependency cycle: a → b → a (each depends on the next)
        hint: remove one of these `depends_on` entries to break the cycle
    "#);
}
