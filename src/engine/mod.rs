//! The engine: the only place that knows the order of the loop's stages. One iteration is
//! build context → check the budget → invoke the agent → parse → apply → validate → decide →
//! record, in a temporary worktree, until a stop condition.
//!
//! Owns: the order of the stages, stop conditions, strategies, budgets, redaction, and the
//! scheduling of several specs at once (`schedule`). Must not print or read the environment:
//! progress goes out as [`Event`]s.

pub mod budget;
mod checkpoint;
pub mod decide;
pub mod metrics;
pub mod plan;
pub mod redact;
pub mod review;
pub mod run;
pub mod schedule;
pub mod watch;
pub mod worktree;

pub use budget::{DailyLedger, Limits, Spent};
pub use metrics::{IterationMetrics, spend_of};
pub use redact::Redactor;
pub use run::{EngineError, Event, Job, Outcome, Services, Settings, Stage, StopReason, run_spec};
