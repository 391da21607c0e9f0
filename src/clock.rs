//! Time and identifiers, behind traits so that tests can pin them.
//!
//! Everything in the library that needs "now" or a fresh unique id takes a [`Clock`] or an
//! [`IdGen`]; the CLI passes the system ones, tests pass fixed ones.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of the current time.
pub trait Clock: Send + Sync {
    /// The current wall-clock time.
    fn now(&self) -> SystemTime;
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that starts at a fixed instant and advances by a fixed step on every reading, so
/// that output is deterministic and timestamps still increase.
#[derive(Debug)]
pub struct FixedClock {
    next: Mutex<SystemTime>,
    step: Duration,
}

impl FixedClock {
    /// A clock whose first reading is `unix_secs` seconds after the epoch and which advances by
    /// `step` on every reading.
    pub fn new(unix_secs: u64, step: Duration) -> Self {
        FixedClock {
            next: Mutex::new(UNIX_EPOCH + Duration::from_secs(unix_secs)),
            step,
        }
    }
}

impl Clock for FixedClock {
    fn now(&self) -> SystemTime {
        let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
        let now = *next;
        *next = now + self.step;
        now
    }
}

/// A source of unique, sortable identifiers (ULIDs in production).
pub trait IdGen: Send + Sync {
    /// A new identifier, unique within this repository's history.
    fn next_id(&self) -> String;
}

/// ULIDs from the system clock and a random source.
#[derive(Debug, Default, Clone, Copy)]
pub struct UlidGen;

impl IdGen for UlidGen {
    fn next_id(&self) -> String {
        ulid::Ulid::generate().to_string()
    }
}

/// Deterministic identifiers for tests: a prefix and a counter, formatted so that they sort in
/// creation order.
#[derive(Debug)]
pub struct SeqIdGen {
    prefix: String,
    counter: AtomicU64,
}

impl SeqIdGen {
    /// Identifiers `<prefix>000001`, `<prefix>000002`, …
    pub fn new(prefix: impl Into<String>) -> Self {
        SeqIdGen {
            prefix: prefix.into(),
            counter: AtomicU64::new(0),
        }
    }
}

impl IdGen for SeqIdGen {
    fn next_id(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::SeqCst) + 1;
        format!("{}{n:06}", self.prefix)
    }
}

/// A random fraction in `[0, 1)` that spreads retries apart: the one source of jitter for every
/// backoff (the API client's retries, the store's lock retries).
pub fn jitter() -> f64 {
    rand::random::<f64>()
}

/// Formats a time as RFC 3339 UTC with second precision (`2026-11-24T07:18:51Z`).
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_clock_advances() {
        let c = FixedClock::new(1_700_000_000, Duration::from_secs(1));
        assert_eq!(rfc3339(c.now()), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(c.now()), "2023-11-14T22:13:21Z");
    }

    #[test]
    fn seq_ids_sort() {
        let g = SeqIdGen::new("r");
        assert_eq!(g.next_id(), "r000001");
        assert_eq!(g.next_id(), "r000002");
    }
}
