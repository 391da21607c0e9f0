//! The engine: the only place that knows the order of the loop's stages. One iteration is
//! build context → invoke the agent → parse → apply → validate → record → decide.

pub mod budget;
pub mod redact;
pub mod worktree;
