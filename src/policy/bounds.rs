//! A gate's effective spec: never looser than the intake policy that matches
//! its repository and environment. A gate someone applied by hand may add
//! checks or wait longer; it may not drop the policy's checks or analyses,
//! loosen an analysis of the policy, answer approve at the deadline, run dry
//! or wait longer than the policy allows.

use std::time::Duration;

use crate::api::{Analysis, DeploymentGateSpec, OnDeadline, WorkloadRef};

/// What the intake policy matching a gate allows at most.
#[derive(Debug, Clone, PartialEq)]
pub struct Bound {
    /// Where it comes from, for messages: `policies[2]` or `defaults`.
    pub origin: String,
    /// Checks every gate of this repository and environment waits for.
    pub required_checks: Vec<String>,
    /// Workloads every gate of this repository and environment waits for.
    pub require_healthy: Vec<WorkloadRef>,
    /// Metric analyses every gate of this repository and environment must
    /// pass, exactly as the policy writes them.
    pub analysis: Vec<Analysis>,
    /// Whether gates may run dry (answer approve whatever the verdict).
    pub allow_dry_run: bool,
    /// `Approve` only where the policy answers approve at its deadline.
    pub on_deadline: OnDeadline,
    /// The longest a gate may wait, from its creation.
    pub max_timeout: Duration,
}

/// The spec evaluation uses, and what was tightened to get it (empty when
/// the gate was already within its bound).
pub fn bound_spec(spec: &DeploymentGateSpec, bound: &Bound) -> (DeploymentGateSpec, Vec<String>) {
    let mut out = spec.clone();
    let mut notes = Vec::new();
    let o = &bound.origin;
    let added: Vec<&String> = bound
        .required_checks
        .iter()
        .filter(|c| !spec.required_checks.contains(c))
        .collect();
    if !added.is_empty() {
        notes.push(format!(
            "requiredChecks {} added by {o}",
            added
                .iter()
                .map(|c| c.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
        out.required_checks.extend(added.into_iter().cloned());
    }
    let workloads: Vec<&WorkloadRef> = bound
        .require_healthy
        .iter()
        .filter(|w| !spec.require_healthy.contains(w))
        .collect();
    if !workloads.is_empty() {
        notes.push(format!(
            "requireHealthy {} added by {o}",
            workloads
                .iter()
                .map(|w| format!("{:?}/{}", w.kind, w.name))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        out.require_healthy.extend(workloads.into_iter().cloned());
    }
    for a in &bound.analysis {
        match out.analysis.iter_mut().find(|g| g.name == a.name) {
            Some(g) if g == a => {}
            Some(g) => {
                notes.push(format!("analysis {} is the one of {o}", a.name));
                *g = a.clone();
            }
            None => {
                notes.push(format!("analysis {} added by {o}", a.name));
                out.analysis.push(a.clone());
            }
        }
    }
    if spec.dry_run && !bound.allow_dry_run {
        notes.push(format!("dryRun ignored: {o} does not allow it"));
        out.dry_run = false;
    }
    if spec.on_deadline == OnDeadline::Approve && bound.on_deadline != OnDeadline::Approve {
        notes.push(format!(
            "onDeadline Approve ignored: {o} answers Reject at the deadline"
        ));
        out.on_deadline = OnDeadline::Reject;
    }
    (out, notes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::WorkloadKind;

    fn spec() -> DeploymentGateSpec {
        serde_json::from_value(serde_json::json!({
            "repository": "acme/web", "environment": "production",
            "sha": "a".repeat(40), "runId": 1,
        }))
        .expect("spec")
    }

    fn bound() -> Bound {
        Bound {
            origin: "policies[0]".into(),
            required_checks: vec!["ci/test".into()],
            require_healthy: vec![WorkloadRef {
                kind: WorkloadKind::Deployment,
                name: "web".into(),
                namespace: Some("staging".into()),
            }],
            analysis: Vec::new(),
            allow_dry_run: false,
            on_deadline: OnDeadline::Reject,
            max_timeout: Duration::from_secs(3600),
        }
    }

    #[test]
    fn a_gate_cannot_drop_checks_run_dry_or_fail_open() {
        let mut s = spec();
        s.required_checks = vec!["lint".into()];
        s.dry_run = true;
        s.on_deadline = OnDeadline::Approve;
        let (eff, notes) = bound_spec(&s, &bound());
        assert_eq!(eff.required_checks, vec!["lint", "ci/test"]);
        assert_eq!(eff.require_healthy.len(), 1);
        assert!(!eff.dry_run);
        assert_eq!(eff.on_deadline, OnDeadline::Reject);
        assert_eq!(
            notes,
            vec![
                "requiredChecks ci/test added by policies[0]",
                "requireHealthy Deployment/web added by policies[0]",
                "dryRun ignored: policies[0] does not allow it",
                "onDeadline Approve ignored: policies[0] answers Reject at the deadline",
            ]
        );
    }

    #[test]
    fn a_gate_within_its_bound_is_unchanged() {
        let mut s = spec();
        s.required_checks = vec!["ci/test".into()];
        s.require_healthy = bound().require_healthy;
        let mut b = bound();
        b.allow_dry_run = true;
        b.on_deadline = OnDeadline::Approve;
        s.dry_run = true;
        s.on_deadline = OnDeadline::Approve;
        let (eff, notes) = bound_spec(&s, &b);
        assert_eq!(eff, s);
        assert!(notes.is_empty(), "{notes:?}");
    }
}

#[cfg(test)]
mod analysis_bounds {
    use super::*;

    fn analysis(name: &str, max: f64) -> Analysis {
        serde_json::from_value(serde_json::json!({
            "name": name, "query": "up", "max": max, "for": "10m", "interval": "1m",
        }))
        .expect("analysis")
    }

    /// The adversary: a team that hand-applies a gate without the policy's
    /// analysis, or with the same name but a looser bound.
    #[test]
    fn a_gate_cannot_drop_or_loosen_the_policys_analysis() {
        let mut spec: DeploymentGateSpec = serde_json::from_value(serde_json::json!({
            "repository": "acme/web", "environment": "production",
            "sha": "a".repeat(40), "runId": 1,
        }))
        .expect("spec");
        let bound = Bound {
            origin: "policies[0]".into(),
            required_checks: Vec::new(),
            require_healthy: Vec::new(),
            analysis: vec![analysis("staging-errors", 0.01), analysis("latency", 0.5)],
            allow_dry_run: false,
            on_deadline: OnDeadline::Reject,
            max_timeout: Duration::from_secs(3600),
        };
        spec.analysis = vec![analysis("staging-errors", 1.0), analysis("own", 3.0)];
        let (eff, notes) = bound_spec(&spec, &bound);
        assert_eq!(
            eff.analysis,
            vec![
                analysis("staging-errors", 0.01),
                analysis("own", 3.0),
                analysis("latency", 0.5)
            ]
        );
        assert_eq!(
            notes,
            vec![
                "analysis staging-errors is the one of policies[0]",
                "analysis latency added by policies[0]",
            ]
        );
    }
}
