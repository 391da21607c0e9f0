//! The key schema: what a key may hold ([`Kind`]) and the checks a value must pass, the
//! definitions that `keys.rs` declares ([`KeyDef`], [`Section`]) and the commented default
//! file generated from them, so that the file and the checks cannot drift.

use std::fmt::Write as _;

use super::Config;

/// What a key holds, and which values are valid.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    /// `true` or `false`.
    Bool,
    /// An integer of at least `min`.
    Count { min: u64 },
    /// An integer from `min` to `max`.
    Bounded { min: u64, max: u64 },
    /// A number greater than zero (integers are accepted).
    Usd,
    /// A number of at least zero (integers are accepted).
    Price,
    /// A non-empty string.
    Str,
    /// A relative path that stays inside the repository (not absolute, no `..`).
    RelPath,
    /// An `http://` or `https://` URL.
    Url,
    /// A humantime duration longer than zero.
    Duration,
    /// One of the listed strings.
    Enum(&'static [&'static str]),
    /// An array of strings.
    List,
}

/// One key of a section, as declared in `keys.rs`.
#[derive(Debug)]
pub(crate) struct KeyDef {
    pub section: &'static str,
    pub key: &'static str,
    pub kind: Kind,
    /// The key's doc comment, its lines joined: its comment line in the default file.
    pub doc: &'static str,
    /// For keys without a default: the example written (commented out) in the default file.
    pub example: Option<&'static str>,
}

impl KeyDef {
    /// The comment line of the default file.
    pub fn comment(&self) -> &'static str {
        self.doc.trim()
    }
}

/// A section made of plain keys.
#[derive(Debug)]
pub(crate) struct Section {
    pub name: &'static str,
    /// The section's doc comment: its comment line in the default file.
    pub doc: &'static str,
    pub keys: &'static [KeyDef],
    /// Fields of the section that are not plain keys (`[validate.custom]`).
    pub more: &'static [More],
}

/// A field of a section that is not a plain key: the layers check it themselves.
#[derive(Debug)]
pub(crate) struct More {
    pub key: &'static str,
    /// The lines it has in the default file.
    pub file: &'static str,
}

pub(crate) use super::keys::{ALL_SECTIONS, CHECKPOINT_KEYS, PRICE_KEYS, SECTIONS};

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
/// How a pull request is merged, as written in the file.
pub(crate) const MERGE_METHODS: &[&str] = &["merge", "squash", "rebase"];
/// What completes a spec, as written in the file.
pub(crate) const COMPLETE_WHEN: &[&str] = &["directive", "checks"];
/// What the pre-push hook does, as written in the file.
pub(crate) const ON_PUSH: &[&str] = &["run", "announce", "off"];
/// The checkpoint positions, as written in the file.
pub(crate) const CHECKPOINT_AFTER: &[&str] = &["iteration", "complete"];

/// Every plain key of every section, in the order of the default file.
pub(crate) fn all_keys() -> impl Iterator<Item = &'static KeyDef> {
    SECTIONS.iter().flat_map(|s| s.keys)
}

/// The section of plain keys called `name`.
pub(crate) fn section(name: &str) -> Option<&'static Section> {
    SECTIONS.iter().find(|s| s.name == name)
}

/// The definition of `section.key`, if it is a plain key.
pub(crate) fn key_def(section: &str, key: &str) -> Option<&'static KeyDef> {
    self::section(section)?.keys.iter().find(|d| d.key == key)
}

/// The names of the fields of a section: its plain keys, then the others (`custom` for
/// `[validate]`).
pub(crate) fn section_keys(section: &str) -> Vec<&'static str> {
    self::section(section).map_or_else(Vec::new, |s| {
        s.keys
            .iter()
            .map(|d| d.key)
            .chain(s.more.iter().map(|m| m.key))
            .collect()
    })
}

/// The closest candidate to a misspelt name, if one is close enough to be a likely typo.
pub(crate) fn suggest<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    crate::text::closest(name, candidates).map(str::to_owned)
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
        (Kind::Bounded { min, max }, V::Integer(i)) => {
            if *i < 0 || (*i as u64) < min || (*i as u64) > max {
                Err(format!(
                    "expected an integer from {min} to {max}, found {i}"
                ))
            } else {
                Ok(v.clone())
            }
        }
        (Kind::Count { .. } | Kind::Bounded { .. }, _) => {
            Err(format!("expected an integer, found {}", type_name(v)))
        }
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
        (Kind::RelPath, V::String(s)) => {
            let p = std::path::Path::new(s);
            if s.trim().is_empty() {
                Err("expected a path inside the repository, found \"\"".to_owned())
            } else if p.is_absolute() || s.starts_with('~') {
                Err(format!(
                    "expected a path relative to the repository's root, found the absolute path {v}; mmm reads only files inside the repository"
                ))
            } else if p
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
            {
                Err(format!(
                    "expected a path inside the repository, found {v}, which climbs out of it with `..`"
                ))
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
        (Kind::Str | Kind::RelPath | Kind::Url, _) => {
            Err(format!("expected a string, found {}", type_name(v)))
        }
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
        Kind::Count { .. } | Kind::Bounded { .. } => match t.replace('_', "").parse::<i64>() {
            Ok(i) => V::Integer(i),
            Err(_) => return Err(format!("expected an integer, found \"{t}\"")),
        },
        Kind::Usd | Kind::Price => match t.replace('_', "").parse::<f64>() {
            Ok(f) => V::Float(f),
            Err(_) => return Err(format!("expected a number, found \"{t}\"")),
        },
        Kind::Str | Kind::RelPath | Kind::Url | Kind::Duration | Kind::Enum(_) => {
            V::String(t.to_owned())
        }
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
    for section in SECTIONS {
        let _ = write!(out, "\n# {}\n[{}]\n", section.doc.trim(), section.name);
        let table = defaults.get(section.name).and_then(toml::Value::as_table);
        for def in section.keys {
            let _ = writeln!(out, "# {}", def.comment());
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
        for more in section.more {
            out.push_str(more.file);
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
        let _ = writeln!(out, "# {}\n# {} = {value}", def.comment(), def.key);
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
        for def in all_keys() {
            let set = format!("\n{} = ", def.key);
            let commented = format!("\n# {} = ", def.key);
            assert!(
                text.contains(&set) || text.contains(&commented),
                "{}.{} is missing from the default file",
                def.section,
                def.key
            );
        }
        for section in SECTIONS {
            let name = section.name;
            assert!(text.contains(&format!("\n[{name}]\n")), "[{name}] missing");
        }
    }

    #[test]
    fn the_declaration_makes_the_schema() {
        assert_eq!(
            section_keys("validate"),
            ["build", "test", "lint", "format", "timeout", "custom"]
        );
        assert_eq!(ALL_SECTIONS.last(), Some(&"prices"));
        let def = key_def("agent", "max_turns").expect("declared");
        assert!(matches!(def.kind, Kind::Count { min: 1 }));
        assert_eq!(def.example, Some("40"));
        assert_eq!(
            def.comment(),
            "Claude Code's --max-turns (default: Claude Code's own limit)."
        );
        // A doc comment of several lines is one comment line in the file.
        assert_eq!(
            key_def("agent", "permission_mode")
                .expect("declared")
                .comment(),
            "Claude Code's --permission-mode (the worktree is disposable and every change is gated)."
        );
        assert!(key_def("validate", "custom").is_none(), "not a plain key");
        let mut names: Vec<String> = all_keys()
            .map(|d| format!("{}.{}", d.section, d.key))
            .collect();
        let count = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), count, "a key is declared twice");
        assert_eq!(PRICE_KEYS.len(), 5);
        assert_eq!(CHECKPOINT_KEYS[0].key, "after");
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

    #[test]
    fn a_bounded_count_refuses_what_is_out_of_range() {
        let kind = Kind::Bounded {
            min: 1,
            max: 10_000,
        };
        assert!(check(kind, &toml::Value::Integer(10_000)).is_ok());
        assert_eq!(
            check(kind, &toml::Value::Integer(i64::MAX)),
            Err(format!(
                "expected an integer from 1 to 10000, found {}",
                i64::MAX
            ))
        );
        assert!(check(kind, &toml::Value::Integer(0)).is_err());
    }

    #[test]
    fn a_relative_path_stays_inside_the_repository() {
        let ok = |s: &str| check(Kind::RelPath, &toml::Value::String(s.into())).is_ok();
        assert!(ok("specs"));
        assert!(ok("docs/specs"));
        assert!(!ok("/etc"));
        assert!(!ok("../elsewhere"));
        assert!(!ok("specs/../../x"));
        assert!(!ok("~/specs"));
        assert!(!ok(" "));
    }
}
