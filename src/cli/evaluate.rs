//! `tollgate evaluate`: offline verdicts for DeploymentGate and ReleasePause
//! manifests — "why is my gate blocked?" without a cluster.

use std::path::PathBuf;
use std::time::Duration;

use jiff::Timestamp;
use serde_json::{Value, json};

use serde::Deserialize;

use crate::api::{AnalysisStatus, DeploymentGate, ReleasePause, parse_duration};
use crate::policy::{
    self, CheckResults, CheckState, EvalContext, HealthResults, Reading, Ruling, WorkloadHealth,
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
    /// A YAML or JSON file of metric readings, to try analyses offline: a list of
    /// `{analysis, at, value}` (or `result: none|several` instead of
    /// `value`; `value: NaN` for NaN), read in order and folded into each
    /// gate's history for the analysis of that name.
    #[arg(long = "readings")]
    pub readings: Option<PathBuf>,
}

/// One reading in a `--readings` file.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadingRecord {
    /// The analysis's name (`spec.analysis[].name`).
    pub analysis: String,
    /// When it was read (RFC 3339).
    pub at: Timestamp,
    /// The value; `.nan` or "NaN" in YAML for NaN.
    #[serde(default, deserialize_with = "number_or_nan")]
    pub value: Option<f64>,
    /// Instead of a value: `none` (no series), `several` (more than one), or
    /// `error` (Prometheus did not answer).
    #[serde(default)]
    pub result: Option<String>,
}

fn number_or_nan<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum N {
        F(f64),
        S(String),
    }
    match Option::<N>::deserialize(d)? {
        None => Ok(None),
        Some(N::F(f)) => Ok(Some(f)),
        Some(N::S(s)) if s.eq_ignore_ascii_case("nan") => Ok(Some(f64::NAN)),
        Some(N::S(s)) => s
            .parse()
            .map(Some)
            .map_err(|_| serde::de::Error::custom(format!("value {s:?} is not a number"))),
    }
}

fn reading_of(r: &ReadingRecord) -> Result<Reading, String> {
    match (r.value, r.result.as_deref()) {
        (Some(v), None) => Ok(Reading::Value(v)),
        (None, Some("none")) => Ok(Reading::NoResult),
        (None, Some("several")) => Ok(Reading::SeveralSeries(2)),
        (None, Some("error")) => Ok(Reading::Error("offline: recorded as unanswered".into())),
        _ => Err(format!(
            "reading of {} at {}: give either `value` or `result: none|several|error`",
            r.analysis, r.at
        )),
    }
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
    let readings: Vec<ReadingRecord> = match &args.readings {
        None => Vec::new(),
        Some(path) => {
            let file = path.display().to_string();
            let text = std::fs::read_to_string(path).map_err(|source| EvaluateError::Read {
                file: file.clone(),
                source,
            })?;
            serde_yaml_ng::from_str(&text).map_err(|e| EvaluateError::Invalid {
                file: file.clone(),
                doc: 1,
                why: format!("readings: {e}; write a list of {{analysis, at, value}}"),
            })?
        }
    };
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
        let mut history: Vec<AnalysisStatus> = g
            .status
            .as_ref()
            .map(|s| policy::analysis::current(&g.spec.analysis, &s.analysis))
            .unwrap_or_default();
        for r in readings.iter().filter(|r| r.at <= now) {
            let Some(a) = g.spec.analysis.iter().find(|a| a.name == r.analysis) else {
                continue;
            };
            let reading = reading_of(r).map_err(|why| EvaluateError::Invalid {
                file: args
                    .readings
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                doc: 1,
                why,
            })?;
            let prev = policy::analysis::history(a, &history).cloned();
            let next = policy::analysis::record(a, prev.as_ref(), &reading, r.at);
            history.retain(|s| s.name != a.name);
            history.push(next);
        }
        let out = match policy::evaluate(&gate, &pauses, &checks, &health, &history, &ctx, now) {
            Ruling::Approve { reason, .. } => {
                json!({"gate": format!("{ns}/{name}"), "verdict": "approve", "reason": reason, "blockers": [], "nextEvaluation": null})
            }
            Ruling::Reject { reason, .. } => {
                json!({"gate": format!("{ns}/{name}"), "verdict": "reject", "reason": reason, "blockers": [], "nextEvaluation": null})
            }
            Ruling::Wait {
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
    let lifetime = s
        .timeout
        .as_deref()
        .and_then(|t| parse_duration(t).ok())
        .unwrap_or(crate::api::MAX_GATE_LIFETIME);
    policy::analysis::check_all(&s.analysis, "spec.analysis", lifetime)?;
    Ok(())
}
