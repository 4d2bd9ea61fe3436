//! `tollgate status`: gates and pauses as tables — what each gate waits for,
//! until when, and what happens at its deadline; what each pause holds.

use jiff::Timestamp;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};

use super::args::{namespace_or_default, timestamp};
use super::error::{Call, CliError};
use crate::api::{
    Blocker, BlockerKind, CONDITION_FORBIDDEN, DeploymentGate, OnDeadline, ReleasePause,
};

/// Flags of `tollgate status`.
#[derive(clap::Args, Debug, Clone)]
pub struct StatusArgs {
    /// Namespace to show; default: the kubeconfig context's.
    #[arg(long, short = 'n', conflicts_with = "all_namespaces")]
    pub namespace: Option<String>,
    /// Show every namespace.
    #[arg(long, short = 'A')]
    pub all_namespaces: bool,
}

/// Lists gates and pauses and renders both tables.
pub async fn status(client: &Client, args: &StatusArgs) -> Result<String, CliError> {
    let namespace =
        (!args.all_namespaces).then(|| namespace_or_default(client, args.namespace.as_deref()));
    let call = |kind, resource| Call {
        verb: "list",
        kind,
        resource,
        namespace: namespace.as_deref(),
        name: None,
    };
    let (gates, pauses): (Api<DeploymentGate>, Api<ReleasePause>) = match &namespace {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
        ),
        None => (Api::all(client.clone()), Api::all(client.clone())),
    };
    let mut gates = gates
        .list(&ListParams::default())
        .await
        .map_err(|e| call("DeploymentGate", "deploymentgates.tollgate.dev").error(e))?
        .items;
    let mut pauses = pauses
        .list(&ListParams::default())
        .await
        .map_err(|e| call("ReleasePause", "releasepauses.tollgate.dev").error(e))?
        .items;
    gates.sort_by_key(|g| (g.namespace(), g.name_any()));
    pauses.sort_by_key(|p| (p.namespace(), p.name_any()));
    Ok(render(&gates, &pauses, namespace.as_deref()))
}

/// Both tables as text. `namespace` is `None` for all namespaces.
pub fn render(
    gates: &[DeploymentGate],
    pauses: &[ReleasePause],
    namespace: Option<&str>,
) -> String {
    let place = match namespace {
        Some(ns) => format!("in namespace {ns}"),
        None => "in any namespace".to_string(),
    };
    let mut out = String::new();
    if gates.is_empty() {
        out.push_str(&format!("No DeploymentGates {place}.\n"));
    } else {
        let header = [
            "NAMESPACE/NAME",
            "REPOSITORY",
            "ENV",
            "PHASE",
            "WAITING FOR",
            "UNTIL",
            "AT DEADLINE",
        ];
        out.push_str(&table(&header, gates.iter().map(gate_row).collect()));
    }
    out.push('\n');
    if pauses.is_empty() {
        out.push_str(&format!("No ReleasePauses {place}.\n"));
    } else {
        let header = ["NAME", "SCOPE", "STATE", "REASON", "SHA", "HELD"];
        out.push_str(&table(&header, pauses.iter().map(pause_row).collect()));
    }
    out
}

fn gate_row(g: &DeploymentGate) -> Vec<String> {
    let status = g.status.clone().unwrap_or_default();
    let phase = status
        .phase
        .map(|p| format!("{p:?}"))
        .unwrap_or_else(|| "Pending".into());
    let decided = status.decision.is_some() || status.phase.is_some_and(|p| p.is_terminal());
    let deadline = status.deadline.or(g.spec.deadline);
    let (waiting, until, at_deadline) = if decided {
        ("-".to_string(), "-".to_string(), "-".to_string())
    } else {
        let forbidden = status
            .conditions
            .iter()
            .any(|c| c.type_ == CONDITION_FORBIDDEN && c.status == "True");
        let waiting = if forbidden {
            "tenancy: namespace may not gate this repository".to_string()
        } else if status.blockers.is_empty() {
            "evaluation".to_string()
        } else {
            status
                .blockers
                .iter()
                .map(blocker_words)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let until = waits_until(&status.blockers, deadline)
            .map(timestamp)
            .unwrap_or_else(|| "-".into());
        let at_deadline = match g.spec.on_deadline {
            OnDeadline::Reject => "Reject",
            OnDeadline::Approve => "Approve",
        };
        (waiting, until, at_deadline.to_string())
    };
    vec![
        format!("{}/{}", g.namespace().unwrap_or_default(), g.name_any()),
        g.spec.repository.clone(),
        g.spec.environment.clone(),
        phase,
        waiting,
        until,
        at_deadline,
    ]
}

/// What holds a gate, in words.
fn blocker_words(b: &Blocker) -> String {
    let kind = match b.kind {
        BlockerKind::Pause => "pause",
        BlockerKind::Window => "freeze window",
        BlockerKind::Check => "check",
        BlockerKind::Workload => "workload",
        BlockerKind::Analysis => "analysis",
    };
    format!("{kind} {}", b.name)
}

/// The latest a gate can wait: until every blocker has ended (when each says
/// when it ends), and never past the deadline.
fn waits_until(blockers: &[Blocker], deadline: Option<Timestamp>) -> Option<Timestamp> {
    let all_end = blockers.iter().map(|b| b.until).collect::<Option<Vec<_>>>();
    let blockers_end = all_end.and_then(|ends| ends.into_iter().max());
    match (blockers_end, deadline) {
        (Some(b), Some(d)) => Some(b.min(d)),
        (_, d) => d,
    }
}

fn pause_row(p: &ReleasePause) -> Vec<String> {
    let status = p.status.clone().unwrap_or_default();
    let scope = status.scope.clone().unwrap_or_else(|| {
        let repos = p.spec.scope.repositories.join(",");
        if p.spec.scope.environments.is_empty() {
            repos
        } else {
            format!("{repos} @ {}", p.spec.scope.environments.join(","))
        }
    });
    vec![
        format!("{}/{}", p.namespace().unwrap_or_default(), p.name_any()),
        scope,
        status
            .state
            .map(|s| format!("{s:?}"))
            .unwrap_or_else(|| "-".into()),
        p.spec.reason.clone(),
        p.spec
            .sha
            .as_deref()
            .map(|s| s[..s.len().min(7)].to_string())
            .unwrap_or_else(|| "-".into()),
        status.held_gates.to_string(),
    ]
}

/// Left-aligned columns separated by three spaces, like kubectl.
fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 < cells.len() {
                s.push_str(&format!("{cell:<w$}   "));
            } else {
                s.push_str(cell);
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(header.to_vec());
    for row in &rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}
