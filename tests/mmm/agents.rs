//! Tests of the claude-code and command agents: `git mmm run` end to end against a fake
//! `claude` (shaped like Claude Code 2.1.330's stream-json output) and a shell-script agent,
//! and against the real Claude Code CLI pointed at the fake Messages API. Everything is read
//! back with plain git.

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::{Value, json};

use crate::support::{TestRepo, fake_claude};

const CLOCK: &str = "1767225600";

const SPEC: &str = "# Hello file

## Objective
Write hello.txt saying hello (marker: HELLO-SPEC-MARKER).

## Acceptance criteria
- hello.txt says hello. verify: `grep -q hello hello.txt`
";

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A repository with the `hello` spec and an `[agent]` section.
fn repo_with(agent_toml: &str) -> TestRepo {
    let repo = TestRepo::new();
    repo.write("specs/hello.md", SPEC);
    repo.write(
        ".mmm/config.toml",
        &format!("[loop]\nmax_iterations = 3\n\n[agent]\n{agent_toml}\n"),
    );
    repo.commit_all("spec");
    repo
}

/// A fake `claude` with a plan; returns the repository and the plan's path.
fn claude_repo(steps: Value) -> (TestRepo, PathBuf, PathBuf) {
    let tools = tempfile::tempdir().expect("tempdir").keep();
    let claude = fake_claude(&tools);
    let plan = tools.join("plan.json");
    std::fs::write(&plan, json!({ "steps": steps }).to_string()).expect("plan");
    let repo = repo_with(&format!(
        "kind = \"claude-code\"\nclaude_path = \"{}\"\nmax_turns = 7\nallowed_tools = [\"Read\", \"Bash(cargo test *)\"]\ndisallowed_tools = [\"WebFetch\"]\n",
        claude.display()
    ));
    (repo, plan, tools)
}

fn run(repo: &TestRepo, plan: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["run", "hello", "--json"];
    args.extend(extra);
    repo.mmm_cmd()
        .env("MMM_TEST_CLOCK", CLOCK)
        .env("FAKE_CLAUDE_PLAN", plan)
        .env("CLAUDECODE", "1")
        .args(&args)
        .output()
        .expect("run git-mmm")
}

fn calls(plan: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(plan.with_extension("json.calls")).unwrap_or_default();
    text.lines()
        .map(|l| serde_json::from_str(l).expect("call json"))
        .collect()
}

/// The JSON-lines note of `kind` (`metrics` or `transcripts`) on a commit.
fn note(repo: &TestRepo, kind: &str, commit: &str) -> Vec<Value> {
    repo.git(&["notes", &format!("--ref=mmm/hello/{kind}"), "show", commit])
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("note line is JSON"))
        .collect()
}

/// The iteration commits of the spec, oldest first.
fn iterations(repo: &TestRepo) -> Vec<String> {
    let out = repo.git_output(&["rev-list", "--reverse", "mmm/hello", "^main"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The metrics record (the one with the cost) of an iteration commit.
fn metrics(repo: &TestRepo, commit: &str) -> Value {
    note(repo, "metrics", commit)
        .into_iter()
        .find(|r| r.get("cost_usd").is_some())
        .expect("a metrics record")
}

/// The agent's response record of an iteration commit.
fn response(repo: &TestRepo, commit: &str) -> Value {
    note(repo, "transcripts", commit)
        .into_iter()
        .find(|r| r["kind"] == "response")
        .expect("a response record")
}

fn finished(out: &Output) -> Value {
    stdout(out)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .rfind(|e| e["event"] == "finished" || e["type"] == "finished")
        .unwrap_or_else(|| panic!("no finished event:\n{}\n{}", stdout(out), stderr(out)))
}

fn arg_after<'a>(argv: &'a [Value], flag: &str) -> &'a str {
    let i = argv
        .iter()
        .position(|a| a == flag)
        .unwrap_or_else(|| panic!("{flag} not passed: {argv:?}"));
    argv[i + 1].as_str().expect("a string argument")
}

#[test]
fn claude_code_edits_are_committed_with_cost_turns_and_denials() {
    let (repo, plan, _tools) = claude_repo(json!([{
        "writes": {"hello.txt": "hello\n"},
        "deny": true,
        "cost": 0.0123,
        "text": "Wrote hello.txt.\n@mmm:summary wrote hello.txt\n@mmm:complete",
    }]));
    let out = run(&repo, &plan, &[]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let done = finished(&out);
    assert_eq!(done["reason"], "complete");
    assert_eq!(done["cost_usd"], json!(0.0123));

    // One iteration commit holding the file Claude Code wrote.
    let its = iterations(&repo);
    assert_eq!(its.len(), 1, "{its:?}");
    assert_eq!(repo.git(&["show", "mmm/hello:hello.txt"]), "hello\n");
    assert_eq!(
        repo.git(&["log", "-1", "--format=%s", "mmm/hello"]).trim(),
        "mmm(hello): iteration 1: wrote hello.txt"
    );
    assert_eq!(
        repo.git(&["rev-parse", "mmm/hello^"]),
        repo.git(&["rev-parse", "main"])
    );

    let m = metrics(&repo, &its[0]);
    assert_eq!(m["agent"], "claude-code");
    assert_eq!(m["status"], "complete");
    assert_eq!(m["cost_usd"], json!(0.0123));
    assert_eq!(m["model"], "claude-opus-5-5");
    assert_eq!(m["tokens"]["input_tokens"], 60);
    assert_eq!(m["tokens"]["output_tokens"], 72);
    // Turns, duration and permission denials are in the metrics note too.
    let am = &m["agent_metrics"];
    assert_eq!(am["num_turns"], 3, "{m}");
    assert!(am["duration_ms"].as_u64().is_some(), "{m}");
    assert_eq!(am["permission_denials"][0]["tool_name"], "Bash", "{m}");

    // The transcript keeps the stream, parsed by type, and mmm's summary of it.
    let r = response(&repo, &its[0]);
    let records = r["records"].as_array().expect("records");
    let types: Vec<&str> = records.iter().filter_map(|x| x["type"].as_str()).collect();
    for t in [
        "system",
        "assistant",
        "user",
        "result",
        "rate_limit_event",
        "mmm_summary",
    ] {
        assert!(types.contains(&t), "{t} missing from {types:?}");
    }
    let summary = records.last().expect("summary");
    assert_eq!(summary["type"], "mmm_summary");
    assert_eq!(summary["num_turns"], 3);
    assert_eq!(summary["duration_ms"], 233);
    assert_eq!(summary["folded_commits"], 0);
    assert_eq!(summary["permission_denials"][0]["tool_name"], "Bash");
    assert!(r["text"].as_str().expect("text").ends_with("@mmm:complete"));

    // How Claude Code was started.
    let calls = calls(&plan);
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    let argv = call["argv"].as_array().expect("argv");
    assert_eq!(argv[0], "-p");
    assert_eq!(arg_after(argv, "--output-format"), "stream-json");
    assert!(argv.iter().any(|a| a == "--verbose"));
    assert_eq!(arg_after(argv, "--model"), "claude-sonnet-5-5");
    assert_eq!(arg_after(argv, "--permission-mode"), "acceptEdits");
    assert_eq!(arg_after(argv, "--max-turns"), "7");
    assert_eq!(arg_after(argv, "--allowedTools"), "Read,Bash(cargo test *)");
    assert_eq!(arg_after(argv, "--disallowedTools"), "WebFetch");
    let system = arg_after(argv, "--append-system-prompt");
    assert!(system.contains("Do NOT commit"), "{system}");
    assert!(
        system.contains("HELLO-SPEC-MARKER"),
        "the spec is in the prompt"
    );
    assert!(system.contains("@mmm:complete"));
    // Lighter than for `api`: Claude Code reads the files itself.
    let prompt = argv.last().and_then(|a| a.as_str()).expect("prompt");
    assert!(!prompt.contains("path=specs/hello.md"), "{prompt}");
    assert!(
        !system.contains("# Project structure\n\nREADME.md"),
        "{system}"
    );
    // The default per-spec budget, nothing spent yet.
    let budget: f64 = arg_after(argv, "--max-budget-usd")
        .parse()
        .expect("a number");
    assert!(budget > 0.0, "{budget}");
    assert_eq!(call["claudecode"], false, "CLAUDECODE is removed");
    assert_eq!(call["stdin"], "", "stdin is empty");
    // Claude Code refuses edits below `.git`: its worktree is a temporary one outside.
    let cwd = call["cwd"].as_str().expect("cwd");
    assert!(
        cwd.contains("/mmm-worktrees/") && !cwd.contains("/.git/"),
        "{call}"
    );
    assert!(
        cwd.ends_with("/hello") && Path::new(cwd).is_dir(),
        "the spec's worktree is kept for the next run: {cwd}"
    );
    repo.assert_fsck();
}

#[test]
fn claude_code_commits_are_folded_into_one_iteration() {
    let (repo, plan, _tools) = claude_repo(json!([{
        "writes": {"hello.txt": "hello\n", "src/extra.txt": "x\n"},
        "commit": "claude's own commit",
        "text": "@mmm:complete",
    }]));
    let out = run(&repo, &plan, &["--budget-usd", "2.5"]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let its = iterations(&repo);
    assert_eq!(its.len(), 1, "{its:?}");
    let log = repo.git(&["log", "--format=%s", "mmm/hello"]);
    assert!(!log.contains("claude's own commit"), "{log}");
    assert_eq!(
        repo.git(&["rev-parse", "mmm/hello^"]),
        repo.git(&["rev-parse", "main"])
    );
    assert_eq!(
        repo.git(&["diff", "--name-only", "main", "mmm/hello"]),
        "hello.txt\nsrc/extra.txt\n"
    );
    let r = response(&repo, &its[0]);
    let summary = r["records"]
        .as_array()
        .and_then(|a| a.last())
        .expect("summary");
    assert_eq!(summary["folded_commits"], 1);
    let calls = calls(&plan);
    let argv = calls[0]["argv"].as_array().expect("argv");
    // The tightest limit left: per iteration (2.0 by default), under the spec's 2.5.
    assert_eq!(arg_after(argv, "--max-budget-usd"), "2.0000");
    repo.assert_fsck();
}

#[test]
fn claude_code_is_given_the_daily_budget_left_not_its_own_reservation() {
    // Claude Code's cost is not bounded by an output cap: the engine holds all the USD left
    // for its call, and what it tells Claude Code is what was left before that hold.
    let (repo, plan, _tools) = claude_repo(json!([{
        "writes": {"hello.txt": "hello\n"},
        "text": "@mmm:complete",
    }]));
    let out = repo
        .mmm_cmd()
        .env("MMM_TEST_CLOCK", CLOCK)
        .env("FAKE_CLAUDE_PLAN", &plan)
        .env("MMM_BUDGET_DAILY_USD", "1.5")
        .args(["run", "hello", "--json"])
        .output()
        .expect("run git-mmm");
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let calls = calls(&plan);
    let argv = calls[0]["argv"].as_array().expect("argv");
    assert_eq!(arg_after(argv, "--max-budget-usd"), "1.5000");
}

#[test]
fn claude_code_cost_is_summed_across_iterations() {
    let (repo, plan, _tools) = claude_repo(json!([
        {"writes": {"hello.txt": "nope\n"}, "cost": 0.25, "text": "@mmm:complete"},
        {"writes": {"hello.txt": "hello\n"}, "cost": 0.5, "text": "@mmm:complete"},
    ]));
    let out = run(&repo, &plan, &[]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let done = finished(&out);
    assert_eq!(done["reason"], "complete");
    assert_eq!(done["iterations"], 2);
    assert_eq!(done["cost_usd"], json!(0.75));
    let its = iterations(&repo);
    assert_eq!(its.len(), 2);
    assert_eq!(metrics(&repo, &its[0])["status"], "failed");
    assert_eq!(metrics(&repo, &its[0])["cost_usd"], json!(0.25));
    assert_eq!(metrics(&repo, &its[1])["cost_usd"], json!(0.5));
    assert_eq!(calls(&plan).len(), 2);
}

/// Runs a failing plan and returns (exit code, finished event, the iteration's metrics,
/// stderr). `loop_extra` is added to the `[loop]` section.
fn failing(step: Value, loop_extra: &str) -> (Option<i32>, Value, Value, String) {
    let (repo, plan, _tools) = claude_repo(json!([step]));
    if !loop_extra.is_empty() {
        let path = repo.path.join(".mmm/config.toml");
        let text = std::fs::read_to_string(&path).expect("config");
        let text = text.replacen("[loop]\n", &format!("[loop]\n{loop_extra}\n"), 1);
        std::fs::write(&path, text).expect("config");
        repo.commit_all("config");
    }
    let started = std::time::Instant::now();
    let out = run(&repo, &plan, &[]);
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
    let done = finished(&out);
    let its = iterations(&repo);
    assert_eq!(its.len(), 1, "one iteration recorded: {its:?}");
    let m = metrics(&repo, &its[0]);
    assert_eq!(m["status"], "error");
    // Nothing the failed call touched reaches the commit.
    (out.status.code(), done, m, stderr(&out))
}

#[test]
fn claude_code_failures_are_reported_by_their_cause() {
    let cases = [
        (
            json!({"fail": "max_turns"}),
            "maximum number of turns: Reached maximum number of turns (1)",
            "raise [agent] max_turns",
        ),
        (
            json!({"fail": "429"}),
            "API error: rate limited (429)",
            "resumes",
        ),
        (
            json!({"fail": "529"}),
            "API error: overloaded (529)",
            "resumes",
        ),
        (
            json!({"fail": "not_logged_in"}),
            "not authenticated: Not logged in",
            "/login",
        ),
        (
            json!({"fail": "root_bypass"}),
            "refused the permission mode as root",
            "IS_SANDBOX=1",
        ),
        (
            json!({"fail": "crash"}),
            "exited with code 139 without a result: panic: fake claude crashed (segmentation fault)",
            "by hand",
        ),
    ];
    for (step, message, hint) in cases {
        let (code, done, m, err) = failing(step.clone(), "");
        assert_eq!(code, Some(1), "{step}: {err}");
        assert_eq!(done["reason"], "error", "{step}: {done}");
        let detail = done["detail"].as_str().expect("detail");
        assert!(detail.contains(message), "{step}: {detail}");
        assert!(detail.contains(hint), "{step}: {detail}");
        assert!(m["error"].as_str().expect("error").contains(message), "{m}");
    }
}

#[test]
fn claude_code_hang_is_ended_at_the_timeout() {
    let started = std::time::Instant::now();
    let (code, done, m, err) = failing(json!({"fail": "hang"}), "timeout = \"2s\"");
    // The fake left a `sleep 300` holding the pipes: only ending the group returns this soon.
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(code, Some(1), "{err}");
    let detail = done["detail"].as_str().expect("detail");
    assert!(
        detail.contains("Claude Code did not finish within the run's remaining time"),
        "{detail}"
    );
    assert!(
        m["error"]
            .as_str()
            .expect("error")
            .contains("process group was ended")
    );
}

/// A repository whose `command` agent is a shell script in a temp dir.
fn command_repo(script: &str, agent_extra: &str) -> (TestRepo, tempfile::TempDir) {
    use std::os::unix::fs::PermissionsExt as _;
    let tools = tempfile::tempdir().expect("tempdir");
    let path = tools.path().join("agent.sh");
    std::fs::write(&path, script).expect("script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let repo = repo_with(&format!(
        "kind = \"command\"\ncommand = \"{} {{prompt_file}} {{worktree}} {{model}}\"\n{agent_extra}",
        path.display()
    ));
    (repo, tools)
}

#[test]
fn command_agent_edits_the_worktree_and_reports_cost_from_a_regex() {
    let script = r#"#!/bin/sh
set -e
prompt="$1"; worktree="$2"; model="$3"
grep -q HELLO-SPEC-MARKER "$prompt"
[ "$(pwd)" = "$worktree" ]
echo hello > hello.txt
echo "model $model"
echo "Tokens: 1.5k sent, 250 received. Cost: \$0.0213 message, \$0.0425 session." >&2
echo "@mmm:summary wrote hello.txt with a script"
echo "@mmm:complete"
"#;
    let (repo, _tools) = command_repo(
        script,
        "cost_regex = 'Cost: \\$[0-9.]+ message, \\$([0-9.]+) session'\ntokens_regex = 'Tokens: (?P<input>[0-9.,k]+) sent, (?P<output>[0-9.,k]+) received'\n",
    );
    let out = repo
        .mmm_cmd()
        .env("MMM_TEST_CLOCK", CLOCK)
        .args(["run", "hello", "--json"])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert_eq!(finished(&out)["reason"], "complete");
    let its = iterations(&repo);
    assert_eq!(its.len(), 1);
    assert_eq!(repo.git(&["show", "mmm/hello:hello.txt"]), "hello\n");
    assert_eq!(
        repo.git(&["log", "-1", "--format=%s", "mmm/hello"]).trim(),
        "mmm(hello): iteration 1: wrote hello.txt with a script"
    );
    let m = metrics(&repo, &its[0]);
    assert_eq!(m["agent"], "command");
    assert_eq!(m["cost_usd"], json!(0.0425));
    assert_eq!(m["tokens"]["input_tokens"], 1500);
    assert_eq!(m["tokens"]["output_tokens"], 250);
    let r = response(&repo, &its[0]);
    let rec = &r["records"][0];
    assert_eq!(rec["exit_code"], 0);
    assert!(
        rec["stdout"]
            .as_str()
            .expect("stdout")
            .contains("model claude-sonnet-5-5"),
        "{rec}"
    );
    assert!(
        rec["stderr"]
            .as_str()
            .expect("stderr")
            .contains("Cost: $0.0213"),
        "{rec}"
    );
    assert_eq!(r["cost_source"], "agent");
}

/// An agent's output in aider's shape (its edits echoed as search/replace blocks, without a
/// path line), scratch files beside the real change, no directive, and a rounded cost.
const AIDER_LIKE: &str = r#"#!/bin/sh
set -e
echo hello > hello.txt
echo chat > .aider.chat.history.md
mkdir -p .aider.tags.cache.v4 .codex
printf 'binary\000cache' > .aider.tags.cache.v4/cache.db
echo '[x]' > .codex/config.toml
cat <<'OUT'
I will create hello.txt.

<<<<<<< SEARCH
=======
hello
>>>>>>> REPLACE

Tokens: 1.5k sent, 250 received. Cost: $0.01 message, $0.01 session.
OUT
"#;

#[test]
fn command_agent_completes_by_its_checks_and_commits_no_scratch_files() {
    let (repo, _tools) = command_repo(
        AIDER_LIKE,
        "complete_when = \"checks\"\ncost_regex = 'Cost: \\$([0-9.]+) message'\ntokens_regex = 'Tokens: (?P<input>[0-9.,k]+) sent, (?P<output>[0-9.,k]+) received'\n",
    );
    let out = repo
        .mmm_cmd()
        .env("MMM_TEST_CLOCK", CLOCK)
        .args(["run", "hello", "--json"])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert_eq!(finished(&out)["reason"], "complete");
    let its = iterations(&repo);
    assert_eq!(
        its.len(),
        1,
        "complete in one iteration, without a directive"
    );
    let files = repo.git(&["ls-tree", "-r", "--name-only", "mmm/hello"]);
    assert!(files.lines().any(|f| f == "hello.txt"), "{files}");
    assert!(
        !files.contains(".aider") && !files.contains(".codex"),
        "scratch files are not committed:\n{files}"
    );
    assert!(
        !repo.path.join(".gitignore").exists(),
        "nothing is written to the user's .gitignore"
    );
    let m = metrics(&repo, &its[0]);
    assert_eq!(m["status"], "complete");
    assert_eq!(m["problems"], 0, "echoed edits are not edit problems: {m}");
    // $0.01 is rounded: the price table prices the tokens instead (claude-sonnet-5-5 at $2 and
    // $10 per million tokens).
    let expected = 1500.0 * 2.0 / 1e6 + 250.0 * 10.0 / 1e6;
    let cost = m["cost_usd"].as_f64().expect("cost");
    assert!((cost - expected).abs() < 1e-9, "{cost} != {expected}");
    let r = response(&repo, &its[0]);
    assert_eq!(r["cost_source"], "prices (the agent's figure was rounded)");
    assert_eq!(r["records"][0]["cost_rounded"], true);
    repo.assert_fsck();
}

#[test]
fn command_agent_without_a_cost_is_priced_from_its_tokens() {
    let script = "#!/bin/sh\necho hello > hello.txt\necho 'Tokens: 2k sent, 100 received.'\necho '@mmm:complete'\n";
    let (repo, _tools) = command_repo(
        script,
        "tokens_regex = 'Tokens: (?P<input>[0-9.,k]+) sent, (?P<output>[0-9.,k]+) received'\n",
    );
    let out = repo
        .mmm_cmd()
        .env("MMM_TEST_CLOCK", CLOCK)
        .args(["run", "hello", "--json"])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let its = iterations(&repo);
    let m = metrics(&repo, &its[0]);
    let expected = 2000.0 * 2.0 / 1e6 + 100.0 * 10.0 / 1e6;
    let cost = m["cost_usd"].as_f64().expect("cost");
    assert!((cost - expected).abs() < 1e-9, "{cost} != {expected}");
    assert_eq!(response(&repo, &its[0])["cost_source"], "prices");
}

#[test]
fn command_agent_failure_reported_in_its_output_stops_the_run() {
    // aider 0.86.2 with a model litellm does not know: an error line, and exit code 0.
    let script = "#!/bin/sh\necho 'litellm.BadRequestError: LLM Provider NOT provided. model=claude-sonnet-5-5'\necho '@mmm:complete'\nexit 0\n";
    let (repo, _tools) = command_repo(script, "failure_pattern = '^litellm\\.[A-Za-z]*Error'\n");
    let out = repo
        .mmm_cmd()
        .env("MMM_TEST_CLOCK", CLOCK)
        .args(["run", "hello", "--json"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let done = finished(&out);
    assert_eq!(done["reason"], "error");
    let detail = done["detail"].as_str().expect("detail");
    assert!(
        detail.contains(
            "the agent command exited with 0 but reported a failure: litellm.BadRequestError: \
             LLM Provider NOT provided"
        ),
        "{detail}"
    );
    let m = metrics(&repo, &iterations(&repo)[0]);
    assert_eq!(m["status"], "error");
}

#[test]
fn command_agent_reads_the_prompt_on_stdin_and_cost_from_json() {
    let script = r#"#!/bin/sh
grep -q HELLO-SPEC-MARKER || exit 9
echo hello > hello.txt
echo "@mmm:complete"
echo '{"total_cost_usd": 0.125, "usage": {"input_tokens": 11, "output_tokens": 22}}'
"#;
    let (repo, tools) = command_repo(
        script,
        "cost_json_field = \"total_cost_usd\"\ntokens_json_field = \"usage\"\n",
    );
    // No {prompt_file}: the prompt goes to stdin.
    let path = repo.path.join(".mmm/config.toml");
    let text = std::fs::read_to_string(&path).expect("config");
    std::fs::write(&path, text.replace(" {prompt_file} {worktree} {model}", "")).expect("config");
    repo.commit_all("stdin");
    let out = repo
        .mmm_cmd()
        .env("MMM_TEST_CLOCK", CLOCK)
        .args(["run", "hello", "--json"])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let its = iterations(&repo);
    let m = metrics(&repo, &its[0]);
    assert_eq!(m["cost_usd"], json!(0.125));
    assert_eq!(m["tokens"]["output_tokens"], 22);
    drop(tools);
}

#[test]
fn command_agent_failure_is_its_exit_code() {
    let script =
        "#!/bin/sh\necho partial > hello.txt\necho 'agent: model unavailable' >&2\nexit 3\n";
    let (repo, _tools) = command_repo(script, "");
    let out = repo
        .mmm_cmd()
        .env("MMM_TEST_CLOCK", CLOCK)
        .args(["run", "hello", "--json"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let done = finished(&out);
    let detail = done["detail"].as_str().expect("detail");
    assert!(
        detail.contains("the agent command exited with code 3: agent: model unavailable"),
        "{detail}"
    );
    let m = metrics(&repo, &iterations(&repo)[0]);
    assert_eq!(m["status"], "error");
}

#[test]
fn a_failing_command_agent_whose_script_is_not_committed_says_the_worktree_is_a_clean_checkout() {
    let repo = repo_with("kind = \"command\"\ncommand = \"sh ./agent.sh {prompt_file}\"\n");
    // Written after the commit: the repository has it, the worktree of the run does not.
    repo.write("agent.sh", "echo '@mmm:complete'\n");
    let out = repo
        .mmm_cmd()
        .env("MMM_TEST_CLOCK", CLOCK)
        .args(["run", "hello"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    let hint = err
        .lines()
        .find(|l| l.starts_with("hint: [agent] command"))
        .unwrap_or_else(|| panic!("no hint: {err}"));
    insta::assert_snapshot!(hint, @"hint: [agent] command names `./agent.sh`, which is not committed: the agent runs in a worktree that is a clean checkout of the committed files, where it does not exist; commit it (`git add ./agent.sh && git commit`) or name it by an absolute path");

    // Committed, the same command works and the hint is gone.
    repo.commit_all("the agent");
    let out = repo
        .mmm_cmd()
        .env("MMM_TEST_CLOCK", CLOCK)
        .args(["run", "hello"])
        .output()
        .expect("run");
    assert!(!stderr(&out).contains("clean checkout"), "{}", stderr(&out));
}

/// The real Claude Code binary: `MMM_CLAUDE_BIN`, else where scripts/install-claude-code.sh
/// puts it.
fn real_claude() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("MMM_CLAUDE_BIN").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let tools = std::env::var_os("MMM_TOOLS_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/mmm-tools")))?;
    let bin =
        tools.join("claude-code-2.1.330/node_modules/@anthropic-ai/claude-code/bin/claude.exe");
    bin.is_file().then_some(bin)
}

#[test]
fn real_claude_code_implements_the_spec_against_the_fake_api() {
    use crate::support::fake_anthropic::{FakeAnthropic, KEY, Reply, Rule};
    let Some(claude) = real_claude() else {
        assert!(
            std::env::var("CI").ok().as_deref() != Some("true"),
            "the real Claude Code CLI is missing: run scripts/install-claude-code.sh and set \
             MMM_CLAUDE_BIN (CI must run this test)"
        );
        eprintln!(
            "SKIP real_claude_code_implements_the_spec_against_the_fake_api: no Claude Code \
             (run scripts/install-claude-code.sh)"
        );
        return;
    };
    let fake = FakeAnthropic::start(vec![
        // After the Write tool ran, Claude Code sends its result back: then finish.
        Rule::new(
            "File created successfully",
            Reply::text("I wrote hello.txt.\n@mmm:summary wrote hello.txt\n@mmm:complete"),
        ),
        Rule::new(
            "HELLO-SPEC-MARKER",
            Reply::ToolUse {
                text: "I will write the file.".into(),
                name: "Write".into(),
                input_json: json!({"file_path": "hello.txt", "content": "hello\n"}).to_string(),
            },
        ),
    ]);
    // The default permission mode (`acceptEdits`): Claude Code refuses edits below a `.git`
    // directory, so mmm puts Claude Code's worktrees in the temporary directory.
    let repo = repo_with(&format!(
        "kind = \"claude-code\"\nclaude_path = \"{}\"\nmax_turns = 5\n",
        claude.display()
    ));
    let out = repo
        .mmm_cmd()
        .env("MMM_TEST_CLOCK", CLOCK)
        .env("ANTHROPIC_BASE_URL", fake.base_url())
        .env("ANTHROPIC_API_KEY", KEY)
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .env("CLAUDE_CODE_MAX_RETRIES", "0")
        .args(["run", "hello", "--json"])
        .output()
        .expect("run");
    let requests = fake.requests();
    assert!(
        out.status.success(),
        "{}\n{}\nrequests: {:#?}",
        stdout(&out),
        stderr(&out),
        requests.iter().map(|r| r.json()).collect::<Vec<_>>().last()
    );
    assert_eq!(finished(&out)["reason"], "complete");
    let its = iterations(&repo);
    assert_eq!(its.len(), 1);
    assert_eq!(repo.git(&["show", "mmm/hello:hello.txt"]), "hello\n");
    let m = metrics(&repo, &its[0]);
    assert_eq!(m["agent"], "claude-code");
    assert_eq!(m["status"], "complete");
    assert_eq!(m["checks_passed"], 1);
    assert!(
        m["tokens"]["output_tokens"].as_u64().expect("tokens") > 0,
        "{m}"
    );
    let r = response(&repo, &its[0]);
    let summary = r["records"]
        .as_array()
        .and_then(|a| a.last())
        .expect("summary");
    assert_eq!(summary["subtype"], "success");
    assert!(
        summary["num_turns"].as_u64().expect("turns") >= 2,
        "{summary}"
    );
    assert!(requests.len() >= 2, "{}", requests.len());
    repo.assert_fsck();
}

#[test]
fn command_agent_with_huge_output_is_cut_and_recorded() {
    // 12 MB of output from a runaway agent: drained, the first 8 MiB kept, the rest noted.
    let script = "#!/bin/sh\necho hello > hello.txt\nyes 'runaway output line' | head -c 12000000\necho\necho '@mmm:complete'\n";
    let (repo, _tools) = command_repo(script, "");
    let out = repo
        .mmm_cmd()
        .env("MMM_TEST_CLOCK", CLOCK)
        .args(["run", "hello", "--json", "--max-iterations", "1"])
        .output()
        .expect("run");
    let its = iterations(&repo);
    assert_eq!(its.len(), 1, "{}", stderr(&out));
    let r = response(&repo, &its[0]);
    let text = r["text"].as_str().expect("text");
    assert!(text.len() <= 8 * 1024 * 1024 + 200, "{}", text.len());
    assert!(
        text.contains("bytes of output were dropped"),
        "the cut is visible"
    );
    // The directive after the cut is lost with the rest, so the spec is not complete; the
    // edit itself was made and recorded.
    assert_eq!(repo.git(&["show", "mmm/hello:hello.txt"]), "hello\n");
    repo.assert_fsck();
}

/// The real aider: `MMM_AIDER_BIN`, else where scripts/install-aider.sh puts it.
fn real_aider() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("MMM_AIDER_BIN").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let tools = std::env::var_os("MMM_TOOLS_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/mmm-tools")))?;
    let bin = tools.join("aider-0.86.2/bin/aider");
    bin.is_file().then_some(bin)
}

/// The `[agent]` section of docs/AGENTS.md's aider recipe, as written there.
fn aider_recipe() -> String {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/AGENTS.md"))
        .expect("docs/AGENTS.md");
    let start = doc.find("### Example: aider").expect("the aider recipe");
    let block = &doc[start..];
    let open = block.find("```toml\n").expect("its toml block") + "```toml\n".len();
    let close = block[open..].find("```").expect("closed");
    block[open..open + close].to_owned()
}

#[test]
fn the_init_file_shows_the_documented_aider_command() {
    let recipe = aider_recipe();
    let command = recipe
        .lines()
        .find(|l| l.starts_with("command = "))
        .expect("a command line in the recipe");
    let default = mmm::config::default_config_toml();
    assert!(
        default.lines().any(|l| l == format!("# {command}")),
        "the default file's `# command = …` is not docs/AGENTS.md's:\n{command}"
    );
}

#[test]
fn real_aider_implements_the_spec_against_the_fake_api() {
    use crate::support::fake_anthropic::{FakeAnthropic, KEY, Reply, Rule};
    let Some(aider) = real_aider() else {
        assert!(
            std::env::var("CI").ok().as_deref() != Some("true"),
            "aider is missing: run scripts/install-aider.sh and set MMM_AIDER_BIN (CI must run \
             this test)"
        );
        eprintln!(
            "SKIP real_aider_implements_the_spec_against_the_fake_api: no aider (run \
             scripts/install-aider.sh)"
        );
        return;
    };
    // aider's diff format: an empty SEARCH creates the file.
    let fake = FakeAnthropic::start(vec![Rule::new(
        "HELLO-SPEC-MARKER",
        Reply::text(
            "I will create hello.txt.\n\nhello.txt\n```\n<<<<<<< SEARCH\n=======\nhello\n>>>>>>> REPLACE\n```\n",
        ),
    )]);
    // The recipe exactly, with `aider` where this test finds it.
    let recipe = aider_recipe().replacen(
        "command = \"aider ",
        &format!("command = \"{} ", aider.display()),
        1,
    );
    let repo = repo_with(&recipe.replace("[agent]\n", ""));
    // aider fetches litellm's price list once a day into its cache (5 s of timeout without a
    // network); an empty list cached is what it writes itself when the fetch fails.
    let cache = repo.home.join(".aider/caches");
    std::fs::create_dir_all(&cache).expect("cache dir");
    std::fs::write(cache.join("model_prices_and_context_window.json"), "{}").expect("cache");
    let out = repo
        .mmm_cmd()
        .env("MMM_TEST_CLOCK", CLOCK)
        .env("ANTHROPIC_BASE_URL", fake.base_url())
        .env("ANTHROPIC_API_KEY", KEY)
        // litellm would fetch its model list from the network otherwise.
        .env("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        .args(["run", "hello", "--json"])
        .output()
        .expect("run");
    let requests = fake.requests();
    assert!(
        out.status.success(),
        "{}\n{}\nrequests: {:#?}",
        stdout(&out),
        stderr(&out),
        requests.iter().map(|r| r.json()).collect::<Vec<_>>().last()
    );
    assert_eq!(finished(&out)["reason"], "complete");
    let its = iterations(&repo);
    assert_eq!(its.len(), 1);
    assert_eq!(repo.git(&["show", "mmm/hello:hello.txt"]), "hello\n");
    let files = repo.git(&["ls-tree", "-r", "--name-only", "mmm/hello"]);
    assert!(
        !files.contains(".aider"),
        "aider's files are committed:\n{files}"
    );
    assert!(!repo.path.join(".gitignore").exists());
    let m = metrics(&repo, &its[0]);
    assert_eq!(m["agent"], "command");
    assert_eq!(m["status"], "complete");
    assert!(
        m["tokens"]["input_tokens"].as_u64().expect("tokens") > 0,
        "{m}"
    );
    assert!(
        m["tokens"]["output_tokens"].as_u64().expect("tokens") > 0,
        "{m}"
    );
    assert!(m["cost_usd"].as_f64().expect("cost") > 0.0, "{m}");
    let r = response(&repo, &its[0]);
    assert!(
        r["cost_source"]
            .as_str()
            .expect("source")
            .starts_with("prices"),
        "{}",
        r["cost_source"]
    );
    assert!(!requests.is_empty());
    repo.assert_fsck();
}

/// Issue 11, defect 7: a `command` agent is given the USD left (`{budget_usd}` and
/// `MMM_BUDGET_USD`); when what it reports spending goes past the spec's budget, the run
/// says the budget is overrun and by how much, in this run and the next (the budget is the
/// spec's, over all its runs).
#[test]
fn command_agent_gets_the_budget_left_and_an_overrun_is_told() {
    let script = r#"#!/bin/sh
echo "budget arg $4 env $MMM_BUDGET_USD"
echo '{"total_cost_usd": 0.5}'
"#;
    let (repo, _tools) = command_repo(
        script,
        "cost_json_field = \"total_cost_usd\"\n\n[budget]\nper_spec_usd = 0.03\n",
    );
    let path = repo.path.join(".mmm/config.toml");
    let text = std::fs::read_to_string(&path).expect("config");
    std::fs::write(&path, text.replace("{model}\"", "{model} {budget_usd}\"")).expect("config");
    repo.commit_all("budget");
    let run = || {
        repo.mmm_cmd()
            .env("MMM_TEST_CLOCK", CLOCK)
            .args(["run", "hello", "--json"])
            .output()
            .expect("run")
    };
    let out = run();
    let its = iterations(&repo);
    assert_eq!(its.len(), 1, "{}\n{}", stdout(&out), stderr(&out));
    let rec = &response(&repo, &its[0])["records"][0];
    assert!(
        rec["stdout"]
            .as_str()
            .expect("stdout")
            .contains("budget arg 0.0300 env 0.0300"),
        "{rec}"
    );
    assert_eq!(metrics(&repo, &its[0])["cost_usd"], json!(0.5));
    for out in [out, run()] {
        let f = finished(&out);
        assert_eq!(f["reason"], "budget", "{f}");
        let detail = f["detail"].as_str().expect("detail");
        assert!(detail.contains("overrun by $0.4700"), "{detail}");
        assert!(!detail.contains("0.0000 left"), "{detail}");
    }
    assert_eq!(iterations(&repo).len(), 1, "no call after the overrun");
}
