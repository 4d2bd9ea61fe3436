//! Required checks: the check runs and commit statuses GitHub reports on a
//! sha, as GitHub states them. What they mean for a gate is the engine's
//! reading (`policy::required_checks`).

use super::client::{GitHub, split_repository};
use super::error::GitHubError;

/// At most this many pages (100 items each) are read per endpoint.
const MAX_PAGES: u32 = 10;

/// One check run, as GitHub lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckRun {
    pub name: String,
    /// Higher is newer: for a re-run name, the highest id counts.
    pub id: i64,
    /// `queued`, `in_progress`, `completed`, …
    pub status: String,
    /// Set once completed: `success`, `failure`, `neutral`, `skipped`, …
    pub conclusion: Option<String>,
}

/// One commit status (the combined endpoint keeps the latest per context).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitStatus {
    pub context: String,
    /// `success`, `failure`, `error` or `pending`.
    pub state: String,
}

/// Everything GitHub reports on a commit's checks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommitChecks {
    pub runs: Vec<CheckRun>,
    pub statuses: Vec<CommitStatus>,
}

impl CommitChecks {
    /// The runs as `(name, id, status, conclusion)`.
    pub fn run_facts(&self) -> impl Iterator<Item = (&str, i64, &str, Option<&str>)> {
        self.runs.iter().map(|c| {
            (
                c.name.as_str(),
                c.id,
                c.status.as_str(),
                c.conclusion.as_deref(),
            )
        })
    }

    /// The statuses as `(context, state)`.
    pub fn status_facts(&self) -> impl Iterator<Item = (&str, &str)> {
        self.statuses
            .iter()
            .map(|s| (s.context.as_str(), s.state.as_str()))
    }
}

impl GitHub {
    /// The check runs and commit statuses of `sha`.
    pub async fn commit_checks(
        &self,
        repo: &str,
        installation: Option<i64>,
        sha: &str,
    ) -> Result<CommitChecks, GitHubError> {
        let op = format!("checks of {repo}@{}", &sha[..sha.len().min(7)]);
        let (owner, name) = split_repository(repo)?;
        let text =
            |v: &serde_json::Value, k: &str| v.get(k).and_then(|s| s.as_str()).map(str::to_string);
        let mut checks = CommitChecks::default();
        for page in 1..=MAX_PAGES {
            let path =
                format!("/repos/{owner}/{name}/commits/{sha}/check-runs?per_page=100&page={page}");
            let (v, _) = self.get_json_repo(repo, installation, &path, &op).await?;
            let runs = v
                .get("check_runs")
                .and_then(|r| r.as_array())
                .cloned()
                .unwrap_or_default();
            checks.runs.extend(runs.iter().filter_map(|r| {
                Some(CheckRun {
                    name: text(r, "name")?,
                    id: r.get("id").and_then(|i| i.as_i64()).unwrap_or(0),
                    status: text(r, "status").unwrap_or_default(),
                    conclusion: text(r, "conclusion"),
                })
            }));
            let total = v.get("total_count").and_then(|t| t.as_u64()).unwrap_or(0);
            if runs.len() < 100 || u64::from(page) * 100 >= total {
                break;
            }
        }
        for page in 1..=MAX_PAGES {
            let path =
                format!("/repos/{owner}/{name}/commits/{sha}/status?per_page=100&page={page}");
            let (v, _) = self.get_json_repo(repo, installation, &path, &op).await?;
            let list = v
                .get("statuses")
                .and_then(|r| r.as_array())
                .cloned()
                .unwrap_or_default();
            checks.statuses.extend(list.iter().filter_map(|s| {
                Some(CommitStatus {
                    context: text(s, "context")?,
                    state: text(s, "state").unwrap_or_default(),
                })
            }));
            if list.len() < 100 {
                break;
            }
        }
        Ok(checks)
    }
}
