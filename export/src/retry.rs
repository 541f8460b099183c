//! When to try again: exponential backoff with jitter, and `Retry-After`.
//!
//! The OTLP/HTTP specification: retry 429, 502, 503 and 504 and failed connections, with
//! exponential backoff and jitter; honour `Retry-After` when the server sends it. Time is an
//! argument (milliseconds); randomness comes from a small deterministic generator seeded by
//! the caller.

use std::time::{Duration, SystemTime};

/// Backoff parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub initial_ms: u64,
    pub max_ms: u64,
}

impl RetryPolicy {
    /// The delay before attempt `n` (1 for the first retry): `initial * 2^(n-1)`, capped,
    /// then a random point in its upper half ("equal jitter") so clients do not march in step.
    pub fn delay_ms(&self, attempt: u32, rng: &mut Rng) -> u64 {
        let exp = attempt.saturating_sub(1).min(30);
        let full = self.initial_ms.saturating_mul(1 << exp).min(self.max_ms);
        let half = full / 2;
        half + rng.below(full - half + 1)
    }
}

/// xorshift64*: deterministic, tiny, good enough for jitter.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform-ish in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }
}

/// Parses `Retry-After`: delay-seconds, or an HTTP-date (IMF-fixdate, RFC 850 or asctime)
/// relative to `now`. A date in the past means no wait. `None` when unparsable.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Whether the specification allows retrying a response with this status.
pub const fn retryable_status(status: u16) -> bool {
    matches!(status, 429 | 502 | 503 | 504)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_the_cap_with_jitter() {
        let p = RetryPolicy {
            initial_ms: 1000,
            max_ms: 8000,
        };
        let mut rng = Rng::new(42);
        for attempt in 1..10 {
            let full = (1000u64 << (attempt - 1)).min(8000);
            for _ in 0..50 {
                let d = p.delay_ms(attempt, &mut rng);
                assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d}");
            }
        }
    }

    #[test]
    fn retry_after_in_seconds_and_dates() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:47 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Sunday, 06-Nov-94 08:49:40 GMT", now),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            parse_retry_after("Sun Nov  6 08:49:38 1994", now),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            parse_retry_after("Sat, 05 Nov 1994 08:49:37 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert!(retryable_status(503) && retryable_status(429) && !retryable_status(500));
    }
}
