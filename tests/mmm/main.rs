//! The integration tests: one binary, one module per area, shared `support`.

mod support;

mod agents;
mod api;
mod apply;
mod cli;
mod config;
mod context;
mod event;
mod faults;
mod github;
mod hooks;
mod hostile;
mod install;
mod pr;
mod pr_loop;
mod ranking;
mod reliable;
mod rewritten;
mod run;
mod spec;
mod store;
mod sync;
mod torture;
mod watch;
mod worktrees;
