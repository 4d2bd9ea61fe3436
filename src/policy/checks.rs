//! What the engine is told about required checks and workloads, and how
//! GitHub's check runs and commit statuses read as a check's state.

use std::collections::{BTreeMap, HashMap};

/// The combined state of one required check (a check-run name or a commit-status context).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CheckState {
    /// Every run or status of that name succeeded (or was neutral/skipped).
    Success,
    /// A run or status of that name failed, errored, was cancelled or timed out.
    Failure,
    /// Not finished yet, or not reported at all.
    Pending,
}

/// Required check name → state. A required name that is absent counts as pending.
pub type CheckResults = BTreeMap<String, CheckState>;

/// The state of a check run from its status and conclusion.
pub fn check_run_state(status: &str, conclusion: Option<&str>) -> CheckState {
    if status != "completed" {
        return CheckState::Pending;
    }
    match conclusion.unwrap_or("") {
        "success" | "neutral" | "skipped" => CheckState::Success,
        "stale" | "" => CheckState::Pending,
        _ => CheckState::Failure, // failure, cancelled, timed_out, action_required, startup_failure
    }
}

/// The state of a commit status.
pub fn commit_status_state(state: &str) -> CheckState {
    match state {
        "success" => CheckState::Success,
        "failure" | "error" => CheckState::Failure,
        _ => CheckState::Pending,
    }
}

/// Combines what is known of one name: any failure fails; any pending waits; success needs one.
fn combine(states: &[CheckState]) -> CheckState {
    if states.contains(&CheckState::Failure) {
        CheckState::Failure
    } else if states.is_empty() || states.contains(&CheckState::Pending) {
        CheckState::Pending
    } else {
        CheckState::Success
    }
}

/// The state of each required name on a commit, from its check runs
/// `(name, id, status, conclusion)` and commit statuses `(context, state)`:
/// for a re-run name the latest run (highest id) counts, the first status
/// listed per context counts (GitHub lists the latest first), and a name
/// nobody reported is pending.
pub fn required_checks<'a>(
    names: &[String],
    runs: impl IntoIterator<Item = (&'a str, i64, &'a str, Option<&'a str>)>,
    statuses: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> CheckResults {
    let mut latest_run: HashMap<&str, (i64, CheckState)> = HashMap::new();
    for (name, id, status, conclusion) in runs {
        let state = check_run_state(status, conclusion);
        let entry = latest_run.entry(name).or_insert((id, state));
        if id >= entry.0 {
            *entry = (id, state);
        }
    }
    let mut latest_status: HashMap<&str, CheckState> = HashMap::new();
    for (context, state) in statuses {
        latest_status
            .entry(context)
            .or_insert(commit_status_state(state));
    }
    names
        .iter()
        .map(|n| {
            let mut states = Vec::new();
            if let Some((_, s)) = latest_run.get(n.as_str()) {
                states.push(*s);
            }
            if let Some(s) = latest_status.get(n.as_str()) {
                states.push(*s);
            }
            (n.clone(), combine(&states))
        })
        .collect()
}

/// Health of one required workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WorkloadHealth {
    /// Rolled out and available.
    Healthy,
    /// Not (yet) healthy; the text says why, e.g. "2/3 replicas available".
    Unhealthy(String),
}

/// Workload key `Kind/namespace/name` → health. A required workload that is absent
/// counts as unhealthy ("not found").
pub type HealthResults = BTreeMap<String, WorkloadHealth>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conclusions_map_to_check_states() {
        assert_eq!(check_run_state("in_progress", None), CheckState::Pending);
        assert_eq!(
            check_run_state("completed", Some("success")),
            CheckState::Success
        );
        assert_eq!(
            check_run_state("completed", Some("skipped")),
            CheckState::Success
        );
        assert_eq!(
            check_run_state("completed", Some("timed_out")),
            CheckState::Failure
        );
        assert_eq!(commit_status_state("error"), CheckState::Failure);
        assert_eq!(commit_status_state("pending"), CheckState::Pending);
        assert_eq!(combine(&[]), CheckState::Pending);
        assert_eq!(
            combine(&[CheckState::Success, CheckState::Failure]),
            CheckState::Failure
        );
    }

    #[test]
    fn the_latest_run_and_the_first_listed_status_count_per_name() {
        let names: Vec<String> = ["build", "lint", "ci", "never"].map(String::from).to_vec();
        let got = required_checks(
            &names,
            [
                ("build", 2, "completed", Some("success")),
                ("build", 1, "completed", Some("failure")),
                ("lint", 5, "in_progress", None),
            ],
            [("ci", "success"), ("ci", "failure")],
        );
        let want: CheckResults = [
            ("build", CheckState::Success),
            ("lint", CheckState::Pending),
            ("ci", CheckState::Success),
            ("never", CheckState::Pending),
        ]
        .map(|(n, s)| (n.to_string(), s))
        .into_iter()
        .collect();
        assert_eq!(got, want);
    }
}
