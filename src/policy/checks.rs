//! What the engine is told about required checks and workloads.

use std::collections::BTreeMap;

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
