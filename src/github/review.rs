//! Answering a deployment protection rule request, status reports, and the
//! state of the workflow run behind a gate.

use std::time::Duration;

use http::Method;
use serde_json::json;

use super::client::{GitHub, split_repository, status_error};
use super::error::GitHubError;
use super::limiter::Turn;
use super::response::Class;
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
        format!(
            "{}#{}#{}",
            self.repository.to_ascii_lowercase(),
            self.run_id,
            self.environment.to_lowercase()
        )
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
    /// GitHub refused the answer itself as invalid (a 4xx such as a 422 that
    /// is not "already reviewed"), and the request is still waiting at GitHub
    /// (`pending_deployments` says so): a defect in our request, which
    /// sending again cannot fix. `message` is GitHub's, for the gate's status.
    Invalid { status: u16, message: String },
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

/// The longest `comment` GitHub takes on a review or a status report.
pub const MAX_COMMENT_CHARS: usize = 1024;

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

    /// GitHub writes left in each pacing window now (`minute`, `hour`).
    pub fn write_budget(&self) -> [(&'static str, u64); 2] {
        self.limiter().budget_remaining()
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
        // Credentials first: a failure here sent nothing, so it is no ambiguity.
        if let Err(e) = self
            .for_repo(&target.repository, target.installation_id, &op)
            .await
        {
            return if e.is_transient() {
                backoff(e.to_string())
            } else {
                ReviewOutcome::Denied { why: e.to_string() }
            };
        }
        let path = format!(
            "/repos/{owner}/{name}/actions/runs/{}/deployment_protection_rule",
            target.run_id
        );
        let body = json!({
            "environment_name": target.environment,
            "state": verdict.github_state(),
            "comment": fit_comment(comment),
        });
        let permit = self.limiter().acquire(&target.pacing_key()).await;
        let sent = self
            .send_repo(
                &target.repository,
                target.installation_id,
                Method::POST,
                &path,
                Some(&body),
                &op,
            )
            .await;
        drop(permit);
        let answer = match sent {
            Ok(a) => a,
            // Nothing was sent: a pause GitHub imposed is still on.
            Err(GitHubError::RateLimited { after, .. }) => {
                return ReviewOutcome::Retry {
                    after,
                    error: format!("GitHub rate limit; retrying after {after:?}"),
                    pace: Pace::Told,
                };
            }
            Err(e) => {
                // Ambiguous: the request may have reached GitHub. Look before sending again.
                return match self.unclear(target, verdict).await {
                    Unclear::Landed => ReviewOutcome::Delivered,
                    Unclear::NotWaiting { by } => ReviewOutcome::AlreadySettled { by },
                    Unclear::StillWaiting | Unclear::CannotTell => backoff(e.to_string()),
                };
            }
        };
        match answer.class {
            Class::Ok => {
                self.limiter().succeeded();
                ReviewOutcome::Delivered
            }
            Class::AlreadySettled => ReviewOutcome::AlreadySettled { by: self.approver(target).await },
            Class::Gone => ReviewOutcome::Gone,
            Class::SecondaryLimit { .. } | Class::RateLimited { .. } => {
                let after = answer.paused.unwrap_or(Duration::from_secs(60));
                ReviewOutcome::Retry { after, error: format!("GitHub rate limit; every write pauses {after:?}"), pace: Pace::Told }
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
            Class::Invalid { status, message } => {
                // Not a settled answer GitHub spells some other way? The
                // waiting environments tell: only a request still waiting
                // makes this a defect to record.
                match self.unclear(target, verdict).await {
                    Unclear::Landed => ReviewOutcome::Delivered,
                    Unclear::NotWaiting { by } => ReviewOutcome::AlreadySettled { by },
                    Unclear::StillWaiting | Unclear::CannotTell => {
                        ReviewOutcome::Invalid { status, message }
                    }
                }
            }
        }
    }

    /// When a delivery's outcome is unclear (no answer, a reset, a refusal
    /// we do not recognise): did our answer land (`…/approvals`), and if
    /// not, is the request still waiting at all (`…/pending_deployments`)?
    async fn unclear(&self, target: &RunTarget, verdict: Verdict) -> Unclear {
        if self.landed(target, verdict).await {
            return Unclear::Landed;
        }
        match self.waiting(target).await {
            Ok(true) => Unclear::StillWaiting,
            Ok(false) => Unclear::NotWaiting {
                by: self.approver(target).await,
            },
            Err(e) => {
                tracing::debug!(error = %e, "cannot read the run's pending deployments");
                Unclear::CannotTell
            }
        }
    }

    /// True while the run waits on `target.environment`: `GET
    /// …/runs/{run_id}/pending_deployments` lists the environments a run
    /// waits on, those waiting on protection rules included. GitHub's
    /// environment names are case-insensitive.
    pub async fn waiting(&self, target: &RunTarget) -> Result<bool, GitHubError> {
        let op = format!(
            "pending deployments of {} run {}",
            target.repository, target.run_id
        );
        let (owner, name) = split_repository(&target.repository)?;
        let path = format!(
            "/repos/{owner}/{name}/actions/runs/{}/pending_deployments",
            target.run_id
        );
        // A 404 is no proof that nothing waits (GitHub also answers 404 for
        // what the App may not read): only a list is an answer.
        let (v, _) = self
            .get_json_repo(&target.repository, target.installation_id, &path, &op)
            .await?;
        let list = v.as_array().ok_or_else(|| GitHubError::Decode {
            op: op.clone(),
            why: "the answer is not a list".into(),
        })?;
        Ok(list.iter().any(|p| {
            p.pointer("/environment/name")
                .and_then(|n| n.as_str())
                .is_some_and(|n| same_environment(n, &target.environment))
        }))
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
        let path = format!(
            "/repos/{owner}/{name}/actions/runs/{}/approvals",
            target.run_id
        );
        let (v, _) = self
            .get_json_repo(&target.repository, target.installation_id, &path, &op)
            .await?;
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
                                .is_some_and(|n| same_environment(n, &target.environment))
                        })
                    }),
            })
            .collect();
        // GitHub lists oldest first; the latest answer is what counts.
        out.reverse();
        Ok(out)
    }

    /// A status report: the same endpoint with only a comment, shown to the
    /// person watching the run (cut to GitHub's 1024 characters). The caller
    /// keeps to GitHub's 10 per deployment. A report GitHub refuses as
    /// invalid is [`GitHubError::Invalid`]: never send it again.
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
        let path = format!(
            "/repos/{owner}/{name}/actions/runs/{}/deployment_protection_rule",
            target.run_id
        );
        let body = json!({ "environment_name": target.environment, "comment": fit_comment(text) });
        let permit = self.limiter().acquire(&target.pacing_key()).await;
        let a = self
            .send_repo(
                &target.repository,
                target.installation_id,
                Method::POST,
                &path,
                Some(&body),
                &op,
            )
            .await;
        drop(permit);
        let a = a?;
        match a.class {
            Class::Ok => Ok(CommentOutcome::Posted),
            Class::AlreadySettled | Class::Gone => Ok(CommentOutcome::NotPending),
            Class::SecondaryLimit { .. } | Class::RateLimited { .. } => {
                Err(GitHubError::RateLimited {
                    op,
                    after: a.paused.unwrap_or(Duration::from_secs(60)),
                })
            }
            Class::Transient { why } => Err(GitHubError::Transport { op, why }),
            Class::Invalid { status, message } => Err(GitHubError::Invalid {
                op,
                status,
                message,
            }),
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
        let a = self
            .send_repo(
                repo,
                installation,
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
            _ => Err(status_error(&op, &a)),
        }
    }
}

/// What a look at the run says when a delivery's outcome is unclear.
enum Unclear {
    /// Our own answer is in the run's review history.
    Landed,
    /// The run no longer waits on the environment: the answer is not needed.
    NotWaiting { by: Option<String> },
    /// The run still waits on the environment.
    StillWaiting,
    /// GitHub could not be asked.
    CannotTell,
}

/// GitHub's environment names are case-insensitive, beyond ASCII too.
pub fn same_environment(a: &str, b: &str) -> bool {
    a == b || a.to_lowercase() == b.to_lowercase()
}

/// `text` cut to GitHub's limit for a comment, saying so at the end.
pub fn fit_comment(text: &str) -> String {
    const CUT: &str = " …";
    if text.chars().count() <= MAX_COMMENT_CHARS {
        return text.to_string();
    }
    let keep = MAX_COMMENT_CHARS - CUT.chars().count();
    let mut out: String = text.chars().take(keep).collect();
    out.push_str(CUT);
    out
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
