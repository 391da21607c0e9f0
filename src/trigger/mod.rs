//! Triggers: what starts runs without a person typing `git mmm run`.
//!
//! Owns: the git hooks mmm installs (`install`: where they go, chaining a hook that was there,
//! hook managers), reading what a push updates (`push`: the spec files a pushed range adds,
//! changes or deletes), the events a CI system hands over (`event`) and the queue of `git mmm
//! watch` (`watch`). Must not start runs or
//! print: the CLI does, with what these functions return.

pub mod event;
pub mod install;
pub mod push;
pub mod watch;
