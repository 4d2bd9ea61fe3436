//! Metric analysis on a gate: Prometheus queries whose value must stay within
//! bounds for a while before the gate may approve (`spec.analysis`), and what
//! the operator read so far (`status.analysis`).

use jiff::Timestamp;
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// The shortest `interval` the schema accepts: Prometheus is not a check to hammer.
pub const MIN_ANALYSIS_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// One Prometheus query that must read within `min`/`max` on every reading for
/// `for` before the gate approves. `failureLimit` failing readings in a row
/// reject the gate. Names follow Argo Rollouts analysis where they mean the same.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("has(self.min) || has(self.max)").message("spec.analysis[].min or spec.analysis[].max: set at least one bound"))]
#[x_kube(validation = kube::core::Rule::new("!has(self.min) || !has(self.max) || self.min <= self.max").message("spec.analysis[].min must not be greater than spec.analysis[].max"))]
pub struct Analysis {
    /// A name for the analysis, unique within the gate, e.g. `staging-errors`;
    /// used in status, Events and the answer's comment.
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"), length(max = 63))]
    pub name: String,

    /// A PromQL instant query that returns exactly one series (or a scalar),
    /// e.g. `sum(rate(http_requests_total{code=~"5.."}[5m])) / sum(rate(http_requests_total[5m]))`.
    /// No result, NaN or several series make the reading inconclusive.
    #[schemars(length(min = 1, max = 4096))]
    pub query: String,

    /// The reading passes only when its value is at least this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,

    /// The reading passes only when its value is at most this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,

    /// How long every reading must pass before the analysis passes, as a Go
    /// duration (`10m`). `0s` (the default): one passing reading is enough.
    /// Must not be longer than the gate's timeout.
    #[serde(rename = "for", default = "zero", skip_serializing_if = "is_zero")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"), length(max = 32))]
    #[x_kube(validation = kube::core::Rule::new("duration(self) <= duration('696h')").message("spec.analysis[].for must be at most 696h (29 days)"))]
    pub hold_for: String,

    /// How often the query is read, as a Go duration; at least `10s`. Default `1m`.
    #[serde(default = "one_minute")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"), length(max = 32))]
    #[x_kube(validation = kube::core::Rule::new("duration(self) >= duration('10s')").message("spec.analysis[].interval must be at least 10s"))]
    pub interval: String,

    /// This many failing readings in a row reject the gate at once. Default 3.
    /// (Argo Rollouts counts failures in total and fails above the limit;
    /// Tollgate counts them in a row and rejects at the limit.)
    #[serde(default = "three")]
    #[schemars(range(min = 1, max = 1000))]
    pub failure_limit: u32,
}

fn zero() -> String {
    "0s".into()
}
fn is_zero(s: &String) -> bool {
    s == "0s"
}
fn one_minute() -> String {
    "1m".into()
}
fn three() -> u32 {
    3
}

/// What the operator read for one analysis so far (one entry per `spec.analysis`).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisStatus {
    /// The analysis's name, as in `spec.analysis`.
    pub name: String,
    /// The verdict of the last reading: `Passing`, `Failing`, `Inconclusive`
    /// (no result, NaN or several series) or `Error` (Prometheus unreachable
    /// or answering an error); `Passed` once it held for `for`, `Failed` at
    /// `failureLimit` failures in a row.
    pub result: AnalysisResult,
    /// The value of the last conclusive reading.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_value: Option<f64>,
    /// When the query was last read (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_at: Option<Timestamp>,
    /// Since when every reading passed (RFC 3339); absent after a reading that did not pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passing_since: Option<Timestamp>,
    /// Failing readings in a row.
    #[serde(default)]
    pub consecutive_failures: u32,
    /// Readings in a row that Prometheus could not answer; each waits longer (backoff).
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub consecutive_errors: u32,
    /// The last reading, in words, e.g. `0.004 ≤ 0.01`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// A fingerprint of the query and bounds this history was read for: a
    /// changed query or bound starts the history again.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub spec_hash: String,
}

fn is_zero_u32(n: &u32) -> bool {
    *n == 0
}

/// The verdict of an analysis's readings so far.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash, schemars::JsonSchema)]
pub enum AnalysisResult {
    /// Not read yet.
    Pending,
    /// The last reading passed; not yet for `for`.
    Passing,
    /// Every reading passed for `for`.
    Passed,
    /// The last reading was out of bounds.
    Failing,
    /// `failureLimit` readings in a row were out of bounds: the gate is rejected.
    Failed,
    /// The last reading had no result, NaN or several series.
    Inconclusive,
    /// Prometheus could not be read or answered an error; retried with backoff.
    Error,
}
