//! `git mmm doctor` after a user rewrote an mmm branch (`git rebase`, with `notes.rewriteRef`
//! copying the notes) or merged another clone's notes (`git notes merge`): the old commits are
//! not called interrupted writes; doctor says what happened (issue 16).

use crate::support::TestRepo;
use crate::support::project::{project, show, spec};

/// A project whose `command` agent writes `work-<tag>.txt` (the tag from `$TAG`) and whose
/// checks alone complete a spec.
fn tagged_project() -> (TestRepo, tempfile::TempDir) {
    use std::os::unix::fs::PermissionsExt as _;
    let tools = tempfile::tempdir().expect("tempdir");
    let agent = tools.path().join("agent.sh");
    std::fs::write(
        &agent,
        "#!/bin/sh\necho \"$TAG\" > \"work-$TAG.txt\"\necho \"@mmm:summary wrote $TAG\"\n",
    )
    .expect("agent");
    std::fs::set_permissions(&agent, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let config = format!(
        "[agent]\nkind = \"command\"\ncommand = \"{} {{prompt_file}}\"\ncomplete_when = \"checks\"\n",
        agent.display()
    );
    let repo = project(
        &config,
        &[("s", &spec("s", ""))],
        &[("check.sh", "exit 0\n")],
    );
    (repo, tools)
}

/// Revises the spec (so that the next run iterates) and runs it with the agent's `tag`.
fn revise_and_run(repo: &TestRepo, tag: &str) {
    let text = std::fs::read_to_string(repo.path.join("specs/s.md")).expect("spec");
    repo.write("specs/s.md", &format!("{text}\nRevision {tag}.\n"));
    repo.commit_all(&format!("revise the spec ({tag})"));
    let out = repo
        .mmm_cmd()
        .env("TAG", tag)
        .args(["run", "s"])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", show(&out));
}

fn doctor(repo: &TestRepo) -> String {
    let out = repo.mmm(&["doctor"]);
    assert!(out.status.success(), "{}", show(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn doctor_after_a_rebase_says_the_iterations_were_rewritten() {
    let (repo, _tools) = tagged_project();
    repo.mmm_ok(&["init"]);
    revise_and_run(&repo, "one");
    revise_and_run(&repo, "two");
    let old = repo.git(&["rev-parse", "mmm/s", "mmm/s~1"]);
    // The user moves the branch onto a newer main; notes.rewriteRef (set by init) copies the
    // notes to the new commits.
    repo.write("other.txt", "a change on main\n");
    repo.commit_all("main moves on");
    repo.git(&["rebase", "--quiet", "main", "mmm/s"]);
    repo.git(&["checkout", "--quiet", "main"]);
    let new = repo.git(&["rev-parse", "mmm/s", "mmm/s~1"]);
    assert_ne!(old, new);
    for c in new.lines() {
        repo.git(&["notes", "--ref=mmm/s/transcripts", "show", c]);
    }

    let said = doctor(&repo);
    assert!(!said.contains("interrupted"), "{said}");
    let (old_2, old_1) = old.split_once('\n').expect("two");
    let (new_2, new_1) = new.split_once('\n').expect("two");
    for (n, o, w) in [(1, old_1, new_1.trim()), (2, old_2, new_2.trim())] {
        let line = format!(
            "commit {} has notes but is off the branch: iteration {n} was rewritten as {} (a rebase",
            &o[..10],
            &w[..10]
        );
        assert!(said.contains(&line), "{line}\n{said}");
    }
    // The branch is left as the user made it, the old commits are kept, and that is the end.
    assert_eq!(repo.git(&["rev-parse", "mmm/s", "mmm/s~1"]), new);
    repo.git(&["merge-base", "--is-ancestor", old_2, "refs/mmm/s/archive"]);
    assert!(doctor(&repo).starts_with("nothing to repair"));
    repo.assert_fsck();
}

#[test]
fn doctor_after_a_notes_merge_says_the_notes_are_another_branchs() {
    let (a, _tools) = tagged_project();
    revise_and_run(&a, "first");
    // A second clone with mmm's refs runs the spec too.
    let dir = tempfile::tempdir().expect("tempdir");
    let b = TestRepo {
        path: dir.path().join("b"),
        home: a.home.clone(),
        dir,
    };
    let src = a.path.to_string_lossy().into_owned();
    a.git(&["clone", "--quiet", &src, &b.path.to_string_lossy()]);
    b.git(&[
        "fetch",
        "--quiet",
        "origin",
        "refs/notes/*:refs/notes/*",
        "refs/heads/mmm/*:refs/heads/mmm/*",
    ]);
    revise_and_run(&b, "theirs");
    revise_and_run(&a, "ours");
    let theirs = b.git(&["rev-parse", "mmm/s"]).trim().to_owned();

    // The user brings the other clone's branch and merges its notes into mmm's.
    let other = b.path.to_string_lossy().into_owned();
    a.git(&[
        "fetch",
        "--quiet",
        &other,
        "refs/heads/mmm/s:refs/remotes/b/mmm/s",
        "refs/notes/mmm/s/transcripts:refs/notes/b/transcripts",
        "refs/notes/mmm/s/metrics:refs/notes/b/metrics",
    ]);
    for kind in ["transcripts", "metrics"] {
        a.git(&[
            "notes",
            &format!("--ref=refs/notes/mmm/s/{kind}"),
            "merge",
            "--quiet",
            "--strategy=cat_sort_uniq",
            &format!("refs/notes/b/{kind}"),
        ]);
    }
    let merge = a.git(&[
        "rev-list",
        "--parents",
        "-n1",
        "refs/notes/mmm/s/transcripts",
    ]);
    assert_eq!(
        merge.split_whitespace().count(),
        3,
        "a merge commit: {merge}"
    );

    let said = doctor(&a);
    assert!(!said.contains("interrupted"), "{said}");
    let line = format!(
        "commit {} has notes but is off the branch: it is iteration 2 of another branch of the spec",
        &theirs[..10]
    );
    assert!(said.contains(&line), "{line}\n{said}");
    assert!(said.contains("git notes merge"), "{said}");
    assert!(doctor(&a).starts_with("nothing to repair"));
    a.assert_fsck();
}
