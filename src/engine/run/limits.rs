//! The limits checked before each model call: a stop request, the timeout, `max_iterations`
//! and the budgets, with the call's worst case held in the day's ledger.

use crate::agent::ModelPrice;
use crate::context::Prompt;

use super::super::budget::{self, CallPrice, Reservation};
use super::{Loop, StopReason};

/// What the budget allows the next call.
pub(super) struct Allowance<'l> {
    /// The output cap that keeps every budget.
    pub(super) max_tokens: u32,
    /// The tightest USD limit left (`None`: no USD limit).
    pub(super) usd_left: Option<f64>,
    /// The call's worst case, held in the day's ledger until its cost is known.
    pub(super) reservation: Reservation<'l>,
}

impl<'s> Loop<'s, '_, '_> {
    /// A reason not to make another call: a stop request, the timeout, `max_iterations`, or
    /// (when the next prompt's size is known or estimated) a budget. `pending` counts the
    /// iterations about to be recorded but not yet counted (1 when looking ahead from a draft).
    pub(super) fn stop_before_call(
        &self,
        next_input: Option<u64>,
        pending: u32,
    ) -> Option<(StopReason, String)> {
        let settings = &self.job.settings;
        if self.s.cancel.is_cancelled() {
            return Some((StopReason::Stopped, "stopped on request".into()));
        }
        if self.started.elapsed() >= settings.timeout {
            return Some((
                StopReason::Timeout,
                format!(
                    "the run's timeout of {} passed",
                    humantime::format_duration(settings.timeout)
                ),
            ));
        }
        let iterations = self.iterations_this_revision + pending;
        if iterations >= settings.max_iterations {
            return Some((
                StopReason::MaxIterations,
                format!(
                    "{iterations} iterations of this spec revision (max_iterations = {})",
                    settings.max_iterations
                ),
            ));
        }
        let input = next_input?;
        // Other loops' calls in flight are left out: they hold their worst case, which rarely
        // comes true; the next call waits for them if it must (see `DailyLedger::reserve`).
        self.budget_check_at(input, self.s.daily.settled()).err()
    }

    /// The budget stage, before the call: the call's worst case is held in the day's ledger
    /// until its cost is known, so that specs running at once keep the daily cap together.
    /// An agent whose cost `max_tokens` does not bound may spend all the USD left. (A model
    /// without a price stops the loop at once; only a budget makes the reservation wait.)
    pub(super) fn reserve(&self, prompt: &Prompt) -> Result<Allowance<'s>, (StopReason, String)> {
        self.price()?;
        let estimate = prompt.token_estimate as u64;
        let daily = self.s.daily;
        let bounded = self.s.agent.output_bounds_cost();
        let cancel = self.s.cancel;
        let reserved = daily.reserve(
            |usd, tokens| {
                let (max_tokens, worst) = self.budget_check_at(estimate, (usd, tokens))?;
                let usd_left = self.usd_left_at(usd);
                let hold = match usd_left {
                    Some(left) if !bounded => worst.max(left),
                    _ => worst,
                };
                Ok((
                    (max_tokens, usd_left),
                    hold,
                    estimate + u64::from(max_tokens),
                ))
            },
            &|| cancel.is_cancelled(),
        );
        match reserved {
            Ok(((max_tokens, usd_left), reservation)) => Ok(Allowance {
                max_tokens,
                usd_left,
                reservation,
            }),
            Err(_) if cancel.is_cancelled() => {
                Err((StopReason::Stopped, "stopped on request".into()))
            }
            Err(stop) => Err(stop),
        }
    }

    /// The tightest USD limit left for the next call (per iteration, per spec, per day), with
    /// `today` USD spent today.
    fn usd_left_at(&self, today: f64) -> Option<f64> {
        let limits = &self.job.settings.limits;
        [
            limits.per_iteration_usd,
            limits.per_spec_usd.map(|l| l - self.spent.spec_usd),
            limits.daily_usd.map(|l| l - today),
        ]
        .into_iter()
        .flatten()
        .map(|l| l.max(0.0))
        .reduce(f64::min)
    }

    /// The price of the model about to be called; a model without one stops the loop, since
    /// no budget could be kept.
    fn price(&self) -> Result<&ModelPrice, (StopReason, String)> {
        self.s.prices.get(&self.model).ok_or_else(|| {
            (
                StopReason::Critical,
                format!(
                    "no price is known for model `{}`, so the budget cannot be kept; add [prices.\"{}\"] to .mmm/config.toml",
                    self.model, self.model
                ),
            )
        })
    }

    /// The budget check with `today` (USD, tokens) spent today: the output cap that keeps every
    /// budget and the call's worst-case cost in USD.
    fn budget_check_at(
        &self,
        input_tokens: u64,
        today: (f64, u64),
    ) -> Result<(u32, f64), (StopReason, String)> {
        let settings = &self.job.settings;
        let price = self.price()?;
        let mut spent = self.spent;
        (spent.daily_usd, spent.daily_tokens) = today;
        match budget::check(
            &settings.limits,
            &spent,
            // An upper bound: input may be written to the cache (dearer than plain input), and
            // a long prompt may be billed at the long-prompt tier.
            CallPrice {
                input: price.input.max(price.cache_write_5m).max(
                    price
                        .long_prompt
                        .as_ref()
                        .map_or(0.0, |t| t.input.max(t.cache_write_5m)),
                ),
                output: price
                    .output
                    .max(price.long_prompt.as_ref().map_or(0.0, |t| t.output)),
            },
            input_tokens,
            settings.max_tokens,
        ) {
            budget::Check::Go {
                max_tokens,
                worst_case_usd,
            } => Ok((max_tokens, worst_case_usd)),
            budget::Check::Exceeded {
                limit,
                left,
                needed,
                overrun,
            } => Err((StopReason::Budget, exceeded(limit, left, needed, overrun))),
        }
    }
}

/// Why a budget stops the loop: an overrun (an agent that reports its own cost spent more
/// than it was given) as an overrun, else what is left against what a call needs.
fn exceeded(limit: &str, left: f64, needed: f64, overrun: f64) -> String {
    let usd = limit.ends_with("_usd");
    let amount = |x: f64| {
        if usd {
            format!("${x:.4}")
        } else {
            format!("{x:.0} tokens")
        }
    };
    if overrun > 0.0 {
        format!(
            "budget.{limit} is overrun by {}: what was spent went past the limit",
            amount(overrun)
        )
    } else {
        format!(
            "the next call could exceed budget.{limit}: {} left, the smallest useful call may need {}",
            amount(left),
            amount(needed)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::exceeded;

    #[test]
    fn budget_words() {
        assert_eq!(
            exceeded("per_spec_usd", 0.0, 0.01, 0.47),
            "budget.per_spec_usd is overrun by $0.4700: what was spent went past the limit"
        );
        assert_eq!(
            exceeded("daily_tokens", 100.0, 612.0, 0.0),
            "the next call could exceed budget.daily_tokens: 100 tokens left, the smallest useful call may need 612 tokens"
        );
    }
}
