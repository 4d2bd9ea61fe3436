//! The ReleasePause recovery rule: a pause is Active unless its current
//! (sha, reason) — and, for a freeze window, the current occurrence — equals
//! the recorded recovery. Restating a recovered failure changes nothing; a new
//! sha or reason pauses again.
//!
//! Only a recovery recorded in `status.recovery` releases anything. A
//! `spec.resume` is a request: the operator records it ([`accepted_resume`])
//! and only then do gates pass. So a resume that released a gate is always
//! on record, whatever a writer does to `spec.resume` afterwards, and however
//! late (or never) the operator saw a resume that was removed again.

use jiff::Timestamp;

use super::window::{ScheduleError, Window};
use crate::api::{PauseState, Recovery, ReleasePause};

/// The state of a pause at an instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PauseEval {
    /// Active, Resumed or Inactive.
    pub state: PauseState,
    /// When the state changes next by itself (window opens or ends, expiry).
    pub next_transition: Option<Timestamp>,
    /// Why, in words.
    pub message: String,
    /// For a freeze window that is open now: its start and (if it ends) its end.
    pub window: Option<(Timestamp, Option<Timestamp>)>,
    /// For people: the window end in the schedule's own time zone.
    pub window_end_local: Option<String>,
}

fn min_opt(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

/// True when `recovery` covers the pause's current failure (and window occurrence).
fn covers(
    pause: &ReleasePause,
    sha: Option<&str>,
    reason: &str,
    window: Option<Timestamp>,
    open: Option<Timestamp>,
) -> bool {
    if sha != pause.spec.sha.as_deref() || reason != pause.spec.reason {
        return false;
    }
    match (&pause.spec.schedule, open) {
        (None, _) => true,
        (Some(_), Some(start)) => window == Some(start),
        (Some(_), None) => false,
    }
}

/// The state of `pause` at `now`, from its spec and its recorded recovery.
/// A `spec.resume` not recorded yet does not count: the operator records it
/// first (with the pause's next status write), and the write wakes the gates.
pub fn pause_state(pause: &ReleasePause, now: Timestamp) -> Result<PauseEval, ScheduleError> {
    let expires = pause.spec.expires_at;
    if let Some(at) = expires
        && at <= now
    {
        return Ok(PauseEval {
            state: PauseState::Inactive,
            next_transition: None,
            message: format!("expired at {at}"),
            window: None,
            window_end_local: None,
        });
    }
    let (window, next_start, end_local) = match &pause.spec.schedule {
        None => (None, None, None),
        Some(schedule) => {
            let w = Window::parse(schedule)?;
            let times = w.at(now);
            let end_local = times.current.and_then(|(_, end)| end).map(|e| w.local(e));
            (times.current, times.next_start, end_local)
        }
    };
    if pause.spec.schedule.is_some() && window.is_none() {
        let next = min_opt(next_start, expires);
        let message = match next_start {
            Some(n) => format!("outside its freeze window; the next one opens at {n}"),
            None => "outside its freeze window; no later window".to_string(),
        };
        return Ok(PauseEval {
            state: PauseState::Inactive,
            next_transition: next,
            message,
            window: None,
            window_end_local: None,
        });
    }
    let open = window.map(|(start, _)| start);
    let window_end = window.and_then(|(_, end)| end);
    let resumed = pause
        .status
        .as_ref()
        .and_then(|s| s.recovery.as_ref())
        .is_some_and(|r| covers(pause, r.sha.as_deref(), &r.reason, r.window, open));
    let sha = pause
        .spec
        .sha
        .as_deref()
        .map(|s| &s[..s.len().min(7)])
        .unwrap_or("-");
    if resumed {
        let message = match window_end {
            Some(_) => format!(
                "resumed: {} ({sha}) lifted for this window only",
                pause.spec.reason
            ),
            None => format!(
                "resumed: {} ({sha}) is handled; restating it does not pause again",
                pause.spec.reason
            ),
        };
        return Ok(PauseEval {
            state: PauseState::Resumed,
            next_transition: min_opt(window_end, expires),
            message,
            window,
            window_end_local: end_local,
        });
    }
    let message = match (&end_local, expires) {
        (Some(end), _) => format!("freeze window ({}) until {end}", pause.spec.reason),
        (None, Some(exp)) => format!(
            "holding releases: {} ({sha}) until resumed or {exp}",
            pause.spec.reason
        ),
        (None, None) => format!(
            "holding releases: {} ({sha}) until resumed",
            pause.spec.reason
        ),
    };
    Ok(PauseEval {
        state: PauseState::Active,
        next_transition: min_opt(window_end, expires),
        message,
        window,
        window_end_local: end_local,
    })
}

/// A resume without `window` on a scheduled pause lifts the occurrence open when
/// the operator first records it; once recorded, the record names it.
fn resume_window_default(pause: &ReleasePause, open: Option<Timestamp>) -> Option<Timestamp> {
    pause.spec.schedule.as_ref()?;
    let recorded = pause.status.as_ref().and_then(|s| s.recovery.as_ref());
    match recorded {
        // Already recorded for the same (sha, reason): that record names its window.
        Some(r) if r.sha == pause.spec.sha && r.reason == pause.spec.reason => r.window,
        _ => open,
    }
}

/// The recovery to record in status when `spec.resume` names the pause's current
/// failure (and window occurrence) and status does not already record exactly it.
pub fn accepted_resume(pause: &ReleasePause, now: Timestamp) -> Option<Recovery> {
    let resume = pause.spec.resume.as_ref()?;
    let open = match &pause.spec.schedule {
        None => None,
        Some(schedule) => Window::parse(schedule)
            .ok()?
            .at(now)
            .current
            .map(|(start, _)| start),
    };
    let window = resume.window.or_else(|| resume_window_default(pause, open));
    if !covers(pause, resume.sha.as_deref(), &resume.reason, window, open) {
        return None;
    }
    let recorded = pause.status.as_ref().and_then(|s| s.recovery.as_ref());
    if recorded
        .is_some_and(|r| r.sha == resume.sha && r.reason == resume.reason && r.window == window)
    {
        return None;
    }
    Some(Recovery {
        sha: resume.sha.clone(),
        reason: resume.reason.clone(),
        window,
        at: now,
        by: resume.by.clone(),
    })
}
