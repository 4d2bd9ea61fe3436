//! Retry backoff: exponential with jitter, for failed reconciles (counted per
//! object, reset on success) and for deliveries GitHub did not take (counted in
//! `status.delivery.attempts`). kube-runtime has none built in.
//!
//! The curves are pure functions of the attempt and a jitter draw in `[0, 1)`,
//! so tests pass the draw; only the wrappers draw it. The jitter is "equal
//! jitter": attempt `n` waits between half and all of `base * 2^(n-1)` (capped),
//! so a burst of failures spreads out and no wait is ever below half the base.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use rand::Rng;

use crate::github::Pace;

/// The longest a failing reconcile waits between retries.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// A failing reconcile's first retry comes after 1–2 s; no retry loop runs faster.
pub const RECONCILE_BASE: Duration = Duration::from_secs(2);
/// Before its deadline a failing gate is retried at the deadline, but never
/// sooner than this after the failure: right at the deadline a retry is not worth
/// a hot loop.
pub const MIN_RETRY: Duration = Duration::from_secs(1);
/// A delivery that failed transiently is first retried after 1–2 s …
pub const DELIVERY_BASE: Duration = Duration::from_secs(2);
/// … and, while GitHub keeps failing, at least once a minute: an answer goes out
/// soon after GitHub is back. (Every attempt also waits for a pacing slot.)
pub const DELIVERY_CAP: Duration = Duration::from_secs(60);
/// A refusal only a person can fix (a missing permission, bad credentials) is
/// retried ever more slowly, to once in 30 minutes, so the answer still goes out
/// once it is fixed without GitHub being asked every few minutes meanwhile.
pub const REFUSED_CAP: Duration = Duration::from_secs(30 * 60);

/// `base * 2^(attempt-1)`, at most `cap`, scaled into its upper half by
/// `jitter` (`0` → half, towards `1` → all of it). `attempt` counts from 1.
pub fn exponential(base: Duration, attempt: u32, cap: Duration, jitter: f64) -> Duration {
    let doublings = attempt.saturating_sub(1).min(30);
    let full = base.saturating_mul(2u32.saturating_pow(doublings)).min(cap);
    let jitter = if jitter.is_finite() {
        jitter.clamp(0.0, 1.0)
    } else {
        0.0
    };
    full.mul_f64(0.5 + 0.5 * jitter)
}

/// The wait after the `failure`-th consecutive failed reconcile of an object
/// whose next duty is at `deadline_in` (time left until a gate's deadline, if
/// ahead): the backoff, but no later than the deadline and never under
/// [`MIN_RETRY`]. Past the deadline (or without one) it is the plain backoff:
/// being late again does not help, and a failing API server needs the room.
pub fn reconcile_retry(failure: u32, deadline_in: Option<Duration>, jitter: f64) -> Duration {
    let delay = exponential(RECONCILE_BASE, failure, MAX_BACKOFF, jitter);
    match deadline_in {
        Some(left) if !left.is_zero() => delay.min(left.max(MIN_RETRY)),
        _ => delay,
    }
}

/// The wait before the next delivery after attempt `attempt` (counted from 1)
/// failed. GitHub's own wait (`retry-after`, the primary limit's reset, a
/// secondary-limit pause) is kept exactly; otherwise the curve of `pace`.
pub fn delivery_retry(pace: Pace, told: Duration, attempt: u32, jitter: f64) -> Duration {
    match pace {
        Pace::Told => told,
        Pace::Transient => exponential(DELIVERY_BASE, attempt, DELIVERY_CAP, jitter),
        Pace::Refused => exponential(DELIVERY_BASE, attempt, REFUSED_CAP, jitter),
    }
}

/// [`delivery_retry`] with a fresh jitter draw.
pub fn delivery_delay(pace: Pace, told: Duration, attempt: u32) -> Duration {
    delivery_retry(pace, told, attempt, rand::rng().random())
}

/// Failure counts by object key.
#[derive(Default)]
pub struct Backoff {
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    /// Records a failure of `key` and returns how long to wait (see
    /// [`reconcile_retry`]).
    pub fn failed(&self, key: &str, deadline_in: Option<Duration>) -> Duration {
        let n = {
            let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
            let n = failures.entry(key.to_string()).or_insert(0);
            *n = n.saturating_add(1);
            *n
        };
        reconcile_retry(n, deadline_in, rand::rng().random())
    }

    /// Forgets the failures of an object that reconciled successfully.
    pub fn succeeded(&self, key: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        failures.remove(key);
    }

    /// How many consecutive failures an object has.
    pub fn failures(&self, key: &str) -> u32 {
        let failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        failures.get(key).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn reconcile_retries_start_between_one_and_two_seconds_and_double_to_five_minutes() {
        assert_eq!(reconcile_retry(1, None, 0.0), S(1));
        assert_eq!(reconcile_retry(1, None, 1.0), S(2));
        assert_eq!(reconcile_retry(2, None, 0.0), S(2));
        assert_eq!(reconcile_retry(3, None, 0.5), S(6));
        // Capped: at most five minutes, still spread over its upper half.
        assert_eq!(reconcile_retry(40, None, 1.0), MAX_BACKOFF);
        assert_eq!(reconcile_retry(40, None, 0.0), S(150));
        assert!(reconcile_retry(u32::MAX, None, 0.99) <= MAX_BACKOFF);
    }

    #[test]
    fn below_the_cap_every_draw_keeps_each_wait_at_least_as_long_as_the_one_before() {
        // Equal jitter: wait n lies in [2^(n-1), 2^n] s, so any draws keep the
        // waits non-decreasing until the cap (the 8th is at most 256 s): a
        // failing object never speeds up on its way there.
        let draws = [0.99, 0.0, 0.7, 0.01, 0.5, 0.99, 0.0, 0.3];
        let waits: Vec<Duration> = draws
            .iter()
            .enumerate()
            .map(|(i, j)| reconcile_retry(i as u32 + 1, None, *j))
            .collect();
        assert!(waits.windows(2).all(|w| w[0] <= w[1]), "{waits:?}");
    }

    #[test]
    fn before_the_deadline_a_retry_comes_by_the_deadline_but_never_under_a_second() {
        // Ten seconds left: the 5th failure (8–16 s) is retried at the deadline.
        assert_eq!(reconcile_retry(5, Some(S(10)), 1.0), S(10));
        // 200 ms left: not a hot loop, one second.
        assert_eq!(
            reconcile_retry(5, Some(Duration::from_millis(200)), 1.0),
            MIN_RETRY
        );
        // A short backoff is not stretched to the deadline.
        assert_eq!(reconcile_retry(1, Some(S(600)), 0.0), S(1));
    }

    #[test]
    fn after_the_deadline_a_failing_reconcile_backs_off_as_before_it() {
        // Once the deadline passed there is nothing to be early for: the same
        // curve as without a deadline, never the old 10 ms floor.
        for n in 1..20 {
            assert_eq!(
                reconcile_retry(n, Some(Duration::ZERO), 0.25),
                reconcile_retry(n, None, 0.25)
            );
        }
        assert!(reconcile_retry(1, Some(Duration::ZERO), 0.0) >= MIN_RETRY);
    }

    #[test]
    fn deliveries_keep_githubs_wait_exactly_and_otherwise_back_off() {
        assert_eq!(delivery_retry(Pace::Told, S(37), 9, 0.9), S(37));
        assert_eq!(delivery_retry(Pace::Transient, S(0), 1, 0.0), S(1));
        assert_eq!(delivery_retry(Pace::Transient, S(0), 1, 1.0), S(2));
        assert_eq!(delivery_retry(Pace::Transient, S(0), 4, 1.0), S(16));
        assert_eq!(delivery_retry(Pace::Transient, S(0), 30, 1.0), DELIVERY_CAP);
    }

    #[test]
    fn a_refusal_backs_off_to_at_most_thirty_minutes() {
        let waits: Vec<Duration> = (1..=20)
            .map(|n| delivery_retry(Pace::Refused, S(0), n, 1.0))
            .collect();
        assert_eq!(waits[0], S(2));
        assert_eq!(waits[9], S(1024));
        assert_eq!(waits[10], REFUSED_CAP);
        assert_eq!(waits[19], REFUSED_CAP);
        assert_eq!(delivery_retry(Pace::Refused, S(0), 20, 0.0), S(15 * 60));
    }

    #[test]
    fn failures_are_counted_per_object_and_reset() {
        let b = Backoff::default();
        let first = b.failed("a", None);
        assert!((S(1)..=S(2)).contains(&first), "{first:?}");
        let second = b.failed("a", None);
        assert!((S(2)..=S(4)).contains(&second), "{second:?}");
        assert_eq!(b.failures("a"), 2);
        assert_eq!(b.failures("b"), 0);
        b.succeeded("a");
        assert_eq!(b.failures("a"), 0);
    }
}
