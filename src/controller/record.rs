//! One Kubernetes Event and one structured log line per transition.

use kube::Resource;
use kube::runtime::events::{Event, EventType, Recorder};

use crate::api::DeploymentGate;

/// A transition worth telling people about.
pub struct Transition<'a> {
    /// PascalCase reason: `Waiting`, `Approved`, `Rejected`, `Delivered`, …
    pub reason: &'a str,
    /// What happened, in words.
    pub note: String,
    /// Warning for things a person should look at.
    pub warning: bool,
}

/// Publishes the Event; a failure to publish is logged, never fatal: the status
/// write already recorded the transition.
pub async fn publish<K: Resource<DynamicType = ()>>(
    recorder: &Recorder,
    obj: &K,
    t: &Transition<'_>,
) {
    let mut note = t.note.clone();
    if note.len() > 1000 {
        let mut cut = 1000;
        while !note.is_char_boundary(cut) {
            cut -= 1;
        }
        note.truncate(cut);
    }
    let event = Event {
        type_: if t.warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: t.reason.to_string(),
        note: Some(note),
        action: t.reason.to_string(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&event, &obj.object_ref(&())).await {
        tracing::warn!(error = %e, reason = t.reason, "could not publish a Kubernetes Event");
    }
}

/// The structured log line of a gate transition.
pub fn log_gate(gate: &DeploymentGate, t: &Transition<'_>, latency_ms: Option<u128>) {
    let status = gate.status.as_ref();
    let decision = status.and_then(|s| s.decision.as_ref());
    let deployment_id = gate.spec.deployment_id;
    let name = format!(
        "{}/{}",
        gate.metadata.namespace.as_deref().unwrap_or(""),
        gate.metadata.name.as_deref().unwrap_or("")
    );
    let fields = (
        name.as_str(),
        gate.spec.repository.as_str(),
        gate.spec.environment.as_str(),
        gate.spec.sha.as_str(),
        gate.spec.run_id,
    );
    if t.warning {
        tracing::warn!(
            gate = fields.0, repository = fields.1, environment = fields.2, sha = fields.3, run_id = fields.4,
            deployment_id, decision = decision.map(|d| d.verdict.github_state()), source = decision.map(|d| format!("{:?}", d.source)),
            transition = t.reason, reason = %t.note, latency_ms, "gate transition"
        );
    } else {
        tracing::info!(
            gate = fields.0, repository = fields.1, environment = fields.2, sha = fields.3, run_id = fields.4,
            deployment_id, decision = decision.map(|d| d.verdict.github_state()), source = decision.map(|d| format!("{:?}", d.source)),
            transition = t.reason, reason = %t.note, latency_ms, "gate transition"
        );
    }
}
