//! Budgets, checked *before* each call from the estimated input plus the maximum output, so
//! that a cap is never overshot: if the whole output would not fit, the call's `max_tokens` is
//! lowered to what does fit, and if too little is left the loop stops.

use serde::Serialize;

/// The limits that apply to one call. `None` means unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Limits {
    /// USD per iteration.
    pub per_iteration_usd: Option<f64>,
    /// USD per spec (summed over all its runs on this branch).
    pub per_spec_usd: Option<f64>,
    /// USD per day (all specs, UTC day).
    pub daily_usd: Option<f64>,
    /// Tokens (input and output) per iteration.
    pub per_iteration_tokens: Option<u64>,
    /// Tokens per spec.
    pub per_spec_tokens: Option<u64>,
    /// Tokens per day.
    pub daily_tokens: Option<u64>,
}

/// What has been spent already.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Spent {
    /// USD spent on this spec.
    pub spec_usd: f64,
    /// Tokens spent on this spec.
    pub spec_tokens: u64,
    /// USD spent today.
    pub daily_usd: f64,
    /// Tokens spent today.
    pub daily_tokens: u64,
}

/// Per-million-token prices of the model about to be called.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CallPrice {
    /// USD per million uncached input tokens.
    pub input: f64,
    /// USD per million output tokens.
    pub output: f64,
}

/// The outcome of a check.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum Check {
    /// The call may go ahead with this `max_tokens`.
    Go {
        /// The output cap that keeps every budget.
        max_tokens: u32,
        /// The worst-case cost of the call in USD.
        worst_case_usd: f64,
    },
    /// The call would break a budget.
    Exceeded {
        /// Which limit (`per_spec_usd`, …).
        limit: &'static str,
        /// What is left of it.
        left: f64,
        /// What the smallest useful call would need.
        needed: f64,
    },
}

/// Below this many output tokens a call is not worth making.
pub const MIN_OUTPUT_TOKENS: u32 = 512;

/// Checks a call of `input_tokens` (estimated) and up to `max_tokens` output against the
/// limits. Input is priced as uncached, so the estimate is an upper bound.
pub fn check(
    limits: &Limits,
    spent: &Spent,
    price: CallPrice,
    input_tokens: u64,
    max_tokens: u32,
) -> Check {
    let mut max_out = u64::from(max_tokens);
    let usd_caps = [
        (
            "per_iteration_usd",
            limits.per_iteration_usd.map(|l| l.max(0.0)),
        ),
        (
            "per_spec_usd",
            limits.per_spec_usd.map(|l| (l - spent.spec_usd).max(0.0)),
        ),
        (
            "daily_usd",
            limits.daily_usd.map(|l| (l - spent.daily_usd).max(0.0)),
        ),
    ];
    let input_usd = input_tokens as f64 * price.input / 1e6;
    for (name, left) in usd_caps {
        let Some(left) = left else { continue };
        let fits = if price.output > 0.0 {
            ((left - input_usd) * 1e6 / price.output).floor()
        } else if left >= input_usd {
            f64::MAX
        } else {
            -1.0
        };
        if fits < f64::from(MIN_OUTPUT_TOKENS) {
            return Check::Exceeded {
                limit: name,
                left,
                needed: input_usd + f64::from(MIN_OUTPUT_TOKENS) * price.output / 1e6,
            };
        }
        max_out = max_out.min(fits as u64);
    }
    let token_caps = [
        ("per_iteration_tokens", limits.per_iteration_tokens),
        (
            "per_spec_tokens",
            limits
                .per_spec_tokens
                .map(|l| l.saturating_sub(spent.spec_tokens)),
        ),
        (
            "daily_tokens",
            limits
                .daily_tokens
                .map(|l| l.saturating_sub(spent.daily_tokens)),
        ),
    ];
    for (name, left) in token_caps {
        let Some(left) = left else { continue };
        let fits = left.saturating_sub(input_tokens);
        if fits < u64::from(MIN_OUTPUT_TOKENS) {
            return Check::Exceeded {
                limit: name,
                left: left as f64,
                needed: (input_tokens + u64::from(MIN_OUTPUT_TOKENS)) as f64,
            };
        }
        max_out = max_out.min(fits);
    }
    let max_tokens = u32::try_from(max_out).unwrap_or(u32::MAX);
    Check::Go {
        max_tokens,
        worst_case_usd: input_usd + f64::from(max_tokens) * price.output / 1e6,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SONNET: CallPrice = CallPrice {
        input: 2.0,
        output: 10.0,
    };

    #[test]
    fn unlimited_goes_with_full_output() {
        let c = check(&Limits::default(), &Spent::default(), SONNET, 1000, 16000);
        assert_eq!(
            c,
            Check::Go {
                max_tokens: 16000,
                worst_case_usd: 0.002 + 0.16
            }
        );
    }

    #[test]
    fn output_is_lowered_to_fit_and_never_overshoots() {
        let limits = Limits {
            per_spec_usd: Some(1.0),
            ..Limits::default()
        };
        let spent = Spent {
            spec_usd: 0.95,
            ..Spent::default()
        };
        // 0.05 left; input 1000 tokens = 0.002; output fits (0.048 / 10e-6) = 4800 tokens.
        match check(&limits, &spent, SONNET, 1000, 16000) {
            Check::Go {
                max_tokens,
                worst_case_usd,
            } => {
                assert_eq!(max_tokens, 4800);
                assert!(spent.spec_usd + worst_case_usd <= 1.0 + 1e-12);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn stops_when_too_little_is_left() {
        let limits = Limits {
            daily_usd: Some(1.0),
            per_spec_tokens: Some(10_000),
            ..Limits::default()
        };
        let spent = Spent {
            daily_usd: 0.999,
            ..Spent::default()
        };
        assert!(matches!(
            check(&limits, &spent, SONNET, 1000, 16000),
            Check::Exceeded {
                limit: "daily_usd",
                ..
            }
        ));
        let spent = Spent {
            spec_tokens: 9_000,
            ..Spent::default()
        };
        assert!(matches!(
            check(&limits, &spent, SONNET, 1000, 16000),
            Check::Exceeded {
                limit: "per_spec_tokens",
                ..
            }
        ));
    }
}
