//! `DeploymentGate`: one pending GitHub deployment protection rule request.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::analysis::{Analysis, AnalysisStatus};

/// One GitHub deployment protection rule request: a workflow job that targets a
/// protected environment and waits for Tollgate's answer. Tollgate decides it
/// (approve or reject), delivers the answer to GitHub before the deadline, and
/// records why in status.
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[kube(
    group = "tollgate.dev",
    version = "v1alpha1",
    kind = "DeploymentGate",
    doc = "One GitHub deployment protection rule request, decided by Tollgate and answered before its deadline.",
    plural = "deploymentgates",
    shortname = "dg",
    category = "tollgate",
    namespaced,
    status = "DeploymentGateStatus",
    printcolumn = r#"{"name":"Repository", "type":"string", "jsonPath":".spec.repository"}"#,
    printcolumn = r#"{"name":"Environment", "type":"string", "jsonPath":".spec.environment"}"#,
    printcolumn = r#"{"name":"SHA", "type":"string", "jsonPath":".status.shortSha"}"#,
    printcolumn = r#"{"name":"Phase", "type":"string", "jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Delivery", "type":"string", "jsonPath":".status.delivery.state"}"#,
    printcolumn = r#"{"name":"Analysis", "type":"string", "jsonPath":".status.analysisSummary"}"#,
    printcolumn = r#"{"name":"Reason", "type":"string", "jsonPath":".status.reason"}"#,
    printcolumn = r#"{"name":"Deadline", "type":"string", "jsonPath":".status.deadline"}"#,
    printcolumn = r#"{"name":"Age", "type":"date", "jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Deploy", "type":"string", "jsonPath":".status.deployment.state", "priority":1}"#,
    printcolumn = r#"{"name":"Run", "type":"integer", "jsonPath":".spec.runId", "priority":1}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("!(has(self.deadline) && has(self.timeout))").message("set either spec.deadline or spec.timeout, not both"))]
#[x_kube(validation = kube::core::Rule::new("!has(self.timeout) || !has(self.analysis) || self.analysis.all(a, !has(a.__for__) || duration(a.__for__) <= duration(self.timeout))").message("spec.analysis[].for must not be longer than spec.timeout: the analysis could never pass before the deadline"))]
pub struct DeploymentGateSpec {
    /// The GitHub repository as `owner/name`, e.g. `acme/web`. Immutable.
    #[schemars(
        regex(pattern = r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$"),
        length(max = 140)
    )]
    #[x_kube(validation = kube::core::Rule::new("self == oldSelf").message("spec.repository is immutable"))]
    pub repository: String,

    /// The GitHub environment the job deploys to, e.g. `production`. Immutable.
    #[schemars(length(min = 1, max = 255))]
    #[x_kube(validation = kube::core::Rule::new("self == oldSelf").message("spec.environment is immutable"))]
    pub environment: String,

    /// The commit being deployed: 40 lowercase hex characters. Immutable.
    #[schemars(regex(pattern = r"^[0-9a-f]{40}$"))]
    #[x_kube(validation = kube::core::Rule::new("self == oldSelf").message("spec.sha is immutable"))]
    pub sha: String,

    /// The git ref of the workflow run, as GitHub sends it (`main` or `refs/heads/main`).
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 255))]
    pub git_ref: Option<String>,

    /// The workflow run id, taken from the request's callback URL. Immutable.
    #[schemars(range(min = 1))]
    #[x_kube(validation = kube::core::Rule::new("self == oldSelf").message("spec.runId is immutable"))]
    pub run_id: i64,

    /// The GitHub App installation that sent the request. When absent, Tollgate
    /// looks the installation up through the App for this repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub installation_id: Option<i64>,

    /// The GitHub deployment id of the request, when GitHub sent one. Used to follow
    /// the deployment's outcome after approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_id: Option<i64>,

    /// The deployment ids of the other jobs whose requests share this gate
    /// (matrix jobs waiting on the environment at once: one answer covers
    /// them all), so their `deployment_status` events find it too. Intake
    /// adds them as the requests arrive.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub deployment_ids: Vec<i64>,

    /// When GitHub raised the request (RFC 3339), set by intake from the
    /// deployment's creation time or the webhook's receipt. GitHub fails a job
    /// 30 days after its request, so the deadline is clamped to 29 days from
    /// here (or from creation, whichever is earlier).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_at: Option<Timestamp>,

    /// When the gate must be answered at the latest (RFC 3339). Mutually exclusive
    /// with `timeout`. Never later than the matching intake policy's timeout allows,
    /// nor 29 days after the request (GitHub fails the job after 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<Timestamp>,

    /// How long after creation the gate must be answered, as a Go duration
    /// (`30m`, `4h`, `72h`), at most `696h` (29 days). Mutually exclusive with
    /// `deadline`. Without either, the operator's default applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"), length(max = 32))]
    #[x_kube(validation = kube::core::Rule::new("duration(self) <= duration('696h')").message("spec.timeout must be at most 696h (29 days): GitHub fails the job after 30 days"))]
    pub timeout: Option<String>,

    /// What happens when the deadline passes while something still holds the gate:
    /// `Reject` (default, fail-closed) or `Approve` (fail-open).
    #[serde(default)]
    pub on_deadline: OnDeadline,

    /// Check-run names or commit-status contexts that must succeed on `sha`.
    /// A failure rejects at once; a pending or missing check waits.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub required_checks: Vec<String>,

    /// In-cluster workloads that must be rolled out and available before approval.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub require_healthy: Vec<WorkloadRef>,

    /// Prometheus queries that must stay within bounds for a while before the
    /// gate approves (metric analysis). A failing analysis rejects after
    /// `failureLimit` readings in a row; an inconclusive one keeps the gate
    /// waiting until its deadline.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[x_kube(validation = kube::core::Rule::new("self.all(a, self.exists_one(b, b.name == a.name))").message("spec.analysis[].name must be unique within the gate"))]
    pub analysis: Vec<Analysis>,

    /// A person's decision. It wins over policy while the gate is undecided; it
    /// cannot change a decision already made. `reason` is required.
    #[serde(rename = "override", default, skip_serializing_if = "Option::is_none")]
    pub decision_override: Option<Override>,

    /// Evaluate and record the real verdict, but always answer GitHub "approved".
    /// For adopting Tollgate without risk.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
}

/// What to answer when the deadline passes with something still holding the gate.
#[derive(
    Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
pub enum OnDeadline {
    /// Fail closed: reject the deployment.
    #[default]
    Reject,
    /// Fail open: approve the deployment.
    Approve,
}

/// An answer to a deployment protection rule request.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash, schemars::JsonSchema)]
pub enum Verdict {
    /// Let the deployment through.
    Approve,
    /// Stop the deployment.
    Reject,
}

impl DeploymentGateSpec {
    /// True when the gate follows deployment `id` (its own, or a job's that shares it).
    pub fn follows_deployment(&self, id: i64) -> bool {
        self.deployment_id == Some(id) || self.deployment_ids.contains(&id)
    }
}

impl Verdict {
    /// The `state` word GitHub's review endpoint takes.
    pub fn github_state(self) -> &'static str {
        match self {
            Verdict::Approve => "approved",
            Verdict::Reject => "rejected",
        }
    }
}

impl From<OnDeadline> for Verdict {
    fn from(v: OnDeadline) -> Self {
        match v {
            OnDeadline::Approve => Verdict::Approve,
            OnDeadline::Reject => Verdict::Reject,
        }
    }
}

/// A person's decision on a gate.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Override {
    /// `Approve` or `Reject`.
    pub decision: Verdict,
    /// Why, in words; shown in status, in the Event and to the person watching the run.
    #[schemars(length(min = 1, max = 1024))]
    pub reason: String,
    /// Who decided (a Kubernetes user name). `tollgate approve` fills it in; an
    /// admission policy can require it to equal the requesting user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub by: Option<String>,
}

/// A workload that must be healthy before a gate approves.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadRef {
    /// `Deployment`, `StatefulSet` or `DaemonSet`.
    pub kind: WorkloadKind,
    /// The workload's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The workload's namespace; defaults to the gate's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub namespace: Option<String>,
}

/// Kinds of workloads a gate can require to be healthy.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash, schemars::JsonSchema)]
pub enum WorkloadKind {
    /// apps/v1 Deployment: all replicas updated and available.
    Deployment,
    /// apps/v1 StatefulSet: all replicas updated and ready.
    StatefulSet,
    /// apps/v1 DaemonSet: every scheduled pod updated and available.
    DaemonSet,
}

/// Observed state of a DeploymentGate; written only by the operator.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentGateStatus {
    /// Where the gate is in its lifecycle: `Pending` (not yet evaluated),
    /// `Waiting` (something holds it), `Approved`, `Rejected`, or `Unknown`
    /// (the outcome at GitHub cannot be established, e.g. the run is gone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,

    /// Why the gate is where it is, in words (the REASON column).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,

    /// The first 7 characters of `spec.sha` (the SHA column).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub short_sha: Option<String>,

    /// The effective deadline: `spec.deadline`, or creation + `spec.timeout`, or the
    /// operator's default, clamped to 29 days after creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<Timestamp>,

    /// The decision, written once before it is sent to GitHub and never changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,

    /// Delivery of the decision to GitHub.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<Delivery>,

    /// What holds the gate now.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blockers: Vec<Blocker>,

    /// When the gate is evaluated next: the earliest instant anything holding it can change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_evaluation: Option<Timestamp>,

    /// What each of `spec.analysis` read so far: last value, when, since when
    /// it passes, failures in a row. Kept here so it survives restarts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub analysis: Vec<AnalysisStatus>,

    /// How many analyses pass, e.g. `2/3 passing` (the ANALYSIS column).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis_summary: Option<String>,

    /// Status reports posted to the workflow run while waiting (GitHub keeps at most 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reports: Option<Reports>,

    /// After approval: the outcome of the deployment the gate let through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<DeploymentOutcome>,

    /// When the gate finished (RFC 3339): its answer delivered or settled and
    /// the deployment it let through at a final outcome, or the gate Unknown or
    /// Forbidden. Retention deletes finished gates `retention.finishedTTL`
    /// after this (keeping the newest few per repository and environment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Timestamp>,

    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Standard conditions: `Decided`, `Delivered`, `Blocked`, `Forbidden`,
    /// `Invalid`, `AnalysisError` (Prometheus could not be read).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// Lifecycle phase of a gate.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash, schemars::JsonSchema)]
pub enum Phase {
    /// Created, not yet evaluated.
    Pending,
    /// Something holds the gate; see `blockers` and `nextEvaluation`.
    Waiting,
    /// Decided: approve.
    Approved,
    /// Decided: reject.
    Rejected,
    /// The outcome at GitHub cannot be established (the run completed, was cancelled or is gone).
    Unknown,
}

impl Phase {
    /// The phase a decision puts the gate in.
    pub fn of(verdict: Verdict) -> Phase {
        match verdict {
            Verdict::Approve => Phase::Approved,
            Verdict::Reject => Phase::Rejected,
        }
    }

    /// Approved, Rejected and Unknown are final.
    pub fn is_terminal(self) -> bool {
        matches!(self, Phase::Approved | Phase::Rejected | Phase::Unknown)
    }
}

/// A recorded decision. Written once; never changed.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    /// The verdict Tollgate reached.
    pub verdict: Verdict,
    /// What decided it: `Policy`, `Deadline`, `Override` or `Deleted`.
    pub source: DecisionSource,
    /// Why, in words.
    pub reason: String,
    /// When the decision was made.
    pub decided_at: Timestamp,
    /// Who decided, for `Override` decisions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// Dry run: GitHub is told "approved" whatever the verdict.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
}

impl Decision {
    /// What GitHub is told: the verdict, or approve in dry run.
    pub fn delivered_verdict(&self) -> Verdict {
        if self.dry_run {
            Verdict::Approve
        } else {
            self.verdict
        }
    }
}

/// What made a decision.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash, schemars::JsonSchema)]
pub enum DecisionSource {
    /// Policy: checks, pauses, windows and workloads all agreed.
    Policy,
    /// The deadline passed; `onDeadline` applied.
    Deadline,
    /// A person's override.
    Override,
    /// The gate was deleted while undecided and answered on the way out.
    Deleted,
}

/// Delivery of the decision to GitHub.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    /// `Pending` (to be sent or being retried), `Delivered` (GitHub confirmed),
    /// `Settled` (GitHub already had an answer), `Failed` (GitHub cannot take it).
    pub state: DeliveryState,
    /// Send attempts so far.
    #[serde(default)]
    pub attempts: u32,
    /// The last error, in words (never a token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When the next attempt is due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<Timestamp>,
    /// When GitHub confirmed the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<Timestamp>,
    /// For `Settled`: who answered at GitHub, when GitHub tells.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settled_by: Option<String>,
}

/// State of the delivery to GitHub.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash, schemars::JsonSchema)]
pub enum DeliveryState {
    /// Not yet confirmed; retried with backoff.
    Pending,
    /// GitHub confirmed the answer.
    Delivered,
    /// GitHub already had an answer for this request.
    Settled,
    /// GitHub cannot take the answer (the run is gone, or the App lacks permission).
    Failed,
}

impl DeliveryState {
    /// Delivered, Settled and Failed end delivery.
    pub fn is_final(self) -> bool {
        !matches!(self, DeliveryState::Pending)
    }
}

/// One thing holding a gate.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Blocker {
    /// `Pause`, `Window`, `Check`, `Workload` or `Analysis`.
    pub kind: BlockerKind,
    /// The pause (`namespace/name`), check or workload.
    pub name: String,
    /// When it ends by itself, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<Timestamp>,
    /// In words, for people.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// Kinds of things that hold gates.
#[derive(
    Deserialize,
    Serialize,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    schemars::JsonSchema,
)]
pub enum BlockerKind {
    /// An active ReleasePause without a schedule.
    Pause,
    /// A ReleasePause freeze window that is open now.
    Window,
    /// A required check that has not succeeded yet.
    Check,
    /// A required workload that is not healthy yet.
    Workload,
    /// A metric analysis that has not passed yet (or is inconclusive).
    Analysis,
}

/// Status reports posted to the workflow run.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Reports {
    /// How many were posted (GitHub keeps at most 10 per deployment).
    #[serde(default)]
    pub count: u32,
    /// The text of the last one, so only meaningful changes are posted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<String>,
}

/// The outcome of the deployment a gate let through.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentOutcome {
    /// The GitHub deployment id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<i64>,
    /// `Pending`, `Deploying`, `Ready`, `Failed` or `Unknown`; only moves forward.
    pub state: DeploymentState,
    /// The environment URL GitHub reported, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Why it is in this state, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When the state last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<Timestamp>,
}

/// State of an approved deployment.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash, schemars::JsonSchema)]
pub enum DeploymentState {
    /// Approved; the deployment has not reported yet.
    Pending,
    /// Queued or in progress.
    Deploying,
    /// Succeeded.
    Ready,
    /// Failed or errored.
    Failed,
    /// Never reported within the configured window.
    Unknown,
}
