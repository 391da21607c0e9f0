//! Review in the loop: reviewers' feedback gathered at the start of a run (the job's items and
//! the review source's new ones, each fed once), and a required checkpoint after completion
//! that waits for the writers' verdict.

use std::collections::BTreeSet;
use std::time::Instant;

use git2::Oid;

use crate::review::{FedId, FeedItem, Ignored, Verdict};

use super::super::review::{FeedbackRecord, fed_ids};
use super::{EngineError, Loop, StopReason};

impl Loop<'_, '_, '_> {
    /// Gathers the feedback of this run: the job's items and, with a review source, its new
    /// items on the branch tip `head`, leaving out every id the spec's notes record as fed.
    /// Returns the writers' verdict on `head` (`None` without a source, a head, or an answer).
    pub(super) fn gather_feedback(
        &mut self,
        head: Option<Oid>,
    ) -> Result<Option<Verdict>, EngineError> {
        if self.job.feedback.is_empty() && self.s.review.is_none() {
            return Ok(None);
        }
        let mut fed = fed_ids(self.s.store, &self.spec)?;
        let mut items: Vec<FeedItem> = Vec::new();
        for item in &self.job.feedback {
            if fed.insert(item.fed_id()) {
                items.push(item.clone());
            }
        }
        let mut ignored = Ignored::default();
        let mut verdict = None;
        if let (Some(source), Some(head)) = (self.s.review, head) {
            match source.poll(&self.spec, head, &fed) {
                Ok(poll) => {
                    items.extend(new_items(poll.selection.items, &mut fed));
                    ignored = poll.selection.ignored;
                    verdict = Some(poll.verdict);
                }
                Err(e) => {
                    tracing::warn!(spec = %self.spec, error = %e, "reading the review failed")
                }
            }
        }
        self.add_feedback(items, ignored, verdict);
        Ok(verdict)
    }

    /// Keeps `items` for every later prompt of this run, and for the transcript of the next
    /// recorded iteration.
    fn add_feedback(&mut self, items: Vec<FeedItem>, ignored: Ignored, verdict: Option<Verdict>) {
        if items.is_empty() && verdict.is_none() {
            return;
        }
        let rec = self
            .memory
            .feedback_record
            .get_or_insert_with(FeedbackRecord::default);
        rec.fed.extend(items.iter().map(FeedItem::fed_id));
        rec.ignored = ignored;
        rec.verdict = verdict;
        self.memory.feedback.extend(items);
    }

    /// A required checkpoint after completion, with a review source: asks it for the
    /// writers' verdict on `head` until there is one or the checkpoint's timeout passes.
    /// `None`: changes were requested, and the loop goes on with the feedback; otherwise the
    /// stop (complete once approved, `checkpoint-timeout`, or stopped by a human).
    pub(super) fn await_review(
        &mut self,
        head: Oid,
    ) -> Result<Option<(StopReason, String)>, EngineError> {
        let Some(source) = self.s.review else {
            return Ok(Some((
                StopReason::Checkpoint,
                "complete; a required checkpoint waits for a human".into(),
            )));
        };
        let timeout = self.job.settings.checkpoint_timeout;
        let deadline = Instant::now() + timeout;
        loop {
            if self.s.cancel.is_cancelled() {
                return Ok(Some((
                    StopReason::Stopped,
                    "stopped while the checkpoint waited for a review".into(),
                )));
            }
            let mut fed = fed_ids(self.s.store, &self.spec)?;
            fed.extend(self.memory.feedback.iter().map(FeedItem::fed_id));
            match source.poll(&self.spec, head, &fed) {
                Ok(poll) => match poll.verdict {
                    Verdict::Approved => {
                        return Ok(Some((
                            StopReason::Complete,
                            "complete, and approved at the required checkpoint".into(),
                        )));
                    }
                    Verdict::ChangesRequested => {
                        let items = new_items(poll.selection.items, &mut fed);
                        self.add_feedback(items, poll.selection.ignored, Some(poll.verdict));
                        // The feedback starts a new round of iterations on this revision.
                        self.iterations_this_revision = 0;
                        return Ok(None);
                    }
                    Verdict::None => {}
                },
                Err(e) => {
                    tracing::warn!(spec = %self.spec, error = %e, "reading the review failed")
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(Some((
                    StopReason::CheckpointTimeout,
                    format!(
                        "complete, but no review came within the checkpoint's timeout ({})",
                        humantime::format_duration(timeout)
                    ),
                )));
            }
            std::thread::sleep(self.job.settings.review_poll.min(deadline - now));
        }
    }
}

/// The items whose ids are not in `fed`, each once; their ids join `fed`.
fn new_items(items: Vec<FeedItem>, fed: &mut BTreeSet<FedId>) -> Vec<FeedItem> {
    items
        .into_iter()
        .filter(|i| fed.insert(i.fed_id()))
        .collect()
}
