//! The integration tests: one binary, one module per area, shared `support`.

mod support;

mod agents;
mod api;
mod apply;
mod cli;
mod config;
mod context;
mod github;
mod install;
mod pr;
mod ranking;
mod reliable;
mod run;
mod spec;
mod store;
mod sync;
mod torture;
