//! The integration tests: one binary, one module per area, shared `support`.

mod support;

mod api;
mod apply;
mod config;
mod context;
mod spec;
mod store;
