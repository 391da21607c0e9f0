//! Review in the loop: what the engine asks of a review host (behind [`ReviewSource`], so the
//! engine runs with a fake in tests and any forge later), and what it records of the feedback it
//! fed.
//!
//! Owns: the trait, the typed `review-feedback` record of the transcript note (the ids fed, what
//! was ignored, the verdict seen), and reading every id fed from a spec's notes, so that an item
//! is fed once on every clone (the notes sync). Must not touch: the network (the source's
//! implementation does), the prompt's text (`review::render_block`).

use std::collections::BTreeSet;

use git2::Oid;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::review::{FedId, FeedItem, Ignored, Selection, Verdict};
use crate::spec::SpecId;
use crate::store::{Record, Store, StoreError, transcripts_ref};

/// The `kind` of the transcript record that lists the review items an iteration was given.
pub const FEEDBACK_KIND: &str = "review-feedback";

/// What a review host says about a spec's pull request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewPoll {
    /// Writers' items not fed yet, and what was left out.
    pub selection: Selection,
    /// The writers' verdict on `head`.
    pub verdict: Verdict,
}

/// A review host, as the engine uses it: GitHub's pull requests, or a fake in tests.
pub trait ReviewSource: Send + Sync {
    /// The writers' items on `spec`'s pull request that are not in `fed`, and the verdict on
    /// the commit `head`. An error (the host unreachable, a permission missing) is a sentence;
    /// the loop goes on without review.
    fn poll(&self, spec: &SpecId, head: Oid, fed: &BTreeSet<FedId>) -> Result<ReviewPoll, String>;
}

/// The `review-feedback` record of an iteration's transcript note.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FeedbackRecord {
    /// The ids of the items the iteration's prompt carried for the first time.
    pub fed: Vec<FedId>,
    /// What the selection left out.
    pub ignored: Ignored,
    /// The verdict seen when the items were read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
}

impl FeedbackRecord {
    /// The record's fields, as the transcript note holds them.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).expect("ids, counts and names serialize")
    }

    /// Reads a `review-feedback` record (`None` for another kind, or one too damaged to read).
    pub fn from_record(r: &Record) -> Option<FeedbackRecord> {
        if r.kind != FEEDBACK_KIND {
            return None;
        }
        serde_json::from_value(Value::Object(r.data.clone())).ok()
    }

    /// What feeding `items` found by `selection` records.
    pub fn of(items: &[FeedItem], ignored: Ignored, verdict: Option<Verdict>) -> FeedbackRecord {
        FeedbackRecord {
            fed: items.iter().map(FeedItem::fed_id).collect(),
            ignored,
            verdict,
        }
    }
}

/// Every id fed to `spec`'s iterations, read from the transcript notes of its branch (none
/// without a branch).
pub fn fed_ids(store: &Store, spec: &SpecId) -> Result<BTreeSet<FedId>, StoreError> {
    let history = match store.history(spec) {
        Ok(h) => h,
        Err(StoreError::NoBranch { .. }) => return Ok(BTreeSet::new()),
        Err(e) => return Err(e),
    };
    let notes = transcripts_ref(spec);
    let mut out = BTreeSet::new();
    for it in &history {
        let records = store.read_note(&notes, it.commit)?.unwrap_or_default();
        for r in records.iter().filter_map(FeedbackRecord::from_record) {
            out.extend(r.fed);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::path::Path;
    use std::process::Command;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::*;
    use crate::agent::scripted::Answer;
    use crate::agent::{Cancel, PriceTable, ScriptedAgent};
    use crate::clock::{FixedClock, SeqIdGen};
    use crate::config::Config;
    use crate::context::Templates;
    use crate::engine::schedule::{Pinned, settings};
    use crate::engine::{DailyLedger, Job, Outcome, Redactor, Services, StopReason, run_spec};
    use crate::review::{Author, Review, ReviewComment, ReviewState};
    use crate::spec::Spec;
    use crate::store::StoreOptions;

    const SPEC: &str = "# Login\n\n## Objective\n\nUsers log in.\n\n\
                        ## Acceptance criteria\n\n- a right password logs in\n";

    /// A review host that answers from a script (the last answer repeats), leaving out what
    /// was fed, as a real one does; it remembers what it was asked.
    struct FakeReview {
        answers: Mutex<VecDeque<(Verdict, Vec<FeedItem>)>>,
        asked: Mutex<Vec<(Oid, BTreeSet<FedId>)>>,
    }

    impl FakeReview {
        fn new(answers: Vec<(Verdict, Vec<FeedItem>)>) -> FakeReview {
            FakeReview {
                answers: Mutex::new(answers.into()),
                asked: Mutex::new(Vec::new()),
            }
        }
    }

    impl ReviewSource for FakeReview {
        fn poll(&self, _: &SpecId, head: Oid, fed: &BTreeSet<FedId>) -> Result<ReviewPoll, String> {
            self.asked.lock().expect("lock").push((head, fed.clone()));
            let mut answers = self.answers.lock().expect("lock");
            let (verdict, items) = if answers.len() > 1 {
                answers.pop_front().expect("an answer")
            } else {
                answers.front().cloned().ok_or("no answer scripted")?
            };
            let items = items
                .into_iter()
                .filter(|i| !fed.contains(&i.fed_id()))
                .collect();
            Ok(ReviewPoll {
                selection: Selection {
                    items,
                    ignored: Ignored {
                        outsiders: 1,
                        ..Ignored::default()
                    },
                },
                verdict,
            })
        }
    }

    fn alice() -> Author {
        Author {
            login: "alice".into(),
            bot: false,
        }
    }

    fn changes() -> Vec<FeedItem> {
        vec![
            FeedItem::Review(Review {
                id: 1,
                author: alice(),
                state: ReviewState::ChangesRequested,
                body: "Not yet.".into(),
                commit_id: "c0ffee".into(),
                submitted_at: Some("2026-01-01T10:00:00Z".into()),
            }),
            FeedItem::ReviewComment(ReviewComment {
                id: 10,
                author: alice(),
                path: "src/login.rs".into(),
                line: Some(42),
                diff_hunk: "@@ -1 +1 @@\n-one\n+two".into(),
                body: "Handle the empty password.".into(),
                in_reply_to: None,
            }),
        ]
    }

    fn answer(text: &str, when: Option<&str>) -> Answer {
        Answer {
            text: text.into(),
            when: when.map(str::to_owned),
            model: None,
            input_tokens: 100,
            output_tokens: 10,
            cache_read_input_tokens: 0,
            cache_creation_input_tokens: 0,
        }
    }

    /// The first answer completes; the second only answers a prompt that carries the review.
    fn agent() -> ScriptedAgent {
        ScriptedAgent::new(vec![
            answer("```text path=a.txt\none\n```\n\n@mmm:complete", None),
            answer(
                "```text path=a.txt\ntwo\n```\n\n@mmm:complete",
                Some("Comment by @alice on `src/login.rs:42`"),
            ),
        ])
    }

    struct Repo {
        dir: tempfile::TempDir,
        store: Store,
        base: Oid,
        spec: Spec,
    }

    fn git(dir: &Path, args: &[&str]) -> String {
        let out = Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("GIT_AUTHOR_DATE", "2026-01-01T00:00:00Z")
            .env("GIT_COMMITTER_DATE", "2026-01-01T00:00:00Z")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", dir)
            .output()
            .expect("git runs");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn repo() -> Repo {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path();
        git(p, &["init", "-q", "-b", "main"]);
        std::fs::write(p.join("README"), "x\n").expect("write");
        git(p, &["add", "README"]);
        git(
            p,
            &[
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@example.com",
                "commit",
                "-qm",
                "base",
            ],
        );
        let opts = StoreOptions::new(
            Arc::new(FixedClock::new(1_800_000_000, Duration::from_secs(1))),
            Arc::new(SeqIdGen::new("r")),
        );
        let store = Store::open(p, opts).expect("store");
        let base = store
            .repo()
            .head()
            .and_then(|h| h.peel_to_commit())
            .expect("HEAD")
            .id();
        let spec = Spec::parse(Path::new("specs/login.md"), SPEC.as_bytes()).expect("spec");
        Repo {
            dir,
            store,
            base,
            spec,
        }
    }

    fn run(
        r: &Repo,
        agent: &ScriptedAgent,
        review: Option<&dyn ReviewSource>,
        checkpoint: bool,
    ) -> Outcome {
        let mut s = settings(&Config::default(), &r.spec, Pinned::default(), &[]);
        s.checkpoint_after_complete = checkpoint;
        s.checkpoint_timeout = Duration::from_millis(300);
        s.review_poll = Duration::from_millis(5);
        let (templates, prices) = (Templates::builtin(), PriceTable::builtin());
        let (redactor, cancel, daily) =
            (Redactor::default(), Cancel::new(), DailyLedger::default());
        let job = Job {
            spec: &r.spec,
            base: r.base,
            settings: s,
            templates: &templates,
            dependency_summaries: Vec::new(),
            dependency_files: Vec::new(),
            completed_specs: Vec::new(),
            review_feedback: Vec::new(),
            feedback: Vec::new(),
        };
        let services = Services {
            store: &r.store,
            agent,
            prices: &prices,
            redactor: &redactor,
            cancel: &cancel,
            daily: &daily,
            review,
        };
        run_spec(&services, &job, &mut |_| {}).expect("the loop runs")
    }

    fn transcript(r: &Repo, rev: &str) -> String {
        git(
            r.dir.path(),
            &[
                "notes",
                "--ref",
                "refs/notes/mmm/login/transcripts",
                "show",
                rev,
            ],
        )
    }

    #[test]
    fn changes_requested_on_a_complete_spec_continue_it_with_the_feedback_fed_once() {
        let r = repo();
        let agent = agent();
        assert_eq!(run(&r, &agent, None, false).reason, StopReason::Complete);
        let first = r.store.history(&r.spec.id).expect("history")[0].commit;

        let review = FakeReview::new(vec![(Verdict::ChangesRequested, changes())]);
        let out = run(&r, &agent, Some(&review), false);
        assert_eq!(
            (out.reason, out.last_iteration),
            (StopReason::Complete, 2),
            "{out:?}"
        );
        assert_eq!(
            review.asked.lock().expect("lock")[0],
            (first, BTreeSet::new())
        );
        let note = transcript(&r, "mmm/login");
        assert!(note.contains(r#""kind":"review-feedback""#), "{note}");
        assert!(
            note.contains(r#""fed":["review:1","review-comment:10"]"#),
            "{note}"
        );
        assert!(
            note.contains(
                r#""ignored":{"already_fed":0,"bots":0,"empty":0,"outsiders":1,"own":0}"#
            )
        );
        assert!(note.contains("untrusted data"));
        assert!(note.contains("src/login.rs:42"));
        assert_eq!(
            fed_ids(&r.store, &r.spec.id)
                .expect("fed")
                .into_iter()
                .map(|f| f.to_string())
                .collect::<Vec<_>>(),
            ["review:1", "review-comment:10"]
        );

        // The same review again, on a clone of the notes: nothing new, the head has no verdict.
        let again = FakeReview::new(vec![(Verdict::None, changes())]);
        let out = run(&r, &agent, Some(&again), false);
        assert_eq!(out.reason, StopReason::AlreadyComplete, "{out:?}");
        assert_eq!(
            again.asked.lock().expect("lock")[0].1.len(),
            2,
            "the fed ids were passed"
        );
    }

    #[test]
    fn an_approval_passes_the_required_checkpoint() {
        let r = repo();
        let review = FakeReview::new(vec![
            (Verdict::None, Vec::new()),
            (Verdict::None, Vec::new()),
            (Verdict::Approved, Vec::new()),
        ]);
        let out = run(&r, &agent(), Some(&review), true);
        assert_eq!(
            (out.reason, out.iterations),
            (StopReason::Complete, 1),
            "{out:?}"
        );
        assert!(out.detail.contains("approved"));
        let asked = review.asked.lock().expect("lock");
        // Once at the start (no branch yet: no head, no call), then until the approval.
        assert_eq!(asked.len(), 3);
        let tip = r.store.history(&r.spec.id).expect("history")[0].commit;
        assert!(asked.iter().all(|(head, _)| *head == tip));
    }

    #[test]
    fn changes_requested_at_the_checkpoint_start_the_next_iterations() {
        let r = repo();
        let review = FakeReview::new(vec![
            (Verdict::None, Vec::new()),
            (Verdict::ChangesRequested, changes()),
            (Verdict::Approved, Vec::new()),
        ]);
        let out = run(&r, &agent(), Some(&review), true);
        assert_eq!(
            (out.reason, out.iterations),
            (StopReason::Complete, 2),
            "{out:?}"
        );
        let note = transcript(&r, "mmm/login");
        assert!(
            note.contains(r#""fed":["review:1","review-comment:10"]"#),
            "{note}"
        );
        assert!(note.contains(r#""verdict":"changes-requested""#), "{note}");
    }

    #[test]
    fn no_review_within_the_timeout_stops_the_loop() {
        let r = repo();
        let review = FakeReview::new(vec![(Verdict::None, Vec::new())]);
        let out = run(&r, &agent(), Some(&review), true);
        assert_eq!(out.reason, StopReason::CheckpointTimeout, "{out:?}");
        let log = git(
            r.dir.path(),
            &[
                "log",
                "-1",
                "--format=%(trailers:key=Mmm-Status,valueonly)",
                "mmm/login",
            ],
        );
        assert_eq!(log.trim(), "complete");
        assert!(review.asked.lock().expect("lock").len() >= 2);
    }
}
