//! Rate-limited log lines, for what an outsider can cause at will (forged
//! webhook signatures, unreadable bodies, refused connections): at most one
//! line per period, telling how many were left out since the previous one, so
//! a flood cannot fill the logs. The metrics still count every one.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// One kind of log line, let through at most once per period.
#[derive(Debug)]
pub struct Throttle {
    period: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// When the last line was let through.
    last: Option<Instant>,
    /// Lines left out since then.
    suppressed: u64,
}

impl Throttle {
    /// At most one line per `period`.
    pub fn new(period: Duration) -> Throttle {
        Throttle {
            period,
            state: Mutex::default(),
        }
    }

    /// At most one line a minute.
    pub fn per_minute() -> Throttle {
        Throttle::new(Duration::from_secs(60))
    }

    /// Whether a line may be written now (tokio's clock, so paused time in
    /// tests moves it): `Some(n)`, with the `n` lines left out since the last
    /// one written, or `None` to leave this one out.
    pub fn admit(&self) -> Option<u64> {
        self.admit_at(Instant::now())
    }

    /// [`Throttle::admit`] at `now`.
    pub fn admit_at(&self, now: Instant) -> Option<u64> {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        match s.last {
            Some(last) if now.saturating_duration_since(last) < self.period => {
                s.suppressed += 1;
                None
            }
            _ => {
                s.last = Some(now);
                Some(std::mem::take(&mut s.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_a_period_then_the_count_of_those_left_out() {
        let t = Throttle::per_minute();
        let t0 = Instant::now();
        assert_eq!(t.admit_at(t0), Some(0));
        for s in 1..60 {
            assert_eq!(t.admit_at(t0 + Duration::from_secs(s)), None, "at {s}s");
        }
        assert_eq!(t.admit_at(t0 + Duration::from_secs(60)), Some(59));
        assert_eq!(t.admit_at(t0 + Duration::from_secs(61)), None);
        // A quiet spell: the next line comes at once and reports the one left out.
        assert_eq!(t.admit_at(t0 + Duration::from_secs(3600)), Some(1));
        assert_eq!(t.admit_at(t0 + Duration::from_secs(3600)), None);
    }

    #[tokio::test(start_paused = true)]
    async fn admit_follows_tokios_clock() {
        let t = Throttle::per_minute();
        assert_eq!(t.admit(), Some(0));
        assert_eq!(t.admit(), None);
        tokio::time::advance(Duration::from_secs(59)).await;
        assert_eq!(t.admit(), None);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(t.admit(), Some(2));
    }
}
