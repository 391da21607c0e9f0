//! End-to-end tests of the loop through the real `git-mmm run` binary, against a tiny project
//! with shell gates and the fake Messages API (or the scripted agent). Every test reads back
//! what the loop recorded with plain git.

mod more;
mod order;
mod resume;
mod retries;
mod secrets;
mod specs;
mod strategies;
mod termination;
mod whole;
