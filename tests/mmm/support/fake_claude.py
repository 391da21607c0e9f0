#!/usr/bin/env python3
"""A fake `claude` (Claude Code 2.1.330 headless) for mmm's tests.

Emits `--output-format stream-json --verbose` lines shaped like the recorded samples
(shared/reference/samples/claude_p_stream-json_*.jsonl and claude_p_json_*.json), and edits
files in its working directory by a plan.

FAKE_CLAUDE_PLAN names a JSON file {"steps": [step, ...]}; the n-th call uses step n (the last
repeats). A step:
  writes:  {"path": "content", ...}  each done as a `Write` tool call (tool_use + tool_result)
  commit:  "message"                  commit everything in the cwd with git (a disobedient agent)
  text:    "final text"               the last assistant text and the result
  deny:    true                       a Bash call outside the cwd, denied (permission_denied)
  cost:    0.0123                     total_cost_usd
  fail:    max_turns | 429 | 529 | not_logged_in | root_bypass | crash | hang
Every call appends {"argv", "cwd", "claudecode", "stdin_isatty"} to "<plan>.calls" (JSON lines).
"""
import json
import os
import subprocess
import sys
import time
import uuid

SESSION = str(uuid.uuid4())
MODEL = "claude-opus-5-5"


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def usage(inp, out):
    return {
        "input_tokens": inp, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
        "output_tokens": out, "output_tokens_details": {"thinking_tokens": 0},
        "server_tool_use": {"web_search_requests": 0, "web_fetch_requests": 0},
        "service_tier": "standard",
        "cache_creation": {"ephemeral_1h_input_tokens": 0, "ephemeral_5m_input_tokens": 0},
        "inference_geo": "", "iterations": [], "speed": "standard", "fallback_credit": None,
    }


def model_usage(inp, out, cost):
    return {MODEL: {
        "inputTokens": inp, "outputTokens": out, "cacheReadInputTokens": 0,
        "cacheCreationInputTokens": 0, "webSearchRequests": 0, "costUSD": cost,
        "contextWindow": 1000000, "maxOutputTokens": 128000, "thinkingTokens": 0,
        "canonicalModel": MODEL, "provider": "firstParty", "costBasis": "list",
    }}


def assistant(msg_id, block):
    emit({
        "type": "assistant",
        "message": {
            "id": msg_id, "type": "message", "role": "assistant", "model": MODEL,
            "content": [block], "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": 10, "cache_creation_input_tokens": 0,
                      "cache_read_input_tokens": 0, "output_tokens": 1,
                      "service_tier": "standard"},
            "context_management": None,
        },
        "parent_tool_use_id": None, "session_id": SESSION, "uuid": str(uuid.uuid4()),
        "timestamp": "2026-11-24T06:53:30.784Z", "request_id": "req_fake_0001",
    })


def tool_result(tool_id, content, is_error, decision):
    emit({
        "type": "user",
        "message": {"role": "user", "content": [
            {"tool_use_id": tool_id, "type": "tool_result", "content": content,
             "is_error": is_error}]},
        "parent_tool_use_id": None, "session_id": SESSION, "uuid": str(uuid.uuid4()),
        "timestamp": "2026-11-24T06:53:30.857Z",
        "tool_use_result": ("Error: " + content) if is_error else {"type": "create"},
        "tool_result_meta": [{"id": tool_id, "permission_decision": {
            "decision": decision, "source": "config"}}],
    })


def result(turns, cost, inp, out, text, denials, **extra):
    r = {
        "duration_api_ms": 57, "stop_reason": "end_turn", "session_id": SESSION,
        "total_cost_usd": cost, "usage": usage(inp, out),
        "modelUsage": model_usage(inp, out, cost) if cost else {},
        "permission_denials": denials, "terminal_reason": "completed",
        "is_error": False, "num_turns": turns, "subtype": "success",
        "api_error_status": None, "result": text, "type": "result", "duration_ms": 233,
        "uuid": str(uuid.uuid4()), "queued_turn_count": 0, "result_index": 0,
    }
    r.update(extra)
    if r.get("result") is None:
        del r["result"]
    emit(r)


def main():
    plan_path = os.environ["FAKE_CLAUDE_PLAN"]
    with open(plan_path) as f:
        steps = json.load(f)["steps"]
    calls_path = plan_path + ".calls"
    n = 0
    if os.path.exists(calls_path):
        with open(calls_path) as f:
            n = sum(1 for _ in f)
    with open(calls_path, "a") as f:
        f.write(json.dumps({
            "argv": sys.argv[1:], "cwd": os.getcwd(),
            "claudecode": "CLAUDECODE" in os.environ,
            "stdin_isatty": sys.stdin.isatty(),
            "stdin": sys.stdin.read() if not sys.stdin.isatty() else None,
        }) + "\n")
    step = steps[min(n, len(steps) - 1)]
    fail = step.get("fail")
    argv = sys.argv[1:]

    if "--verbose" not in argv and "stream-json" in argv:
        sys.stderr.write(
            "Error: When using --print, --output-format=stream-json requires --verbose\n")
        return 1
    if fail == "root_bypass":
        sys.stderr.write("--dangerously-skip-permissions cannot be used with root/sudo "
                         "privileges for security reasons\n")
        return 1

    emit({"type": "system", "subtype": "init", "cwd": os.getcwd(), "session_id": SESSION,
          "tools": ["Bash", "Edit", "Read", "Write"], "mcp_servers": [], "model": MODEL,
          "permissionMode": argv[argv.index("--permission-mode") + 1]
          if "--permission-mode" in argv else "default",
          "apiKeySource": "ANTHROPIC_API_KEY", "claude_code_version": "2.1.330",
          "output_style": "default", "uuid": str(uuid.uuid4())})
    emit({"type": "rate_limit_event", "session_id": SESSION, "uuid": str(uuid.uuid4())})

    if fail == "crash":
        sys.stderr.write("panic: fake claude crashed (segmentation fault)\n")
        sys.stdout.flush()
        os._exit(139)
    if fail == "hang":
        # A helper in the same process group, to check that the whole group is ended.
        subprocess.Popen(["sleep", "300"])
        time.sleep(300)
        return 0
    if fail == "not_logged_in":
        result(1, 0, 0, 0, "Not logged in · Please run /login", [], is_error=True)
        return 1
    if fail in ("429", "529"):
        code = int(fail)
        kind = "rate_limit_error" if code == 429 else "overloaded_error"
        text = ("API Error: Request rejected (429) · fake rate_limit_error" if code == 429
                else "API Error: 529 {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\"}}")
        result(1, 0, 0, 0, text, [], is_error=True, api_error_status=code,
               api_error_type=kind, terminal_reason="api_error", stop_reason="stop_sequence")
        return 1

    assistant("msg_fake0001", {"type": "text", "text": "Working on it."})
    turns = 1
    denials = []
    for i, (path, content) in enumerate(sorted(step.get("writes", {}).items())):
        tool_id = "toolu_fake%02d" % i
        full = os.path.join(os.getcwd(), path)
        assistant("msg_fake0001", {"type": "tool_use", "id": tool_id, "name": "Write",
                                   "input": {"file_path": full, "content": content}})
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "w") as f:
            f.write(content)
        tool_result(tool_id, "File created successfully at: " + full, False, "accept")
        turns += 1
    if step.get("deny"):
        tool_id = "toolu_fakedeny"
        inp = {"command": "touch /elsewhere/touched", "description": "touch"}
        assistant("msg_fake0002", {"type": "tool_use", "id": tool_id, "name": "Bash",
                                   "input": inp})
        msg = ("touch in '/elsewhere/touched' needs approval. The path is outside the working "
               "directories for this session.")
        emit({"type": "system", "subtype": "permission_denied", "tool_name": "Bash",
              "tool_use_id": tool_id, "message": msg, "uuid": str(uuid.uuid4()),
              "session_id": SESSION})
        tool_result(tool_id, msg, True, "reject")
        denials.append({"tool_name": "Bash", "tool_use_id": tool_id, "tool_input": inp})
        turns += 1
    if step.get("commit"):
        env = dict(os.environ, GIT_AUTHOR_NAME="Claude", GIT_AUTHOR_EMAIL="claude@example.com",
                   GIT_COMMITTER_NAME="Claude", GIT_COMMITTER_EMAIL="claude@example.com")
        subprocess.run(["git", "add", "-A"], check=True, env=env)
        subprocess.run(["git", "commit", "-q", "-m", step["commit"]], check=True, env=env)

    if fail == "max_turns":
        result(turns, 0.00028, 10, 12, None, denials, is_error=True,
               subtype="error_max_turns", terminal_reason="max_turns", stop_reason="tool_use",
               errors=["Reached maximum number of turns (1)"])
        return 1

    text = step.get("text", "Done.")
    assistant("msg_fake0003", {"type": "text", "text": text})
    cost = step.get("cost", 0.00056)
    result(turns, cost, 20 * turns, 24 * turns, text, denials)
    return 0


if __name__ == "__main__":
    sys.exit(main())
