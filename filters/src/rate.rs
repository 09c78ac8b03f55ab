//! Per-key request rates: a token bucket per limited access key, refilled
//! continuously at the key's rate up to its burst. Time is passed in, so
//! the arithmetic is tested without a clock.

use std::time::Instant;

use sealgate_config::RateLimit;

/// A token in the bucket's units: exact integer arithmetic (a float
/// bucket at 100 a second adding 0.1 each millisecond falls short of whole
/// tokens and serves 9 in 10).
const TOKEN: u128 = 1_000_000_000;

/// One key's bucket.
#[derive(Debug)]
pub struct TokenBucket {
    /// Refill per nanosecond, in units (`per_second` tokens a second).
    per_second: u128,
    burst: u128,
    tokens: u128,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket (a key starts with its burst), as of `now`.
    pub fn new(limit: RateLimit, now: Instant) -> Self {
        let burst = u128::from(limit.burst.max(1)) * TOKEN;
        Self {
            per_second: u128::from(limit.per_second.max(1)),
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Takes one request's token at `now`; `false` when there is none (the
    /// request is refused and takes nothing).
    pub fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_nanos();
        self.last = self.last.max(now);
        // Units per nanosecond are per_second: TOKEN units a second each.
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        if self.tokens >= TOKEN {
            self.tokens -= TOKEN;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn bucket(per_second: u32, burst: u32, now: Instant) -> TokenBucket {
        TokenBucket::new(RateLimit { per_second, burst }, now)
    }

    #[test]
    fn a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut b = bucket(10, 5, t0);
        assert!((0..5).all(|_| b.take(t0)), "the burst");
        assert!(!b.take(t0), "then nothing");
        // A tenth of a second brings one token back.
        let t1 = t0 + Duration::from_millis(100);
        assert!(b.take(t1));
        assert!(!b.take(t1));
        // Idle for a minute: back to the burst, never more.
        let t2 = t1 + Duration::from_secs(60);
        assert_eq!((0..20).filter(|_| b.take(t2)).count(), 5);
    }

    #[test]
    fn a_refused_request_takes_nothing_and_over_a_second_the_rate_holds() {
        let t0 = Instant::now();
        let mut b = bucket(100, 1, t0);
        let mut served = 0;
        // 1,000 attempts spread over one second: about 100 served.
        for i in 0..1000u64 {
            served += u32::from(b.take(t0 + Duration::from_millis(i)));
        }
        assert_eq!(served, 100);
    }

    #[test]
    fn time_going_backwards_adds_nothing() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut b = bucket(1, 1, t0);
        assert!(b.take(t0));
        assert!(!b.take(t0 - Duration::from_secs(5)));
        assert!(!b.take(t0));
    }
}
