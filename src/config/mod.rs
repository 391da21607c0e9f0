//! Configuration: built-in defaults, the user file, the repository's `.mmm/config.toml`,
//! `MMM_*` variables and flags, merged in that order, each value remembering its origin.
//!
//! Owns: the [`Config`] model and its errors. Must not read the process environment itself:
//! the CLI passes the variables in.
