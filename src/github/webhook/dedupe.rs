//! Delivery dedupe. GitHub redelivers a webhook (by hand, or when the sweeper
//! asks) under the same `X-GitHub-Delivery` id with the same signed body. A
//! delivery already answered with a 2xx is answered again as a duplicate
//! without another write to the API server. The deterministic gate name
//! already makes a redelivery harmless; this only saves the write.
//!
//! A delivery is known by its id and its signature (so, its body): an id that
//! came with other content (never from GitHub; perhaps from a proxy or a
//! test) is handled afresh, never dropped. Only deliveries that passed the
//! signature check and were answered 2xx are remembered, so a forger cannot
//! fill the memory (someone replaying a captured signed body under new ids
//! can only push entries out, which costs a write, never an answer) and a
//! delivery that failed is tried again in full.
//!
//! What ends an entry: `ttl` after it was recorded, or being the oldest when
//! `capacity` deliveries are held (10 minutes, 10,000). Ids longer than
//! `MAX_ID_BYTES` are not remembered, so each entry stays small.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// Deliveries remembered at most (GitHub sends one per request and event).
const CAPACITY: usize = 10_000;
/// How long a delivery is remembered; GitHub's and the sweeper's
/// redeliveries of a lost delivery come within minutes.
const TTL: Duration = Duration::from_secs(10 * 60);
/// Longest id remembered (GitHub's are 36-character GUIDs).
const MAX_ID_BYTES: usize = 64;
/// Hex digits of the signature kept with the id: enough to tell bodies apart.
const DIGEST_HEX: usize = 16;

/// A delivery's identity: its id and a prefix of its body's signature.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct DeliveryKey(String);

impl DeliveryKey {
    /// The key of a delivery with id `id` and the (already verified)
    /// `X-Hub-Signature-256` value `signature`; `None` when either is missing
    /// or the id is too long to remember.
    pub(super) fn new(id: Option<&str>, signature: Option<&str>) -> Option<DeliveryKey> {
        let id = id.filter(|i| !i.is_empty() && i.len() <= MAX_ID_BYTES)?;
        let digest = signature?.trim().strip_prefix("sha256=")?;
        let digest = digest.get(..DIGEST_HEX)?;
        Some(DeliveryKey(format!("{id} {digest}")))
    }
}

/// The deliveries answered recently.
#[derive(Debug)]
pub(super) struct Deliveries {
    capacity: usize,
    ttl: Duration,
    seen: Mutex<Seen>,
}

#[derive(Debug, Default)]
struct Seen {
    at: HashMap<DeliveryKey, Instant>,
    /// The same keys, oldest first: what expires or is pushed out next.
    order: VecDeque<(DeliveryKey, Instant)>,
}

impl Seen {
    fn prune(&mut self, now: Instant, ttl: Duration, capacity: usize) {
        while let Some((key, at)) = self.order.front() {
            let expired = now.saturating_duration_since(*at) >= ttl;
            if !expired && self.order.len() <= capacity {
                break;
            }
            self.at.remove(key);
            self.order.pop_front();
        }
    }
}

impl Default for Deliveries {
    fn default() -> Self {
        Deliveries::new(CAPACITY, TTL)
    }
}

impl Deliveries {
    /// At most `capacity` deliveries, each for `ttl`.
    pub(super) fn new(capacity: usize, ttl: Duration) -> Deliveries {
        Deliveries {
            capacity: capacity.max(1),
            ttl,
            seen: Mutex::default(),
        }
    }

    /// True when `key` was answered within the TTL.
    pub(super) fn seen(&self, key: &DeliveryKey, now: Instant) -> bool {
        let mut s = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        s.prune(now, self.ttl, self.capacity);
        s.at.contains_key(key)
    }

    /// Remembers that `key` was answered at `now` (a key already held keeps
    /// its first time: its TTL counts from the first answer).
    pub(super) fn record(&self, key: DeliveryKey, now: Instant) {
        let mut s = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        s.prune(now, self.ttl, self.capacity);
        if s.at.contains_key(&key) {
            return;
        }
        s.at.insert(key.clone(), now);
        s.order.push_back((key, now));
        s.prune(now, self.ttl, self.capacity);
    }

    /// Deliveries held now (expired ones may still count until the next call).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .at
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIG: &str = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
    const OTHER_SIG: &str =
        "sha256=0000000000000000c211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    fn key(id: &str) -> DeliveryKey {
        DeliveryKey::new(Some(id), Some(SIG)).expect("a key")
    }

    #[test]
    fn a_delivery_is_known_by_its_id_and_signature() {
        assert_eq!(
            DeliveryKey::new(Some("72d3162e"), Some(SIG)),
            DeliveryKey::new(Some("72d3162e"), Some(SIG))
        );
        assert_ne!(
            DeliveryKey::new(Some("72d3162e"), Some(SIG)),
            DeliveryKey::new(Some("72d3162e"), Some(OTHER_SIG))
        );
        assert_eq!(DeliveryKey::new(None, Some(SIG)), None);
        assert_eq!(DeliveryKey::new(Some(""), Some(SIG)), None);
        assert_eq!(DeliveryKey::new(Some("x"), None), None);
        assert_eq!(DeliveryKey::new(Some("x"), Some("sha256=ab")), None);
        let long = "a".repeat(MAX_ID_BYTES + 1);
        assert_eq!(DeliveryKey::new(Some(&long), Some(SIG)), None);
    }

    #[test]
    fn a_recorded_delivery_is_seen_until_its_ttl_ends() {
        let d = Deliveries::new(10, Duration::from_secs(600));
        let t0 = Instant::now();
        assert!(!d.seen(&key("a"), t0));
        d.record(key("a"), t0);
        assert!(d.seen(&key("a"), t0 + Duration::from_secs(599)));
        // Recording again does not extend the TTL.
        d.record(key("a"), t0 + Duration::from_secs(300));
        assert!(!d.seen(&key("a"), t0 + Duration::from_secs(600)));
        assert_eq!(d.len(), 0);
    }

    #[test]
    fn the_oldest_delivery_makes_room_at_the_capacity() {
        let d = Deliveries::new(3, Duration::from_secs(600));
        let t0 = Instant::now();
        for (i, id) in ["a", "b", "c", "d"].iter().enumerate() {
            d.record(key(id), t0 + Duration::from_secs(i as u64));
        }
        let now = t0 + Duration::from_secs(10);
        assert_eq!(d.len(), 3);
        assert!(!d.seen(&key("a"), now));
        assert!(d.seen(&key("b"), now));
        assert!(d.seen(&key("d"), now));
    }

    #[test]
    fn memory_stays_bounded_under_a_stream_of_ids() {
        let d = Deliveries::new(100, Duration::from_secs(600));
        let t0 = Instant::now();
        for i in 0..10_000u64 {
            d.record(key(&i.to_string()), t0 + Duration::from_millis(i));
        }
        assert_eq!(d.len(), 100);
        let s = d.seen.lock().expect("not poisoned");
        assert_eq!(s.order.len(), 100);
    }
}
