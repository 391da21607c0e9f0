//! Tests of the apply area.
