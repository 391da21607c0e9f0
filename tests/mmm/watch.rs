//! `git mmm watch` as a user runs it: a real process watching a real specs directory, runs
//! with the scripted agent, stopped with SIGINT as Ctrl-C stops it.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use crate::support::project::{project, spec};

/// Waits for the watch to print a line that starts with `prefix`; returns every line read.
fn wait_line(rx: &mpsc::Receiver<String>, prefix: &str, seen: &mut Vec<String>) -> String {
    loop {
        match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(line) => {
                seen.push(line.clone());
                if line.starts_with(prefix) {
                    return line;
                }
            }
            Err(e) => panic!("no `{prefix}` line ({e}); so far: {seen:#?}"),
        }
    }
}

/// Saves a file as editors do: written aside, then renamed over the old one (a run reading it
/// meanwhile sees the old text or the new, never half of it).
fn save(repo: &crate::support::TestRepo, rel: &str, text: &str) {
    let tmp = repo.path.join(format!("{rel}.tmp~"));
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, repo.path.join(rel)).expect("rename");
}

#[test]
fn a_new_spec_runs_and_two_quick_edits_during_its_run_give_one_more_run() {
    let gate_dir = tempfile::tempdir().expect("tempdir");
    let go = gate_dir.path().join("go");
    // The first run's gate waits until the test lets it go, so the edits land while it runs.
    let check = format!(
        "while [ ! -f '{}' ]; do sleep 0.05; done\nexit 0\n",
        go.display()
    );
    let config = "[agent]\nkind = \"scripted\"\nscript = \".mmm/answers.toml\"\n\n\
                  [validate]\ntest = \"sh check.sh\"\n\n[loop]\nmax_iterations = 1\n";
    let answers = "[[answer]]\ntext = '''\nDone.\n@mmm:complete\n'''\n";
    let repo = project(
        config,
        &[],
        &[
            (".mmm/answers.toml", answers),
            ("check.sh", &check),
            ("specs/README.txt", "specs go here\n"),
        ],
    );
    let mut child = repo
        .mmm_cmd()
        .args(["watch", "--debounce", "300ms"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("git mmm watch");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with("mmm watch:") && tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut seen = Vec::new();
    wait_line(&rx, "mmm watch: watching specs/", &mut seen);

    save(&repo, "specs/a.md", &spec("A", ""));
    let first = wait_line(&rx, "mmm watch: started a at revision ", &mut seen);
    // Two edits in a row while the run waits at its gate.
    save(&repo, "specs/a.md", &spec("A two", ""));
    save(&repo, "specs/a.md", &spec("A three", ""));
    std::thread::sleep(Duration::from_millis(900));
    std::fs::write(&go, "").expect("go");
    // Its spec changed under it: not complete at the new revision, whatever its exit.
    wait_line(&rx, "mmm watch: a finished (exit ", &mut seen);
    let second = wait_line(&rx, "mmm watch: started a at revision ", &mut seen);
    assert_ne!(first, second);
    wait_line(&rx, "mmm watch: a finished (exit 0)", &mut seen);

    let pid = child.id().to_string();
    let kill = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill");
    assert!(kill.success());
    wait_line(&rx, "mmm watch: stopped", &mut seen);
    let status = child.wait().expect("wait");
    assert!(status.success(), "{status:?}: {seen:#?}");
    let starts: Vec<&String> = seen.iter().filter(|l| l.contains(" started ")).collect();
    assert_eq!(starts.len(), 2, "{seen:#?}");

    // The last run ran the settled revision: the spec's blob now.
    let revision = repo.git(&["hash-object", "specs/a.md"]).trim().to_owned();
    assert!(second.ends_with(&revision[..12]), "{second} vs {revision}");
    // The spec's branch holds the run of that revision (the first run, which read the spec
    // after the edits, may have done it already: the second then finds it complete).
    let log = repo.git(&[
        "log",
        "-1",
        "--format=%(trailers:key=Mmm-Spec-Revision,valueonly)",
        "mmm/a",
    ]);
    assert_eq!(log.trim(), revision);
}
