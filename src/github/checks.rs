//! Required checks: check runs and commit statuses on a sha, combined per name.

use std::collections::HashMap;

use super::client::{GitHub, split_repository};
use super::error::GitHubError;
use crate::policy::{CheckResults, CheckState};

/// At most this many pages (100 items each) are read per endpoint.
const MAX_PAGES: u32 = 10;

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

impl GitHub {
    /// The combined result of check runs and commit statuses for each required
    /// name on `sha`. A name nobody reported is pending.
    pub async fn checks(
        &self,
        repo: &str,
        installation: Option<i64>,
        sha: &str,
        names: &[String],
    ) -> Result<CheckResults, GitHubError> {
        let op = format!("checks of {repo}@{}", &sha[..sha.len().min(7)]);
        let (owner, name) = split_repository(repo)?;
        // Check runs: for a re-run name, the latest run (highest id) counts.
        let mut latest_run: HashMap<String, (i64, CheckState)> = HashMap::new();
        for page in 1..=MAX_PAGES {
            let path =
                format!("/repos/{owner}/{name}/commits/{sha}/check-runs?per_page=100&page={page}");
            let (v, _) = self.get_json_repo(repo, installation, &path, &op).await?;
            let runs = v
                .get("check_runs")
                .and_then(|r| r.as_array())
                .cloned()
                .unwrap_or_default();
            for r in &runs {
                let Some(n) = r.get("name").and_then(|n| n.as_str()) else {
                    continue;
                };
                let id = r.get("id").and_then(|i| i.as_i64()).unwrap_or(0);
                let state = check_run_state(
                    r.get("status").and_then(|s| s.as_str()).unwrap_or(""),
                    r.get("conclusion").and_then(|s| s.as_str()),
                );
                let entry = latest_run.entry(n.to_string()).or_insert((id, state));
                if id >= entry.0 {
                    *entry = (id, state);
                }
            }
            let total = v.get("total_count").and_then(|t| t.as_u64()).unwrap_or(0);
            if runs.len() < 100 || u64::from(page) * 100 >= total {
                break;
            }
        }
        // Commit statuses: the combined endpoint already keeps the latest per context.
        let mut statuses: HashMap<String, CheckState> = HashMap::new();
        for page in 1..=MAX_PAGES {
            let path =
                format!("/repos/{owner}/{name}/commits/{sha}/status?per_page=100&page={page}");
            let (v, _) = self.get_json_repo(repo, installation, &path, &op).await?;
            let list = v
                .get("statuses")
                .and_then(|r| r.as_array())
                .cloned()
                .unwrap_or_default();
            for s in &list {
                if let Some(ctx) = s.get("context").and_then(|c| c.as_str()) {
                    statuses
                        .entry(ctx.to_string())
                        .or_insert(commit_status_state(
                            s.get("state").and_then(|s| s.as_str()).unwrap_or(""),
                        ));
                }
            }
            if list.len() < 100 {
                break;
            }
        }
        Ok(names
            .iter()
            .map(|n| {
                let mut states = Vec::new();
                if let Some((_, s)) = latest_run.get(n) {
                    states.push(*s);
                }
                if let Some(s) = statuses.get(n) {
                    states.push(*s);
                }
                (n.clone(), combine(&states))
            })
            .collect())
    }
}

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
}
