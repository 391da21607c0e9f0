//! A spec's history as the status comment shows it: one row per iteration, the acceptance
//! criteria with the result of their last `verify` run, the stop reason and the budget.
//!
//! Owns: [`SpecReport`], the input of [`super::comment::render_status`], and reading it from
//! the store ([`SpecReport::from_store`]). Must not touch: rendering, the forge.

use crate::agent::TokenUsage;
use crate::engine::metrics::{Durations, GateMetrics, IterationMetrics};
use crate::engine::run::StopReason;
use crate::spec::Spec;
use crate::store::{IterationStatus, Store, StoreError, metrics_ref};
use crate::validate::GateKind;

/// What the status comment of one spec shows.
#[derive(Debug, Clone, PartialEq)]
pub struct SpecReport {
    /// The spec's id.
    pub spec: String,
    /// The spec's title.
    pub title: String,
    /// Every iteration on the spec's branch, oldest first.
    pub iterations: Vec<IterationRow>,
    /// The acceptance criteria, in the spec's order.
    pub criteria: Vec<CriterionRow>,
    /// Why the loop stopped after its last iteration (`None`: still running, or not recorded).
    pub stop_reason: Option<StopReason>,
    /// What the spec spent against its caps.
    pub budget: BudgetUse,
}

/// One iteration's row.
#[derive(Debug, Clone, PartialEq)]
pub struct IterationRow {
    /// The iteration number.
    pub n: u32,
    /// Its recorded status (the `Mmm-Status` trailer).
    pub status: IterationStatus,
    /// Checks that passed.
    pub checks_passed: usize,
    /// Checks that failed.
    pub checks_failed: usize,
    /// Tokens used.
    pub tokens: TokenUsage,
    /// Cost in USD.
    pub cost_usd: f64,
    /// Milliseconds its stages took together.
    pub duration_ms: u64,
    /// The iteration commit's full id (hex).
    pub commit: String,
}

/// One acceptance criterion and what its last check said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CriterionRow {
    /// The criterion's text.
    pub text: String,
    /// `Some(passed)` from the last iteration whose checks ran; `None` when the criterion has
    /// no `verify` command or it has not run yet.
    pub passed: Option<bool>,
}

/// What a spec spent, over all its runs, against its caps.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BudgetUse {
    /// USD spent.
    pub used_usd: f64,
    /// `[budget] per_spec_usd`.
    pub cap_usd: Option<f64>,
    /// Tokens used (input and output).
    pub used_tokens: u64,
    /// `[budget] per_spec_tokens`.
    pub cap_tokens: Option<u64>,
}

impl SpecReport {
    /// Reads `spec`'s history from the store: each iteration's trailers and metrics note. A
    /// spec without a branch has no iterations. `cap_usd` and `cap_tokens` are the spec's
    /// budget caps, shown against what it spent.
    pub fn from_store(
        store: &Store,
        spec: &Spec,
        cap_usd: Option<f64>,
        cap_tokens: Option<u64>,
    ) -> Result<SpecReport, StoreError> {
        let history = match store.history(&spec.id) {
            Ok(h) => h,
            Err(StoreError::NoBranch { .. }) => Vec::new(),
            Err(e) => return Err(e),
        };
        let notes = metrics_ref(&spec.id);
        let mut metrics = Vec::with_capacity(history.len());
        for it in &history {
            let note = store.read_note(&notes, it.commit)?.unwrap_or_default();
            metrics.push(IterationMetrics::of(&note).unwrap_or_default());
        }
        let iterations = history
            .iter()
            .zip(&metrics)
            .map(|(it, m)| IterationRow::new(it.n, it.status.clone(), m, it.commit.to_string()))
            .collect();
        Ok(SpecReport::assemble(
            spec, iterations, &metrics, cap_usd, cap_tokens,
        ))
    }

    /// The report from rows already read and the metrics they came from (oldest first).
    pub fn assemble(
        spec: &Spec,
        iterations: Vec<IterationRow>,
        metrics: &[IterationMetrics],
        cap_usd: Option<f64>,
        cap_tokens: Option<u64>,
    ) -> SpecReport {
        let last_gates = metrics.iter().rev().find_map(|m| m.gates.as_deref());
        let criteria = spec
            .criteria
            .iter()
            .enumerate()
            .map(|(i, c)| CriterionRow {
                text: c.text.clone(),
                passed: c
                    .verify
                    .as_ref()
                    .and_then(|_| criterion_result(last_gates?, i)),
            })
            .collect();
        let budget = BudgetUse {
            used_usd: metrics.iter().map(|m| m.cost_usd).sum(),
            cap_usd,
            used_tokens: metrics.iter().map(|m| m.tokens.total()).sum(),
            cap_tokens,
        };
        SpecReport {
            spec: spec.id.to_string(),
            title: spec.title.clone(),
            iterations,
            criteria,
            stop_reason: metrics.last().and_then(|m| m.stop_reason),
            budget,
        }
    }
}

impl IterationRow {
    /// The row of iteration `n`, from its trailer status (else the one its metrics recorded)
    /// and its metrics.
    pub fn new(
        n: u32,
        status: Option<IterationStatus>,
        m: &IterationMetrics,
        commit: String,
    ) -> IterationRow {
        let (passed, total) = m.checks();
        IterationRow {
            n,
            status: status
                .or_else(|| m.trailer_status.clone())
                .unwrap_or_else(|| m.status.clone()),
            checks_passed: passed,
            checks_failed: total.saturating_sub(passed),
            tokens: m.tokens,
            cost_usd: m.cost_usd,
            duration_ms: total_ms(&m.durations),
            commit,
        }
    }
}

/// The result of criterion `i` (0-based) among `gates`: the loop names its check
/// `criterion <i + 1>`.
fn criterion_result(gates: &[GateMetrics], i: usize) -> Option<bool> {
    let name = format!("criterion {}", i + 1);
    gates
        .iter()
        .find(|g| g.kind == GateKind::Criterion && g.name == name)
        .map(|g| g.passed)
}

fn total_ms(d: &Durations) -> u64 {
    [
        d.context_ms,
        d.agent_ms,
        d.apply_ms,
        d.validate_ms,
        d.decide_ms,
    ]
    .into_iter()
    .flatten()
    .sum()
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use super::*;
    use crate::clock::{FixedClock, SeqIdGen};
    use crate::engine::metrics::GateMetrics;
    use crate::store::{NewIteration, StoreOptions};

    const SPEC: &str = "# Login\n\n## Objective\n\nUsers log in.\n\n## Acceptance criteria\n\n\
        - a right password logs in, verify: `test -e ok`\n\
        - the page looks calm\n\
        - a wrong one is refused, verify: `test -e refused`\n";

    fn gate(name: &str, kind: GateKind, passed: bool) -> GateMetrics {
        GateMetrics {
            name: name.into(),
            kind,
            command: "true".into(),
            passed,
            exit_code: Some(i32::from(!passed)),
            duration_ms: 5,
            timed_out: false,
        }
    }

    /// Records iterations with these metrics on `spec`'s branch, from an empty commit.
    fn record(store: &Store, spec: &Spec, all: &[(IterationStatus, IterationMetrics)]) {
        let repo = store.repo();
        let tree = repo
            .treebuilder(None)
            .and_then(|t| t.write())
            .expect("tree");
        let sig = git2::Signature::new("t", "t@example.com", &git2::Time::new(1, 0)).expect("sig");
        let base = repo
            .commit(
                None,
                &sig,
                &sig,
                "base",
                &repo.find_tree(tree).expect("tree"),
                &[],
            )
            .expect("base");
        let mut run = store.start_run(&spec.id, base).expect("run");
        for (status, m) in all {
            let mut rec = store.new_record(&mut run, crate::engine::metrics::KIND);
            let serde_json::Value::Object(data) = m.to_value() else {
                panic!("an object")
            };
            rec.data = data;
            let it = NewIteration {
                tree,
                status: status.clone(),
                summary: "iteration".into(),
                body: String::new(),
                spec_revision: Some(spec.revision.clone()),
                transcript: Vec::new(),
                metrics: vec![rec],
            };
            store.record_iteration(&mut run, it).expect("recorded");
        }
    }

    #[test]
    fn a_report_is_read_from_the_branch_and_its_metrics_notes() {
        let dir = tempfile::tempdir().expect("tempdir");
        git2::Repository::init(dir.path()).expect("init");
        let opts = StoreOptions::new(
            Arc::new(FixedClock::new(1_700_000_000, std::time::Duration::ZERO)),
            Arc::new(SeqIdGen::new("r")),
        );
        let store = Store::open(dir.path(), opts).expect("open");
        let spec = Spec::parse(Path::new("specs/login.md"), SPEC.as_bytes()).expect("spec");
        let empty = SpecReport::from_store(&store, &spec, Some(10.0), None).expect("report");
        assert!(empty.iterations.is_empty());
        assert_eq!(empty.criteria[0].passed, None);

        let first = IterationMetrics {
            iteration: 1,
            cost_usd: 0.5,
            checks_passed: Some(1),
            checks_total: Some(3),
            gates: Some(vec![
                gate("test", GateKind::Test, true),
                gate("criterion 1", GateKind::Criterion, false),
                gate("criterion 3", GateKind::Criterion, false),
            ]),
            durations: Durations {
                agent_ms: Some(1_000),
                validate_ms: Some(250),
                ..Durations::default()
            },
            ..IterationMetrics::default()
        };
        // The second call failed: no checks ran, so the first's results stand.
        let second = IterationMetrics {
            iteration: 2,
            cost_usd: 0.25,
            stop_reason: Some(StopReason::Critical),
            tokens: TokenUsage {
                input_tokens: 7,
                output_tokens: 3,
                ..TokenUsage::default()
            },
            ..IterationMetrics::default()
        };
        record(
            &store,
            &spec,
            &[
                (IterationStatus::Failed, first),
                (IterationStatus::Error, second),
            ],
        );
        let r = SpecReport::from_store(&store, &spec, Some(10.0), None).expect("report");
        assert_eq!(r.spec, "login");
        assert_eq!(r.title, "Login");
        let rows: Vec<_> = r
            .iterations
            .iter()
            .map(|i| {
                (
                    i.n,
                    i.status.clone(),
                    i.checks_passed,
                    i.checks_failed,
                    i.duration_ms,
                )
            })
            .collect();
        assert_eq!(
            rows,
            [
                (1, IterationStatus::Failed, 1, 2, 1_250),
                (2, IterationStatus::Error, 0, 0, 0)
            ]
        );
        let history = store.history(&spec.id).expect("history");
        assert_eq!(r.iterations[1].commit, history[1].commit.to_string());
        let criteria: Vec<_> = r.criteria.iter().map(|c| c.passed).collect();
        assert_eq!(criteria, [Some(false), None, Some(false)]);
        assert_eq!(r.stop_reason, Some(StopReason::Critical));
        assert_eq!(r.budget.used_usd, 0.75);
        assert_eq!(r.budget.used_tokens, 10);
        assert_eq!(r.budget.cap_usd, Some(10.0));
    }
}
