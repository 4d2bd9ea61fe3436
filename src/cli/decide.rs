//! `tollgate approve` / `tollgate reject`: a person's decision on a waiting gate,
//! recorded as `spec.override` with who made it and why.

use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;

use super::args::namespace_or_default;
use super::error::{Call, CliError, is_conflict};
use super::identity::whoami;
use crate::api::{DeploymentGate, Verdict};

/// Flags of `tollgate approve` and `tollgate reject`.
#[derive(clap::Args, Debug, Clone)]
pub struct DecideArgs {
    /// The DeploymentGate's name.
    pub gate: String,
    /// Why, in words: shown in the gate's status, its Event and to the person watching the run.
    #[arg(long, value_parser = parse_reason)]
    pub reason: String,
    /// Namespace of the gate; default: the kubeconfig context's.
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
}

/// How often a write is retried when the gate changes underneath it.
const ATTEMPTS: u32 = 3;

/// Sets `spec.override` on an undecided gate. A decided gate is refused: its
/// decision is final.
pub async fn decide(
    client: &Client,
    args: &DecideArgs,
    verdict: Verdict,
) -> Result<String, CliError> {
    let namespace = namespace_or_default(client, args.namespace.as_deref());
    let api: Api<DeploymentGate> = Api::namespaced(client.clone(), &namespace);
    let call = |verb| Call {
        verb,
        kind: "DeploymentGate",
        resource: "deploymentgates.tollgate.dev",
        namespace: Some(&namespace),
        name: Some(&args.gate),
    };
    let by = whoami(client).await?;
    for _ in 0..ATTEMPTS {
        let gate = api
            .get(&args.gate)
            .await
            .map_err(|e| call("get").error(e))?;
        refuse_if_forbidden(&gate, &namespace)?;
        refuse_if_decided(&gate, &namespace)?;
        // The resourceVersion makes the write conditional: if the operator
        // decides in between, the API server answers 409 and we look again.
        let patch = json!({
            "metadata": {"resourceVersion": gate.resource_version()},
            "spec": {"override": {"decision": verdict, "reason": args.reason, "by": by}},
        });
        match api
            .patch(&args.gate, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {
                let word = match verdict {
                    Verdict::Approve => "approve",
                    Verdict::Reject => "reject",
                };
                return Ok(format!(
                    "DeploymentGate {namespace}/{}: override {word} by {by} recorded ({}); the operator decides and tells GitHub.\nFollow it with: kubectl -n {namespace} wait --for=condition=Delivered dg/{}\n",
                    args.gate, args.reason, args.gate
                ));
            }
            Err(e) if is_conflict(&e) => continue,
            Err(e) => return Err(call("patch").error(e)),
        }
    }
    Err(CliError::Conflict {
        kind: "DeploymentGate",
        namespace,
        name: args.gate.clone(),
        attempts: ATTEMPTS,
    })
}

/// Tenancy first: a gate the operator refuses (condition `Forbidden`) is
/// never answered, so the CLI says so instead of recording an override.
fn refuse_if_forbidden(gate: &DeploymentGate, namespace: &str) -> Result<(), CliError> {
    let forbidden = gate.status.as_ref().and_then(|s| {
        s.conditions
            .iter()
            .find(|c| c.type_ == crate::api::CONDITION_FORBIDDEN && c.status == "True")
    });
    match forbidden {
        Some(c) => Err(CliError::RefusedByTenancy {
            namespace: namespace.to_string(),
            name: gate.name_any(),
            why: c.message.clone(),
        }),
        None => Ok(()),
    }
}

fn refuse_if_decided(gate: &DeploymentGate, namespace: &str) -> Result<(), CliError> {
    let Some(status) = &gate.status else {
        return Ok(());
    };
    let decided = |verdict: String, source: String, reason: String| CliError::AlreadyDecided {
        namespace: namespace.to_string(),
        name: gate.name_any(),
        verdict,
        decided_by: source,
        reason,
    };
    if let Some(d) = &status.decision {
        return Err(decided(
            format!("{:?}", crate::api::Phase::of(d.verdict)),
            format!("{:?}", d.source),
            d.reason.clone(),
        ));
    }
    match status.phase {
        Some(phase) if phase.is_terminal() => Err(decided(
            format!("{phase:?}"),
            "the operator".into(),
            status
                .reason
                .clone()
                .unwrap_or_else(|| "no reason recorded".into()),
        )),
        _ => Ok(()),
    }
}

fn parse_reason(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.is_empty() {
        Err("say why in words, e.g. --reason \"hotfix for INC-42, checked by hand\"".into())
    } else if s.len() > 1024 {
        Err("at most 1024 characters".into())
    } else {
        Ok(s.to_string())
    }
}
