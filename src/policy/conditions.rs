//! Standard `metav1.Condition`s that keep `lastTransitionTime` when nothing changed.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// Sets condition `type_`. `lastTransitionTime` moves only when the status
/// flips; reason, message and observedGeneration are kept current. Returns
/// true when anything changed.
pub fn set_condition(
    conds: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    observed_generation: Option<i64>,
    now: Timestamp,
) -> bool {
    let status = if status { "True" } else { "False" }.to_string();
    let reason = if reason.is_empty() {
        "Unspecified".to_string()
    } else {
        reason.to_string()
    };
    match conds.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            let before = c.clone();
            if c.status != status {
                c.last_transition_time = Time(now);
            }
            c.status = status;
            c.reason = reason;
            c.message = message.to_string();
            c.observed_generation = observed_generation;
            *c != before
        }
        None => {
            conds.push(Condition {
                type_: type_.to_string(),
                status,
                reason,
                message: message.to_string(),
                observed_generation,
                last_transition_time: Time(now),
            });
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_moves_only_when_status_flips() {
        let t0: Timestamp = "2026-11-22T10:00:00Z".parse().expect("ts");
        let t1: Timestamp = "2026-11-22T11:00:00Z".parse().expect("ts");
        let mut c = Vec::new();
        assert!(set_condition(
            &mut c,
            "Blocked",
            true,
            "Held",
            "a",
            Some(1),
            t0
        ));
        assert!(set_condition(
            &mut c,
            "Blocked",
            true,
            "Held",
            "b",
            Some(2),
            t1
        ));
        assert_eq!(c[0].last_transition_time, Time(t0));
        assert_eq!(c[0].message, "b");
        assert!(!set_condition(
            &mut c,
            "Blocked",
            true,
            "Held",
            "b",
            Some(2),
            t1
        ));
        assert!(set_condition(
            &mut c,
            "Blocked",
            false,
            "Decided",
            "",
            Some(2),
            t1
        ));
        assert_eq!(c[0].last_transition_time, Time(t1));
        assert_eq!(c.len(), 1);
    }
}
