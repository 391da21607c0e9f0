//! The validate stage: the `[validate]` gates and the criteria's `verify` commands, one by one.

use std::time::Instant;

use serde_json::Value;

use crate::store::Run;
use crate::validate::{self, Gate, GateKind, GateResult};

use super::super::worktree::Worktree;
use super::iteration::Pending;
use super::{Event, Loop, Stage, ms};

/// What the validate stage found.
pub(super) struct Checks {
    /// The checks that ran, in order.
    pub(super) results: Vec<GateResult>,
    /// A stop request came before the checks, so none ran.
    pub(super) interrupted: bool,
}

impl Checks {
    /// The checks that failed.
    pub(super) fn failing(&self) -> Vec<&GateResult> {
        self.results.iter().filter(|r| !r.passed).collect()
    }
}

impl Loop<'_, '_, '_> {
    /// Runs every check, reporting each.
    pub(super) fn validate(
        &mut self,
        run: &mut Run,
        worktree: &Worktree,
        it: &mut Pending,
    ) -> Checks {
        let t = Instant::now();
        let mut results: Vec<GateResult> = Vec::new();
        // A stop that arrives while the gates run does not void an iteration whose checks all
        // ran: it is recorded for what it is, and the loop stops after it.
        let interrupted = self.s.cancel.is_cancelled();
        if !interrupted {
            self.stage(it.n, Stage::Validate, None);
            let gates = self.gates();
            let total = gates.len();
            for (i, gate) in gates.into_iter().enumerate() {
                self.emit(Event::Checking {
                    spec: self.name.clone(),
                    iteration: it.n,
                    name: gate.name.clone(),
                    index: i + 1,
                    total,
                });
                let r = validate::run_gate(worktree.path(), &gate, &self.job.settings.gate_options);
                self.emit(Event::Checked {
                    spec: self.name.clone(),
                    iteration: it.n,
                    name: r.name.clone(),
                    passed: r.passed,
                    exit_code: r.exit_code,
                    timed_out: r.timed_out,
                    duration_ms: r.duration_ms,
                });
                results.push(r);
            }
        }
        it.durations.validate_ms = Some(ms(t.elapsed()));
        for r in &results {
            let rec = self.record(run, "gate", serde_json::to_value(r).unwrap_or(Value::Null));
            it.transcript.push(rec);
        }
        self.checkpoint(|c| c.update(&it.transcript));
        Checks {
            results,
            interrupted,
        }
    }

    /// The `[validate]` gates, then a check per criterion with a `verify` command.
    pub(super) fn gates(&self) -> Vec<Gate> {
        let mut gates = self.job.settings.gates.clone();
        for (i, c) in self.job.spec.criteria.iter().enumerate() {
            if let Some(cmd) = &c.verify {
                gates.push(Gate {
                    name: format!("criterion {}", i + 1),
                    kind: GateKind::Criterion,
                    command: cmd.clone(),
                });
            }
        }
        gates
    }
}
