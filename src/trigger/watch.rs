//! The queue of `git mmm watch`: which spec runs next when specs change on disk. One loop per
//! spec at a time, at most `concurrency` at once, in the order the changes came; a spec that
//! changes while its loop runs is queued once for one more run (of whatever revision is on disk
//! when that run starts), however many times it changed meanwhile.

use std::collections::{BTreeSet, VecDeque};

/// The specs waiting and running.
#[derive(Debug, Clone)]
pub struct Queue {
    concurrency: usize,
    running: BTreeSet<String>,
    waiting: VecDeque<String>,
}

impl Queue {
    /// An empty queue running at most `concurrency` (at least 1) specs at once.
    pub fn new(concurrency: usize) -> Queue {
        Queue {
            concurrency: concurrency.max(1),
            running: BTreeSet::new(),
            waiting: VecDeque::new(),
        }
    }

    /// `spec` changed: it waits for a run (once, however often it changes before that run).
    pub fn changed(&mut self, spec: &str) {
        if !self.waiting.iter().any(|s| s == spec) {
            self.waiting.push_back(spec.to_owned());
        }
    }

    /// The next spec to start now, if a slot is free and a waiting spec is not running; it
    /// counts as running until [`Queue::finished`].
    pub fn start_next(&mut self) -> Option<String> {
        if self.running.len() >= self.concurrency {
            return None;
        }
        let i = self
            .waiting
            .iter()
            .position(|s| !self.running.contains(s))?;
        let spec = self.waiting.remove(i)?;
        self.running.insert(spec.clone());
        Some(spec)
    }

    /// `spec`'s run ended.
    pub fn finished(&mut self, spec: &str) {
        self.running.remove(spec);
    }

    /// True when nothing runs.
    pub fn idle(&self) -> bool {
        self.running.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_loop_per_spec_and_one_more_run_for_edits_meanwhile() {
        let mut q = Queue::new(2);
        q.changed("a");
        q.changed("b");
        q.changed("c");
        assert_eq!(q.start_next().as_deref(), Some("a"));
        assert_eq!(q.start_next().as_deref(), Some("b"));
        assert_eq!(q.start_next(), None, "two at once");
        // a is edited twice while it runs: one more run, after this one.
        q.changed("a");
        q.changed("a");
        q.finished("b");
        assert_eq!(q.start_next().as_deref(), Some("c"));
        assert_eq!(q.start_next(), None);
        q.finished("a");
        assert_eq!(q.start_next().as_deref(), Some("a"));
        q.finished("a");
        q.finished("c");
        assert_eq!(q.start_next(), None);
        assert!(q.idle());
    }
}
