//! `deployment_status`: after a gate approved a deployment, GitHub reports how
//! it goes. The receiver finds the gate (by `deployment.id` == `spec.deploymentId`,
//! else by repository, environment and sha for gates that carry no deployment
//! id) through the gate index and a read by name — never a LIST — merges the
//! report into `status.deployment` through the engine's forward-only rule, and
//! writes only that field (and `finishedAt` when the outcome finishes the
//! gate): a status merge patch with the resourceVersion precondition, so
//! `decision` and `delivery` are never touched.
//!
//! A Failed deployment under a policy with `pauseOnFailure` also creates or
//! updates the ReleasePause `deploy-failed-<repo>-<env>` in the gate's
//! namespace, before the gate's status is written (a retried delivery then
//! restates the pause, which the recovery rule makes harmless).

use std::collections::BTreeMap;

use axum::http::StatusCode;
use jiff::Timestamp;
use kube::api::{ObjectMeta, Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde::Deserialize;

use super::autopause;
use super::mapping::{LABEL_REPOSITORY, deploy_pause_name, repository_label};
use super::payload::{self, Repository};
use super::{Intake, Reply};
use crate::api::{
    DeploymentGate, DeploymentOutcome, DeploymentState, LABEL_MADE_BY, MADE_BY_INTAKE, PauseScope,
    ReleasePause, ReleasePauseSpec, Verdict,
};
use crate::cluster::events::{self, Transition};
use crate::cluster::status::merge_diff;
use crate::policy::deployment::{self as engine, StatusReport, Step};
use crate::telemetry::labels;

const EVENT: &str = "deployment_status";
/// The `reason` of every pause written here.
pub const PAUSE_REASON: &str = "deploy-failed";
/// Attempts at the status write when another writer got there first (409).
const ATTEMPTS: usize = 4;
/// Gates read per `deployment_status` at most (a commit deployed to one
/// environment by a handful of runs has a handful of gates).
const MAX_CANDIDATES: usize = 64;

/// `deployment_status` (action `created`), as documented: `deployment_status`
/// (`state`, `environment`, `environment_url`, `target_url`, `description`, …),
/// `deployment` (`id`, `sha`, `ref`, `environment`, …), `repository`, and
/// optionally `check_run`, `workflow`, `workflow_run`, `installation`, `sender`.
#[derive(Debug, Clone, Deserialize)]
pub struct DeploymentStatusEvent {
    #[serde(default)]
    pub action: Option<String>,
    pub deployment_status: DeploymentStatus,
    pub deployment: DeploymentRef,
    pub repository: Repository,
}

/// The `deployment_status` object.
#[derive(Debug, Clone, Deserialize)]
pub struct DeploymentStatus {
    /// `error`, `failure`, `inactive`, `pending`, `success`, `queued` or `in_progress`.
    pub state: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub environment_url: Option<String>,
    #[serde(default)]
    pub target_url: Option<String>,
    #[serde(default)]
    pub log_url: Option<String>,
}

/// The `deployment` object of a `deployment_status` payload.
#[derive(Debug, Clone, Deserialize)]
pub struct DeploymentRef {
    pub id: i64,
    #[serde(default)]
    pub sha: Option<String>,
    #[serde(default)]
    pub environment: Option<String>,
}

impl DeploymentStatusEvent {
    fn report(&self) -> StatusReport {
        let s = &self.deployment_status;
        let url = [&s.environment_url, &s.target_url, &s.log_url]
            .into_iter()
            .flatten()
            .find(|u| !u.is_empty())
            .cloned();
        StatusReport {
            deployment_id: self.deployment.id,
            state: s.state.clone(),
            url,
            description: s.description.clone(),
        }
    }
}

/// The gate `event` reports on, among `gates`: the one that follows the
/// deployment (`deploymentId`, or one of `deploymentIds`), else (only gates without a deployment id) the latest
/// approved gate for the same repository, environment and sha.
pub fn find_gate<'a>(
    gates: &'a [DeploymentGate],
    event: &DeploymentStatusEvent,
) -> Option<&'a DeploymentGate> {
    let same_repo = |g: &&DeploymentGate| {
        g.spec
            .repository
            .eq_ignore_ascii_case(&event.repository.full_name)
    };
    if let Some(g) = gates
        .iter()
        .filter(same_repo)
        .find(|g| g.spec.follows_deployment(event.deployment.id))
    {
        return Some(g);
    }
    let sha = event.deployment.sha.as_deref()?.to_ascii_lowercase();
    let env = event.deployment.environment.as_deref()?.to_lowercase();
    gates
        .iter()
        .filter(same_repo)
        .filter(|g| g.spec.deployment_id.is_none())
        .filter(|g| g.spec.sha == sha && g.spec.environment.to_lowercase() == env)
        .max_by_key(|g| {
            let d = approved_at(g);
            (d.is_some(), d)
        })
}

/// When the gate approved the deployment (GitHub was told approve), if it did.
fn approved_at(gate: &DeploymentGate) -> Option<Timestamp> {
    gate.status
        .as_ref()
        .and_then(|s| s.decision.as_ref())
        .filter(|d| d.delivered_verdict() == Verdict::Approve)
        .map(|d| d.decided_at)
}

/// The ReleasePause a failed deployment of `gate` asks for.
pub fn pause_for_failed_deployment(
    gate: &DeploymentGate,
    url: Option<&str>,
    deployment_id: i64,
) -> ReleasePause {
    let repository = gate.spec.repository.clone();
    let environment = gate.spec.environment.clone();
    let mut message = format!(
        "deployment {deployment_id} of {repository}@{} to {environment} failed: {}",
        &gate.spec.sha[..gate.spec.sha.len().min(7)],
        url.unwrap_or("no URL reported")
    );
    let mut cut = message.len().min(1024);
    while !message.is_char_boundary(cut) {
        cut -= 1;
    }
    message.truncate(cut);
    ReleasePause {
        metadata: ObjectMeta {
            name: Some(deploy_pause_name(&repository, &environment)),
            namespace: gate.metadata.namespace.clone(),
            labels: Some(BTreeMap::from([
                (LABEL_REPOSITORY.to_string(), repository_label(&repository)),
                // Intake's own: retention deletes it once resumed or expired.
                (LABEL_MADE_BY.to_string(), MADE_BY_INTAKE.to_string()),
            ])),
            ..ObjectMeta::default()
        },
        spec: ReleasePauseSpec {
            scope: PauseScope {
                repositories: vec![repository],
                environments: vec![environment],
            },
            reason: PAUSE_REASON.to_string(),
            sha: Some(gate.spec.sha.clone()),
            message: Some(message),
            schedule: None,
            resume: None,
            expires_at: None,
        },
        status: None,
    }
}

impl Intake {
    pub(super) async fn deployment_status(&self, body: &[u8], delivery: &str) -> Reply {
        let ev: DeploymentStatusEvent = match serde_json::from_slice(body) {
            Ok(ev) => ev,
            Err(e) => {
                let text = payload::describe_json_error(EVENT, &e);
                tracing::warn!(delivery = %delivery, error = %text, "malformed deployment_status webhook");
                return Reply::new(StatusCode::BAD_REQUEST, EVENT, "malformed", text);
            }
        };
        let report = ev.report();
        if engine::state_of(&report.state).is_none() {
            return Reply::new(
                StatusCode::ACCEPTED,
                EVENT,
                "ignored",
                format!("a `{}` status does not change a deployment", report.state),
            );
        }
        match tokio::time::timeout(
            self.inner.write_timeout,
            self.follow(&ev, &report, delivery),
        )
        .await
        {
            Ok(Ok(reply)) => reply,
            Ok(Err(e)) => {
                tracing::error!(delivery = %delivery, deployment_id = ev.deployment.id, error = %e, "cannot record the deployment status");
                Reply::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    EVENT,
                    "error",
                    format!("cannot record deployment {} status: {e}", ev.deployment.id),
                )
            }
            Err(_) => Reply::new(
                StatusCode::SERVICE_UNAVAILABLE,
                EVENT,
                "unavailable",
                "the Kubernetes API server did not answer in time",
            ),
        }
    }

    async fn follow(
        &self,
        ev: &DeploymentStatusEvent,
        report: &StatusReport,
        delivery: &str,
    ) -> Result<Reply, kube::Error> {
        // The index is filled by the first list of the gates; until then a
        // gate could be missed, so GitHub is asked to try again.
        if !self.index.wait_ready(self.inner.write_timeout / 2).await {
            tracing::warn!(delivery = %delivery, deployment_id = ev.deployment.id, "the gate index is still loading; answering 503 so the delivery can be redelivered");
            return Ok(Reply::new(
                StatusCode::SERVICE_UNAVAILABLE,
                EVENT,
                "not_ready",
                "the operator is still loading its gates; redeliver this delivery in a moment",
            ));
        }
        let Some(mut gate) = self.find(ev).await? else {
            tracing::info!(delivery = %delivery, repository = %ev.repository.full_name, deployment_id = ev.deployment.id, "no DeploymentGate follows this deployment");
            return Ok(Reply::new(
                StatusCode::ACCEPTED,
                EVENT,
                "no_gate",
                format!("no DeploymentGate follows deployment {}", ev.deployment.id),
            ));
        };
        let namespace = gate.namespace().unwrap_or_default();
        let name = gate.name_any();
        let api: Api<DeploymentGate> = Api::namespaced(self.inner.client.clone(), &namespace);
        let mut paused = false;
        for _ in 0..ATTEMPTS {
            let Some(approved) = approved_at(&gate) else {
                return Ok(Reply::new(
                    StatusCode::ACCEPTED,
                    EVENT,
                    "not_approved",
                    format!("DeploymentGate {namespace}/{name} has not approved a deployment"),
                ));
            };
            let current = gate.status.as_ref().and_then(|s| s.deployment.clone());
            let now = Timestamp::now();
            let next = match engine::merge(current.as_ref(), report, now) {
                Step::Unchanged { why } => {
                    return Ok(Reply::new(
                        StatusCode::OK,
                        EVENT,
                        "unchanged",
                        format!("DeploymentGate {namespace}/{name}: {why}"),
                    ));
                }
                Step::Advance(next) => next,
            };
            if next.state == DeploymentState::Failed && !paused && self.pauses_on_failure(&gate) {
                let pause =
                    pause_for_failed_deployment(&gate, next.url.as_deref(), ev.deployment.id);
                let written = autopause::write(&self.inner.client, &pause).await?;
                self.inner.metrics.auto_pauses.inc();
                tracing::warn!(
                    delivery = %delivery,
                    pause = %format!("{namespace}/{}", pause.name_any()),
                    repository = %gate.spec.repository,
                    environment = %gate.spec.environment,
                    sha = %gate.spec.sha,
                    deployment_id = ev.deployment.id,
                    written = ?written,
                    "a failed deployment paused releases"
                );
                paused = true;
            }
            match self
                .write_outcome(&api, &gate, current.as_ref(), &next, now)
                .await
            {
                Ok(written) => {
                    self.record(&written, &next, approved, now).await;
                    return Ok(Reply::new(
                        StatusCode::OK,
                        EVENT,
                        "recorded",
                        format!(
                            "DeploymentGate {namespace}/{name}: deployment {:?}",
                            next.state
                        ),
                    ));
                }
                Err(kube::Error::Api(s)) if s.is_conflict() => {
                    gate = api.get(&name).await?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(Reply::new(
            StatusCode::SERVICE_UNAVAILABLE,
            EVENT,
            "conflict",
            format!("DeploymentGate {namespace}/{name} kept changing; retry the delivery"),
        ))
    }

    /// The gate that follows the deployment, found through the gate index
    /// (by repository, environment and commit: a deployment's gate has the
    /// deployment's) and read by name: never a LIST. Gates in a namespace that
    /// may not gate the repository are never candidates.
    async fn find(
        &self,
        ev: &DeploymentStatusEvent,
    ) -> Result<Option<DeploymentGate>, kube::Error> {
        let repository = &ev.repository.full_name;
        // GitHub sends both with every deployment; without them nothing is found.
        let (Some(sha), Some(env)) = (&ev.deployment.sha, &ev.deployment.environment) else {
            return Ok(None);
        };
        let mut refs = self.index.by_commit(repository, env, sha);
        refs.retain(|r| self.inner.tenancy.check(&r.namespace, repository).is_ok());
        if refs.len() > MAX_CANDIDATES {
            tracing::warn!(repository = %repository, deployment_id = ev.deployment.id, candidates = refs.len(), "more gates for one commit and environment than are read per deployment_status; reading the first {MAX_CANDIDATES}");
            refs.truncate(MAX_CANDIDATES);
        }
        let mut gates = Vec::with_capacity(refs.len());
        for r in refs {
            let api: Api<DeploymentGate> = Api::namespaced(self.inner.client.clone(), &r.namespace);
            if let Some(g) = api.get_opt(&r.name).await? {
                gates.push(g);
            }
        }
        Ok(find_gate(&gates, ev).cloned())
    }

    fn pauses_on_failure(&self, gate: &DeploymentGate) -> bool {
        self.inner
            .config
            .policy_for(&gate.spec.repository, &gate.spec.environment)
            .is_some_and(|(_, p)| p.pause_on_failure)
    }

    /// Writes only `status.deployment` (and `status.finishedAt` when the
    /// outcome finishes the gate, or a new deployment starts over),
    /// precondition: the gate's resourceVersion.
    async fn write_outcome(
        &self,
        api: &Api<DeploymentGate>,
        gate: &DeploymentGate,
        current: Option<&DeploymentOutcome>,
        next: &DeploymentOutcome,
        now: Timestamp,
    ) -> Result<DeploymentGate, kube::Error> {
        let old = current
            .map(|c| serde_json::to_value(c).unwrap_or_default())
            .unwrap_or_else(|| serde_json::json!({}));
        let new = serde_json::to_value(next).unwrap_or_default();
        let diff = merge_diff(&old, &new).unwrap_or(new);
        let mut status = serde_json::json!({"deployment": diff});
        let mut after = gate.status.clone().unwrap_or_default();
        let finished_before = after.finished_at;
        after.deployment = Some(next.clone());
        crate::policy::retention::stamp(&mut after, now);
        if after.finished_at != finished_before {
            status["finishedAt"] = serde_json::to_value(after.finished_at).unwrap_or_default();
        }
        let patch = serde_json::json!({
            "metadata": {"resourceVersion": gate.resource_version()},
            "status": status,
        });
        let params = PatchParams {
            field_manager: Some("tollgate".into()),
            ..PatchParams::default()
        };
        api.patch_status(&gate.name_any(), &params, &Patch::Merge(&patch))
            .await
    }

    /// One Event, one log line and the metrics of a transition.
    async fn record(
        &self,
        gate: &DeploymentGate,
        next: &DeploymentOutcome,
        approved: Timestamp,
        now: Timestamp,
    ) {
        let (reason, warning, outcome) = match next.state {
            DeploymentState::Deploying => ("Deploying", false, None),
            DeploymentState::Ready => ("DeployReady", false, Some("ready")),
            DeploymentState::Failed => ("DeployFailed", true, Some("failed")),
            DeploymentState::Unknown => ("DeployUnknown", true, Some("unknown")),
            DeploymentState::Pending => ("DeployPending", false, None),
        };
        let mut note = next.reason.clone().unwrap_or_default();
        if let Some(url) = &next.url {
            note.push_str(&format!(" — {url}"));
        }
        let t = Transition {
            reason,
            note,
            warning,
        };
        events::publish(&self.inner.recorder, gate, &t).await;
        events::log_gate(gate, &t, None);
        if let Some(outcome) = outcome {
            self.inner
                .metrics
                .deployments
                .get_or_create(&labels([("outcome", outcome)]))
                .inc();
        }
        if next.state == DeploymentState::Ready {
            let ms = (now.as_millisecond() - approved.as_millisecond()).max(0);
            self.inner
                .metrics
                .approval_to_ready
                .observe(ms as f64 / 1000.0);
        }
    }
}
