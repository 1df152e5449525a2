//! The bounded retry budget of one client call, `Retry-After` parsing and backoff.

use std::time::{Duration, SystemTime};

use rand::Rng;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc2822;

/// How hard one client call tries before handing the failure back (the caller then puts the work
/// back on its queue).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, the first included (1 = no retries).
    pub max_attempts: u32,
    /// The most time one call may spend waiting between attempts.
    pub max_total_wait: Duration,
    /// First backoff when Microsoft gives no `Retry-After`; doubles per attempt, with jitter.
    pub base_backoff: Duration,
    /// Cap of one backoff.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            max_total_wait: Duration::from_secs(30),
            base_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(8),
        }
    }
}

impl RetryPolicy {
    /// No retries (tests, and callers that retry themselves).
    pub fn none() -> Self {
        Self {
            max_attempts: 1,
            max_total_wait: Duration::ZERO,
            ..Self::default()
        }
    }

    /// Exponential backoff with jitter for retry number `retry` (1-based): a random wait in
    /// `[d/2, d]` where `d = base * 2^(retry-1)`, capped at `max_backoff`.
    pub fn backoff(&self, retry: u32) -> Duration {
        let exp = self
            .base_backoff
            .saturating_mul(1u32 << retry.saturating_sub(1).min(16));
        let capped = exp.min(self.max_backoff);
        let half = capped / 2;
        let jitter_ms = rand::rng().random_range(0..=half.as_millis().max(1) as u64);
        half + Duration::from_millis(jitter_ms)
    }
}

/// The retry budget of one client call: each request of the call gets `max_attempts`, and all
/// waits of the call (a batch's rounds and every page of a listing included) share
/// `max_total_wait`.
#[derive(Debug, Clone)]
pub(crate) struct Budget {
    policy: RetryPolicy,
    waited: Duration,
}

impl Budget {
    pub(crate) fn new(policy: RetryPolicy) -> Self {
        Self {
            policy,
            waited: Duration::ZERO,
        }
    }

    /// The wait before attempt `attempt + 1` (`hint` from Retry-After, else backoff), or
    /// `Err(wait)` when the budget does not allow another attempt; `wait` is then what the caller
    /// should wait before trying again.
    pub(crate) fn next_wait(
        &mut self,
        attempt: u32,
        hint: Option<Duration>,
    ) -> Result<Duration, Duration> {
        let wait = hint.unwrap_or_else(|| self.policy.backoff(attempt.max(1)));
        if attempt >= self.policy.max_attempts || self.waited + wait > self.policy.max_total_wait {
            return Err(wait);
        }
        self.waited += wait;
        Ok(wait)
    }
}

/// Longest `Retry-After` we accept as given; larger values are capped (a day-long wait from a
/// bad header must not park a mailbox).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// `Retry-After` as seconds (integer or decimal, e.g. `2.128`) or an HTTP-date.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    if value.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        let secs: f64 = value.parse().ok()?;
        if !secs.is_finite() || secs < 0.0 {
            return None;
        }
        return Some(Duration::from_secs_f64(secs).min(MAX_RETRY_AFTER));
    }
    let at = OffsetDateTime::parse(value, &Rfc2822).ok()?;
    let at = SystemTime::from(at);
    Some(
        at.duration_since(now)
            .unwrap_or(Duration::ZERO)
            .min(MAX_RETRY_AFTER),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_fractions_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480); // 2015-10-21T07:28:00Z
        assert_eq!(parse_retry_after("10", now), Some(Duration::from_secs(10)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("2.128", now),
            Some(Duration::from_millis(2128))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        // A date in the past means "now".
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("999999", now), Some(MAX_RETRY_AFTER));
        for bad in ["", "soon", "-1", "1.2.3", "NaN", "1e3"] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad}");
        }
    }

    #[test]
    fn backoff_grows_with_jitter_and_is_capped() {
        let p = RetryPolicy {
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1000),
            ..RetryPolicy::default()
        };
        for _ in 0..50 {
            let first = p.backoff(1);
            assert!(
                first >= Duration::from_millis(50) && first <= Duration::from_millis(100),
                "{first:?}"
            );
            let third = p.backoff(3);
            assert!(
                third >= Duration::from_millis(200) && third <= Duration::from_millis(400),
                "{third:?}"
            );
            assert!(p.backoff(30) <= Duration::from_millis(1000));
        }
    }

    #[test]
    fn budget_counts_attempts_and_wait() {
        let policy = RetryPolicy {
            max_attempts: 3,
            max_total_wait: Duration::from_secs(5),
            ..RetryPolicy::default()
        };
        let mut b = Budget::new(policy);
        assert_eq!(
            b.next_wait(1, Some(Duration::from_secs(2))),
            Ok(Duration::from_secs(2))
        );
        // 2 s waited, 4 more would pass the 5 s cap.
        assert_eq!(
            b.next_wait(2, Some(Duration::from_secs(4))),
            Err(Duration::from_secs(4))
        );
        assert_eq!(
            b.next_wait(2, Some(Duration::from_secs(3))),
            Ok(Duration::from_secs(3))
        );
        // The third attempt was the last.
        assert_eq!(b.next_wait(3, Some(Duration::ZERO)), Err(Duration::ZERO));
        // Another request of the same call has its own attempts but shares the (spent) wait.
        assert_eq!(
            b.next_wait(1, Some(Duration::from_millis(1))),
            Err(Duration::from_millis(1))
        );
        assert_eq!(b.next_wait(1, Some(Duration::ZERO)), Ok(Duration::ZERO));
    }
}
