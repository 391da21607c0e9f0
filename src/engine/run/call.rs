//! The agent stage: the model call, what it cost, and a failed call turned into an iteration
//! worth recording.

use std::time::Instant;

use serde_json::json;

use crate::agent::{AgentError, AgentEvent, AgentReply, AgentRequest, TokenUsage};
use crate::context::{self, Prompt};
use crate::store::{IterationStatus, Run};

use super::super::metrics::{Interrupted, IterationMetrics};
use super::super::redact::Redactor;
use super::super::worktree::Worktree;
use super::iteration::{Draft, Pending};
use super::limits::Allowance;
use super::{Event, Loop, Stage, StopReason, first_line, ms};

/// Streamed text without an end of line goes out once it is this long.
const LINE_CAP: usize = 64 * 1024;

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
        // The attempt in flight: what it billed so far and the text it streamed. An attempt
        // that ends without its answer (a retry follows, or the call fails) is interrupted.
        let mut attempt = (TokenUsage::default(), 0usize);
        let mut interrupted = Interrupted::default();
        // Streamed text goes out by whole lines, redacted, so that a secret split between two
        // pieces is still found (a line longer than `LINE_CAP` goes out as it is).
        let redactor = self.s.redactor;
        let mut line = String::new();
        let shown = |line: &mut String, events: &mut dyn FnMut(Event), all: bool| {
            show_lines(line, all, &name, redactor, events)
        };
        let mut forward = |e: AgentEvent| match e {
            AgentEvent::Text(text) => {
                attempt.1 += text.len();
                if let Some(c) = checkpoints {
                    c.streamed(&text);
                }
                line.push_str(&text);
                shown(&mut line, &mut *events, false);
            }
            AgentEvent::Usage(usage) => {
                attempt.0 = usage;
                if let Some(c) = checkpoints {
                    c.billed(&interrupted, &usage);
                }
            }
            AgentEvent::Retry {
                attempt: n,
                delay,
                reason,
            } => {
                interrupted.add_attempt(&attempt.0, attempt.1);
                attempt = (TokenUsage::default(), 0);
                shown(&mut line, &mut *events, true);
                events(Event::Retry {
                    spec: name.clone(),
                    attempt: n,
                    delay_ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                    reason,
                })
            }
        };
        let reply = self.s.agent.invoke(&request, self.s.cancel, &mut forward);
        shown(&mut line, &mut *events, true);
        if reply.is_err() {
            interrupted.add_attempt(&attempt.0, attempt.1);
        }
        it.durations.agent_ms = Some(ms(t.elapsed()));
        interrupted.cost_usd = self.price_usage(&self.model, &interrupted.tokens);
        it.interrupted = interrupted;
        reply
    }

    /// What `usage` costs on `model` (0 for a model without a price, which the budget stage
    /// refuses before any call).
    fn price_usage(&self, model: &str, usage: &TokenUsage) -> f64 {
        self.s
            .prices
            .cost(model, &usage.into())
            // The API may answer with a dated id the table (or an override) does not
            // know: price it as the model that was asked for.
            .or_else(|| self.s.prices.cost(&self.model, &usage.into()))
            .unwrap_or(0.0)
    }

    /// Counts a call's cost and tokens in the run and the spec, and settles its hold in the
    /// day's ledger.
    fn spend(&mut self, allowance: Allowance<'_>, cost: f64, usage: &TokenUsage) {
        allowance.reservation.settle(cost, usage.total());
        self.run_cost += cost;
        self.run_tokens.add(usage);
        self.spent.spec_usd += cost;
        self.spent.spec_tokens += usage.total();
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
        let (answered, cost_source) = self.cost_of(reply);
        let cost = answered + it.interrupted.cost_usd;
        let mut usage = reply.usage;
        usage.add(&it.interrupted.tokens);
        self.spend(allowance, cost, &usage);
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
    pub(super) fn failed_call(
        &mut self,
        run: &mut Run,
        mut it: Pending,
        allowance: Allowance<'_>,
        err: AgentError,
    ) -> Draft {
        // What the cut attempts billed is spent all the same.
        let lost = it.interrupted;
        self.spend(allowance, lost.cost_usd, &lost.tokens);
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
            tokens: lost.tokens,
            cost_usd: lost.cost_usd,
            interrupted: (lost.attempts > 0).then_some(lost),
            ..IterationMetrics::default()
        };
        Draft {
            summary: format!("the agent call failed: {}", first_line(&err.to_string())),
            status,
            transcript: it.transcript,
            metrics,
            usage: lost.tokens,
            cost: lost.cost_usd,
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

/// Sends the whole lines of `line` (all of it when `all`, or when it grew past
/// [`LINE_CAP`]) as streamed text, redacted.
fn show_lines(
    line: &mut String,
    all: bool,
    spec: &str,
    redactor: &Redactor,
    events: &mut dyn FnMut(Event),
) {
    let end = if all || line.len() > LINE_CAP {
        line.len()
    } else {
        line.rfind('\n').map_or(0, |i| i + 1)
    };
    if end > 0 {
        let done: String = line.drain(..end).collect();
        events(Event::Text {
            spec: spec.to_owned(),
            text: redactor.redact(&done).into_owned(),
        });
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
