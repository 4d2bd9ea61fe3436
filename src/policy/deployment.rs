//! The deployment an approved gate let through: GitHub's `deployment_status`
//! states mapped to [`DeploymentState`], and the forward-only merge of an
//! incoming status into the recorded outcome. Pure: no I/O, `now` is given.
//!
//! - `queued`, `pending`, `in_progress` → Deploying; `success` → Ready;
//!   `failure`, `error` → Failed; `inactive` (GitHub marks a deployment
//!   inactive when a newer one replaces it) changes nothing: a Ready
//!   deployment stays Ready.
//! - Same deployment id: only forward (the transition guard's edges), so a
//!   duplicate or a late `in_progress` after `success` is absorbed.
//! - A newer deployment id (an explicit redeploy) starts over; an older one is
//!   a stale delivery and is ignored (GitHub's deployment ids only grow).

use jiff::{SignedDuration, Timestamp};

use super::transition::{Guard, guard_deployment};
use crate::api::{DeploymentOutcome, DeploymentState};

/// One `deployment_status` as GitHub reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusReport {
    /// `deployment.id`.
    pub deployment_id: i64,
    /// `deployment_status.state`, as GitHub spells it.
    pub state: String,
    /// `deployment_status.environment_url` (or `target_url`), if any.
    pub url: Option<String>,
    /// `deployment_status.description`, if any.
    pub description: Option<String>,
}

/// The state a GitHub `deployment_status.state` means; `None` for states that
/// never move the outcome (`inactive`, and anything GitHub adds later).
pub fn state_of(github_state: &str) -> Option<DeploymentState> {
    match github_state {
        "queued" | "pending" | "in_progress" => Some(DeploymentState::Deploying),
        "success" => Some(DeploymentState::Ready),
        "failure" | "error" => Some(DeploymentState::Failed),
        _ => None,
    }
}

/// What an incoming status does to the recorded outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Nothing to write: a duplicate, a stale or backwards report, or `inactive`.
    Unchanged { why: String },
    /// The new outcome to record: one transition.
    Advance(DeploymentOutcome),
}

/// Merges `report` into `current` (absent: approved, nothing reported yet).
pub fn merge(current: Option<&DeploymentOutcome>, report: &StatusReport, now: Timestamp) -> Step {
    let Some(state) = state_of(&report.state) else {
        return Step::Unchanged {
            why: format!("a `{}` status does not change the outcome", report.state),
        };
    };
    let id = Some(report.deployment_id);
    if let Some(cur) = current
        && let Some(cur_id) = cur.id
        && report.deployment_id < cur_id
    {
        return Step::Unchanged {
            why: format!(
                "deployment {} is older than deployment {cur_id}, which the gate follows",
                report.deployment_id
            ),
        };
    }
    let same_deployment = current.is_some_and(|c| c.id == id || c.id.is_none());
    let from = current.map(|c| (if same_deployment { id } else { c.id }, c.state));
    if same_deployment && current.is_some_and(|c| c.state == state) {
        return Step::Unchanged {
            why: format!("deployment {} is already {state:?}", report.deployment_id),
        };
    }
    if let Guard::Refuse { why } = guard_deployment(from, (id, state)) {
        return Step::Unchanged { why };
    }
    Step::Advance(DeploymentOutcome {
        id,
        state,
        url: report.url.clone().filter(|u| !u.is_empty()),
        reason: Some(reason_for(report, state)),
        updated_at: Some(now),
    })
}

fn reason_for(report: &StatusReport, state: DeploymentState) -> String {
    let what = match state {
        DeploymentState::Deploying => "deploying",
        DeploymentState::Ready => "deployed",
        DeploymentState::Failed => "failed",
        DeploymentState::Pending | DeploymentState::Unknown => "reported",
    };
    let mut reason = format!(
        "deployment {} {what} ({})",
        report.deployment_id, report.state
    );
    if let Some(d) = report.description.as_deref().filter(|d| !d.is_empty()) {
        reason.push_str(": ");
        reason.push_str(d);
    }
    let mut cut = reason.len().min(1024);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    reason.truncate(cut);
    reason
}

/// For an approved gate whose deployment has not reported: when it becomes
/// Unknown (`approved_at + window`), and the outcome to write once that time has
/// come. `None` when the deployment has reported (or was already marked Unknown).
pub fn silence_deadline(
    current: Option<&DeploymentOutcome>,
    approved_at: Timestamp,
    window: std::time::Duration,
) -> Option<Timestamp> {
    if current.is_some_and(|c| c.state != DeploymentState::Pending) {
        return None;
    }
    let window = SignedDuration::try_from(window).unwrap_or(SignedDuration::MAX);
    Some(approved_at.checked_add(window).unwrap_or(Timestamp::MAX))
}

/// The Unknown outcome of a deployment that stayed silent for `window`.
pub fn silent(
    current: Option<&DeploymentOutcome>,
    window: std::time::Duration,
    now: Timestamp,
) -> DeploymentOutcome {
    let secs = window.as_secs();
    let human = if secs > 0 && secs.is_multiple_of(3600) {
        format!("{}h", secs / 3600)
    } else if secs > 0 && secs.is_multiple_of(60) {
        format!("{}m", secs / 60)
    } else {
        format!("{secs}s")
    };
    DeploymentOutcome {
        id: current.and_then(|c| c.id),
        state: DeploymentState::Unknown,
        url: None,
        reason: Some(format!(
            "no deployment_status reported within {human} of the approval"
        )),
        updated_at: Some(now),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2026-11-23T10:00:00Z".parse().expect("timestamp")
    }

    fn report(id: i64, state: &str) -> StatusReport {
        StatusReport {
            deployment_id: id,
            state: state.into(),
            url: Some("https://web.example.com".into()),
            description: None,
        }
    }

    fn outcome(id: i64, state: DeploymentState) -> DeploymentOutcome {
        DeploymentOutcome {
            id: Some(id),
            state,
            url: None,
            reason: None,
            updated_at: None,
        }
    }

    fn advanced(step: Step) -> DeploymentState {
        match step {
            Step::Advance(o) => o.state,
            Step::Unchanged { why } => panic!("expected a transition, got unchanged: {why}"),
        }
    }

    #[test]
    fn github_states_map_to_the_lifecycle() {
        use DeploymentState::*;
        assert_eq!(state_of("queued"), Some(Deploying));
        assert_eq!(state_of("pending"), Some(Deploying));
        assert_eq!(state_of("in_progress"), Some(Deploying));
        assert_eq!(state_of("success"), Some(Ready));
        assert_eq!(state_of("failure"), Some(Failed));
        assert_eq!(state_of("error"), Some(Failed));
        assert_eq!(state_of("inactive"), None);
        assert_eq!(state_of("something_new"), None);
    }

    #[test]
    fn first_report_advances_from_pending_with_url_and_reason() {
        let step = merge(None, &report(7, "in_progress"), now());
        assert_eq!(
            step,
            Step::Advance(DeploymentOutcome {
                id: Some(7),
                state: DeploymentState::Deploying,
                url: Some("https://web.example.com".into()),
                reason: Some("deployment 7 deploying (in_progress)".into()),
                updated_at: Some(now()),
            })
        );
    }

    #[test]
    fn success_after_in_progress_is_ready_and_failure_is_failed() {
        let deploying = outcome(7, DeploymentState::Deploying);
        assert_eq!(
            advanced(merge(Some(&deploying), &report(7, "success"), now())),
            DeploymentState::Ready
        );
        assert_eq!(
            advanced(merge(Some(&deploying), &report(7, "error"), now())),
            DeploymentState::Failed
        );
    }

    #[test]
    fn late_in_progress_after_success_and_duplicates_are_absorbed() {
        let ready = outcome(7, DeploymentState::Ready);
        assert!(matches!(
            merge(Some(&ready), &report(7, "in_progress"), now()),
            Step::Unchanged { .. }
        ));
        assert!(matches!(
            merge(Some(&ready), &report(7, "success"), now()),
            Step::Unchanged { .. }
        ));
        let failed = outcome(7, DeploymentState::Failed);
        assert!(matches!(
            merge(Some(&failed), &report(7, "success"), now()),
            Step::Unchanged { .. }
        ));
        assert!(matches!(
            merge(Some(&failed), &report(7, "failure"), now()),
            Step::Unchanged { .. }
        ));
    }

    #[test]
    fn inactive_after_success_stays_ready() {
        let ready = outcome(7, DeploymentState::Ready);
        assert_eq!(
            merge(Some(&ready), &report(7, "inactive"), now()),
            Step::Unchanged {
                why: "a `inactive` status does not change the outcome".into()
            }
        );
    }

    #[test]
    fn a_newer_deployment_starts_over_and_an_older_one_is_stale() {
        let failed = outcome(7, DeploymentState::Failed);
        assert_eq!(
            advanced(merge(Some(&failed), &report(8, "queued"), now())),
            DeploymentState::Deploying
        );
        let ready = outcome(8, DeploymentState::Ready);
        assert!(matches!(
            merge(Some(&ready), &report(7, "failure"), now()),
            Step::Unchanged { .. }
        ));
    }

    #[test]
    fn unknown_moves_on_when_the_deployment_reports_late() {
        let unknown = DeploymentOutcome {
            id: None,
            ..outcome(0, DeploymentState::Unknown)
        };
        assert_eq!(
            advanced(merge(Some(&unknown), &report(7, "success"), now())),
            DeploymentState::Ready
        );
    }

    #[test]
    fn silence_deadline_only_while_nothing_reported() {
        let approved = now();
        let window = std::time::Duration::from_secs(3600);
        assert_eq!(
            silence_deadline(None, approved, window),
            Some("2026-11-23T11:00:00Z".parse().expect("timestamp"))
        );
        assert_eq!(
            silence_deadline(
                Some(&outcome(7, DeploymentState::Deploying)),
                approved,
                window
            ),
            None
        );
        let s = silent(None, window, now());
        assert_eq!(s.state, DeploymentState::Unknown);
        assert_eq!(
            s.reason.as_deref(),
            Some("no deployment_status reported within 1h of the approval")
        );
        assert_eq!(
            silence_deadline(Some(&s), approved, window),
            None,
            "Unknown is written once"
        );
    }
}
