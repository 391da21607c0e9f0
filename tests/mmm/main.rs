//! The integration tests: one binary, one module per area, shared `support`.

mod support;
mod spec;
mod config;
mod store;
mod api;
mod apply;
mod context;
