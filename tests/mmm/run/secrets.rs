//! Issue 11, defect 9: secrets never reach the screen, a CI log or git. Every output channel is
//! checked: stdout with `--json`, stderr with `--stream`, the notes, the commit message, the
//! gate's output and `git mmm show`.

use crate::support::fake_anthropic::Reply;
use crate::support::project::{all_notes, show};
use crate::support::scenario::{NEEDLE, Scenario, done};

/// `(variable, value)`: the cloud and forge credentials mmm knows by name, a database URL
/// (its password is the secret), and one named in `[redact] env`.
const SECRETS: &[(&str, &str)] = &[
    ("AWS_ACCESS_KEY_ID", "AKIAFAKEFAKEFAKE1234"),
    ("AWS_SESSION_TOKEN", "FwoGZXIvYXdzEFAKESESSIONTOKEN"),
    ("GH_TOKEN", "ghp_fakefakefakefakefake1234"),
    ("NPM_TOKEN", "npm_fakefakefakefakefake99"),
    ("DATABASE_URL", "postgres://app:dbpass-fake-123@db:5432/app"),
    ("MY_CORP_THING", "corp-thing-value-777"),
];

/// The secret parts of the values above, and one known only by `[redact] patterns`.
const VALUES: &[&str] = &[
    "AKIAFAKEFAKEFAKE1234",
    "FwoGZXIvYXdzEFAKESESSIONTOKEN",
    "ghp_fakefakefakefakefake1234",
    "npm_fakefakefakefakefake99",
    "dbpass-fake-123",
    "corp-thing-value-777",
    "zork_31415926",
];

fn assert_clean(channel: &str, text: &str) {
    for v in VALUES {
        assert!(!text.contains(v), "{channel} holds {v}:\n{text:.3000}");
    }
}

#[test]
fn secrets_are_redacted_on_every_output_channel() {
    let listing = VALUES.join("\n");
    // Each secret on a line of its own: the fake cuts the answer into three deltas, so some are
    // split between two of them.
    // The first `@mmm:summary` is the commit message's subject.
    let answer = format!(
        "Here are the values I found:\n{listing}\n@mmm:summary found {} and {}\n\n{}",
        VALUES[0],
        VALUES[6],
        done(),
    );
    let secrets_file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(secrets_file.path(), &listing).expect("secrets file");
    let check = "cat \"$SECRETS_FILE\"\necho \"db $DATABASE_URL\"\ntest -e done.txt\n";
    let config = "[agent]\nkind = \"api\"\n\n[validate]\ntest = \"sh check.sh\"\n\n\
                  [redact]\nenv = [\"MY_CORP_THING\"]\npatterns = ['zork_[0-9]{8}']\n";
    for flag in ["--json", "--stream"] {
        let project = Scenario::spec_s()
            .raw_config(config)
            .check(check)
            .answer(NEEDLE, Reply::Text(answer.clone()))
            .build();
        let mut cmd = project.cmd();
        cmd.env("SECRETS_FILE", secrets_file.path());
        for (k, v) in SECRETS {
            cmd.env(k, v);
        }
        let out = cmd.args(["run", "s", flag]).output().expect("run");
        assert!(out.status.success(), "{}", show(&out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_clean(&format!("stdout with {flag}"), &stdout);
        assert_clean(&format!("stderr with {flag}"), &stderr);
        let printed = if flag == "--json" { &stdout } else { &stderr };
        assert!(
            printed.contains("[redacted:AWS_ACCESS_KEY_ID]")
                && printed.contains("[redacted:pattern1]")
                && printed.contains("[redacted:MY_CORP_THING]"),
            "the model's text is shown, redacted ({flag}):\n{printed}"
        );
        let repo = &project.repo;
        let notes = all_notes(repo);
        assert_clean("the notes", &notes);
        assert!(
            notes.contains("[redacted:DATABASE_URL]"),
            "the gate's output is in the transcript, redacted:\n{notes:.3000}"
        );
        let log = repo.git(&["log", "--format=%B", "mmm/s"]);
        assert_clean("the commit message", &log);
        assert!(log.contains("[redacted:AWS_ACCESS_KEY_ID]"), "{log}");
        let shown = project.run(&["show", "s"]);
        assert!(shown.status.success(), "{}", show(&shown));
        assert_clean("git mmm show", &String::from_utf8_lossy(&shown.stdout));
    }
    // The fake did see the secrets (in the gate's output fed back, or not at all): nothing
    // above passed for want of them.
    assert!(answer.contains(VALUES[2]));
}
