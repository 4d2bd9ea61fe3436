//! Per-object retry backoff. kube-runtime has none built in: failures are counted
//! per object and reset on success, with jitter so a burst does not retry in lockstep.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use rand::Rng;

/// The longest a failing object waits between retries.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Failure counts by object key.
#[derive(Default)]
pub struct Backoff {
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    /// Records a failure and returns how long to wait: `base * 2^(n-1)` with
    /// ±20% jitter, at most [`MAX_BACKOFF`] and never past `cap` (e.g. the
    /// time left until the gate's deadline, so a failing object is never late).
    pub fn failed(&self, key: &str, base: Duration, cap: Option<Duration>) -> Duration {
        let n = {
            let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
            let n = failures.entry(key.to_string()).or_insert(0);
            *n = n.saturating_add(1);
            *n
        };
        let exp = base.saturating_mul(2u32.saturating_pow(n.saturating_sub(1).min(16)));
        let jitter = rand::rng().random_range(0.8..1.2);
        let delay = exp.mul_f64(jitter).min(MAX_BACKOFF);
        match cap {
            Some(cap) => delay.min(cap.max(Duration::from_millis(10))),
            None => delay,
        }
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

    #[test]
    fn backoff_grows_is_capped_and_resets() {
        let b = Backoff::default();
        let base = Duration::from_secs(1);
        let first = b.failed("a", base, None);
        assert!(
            first >= Duration::from_millis(800) && first <= Duration::from_millis(1200),
            "{first:?}"
        );
        let second = b.failed("a", base, None);
        assert!(
            second >= Duration::from_millis(1600) && second <= Duration::from_millis(2400),
            "{second:?}"
        );
        for _ in 0..20 {
            assert!(b.failed("a", base, None) <= MAX_BACKOFF);
        }
        assert!(b.failed("a", base, Some(Duration::from_secs(3))) <= Duration::from_secs(3));
        b.succeeded("a");
        assert_eq!(b.failures("a"), 0);
    }
}
