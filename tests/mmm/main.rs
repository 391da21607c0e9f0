//! The integration tests: one binary, one module per area, shared `support`.

mod api;
mod apply;
mod config;
mod spec;
mod store;
mod support;
