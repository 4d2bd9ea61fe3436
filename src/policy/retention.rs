//! Retention: which finished gates and automatic pauses to delete now, and
//! when to look again. Pure: no I/O, `now` is given.
//!
//! A gate is *finished* when nothing about it can still change by itself:
//!
//! - its answer went out (delivery `Delivered` or `Settled`, or `Failed`
//!   because the run is gone at GitHub) and, for a delivered approval, the
//!   deployment it let through reached a final outcome (`Ready`, `Failed`, or
//!   `Unknown` after the report window);
//! - or its phase is `Unknown` (the run ended or vanished while undecided);
//! - or tenancy refused it (`Forbidden=True`): it is never decided.
//!
//! A delivered approval whose deployment reported progress and then fell
//! silent (`Deploying` with no report since) counts as finished at its last
//! report once that is `finishedTTL` old: nothing will ever report it, and it
//! must not be kept forever.
//!
//! Finished gates are deleted `finishedTTL` after they finished
//! (`status.finishedAt`; for gates finished before that field existed, the
//! latest time their status records). The newest `keepPerEnvironment`
//! finished gates of each (namespace, repository, environment) are kept until
//! newer ones finish, so `kubectl get dg` shows recent history. The namespace
//! is part of the group because it is the trust boundary: another team's
//! gates never push a team's history out. A gate labelled
//! `tollgate.dev/keep=true` is never deleted and takes no place among the
//! newest.
//!
//! Automatic pauses (those intake writes) follow the same TTL once they are
//! resumed (from the recovery's time) or expired (from `expiresAt`); a pause a
//! person wrote is never deleted.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use crate::api::{
    CONDITION_FORBIDDEN, DeliveryState, DeploymentGateStatus, DeploymentState, PauseState, Phase,
    ReleasePause, Verdict,
};

/// What retention keeps, from the operator's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// How long a finished object stays.
    pub finished_ttl: Duration,
    /// Finished gates kept per (namespace, repository, environment) however old.
    pub keep_per_environment: u32,
}

/// True when `status` shows a gate with nothing left to do (see the module
/// documentation); the silent-deployment rule needs a time and is in
/// [`finished_since`].
pub fn is_finished(status: &DeploymentGateStatus) -> bool {
    if status.phase == Some(Phase::Unknown) || shows(status, CONDITION_FORBIDDEN) {
        return true;
    }
    let (Some(decision), Some(delivery)) = (&status.decision, &status.delivery) else {
        return false;
    };
    match delivery.state {
        DeliveryState::Pending => false,
        DeliveryState::Settled | DeliveryState::Failed => true,
        DeliveryState::Delivered if decision.delivered_verdict() == Verdict::Reject => true,
        DeliveryState::Delivered => status
            .deployment
            .as_ref()
            .is_some_and(|d| deployment_final(d.state)),
    }
}

fn deployment_final(state: DeploymentState) -> bool {
    matches!(
        state,
        DeploymentState::Ready | DeploymentState::Failed | DeploymentState::Unknown
    )
}

fn shows(status: &DeploymentGateStatus, condition: &str) -> bool {
    status
        .conditions
        .iter()
        .any(|c| c.type_ == condition && c.status == "True")
}

/// Sets `status.finishedAt` on a status about to be written: `now` when it
/// makes the gate finished (kept when it already was), cleared when it does
/// not (a newer deployment started over, tenancy now admits the gate).
pub fn stamp(status: &mut DeploymentGateStatus, now: Timestamp) {
    if is_finished(status) {
        status.finished_at.get_or_insert(now);
    } else {
        status.finished_at = None;
    }
}

/// Since when the gate is finished, or `None` while it is not. `created` is
/// the object's creation time, the last resort for a gate finished before
/// `finishedAt` was recorded.
pub fn finished_since(
    status: Option<&DeploymentGateStatus>,
    created: Option<Timestamp>,
    rules: &Rules,
    now: Timestamp,
) -> Option<Timestamp> {
    let status = status?;
    if is_finished(status) {
        return status
            .finished_at
            .or_else(|| latest_recorded(status))
            .or(created);
    }
    // A deployment that reported progress, then nothing for a whole TTL.
    let delivered = status
        .delivery
        .as_ref()
        .is_some_and(|d| d.state == DeliveryState::Delivered);
    let deployment = status.deployment.as_ref()?;
    if !delivered || deployment.state != DeploymentState::Deploying {
        return None;
    }
    let last = deployment.updated_at?;
    (due(last, rules.finished_ttl) <= now).then_some(last)
}

/// The latest time a status records: a conservative finishing time (the
/// gate finished no later than its last recorded change).
fn latest_recorded(status: &DeploymentGateStatus) -> Option<Timestamp> {
    let decision = status.decision.as_ref().map(|d| d.decided_at);
    let delivered = status.delivery.as_ref().and_then(|d| d.delivered_at);
    let deployment = status.deployment.as_ref().and_then(|d| d.updated_at);
    let conditions = status
        .conditions
        .iter()
        .map(|c| c.last_transition_time.0)
        .max();
    [decision, delivered, deployment, conditions]
        .into_iter()
        .flatten()
        .max()
}

/// Since when an automatic pause is over: resumed (the recovery's time) or
/// expired (its `expiresAt`). `None` while it can still hold a gate. The
/// state is computed from spec and recorded recovery, not read from status,
/// so a pause restated with a new failure a moment ago is never taken for
/// resumed.
pub fn pause_over_since(pause: &ReleasePause, now: Timestamp) -> Option<Timestamp> {
    if let Some(at) = pause.spec.expires_at
        && at <= now
    {
        return Some(at);
    }
    let eval = super::recovery::pause_state(pause, now).ok()?;
    match eval.state {
        PauseState::Resumed => pause
            .status
            .as_ref()
            .and_then(|s| s.recovery.as_ref())
            .map(|r| r.at),
        PauseState::Active | PauseState::Inactive => None,
    }
}

/// One finished object, as retention sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished<K> {
    /// The group whose newest are kept (for gates: namespace, repository and
    /// environment, lowercased); `None` for objects kept by the TTL alone.
    pub group: Option<K>,
    /// When it finished.
    pub since: Timestamp,
    /// Labelled `tollgate.dev/keep=true`: never deleted.
    pub pinned: bool,
}

/// What to do now.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// Indexes into the input, oldest finish first, of what is due for
    /// deletion now.
    pub delete: Vec<usize>,
    /// The earliest time something not due now becomes due by the TTL alone.
    /// Objects kept as the newest of their group become due only when a newer
    /// one finishes, an event rather than a time, so they set nothing here.
    pub next_look: Option<Timestamp>,
}

/// Which of `finished` to delete at `now`, and when to look again.
pub fn plan<K: Hash + Eq>(finished: &[Finished<K>], rules: &Rules, now: Timestamp) -> Plan {
    // Rank each group's unpinned members, newest first; the first
    // `keep_per_environment` are kept whatever their age.
    let mut groups: HashMap<&K, Vec<usize>> = HashMap::new();
    for (i, f) in finished.iter().enumerate() {
        if let (Some(g), false) = (&f.group, f.pinned) {
            groups.entry(g).or_default().push(i);
        }
    }
    let mut newest = vec![false; finished.len()];
    let keep = rules.keep_per_environment as usize;
    for members in groups.values_mut() {
        if members.len() <= keep {
            members.iter().for_each(|&i| newest[i] = true);
            continue;
        }
        // Ties broken by position, so the outcome never depends on hash order.
        members.sort_by_key(|&i| (std::cmp::Reverse(finished[i].since), i));
        members.iter().take(keep).for_each(|&i| newest[i] = true);
    }
    let mut plan = Plan::default();
    for (i, f) in finished.iter().enumerate() {
        if f.pinned || newest[i] {
            continue;
        }
        let at = due(f.since, rules.finished_ttl);
        if at <= now {
            plan.delete.push(i);
        } else {
            plan.next_look = Some(plan.next_look.map_or(at, |n| n.min(at)));
        }
    }
    plan.delete.sort_by_key(|&i| (finished[i].since, i));
    plan
}

/// When an object finished at `since` is due.
fn due(since: Timestamp, ttl: Duration) -> Timestamp {
    let ttl = SignedDuration::try_from(ttl).unwrap_or(SignedDuration::MAX);
    since.checked_add(ttl).unwrap_or(Timestamp::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{
        Decision, DecisionSource, Delivery, DeploymentOutcome, PauseScope, Recovery,
        ReleasePauseSpec, ReleasePauseStatus,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

    const HOUR: Duration = Duration::from_secs(3600);

    fn t(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    fn rules(ttl_hours: u64, keep: u32) -> Rules {
        Rules {
            finished_ttl: HOUR * ttl_hours as u32,
            keep_per_environment: keep,
        }
    }

    fn decided(verdict: Verdict, delivery: DeliveryState) -> DeploymentGateStatus {
        DeploymentGateStatus {
            phase: Some(Phase::of(verdict)),
            decision: Some(Decision {
                verdict,
                source: DecisionSource::Policy,
                reason: "checks passed".into(),
                decided_at: t("2026-11-23T10:00:00Z"),
                by: None,
                dry_run: false,
            }),
            delivery: Some(Delivery {
                state: delivery,
                attempts: 1,
                last_error: None,
                next_attempt_at: None,
                delivered_at: Some(t("2026-11-23T10:00:01Z")),
                settled_by: None,
            }),
            ..DeploymentGateStatus::default()
        }
    }

    fn with_deployment(
        mut s: DeploymentGateStatus,
        state: DeploymentState,
    ) -> DeploymentGateStatus {
        s.deployment = Some(DeploymentOutcome {
            id: Some(7),
            state,
            url: None,
            reason: None,
            updated_at: Some(t("2026-11-23T10:05:00Z")),
        });
        s
    }

    fn condition(type_: &str, status: &str, at: &str) -> Condition {
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: "Test".into(),
            message: String::new(),
            observed_generation: None,
            last_transition_time: Time(t(at)),
        }
    }

    #[test]
    fn a_delivered_reject_settled_or_failed_answer_is_finished() {
        assert!(is_finished(&decided(
            Verdict::Reject,
            DeliveryState::Delivered
        )));
        assert!(is_finished(&decided(
            Verdict::Approve,
            DeliveryState::Settled
        )));
        assert!(is_finished(&decided(
            Verdict::Approve,
            DeliveryState::Failed
        )));
        assert!(!is_finished(&decided(
            Verdict::Reject,
            DeliveryState::Pending
        )));
        assert!(!is_finished(&DeploymentGateStatus::default()));
    }

    #[test]
    fn a_delivered_approval_is_finished_only_once_its_deployment_outcome_is_final() {
        let approved = decided(Verdict::Approve, DeliveryState::Delivered);
        assert!(!is_finished(&approved), "nothing reported yet");
        for (state, finished) in [
            (DeploymentState::Pending, false),
            (DeploymentState::Deploying, false),
            (DeploymentState::Ready, true),
            (DeploymentState::Failed, true),
            (DeploymentState::Unknown, true),
        ] {
            assert_eq!(
                is_finished(&with_deployment(approved.clone(), state)),
                finished,
                "{state:?}"
            );
        }
    }

    #[test]
    fn unknown_and_forbidden_gates_are_finished_undecided() {
        let unknown = DeploymentGateStatus {
            phase: Some(Phase::Unknown),
            ..DeploymentGateStatus::default()
        };
        assert!(is_finished(&unknown));
        let mut forbidden = DeploymentGateStatus {
            phase: Some(Phase::Pending),
            conditions: vec![condition(
                CONDITION_FORBIDDEN,
                "True",
                "2026-11-23T09:00:00Z",
            )],
            ..DeploymentGateStatus::default()
        };
        assert!(is_finished(&forbidden));
        forbidden.conditions = vec![condition(
            CONDITION_FORBIDDEN,
            "False",
            "2026-11-23T09:00:00Z",
        )];
        assert!(!is_finished(&forbidden));
    }

    #[test]
    fn stamp_records_the_first_finish_and_clears_it_when_work_starts_again() {
        let now = t("2026-11-23T12:00:00Z");
        let mut s = with_deployment(
            decided(Verdict::Approve, DeliveryState::Delivered),
            DeploymentState::Ready,
        );
        stamp(&mut s, now);
        assert_eq!(s.finished_at, Some(now));
        stamp(&mut s, t("2026-11-24T12:00:00Z"));
        assert_eq!(s.finished_at, Some(now), "kept: it finished then");
        // A newer deployment of the same approval starts over.
        s.deployment.as_mut().expect("deployment").state = DeploymentState::Deploying;
        stamp(&mut s, now);
        assert_eq!(s.finished_at, None);
    }

    #[test]
    fn finished_since_prefers_finished_at_then_the_latest_recorded_time_then_creation() {
        let r = rules(168, 10);
        let now = t("2026-12-01T00:00:00Z");
        let created = Some(t("2026-11-23T09:00:00Z"));
        let mut s = with_deployment(
            decided(Verdict::Approve, DeliveryState::Delivered),
            DeploymentState::Ready,
        );
        assert_eq!(
            finished_since(Some(&s), created, &r, now),
            Some(t("2026-11-23T10:05:00Z")),
            "no finishedAt: the deployment's report is the latest time recorded"
        );
        s.finished_at = Some(t("2026-11-23T10:06:00Z"));
        assert_eq!(
            finished_since(Some(&s), created, &r, now),
            Some(t("2026-11-23T10:06:00Z"))
        );
        let unknown = DeploymentGateStatus {
            phase: Some(Phase::Unknown),
            ..DeploymentGateStatus::default()
        };
        assert_eq!(finished_since(Some(&unknown), created, &r, now), created);
        assert_eq!(finished_since(None, created, &r, now), None);
    }

    #[test]
    fn a_deployment_silent_in_deploying_for_a_whole_ttl_counts_as_finished_at_its_last_report() {
        let r = rules(1, 0);
        let s = with_deployment(
            decided(Verdict::Approve, DeliveryState::Delivered),
            DeploymentState::Deploying,
        );
        assert_eq!(
            finished_since(Some(&s), None, &r, t("2026-11-23T11:04:59Z")),
            None
        );
        assert_eq!(
            finished_since(Some(&s), None, &r, t("2026-11-23T11:05:00Z")),
            Some(t("2026-11-23T10:05:00Z"))
        );
    }

    fn gate(group: &str, since: &str) -> Finished<String> {
        Finished {
            group: Some(group.to_string()),
            since: t(since),
            pinned: false,
        }
    }

    #[test]
    fn a_finished_gate_is_due_exactly_at_its_ttl_and_not_a_moment_before() {
        let r = rules(168, 0);
        let gates = [gate("web/production", "2026-11-23T10:00:00Z")];
        let before = plan(&gates, &r, t("2026-11-30T09:59:59.999Z"));
        assert_eq!(
            before,
            Plan {
                delete: vec![],
                next_look: Some(t("2026-11-30T10:00:00Z")),
            }
        );
        let at = plan(&gates, &r, t("2026-11-30T10:00:00Z"));
        assert_eq!(
            at,
            Plan {
                delete: vec![0],
                next_look: None,
            }
        );
    }

    #[test]
    fn the_newest_n_of_each_environment_stay_until_a_newer_one_finishes() {
        let r = rules(1, 2);
        let now = t("2026-11-30T00:00:00Z");
        let mut gates = vec![
            gate("web/production", "2026-11-23T10:00:00Z"),
            gate("web/production", "2026-11-23T11:00:00Z"),
            gate("web/production", "2026-11-23T12:00:00Z"),
            gate("web/staging", "2026-11-23T09:00:00Z"),
        ];
        assert_eq!(
            plan(&gates, &r, now),
            Plan {
                delete: vec![0],
                next_look: None,
            },
            "the two newest of production and the only one of staging stay"
        );
        gates.push(gate("web/production", "2026-11-29T23:30:00Z"));
        assert_eq!(
            plan(&gates, &r, now),
            Plan {
                delete: vec![0, 1],
                next_look: None,
            },
            "a newer finish pushes the third-newest out, oldest first"
        );
    }

    #[test]
    fn a_newest_gate_pushed_out_before_its_ttl_waits_for_its_ttl() {
        let r = rules(1, 1);
        let gates = [
            gate("web/production", "2026-11-23T10:00:00Z"),
            gate("web/production", "2026-11-23T10:30:00Z"),
        ];
        assert_eq!(
            plan(&gates, &r, t("2026-11-23T10:45:00Z")),
            Plan {
                delete: vec![],
                next_look: Some(t("2026-11-23T11:00:00Z")),
            }
        );
    }

    #[test]
    fn a_pinned_gate_is_never_deleted_and_takes_no_place_among_the_newest() {
        let r = rules(1, 1);
        let now = t("2026-11-30T00:00:00Z");
        let mut pinned = gate("web/production", "2026-11-29T00:00:00Z");
        pinned.pinned = true;
        let gates = [
            gate("web/production", "2026-11-23T10:00:00Z"),
            gate("web/production", "2026-11-23T11:00:00Z"),
            pinned,
        ];
        assert_eq!(
            plan(&gates, &r, now),
            Plan {
                delete: vec![0],
                next_look: None,
            }
        );
    }

    #[test]
    fn groupless_objects_go_by_the_ttl_alone() {
        let r = rules(1, 10);
        let lone = Finished::<String> {
            group: None,
            since: t("2026-11-23T10:00:00Z"),
            pinned: false,
        };
        assert_eq!(plan(&[lone], &r, t("2026-11-23T11:00:00Z")).delete, vec![0]);
    }

    fn pause(status: Option<ReleasePauseStatus>, expires: Option<&str>) -> ReleasePause {
        let mut p = ReleasePause::new(
            "ci-failed-acme-web-main",
            ReleasePauseSpec {
                scope: PauseScope {
                    repositories: vec!["acme/web".into()],
                    environments: vec![],
                },
                reason: "ci-failed".into(),
                sha: Some("acb5820ced9479c074f688cc328bf03f341a511d".into()),
                message: None,
                schedule: None,
                resume: None,
                expires_at: expires.map(t),
            },
        );
        p.status = status;
        p
    }

    fn recovered(sha: &str, at: &str) -> ReleasePauseStatus {
        ReleasePauseStatus {
            state: Some(PauseState::Resumed),
            recovery: Some(Recovery {
                sha: Some(sha.into()),
                reason: "ci-failed".into(),
                window: None,
                at: t(at),
                by: None,
            }),
            ..ReleasePauseStatus::default()
        }
    }

    #[test]
    fn a_pause_is_over_when_resumed_or_expired_and_not_when_restated_with_a_new_failure() {
        let now = t("2026-11-30T00:00:00Z");
        assert_eq!(pause_over_since(&pause(None, None), now), None, "active");
        let resumed = pause(
            Some(recovered(
                "acb5820ced9479c074f688cc328bf03f341a511d",
                "2026-11-24T08:00:00Z",
            )),
            None,
        );
        assert_eq!(
            pause_over_since(&resumed, now),
            Some(t("2026-11-24T08:00:00Z"))
        );
        // The status still says Resumed, but the spec names a new failing commit.
        let restated = pause(
            Some(recovered(
                "1111111111111111111111111111111111111111",
                "2026-11-24T08:00:00Z",
            )),
            None,
        );
        assert_eq!(pause_over_since(&restated, now), None);
        let expired = pause(None, Some("2026-11-25T00:00:00Z"));
        assert_eq!(
            pause_over_since(&expired, now),
            Some(t("2026-11-25T00:00:00Z"))
        );
        let later = pause(None, Some("2026-12-25T00:00:00Z"));
        assert_eq!(pause_over_since(&later, now), None);
    }
}
