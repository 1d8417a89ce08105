//! When the client tries again, and how every other wait in the agent paces itself: exponential backoff
//! bounded by a deadline.

use std::time::Duration;

/// When [`Client::send`] tries again: exponential backoff (doubling, capped at `max_backoff`), no attempt
/// starts after `deadline` (counted from the first attempt) and no sleep reaches past it. [`Client::send`]
/// also ends each attempt at the deadline (giving it at least a second), so an answer that never comes
/// cannot hold the caller past it.
///
/// [`Client::send`]: super::Client::send
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    pub deadline: Duration,
    /// Give up after this many attempts even before the deadline; `None`: only the deadline counts.
    pub max_attempts: Option<u32>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            deadline: Duration::from_secs(600),
            max_attempts: None,
        }
    }
}

impl RetryPolicy {
    /// The default backoff, giving up `deadline` after the first attempt.
    pub fn within(deadline: Duration) -> RetryPolicy {
        RetryPolicy { deadline, ..RetryPolicy::default() }
    }

    /// The backoff after the `failed`-th failed attempt (1-based).
    fn backoff(&self, failed: u32) -> Duration {
        let factor = 1u32.checked_shl(failed.saturating_sub(1)).unwrap_or(u32::MAX);
        self.initial_backoff.saturating_mul(factor).min(self.max_backoff)
    }

    /// How long to wait before the next attempt after `failed` failures, `elapsed` after the first
    /// attempt started; `None`: give up. A server's `Retry-After` lengthens the wait, never past the deadline.
    /// The one rule of every wait in the agent: HTTP retries, health probes, device waits.
    pub fn next_delay(&self, failed: u32, elapsed: Duration, retry_after: Option<Duration>) -> Option<Duration> {
        if self.max_attempts.is_some_and(|max| failed >= max) {
            return None;
        }
        let remaining = self.deadline.checked_sub(elapsed).filter(|r| !r.is_zero())?;
        let wait = self.backoff(failed).max(retry_after.unwrap_or_default());
        Some(wait.min(remaining))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn http_backoff_doubles_and_caps() {
        let p = RetryPolicy::default();
        let waits: Vec<_> = (1..=9).map(|n| p.backoff(n).as_millis()).collect();
        assert_eq!(waits, [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
        assert_eq!(p.backoff(200), p.max_backoff, "no overflow on long retries");
    }

    #[test]
    fn http_retry_never_sleeps_past_the_deadline() {
        let p = RetryPolicy::within(10 * SEC);
        assert_eq!(p.next_delay(1, Duration::ZERO, None), Some(Duration::from_millis(500)));
        assert_eq!(p.next_delay(5, Duration::from_millis(9_900), None), Some(Duration::from_millis(100)));
        assert_eq!(p.next_delay(1, 10 * SEC, None), None);
        assert_eq!(p.next_delay(1, 11 * SEC, None), None);
    }

    #[test]
    fn http_retry_after_lengthens_the_wait_up_to_the_deadline() {
        let p = RetryPolicy::within(10 * SEC);
        assert_eq!(p.next_delay(1, SEC, Some(3 * SEC)), Some(3 * SEC));
        assert_eq!(p.next_delay(1, 8 * SEC, Some(60 * SEC)), Some(2 * SEC));
        assert_eq!(p.next_delay(4, SEC, Some(Duration::ZERO)), Some(4 * SEC), "0 does not mean hammer");
    }

    #[test]
    fn http_max_attempts_stops_early() {
        let p = RetryPolicy { max_attempts: Some(3), ..RetryPolicy::within(600 * SEC) };
        assert!(p.next_delay(2, SEC, None).is_some());
        assert_eq!(p.next_delay(3, SEC, None), None);
    }

    /// Instant attempts on a virtual clock: the waits add up to exactly the deadline, the last attempt
    /// starts at it, none after.
    #[test]
    fn http_schedule_ends_at_the_deadline() {
        let p = RetryPolicy { initial_backoff: SEC, max_backoff: 8 * SEC, ..RetryPolicy::within(60 * SEC) };
        let (mut now, mut starts) = (Duration::ZERO, vec![Duration::ZERO]);
        while let Some(wait) = p.next_delay(starts.len() as u32, now, None) {
            now += wait;
            starts.push(now);
        }
        let secs: Vec<_> = starts.iter().map(Duration::as_secs).collect();
        assert_eq!(secs, [0, 1, 3, 7, 15, 23, 31, 39, 47, 55, 60]);
    }
}
