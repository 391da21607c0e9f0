//! Helpers shared by commands: opening the store, naming specs, formatting times.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mmm::clock::{Clock, FixedClock, SystemClock, UlidGen};
use mmm::spec::SpecId;
use mmm::store::{Store, StoreOptions};

use super::{CliError, Ctx};

/// The clock: the system's, or a pinned one when `MMM_TEST_CLOCK=<unix secs>` is set (tests
/// and reproducible demos).
pub fn clock(ctx: &Ctx) -> Result<Arc<dyn Clock>, CliError> {
    match ctx.var("MMM_TEST_CLOCK") {
        Some(s) => {
            let secs = s.parse().map_err(|_| {
                CliError::usage(anyhow::anyhow!(
                    "MMM_TEST_CLOCK={s} is not a number of seconds"
                ))
            })?;
            Ok(Arc::new(FixedClock::new(secs, Duration::from_secs(1))))
        }
        None => Ok(Arc::new(SystemClock)),
    }
}

/// Opens the store of the repository around the working directory. `MMM_KILL_AT=<step>`
/// makes the store abort after that write step (for crash tests).
pub fn open_store(ctx: &Ctx) -> Result<Store, CliError> {
    let mut opts = StoreOptions::new(clock(ctx)?, Arc::new(UlidGen));
    opts.kill_point = ctx.var("MMM_KILL_AT").map(str::to_owned);
    Ok(Store::open(&ctx.cwd, opts)?)
}

/// Parses a spec id given on the command line; a bad one is a usage error (exit 2), with a
/// suggestion when there is one.
pub fn spec_id(s: &str) -> Result<SpecId, CliError> {
    SpecId::new(s).map_err(|suggestion| {
        let mut e = CliError::usage(anyhow::anyhow!("`{s}` is not a valid spec id"));
        e.hints.push(match suggestion {
            Some(s) => format!("spec ids are slugs; did you mean `{s}`?"),
            None => "spec ids are slugs: lowercase letters and digits, then also `.`, `_` or `-`"
                .to_owned(),
        });
        e
    })
}

/// `2026-11-24 07:18` (UTC).
pub fn short_time(t: SystemTime) -> String {
    let s = humantime::format_rfc3339_seconds(t).to_string();
    s.get(..16).map(|s| s.replace('T', " ")).unwrap_or(s)
}

/// A cost for a table or a line: rounded to cents, never a negative zero (an empty sum of
/// `f64` is `-0.0`), and `<$0.01` for a spend that rounds to nothing. `--json` keeps the
/// exact figure.
pub fn usd(x: f64) -> String {
    let x = if x.is_finite() { x } else { 0.0 };
    let cents = (x * 100.0).round();
    if cents == 0.0 {
        if x > 0.0 {
            "<$0.01".to_owned()
        } else {
            "$0.00".to_owned()
        }
    } else if cents < 0.0 {
        format!("-${:.2}", -cents / 100.0)
    } else {
        format!("${:.2}", cents / 100.0)
    }
}

/// The first 10 hex digits of an object id.
pub fn short_oid(oid: git2::Oid) -> String {
    let s = oid.to_string();
    s[..10.min(s.len())].to_owned()
}

/// Checks that `spec` names a spec: a spec file defines it, or it has a branch (a spec whose
/// file was deleted keeps its history). An unknown spec is an error in every command, with
/// the closest known id when there is one. The id of a spec file that has errors is let
/// through: it is broken, not unknown.
pub fn require_spec(ctx: &Ctx, store: &Store, spec: &SpecId) -> Result<(), CliError> {
    let branches: Vec<String> = store
        .status_all()?
        .into_iter()
        .map(|s| s.spec.to_string())
        .collect();
    if branches.iter().any(|b| b == spec.as_str()) {
        return Ok(());
    }
    let Some(found) = super::specs::discover_lenient(ctx)? else {
        return Ok(());
    };
    if found.specs.get(spec).is_some() || found.may_be_broken(spec.as_str()) {
        return Ok(());
    }
    let known: Vec<&str> = found
        .specs
        .iter()
        .map(|s| s.id.as_str())
        .chain(branches.iter().map(String::as_str))
        .collect();
    let hint = match mmm::text::closest(spec.as_str(), known.iter().copied()) {
        Some(close) => format!("did you mean `{close}`? `git mmm specs` lists the specs"),
        None => "`git mmm specs` lists the specs".to_owned(),
    };
    Err(CliError::with_hint(
        anyhow::anyhow!("no spec `{spec}`"),
        hint,
    ))
}

#[cfg(test)]
mod tests {
    use super::usd;

    #[test]
    fn costs_round_to_cents_and_never_show_a_negative_zero() {
        let empty: f64 = std::iter::empty::<f64>().sum();
        assert_eq!(usd(empty), "$0.00");
        assert_eq!(usd(-0.0), "$0.00");
        assert_eq!(usd(0.0), "$0.00");
        assert_eq!(usd(0.0001), "<$0.01");
        assert_eq!(usd(0.004_9), "<$0.01");
        assert_eq!(usd(0.005), "$0.01");
        assert_eq!(usd(1.234_5), "$1.23");
        assert_eq!(usd(12.0), "$12.00");
        assert_eq!(usd(-0.25), "-$0.25");
        assert_eq!(usd(f64::NAN), "$0.00");
    }
}
