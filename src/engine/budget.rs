//! Budgets, checked *before* each call from the estimated input plus the maximum output, so
//! that a cap is never overshot: if the whole output would not fit, the call's `max_tokens` is
//! lowered to what does fit, and if too little is left the loop stops.

use serde::Serialize;

/// The limits that apply to one call. `None` means unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Limits {
    /// USD per iteration.
    pub per_iteration_usd: Option<f64>,
    /// USD per spec, over all its runs: what earlier runs of the spec spent (its branch's
    /// metrics notes) counts, so a new run does not start the budget afresh.
    pub per_spec_usd: Option<f64>,
    /// USD per day (all specs, UTC day).
    pub daily_usd: Option<f64>,
    /// Tokens (input and output) per iteration.
    pub per_iteration_tokens: Option<u64>,
    /// Tokens per spec, over all its runs (as `per_spec_usd`).
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
        /// How far what was spent already went past the limit (0 when it did not): an agent
        /// that reports its own cost (a command) may spend more than it was given.
        overrun: f64,
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
        ("per_iteration_usd", limits.per_iteration_usd),
        (
            "per_spec_usd",
            limits.per_spec_usd.map(|l| l - spent.spec_usd),
        ),
        ("daily_usd", limits.daily_usd.map(|l| l - spent.daily_usd)),
    ];
    let input_usd = input_tokens as f64 * price.input / 1e6;
    for (name, left) in usd_caps {
        let Some(left) = left else { continue };
        let overrun = (-left).max(0.0);
        let left = left.max(0.0);
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
                overrun,
            };
        }
        max_out = max_out.min(fits as u64);
    }
    let token_caps = [
        (
            "per_iteration_tokens",
            limits.per_iteration_tokens.map(i128::from),
        ),
        (
            "per_spec_tokens",
            limits
                .per_spec_tokens
                .map(|l| l as i128 - i128::from(spent.spec_tokens)),
        ),
        (
            "daily_tokens",
            limits
                .daily_tokens
                .map(|l| l as i128 - i128::from(spent.daily_tokens)),
        ),
    ];
    for (name, left) in token_caps {
        let Some(left) = left else { continue };
        let overrun = (-left).max(0) as f64;
        let left = u64::try_from(left).unwrap_or(0);
        let fits = left.saturating_sub(input_tokens);
        if fits < u64::from(MIN_OUTPUT_TOKENS) {
            return Check::Exceeded {
                limit: name,
                left: left as f64,
                needed: (input_tokens + u64::from(MIN_OUTPUT_TOKENS)) as f64,
                overrun,
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

/// What was spent today (UTC) by every spec, shared by the loops that run at once: what today's
/// metrics notes held when the run started, plus what each call since cost, plus the worst case
/// of the calls in flight. A loop reserves its call's worst case before the call, in the same
/// step as its budget check, so that loops running at once never overshoot a daily cap
/// together; after the call it settles the reservation to what the call cost. A loop whose call
/// does not fit while other loops' calls are in flight waits for them to settle, since their
/// worst case rarely comes true.
#[derive(Debug, Default)]
pub struct DailyLedger {
    state: std::sync::Mutex<LedgerState>,
    settled: std::sync::Condvar,
}

#[derive(Debug, Default, Clone, Copy)]
struct LedgerState {
    /// Spent by calls whose cost is known.
    usd: f64,
    tokens: u64,
    /// Held by calls in flight.
    reserved_usd: f64,
    reserved_tokens: u64,
    in_flight: usize,
}

impl DailyLedger {
    /// A ledger starting from what was spent today before this run (`daily_usd`,
    /// `daily_tokens` of `before`).
    pub fn new(before: Spent) -> DailyLedger {
        DailyLedger {
            state: std::sync::Mutex::new(LedgerState {
                usd: before.daily_usd,
                tokens: before.daily_tokens,
                ..LedgerState::default()
            }),
            settled: std::sync::Condvar::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LedgerState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// USD and tokens spent today, calls in flight counted at their worst case.
    pub fn today(&self) -> (f64, u64) {
        let st = *self.lock();
        (st.usd + st.reserved_usd, st.tokens + st.reserved_tokens)
    }

    /// USD and tokens spent today by calls whose cost is known (calls in flight left out).
    pub fn settled(&self) -> (f64, u64) {
        let st = *self.lock();
        (st.usd, st.tokens)
    }

    /// Runs `check` on what is spent today (calls in flight at their worst case) and, when it
    /// allows a call, reserves the worst case it returns (`(value, usd, tokens)`), under one
    /// lock. When it does not allow one while calls are in flight, waits for them to settle
    /// and checks again, unless `give_up` says to stop waiting.
    pub fn reserve<T, E>(
        &self,
        mut check: impl FnMut(f64, u64) -> Result<(T, f64, u64), E>,
        give_up: &dyn Fn() -> bool,
    ) -> Result<(T, Reservation<'_>), E> {
        let mut st = self.lock();
        loop {
            match check(st.usd + st.reserved_usd, st.tokens + st.reserved_tokens) {
                Ok((value, usd, tokens)) => {
                    st.reserved_usd += usd;
                    st.reserved_tokens += tokens;
                    st.in_flight += 1;
                    return Ok((
                        value,
                        Reservation {
                            ledger: self,
                            usd,
                            tokens,
                            open: true,
                        },
                    ));
                }
                Err(e) if st.in_flight == 0 || give_up() => return Err(e),
                Err(_) => {
                    st = self
                        .settled
                        .wait_timeout(st, std::time::Duration::from_millis(200))
                        .map(|(g, _)| g)
                        .unwrap_or_else(|e| e.into_inner().0);
                }
            }
        }
    }

    fn release(&self, reserved_usd: f64, reserved_tokens: u64, usd: f64, tokens: u64) {
        let mut st = self.lock();
        st.reserved_usd = (st.reserved_usd - reserved_usd).max(0.0);
        st.reserved_tokens = st.reserved_tokens.saturating_sub(reserved_tokens);
        st.in_flight = st.in_flight.saturating_sub(1);
        st.usd += usd;
        st.tokens += tokens;
        self.settled.notify_all();
    }
}

/// A call's worst case, held in a [`DailyLedger`] until the call's cost is known. Dropped
/// unsettled (the call never happened, or failed), it is released.
#[derive(Debug)]
pub struct Reservation<'a> {
    ledger: &'a DailyLedger,
    usd: f64,
    tokens: u64,
    open: bool,
}

impl Reservation<'_> {
    /// Replaces the reserved worst case by what the call cost.
    pub fn settle(mut self, usd: f64, tokens: u64) {
        self.open = false;
        self.ledger.release(self.usd, self.tokens, usd, tokens);
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if self.open {
            self.ledger.release(self.usd, self.tokens, 0.0, 0);
        }
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
    fn loops_at_once_share_the_daily_cap() {
        let ledger = DailyLedger::new(Spent {
            daily_usd: 0.5,
            daily_tokens: 100,
            ..Spent::default()
        });
        let limits = Limits {
            daily_usd: Some(1.0),
            ..Limits::default()
        };
        let go = |usd: f64, tokens: u64| {
            let spent = Spent {
                daily_usd: usd,
                daily_tokens: tokens,
                ..Spent::default()
            };
            match check(&limits, &spent, SONNET, 1000, 40_000) {
                Check::Go {
                    max_tokens,
                    worst_case_usd,
                } => Ok((max_tokens, worst_case_usd, 1000 + u64::from(max_tokens))),
                exceeded => Err(exceeded),
            }
        };
        let never = || false;
        // The first call may take everything that is left.
        let (first_max, first) = ledger.reserve(go, &never).expect("the first call goes");
        assert_eq!(first_max, 40_000);
        // A second loop checking meanwhile sees the first call's worst case as spent.
        let (second_max, second) = ledger.reserve(go, &never).expect("the second call goes");
        assert!(second_max < first_max, "{second_max}");
        let (usd, _) = ledger.today();
        assert!(usd <= 1.0 + 1e-9, "never over the cap together: {usd}");
        assert_eq!(ledger.settled(), (0.5, 100), "nothing settled yet");
        // Settled to what the first call cost; the second never happened.
        first.settle(0.01, 1200);
        drop(second);
        let (usd, tokens) = ledger.today();
        assert!((usd - 0.51).abs() < 1e-9, "{usd}");
        assert_eq!(tokens, 1300);
    }

    #[test]
    fn a_call_that_does_not_fit_waits_for_the_calls_in_flight() {
        let ledger = std::sync::Arc::new(DailyLedger::default());
        let limits = Limits {
            daily_usd: Some(1.0),
            ..Limits::default()
        };
        let go = move |usd: f64, _tokens: u64| {
            let spent = Spent {
                daily_usd: usd,
                ..Spent::default()
            };
            match check(&limits, &spent, SONNET, 1000, 100_000) {
                Check::Go {
                    max_tokens,
                    worst_case_usd,
                } => Ok((max_tokens, worst_case_usd, 0)),
                exceeded => Err(exceeded),
            }
        };
        let (_, first) = ledger.reserve(go, &|| false).expect("the first call goes");
        // Nothing is left while the first call is in flight; giving up at once says so.
        assert!(ledger.reserve(go, &|| true).is_err());
        // A second loop waits; the first call costs little; the second then goes.
        let waiting = std::thread::spawn({
            let ledger = ledger.clone();
            move || {
                ledger.reserve(go, &|| false).map(|(m, r)| {
                    drop(r);
                    m
                })
            }
        });
        std::thread::sleep(std::time::Duration::from_millis(50));
        first.settle(0.02, 0);
        let max = waiting
            .join()
            .expect("thread")
            .expect("the second call goes");
        assert!(max > 50_000, "{max}");
    }

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
    fn an_overrun_is_told_as_one() {
        let limits = Limits {
            per_spec_usd: Some(0.03),
            per_spec_tokens: Some(1000),
            ..Limits::default()
        };
        let spent = Spent {
            spec_usd: 0.5,
            ..Spent::default()
        };
        match check(&limits, &spent, SONNET, 10, 16000) {
            Check::Exceeded {
                limit: "per_spec_usd",
                left,
                overrun,
                ..
            } => assert!(left == 0.0 && (overrun - 0.47).abs() < 1e-9, "{overrun}"),
            other => panic!("{other:?}"),
        }
        let spent = Spent {
            spec_tokens: 1500,
            ..Spent::default()
        };
        assert!(matches!(
            check(&Limits { per_spec_usd: None, ..limits }, &spent, SONNET, 10, 16000),
            Check::Exceeded { limit: "per_spec_tokens", overrun, .. } if overrun == 500.0
        ));
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
