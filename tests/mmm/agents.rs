//! Tests of the claude-code and command agents.
