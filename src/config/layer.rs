//! The layers: defaults, then the user file, the repository file, `MMM_*` variables and flags,
//! each checked key by key against the schema and merged over the ones below it, each value
//! remembering where it came from.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use toml::de::{DeTable, DeValue};

use super::error::{ConfigError, Location};
use super::schema::{
    self, CHECKPOINT_KEYS, Kind, PRICE_KEYS, all_keys, key_def, section_keys, suggest,
};
use super::{Checkpoint, Config};

/// A configuration file's path and content, read by the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// Where the file is (used in messages and origins).
    pub path: PathBuf,
    /// Its content.
    pub text: String,
}

/// A setting given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagValue {
    /// The dotted key it sets, e.g. `loop.max_iterations`.
    pub key: String,
    /// The value as typed; parsed like an `MMM_*` variable (lists comma-separated).
    pub value: String,
    /// The flag as typed, e.g. `--max-iterations` (used in messages and origins).
    pub flag: String,
}

/// Everything the configuration is made from, lowest precedence first. The library reads no
/// file and no environment itself: the caller fills this in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sources {
    /// The user file (`~/.config/mmm/config.toml`), if it exists.
    pub user: Option<SourceFile>,
    /// The repository file (`.mmm/config.toml`), if it exists.
    pub repo: Option<SourceFile>,
    /// The process environment; only `MMM_<SECTION>_<KEY>` variables of known sections are
    /// read, other variables are ignored.
    pub env: BTreeMap<String, String>,
    /// Command-line settings, applied in order (a later one wins).
    pub flags: Vec<FlagValue>,
}

/// Where an effective value comes from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Origin {
    /// The built-in default.
    Default,
    /// The user file.
    User {
        /// The file.
        path: PathBuf,
        /// The line of the key, 1-based.
        line: usize,
    },
    /// The repository file.
    Repo {
        /// The file.
        path: PathBuf,
        /// The line of the key, 1-based.
        line: usize,
    },
    /// An environment variable.
    Env {
        /// Its name.
        var: String,
    },
    /// A command-line flag.
    Flag {
        /// The flag as typed.
        flag: String,
    },
}

impl fmt::Display for Origin {
    /// Like `git config --show-origin`: `file:<path>:<line>`, `env:<VAR>`, `flag:<--flag>`,
    /// `default`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("default"),
            Origin::User { path, line } | Origin::Repo { path, line } => {
                write!(f, "file:{}:{line}", path.display())
            }
            Origin::Env { var } => write!(f, "env:{var}"),
            Origin::Flag { flag } => write!(f, "flag:{flag}"),
        }
    }
}

/// One effective key.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The dotted key, e.g. `loop.max_iterations` or `prices."claude-3.5".input`.
    pub key: String,
    /// The value, TOML-formatted (`3`, `"2h"`, `["mmm"]`).
    pub value: String,
    /// The value itself.
    pub toml: toml::Value,
    /// Where it comes from.
    pub origin: Origin,
}

/// The effective configuration and the origin of every value.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    /// The configuration.
    pub config: Config,
    /// The origin of every effective key (dotted, as in [`Entry::key`]).
    pub origins: BTreeMap<String, Origin>,
    effective: toml::Table,
}

impl Loaded {
    /// Every effective key with its value and origin, sorted by key. Keys without a value
    /// (optional keys that are not set) are left out.
    pub fn entries(&self) -> Vec<Entry> {
        let mut leaves = Vec::new();
        flatten(&self.effective, &mut Vec::new(), &mut leaves);
        let mut entries: Vec<Entry> = leaves
            .into_iter()
            .map(|(path, value)| {
                let key = dotted(&path);
                let origin = self.origins.get(&key).cloned().unwrap_or(Origin::Default);
                Entry {
                    value: value.to_string(),
                    toml: value.clone(),
                    key,
                    origin,
                }
            })
            .collect();
        entries.sort_by(|a, b| a.key.cmp(&b.key));
        entries
    }

    /// One key: `Ok(None)` if the key exists but has no value, an error if there is no such
    /// key.
    pub fn get(&self, key: &str) -> Result<Option<Entry>, ConfigError> {
        if let Some(entry) = self.entries().into_iter().find(|e| e.key == key) {
            return Ok(Some(entry));
        }
        if is_known_key(key) {
            return Ok(None);
        }
        let all: Vec<String> = all_keys()
            .map(|d| format!("{}.{}", d.section, d.key))
            .chain(std::iter::once("checkpoints".to_owned()))
            .collect();
        Err(ConfigError::UnknownQuery {
            key: key.to_owned(),
            suggestion: suggest(key, all.iter().map(String::as_str)),
        })
    }
}

fn is_known_key(key: &str) -> bool {
    if key == "checkpoints" {
        return true;
    }
    if let Some(name) = key.strip_prefix("validate.custom.") {
        return !name.is_empty();
    }
    if let Some(rest) = key.strip_prefix("prices.") {
        return PRICE_KEYS.iter().any(|f| {
            rest.strip_suffix(f.key)
                .is_some_and(|m| m.len() > 1 && m.ends_with('.'))
        });
    }
    key.split_once('.')
        .is_some_and(|(s, k)| key_def(s, k).is_some())
}

/// The user file: `$XDG_CONFIG_HOME/mmm/config.toml` if `XDG_CONFIG_HOME` is set (and
/// absolute), else `~/.config/mmm/config.toml`; `None` without a home directory.
pub fn user_config_path(home: Option<&Path>, xdg_config_home: Option<&Path>) -> Option<PathBuf> {
    match xdg_config_home {
        Some(xdg) if xdg.is_absolute() => Some(xdg.join("mmm").join("config.toml")),
        _ => home.map(|h| h.join(".config").join("mmm").join("config.toml")),
    }
}

/// The repository file: `<root>/.mmm/config.toml`.
pub fn repo_config_path(root: &Path) -> PathBuf {
    root.join(".mmm").join("config.toml")
}

/// Merges the sources over the defaults (flag > env > repo > user > default) and checks every
/// value. The first bad setting is returned as an error naming its file and line, variable or
/// flag, and its key.
pub fn load(sources: &Sources) -> Result<Loaded, ConfigError> {
    let mut merger = Merger {
        table: toml::Table::try_from(Config::default())
            .expect("the default configuration serializes to a TOML table"),
        origins: BTreeMap::new(),
    };
    if let Some(file) = &sources.user {
        merger.file(file, FileLayer::User)?;
    }
    if let Some(file) = &sources.repo {
        merger.file(file, FileLayer::Repo)?;
    }
    merger.env(&sources.env)?;
    for flag in &sources.flags {
        merger.flag(flag)?;
    }
    let config: Config = toml::Value::Table(merger.table.clone())
        .try_into()
        .map_err(|e: toml::de::Error| ConfigError::Inconsistent {
            message: e.message().to_owned(),
        })?;
    Ok(Loaded {
        config,
        origins: merger.origins_with_defaults(),
        effective: merger.table,
    })
}

#[derive(Debug, Clone, Copy)]
enum FileLayer {
    User,
    Repo,
}

/// A file being merged: turns byte offsets into lines, locations and origins.
struct FileCtx<'a> {
    path: &'a Path,
    text: &'a str,
    layer: FileLayer,
}

impl FileCtx<'_> {
    fn line(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1
    }

    fn at(&self, offset: usize) -> Location {
        Location::File {
            path: self.path.to_path_buf(),
            line: self.line(offset),
        }
    }

    fn origin(&self, offset: usize) -> Origin {
        let path = self.path.to_path_buf();
        let line = self.line(offset);
        match self.layer {
            FileLayer::User => Origin::User { path, line },
            FileLayer::Repo => Origin::Repo { path, line },
        }
    }

    fn bad(&self, offset: usize, path: &[&str], message: String) -> ConfigError {
        ConfigError::BadValue {
            at: self.at(offset),
            key: dotted(path),
            message,
        }
    }
}

/// The spanned twin of a key of a parsed table: the key's byte offset and its value.
fn spanned<'a, 'i>(de: Option<&'a DeTable<'i>>, key: &str) -> (usize, Option<&'a DeValue<'i>>) {
    match de.and_then(|t| t.get_key_value(key)) {
        Some((k, v)) => (k.span().start, Some(v.get_ref())),
        None => (0, None),
    }
}

/// The entries of a table in the order they appear in the file, so that the first error
/// reported is the first one in the file.
fn file_order<'a>(
    table: &'a toml::Table,
    de: Option<&DeTable<'_>>,
) -> Vec<(&'a String, &'a toml::Value)> {
    let mut entries: Vec<_> = table.iter().collect();
    entries.sort_by_key(|(key, _)| spanned(de, key).0);
    entries
}

struct Merger {
    table: toml::Table,
    origins: BTreeMap<String, Origin>,
}

impl Merger {
    fn set(&mut self, path: &[&str], value: toml::Value, origin: Origin) {
        let Some((last, parents)) = path.split_last() else {
            return;
        };
        let mut table = &mut self.table;
        for p in parents {
            let slot = table
                .entry((*p).to_owned())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if !slot.is_table() {
                *slot = toml::Value::Table(toml::Table::new());
            }
            table = slot
                .as_table_mut()
                .expect("the slot was made a table just above");
        }
        table.insert((*last).to_owned(), value);
        self.origins.insert(dotted(path), origin);
    }

    fn origins_with_defaults(&self) -> BTreeMap<String, Origin> {
        let mut leaves = Vec::new();
        flatten(&self.table, &mut Vec::new(), &mut leaves);
        leaves
            .into_iter()
            .map(|(path, _)| {
                let key = dotted(&path);
                let origin = self.origins.get(&key).cloned().unwrap_or(Origin::Default);
                (key, origin)
            })
            .collect()
    }

    fn file(&mut self, file: &SourceFile, layer: FileLayer) -> Result<(), ConfigError> {
        let cx = FileCtx {
            path: &file.path,
            text: &file.text,
            layer,
        };
        let syntax = |e: toml::de::Error| ConfigError::Syntax {
            path: file.path.clone(),
            line: cx.line(e.span().map_or(0, |s| s.start)),
            message: e.message().trim().to_owned(),
        };
        let de = DeTable::parse(&file.text).map_err(syntax)?;
        let table: toml::Table = file.text.parse().map_err(syntax)?;
        let de = Some(de.get_ref());
        for (name, value) in file_order(&table, de) {
            let (offset, dv) = spanned(de, name);
            let sub_de = dv.and_then(DeValue::as_table);
            match name.as_str() {
                "checkpoints" => self.checkpoints(&cx, offset, value, dv)?,
                "prices" => self.prices(&cx, offset, value, sub_de)?,
                section if schema::section(section).is_some() => {
                    let toml::Value::Table(t) = value else {
                        return Err(cx.bad(
                            offset,
                            &[section],
                            format!(
                                "expected a table ([{section}]), found {}",
                                schema::type_name(value)
                            ),
                        ));
                    };
                    self.section(&cx, section, t, sub_de)?;
                }
                other => {
                    let candidates = schema::ALL_SECTIONS.iter().copied();
                    return Err(if value.is_table() {
                        ConfigError::UnknownSection {
                            at: cx.at(offset),
                            section: other.to_owned(),
                            suggestion: suggest(other, candidates),
                        }
                    } else {
                        ConfigError::UnknownKey {
                            at: cx.at(offset),
                            key: dotted(&[other]),
                            suggestion: suggest(other, candidates),
                        }
                    });
                }
            }
        }
        Ok(())
    }

    fn section(
        &mut self,
        cx: &FileCtx<'_>,
        section: &str,
        table: &toml::Table,
        de: Option<&DeTable<'_>>,
    ) -> Result<(), ConfigError> {
        for (key, value) in file_order(table, de) {
            let (offset, dv) = spanned(de, key);
            if section == "validate" && key == "custom" {
                self.custom(cx, offset, value, dv.and_then(DeValue::as_table))?;
                continue;
            }
            let Some(def) = key_def(section, key) else {
                return Err(ConfigError::UnknownKey {
                    at: cx.at(offset),
                    key: dotted(&[section, key]),
                    suggestion: suggest(key, section_keys(section)),
                });
            };
            let checked =
                schema::check(def.kind, value).map_err(|m| cx.bad(offset, &[section, key], m))?;
            self.set(&[section, key], checked, cx.origin(offset));
        }
        Ok(())
    }

    fn custom(
        &mut self,
        cx: &FileCtx<'_>,
        offset: usize,
        value: &toml::Value,
        de: Option<&DeTable<'_>>,
    ) -> Result<(), ConfigError> {
        let toml::Value::Table(table) = value else {
            return Err(cx.bad(
                offset,
                &["validate", "custom"],
                format!(
                    "expected a table of name = \"command\", found {}",
                    schema::type_name(value)
                ),
            ));
        };
        for (name, command) in file_order(table, de) {
            let (offset, _) = spanned(de, name);
            let path = ["validate", "custom", name.as_str()];
            let checked =
                schema::check(Kind::Str, command).map_err(|m| cx.bad(offset, &path, m))?;
            self.set(&path, checked, cx.origin(offset));
        }
        Ok(())
    }

    fn checkpoints(
        &mut self,
        cx: &FileCtx<'_>,
        offset: usize,
        value: &toml::Value,
        de: Option<&DeValue<'_>>,
    ) -> Result<(), ConfigError> {
        let toml::Value::Array(items) = value else {
            return Err(cx.bad(
                offset,
                &["checkpoints"],
                format!(
                    "expected an array of tables ([[checkpoints]]), found {}",
                    schema::type_name(value)
                ),
            ));
        };
        let de_items = de.and_then(DeValue::as_array);
        let mut normalized = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let de_item = de_items.and_then(|a| a.get(i));
            let item_offset = de_item.map_or(offset, |s| s.span().start);
            let index = format!("checkpoints[{i}]");
            let toml::Value::Table(t) = item else {
                return Err(ConfigError::BadValue {
                    at: cx.at(item_offset),
                    key: index,
                    message: format!("expected a table, found {}", schema::type_name(item)),
                });
            };
            let de_t = de_item.and_then(|s| s.get_ref().as_table());
            let mut out = toml::Table::try_from(Checkpoint::default())
                .expect("the default checkpoint serializes to a TOML table");
            for (key, v) in file_order(t, de_t) {
                let (key_offset, _) = spanned(de_t, key);
                let full = format!("{index}.{key}");
                let Some(def) = CHECKPOINT_KEYS.iter().find(|d| d.key == key) else {
                    return Err(ConfigError::UnknownKey {
                        at: cx.at(key_offset),
                        key: full,
                        suggestion: suggest(key, CHECKPOINT_KEYS.iter().map(|d| d.key)),
                    });
                };
                let checked =
                    schema::check(def.kind, v).map_err(|message| ConfigError::BadValue {
                        at: cx.at(key_offset),
                        key: full,
                        message,
                    })?;
                out.insert(key.clone(), checked);
            }
            normalized.push(toml::Value::Table(out));
        }
        self.set(
            &["checkpoints"],
            toml::Value::Array(normalized),
            cx.origin(offset),
        );
        Ok(())
    }

    fn prices(
        &mut self,
        cx: &FileCtx<'_>,
        offset: usize,
        value: &toml::Value,
        de: Option<&DeTable<'_>>,
    ) -> Result<(), ConfigError> {
        let toml::Value::Table(models) = value else {
            return Err(cx.bad(
                offset,
                &["prices"],
                format!(
                    "expected a table of [prices.\"<model-id>\"] tables, found {}",
                    schema::type_name(value)
                ),
            ));
        };
        for (model, fields) in file_order(models, de) {
            let (model_offset, de_model) = spanned(de, model);
            let toml::Value::Table(fields) = fields else {
                return Err(cx.bad(
                    model_offset,
                    &["prices", model],
                    format!(
                        "expected a table of prices (input = 3.0, …), found {}",
                        schema::type_name(fields)
                    ),
                ));
            };
            let de_fields = de_model.and_then(DeValue::as_table);
            for (field, v) in file_order(fields, de_fields) {
                let (field_offset, _) = spanned(de_fields, field);
                let path = ["prices", model.as_str(), field.as_str()];
                if !PRICE_KEYS.iter().any(|d| d.key == field) {
                    return Err(ConfigError::UnknownKey {
                        at: cx.at(field_offset),
                        key: dotted(&path),
                        suggestion: suggest(field, PRICE_KEYS.iter().map(|d| d.key)),
                    });
                }
                let checked =
                    schema::check(Kind::Price, v).map_err(|m| cx.bad(field_offset, &path, m))?;
                self.set(&path, checked, cx.origin(field_offset));
            }
        }
        Ok(())
    }

    fn env(&mut self, env: &BTreeMap<String, String>) -> Result<(), ConfigError> {
        for (var, text) in env {
            let Some(rest) = var.strip_prefix("MMM_") else {
                continue;
            };
            let (section, key) = match rest.split_once('_') {
                Some((s, k)) => (s.to_ascii_lowercase(), k.to_ascii_lowercase()),
                None => (rest.to_ascii_lowercase(), String::new()),
            };
            if !schema::ALL_SECTIONS.contains(&section.as_str()) {
                continue;
            }
            let at = Location::Env { var: var.clone() };
            let Some(def) = key_def(&section, &key) else {
                return Err(ConfigError::UnknownKey {
                    at,
                    key: format!("{section}.{key}"),
                    suggestion: suggest(&key, section_keys(&section)),
                });
            };
            let value =
                schema::parse_text(def.kind, text).map_err(|message| ConfigError::BadValue {
                    at,
                    key: format!("{section}.{key}"),
                    message,
                })?;
            self.set(
                &[def.section, def.key],
                value,
                Origin::Env { var: var.clone() },
            );
        }
        Ok(())
    }

    fn flag(&mut self, flag: &FlagValue) -> Result<(), ConfigError> {
        let at = Location::Flag {
            flag: flag.flag.clone(),
        };
        let def = flag
            .key
            .split_once('.')
            .and_then(|(s, k)| key_def(s, k))
            .ok_or_else(|| {
                let all: Vec<String> = all_keys()
                    .map(|d| format!("{}.{}", d.section, d.key))
                    .collect();
                ConfigError::UnknownKey {
                    at: at.clone(),
                    key: flag.key.clone(),
                    suggestion: suggest(&flag.key, all.iter().map(String::as_str)),
                }
            })?;
        let value =
            schema::parse_text(def.kind, &flag.value).map_err(|message| ConfigError::BadValue {
                at,
                key: flag.key.clone(),
                message,
            })?;
        self.set(
            &[def.section, def.key],
            value,
            Origin::Flag {
                flag: flag.flag.clone(),
            },
        );
        Ok(())
    }
}

/// The leaves of a table (arrays count as leaves), with their paths.
fn flatten<'a>(
    table: &'a toml::Table,
    prefix: &mut Vec<String>,
    out: &mut Vec<(Vec<String>, &'a toml::Value)>,
) {
    for (key, value) in table {
        prefix.push(key.clone());
        match value {
            toml::Value::Table(t) => flatten(t, prefix, out),
            _ => out.push((prefix.clone(), value)),
        }
        prefix.pop();
    }
}

/// A dotted key, with segments quoted where TOML needs it: `prices."claude-3.5".input`.
fn dotted<S: AsRef<str>>(path: &[S]) -> String {
    path.iter()
        .map(|s| {
            let s = s.as_ref();
            let bare = !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if bare {
                s.to_owned()
            } else {
                toml::Value::String(s.to_owned()).to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(".")
}
