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

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
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

/// Annotation on each generated CRD: a fingerprint of its spec, so the
/// operator can tell at start-up whether the installed CRDs are the ones this
/// binary was built with (an older schema would prune fields it writes).
pub const ANNOTATION_SCHEMA: &str = "tollgate.dev/schema";

/// Both CRDs as this binary generates them, each carrying its
/// [`ANNOTATION_SCHEMA`] fingerprint.
pub fn crds() -> Vec<CustomResourceDefinition> {
    [DeploymentGate::crd(), ReleasePause::crd()]
        .into_iter()
        .map(|mut crd| {
            let fingerprint = schema_fingerprint(&crd);
            crd.metadata
                .annotations
                .get_or_insert_with(Default::default)
                .insert(ANNOTATION_SCHEMA.to_string(), fingerprint);
            crd
        })
        .collect()
}

/// The first 16 hex digits of the SHA-256 of the CRD's spec as JSON: any
/// change to names, versions, columns or schema changes it.
pub fn schema_fingerprint(crd: &CustomResourceDefinition) -> String {
    use sha2::Digest;
    // Serialising a typed spec cannot fail; an empty input would still give a
    // fingerprint that matches no installed CRD.
    let json = serde_json::to_vec(&crd.spec).unwrap_or_default();
    let digest = sha2::Sha256::digest(&json);
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Both CRDs as one multi-document YAML stream, exactly what `tollgate crd` prints
/// and what `crds/` and `charts/tollgate/crds/` hold.
pub fn crds_yaml() -> Result<String, serde_yaml_ng::Error> {
    let mut out = String::new();
    for crd in crds() {
        out.push_str("---\n");
        out.push_str(&serde_yaml_ng::to_string(&crd)?);
    }
    Ok(out)
}
