//! When a gate must be answered at the latest.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use crate::api::{DeploymentGateSpec, MAX_GATE_LIFETIME, parse_duration};

/// The effective deadline of a gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResolvedDeadline {
    /// The instant.
    pub at: Timestamp,
    /// True when the requested deadline was later than GitHub allows and was cut to 29 days.
    pub clamped: bool,
}

fn plus(t: Timestamp, d: Duration) -> Timestamp {
    SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_add(d).ok())
        .unwrap_or(Timestamp::MAX)
}

/// `spec.deadline`, else creation + `spec.timeout`, else creation + the default;
/// never later than creation + 29 days. A timeout the schema let through but that
/// does not parse falls back to the default (fail towards an answer, not a hang).
pub fn resolve(
    spec: &DeploymentGateSpec,
    created: Timestamp,
    default_timeout: Duration,
) -> ResolvedDeadline {
    let limit = plus(created, MAX_GATE_LIFETIME);
    let wanted = match (spec.deadline, spec.timeout.as_deref()) {
        (Some(at), _) => at,
        (None, Some(t)) => plus(created, parse_duration(t).unwrap_or(default_timeout)),
        (None, None) => plus(created, default_timeout),
    };
    if wanted > limit {
        ResolvedDeadline {
            at: limit,
            clamped: true,
        }
    } else {
        ResolvedDeadline {
            at: wanted,
            clamped: false,
        }
    }
}
