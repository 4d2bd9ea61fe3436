//! Pacing of content-creating requests (reviews, status reports, redeliveries)
//! to stay inside GitHub's secondary rate limits: a FIFO schedule of evenly
//! spaced slots (at most `per_minute` a minute) that also never hands out more
//! than `per_hour` slots in any hour (GitHub documents both: about 80 a minute
//! and 500 an hour), a cap on requests in flight, and a shared pause when
//! GitHub says a limit was hit anyway (on any call, reads included).
//!
//! A reconciler does not wait for its slot: it reserves one under the request's
//! key ([`Limiter::turn`]), comes back when it is due, and then writes. Only a
//! slot due within [`INLINE_WAIT`] is waited for in place. So a queue of
//! thousands of answers costs a map entry each, not a parked reconcile each.
//!
//! Answers come first. A status report holds no slot while it waits: it queues
//! apart ([`Limiter::report_turn`]), one place per key however often its text
//! changes (the reconciler posts its latest text when the turn comes), and gets
//! a slot only when no answer is waiting for one. An answer never queues behind
//! a report; it waits at most for one report already sent, one slot. When the
//! budget is short, reports simply wait, and a gate's answer drops its report.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// A slot due this soon is waited for in place rather than handed back.
pub const INLINE_WAIT: Duration = Duration::from_millis(50);
/// A reservation not used this long after its time is given up; its owner
/// reserves again. Bounds both the map and how many late writes can bunch up.
const RESERVATION_GRACE: Duration = Duration::from_secs(10);
/// The window of the hourly budget.
const HOUR: Duration = Duration::from_secs(3600);

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
    /// The slots handed out in the last hour, oldest first (at most
    /// `per_hour`): the next slot is no earlier than an hour after the oldest
    /// once the hour's budget is spent.
    hour: VecDeque<Instant>,
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
    /// Reports waiting for a slot no answer wants, by when they first asked.
    reports: BTreeMap<u64, WaitingReport>,
    /// The place of each key's waiting report in `reports`.
    report_places: HashMap<String, u64>,
    next_place: u64,
    /// Reports given up since start: dropped for an answer of the same key, or
    /// never come back for.
    reports_dropped: u64,
}

/// A status report waiting for its turn.
struct WaitingReport {
    key: String,
    /// When its reconciler was told to come back; it is dropped if it does not.
    back: Instant,
}

impl Slots {
    /// The next free slot; it is taken.
    fn take(&mut self, interval: Duration, per_hour: usize) -> Instant {
        let at = self.free_at(Instant::now(), per_hour);
        // Slots only grow, so the window stays in order and holds at most
        // `per_hour` entries.
        while self.hour.front().is_some_and(|t| *t + HOUR <= at) {
            self.hour.pop_front();
        }
        self.hour.push_back(at);
        self.next = at + interval;
        at
    }

    /// When the next slot would be: after the last one, after any pause, and
    /// once the hour's budget is spent, an hour after the oldest slot in it.
    fn free_at(&self, now: Instant, per_hour: usize) -> Instant {
        let mut at = now.max(self.next).max(self.blocked_until);
        let live = self.hour.iter().filter(|t| **t + HOUR > at).count();
        if live >= per_hour {
            let oldest_needed = self.hour[self.hour.len() - per_hour];
            at = at.max(oldest_needed + HOUR);
        }
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
        // Waiting reports are few next to the answers' map and their come-back
        // times are not ordered: a scan, only while some wait.
        let stale: Vec<u64> = self
            .reports
            .iter()
            .filter(|(_, r)| r.back + RESERVATION_GRACE <= now)
            .map(|(place, _)| *place)
            .collect();
        for place in stale {
            self.drop_report_at(place);
        }
    }

    /// Reserves `at` for `key`.
    fn reserve(&mut self, key: &str, at: Instant) {
        self.reserved.insert(key.to_string(), at);
        self.order.push_back((at, key.to_string()));
    }

    fn drop_report_at(&mut self, place: u64) {
        if let Some(r) = self.reports.remove(&place) {
            self.report_places.remove(&r.key);
            self.reports_dropped += 1;
        }
    }

    /// The place of `key`'s waiting report, queued at the back if new.
    fn report_place(&mut self, key: &str, now: Instant) -> u64 {
        if let Some(place) = self.report_places.get(key) {
            return *place;
        }
        let place = self.next_place;
        self.next_place += 1;
        self.report_places.insert(key.to_string(), place);
        self.reports.insert(
            place,
            WaitingReport {
                key: key.to_string(),
                back: now,
            },
        );
        place
    }
}

/// Reports counted ahead of one when estimating its wait: past this many the
/// estimate is long anyway, and the reconciler simply asks again.
const REPORTS_COUNTED: usize = 1000;

/// Shared by every clone of the client.
pub struct Limiter {
    interval: Duration,
    per_minute: u32,
    per_hour: usize,
    slots: Mutex<Slots>,
    in_flight: Arc<Semaphore>,
}

impl Limiter {
    /// `per_minute` writes a minute and `per_hour` an hour, at most
    /// `max_in_flight` at once.
    pub fn new(per_minute: u32, per_hour: u32, max_in_flight: usize) -> Limiter {
        let per_minute = per_minute.max(1);
        let now = Instant::now();
        Limiter {
            interval: Duration::from_secs(60) / per_minute,
            per_minute,
            per_hour: per_hour.max(1) as usize,
            slots: Mutex::new(Slots {
                next: now,
                hour: VecDeque::new(),
                blocked_until: now,
                strikes: 0,
                pauses: 0,
                reserved: HashMap::new(),
                order: VecDeque::new(),
                reports: BTreeMap::new(),
                report_places: HashMap::new(),
                next_place: 0,
                reports_dropped: 0,
            }),
            in_flight: Arc::new(Semaphore::new(max_in_flight.max(1))),
        }
    }

    fn slots(&self) -> MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// When the answer under `key` may be written. Reserves a slot on the
    /// first ask and keeps it until [`Limiter::acquire`] uses it, so asking
    /// again never loses the place. A report still waiting under `key` is
    /// dropped: the answer ends what it would have reported on.
    pub fn turn(&self, key: &str) -> Turn {
        let now = Instant::now();
        let mut s = self.slots();
        s.expire(now);
        if let Some(place) = s.report_places.get(key).copied() {
            s.drop_report_at(place);
        }
        let at = match s.reserved(key) {
            Some(at) => at,
            None => {
                let at = s.take(self.interval, self.per_hour);
                s.reserve(key, at);
                at
            }
        };
        if at <= now + INLINE_WAIT {
            Turn::Now
        } else {
            Turn::Later(at - now)
        }
    }

    /// When the status report under `key` may be written: [`Turn::Now`] only
    /// when it is the longest-waiting report and the next slot is free (no
    /// answer holds one ahead), and then the slot is reserved for
    /// [`Limiter::acquire`]. Otherwise it keeps its place among the reports,
    /// without a slot, and is told roughly when to ask again.
    pub fn report_turn(&self, key: &str) -> Turn {
        let now = Instant::now();
        let mut s = self.slots();
        s.expire(now);
        if let Some(at) = s.reserved(key) {
            // Its turn already came (or an answer's did): use that slot.
            return if at <= now + INLINE_WAIT {
                Turn::Now
            } else {
                Turn::Later(at - now)
            };
        }
        let place = s.report_place(key, now);
        let ahead = s.reports.range(..place).take(REPORTS_COUNTED).count() as u32;
        let free_at = s.free_at(now, self.per_hour);
        if ahead == 0 && free_at <= now + INLINE_WAIT {
            if let Some(r) = s.reports.remove(&place) {
                s.report_places.remove(&r.key);
            }
            let at = s.take(self.interval, self.per_hour);
            s.reserve(key, at);
            return Turn::Now;
        }
        let wait = (free_at - now) + self.interval.saturating_mul(ahead);
        let wait = wait.max(INLINE_WAIT);
        if let Some(r) = s.reports.get_mut(&place) {
            r.back = now + wait;
        }
        Turn::Later(wait)
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
                    s.take(self.interval, self.per_hour)
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

    /// How long every request waits for a pause GitHub imposed (a rate limit
    /// on any call); zero when none is in force. Reads honour it too.
    pub fn paused_for(&self) -> Duration {
        self.slots()
            .blocked_until
            .saturating_duration_since(Instant::now())
    }

    /// Writes left in each budget window (`minute`, `hour`) now: the
    /// window's limit less the slots taken in its last span (slots reserved
    /// for later count as taken).
    pub fn budget_remaining(&self) -> [(&'static str, u64); 2] {
        let now = Instant::now();
        let s = self.slots();
        let used_in =
            |window: Duration| s.hour.iter().filter(|t| **t + window > now).count() as u64;
        let minute = (self.per_minute as u64).saturating_sub(used_in(Duration::from_secs(60)));
        let hour = (self.per_hour as u64).saturating_sub(used_in(HOUR));
        [("minute", minute), ("hour", hour)]
    }

    /// A write went through: forget earlier secondary-limit strikes.
    pub fn succeeded(&self) {
        self.slots().strikes = 0;
    }

    /// Reservations held now.
    pub fn reservations(&self) -> usize {
        self.slots().reserved.len()
    }

    /// Status reports waiting for a slot now.
    pub fn reports_waiting(&self) -> usize {
        self.slots().reports.len()
    }

    /// Status reports given up since start (an answer came first, or nobody
    /// came back for them).
    pub fn reports_dropped(&self) -> u64 {
        self.slots().reports_dropped
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
        let l = Limiter::new(60, 100_000, 10);
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
        let l = Limiter::new(60, 100_000, 10);
        assert_eq!(l.turn("a"), Turn::Now);
        assert_eq!(l.turn("b"), Turn::Later(Duration::from_secs(1)));
        let pause = l.secondary_limit(None);
        assert_eq!(pause, Duration::from_secs(60));
        // b's slot fell inside the pause: it gets one after the pause.
        assert_eq!(l.turn("b"), Turn::Later(Duration::from_secs(60)));
        assert_eq!(l.turn("c"), Turn::Later(Duration::from_secs(61)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_report_lets_every_answer_go_first() {
        let l = Limiter::new(60, 100_000, 10);
        // Nothing queued: a report goes at once.
        assert_eq!(l.report_turn("r1"), Turn::Now);
        drop(l.acquire("r1").await);
        // Two more reports wait for the next free slot, one behind the other.
        assert_eq!(l.report_turn("r2"), Turn::Later(Duration::from_secs(1)));
        assert_eq!(l.report_turn("r3"), Turn::Later(Duration::from_secs(2)));
        // Answers asked later still come first: the reports hold no slot.
        assert_eq!(l.turn("a1"), Turn::Later(Duration::from_secs(1)));
        assert_eq!(l.turn("a2"), Turn::Later(Duration::from_secs(2)));
        tokio::time::advance(Duration::from_secs(1)).await;
        // r2's slot went to a1; it is told to come back after a2's.
        assert_eq!(l.report_turn("r2"), Turn::Later(Duration::from_secs(2)));
        assert_eq!(l.turn("a1"), Turn::Now);
        drop(l.acquire("a1").await);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(l.turn("a2"), Turn::Now);
        drop(l.acquire("a2").await);
        // The answers are out: now the reports, oldest first.
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(l.report_turn("r3"), Turn::Later(Duration::from_secs(1)));
        assert_eq!(l.report_turn("r2"), Turn::Now);
        drop(l.acquire("r2").await);
        assert_eq!(l.reports_waiting(), 1);
        assert_eq!(l.reports_dropped(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_report_keeps_one_place_and_its_answer_drops_it() {
        let l = Limiter::new(60, 100_000, 10);
        assert_eq!(l.turn("a"), Turn::Now);
        // Asked three times (its text changed twice): one place, one report.
        for _ in 0..3 {
            assert_eq!(l.report_turn("g"), Turn::Later(Duration::from_secs(1)));
        }
        assert_eq!(l.reports_waiting(), 1);
        // The gate is decided: its answer takes a slot and the report is gone.
        assert_eq!(l.turn("g"), Turn::Later(Duration::from_secs(1)));
        assert_eq!(l.reports_waiting(), 0);
        assert_eq!(l.reports_dropped(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_report_nobody_comes_back_for_is_dropped() {
        let l = Limiter::new(60, 100_000, 10);
        assert_eq!(l.turn("a"), Turn::Now);
        assert_eq!(l.report_turn("gone"), Turn::Later(Duration::from_secs(1)));
        assert_eq!(l.report_turn("next"), Turn::Later(Duration::from_secs(2)));
        drop(l.acquire("a").await);
        // Past the first report's come-back time and the grace: its gate
        // never came back (decided, deleted), and it does not block the next.
        tokio::time::advance(Duration::from_millis(11_500)).await;
        assert_eq!(l.report_turn("next"), Turn::Now);
        assert_eq!(l.reports_waiting(), 0);
        assert_eq!(l.reports_dropped(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn the_hourly_budget_holds_back_a_burst_the_minute_rate_allows() {
        // 60 a minute, 100 an hour: the 101st slot comes an hour after the first.
        let l = Limiter::new(60, 100, 10);
        let start = Instant::now();
        let mut slots = Vec::new();
        for k in 0..150 {
            drop(l.acquire(&format!("k{k}")).await);
            slots.push(Instant::now() - start);
        }
        assert_eq!(slots[99], Duration::from_secs(99));
        assert_eq!(slots[100], Duration::from_secs(3600));
        assert_eq!(slots[149], Duration::from_secs(3649));
        assert_eq!(l.budget_remaining(), [("minute", 10), ("hour", 0)]);
    }

    #[tokio::test(start_paused = true)]
    async fn reservations_nobody_uses_expire() {
        let l = Limiter::new(60, 100_000, 10);
        for k in 0..100 {
            l.turn(&format!("k{k}"));
        }
        assert_eq!(l.reservations(), 100);
        tokio::time::advance(Duration::from_secs(200)).await;
        l.turn("late");
        assert_eq!(l.reservations(), 1);
    }
}
