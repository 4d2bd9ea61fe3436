//! The Kubernetes resources Tollgate serves: `DeploymentGate` and `ReleasePause`
//! (group `tollgate.dev`, version `v1alpha1`).
//!
//! These types are plain data: they know neither the kube client nor GitHub.
//! Doc comments on fields become `kubectl explain` text.

mod analysis;
mod condition;
mod duration;
mod gate;
mod pause;

pub use analysis::{Analysis, AnalysisResult, AnalysisStatus, MIN_ANALYSIS_INTERVAL};
pub use condition::{
    CONDITION_ACTIVE, CONDITION_ANALYSIS_ERROR, CONDITION_BLOCKED, CONDITION_DECIDED,
    CONDITION_DELIVERED, CONDITION_DELIVERY_DENIED, CONDITION_FORBIDDEN, CONDITION_INVALID,
    CONDITION_POLICY_BOUND, CONDITION_RESUMED, CONDITION_SCOPE_RESTRICTED, CONDITION_SHA_MISMATCH,
};
pub use duration::{DurationError, MAX_GATE_LIFETIME, parse_duration};
pub use gate::*;
pub use pause::*;

use kube::CustomResourceExt;

/// API group of every Tollgate resource.
pub const GROUP: &str = "tollgate.dev";
/// The finalizer that makes deleting an undecided gate answer GitHub first.
pub const FINALIZER: &str = "tollgate.dev/answer";
/// Label on the gates intake writes (`tollgate.dev/made-by=intake`): a gate
/// without it under intake's name is not intake's.
pub const LABEL_MADE_BY: &str = "tollgate.dev/made-by";
/// The value of [`LABEL_MADE_BY`] on intake's gates.
pub const MADE_BY_INTAKE: &str = "intake";
/// Label that keeps a finished gate (or an automatic pause) from retention:
/// `tollgate.dev/keep=true` is never deleted by the operator.
pub const LABEL_KEEP: &str = "tollgate.dev/keep";
/// Annotation holding the `X-GitHub-Delivery` id that created an intake gate.
pub const ANNOTATION_DELIVERY: &str = "tollgate.dev/delivery";

/// Both CRDs as one multi-document YAML stream, exactly what `tollgate crd` prints
/// and what `crds/` and `charts/tollgate/crds/` hold.
pub fn crds_yaml() -> Result<String, serde_yaml_ng::Error> {
    let mut out = String::new();
    for crd in [DeploymentGate::crd(), ReleasePause::crd()] {
        out.push_str("---\n");
        out.push_str(&serde_yaml_ng::to_string(&crd)?);
    }
    Ok(out)
}
