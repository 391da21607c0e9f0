//! mmm turns markdown specs into working code through bounded, automated LLM development
//! loops, and keeps all of its state in git.
//!
//! The modules follow the loop in the order data flows through it:
//!
//! * [`spec`]: discovers and parses `specs/**/*.md`, and orders them by dependency;
//! * [`config`]: the layered configuration (flags > env > repo > user > defaults);
//! * [`context`]: builds the prompt for one iteration within a token budget;
//! * [`agent`]: the model behind a trait (`api`, `scripted`, later `claude-code`, `command`);
//! * [`response`]: parses the model's answer into edits, commands and directives;
//! * [`apply`]: applies edits inside the iteration's worktree, refusing escapes;
//! * [`validate`]: runs the quality gates and the spec's `verify` commands;
//! * [`review`]: the pull request's text, its status comment, and reviewers' feedback;
//! * [`store`]: the git-native state: iteration commits, notes, archive, wip refs;
//! * [`engine`]: the only place that knows the order of the stages;
//! * [`github`]: the review host (pull requests, reviews) behind the `ReviewHost` trait.
//!
//! The library does no terminal output and reads no process environment: the CLI (the
//! `git-mmm` binary) reads flags, environment and files and passes them in.
#![deny(missing_docs)]

pub mod agent;
pub mod apply;
pub mod clock;
pub mod config;
pub mod context;
pub mod engine;
pub mod github;
pub mod process;
pub mod response;
pub mod review;
pub mod spec;
pub mod store;
pub mod text;
pub mod trigger;
pub mod validate;
