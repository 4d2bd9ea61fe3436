//! Which ReleasePause changes wake gates: spec changes (a new sha, a changed
//! scope), a newly recorded recovery (`status.recovery`: only a recorded resume
//! releases gates, see policy/recovery.rs) and deletions, at once. Other
//! status-only writes (held-gate counts) wake nobody, so a busy pause does not
//! make every gate it holds re-evaluate.
//!
//! The changes are taken from the pause reflector's own stream, after the
//! reflector has stored them: a gate woken by a resume always reads the resumed
//! pause from the cache. (A second watch could deliver the resume first, and the
//! gate would re-evaluate against the old pause and stay held until its deadline.)

use std::collections::HashMap;

use kube::runtime::watcher;

use crate::api::{Recovery, ReleasePause};

/// Remembers each pause's last seen generation and recorded recovery, to pass
/// on only the changes that can release or hold a gate.
#[derive(Default)]
pub struct SpecChanges {
    seen: HashMap<String, (Option<i64>, Option<Recovery>)>,
}

impl SpecChanges {
    /// The pause whose spec or recorded recovery this event changed (or that
    /// it deleted), if any.
    pub fn changed(&mut self, event: &watcher::Event<ReleasePause>) -> Option<ReleasePause> {
        match event {
            watcher::Event::Apply(p) | watcher::Event::InitApply(p) => {
                let uid = p.metadata.uid.clone().unwrap_or_default();
                let now = (
                    p.metadata.generation,
                    p.status.as_ref().and_then(|s| s.recovery.clone()),
                );
                match self.seen.insert(uid, now.clone()) {
                    Some(previous) if previous == now => None,
                    _ => Some(p.clone()),
                }
            }
            watcher::Event::Delete(p) => {
                self.seen
                    .remove(&p.metadata.uid.clone().unwrap_or_default());
                Some(p.clone())
            }
            watcher::Event::Init | watcher::Event::InitDone => None,
        }
    }
}
