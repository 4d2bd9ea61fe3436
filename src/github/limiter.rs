//! Pacing of content-creating requests (reviews, status reports, redeliveries)
//! to stay inside GitHub's secondary rate limits: a FIFO schedule of evenly
//! spaced slots, a cap on requests in flight, and a shared pause when GitHub
//! says a limit was hit anyway.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

struct Slots {
    next: Instant,
    blocked_until: Instant,
    /// Consecutive secondary-limit hits, for exponential backoff.
    strikes: u32,
}

/// Shared by every clone of the client.
pub struct Limiter {
    interval: Duration,
    slots: Mutex<Slots>,
    in_flight: Arc<Semaphore>,
}

impl Limiter {
    /// `per_minute` writes a minute, at most `max_in_flight` at once.
    pub fn new(per_minute: u32, max_in_flight: usize) -> Limiter {
        let per_minute = per_minute.max(1);
        let now = Instant::now();
        Limiter {
            interval: Duration::from_secs(60) / per_minute,
            slots: Mutex::new(Slots {
                next: now,
                blocked_until: now,
                strikes: 0,
            }),
            in_flight: Arc::new(Semaphore::new(max_in_flight.max(1))),
        }
    }

    /// Waits for this request's turn (first come, first served) and a place in flight.
    pub async fn acquire(&self) -> OwnedSemaphorePermit {
        let at = {
            // tokio's Mutex is fair: waiters get their slot in arrival order.
            let mut s = self.slots.lock().await;
            let at = Instant::now().max(s.next).max(s.blocked_until);
            s.next = at + self.interval;
            at
        };
        tokio::time::sleep_until(at).await;
        let permit = self.in_flight.clone().acquire_owned().await;
        permit.expect("the in-flight semaphore is never closed")
    }

    /// GitHub reported a secondary limit: pause every write for at least a
    /// minute (or `retry_after` when longer), doubling on repeated hits. Returns the pause.
    pub async fn secondary_limit(&self, retry_after: Option<Duration>) -> Duration {
        let mut s = self.slots.lock().await;
        s.strikes = s.strikes.saturating_add(1);
        let backoff = Duration::from_secs(60)
            .saturating_mul(2u32.saturating_pow(s.strikes.saturating_sub(1).min(4)));
        let pause = retry_after.unwrap_or_default().max(backoff);
        let until = Instant::now() + pause;
        s.blocked_until = s.blocked_until.max(until);
        pause
    }

    /// GitHub asked to wait (`retry-after`, or the primary limit's reset): pause every write until then.
    pub async fn wait_until(&self, pause: Duration) {
        let mut s = self.slots.lock().await;
        let until = Instant::now() + pause;
        s.blocked_until = s.blocked_until.max(until);
    }

    /// A write went through: forget earlier secondary-limit strikes.
    pub async fn succeeded(&self) {
        self.slots.lock().await.strikes = 0;
    }
}
