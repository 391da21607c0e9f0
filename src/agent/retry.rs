//! The retry policy of the official SDKs (contracts §1.6): which responses are retried and how
//! long to wait before the next attempt.
//!
//! Owns the decision and the delay only; it does not send requests or sleep (the client does,
//! through a [`Sleeper`] so tests need not wait real seconds).

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How many times and how patiently to retry.
///
/// A retryable failure (rate limit, overload, a server error, a cut or stalled stream) is
/// retried at least [`max_retries`](RetryPolicy::max_retries) times, and then for as long as
/// the next attempt would start within [`retry_budget`](RetryPolicy::retry_budget) of the
/// first: a burst of 429s and 529s is waited out, only a persistent failure ends the call.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first attempt whatever the time (the SDKs' default is 2).
    pub max_retries: u32,
    /// How long after the first attempt retries may still start (default 5 minutes).
    pub retry_budget: Duration,
    /// First backoff step when the server gives no delay (SDK: 0.5 s).
    pub initial_backoff: Duration,
    /// Largest backoff step (SDK: 8 s).
    pub max_backoff: Duration,
    /// A server-given delay above this is ignored in favour of the backoff, so a bogus
    /// `retry-after` cannot stall a run.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 2,
            retry_budget: Duration::from_secs(300),
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

/// The few response headers the policy reads, already lower-cased by the caller.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetryHeaders {
    /// `x-should-retry`.
    pub should_retry: Option<String>,
    /// `retry-after-ms`.
    pub retry_after_ms: Option<String>,
    /// `retry-after`.
    pub retry_after: Option<String>,
}

impl RetryPolicy {
    /// Whether an HTTP error status is worth another attempt: `x-should-retry` decides first,
    /// then 408, 409, 429 and every status ≥ 500 are retried.
    pub fn should_retry_status(status: u16, headers: &RetryHeaders) -> bool {
        match headers.should_retry.as_deref().map(str::trim) {
            Some("true") => return true,
            Some("false") => return false,
            _ => {}
        }
        matches!(status, 408 | 409 | 429) || status >= 500
    }

    /// Whether a retry that waits `delay` may follow `retries_done` retries, `elapsed` after
    /// the first attempt began.
    pub fn may_retry(&self, retries_done: u32, elapsed: Duration, delay: Duration) -> bool {
        retries_done < self.max_retries || elapsed.saturating_add(delay) <= self.retry_budget
    }

    /// The wait before retry number `retries_done + 1`: the server's `retry-after-ms` or
    /// `retry-after` (seconds or HTTP-date, relative to `now`) when positive and at most
    /// [`RetryPolicy::max_retry_after`] (as the SDKs, exactly: the server spreads its clients),
    /// else `min(initial·2^n, max) × (1 − 0.25·jitter)` with `jitter` in `[0, 1)`.
    pub fn delay(
        &self,
        retries_done: u32,
        headers: &RetryHeaders,
        now: SystemTime,
        jitter: f64,
    ) -> Duration {
        if let Some(d) = server_delay(headers, now)
            && !d.is_zero()
            && d <= self.max_retry_after
        {
            return d;
        }
        let factor = 2f64.powi(retries_done.min(30) as i32);
        let step =
            (self.initial_backoff.as_secs_f64() * factor).min(self.max_backoff.as_secs_f64());
        let jitter = jitter.clamp(0.0, 1.0);
        Duration::from_secs_f64((step * (1.0 - 0.25 * jitter)).max(0.0))
    }
}

fn server_delay(headers: &RetryHeaders, now: SystemTime) -> Option<Duration> {
    if let Some(ms) = headers.retry_after_ms.as_deref()
        && let Ok(ms) = ms.trim().parse::<f64>()
        && ms.is_finite()
        && ms > 0.0
    {
        return Some(Duration::from_secs_f64(ms / 1000.0));
    }
    let ra = headers.retry_after.as_deref()?.trim();
    if let Ok(secs) = ra.parse::<f64>() {
        return (secs.is_finite() && secs > 0.0 && secs < 1e9)
            .then(|| Duration::from_secs_f64(secs));
    }
    let at = parse_http_date(ra)?;
    at.duration_since(now).ok()
}

/// Parses an IMF-fixdate HTTP-date such as `Sun, 06 Nov 1994 08:49:37 GMT`.
pub fn parse_http_date(s: &str) -> Option<SystemTime> {
    let rest = s.split_once(", ").map_or(s, |(_, r)| r);
    let mut it = rest.split_whitespace();
    let day: u64 = it.next()?.parse().ok()?;
    let month = match it.next()? {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let year: i64 = it.next()?.parse().ok()?;
    let mut hms = it.next()?.split(':');
    let h: u64 = hms.next()?.parse().ok()?;
    let m: u64 = hms.next()?.parse().ok()?;
    let sec: u64 = hms.next()?.parse().ok()?;
    if it.next()? != "GMT" || !(1..=31).contains(&day) || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day as i64);
    let secs = u64::try_from(days).ok()? * 86_400 + h * 3600 + m * 60 + sec;
    Some(UNIX_EPOCH + Duration::from_secs(secs))
}

// Howard Hinnant's days-from-civil algorithm.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Waits between attempts. The client uses [`TokioSleeper`]; tests may record the requested
/// delays instead of waiting.
pub trait Sleeper: Send + Sync {
    /// Waits for `d`.
    fn sleep(&self, d: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

/// Sleeps with `tokio::time::sleep`.
#[derive(Debug, Default, Clone, Copy)]
pub struct TokioSleeper;

impl Sleeper for TokioSleeper {
    fn sleep(&self, d: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(tokio::time::sleep(d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(should: Option<&str>, ms: Option<&str>, ra: Option<&str>) -> RetryHeaders {
        RetryHeaders {
            should_retry: should.map(String::from),
            retry_after_ms: ms.map(String::from),
            retry_after: ra.map(String::from),
        }
    }

    #[test]
    fn status_decisions_follow_the_sdk() {
        let none = RetryHeaders::default();
        for s in [408, 409, 429, 500, 503, 504, 529] {
            assert!(RetryPolicy::should_retry_status(s, &none), "{s}");
        }
        for s in [400, 401, 403, 404, 413, 422] {
            assert!(!RetryPolicy::should_retry_status(s, &none), "{s}");
        }
        assert!(RetryPolicy::should_retry_status(
            400,
            &h(Some("true"), None, None)
        ));
        assert!(!RetryPolicy::should_retry_status(
            529,
            &h(Some("false"), None, None)
        ));
    }

    #[test]
    fn delays_prefer_server_values_then_backoff() {
        let p = RetryPolicy::default();
        let now = UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37
        let d = |n, hd: RetryHeaders, j| p.delay(n, &hd, now, j);
        assert_eq!(
            d(0, h(None, Some("12.5"), Some("3")), 0.0),
            Duration::from_micros(12_500)
        );
        assert_eq!(
            d(0, h(None, None, Some("1.5")), 0.0),
            Duration::from_millis(1500)
        );
        assert_eq!(
            d(0, h(None, None, Some("Sun, 06 Nov 1994 08:49:47 GMT")), 0.0),
            Duration::from_secs(10)
        );
        // Past dates, zero, negative, garbage and too-long values fall back to backoff.
        for bad in ["Sun, 06 Nov 1994 08:49:00 GMT", "0", "-1", "soon", "3600"] {
            assert_eq!(
                d(0, h(None, None, Some(bad)), 0.0),
                Duration::from_millis(500),
                "{bad}"
            );
        }
        assert_eq!(d(1, RetryHeaders::default(), 0.0), Duration::from_secs(1));
        assert_eq!(d(3, RetryHeaders::default(), 0.0), Duration::from_secs(4));
        assert_eq!(d(9, RetryHeaders::default(), 0.0), Duration::from_secs(8));
        assert_eq!(d(9, RetryHeaders::default(), 1.0), Duration::from_secs(6));
    }

    #[test]
    fn retries_last_as_long_as_the_budget() {
        let p = RetryPolicy {
            max_retries: 2,
            retry_budget: Duration::from_secs(60),
            ..RetryPolicy::default()
        };
        let s = Duration::from_secs;
        // The first retries happen whatever the time.
        assert!(p.may_retry(0, s(600), s(1)));
        assert!(p.may_retry(1, s(600), s(1)));
        // Then only while the next attempt starts within the budget.
        assert!(p.may_retry(2, s(30), s(30)));
        assert!(p.may_retry(40, s(50), s(8)));
        assert!(!p.may_retry(2, s(30), s(31)));
        assert!(!p.may_retry(40, s(61), s(0)));
    }

    #[test]
    fn http_dates_parse() {
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(UNIX_EPOCH + Duration::from_secs(784_111_777))
        );
        assert_eq!(parse_http_date("Sun, 06 Foo 1994 08:49:37 GMT"), None);
    }
}
