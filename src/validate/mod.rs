//! Validation: quality gates and the spec's `verify` commands, run in the worktree with timeouts.
