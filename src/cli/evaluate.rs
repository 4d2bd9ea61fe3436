//! `tollgate evaluate`: offline verdicts for DeploymentGate and ReleasePause
//! manifests — "why is my gate blocked?" without a cluster.

use std::path::PathBuf;
use std::time::Duration;

use jiff::Timestamp;
use serde_json::{Value, json};

use crate::api::{DeploymentGate, ReleasePause, parse_duration};
use crate::policy::{
    self, CheckResults, CheckState, EvalContext, HealthResults, Verdict, WorkloadHealth,
};

/// Flags of `tollgate evaluate`.
#[derive(clap::Args, Debug, Clone)]
pub struct EvaluateArgs {
    /// Manifest files (multi-document YAML) holding DeploymentGates and ReleasePauses.
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<PathBuf>,
    /// Evaluate at this instant (RFC 3339) instead of now.
    #[arg(long)]
    pub now: Option<Timestamp>,
    /// A check result, NAME=success|failure|pending (repeatable). Unknown checks are pending.
    #[arg(long = "check", value_parser = parse_check)]
    pub checks: Vec<(String, CheckState)>,
    /// A workload to treat as healthy, Kind/namespace/name (repeatable). Others are unknown offline.
    #[arg(long = "healthy")]
    pub healthy: Vec<String>,
    /// Deadline of gates that set neither deadline nor timeout.
    #[arg(long, default_value = "1h", value_parser = parse_go_duration)]
    pub default_timeout: Duration,
    /// Check-poll interval used for the next evaluation of gates waiting on checks.
    #[arg(long, default_value = "60s", value_parser = parse_go_duration)]
    pub check_poll: Duration,
}

fn parse_go_duration(s: &str) -> Result<Duration, String> {
    parse_duration(s).map_err(|e| e.to_string())
}

fn parse_check(s: &str) -> Result<(String, CheckState), String> {
    let (name, state) = s
        .rsplit_once('=')
        .ok_or_else(|| format!("--check {s:?}: write NAME=success|failure|pending"))?;
    let state = match state {
        "success" => CheckState::Success,
        "failure" => CheckState::Failure,
        "pending" => CheckState::Pending,
        other => {
            return Err(format!(
                "--check {name}: {other:?} is not success, failure or pending"
            ));
        }
    };
    Ok((name.to_string(), state))
}

/// Input that cannot be evaluated; names the file, the document and the field.
#[derive(Debug, thiserror::Error)]
pub enum EvaluateError {
    #[error("{file}: cannot be read: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}: document {doc}: {why}")]
    Invalid {
        file: String,
        doc: usize,
        why: String,
    },
}

/// Evaluates every gate in the files against every pause in them; one JSON line per gate.
pub fn evaluate(args: &EvaluateArgs) -> Result<Vec<String>, EvaluateError> {
    let now = args.now.unwrap_or_else(Timestamp::now);
    let mut gates = Vec::new();
    let mut pauses = Vec::new();
    for path in &args.files {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| EvaluateError::Read {
            file: file.clone(),
            source,
        })?;
        let parsed = parse_manifests(&file, &text)?;
        gates.extend(parsed.gates);
        pauses.extend(parsed.pauses);
    }
    let checks: CheckResults = args.checks.iter().cloned().collect();
    let mut lines = Vec::new();
    for g in &gates {
        let ns = g
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let name = g.metadata.name.clone().unwrap_or_default();
        let health: HealthResults = g
            .spec
            .require_healthy
            .iter()
            .map(|w| {
                let key = format!(
                    "{:?}/{}/{}",
                    w.kind,
                    w.namespace.as_deref().unwrap_or(&ns),
                    w.name
                );
                let h = if args.healthy.contains(&key) {
                    WorkloadHealth::Healthy
                } else {
                    WorkloadHealth::Unhealthy(
                        "not checked offline (pass --healthy to assume it)".into(),
                    )
                };
                (key, h)
            })
            .collect();
        let mut gate = g.clone();
        gate.metadata.namespace = Some(ns.clone());
        let created = g
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0)
            .unwrap_or(now);
        let horizon = policy::deadline::Horizon {
            created,
            requested: g.spec.requested_at,
            default_timeout: args.default_timeout,
            max_timeout: crate::api::MAX_GATE_LIFETIME,
        };
        let deadline = policy::deadline::resolve(&g.spec, &horizon).at;
        let ctx = EvalContext {
            deadline,
            check_poll: args.check_poll,
        };
        let out = match policy::evaluate(&gate, &pauses, &checks, &health, &ctx, now) {
            Verdict::Approve { reason, .. } => {
                json!({"gate": format!("{ns}/{name}"), "verdict": "approve", "reason": reason, "blockers": [], "nextEvaluation": null})
            }
            Verdict::Reject { reason, .. } => {
                json!({"gate": format!("{ns}/{name}"), "verdict": "reject", "reason": reason, "blockers": [], "nextEvaluation": null})
            }
            Verdict::Wait {
                blockers,
                next_evaluation,
            } => json!({
                "gate": format!("{ns}/{name}"),
                "verdict": "wait",
                "reason": policy::report::describe_blockers(&blockers),
                "blockers": blockers.iter().map(|b| json!({"kind": format!("{:?}", b.kind), "name": b.name, "until": b.until.map(|u| u.to_string())})).collect::<Vec<_>>(),
                "nextEvaluation": next_evaluation.to_string(),
            }),
        };
        lines.push(out.to_string());
    }
    Ok(lines)
}

/// The DeploymentGates and ReleasePauses of one manifest file.
#[derive(Debug, Default)]
pub struct Manifests {
    pub gates: Vec<DeploymentGate>,
    pub pauses: Vec<ReleasePause>,
}

/// Parses multi-document YAML `text` (named `file` in errors) into gates and
/// pauses, checking gates as the CRD schema would. Never panics on any input.
pub fn parse_manifests(file: &str, text: &str) -> Result<Manifests, EvaluateError> {
    let mut out = Manifests::default();
    for (i, doc) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let doc_no = i + 1;
        let invalid = |why: String| EvaluateError::Invalid {
            file: file.to_string(),
            doc: doc_no,
            why,
        };
        let value: Value =
            serde::Deserialize::deserialize(doc).map_err(|e| invalid(format!("not YAML: {e}")))?;
        if value.is_null() {
            continue;
        }
        match value.get("kind").and_then(Value::as_str) {
            Some("DeploymentGate") => {
                let g: DeploymentGate = serde_json::from_value(value)
                    .map_err(|e| invalid(format!("DeploymentGate: {e}")))?;
                check_gate(&g).map_err(invalid)?;
                out.gates.push(g);
            }
            Some("ReleasePause") => {
                let p: ReleasePause = serde_json::from_value(value)
                    .map_err(|e| invalid(format!("ReleasePause: {e}")))?;
                out.pauses.push(p);
            }
            Some(other) => {
                return Err(invalid(format!(
                    "kind {other:?} is neither DeploymentGate nor ReleasePause"
                )));
            }
            None => return Err(invalid("missing field `kind`".into())),
        }
    }
    Ok(out)
}

/// What the CRD schema would refuse, checked offline with the same words.
fn check_gate(g: &DeploymentGate) -> Result<(), String> {
    let s = &g.spec;
    let repo_ok = s
        .repository
        .split_once('/')
        .is_some_and(|(o, n)| !o.is_empty() && !n.is_empty() && !n.contains('/'));
    if !repo_ok {
        return Err(format!(
            "spec.repository {:?} must be owner/name",
            s.repository
        ));
    }
    if s.sha.len() != 40
        || !s
            .sha
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(format!(
            "spec.sha {:?} must be 40 lowercase hex characters",
            s.sha
        ));
    }
    if s.deadline.is_some() && s.timeout.is_some() {
        return Err("set either spec.deadline or spec.timeout, not both".into());
    }
    if let Some(t) = &s.timeout {
        parse_duration(t).map_err(|e| format!("spec.timeout: {e}"))?;
    }
    Ok(())
}
