//! The agent stage: the model call, what it cost, and a failed call turned into an iteration
//! worth recording.

use std::time::Instant;

use serde_json::json;

use crate::agent::{AgentError, AgentEvent, AgentReply, AgentRequest, TokenUsage};
use crate::context::{self, Prompt};
use crate::store::{IterationStatus, Run};

use super::super::metrics::IterationMetrics;
use super::super::worktree::Worktree;
use super::iteration::{Draft, Pending};
use super::limits::Allowance;
use super::{Event, Loop, Stage, StopReason, first_line, ms};

impl Loop<'_, '_, '_> {
    /// Calls the agent, streaming its text to the events and the checkpoint.
    pub(super) fn call(
        &mut self,
        worktree: &Worktree,
        prompt: &Prompt,
        allowance: &Allowance<'_>,
        it: &mut Pending,
    ) -> Result<AgentReply, AgentError> {
        self.stage(it.n, Stage::Agent, Some(self.model.clone()));
        let t = Instant::now();
        let model = self.model.clone();
        let request = AgentRequest {
            system: &prompt.system,
            user: &prompt.user,
            model: &model,
            max_tokens: allowance.max_tokens,
            worktree: worktree.path(),
            iteration: it.n,
            budget_left_usd: allowance.usd_left,
            timeout: self
                .job
                .settings
                .timeout
                .saturating_sub(self.started.elapsed()),
        };
        let name = self.name.clone();
        let events = &mut self.events;
        let checkpoints = self.checkpoints.as_ref();
        let mut forward = |e: AgentEvent| match e {
            AgentEvent::Text(text) => {
                if let Some(c) = checkpoints {
                    c.streamed(&text);
                }
                events(Event::Text {
                    spec: name.clone(),
                    text,
                })
            }
            AgentEvent::Retry {
                attempt,
                delay,
                reason,
            } => events(Event::Retry {
                spec: name.clone(),
                attempt,
                delay_ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                reason,
            }),
        };
        let reply = self.s.agent.invoke(&request, self.s.cancel, &mut forward);
        it.durations.agent_ms = Some(ms(t.elapsed()));
        reply
    }

    /// Prices the answer, settles the call's hold in the day's ledger, counts the spend and
    /// records the answer. Returns its cost in USD.
    pub(super) fn account(
        &mut self,
        run: &mut Run,
        reply: &AgentReply,
        allowance: Allowance<'_>,
        it: &mut Pending,
    ) -> f64 {
        let cost = reply.cost_usd.unwrap_or_else(|| {
            self.s
                .prices
                .cost(&reply.model, &(&reply.usage).into())
                // The API may answer with a dated id the table (or an override) does not
                // know: price it as the model that was asked for.
                .or_else(|| self.s.prices.cost(&self.model, &(&reply.usage).into()))
                .unwrap_or(0.0)
        });
        allowance.reservation.settle(cost, reply.usage.total());
        self.run_cost += cost;
        self.run_tokens.add(&reply.usage);
        self.spent.spec_usd += cost;
        self.spent.spec_tokens += reply.usage.total();
        let response_record = self.record(
            run,
            "response",
            json!({
                "agent": self.s.agent.kind(),
                "model": reply.model,
                "text": reply.text,
                "stop_reason": reply.stop_reason,
                "attempts": reply.attempts,
                "usage": reply.usage,
                "records": reply.records,
            }),
        );
        it.transcript.push(response_record);
        self.checkpoint(|c| c.update(&it.transcript));
        cost
    }

    /// Records nothing yet: turns a failed agent call into a draft iteration, so that the
    /// attempt and its cause are kept.
    pub(super) fn failed_call(&mut self, run: &mut Run, mut it: Pending, err: AgentError) -> Draft {
        let (status, stop) = match &err {
            AgentError::Interrupted => (
                IterationStatus::Interrupted,
                Some((
                    StopReason::Stopped,
                    "stopped on request during the model call".to_owned(),
                )),
            ),
            AgentError::Critical { .. } => (
                IterationStatus::Error,
                Some((
                    StopReason::Critical,
                    after_failures(&self.memory.failures, critical_detail(&err)),
                )),
            ),
            // The agent already retried (the API client with backoff); another iteration
            // would only burn the budget of iterations. The next `git mmm run` resumes here.
            AgentError::Failed { .. } => (
                IterationStatus::Error,
                Some((
                    StopReason::Critical,
                    after_failures(&self.memory.failures, critical_detail(&err)),
                )),
            ),
        };
        let rec = self.record(
            run,
            "agent-error",
            json!({"error": err.to_string(), "hint": err.hint()}),
        );
        it.transcript.push(rec);
        self.memory.problems = vec![format!("the previous model call failed: {err}")];
        // Redacted with the whole record.
        let metrics = IterationMetrics {
            iteration: it.n,
            agent: self.s.agent.kind().to_owned(),
            model: self.model.clone(),
            status: status.clone(),
            durations: it.durations,
            error: Some(err.to_string()),
            ..IterationMetrics::default()
        };
        Draft {
            summary: format!("the agent call failed: {}", first_line(&err.to_string())),
            status,
            transcript: it.transcript,
            metrics,
            usage: TokenUsage::default(),
            cost: 0.0,
            checks_passed: 0,
            checks_total: 0,
            decisions: Vec::new(),
            strategies: Vec::new(),
            stop,
            tree: None,
        }
    }
}

/// The detail of a failed call after an iteration whose checks failed: those failures first
/// (they are why the loop asked again, and usually what the user must look at), then the
/// call's error.
fn after_failures(failures: &[context::Failure], detail: String) -> String {
    let Some(first) = failures.first() else {
        return detail;
    };
    let lines: Vec<&str> = first
        .output
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let telling = lines
        .iter()
        .find(|l| {
            let l = l.to_ascii_lowercase();
            l.contains("error") || l.contains("panicked") || l.contains("failed")
        })
        .or(lines.last())
        .map(|l| format!(": {l}"))
        .unwrap_or_default();
    let names: Vec<&str> = failures.iter().map(|f| f.name.as_str()).collect();
    format!(
        "{} still failing ({}{telling}); then {detail}",
        names.join(", "),
        first.name
    )
}

fn critical_detail(err: &AgentError) -> String {
    let message = err.to_string();
    match err.hint() {
        // API errors carry their own hint in the message.
        Some(h) if !h.is_empty() && !message.contains("hint:") => format!("{message} ({h})"),
        _ => message,
    }
}
