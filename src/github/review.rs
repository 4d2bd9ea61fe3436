//! Answering a deployment protection rule request, status reports, and the
//! state of the workflow run behind a gate.

use std::time::Duration;

use http::Method;
use serde_json::json;

use super::client::{GitHub, split_repository};
use super::error::GitHubError;
use super::limiter::Turn;
use super::response::{Class, classify, message_of};
use crate::api::Verdict;

/// The request a gate answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunTarget {
    /// `owner/name`.
    pub repository: String,
    /// The workflow run.
    pub run_id: i64,
    /// The environment the job deploys to.
    pub environment: String,
    /// The App installation, when known.
    pub installation_id: Option<i64>,
}

impl RunTarget {
    /// The key its writes are paced under: one answer per run and environment.
    fn pacing_key(&self) -> String {
        format!("{}#{}#{}", self.repository, self.run_id, self.environment)
    }
}

/// What became of a review.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReviewOutcome {
    /// GitHub took the answer (204).
    Delivered,
    /// GitHub already had an answer for this request; `by` is who gave it, when known.
    AlreadySettled { by: Option<String> },
    /// The run or repository no longer exists (404).
    Gone,
    /// Try again later (5xx, timeouts, connection errors, rate limits, a 401
    /// even with a fresh token). `pace` says how long to wait: with
    /// [`Pace::Told`], exactly `after`; otherwise `after` is zero and the caller
    /// backs off by its attempt count.
    Retry {
        after: Duration,
        error: String,
        pace: Pace,
    },
    /// A real refusal; `why` names the permission or setting to fix.
    Denied { why: String },
}

/// How a [`ReviewOutcome::Retry`] waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// GitHub said how long (`retry-after`, the primary limit's reset, a
    /// secondary-limit pause): exactly that, no sooner and no later.
    Told,
    /// A transient failure (5xx, a timeout, a reset, a token that could not be
    /// minted): exponential backoff from a second or two.
    Transient,
    /// A refusal only a person can fix (credentials GitHub rejects even when
    /// fresh): exponential backoff to at most half an hour.
    Refused,
}

/// What became of a status report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommentOutcome {
    /// Posted.
    Posted,
    /// The request is no longer pending; nothing to report on.
    NotPending,
}

/// The state of a workflow run, for orphan detection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunState {
    /// Still running or waiting; `head_sha` is the commit it runs on.
    Waiting { head_sha: Option<String> },
    /// Finished with this conclusion.
    Completed { conclusion: String },
    /// Cancelled.
    Cancelled,
    /// The run or repository does not exist (any more).
    Gone,
}

fn now_epoch() -> i64 {
    jiff::Timestamp::now().as_second()
}

impl GitHub {
    /// When the answer (a review with a state) for `target` may be sent. The
    /// first ask reserves the slot; a reconciler told [`Turn::Later`] comes back
    /// then, instead of holding a reconcile open while the queue drains.
    pub fn write_turn(&self, target: &RunTarget) -> Turn {
        self.limiter().turn(&target.pacing_key())
    }

    /// When a status report ([`GitHub::comment`]) on `target` may be sent:
    /// only in a slot no answer is waiting for. A report asked for again keeps
    /// its place (post the latest text when the turn comes); the answer for the
    /// same target drops it. See `limiter.rs`.
    pub fn report_turn(&self, target: &RunTarget) -> Turn {
        self.limiter().report_turn(&target.pacing_key())
    }

    /// Writes holding a pacing slot that has not been used yet.
    pub fn writes_queued(&self) -> usize {
        self.limiter().reservations()
    }

    /// Status reports waiting for a slot no answer wants.
    pub fn reports_queued(&self) -> usize {
        self.limiter().reports_waiting()
    }

    /// Status reports given up since start: an answer came first, or their gate
    /// never came back for them.
    pub fn reports_dropped(&self) -> u64 {
        self.limiter().reports_dropped()
    }

    /// Times GitHub's rate limits paused every write, since start.
    pub fn rate_limit_pauses(&self) -> u64 {
        self.limiter().pauses()
    }

    /// Answers the request: `POST /repos/{owner}/{repo}/actions/runs/{run_id}/deployment_protection_rule`.
    /// The endpoint is not idempotent: after an ambiguous failure (no answer
    /// within the timeout, a reset connection) the run's approvals are read before
    /// anything is sent again, so an answer that landed is not sent twice.
    pub async fn review(
        &self,
        target: &RunTarget,
        verdict: Verdict,
        comment: &str,
    ) -> ReviewOutcome {
        let op = format!(
            "review of {} run {} ({})",
            target.repository, target.run_id, target.environment
        );
        let (owner, name) = match split_repository(&target.repository) {
            Ok(p) => p,
            Err(e) => return ReviewOutcome::Denied { why: e.to_string() },
        };
        let crab = match self
            .for_repo(&target.repository, target.installation_id, &op)
            .await
        {
            Ok(c) => c,
            Err(e) if e.is_transient() => return backoff(e.to_string()),
            Err(e) => return ReviewOutcome::Denied { why: e.to_string() },
        };
        let path = format!(
            "/repos/{owner}/{name}/actions/runs/{}/deployment_protection_rule",
            target.run_id
        );
        let body = json!({
            "environment_name": target.environment,
            "state": verdict.github_state(),
            "comment": comment,
        });
        let _permit = self.limiter().acquire(&target.pacing_key()).await;
        let answer = match self
            .send(&crab, Method::POST, &path, Some(&body), &op)
            .await
        {
            Ok(a) => a,
            Err(e) => {
                // Ambiguous: the request may have reached GitHub. Look before sending again.
                drop(_permit);
                return if self.landed(target, verdict).await {
                    ReviewOutcome::Delivered
                } else {
                    backoff(e.to_string())
                };
            }
        };
        match classify(answer.status, &answer.headers, &answer.body, now_epoch()) {
            Class::Ok => {
                self.limiter().succeeded();
                ReviewOutcome::Delivered
            }
            Class::AlreadySettled => ReviewOutcome::AlreadySettled { by: self.approver(target).await },
            Class::Gone => ReviewOutcome::Gone,
            Class::SecondaryLimit { retry_after } => {
                let after = self.limiter().secondary_limit(retry_after);
                ReviewOutcome::Retry { after, error: format!("GitHub secondary rate limit; every write pauses {after:?}"), pace: Pace::Told }
            }
            Class::RateLimited { after } => {
                self.limiter().wait_until(after);
                ReviewOutcome::Retry { after, error: format!("GitHub rate limit; retrying after {after:?}"), pace: Pace::Told }
            }
            Class::Transient { why } => backoff(why),
            Class::Denied { status: 401, .. } => ReviewOutcome::Retry {
                after: Duration::ZERO,
                error: "GitHub refused the credentials even with a fresh token; check the App ID and private key".into(),
                pace: Pace::Refused,
            },
            Class::Denied { status: 403, why } => ReviewOutcome::Denied {
                why: format!("the App lacks Deployments: write on {} ({why})", target.repository),
            },
            Class::Denied { why, .. } => ReviewOutcome::Denied { why },
        }
    }

    /// After an ambiguous failure: did this answer land? Only a review by this
    /// client's own login, for the gate's environment, with the gate's state
    /// says so. The history also lists people's reviews (an environment's
    /// required reviewers, say), which do not answer our rule; anything but
    /// our own answer, or not being able to tell, means "send again": if it
    /// did land, GitHub answers that with 422 and the gate is settled.
    async fn landed(&self, target: &RunTarget, verdict: Verdict) -> bool {
        let Ok(own) = self.own_login().await else {
            return false;
        };
        let Ok(approvals) = self.approvals(target).await else {
            return false;
        };
        approvals.iter().any(|a| {
            a.environment_matches
                && a.by(&own)
                && a.state.eq_ignore_ascii_case(verdict.github_state())
        })
    }

    /// Who answered the request, from `GET …/runs/{run_id}/approvals`: our own
    /// review of its environment if there is one (an earlier attempt that
    /// landed), else the latest review of it.
    async fn approver(&self, target: &RunTarget) -> Option<String> {
        let approvals = self.approvals(target).await.ok()?;
        let own = self.own_login().await.ok();
        let mut for_environment = approvals.into_iter().filter(|a| a.environment_matches);
        let latest = for_environment.next()?;
        if let Some(own) = own
            && !latest.by(&own)
            && let Some(ours) = for_environment.find(|a| a.by(&own))
        {
            return ours.login;
        }
        latest.login
    }

    async fn approvals(&self, target: &RunTarget) -> Result<Vec<Approval>, GitHubError> {
        let op = format!("approvals of {} run {}", target.repository, target.run_id);
        let (owner, name) = split_repository(&target.repository)?;
        let crab = self
            .for_repo(&target.repository, target.installation_id, &op)
            .await?;
        let path = format!(
            "/repos/{owner}/{name}/actions/runs/{}/approvals",
            target.run_id
        );
        let a = self.send(&crab, Method::GET, &path, None, &op).await?;
        if a.status != 200 {
            return Err(GitHubError::Status {
                op,
                status: a.status,
                message: message_of(&a.body),
            });
        }
        let v: serde_json::Value =
            serde_json::from_str(&a.body).map_err(|e| GitHubError::Decode {
                op: op.clone(),
                why: e.to_string(),
            })?;
        let list = v.as_array().cloned().unwrap_or_default();
        let mut out: Vec<Approval> = list
            .iter()
            .map(|item| Approval {
                state: item
                    .get("state")
                    .and_then(|s| s.as_str())
                    .unwrap_or("")
                    .to_string(),
                login: item
                    .pointer("/user/login")
                    .and_then(|s| s.as_str())
                    .map(str::to_string),
                environment_matches: item
                    .get("environments")
                    .and_then(|e| e.as_array())
                    .is_some_and(|envs| {
                        envs.iter().any(|e| {
                            // GitHub's environment names are case-insensitive.
                            e.get("name")
                                .and_then(|n| n.as_str())
                                .is_some_and(|n| n.eq_ignore_ascii_case(&target.environment))
                        })
                    }),
            })
            .collect();
        // GitHub lists oldest first; the latest answer is what counts.
        out.reverse();
        Ok(out)
    }

    /// A status report: the same endpoint with only a comment, shown to the person
    /// watching the run. The caller keeps to GitHub's 10 per deployment.
    pub async fn comment(
        &self,
        target: &RunTarget,
        text: &str,
    ) -> Result<CommentOutcome, GitHubError> {
        let op = format!(
            "status report on {} run {}",
            target.repository, target.run_id
        );
        let (owner, name) = split_repository(&target.repository)?;
        let crab = self
            .for_repo(&target.repository, target.installation_id, &op)
            .await?;
        let path = format!(
            "/repos/{owner}/{name}/actions/runs/{}/deployment_protection_rule",
            target.run_id
        );
        let body = json!({ "environment_name": target.environment, "comment": text });
        let _permit = self.limiter().acquire(&target.pacing_key()).await;
        let a = self
            .send(&crab, Method::POST, &path, Some(&body), &op)
            .await?;
        match classify(a.status, &a.headers, &a.body, now_epoch()) {
            Class::Ok => Ok(CommentOutcome::Posted),
            Class::AlreadySettled | Class::Gone => Ok(CommentOutcome::NotPending),
            Class::SecondaryLimit { retry_after } => {
                let after = self.limiter().secondary_limit(retry_after);
                Err(GitHubError::RateLimited { op, after })
            }
            Class::RateLimited { after } => {
                self.limiter().wait_until(after);
                Err(GitHubError::RateLimited { op, after })
            }
            Class::Transient { why } => Err(GitHubError::Transport { op, why }),
            Class::Denied { status, why } => Err(GitHubError::Status {
                op,
                status,
                message: why,
            }),
        }
    }

    /// The state of a workflow run: `GET /repos/{owner}/{repo}/actions/runs/{run_id}`.
    pub async fn run_state(
        &self,
        repo: &str,
        installation: Option<i64>,
        run_id: i64,
    ) -> Result<RunState, GitHubError> {
        let op = format!("state of {repo} run {run_id}");
        let (owner, name) = split_repository(repo)?;
        let crab = self.for_repo(repo, installation, &op).await?;
        let a = self
            .send(
                &crab,
                Method::GET,
                &format!("/repos/{owner}/{name}/actions/runs/{run_id}"),
                None,
                &op,
            )
            .await?;
        match a.status {
            200 => {
                let v: serde_json::Value =
                    serde_json::from_str(&a.body).map_err(|e| GitHubError::Decode {
                        op: op.clone(),
                        why: e.to_string(),
                    })?;
                let status = v.get("status").and_then(|s| s.as_str()).unwrap_or("");
                let conclusion = v.get("conclusion").and_then(|s| s.as_str()).unwrap_or("");
                let head_sha = v
                    .get("head_sha")
                    .and_then(|s| s.as_str())
                    .map(str::to_ascii_lowercase);
                Ok(match (status, conclusion) {
                    ("completed", "cancelled") => RunState::Cancelled,
                    ("completed", c) => RunState::Completed {
                        conclusion: if c.is_empty() {
                            "unknown".into()
                        } else {
                            c.into()
                        },
                    },
                    _ => RunState::Waiting { head_sha },
                })
            }
            404 | 410 => Ok(RunState::Gone),
            s => Err(GitHubError::Status {
                op,
                status: s,
                message: message_of(&a.body),
            }),
        }
    }
}

/// A transient failure: the caller backs off by its attempt count.
fn backoff(error: String) -> ReviewOutcome {
    ReviewOutcome::Retry {
        after: Duration::ZERO,
        error,
        pace: Pace::Transient,
    }
}

struct Approval {
    state: String,
    login: Option<String>,
    environment_matches: bool,
}

impl Approval {
    /// True when `login` gave this review (GitHub logins are case-insensitive).
    fn by(&self, login: &str) -> bool {
        self.login
            .as_deref()
            .is_some_and(|l| l.eq_ignore_ascii_case(login))
    }
}
