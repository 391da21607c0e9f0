//! The integration tests: one binary, one module per area, shared `support`.

mod support;

mod agents;
mod api;
mod apply;
mod cli;
mod config;
mod context;
mod event;
mod hooks;
mod install;
mod ranking;
mod reliable;
mod run;
mod spec;
mod store;
mod sync;
mod torture;
mod watch;
