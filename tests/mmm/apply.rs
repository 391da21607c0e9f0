//! Tests of the apply area: the response parser chain, confined edits, and allow-listed
//! commands.

use std::path::Path;
use std::time::Duration;

use mmm::apply::{
    AppliedKind, ApplyError, ApplyPolicy, CommandPolicy, RefusalReason, apply, run_command,
};
use mmm::response::{Edit, HunkLine, ProblemKind, parse};

use crate::support::TestRepo;

fn write(path: &str, content: &str) -> Edit {
    Edit::Write {
        path: path.into(),
        content: content.into(),
    }
}

fn read(repo: &TestRepo, rel: &str) -> String {
    std::fs::read_to_string(repo.path.join(rel)).expect("read back")
}

fn status(repo: &TestRepo) -> String {
    repo.git(&["status", "--porcelain", "--untracked-files=all"])
}

// ---------------------------------------------------------------- parser: edits

#[test]
fn parses_every_whole_file_form() {
    let text = "\
Here are the files.

src/a.rs
```rust
fn a() {}
```

`src/b.rs`
```rust
fn b() {}
```

File: src/c.rs

```rust
fn c() {}
```

### src/d.rs
```
d
```

**src/e.rs**
```rust
e
```

```rust path=src/f.rs
f
```

An illustration, not a file:
```rust
fn not_a_file() {}
```
";
    let p = parse(text);
    assert_eq!(p.problems, vec![]);
    let got: Vec<(&str, &str)> = p
        .edits
        .iter()
        .map(|e| match e {
            Edit::Write { path, content } => (path.as_str(), content.as_str()),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("src/a.rs", "fn a() {}\n"),
            ("src/b.rs", "fn b() {}\n"),
            ("src/c.rs", "fn c() {}\n"),
            ("src/d.rs", "d\n"),
            ("src/e.rs", "e\n"),
            ("src/f.rs", "f\n"),
        ]
    );
}

#[test]
fn a_longer_fence_can_hold_a_markdown_file_with_fences() {
    let text = "docs/x.md\n````markdown\n# x\n```sh\nls\n```\n````\n";
    let p = parse(text);
    assert_eq!(p.edits, vec![write("docs/x.md", "# x\n```sh\nls\n```\n")]);
}

#[test]
fn parses_search_replace_blocks() {
    let text = "\
src/lib.rs
<<<<<<< SEARCH
fn old() {}
=======
fn new() {}
>>>>>>> REPLACE

<<<<<<< SEARCH
two
=======
2
>>>>>>> REPLACE

```rust
src/main.rs
<<<<<<< SEARCH
a
=======
b
>>>>>>> REPLACE
src/other.rs
<<<<<<< SEARCH
=======
new file
>>>>>>> REPLACE
```
";
    let p = parse(text);
    assert_eq!(p.problems, vec![]);
    let r = |path: &str, search: &str, replace: &str| Edit::Replace {
        path: path.into(),
        search: search.into(),
        replace: replace.into(),
    };
    assert_eq!(
        p.edits,
        vec![
            r("src/lib.rs", "fn old() {}\n", "fn new() {}\n"),
            // A second block without its own path line continues on the same file.
            r("src/lib.rs", "two\n", "2\n"),
            r("src/main.rs", "a\n", "b\n"),
            r("src/other.rs", "", "new file\n"),
        ]
    );
}

#[test]
fn parses_multi_file_unified_diffs() {
    let text = "\
```diff
diff --git a/src/lib.rs b/src/lib.rs
index 1111111..2222222 100644
--- a/src/lib.rs
+++ b/src/lib.rs
@@ -1,3 +1,3 @@
 fn a() {}
-fn b() {}
+fn b() { 1 }
 fn c() {}
--- /dev/null
+++ b/src/new.rs
@@ -0,0 +1,2 @@
+one
+two
--- a/src/gone.rs
+++ /dev/null
@@ -1 +0,0 @@
-bye
```
";
    let p = parse(text);
    assert_eq!(p.problems, vec![]);
    assert_eq!(p.edits.len(), 3);
    match &p.edits[0] {
        Edit::Patch { path, hunks } => {
            assert_eq!(path, "src/lib.rs");
            assert_eq!(hunks.len(), 1);
            assert_eq!(hunks[0].old_start, 1);
            assert_eq!(
                hunks[0].lines,
                vec![
                    HunkLine::Context("fn a() {}".into()),
                    HunkLine::Remove("fn b() {}".into()),
                    HunkLine::Add("fn b() { 1 }".into()),
                    HunkLine::Context("fn c() {}".into()),
                ]
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(matches!(&p.edits[1], Edit::Patch { path, .. } if path == "src/new.rs"));
    assert_eq!(
        p.edits[2],
        Edit::Delete {
            path: "src/gone.rs".into()
        }
    );
}

// ---------------------------------------------------------------- parser: commands, directives

#[test]
fn only_marked_blocks_are_commands() {
    let text = "\
To try it yourself you could run:
```sh
rm -rf target
```
```sh run
# comments are skipped
cargo test --lib
cargo build \\
  --release
```
@mmm:run cargo fmt --check
";
    let p = parse(text);
    assert_eq!(p.problems, vec![]);
    assert_eq!(
        p.commands,
        vec![
            "cargo test --lib",
            "cargo build --release",
            "cargo fmt --check"
        ]
    );
    assert!(p.edits.is_empty());
}

#[test]
fn parses_directives_outside_fences_only() {
    let text = "\
All done.
@mmm:summary Added the parser.
It handles CRLF too.

```text
@mmm:needs-review not a directive inside a fence
```
@mmm:needs-review the schema change needs a human
@mmm:complete
";
    let p = parse(text);
    assert_eq!(p.problems, vec![]);
    assert!(p.directives.complete);
    assert_eq!(
        p.directives.needs_review.as_deref(),
        Some("the schema change needs a human")
    );
    assert_eq!(
        p.directives.summary.as_deref(),
        Some("Added the parser.\nIt handles CRLF too.")
    );
    let none = parse("I think `@mmm:complete` is premature.\n");
    assert!(!none.directives.complete);
}

// ---------------------------------------------------------------- parser: malformed input

#[test]
fn malformed_input_becomes_problems() {
    let text = "\
File: src/lonely.rs

Some prose instead of a block.
src/a.rs
<<<<<<< SEARCH
x
>>>>>>> REPLACE
@mmm:finished
```diff
this is not a diff
```
<<<<<<< SEARCH
no path before this one either? it has one: src/a.rs from above
=======
y
src/b.rs
```rust
fn never_closed() {
";
    let p = parse(text);
    let rendered: Vec<String> = p.problems.iter().map(ToString::to_string).collect();
    insta::assert_snapshot!(rendered.join("\n"), @r"
    line 1: path without a code block: `src/lonely.rs` is named but no code block or search/replace block follows it; put the fenced block on the next line
    line 5: unterminated search/replace block: a `<<<<<<< SEARCH` block is not closed by `=======` and `>>>>>>> REPLACE` before the next one starts
    line 12: unterminated search/replace block: this `<<<<<<< SEARCH` block has no `>>>>>>> REPLACE` line; nothing was applied
    ");
    assert!(p.edits.is_empty(), "{:?}", p.edits);
}

#[test]
fn more_malformed_input() {
    let p = parse("@mmm:finished\n```diff\nthis is not a diff\n```\nsrc/b.rs\n```rust\nfn f() {\n");
    let kinds: Vec<(ProblemKind, usize)> = p.problems.iter().map(|p| (p.kind, p.line)).collect();
    assert_eq!(
        kinds,
        vec![
            (ProblemKind::UnknownDirective, 1),
            (ProblemKind::BadDiff, 3),
            (ProblemKind::BadDiff, 2),
            (ProblemKind::UnterminatedFence, 6),
        ]
    );
    assert!(p.edits.is_empty());
    let no_path = parse("<<<<<<< SEARCH\na\n=======\nb\n>>>>>>> REPLACE\n");
    assert_eq!(no_path.problems[0].kind, ProblemKind::MissingPath);
    let hunk_first = parse("```diff\n@@ -1 +1 @@\n-a\n+b\n```\n");
    assert_eq!(hunk_first.problems[0].kind, ProblemKind::BadDiff);
}

#[test]
fn survives_crlf_huge_input_and_junk() {
    let crlf = "src/a.rs\r\n```rust\r\nfn a() {}\r\n```\r\n@mmm:complete\r\n";
    let p = parse(crlf);
    assert_eq!(p.edits, vec![write("src/a.rs", "fn a() {}\n")]);
    assert!(p.directives.complete);

    let mut huge = String::new();
    for i in 0..50_000 {
        huge.push_str(&format!("src/f{i}.rs\n```\nline {i}\n```\n"));
    }
    huge.push_str("```\n");
    for _ in 0..100_000 {
        huge.push_str("<<<<<<< SEARCH\n");
    }
    let p = parse(&huge);
    assert_eq!(p.edits.len(), 50_000);
    assert_eq!(p.problems.len(), 1);

    // Deterministic pseudo-random bytes, made into text the way the agent would.
    let mut x: u32 = 12345;
    let junk: Vec<u8> = (0..200_000)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let b = (x >> 16) as u8;
            // Sprinkle the parser's own markers in.
            match b % 17 {
                0 => b'`',
                1 => b'\n',
                2 => b'<',
                3 => b'@',
                _ => b,
            }
        })
        .collect();
    let _ = parse(&String::from_utf8_lossy(&junk));
    let _ = parse("```");
    let _ = parse("");
    let _ = parse("\n\n\r\r\n");
}

// ---------------------------------------------------------------- apply

#[test]
fn applies_writes_replaces_and_diffs() {
    let repo = TestRepo::new();
    repo.write("src/lib.rs", "fn a() {}\nfn b() {}\nfn c() {}\n");
    repo.write("src/gone.rs", "bye\n");
    repo.write("notes.txt", "keep\n");
    repo.commit_all("files");
    let text = "\
```diff
--- a/src/lib.rs
+++ b/src/lib.rs
@@ -5,3 +5,3 @@
 fn a() {}
-fn b() {}
+fn b() { 1 }
 fn c() {}
--- /dev/null
+++ b/src/new.rs
@@ -0,0 +1,2 @@
+one
+two
--- a/src/gone.rs
+++ /dev/null
@@ -1 +0,0 @@
-bye
```
notes.txt
<<<<<<< SEARCH
keep
=======
kept
>>>>>>> REPLACE

docs/guide.md
```markdown
# Guide
```
";
    let parsed = parse(text);
    assert_eq!(parsed.problems, vec![]);
    let report = apply(&repo.path, &parsed.edits, &ApplyPolicy::default()).expect("apply");
    assert!(report.is_clean(), "{report:?}");
    let kinds: Vec<AppliedKind> = report.applied.iter().map(|a| a.kind).collect();
    assert_eq!(
        kinds,
        vec![
            AppliedKind::Patched,
            AppliedKind::Patched,
            AppliedKind::Deleted,
            AppliedKind::Replaced,
            AppliedKind::Created,
        ]
    );
    assert_eq!(
        read(&repo, "src/lib.rs"),
        "fn a() {}\nfn b() { 1 }\nfn c() {}\n"
    );
    assert_eq!(read(&repo, "src/new.rs"), "one\ntwo\n");
    assert_eq!(read(&repo, "notes.txt"), "kept\n");
    assert_eq!(read(&repo, "docs/guide.md"), "# Guide\n");
    assert_eq!(
        status(&repo),
        " M notes.txt\n D src/gone.rs\n M src/lib.rs\n?? docs/guide.md\n?? src/new.rs\n"
    );
    // No temporary files left behind.
    repo.git(&["add", "-A"]);
    assert_eq!(
        repo.git(&["diff", "--cached", "--stat"]).lines().count(),
        6,
        "five files and the summary line"
    );
}

#[test]
fn whitespace_tolerant_replace_reindents() {
    let repo = TestRepo::new();
    repo.write(
        "src/lib.rs",
        "impl X {\n    fn f(&self) -> u32 {   \n        1\n    }\n}\n",
    );
    let edits = [Edit::Replace {
        path: "src/lib.rs".into(),
        search: "fn f(&self) -> u32 {\n    1\n}\n".into(),
        replace: "fn f(&self) -> u32 {\n    2\n}\n".into(),
    }];
    let report = apply(&repo.path, &edits, &ApplyPolicy::default()).expect("apply");
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(
        read(&repo, "src/lib.rs"),
        "impl X {\n    fn f(&self) -> u32 {\n        2\n    }\n}\n"
    );
}

#[test]
fn non_matching_edits_fail_with_a_reason_and_change_nothing() {
    let repo = TestRepo::new();
    repo.write("a.txt", "x\nx\ny\n");
    repo.commit_all("a");
    let replace = |search: &str| Edit::Replace {
        path: "a.txt".into(),
        search: search.into(),
        replace: "z\n".into(),
    };
    let parsed = parse("```diff\n--- a/a.txt\n+++ b/a.txt\n@@ -1 +1 @@\n-nope\n+z\n```\n");
    let mut edits = vec![replace("x\n"), replace("w\n"), replace("")];
    edits.extend(parsed.edits);
    edits.push(Edit::Replace {
        path: "missing.txt".into(),
        search: "a\n".into(),
        replace: "b\n".into(),
    });
    let report = apply(&repo.path, &edits, &ApplyPolicy::default()).expect("apply");
    assert_eq!(report.counts().failed, 5);
    let reasons: Vec<String> = report
        .failed
        .iter()
        .map(|f| format!("{}: {}", f.path, f.reason))
        .collect();
    insta::assert_snapshot!(reasons.join("\n"), @r"
    a.txt: the SEARCH text (starting `x`) occurs 2 times; include more lines so that it is unique
    a.txt: the SEARCH text (starting `w`) was not found; copy it exactly from the file
    a.txt: an empty SEARCH only creates a new file; this file has content, so quote the text to replace
    a.txt: hunk 1 (at line 1, starting `nope`) does not match the file; re-read the file and send a fresh diff or a search/replace block
    missing.txt: the file does not exist; write it whole, or use an empty SEARCH to create it
    ");
    assert_eq!(status(&repo), "");
}

/// A repository with a sibling directory `outside/` holding a secret, and symlinks to it.
fn hostile_setup() -> (TestRepo, std::path::PathBuf) {
    let repo = TestRepo::new();
    let outside = repo.dir.path().join("outside");
    std::fs::create_dir_all(&outside).expect("mkdir outside");
    std::fs::write(outside.join("secret.txt"), "secret\n").expect("write secret");
    std::os::unix::fs::symlink(&outside, repo.path.join("out")).expect("symlink dir");
    std::os::unix::fs::symlink(outside.join("secret.txt"), repo.path.join("link.txt"))
        .expect("symlink file");
    std::os::unix::fs::symlink("../outside/nothing-yet", repo.path.join("dangling"))
        .expect("dangling symlink");
    std::os::unix::fs::symlink(".git", repo.path.join("g")).expect("symlink to .git");
    repo.commit_all("links");
    (repo, outside)
}

fn outside_listing(outside: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(outside)
        .expect("list outside")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn refuses_every_escape() {
    let (repo, outside) = hostile_setup();
    let git_config_before = read(&repo, ".git/config");
    let policy = ApplyPolicy {
        deny: vec![".github/workflows/**".into(), "secrets/".into()],
        max_file_bytes: 1000,
    };
    let edits = vec![
        write("../x", "x"),
        write("src/../../x", "x"),
        write("/etc/passwd", "x"),
        write("C:\\Windows\\x", "x"),
        write("\\\\server\\share\\x", "x"),
        write("..\\x", "x"),
        write(".git/config", "x"),
        write(".GIT/hooks/pre-commit", "x"),
        write("sub/.git", "x"),
        write("out/x", "x"),
        write("out/secret.txt", "x"),
        write("link.txt", "x"),
        Edit::Replace {
            path: "link.txt".into(),
            search: "secret\n".into(),
            replace: "owned\n".into(),
        },
        write("dangling", "x"),
        write("g/config", "x"),
        write(".github/workflows/ci.yml", "x"),
        write(".GitHub/Workflows/CI.yml", "x"),
        write("secrets/key", "x"),
        write("a\0b", "x"),
        write("", "x"),
        write("big.txt", &"x".repeat(1001)),
        write("bin.dat", "a\0b"),
    ];
    let report = apply(&repo.path, &edits, &policy).expect("apply");
    assert_eq!(report.applied, vec![], "{report:?}");
    assert!(report.failed.is_empty(), "{report:?}");
    let lines: Vec<String> = report
        .refused
        .iter()
        .map(|r| format!("{:?}: {}", r.path, r.reason))
        .collect();
    insta::assert_snapshot!(lines.join("\n"), @r#"
    "../x": `..` is not allowed in paths; use a path relative to the repository root
    "src/../../x": `..` is not allowed in paths; use a path relative to the repository root
    "/etc/passwd": absolute paths are not allowed; use a path relative to the repository root
    "C:\\Windows\\x": absolute paths are not allowed; use a path relative to the repository root
    "\\\\server\\share\\x": absolute paths are not allowed; use a path relative to the repository root
    "..\\x": `..` is not allowed in paths; use a path relative to the repository root
    ".git/config": files under `.git` may not be edited
    ".GIT/hooks/pre-commit": files under `.git` may not be edited
    "sub/.git": files under `.git` may not be edited
    "out/x": `out` is a symlink that leads outside the repository
    "out/secret.txt": `out` is a symlink that leads outside the repository
    "link.txt": `link.txt` is a symlink that leads outside the repository
    "link.txt": `link.txt` is a symlink that leads outside the repository
    "dangling": `dangling` is a symlink that leads outside the repository
    "g/config": files under `.git` may not be edited
    ".github/workflows/ci.yml": the path matches the deny-list pattern `.github/workflows/**`
    ".GitHub/Workflows/CI.yml": the path matches the deny-list pattern `.github/workflows/**`
    "secrets/key": the path matches the deny-list pattern `secrets/`
    "a\0b": the path contains a NUL byte
    "": the path is empty; name a file relative to the repository root
    "big.txt": the file would be 1001 bytes, over the limit of 1000
    "bin.dat": binary content (NUL bytes) is not allowed; write text files only
    "#);
    assert!(matches!(
        report.refused[9].reason,
        RefusalReason::SymlinkEscape { .. }
    ));
    // Nothing was written outside, nothing in .git, nothing in the worktree.
    assert_eq!(outside_listing(&outside), vec!["secret.txt"]);
    assert_eq!(
        std::fs::read_to_string(outside.join("secret.txt")).expect("secret"),
        "secret\n"
    );
    assert_eq!(read(&repo, ".git/config"), git_config_before);
    assert!(!repo.dir.path().join("x").exists());
    assert_eq!(status(&repo), "");
    repo.assert_fsck();
}

#[test]
fn deleting_through_a_symlink_that_leads_outside_is_refused() {
    let (repo, outside) = hostile_setup();
    let report = apply(
        &repo.path,
        &[Edit::Delete {
            path: "link.txt".into(),
        }],
        &ApplyPolicy::default(),
    )
    .expect("apply");
    // The link's final target is outside, so even deleting through it is refused.
    assert_eq!(report.counts().refused, 1, "{report:?}");
    assert_eq!(outside_listing(&outside), vec!["secret.txt"]);
    assert!(repo.path.join("link.txt").symlink_metadata().is_ok());
}

#[test]
fn writes_through_a_symlink_that_stays_inside() {
    let repo = TestRepo::new();
    repo.write("src/lib.rs", "old\n");
    std::os::unix::fs::symlink("src", repo.path.join("code")).expect("symlink dir");
    std::os::unix::fs::symlink("src/lib.rs", repo.path.join("alias.rs")).expect("symlink file");
    repo.commit_all("links");
    let report = apply(
        &repo.path,
        &[
            write("alias.rs", "via file link\n"),
            write("code/new.rs", "via dir link\n"),
        ],
        &ApplyPolicy::default(),
    )
    .expect("apply");
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(read(&repo, "src/lib.rs"), "via file link\n");
    assert_eq!(read(&repo, "src/new.rs"), "via dir link\n");
    assert!(
        repo.path
            .join("alias.rs")
            .symlink_metadata()
            .expect("alias")
            .file_type()
            .is_symlink()
    );
    assert_eq!(status(&repo), " M src/lib.rs\n?? src/new.rs\n");
}

#[test]
fn a_bad_worktree_or_deny_glob_is_an_error() {
    let repo = TestRepo::new();
    let missing = repo.path.join("nope");
    assert!(matches!(
        apply(&missing, &[], &ApplyPolicy::default()),
        Err(ApplyError::Worktree { .. })
    ));
    let bad = ApplyPolicy {
        deny: vec!["a/[".into()],
        max_file_bytes: 10,
    };
    assert!(matches!(
        apply(&repo.path, &[], &bad),
        Err(ApplyError::BadDenyGlob { .. })
    ));
}

#[test]
fn overwrites_keep_the_file_mode_and_creating_diffs_do_not_prepend() {
    use std::os::unix::fs::PermissionsExt;
    let repo = TestRepo::new();
    repo.write("run.sh", "#!/bin/sh\necho old\n");
    std::fs::set_permissions(
        repo.path.join("run.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .expect("chmod");
    repo.commit_all("script");
    let creating = parse("```diff\n--- /dev/null\n+++ b/run.sh\n@@ -0,0 +1 @@\n+oops\n```\n");
    let mut edits = vec![write("run.sh", "#!/bin/sh\necho new\n")];
    edits.extend(creating.edits);
    let report = apply(&repo.path, &edits, &ApplyPolicy::default()).expect("apply");
    assert_eq!(report.counts().applied, 1, "{report:?}");
    assert!(matches!(report.failed[0].reason, ApplyError::FileExists));
    assert_eq!(read(&repo, "run.sh"), "#!/bin/sh\necho new\n");
    // git sees a content change only, no mode change.
    assert_eq!(repo.git(&["diff", "--summary"]), "");
    assert_eq!(status(&repo), " M run.sh\n");
    assert!(!repo.path.join("notes-new.txt").exists());
    let report = apply(
        &repo.path,
        &[write("notes-new.txt", "n\n")],
        &ApplyPolicy::default(),
    )
    .expect("apply");
    assert!(report.is_clean());
    let mode = std::fs::metadata(repo.path.join("notes-new.txt"))
        .expect("new file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o644);
}

// ---------------------------------------------------------------- commands

fn cmd_policy(allow: &[&str], timeout_ms: u64, max: usize) -> CommandPolicy {
    CommandPolicy {
        allow: allow.iter().map(|s| s.to_string()).collect(),
        timeout: Duration::from_millis(timeout_ms),
        max_output_bytes: max,
        env_remove: vec!["HOME".into()],
    }
}

#[test]
fn allowed_commands_run_in_the_worktree() {
    let repo = TestRepo::new();
    let policy = cmd_policy(&["git status*", "ls *", "sh -c *"], 10_000, 10_000);
    let out = run_command(&repo.path, "ls README.md", &policy).expect("run");
    assert!(out.succeeded(), "{out:?}");
    assert_eq!(out.stdout, "README.md\n");
    let out = run_command(&repo.path, "ls missing-file", &policy).expect("run");
    assert!(out.allowed && !out.succeeded());
    assert_eq!(out.exit_code, Some(2));
    assert!(out.stderr.contains("missing-file"), "{out:?}");
}

#[test]
fn denied_commands_do_not_run() {
    let repo = TestRepo::new();
    let policy = cmd_policy(&["cargo test*"], 10_000, 10_000);
    for cmd in [
        "touch pwned",
        "cargo test; touch pwned",
        "cargo test && touch pwned",
    ] {
        let out = run_command(&repo.path, cmd, &policy).expect("run");
        assert!(!out.allowed, "{cmd}");
        assert!(out.refusal.is_some());
        assert_eq!(out.exit_code, None);
    }
    let out = run_command(&repo.path, "touch pwned", &cmd_policy(&[], 1000, 10)).expect("run");
    assert_eq!(
        out.refusal.as_deref(),
        Some("no commands are allowed (the allow-list is empty)")
    );
    assert!(!repo.path.join("pwned").exists());
    assert_eq!(status(&repo), "");
}

#[test]
fn a_command_past_its_timeout_is_killed_with_its_children() {
    let repo = TestRepo::new();
    let cmd = "sleep 30 & echo started; sleep 30";
    let policy = cmd_policy(&[cmd], 300, 10_000);
    let start = std::time::Instant::now();
    let out = run_command(&repo.path, cmd, &policy).expect("run");
    let wall = start.elapsed();
    assert!(out.timed_out, "{out:?}");
    assert!(!out.succeeded());
    assert_eq!(out.exit_code, None);
    assert_eq!(out.stdout, "started\n");
    // The background `sleep` held the pipes too; the group kill closed them, so no waiting
    // for the 2 s drain grace.
    assert!(wall < Duration::from_millis(1500), "{wall:?}");
}

#[test]
fn huge_output_is_cut_to_head_and_tail() {
    let repo = TestRepo::new();
    let policy = cmd_policy(&["seq *"], 10_000, 20);
    let out = run_command(&repo.path, "seq 1 100000", &policy).expect("run");
    assert!(out.succeeded(), "{out:?}");
    // 588,895 bytes of output; 10 bytes of head and 10 of tail are kept.
    insta::assert_snapshot!(out.stdout, @r"
    1
    2
    3
    4
    5

    [… 588875 bytes cut by mmm …]
    99
    100000
    ");
}
