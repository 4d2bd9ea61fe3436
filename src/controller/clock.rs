//! The controllers' clock: the system clock in production, a hand-driven one
//! in tests (so a week-long TTL is tested without waiting a week, and
//! without a timed assertion).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

/// The current time for the controllers. Cheap to clone.
#[derive(Clone, Default)]
pub struct Clock {
    manual: Option<Arc<Manual>>,
}

struct Manual {
    now: Mutex<Timestamp>,
    moved: tokio::sync::watch::Sender<()>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock { manual: None }
    }

    /// A clock that shows `start` until [`Clock::advance`] moves it.
    pub fn manual(start: Timestamp) -> Clock {
        Clock {
            manual: Some(Arc::new(Manual {
                now: Mutex::new(start),
                moved: tokio::sync::watch::channel(()).0,
            })),
        }
    }

    /// The current time.
    pub fn now(&self) -> Timestamp {
        match &self.manual {
            None => Timestamp::now(),
            Some(m) => *m.now.lock().unwrap_or_else(|p| p.into_inner()),
        }
    }

    /// Moves a manual clock forward by `by` and wakes whoever waits on it.
    /// The system clock cannot be moved: this does nothing to it.
    pub fn advance(&self, by: SignedDuration) {
        if let Some(m) = &self.manual {
            {
                let mut now = m.now.lock().unwrap_or_else(|p| p.into_inner());
                *now = now.checked_add(by).unwrap_or(*now);
            }
            m.moved.send_replace(());
        }
    }

    /// Returns at `at` (or after `at_most`, whichever comes first). A manual
    /// clock also returns whenever it is moved, so its waiter looks again.
    pub async fn sleep_until(&self, at: Option<Timestamp>, at_most: Duration) {
        // Subscribed before the time is read: a move in between still wakes us.
        let moved = self.manual.as_ref().map(|m| {
            let mut rx = m.moved.subscribe();
            rx.borrow_and_update();
            rx
        });
        let left = at
            .map(|at| {
                let ms = at.as_millisecond() - self.now().as_millisecond();
                Duration::from_millis(ms.max(0) as u64)
            })
            .unwrap_or(at_most)
            .min(at_most);
        match moved {
            None => tokio::time::sleep(left).await,
            Some(_) if left.is_zero() => {}
            Some(mut moved) => {
                let _ = moved.changed().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_manual_clock_moves_only_when_advanced_and_wakes_its_sleeper() {
        let start: Timestamp = "2026-11-23T10:00:00Z".parse().expect("timestamp");
        let clock = Clock::manual(start);
        assert_eq!(clock.now(), start);
        let sleeper = {
            let clock = clock.clone();
            tokio::spawn(async move {
                clock
                    .sleep_until(
                        Some(start + SignedDuration::from_hours(1)),
                        Duration::from_secs(3600),
                    )
                    .await;
                clock.now()
            })
        };
        tokio::task::yield_now().await;
        clock.advance(SignedDuration::from_hours(2));
        let woke_at = tokio::time::timeout(Duration::from_secs(20), sleeper)
            .await
            .expect("the sleeper wakes when the clock moves")
            .expect("task");
        assert_eq!(woke_at, start + SignedDuration::from_hours(2));
    }
}
