//! The agent stage: the model call, what it cost, and a failed call turned into an iteration
//! worth recording.

use std::time::Instant;

use serde_json::json;

use crate::agent::{AgentError, AgentEvent, AgentReply, AgentRequest, TokenUsage};
use crate::context::Prompt;
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
        let (cost, cost_source) = self.cost_of(reply);
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
                "cost_usd": cost,
                "cost_source": cost_source.as_str(),
                "records": reply.records,
            }),
        );
        it.transcript.push(response_record);
        self.checkpoint(|c| c.update(&it.transcript));
        cost
    }

    /// What the answer cost and where the figure comes from: the agent's own figure, or the
    /// price table's for the tokens when the agent gave none or a rounded one (and the table
    /// knows the model).
    fn cost_of(&self, reply: &AgentReply) -> (f64, CostSource) {
        let usage = (&reply.usage).into();
        let table = self
            .s
            .prices
            .cost(&reply.model, &usage)
            // The API may answer with a dated id the table (or an override) does not know:
            // price it as the model that was asked for.
            .or_else(|| self.s.prices.cost(&self.model, &usage));
        match (reply.cost_usd, table) {
            (Some(usd), _) if !reply.cost_rounded => (usd, CostSource::Agent),
            (Some(_), Some(usd)) if reply.usage.total() > 0 => (usd, CostSource::PricesNotRounded),
            (Some(usd), _) => (usd, CostSource::AgentRounded),
            (None, Some(usd)) => (usd, CostSource::Prices),
            (None, None) => (0.0, CostSource::Unknown),
        }
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
                Some((StopReason::Critical, critical_detail(&err))),
            ),
            // The agent already retried (the API client with backoff); another iteration
            // would only burn the budget of iterations. The next `git mmm run` resumes here.
            AgentError::Failed { .. } => (
                IterationStatus::Error,
                Some((StopReason::Critical, critical_detail(&err))),
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

/// Where the cost recorded for an answer comes from (the response record's `cost_source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CostSource {
    /// The agent's own figure.
    Agent,
    /// The price table, for the tokens (the agent gave no cost).
    Prices,
    /// The price table, for the tokens, instead of the agent's rounded figure.
    PricesNotRounded,
    /// The agent's rounded figure (the table does not know the model, or no tokens).
    AgentRounded,
    /// No figure: neither the agent nor the price table knows (recorded as 0).
    Unknown,
}

impl CostSource {
    fn as_str(self) -> &'static str {
        match self {
            CostSource::Agent => "agent",
            CostSource::Prices => "prices",
            CostSource::PricesNotRounded => "prices (the agent's figure was rounded)",
            CostSource::AgentRounded => "agent (rounded)",
            CostSource::Unknown => "unknown (0)",
        }
    }
}

fn critical_detail(err: &AgentError) -> String {
    let message = err.to_string();
    match err.hint() {
        // API errors carry their own hint in the message.
        Some(h) if !h.is_empty() && !message.contains("hint:") => format!("{message} ({h})"),
        _ => message,
    }
}
