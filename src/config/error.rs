//! The configuration errors: each names where the bad setting came from (file and line, the
//! variable or the flag) and the dotted key, and has a hint.

use std::fmt;
use std::path::PathBuf;

/// Where a setting was written: a line of a file, an `MMM_*` variable or a flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A line (1-based) of a configuration file.
    File {
        /// The file.
        path: PathBuf,
        /// The line, 1-based.
        line: usize,
    },
    /// An environment variable.
    Env {
        /// Its name, e.g. `MMM_LOOP_MAX_ITERATIONS`.
        var: String,
    },
    /// A command-line flag.
    Flag {
        /// The flag as typed, e.g. `--max-iterations`.
        flag: String,
    },
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::File { path, line } => write!(f, "{}:{line}", path.display()),
            Location::Env { var } => f.write_str(var),
            Location::Flag { flag } => f.write_str(flag),
        }
    }
}

/// A configuration that cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// The file is not valid TOML.
    #[error("{}:{line}: invalid TOML: {message}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The line, 1-based.
        line: usize,
        /// What the TOML parser said.
        message: String,
    },
    /// A table that is not one of the sections.
    #[error("{at}: unknown section `[{section}]`{}", did_you_mean(suggestion))]
    UnknownSection {
        /// Where it was written.
        at: Location,
        /// The section's name.
        section: String,
        /// The closest section name, if any is close.
        suggestion: Option<String>,
    },
    /// A key that its section does not have.
    #[error("{at}: unknown key `{key}`{}", did_you_mean(suggestion))]
    UnknownKey {
        /// Where it was written.
        at: Location,
        /// The dotted key.
        key: String,
        /// The closest key of the same section, if any is close.
        suggestion: Option<String>,
    },
    /// A value of the wrong type or out of range.
    #[error("{at}: `{key}`: {message}")]
    BadValue {
        /// Where it was written.
        at: Location,
        /// The dotted key.
        key: String,
        /// What is expected and what was found.
        message: String,
    },
    /// A key asked for (e.g. `git mmm config KEY`) that does not exist.
    #[error("unknown key `{key}`{}", did_you_mean(suggestion))]
    UnknownQuery {
        /// The key asked for.
        key: String,
        /// The closest existing key, if any is close.
        suggestion: Option<String>,
    },
    /// The merged values do not make a configuration. A bug in mmm: every value is checked
    /// before it is merged.
    #[error("the merged configuration is inconsistent: {message}")]
    Inconsistent {
        /// What the deserializer said.
        message: String,
    },
}

fn did_you_mean(suggestion: &Option<String>) -> String {
    match suggestion {
        Some(s) => format!(" (did you mean `{s}`?)"),
        None => String::new(),
    }
}

impl ConfigError {
    /// What the user can do about it.
    pub fn hint(&self) -> String {
        match self {
            ConfigError::Syntax { .. } => {
                "fix the TOML syntax on that line (the format is described at https://toml.io)"
                    .to_owned()
            }
            ConfigError::UnknownSection { .. } => format!(
                "the sections are {}; `git mmm init` writes a file with every key documented",
                super::schema::ALL_SECTIONS.join(", ")
            ),
            ConfigError::UnknownKey {
                at: Location::Env { .. },
                ..
            } => "unset the variable or correct its name: MMM_<SECTION>_<KEY> must name a known \
                  key; `git mmm config` lists every key"
                .to_owned(),
            ConfigError::UnknownKey { .. } => {
                "remove the key or correct its name; `git mmm config` lists every key".to_owned()
            }
            ConfigError::BadValue { .. } => "correct the value; the file that `git mmm init` \
                                             writes documents every key and its default"
                .to_owned(),
            ConfigError::UnknownQuery { .. } => {
                "`git mmm config` without a key lists every key".to_owned()
            }
            ConfigError::Inconsistent { .. } => "this is a bug in mmm; please report it with \
                                                 the output of `git mmm config`"
                .to_owned(),
        }
    }
}
