//! `ReleasePause`: a reason to hold releases for a scope.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// A reason to hold releases (a red main branch, a freeze window) for the
/// repositories and environments in its scope. While Active, matching
/// DeploymentGates wait. Resume it for its (sha, reason) to let releases
/// through; restating the same failure afterwards does not pause again.
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[kube(
    group = "tollgate.dev",
    version = "v1alpha1",
    kind = "ReleasePause",
    doc = "A reason to hold releases (a red main, a freeze window) for a set of repositories and environments.",
    plural = "releasepauses",
    shortname = "rp",
    category = "tollgate",
    namespaced,
    status = "ReleasePauseStatus",
    printcolumn = r#"{"name":"Scope", "type":"string", "jsonPath":".status.scope"}"#,
    printcolumn = r#"{"name":"State", "type":"string", "jsonPath":".status.state"}"#,
    printcolumn = r#"{"name":"Reason", "type":"string", "jsonPath":".spec.reason"}"#,
    printcolumn = r#"{"name":"SHA", "type":"string", "jsonPath":".status.shortSha"}"#,
    printcolumn = r#"{"name":"Held", "type":"integer", "jsonPath":".status.heldGates"}"#,
    printcolumn = r#"{"name":"Next", "type":"string", "jsonPath":".status.nextTransition", "priority":1}"#,
    printcolumn = r#"{"name":"Age", "type":"date", "jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ReleasePauseSpec {
    /// Which repositories and environments this pause holds.
    pub scope: PauseScope,

    /// A machine word for the cause, e.g. `ci-failed`, `deploy-failed`, `freeze`.
    #[schemars(regex(pattern = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"))]
    pub reason: String,

    /// The failing commit (40 lowercase hex), when the pause is about one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9a-f]{40}$"))]
    pub sha: Option<String>,

    /// For people: what happened and what to do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub message: Option<String>,

    /// A recurring freeze window. Without a schedule the pause is always on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,

    /// The recovery: "the failure (sha, reason) is handled, let releases through".
    /// The operator remembers it in status, so a writer restating the same
    /// failure later does not pause again; a different sha or reason does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<Resume>,

    /// When the pause ends by itself (RFC 3339), so a forgotten pause cannot hold forever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
}

/// Which gates a pause holds.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PauseScope {
    /// Repositories as `owner/name`, or globs such as `acme/*` or `*`.
    #[schemars(length(min = 1, max = 64))]
    pub repositories: Vec<String>,
    /// Environment names or globs; empty means every environment.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub environments: Vec<String>,
}

/// A recurring window: it opens at each cron occurrence and lasts `duration`.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Schedule {
    /// Five-field cron expression (minute hour day-of-month month day-of-week),
    /// in `timeZone`, e.g. `0 18 * * 5` for Fridays at 18:00.
    #[schemars(regex(pattern = r"^\s*\S+(\s+\S+){4}\s*$"), length(max = 128))]
    pub cron: String,
    /// How long each window lasts, as a positive Go duration (`14h`, `62h`).
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"), length(max = 32))]
    #[x_kube(validation = kube::core::Rule::new("duration(self) > duration('0s')").message("spec.schedule.duration must be positive"))]
    pub duration: String,
    /// IANA time zone name, e.g. `Europe/Berlin` or `UTC`. Daylight saving is honoured.
    #[serde(default = "default_time_zone")]
    #[schemars(
        regex(pattern = r"^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+){0,2}$"),
        length(max = 64)
    )]
    pub time_zone: String,
}

fn default_time_zone() -> String {
    "UTC".to_string()
}

/// A recovery: releases may go through despite the failure (sha, reason).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Resume {
    /// The failing commit being resumed; must equal `spec.sha` to take effect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9a-f]{40}$"))]
    pub sha: Option<String>,
    /// The reason being resumed; must equal `spec.reason` to take effect.
    #[schemars(length(min = 1, max = 63))]
    pub reason: String,
    /// For scheduled pauses: the start of the window occurrence being lifted.
    /// Only that occurrence is lifted; the next one pauses again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<Timestamp>,
    /// Who resumed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub by: Option<String>,
}

/// Observed state of a ReleasePause; written only by the operator.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReleasePauseStatus {
    /// `Active` (holding gates), `Resumed` (its failure was resumed) or
    /// `Inactive` (outside its window, or expired).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<PauseState>,
    /// Why it is in this state, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The (sha, reason) last resumed, kept even if a writer later drops `spec.resume`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery: Option<Recovery>,
    /// How many gates it holds now.
    #[serde(default)]
    pub held_gates: u32,
    /// When the state changes next by itself (window opens or closes, expiry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_transition: Option<Timestamp>,
    /// The scope in one line (the SCOPE column).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The first 7 characters of `spec.sha` (the SHA column).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub short_sha: Option<String>,
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Standard conditions: `Active`, `Resumed`, `Invalid`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// State of a pause.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash, schemars::JsonSchema)]
pub enum PauseState {
    /// Holding the gates in scope.
    Active,
    /// Its current (sha, reason) was resumed; not holding.
    Resumed,
    /// Outside its window, or expired; not holding.
    Inactive,
}

/// A resume the operator has accepted.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Recovery {
    /// The commit resumed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha: Option<String>,
    /// The reason resumed.
    pub reason: String,
    /// For scheduled pauses: the window occurrence lifted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<Timestamp>,
    /// When the operator accepted the resume.
    pub at: Timestamp,
    /// Who resumed, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}
