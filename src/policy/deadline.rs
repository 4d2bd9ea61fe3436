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

/// When the gate was asked for and how long it may wait at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Horizon {
    /// When the gate object was created.
    pub created: Timestamp,
    /// When GitHub raised the request (`spec.requestedAt`), if known. GitHub's
    /// 30 days count from here; a value later than `created` is ignored.
    pub requested: Option<Timestamp>,
    /// The operator's default timeout.
    pub default_timeout: Duration,
    /// The longest the matching intake policy lets a gate wait, from creation.
    pub max_timeout: Duration,
}

/// `spec.deadline`, else creation + `spec.timeout`, else creation + the default;
/// never later than creation + the policy's longest timeout, and never later
/// than 29 days after GitHub raised the request. A timeout the schema let
/// through but that does not parse falls back to the default (fail towards an
/// answer, not a hang).
pub fn resolve(spec: &DeploymentGateSpec, h: &Horizon) -> ResolvedDeadline {
    let created = h.created;
    let asked = h.requested.map_or(created, |r| r.min(created));
    let limit = plus(asked, MAX_GATE_LIFETIME).min(plus(created, h.max_timeout));
    let wanted = match (spec.deadline, spec.timeout.as_deref()) {
        (Some(at), _) => at,
        (None, Some(t)) => plus(created, parse_duration(t).unwrap_or(h.default_timeout)),
        (None, None) => plus(created, h.default_timeout),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(timeout: Option<&str>) -> DeploymentGateSpec {
        let mut v = serde_json::json!({
            "repository": "acme/web", "environment": "production",
            "sha": "a".repeat(40), "runId": 1,
        });
        if let Some(t) = timeout {
            v["timeout"] = t.into();
        }
        serde_json::from_value(v).expect("spec")
    }

    fn at(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    #[test]
    fn githubs_thirty_days_count_from_the_request_not_the_object() {
        let h = Horizon {
            created: at("2026-11-04T00:00:00Z"),
            requested: Some(at("2026-11-01T00:00:00Z")),
            default_timeout: Duration::from_secs(3600),
            max_timeout: MAX_GATE_LIFETIME,
        };
        let d = resolve(&spec(Some("696h")), &h);
        assert_eq!(d.at, at("2026-11-30T00:00:00Z"));
        assert!(d.clamped);
    }

    #[test]
    fn the_policys_timeout_bounds_a_longer_one() {
        let h = Horizon {
            created: at("2026-11-04T00:00:00Z"),
            requested: None,
            default_timeout: Duration::from_secs(3600),
            max_timeout: Duration::from_secs(7200),
        };
        assert_eq!(
            resolve(&spec(Some("72h")), &h).at,
            at("2026-11-04T02:00:00Z")
        );
        assert_eq!(resolve(&spec(None), &h).at, at("2026-11-04T01:00:00Z"));
    }
}
