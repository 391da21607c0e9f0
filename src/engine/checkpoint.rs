//! Checkpoints of the iteration in flight, written when the iteration runs long.
//!
//! An iteration's transcript reaches the branch's notes when the iteration is recorded. Until
//! then, what it holds (the prompt, the model's answer or the text it has streamed so far, the
//! checks that ran) would be lost with the process. A checkpoint commits it to the run's wip
//! ref (`refs/mmm/<spec>/wip/<run>`), where `git mmm doctor` keeps it.
//!
//! Writing a checkpoint costs a pack, a ref update and two syncs, which a fast iteration (an
//! instant model, quick gates) would pay twice for nothing: it is recorded a few milliseconds
//! later. So checkpoints are written from a thread of their own, and only for an iteration
//! that has gone unrecorded for longer than `after` (`[loop] checkpoint_after`, 1 s by
//! default), then again each `after` while something new arrives. A killed process loses at
//! most that much of an iteration: a long model call or slow gates are always checkpointed.
//!
//! The thread has its own [`Store`] (git2 repositories are not shared across threads); the
//! loop hands it the transcript records as they are made, already redacted, and the streamed
//! text, which the thread redacts before it writes it.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::store::{Record, Run, Store, StoreError};

use super::metrics::Interrupted;
use super::redact::Redactor;
use crate::agent::TokenUsage;

/// What the loop shares with the thread.
#[derive(Default)]
struct State {
    /// The iteration in flight (`None` between a record and the next iteration).
    iteration: Option<u32>,
    /// When it began.
    started: Option<Instant>,
    /// Its transcript so far.
    records: Vec<Record>,
    /// The record the streamed text will become, and the text so far.
    streaming: Option<(Record, String)>,
    /// Something arrived since the last checkpoint.
    dirty: bool,
    /// When the last checkpoint of this iteration was written.
    written: Option<Instant>,
    stop: bool,
}

impl State {
    /// When the next checkpoint is due, if one is.
    fn due(&self, after: Duration) -> Option<Instant> {
        if !self.dirty || self.iteration.is_none() {
            return None;
        }
        let since = self.written.or(self.started)?;
        Some(since + after)
    }
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The checkpoint thread of one run.
pub(crate) struct Checkpointer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<Result<u32, StoreError>>>,
}

impl Checkpointer {
    /// Starts the thread for `run`, with a store of its own on the same repository.
    pub(crate) fn start(
        store: &Store,
        run: &Run,
        redactor: Redactor,
        after: Duration,
    ) -> Result<Checkpointer, StoreError> {
        let own = store.reopen()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
        });
        let mut run = run.clone();
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("mmm-checkpoint-{}", run.spec))
            .spawn(move || work(&own, &mut run, &thread_shared, &redactor, after))
            .map_err(|e| StoreError::Thread(e.to_string()))?;
        Ok(Checkpointer {
            shared,
            thread: Some(thread),
        })
    }

    /// Iteration `n` begins now.
    pub(crate) fn begin(&self, n: u32) {
        let mut st = self.shared.lock();
        st.iteration = Some(n);
        st.started = Some(Instant::now());
        st.records.clear();
        st.streaming = None;
        st.dirty = false;
        st.written = None;
    }

    /// The iteration's transcript so far; the records after those already handed over are
    /// copied.
    pub(crate) fn update(&self, records: &[Record]) {
        let mut st = self.shared.lock();
        if st.iteration.is_none() {
            return;
        }
        let have = st.records.len();
        if records.len() > have {
            st.records.extend_from_slice(&records[have..]);
            st.streaming = None;
            st.dirty = true;
            self.shared.wake.notify_one();
        }
    }

    /// The model's answer will stream into `record` (its `text`).
    pub(crate) fn stream_into(&self, record: Record) {
        let mut st = self.shared.lock();
        if st.iteration.is_some() {
            st.streaming = Some((record, String::new()));
        }
    }

    /// More streamed text.
    pub(crate) fn streamed(&self, text: &str) {
        let mut st = self.shared.lock();
        if let Some((_, so_far)) = st.streaming.as_mut() {
            so_far.push_str(text);
            st.dirty = true;
            self.shared.wake.notify_one();
        }
    }

    /// What the call in flight has billed so far: `before`, its attempts already cut short,
    /// and `attempt`, the one answering. Kept as the streamed record's `usage`, so that the
    /// checkpoint of a run killed mid-call says what the call cost.
    pub(crate) fn billed(&self, before: &Interrupted, attempt: &TokenUsage) {
        let mut st = self.shared.lock();
        if let Some((record, _)) = st.streaming.as_mut() {
            let mut usage = before.tokens;
            usage.add(attempt);
            let usage = serde_json::to_value(usage).expect("token counts serialize");
            record.data.insert("usage".into(), usage);
            st.dirty = true;
            self.shared.wake.notify_one();
        }
    }

    /// The iteration was recorded: nothing is pending until the next one begins.
    pub(crate) fn recorded(&self) {
        let mut st = self.shared.lock();
        st.iteration = None;
        st.records.clear();
        st.streaming = None;
        st.dirty = false;
    }

    /// Stops the thread once any checkpoint it is writing is written; returns how many it
    /// wrote, or the first error it met.
    pub(crate) fn stop(mut self) -> Result<u32, StoreError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<u32, StoreError> {
        self.shared.lock().stop = true;
        self.shared.wake.notify_one();
        match self.thread.take() {
            Some(t) => t.join().unwrap_or_else(|_| {
                Err(StoreError::Thread("the checkpoint thread panicked".into()))
            }),
            None => Ok(0),
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// The thread: waits until a checkpoint is due, writes it, until told to stop.
fn work(
    store: &Store,
    run: &mut Run,
    shared: &Shared,
    redactor: &Redactor,
    after: Duration,
) -> Result<u32, StoreError> {
    let mut written = 0;
    let mut first_error = None;
    loop {
        let (n, records) = {
            let mut st = shared.lock();
            loop {
                if st.stop {
                    break;
                }
                match st.due(after) {
                    None => st = shared.wake.wait(st).unwrap_or_else(|e| e.into_inner()),
                    Some(due) => {
                        let now = Instant::now();
                        if now >= due {
                            break;
                        }
                        st = shared
                            .wake
                            .wait_timeout(st, due - now)
                            .map(|(g, _)| g)
                            .unwrap_or_else(|e| e.into_inner().0);
                    }
                }
            }
            if st.stop {
                break;
            }
            let mut records = st.records.clone();
            if let Some((record, text)) = &st.streaming {
                let mut partial = record.clone();
                partial.data.insert("partial".into(), Value::Bool(true));
                partial
                    .data
                    .insert("text".into(), Value::String(text.clone()));
                records.push(partial);
            }
            st.dirty = false;
            st.written = Some(Instant::now());
            (st.iteration.unwrap_or(run.next_iteration), records)
        };
        // The loop's records are redacted already; the streamed text is not.
        let records: Vec<Record> = records
            .into_iter()
            .map(|mut r| {
                if r.data.get("partial") == Some(&Value::Bool(true)) {
                    let mut data = Value::Object(std::mem::take(&mut r.data));
                    redactor.redact_json(&mut data);
                    if let Value::Object(m) = data {
                        r.data = m;
                    }
                }
                r
            })
            .collect();
        run.next_iteration = n;
        match store.checkpoint(run, &records) {
            Ok(_) => written += 1,
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    let merged = store.merge_packs();
    match first_error {
        Some(e) => Err(e),
        None => merged.map(|()| written),
    }
}
