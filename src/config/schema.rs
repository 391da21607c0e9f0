//! The key schema: every key of every section, its kind, its one-line documentation, and the
//! checks a value must pass. The commented default file is generated from it, so the two
//! cannot drift.

use std::fmt::Write as _;

use super::Config;

/// What a key holds, and which values are valid.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    /// `true` or `false`.
    Bool,
    /// An integer of at least `min`.
    Count { min: u64 },
    /// A number greater than zero (integers are accepted).
    Usd,
    /// A number of at least zero (integers are accepted).
    Price,
    /// A non-empty string.
    Str,
    /// An `http://` or `https://` URL.
    Url,
    /// A humantime duration longer than zero.
    Duration,
    /// One of the listed strings.
    Enum(&'static [&'static str]),
    /// An array of strings.
    List,
}

/// One key of a section.
#[derive(Debug)]
pub(crate) struct KeyDef {
    pub section: &'static str,
    pub key: &'static str,
    pub kind: Kind,
    /// One line for the default file.
    pub doc: &'static str,
    /// For keys without a default: the example written (commented out) in the default file.
    pub example: Option<&'static str>,
}

const fn k(section: &'static str, key: &'static str, kind: Kind, doc: &'static str) -> KeyDef {
    KeyDef {
        section,
        key,
        kind,
        doc,
        example: None,
    }
}

const fn opt(
    section: &'static str,
    key: &'static str,
    kind: Kind,
    doc: &'static str,
    example: &'static str,
) -> KeyDef {
    KeyDef {
        section,
        key,
        kind,
        doc,
        example: Some(example),
    }
}

/// The agent kinds, as written in the file.
pub(crate) const AGENT_KINDS: &[&str] = &["api", "claude-code", "command", "scripted"];
/// Claude Code's permission modes.
pub(crate) const PERMISSION_MODES: &[&str] = &[
    "acceptEdits",
    "auto",
    "bypassPermissions",
    "manual",
    "dontAsk",
    "plan",
    "default",
];
/// The checkpoint positions, as written in the file.
pub(crate) const CHECKPOINT_AFTER: &[&str] = &["iteration", "complete"];

/// The sections made of plain keys, in the order of the default file.
pub(crate) const SECTIONS: &[(&str, &str)] = &[
    ("loop", "How long and how often a spec is iterated."),
    ("specs", "Where the specs live."),
    (
        "agent",
        "Which agent answers the prompts, and how it is reached.",
    ),
    ("model", "Which models are used."),
    (
        "budget",
        "Spending limits: a run stops before it would exceed one of them.",
    ),
    (
        "validate",
        "Quality gates, run by mmm in the iteration's worktree (a gate that is not set is skipped).",
    ),
    ("commands", "Commands the model may ask mmm to run."),
    ("apply", "Paths that the model's edits may not touch."),
    ("context", "What goes into the prompt."),
    ("github", "Pull requests and review on GitHub."),
    (
        "secrets",
        "What is redacted from transcripts and logs, besides the API tokens mmm knows.",
    ),
];

/// Every section name, the structured ones included.
pub(crate) const ALL_SECTIONS: &[&str] = &[
    "loop",
    "specs",
    "agent",
    "model",
    "budget",
    "validate",
    "commands",
    "apply",
    "context",
    "github",
    "secrets",
    "checkpoints",
    "prices",
];

/// The plain keys.
pub(crate) const KEYS: &[KeyDef] = &[
    k(
        "loop",
        "max_iterations",
        Kind::Count { min: 1 },
        "Iterations per spec and run before the loop stops.",
    ),
    k(
        "loop",
        "timeout",
        Kind::Duration,
        "Wall-clock limit of one run of one spec.",
    ),
    k(
        "loop",
        "auto_commit",
        Kind::Bool,
        "Commit each iteration without asking (false: stop before committing and ask).",
    ),
    k(
        "loop",
        "stuck_after",
        Kind::Count { min: 1 },
        "Stop as stuck after this many iterations in a row with the same diff or failures.",
    ),
    k(
        "loop",
        "concurrency",
        Kind::Count { min: 1 },
        "Specs run at the same time.",
    ),
    k(
        "loop",
        "checkpoint_after",
        Kind::Duration,
        "Checkpoint an iteration in flight to the run's wip ref once it has run this long.",
    ),
    k(
        "specs",
        "dir",
        Kind::Str,
        "Directory of the specs, relative to the repository root.",
    ),
    k(
        "agent",
        "kind",
        Kind::Enum(AGENT_KINDS),
        "api | claude-code | command | scripted.",
    ),
    opt(
        "agent",
        "script",
        Kind::Str,
        "File of scripted answers for kind = \"scripted\", relative to the repository root.",
        "\"fixtures/answers.jsonl\"",
    ),
    opt(
        "agent",
        "api_base_url",
        Kind::Url,
        "Base URL of the Messages API (default: the client's own).",
        "\"https://api.anthropic.com\"",
    ),
    k(
        "agent",
        "anthropic_version",
        Kind::Str,
        "The anthropic-version header sent to the API.",
    ),
    k(
        "agent",
        "max_retries",
        Kind::Count { min: 0 },
        "Retries of a failed request (429, 529, network errors).",
    ),
    k(
        "agent",
        "request_timeout",
        Kind::Duration,
        "Time limit of one request, streaming included.",
    ),
    opt(
        "agent",
        "claude_path",
        Kind::Str,
        "The `claude` executable for kind = \"claude-code\" (default: `claude` on PATH).",
        "\"/usr/local/bin/claude\"",
    ),
    opt(
        "agent",
        "max_turns",
        Kind::Count { min: 1 },
        "Claude Code's --max-turns (default: Claude Code's own limit).",
        "40",
    ),
    k(
        "agent",
        "permission_mode",
        Kind::Enum(PERMISSION_MODES),
        "Claude Code's --permission-mode (the worktree is disposable and every change is gated).",
    ),
    k(
        "agent",
        "allowed_tools",
        Kind::List,
        "Claude Code's --allowedTools, e.g. \"Bash(cargo test *)\".",
    ),
    k(
        "agent",
        "disallowed_tools",
        Kind::List,
        "Claude Code's --disallowedTools, e.g. \"WebFetch\".",
    ),
    opt(
        "agent",
        "command",
        Kind::Str,
        "Command line of kind = \"command\"; placeholders {prompt_file} (else the prompt is on stdin), {worktree}, {model}.",
        "\"aider --yes-always --no-auto-commits --model {model} --message-file {prompt_file}\"",
    ),
    opt(
        "agent",
        "cost_regex",
        Kind::Str,
        "Regex over the command's output whose first group is the cost in USD (last match wins).",
        "\"Cost: \\\\$[0-9.]+ message, \\\\$([0-9.]+) session\"",
    ),
    opt(
        "agent",
        "tokens_regex",
        Kind::Str,
        "Regex over the command's output with named groups `input` and `output` (token counts).",
        "\"Tokens: (?P<input>[0-9.,k]+) sent, (?P<output>[0-9.,k]+) received\"",
    ),
    opt(
        "agent",
        "cost_json_field",
        Kind::Str,
        "Dotted path to the cost in USD in the last JSON line of the command's stdout.",
        "\"total_cost_usd\"",
    ),
    opt(
        "agent",
        "tokens_json_field",
        Kind::Str,
        "Dotted path to an object with input_tokens/output_tokens in that JSON line.",
        "\"usage\"",
    ),
    k(
        "model",
        "default",
        Kind::Str,
        "Model of ordinary iterations.",
    ),
    k(
        "model",
        "escalate_to",
        Kind::Str,
        "Model used after escalate_after failed iterations.",
    ),
    k(
        "model",
        "small",
        Kind::Str,
        "Model for summaries and easy specs.",
    ),
    k(
        "model",
        "max_tokens",
        Kind::Count { min: 1 },
        "Output tokens per answer.",
    ),
    k(
        "model",
        "escalate_after",
        Kind::Count { min: 1 },
        "Failed iterations in a row before switching to escalate_to.",
    ),
    k(
        "model",
        "context_window",
        Kind::Count { min: 1 },
        "The model's context window, in tokens.",
    ),
    k(
        "budget",
        "per_iteration_usd",
        Kind::Usd,
        "USD per iteration.",
    ),
    k("budget", "per_spec_usd", Kind::Usd, "USD per spec and run."),
    k(
        "budget",
        "daily_usd",
        Kind::Usd,
        "USD per day over all specs.",
    ),
    opt(
        "budget",
        "per_iteration_tokens",
        Kind::Count { min: 1 },
        "Tokens (input and output) per iteration (default: no limit).",
        "200000",
    ),
    opt(
        "budget",
        "per_spec_tokens",
        Kind::Count { min: 1 },
        "Tokens per spec and run (default: no limit).",
        "1000000",
    ),
    opt(
        "budget",
        "daily_tokens",
        Kind::Count { min: 1 },
        "Tokens per day over all specs (default: no limit).",
        "10000000",
    ),
    opt(
        "validate",
        "build",
        Kind::Str,
        "Build command.",
        "\"cargo build\"",
    ),
    opt(
        "validate",
        "test",
        Kind::Str,
        "Test command.",
        "\"cargo test\"",
    ),
    opt(
        "validate",
        "lint",
        Kind::Str,
        "Lint command.",
        "\"cargo clippy -- -D warnings\"",
    ),
    opt(
        "validate",
        "format",
        Kind::Str,
        "Format check command.",
        "\"cargo fmt --check\"",
    ),
    k(
        "validate",
        "timeout",
        Kind::Duration,
        "Time limit of each gate.",
    ),
    k(
        "commands",
        "allow",
        Kind::List,
        "Glob-like patterns of command lines the model may run, e.g. \"cargo test *\".",
    ),
    k(
        "commands",
        "timeout",
        Kind::Duration,
        "Time limit of one command.",
    ),
    k(
        "commands",
        "max_output_bytes",
        Kind::Count { min: 1 },
        "Output kept per command, in bytes.",
    ),
    k(
        "apply",
        "deny",
        Kind::List,
        "Globs of paths the model may not edit.",
    ),
    k(
        "context",
        "include",
        Kind::List,
        "Globs of files always included, besides the spec's own context section.",
    ),
    k(
        "context",
        "exclude",
        Kind::List,
        "Globs of files never included (.gitignore is honoured anyway).",
    ),
    k(
        "context",
        "max_file_bytes",
        Kind::Count { min: 1 },
        "Files larger than this many bytes are left out.",
    ),
    k(
        "context",
        "output_reserve",
        Kind::Count { min: 0 },
        "Tokens of the context window kept free for the answer.",
    ),
    k(
        "context",
        "repo_map",
        Kind::Bool,
        "Include a map of the repository (paths and top-level items).",
    ),
    k(
        "github",
        "reviewers",
        Kind::List,
        "Logins asked to review each pull request.",
    ),
    k(
        "github",
        "labels",
        Kind::List,
        "Labels put on each pull request.",
    ),
    k(
        "github",
        "draft",
        Kind::Bool,
        "Open pull requests as drafts.",
    ),
    opt(
        "github",
        "base_url",
        Kind::Url,
        "Base URL of the GitHub API, for GitHub Enterprise (default: https://api.github.com).",
        "\"https://github.example.com/api/v3\"",
    ),
    k(
        "github",
        "merge_on_approval",
        Kind::Bool,
        "Merge the pull request when it is approved.",
    ),
    k(
        "secrets",
        "redact",
        Kind::List,
        "Literal values, or names of environment variables whose values are redacted.",
    ),
];

/// The keys of one `[[checkpoints]]` entry.
pub(crate) const CHECKPOINT_KEYS: &[KeyDef] = &[
    k(
        "checkpoints",
        "after",
        Kind::Enum(CHECKPOINT_AFTER),
        "\"iteration\" (after every iteration) or \"complete\" (when the spec is done).",
    ),
    k(
        "checkpoints",
        "required",
        Kind::Bool,
        "The loop may not go on without an answer.",
    ),
    k(
        "checkpoints",
        "timeout",
        Kind::Duration,
        "How long to wait for the answer before stopping.",
    ),
];

/// The keys of one `[prices."<model-id>"]` table.
pub(crate) const PRICE_KEYS: &[&str] = &[
    "input",
    "output",
    "cache_write_5m",
    "cache_write_1h",
    "cache_read",
];

/// The definition of `section.key`, if it is a plain key.
pub(crate) fn key_def(section: &str, key: &str) -> Option<&'static KeyDef> {
    KEYS.iter().find(|d| d.section == section && d.key == key)
}

/// The names of the plain keys of a section (plus `custom` for `[validate]`).
pub(crate) fn section_keys(section: &str) -> Vec<&'static str> {
    let mut keys: Vec<&'static str> = KEYS
        .iter()
        .filter(|d| d.section == section)
        .map(|d| d.key)
        .collect();
    if section == "validate" {
        keys.push("custom");
    }
    keys
}

/// The closest candidate to a misspelt name, if one is close enough to be a likely typo.
pub(crate) fn suggest<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    let limit = (name.chars().count() / 3).max(2);
    candidates
        .into_iter()
        .map(|c| (crate::text::edit_distance(name, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c.to_owned())
}

/// "a string", "an integer", … for messages.
pub(crate) fn type_name(v: &toml::Value) -> &'static str {
    match v {
        toml::Value::String(_) => "a string",
        toml::Value::Integer(_) => "an integer",
        toml::Value::Float(_) => "a float",
        toml::Value::Boolean(_) => "a boolean",
        toml::Value::Datetime(_) => "a datetime",
        toml::Value::Array(_) => "an array",
        toml::Value::Table(_) => "a table",
    }
}

/// Checks a value from a file against its kind; returns the value to store (integers given
/// for numbers become floats) or what is wrong with it.
pub(crate) fn check(kind: Kind, v: &toml::Value) -> Result<toml::Value, String> {
    use toml::Value as V;
    match (kind, v) {
        (Kind::Bool, V::Boolean(_)) => Ok(v.clone()),
        (Kind::Bool, _) => Err(format!("expected true or false, found {}", type_name(v))),
        (Kind::Count { min }, V::Integer(i)) => {
            if *i < 0 || (*i as u64) < min {
                Err(format!("expected an integer of at least {min}, found {i}"))
            } else {
                Ok(v.clone())
            }
        }
        (Kind::Count { .. }, _) => Err(format!("expected an integer, found {}", type_name(v))),
        (Kind::Usd | Kind::Price, V::Integer(i)) => check(kind, &V::Float(*i as f64)),
        (Kind::Usd, V::Float(f)) => {
            if f.is_finite() && *f > 0.0 {
                Ok(v.clone())
            } else {
                Err(format!("expected an amount greater than zero, found {f}"))
            }
        }
        (Kind::Price, V::Float(f)) => {
            if f.is_finite() && *f >= 0.0 {
                Ok(v.clone())
            } else {
                Err(format!("expected a price of at least zero, found {f}"))
            }
        }
        (Kind::Usd | Kind::Price, _) => Err(format!("expected a number, found {}", type_name(v))),
        (Kind::Str, V::String(s)) => {
            if s.trim().is_empty() {
                Err("expected a non-empty string, found \"\"".to_owned())
            } else {
                Ok(v.clone())
            }
        }
        (Kind::Url, V::String(s)) => {
            if s.starts_with("http://") || s.starts_with("https://") {
                Ok(v.clone())
            } else {
                Err(format!("expected an http:// or https:// URL, found {v}"))
            }
        }
        (Kind::Duration, V::String(s)) => match humantime::parse_duration(s) {
            Ok(d) if d.is_zero() => Err(format!("expected a duration longer than zero, found {v}")),
            Ok(_) => Ok(v.clone()),
            Err(e) => Err(format!(
                "expected a duration such as \"90s\", \"10m\" or \"2h\", found {v} ({e})"
            )),
        },
        (Kind::Duration, _) => Err(format!(
            "expected a duration such as \"90s\", \"10m\" or \"2h\", found {}",
            type_name(v)
        )),
        (Kind::Enum(values), V::String(s)) => {
            if values.contains(&s.as_str()) {
                Ok(v.clone())
            } else {
                let mut msg = format!("expected one of {}, found {v}", quoted_list(values));
                if let Some(s) = suggest(s, values.iter().copied()) {
                    let _ = write!(msg, " (did you mean \"{s}\"?)");
                }
                Err(msg)
            }
        }
        (Kind::Enum(values), _) => Err(format!(
            "expected one of {}, found {}",
            quoted_list(values),
            type_name(v)
        )),
        (Kind::List, V::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                if !item.is_str() {
                    return Err(format!(
                        "expected an array of strings, found {} at index {i}",
                        type_name(item)
                    ));
                }
            }
            Ok(v.clone())
        }
        (Kind::List, _) => Err(format!(
            "expected an array of strings, found {}",
            type_name(v)
        )),
        (Kind::Str | Kind::Url, _) => Err(format!("expected a string, found {}", type_name(v))),
    }
}

/// Parses a value given as text (an `MMM_*` variable or a flag) according to its kind, then
/// checks it like a value from a file. Lists are comma-separated.
pub(crate) fn parse_text(kind: Kind, text: &str) -> Result<toml::Value, String> {
    use toml::Value as V;
    let t = text.trim();
    let value = match kind {
        Kind::Bool => match t.to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => V::Boolean(true),
            "false" | "no" | "off" | "0" => V::Boolean(false),
            _ => return Err(format!("expected true or false, found \"{t}\"")),
        },
        Kind::Count { .. } => match t.replace('_', "").parse::<i64>() {
            Ok(i) => V::Integer(i),
            Err(_) => return Err(format!("expected an integer, found \"{t}\"")),
        },
        Kind::Usd | Kind::Price => match t.replace('_', "").parse::<f64>() {
            Ok(f) => V::Float(f),
            Err(_) => return Err(format!("expected a number, found \"{t}\"")),
        },
        Kind::Str | Kind::Url | Kind::Duration | Kind::Enum(_) => V::String(t.to_owned()),
        Kind::List => V::Array(
            t.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| V::String(s.to_owned()))
                .collect(),
        ),
    };
    check(kind, &value)
}

fn quoted_list(values: &[&str]) -> String {
    values
        .iter()
        .map(|v| format!("\"{v}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The fully commented default configuration file that `git mmm init` writes: every key, with
/// its default value (or, for keys without a default, a commented-out example) and one comment
/// line that explains it. It parses back into [`Config::default`].
pub fn default_config_toml() -> String {
    let defaults = toml::Table::try_from(Config::default())
        .expect("the default configuration serializes to a TOML table");
    let mut out = String::new();
    out.push_str(
        "# mmm configuration (.mmm/config.toml). Every key is shown with its default value;\n\
         # keys that are commented out have no default. Precedence: command-line flags >\n\
         # MMM_<SECTION>_<KEY> environment variables > this file > ~/.config/mmm/config.toml >\n\
         # built-in defaults. `git mmm config` shows the effective values and their origins.\n",
    );
    for (section, doc) in SECTIONS {
        let _ = write!(out, "\n# {doc}\n[{section}]\n");
        let table = defaults.get(*section).and_then(toml::Value::as_table);
        for def in KEYS.iter().filter(|d| d.section == *section) {
            let _ = writeln!(out, "# {}", def.doc);
            match (table.and_then(|t| t.get(def.key)), def.example) {
                (Some(value), _) => {
                    let _ = writeln!(out, "{} = {value}", def.key);
                }
                (None, Some(example)) => {
                    let _ = writeln!(out, "# {} = {example}", def.key);
                }
                (None, None) => {
                    let _ = writeln!(out, "# {} =", def.key);
                }
            }
        }
        if *section == "validate" {
            out.push_str(
                "# More gates: [validate.custom], one command per name, e.g.\n\
                 # [validate.custom]\n\
                 # audit = \"cargo audit\"\n",
            );
        }
    }
    out.push_str(
        "\n# Points where the loop waits for a human (default: none). A file that sets\n\
         # checkpoints replaces the list of the files below it.\n\
         # [[checkpoints]]\n",
    );
    let checkpoint = toml::Table::try_from(super::Checkpoint::default())
        .expect("the default checkpoint serializes to a TOML table");
    for def in CHECKPOINT_KEYS {
        let value = checkpoint
            .get(def.key)
            .map(ToString::to_string)
            .unwrap_or_default();
        let _ = writeln!(out, "# {}\n# {} = {value}", def.doc, def.key);
    }
    out.push_str(
        "\n# Prices in USD per million tokens: override or extend the built-in price table,\n\
         # per model and per field (default: the built-in table only).\n\
         # [prices.\"claude-sonnet-5-5\"]\n\
         # input = 3.0\n\
         # output = 15.0\n\
         # cache_write_5m = 3.75\n\
         # cache_write_1h = 6.0\n\
         # cache_read = 0.3\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_in_the_default_file() {
        let text = default_config_toml();
        for def in KEYS {
            let set = format!("\n{} = ", def.key);
            let commented = format!("\n# {} = ", def.key);
            assert!(
                text.contains(&set) || text.contains(&commented),
                "{}.{} is missing from the default file",
                def.section,
                def.key
            );
        }
        for (section, _) in SECTIONS {
            assert!(
                text.contains(&format!("\n[{section}]\n")),
                "[{section}] missing"
            );
        }
    }

    #[test]
    fn suggestions_catch_typos_only() {
        let keys = section_keys("loop");
        assert_eq!(
            suggest("max_iteration", keys.iter().copied()).as_deref(),
            Some("max_iterations")
        );
        assert_eq!(suggest("colour", keys.iter().copied()), None);
        assert_eq!(
            suggest("lop", ALL_SECTIONS.iter().copied()).as_deref(),
            Some("loop")
        );
    }

    #[test]
    fn text_values_are_parsed_by_kind() {
        assert_eq!(
            parse_text(Kind::Count { min: 1 }, " 5 "),
            Ok(toml::Value::Integer(5))
        );
        assert_eq!(parse_text(Kind::Usd, "3"), Ok(toml::Value::Float(3.0)));
        assert_eq!(
            parse_text(Kind::Bool, "no"),
            Ok(toml::Value::Boolean(false))
        );
        assert_eq!(
            parse_text(Kind::List, "a, b,,c"),
            Ok(toml::Value::Array(vec!["a".into(), "b".into(), "c".into()]))
        );
        assert_eq!(
            parse_text(Kind::Count { min: 1 }, "0"),
            Err("expected an integer of at least 1, found 0".to_owned())
        );
        assert_eq!(
            parse_text(Kind::Usd, "-1"),
            Err("expected an amount greater than zero, found -1".to_owned())
        );
        assert!(parse_text(Kind::Duration, "soon").is_err());
        assert!(parse_text(Kind::Duration, "0s").is_err());
        assert!(parse_text(Kind::Url, "ftp://x").is_err());
    }
}
