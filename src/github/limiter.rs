//! Pacing of content-creating requests (reviews, status reports, redeliveries)
//! to stay inside GitHub's secondary rate limits: a FIFO schedule of evenly
//! spaced slots, a cap on requests in flight, and a shared pause when GitHub
//! says a limit was hit anyway.
//!
//! A reconciler does not wait for its slot: it reserves one under the request's
//! key ([`Limiter::turn`]), comes back when it is due, and then writes. Only a
//! slot due within [`INLINE_WAIT`] is waited for in place. So a queue of
//! thousands of answers costs a map entry each, not a parked reconcile each.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// A slot due this soon is waited for in place rather than handed back.
pub const INLINE_WAIT: Duration = Duration::from_millis(50);
/// A reservation not used this long after its time is given up; its owner
/// reserves again. Bounds both the map and how many late writes can bunch up.
const RESERVATION_GRACE: Duration = Duration::from_secs(10);

/// Whose turn it is to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    /// Write now (the limiter may still wait up to [`INLINE_WAIT`]).
    Now,
    /// The slot reserved for this key comes after this long.
    Later(Duration),
}

struct Slots {
    next: Instant,
    blocked_until: Instant,
    /// Consecutive secondary-limit hits, for exponential backoff.
    strikes: u32,
    /// Pauses GitHub imposed since start (rate limits, secondary limits).
    pauses: u64,
    /// The slot held for each key that was told to come back later.
    reserved: HashMap<String, Instant>,
    /// The same reservations in the order they were made (their times only
    /// grow), for expiring the ones nobody came back for.
    order: VecDeque<(Instant, String)>,
}

impl Slots {
    /// The next free slot; it is taken.
    fn take(&mut self, interval: Duration) -> Instant {
        let at = Instant::now().max(self.next).max(self.blocked_until);
        self.next = at + interval;
        at
    }

    /// The slot reserved for `key`, unless a pause began since it was made.
    fn reserved(&self, key: &str) -> Option<Instant> {
        self.reserved
            .get(key)
            .copied()
            .filter(|at| *at >= self.blocked_until)
    }

    fn expire(&mut self, now: Instant) {
        while let Some((at, _)) = self.order.front() {
            if *at + RESERVATION_GRACE > now {
                break;
            }
            if let Some((at, key)) = self.order.pop_front()
                && self.reserved.get(&key) == Some(&at)
            {
                self.reserved.remove(&key);
            }
        }
    }
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
                pauses: 0,
                reserved: HashMap::new(),
                order: VecDeque::new(),
            }),
            in_flight: Arc::new(Semaphore::new(max_in_flight.max(1))),
        }
    }

    fn slots(&self) -> MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// When `key` may write. Reserves a slot on the first ask and keeps it
    /// until [`Limiter::acquire`] uses it, so asking again never loses the place.
    pub fn turn(&self, key: &str) -> Turn {
        let now = Instant::now();
        let mut s = self.slots();
        s.expire(now);
        let at = match s.reserved(key) {
            Some(at) => at,
            None => {
                let at = s.take(self.interval);
                s.reserved.insert(key.to_string(), at);
                s.order.push_back((at, key.to_string()));
                at
            }
        };
        if at <= now + INLINE_WAIT {
            Turn::Now
        } else {
            Turn::Later(at - now)
        }
    }

    /// Waits for this request's turn and a place in flight: the slot reserved
    /// for `key` if there is one, else the next free slot (first come, first served).
    pub async fn acquire(&self, key: &str) -> OwnedSemaphorePermit {
        let at = {
            let mut s = self.slots();
            match s.reserved(key) {
                Some(at) => {
                    s.reserved.remove(key);
                    at
                }
                None => {
                    s.reserved.remove(key);
                    s.take(self.interval)
                }
            }
        };
        tokio::time::sleep_until(at).await;
        let permit = self.in_flight.clone().acquire_owned().await;
        permit.expect("the in-flight semaphore is never closed")
    }

    /// GitHub reported a secondary limit: pause every write for at least a
    /// minute (or `retry_after` when longer), doubling on repeated hits. Returns the pause.
    pub fn secondary_limit(&self, retry_after: Option<Duration>) -> Duration {
        let mut s = self.slots();
        s.strikes = s.strikes.saturating_add(1);
        s.pauses += 1;
        let backoff = Duration::from_secs(60)
            .saturating_mul(2u32.saturating_pow(s.strikes.saturating_sub(1).min(4)));
        let pause = retry_after.unwrap_or_default().max(backoff);
        let until = Instant::now() + pause;
        s.blocked_until = s.blocked_until.max(until);
        pause
    }

    /// GitHub asked to wait (`retry-after`, or the primary limit's reset): pause every write until then.
    pub fn wait_until(&self, pause: Duration) {
        let mut s = self.slots();
        s.pauses += 1;
        let until = Instant::now() + pause;
        s.blocked_until = s.blocked_until.max(until);
    }

    /// A write went through: forget earlier secondary-limit strikes.
    pub fn succeeded(&self) {
        self.slots().strikes = 0;
    }

    /// Reservations held now.
    pub fn reservations(&self) -> usize {
        self.slots().reserved.len()
    }

    /// Pauses GitHub imposed since start.
    pub fn pauses(&self) -> u64 {
        self.slots().pauses
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_reserved_turn_is_kept_and_used_once() {
        // One write a second.
        let l = Limiter::new(60, 10);
        assert_eq!(l.turn("a"), Turn::Now);
        assert_eq!(l.turn("b"), Turn::Later(Duration::from_secs(1)));
        assert_eq!(l.turn("c"), Turn::Later(Duration::from_secs(2)));
        // Asking again keeps the place in the queue.
        assert_eq!(l.turn("b"), Turn::Later(Duration::from_secs(1)));
        drop(l.acquire("a").await);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(l.turn("b"), Turn::Now);
        let started = Instant::now();
        drop(l.acquire("b").await);
        assert_eq!(Instant::now(), started, "b's slot was due, no wait");
        // Used: the next ask of b queues behind c.
        assert_eq!(l.turn("b"), Turn::Later(Duration::from_secs(2)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_moves_reservations_behind_it() {
        let l = Limiter::new(60, 10);
        assert_eq!(l.turn("a"), Turn::Now);
        assert_eq!(l.turn("b"), Turn::Later(Duration::from_secs(1)));
        let pause = l.secondary_limit(None);
        assert_eq!(pause, Duration::from_secs(60));
        // b's slot fell inside the pause: it gets one after the pause.
        assert_eq!(l.turn("b"), Turn::Later(Duration::from_secs(60)));
        assert_eq!(l.turn("c"), Turn::Later(Duration::from_secs(61)));
    }

    #[tokio::test(start_paused = true)]
    async fn reservations_nobody_uses_expire() {
        let l = Limiter::new(60, 10);
        for k in 0..100 {
            l.turn(&format!("k{k}"));
        }
        assert_eq!(l.reservations(), 100);
        tokio::time::advance(Duration::from_secs(200)).await;
        l.turn("late");
        assert_eq!(l.reservations(), 1);
    }
}
