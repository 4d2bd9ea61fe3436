//! Reading a gate's metric analyses: for each analysis that is due, one
//! Prometheus query, folded into its history by the engine
//! (`policy::analysis::record`). The history lives in the gate's status, so
//! it survives restarts and ends with the gate; nothing is kept in memory.

use jiff::Timestamp;

use super::context::Context;
use crate::api::{AnalysisResult, AnalysisStatus, DeploymentGate, parse_duration};
use crate::cluster::events::Transition;
use crate::policy::{self, Reading};
use crate::telemetry::labels;

/// What this reconcile read, for the status write and the Events after it.
#[derive(Debug, Default)]
pub struct Readings {
    /// The histories to write (`status.analysis`), in spec order.
    pub statuses: Vec<AnalysisStatus>,
    /// `status.analysisSummary`.
    pub summary: Option<String>,
    /// A spec problem only the operator can see (`for` longer than the
    /// gate's time to its deadline), naming the field.
    pub invalid: Option<String>,
    /// The analyses Prometheus could not answer, in words (the `AnalysisError` condition).
    pub errors: Vec<String>,
    /// The readings that changed an analysis's verdict: one Event and one log line each.
    pub changes: Vec<(&'static str, String, bool)>,
}

/// Reads every due analysis of `gate` (its spec as the policy bounds it).
pub async fn read(gate: &DeploymentGate, deadline: Timestamp, ctx: &Context) -> Readings {
    let old: &[AnalysisStatus] = gate
        .status
        .as_ref()
        .map(|s| s.analysis.as_slice())
        .unwrap_or_default();
    let mut out = Readings::default();
    if gate.spec.analysis.is_empty() {
        return out;
    }
    // A person's override decides: nothing to read for it.
    if gate.spec.decision_override.is_some() {
        out.statuses = policy::analysis::current(&gate.spec.analysis, old);
        out.summary = policy::analysis::summary(&gate.spec.analysis, &out.statuses);
        return out;
    }
    let created = super::gate::created_at(gate, ctx.now());
    let lifetime = deadline.duration_since(created).unsigned_abs();
    if let Err(why) = policy::analysis::check_all(&gate.spec.analysis, "spec.analysis", lifetime) {
        // Nothing is read for a spec that cannot work: the gate waits (its
        // analysis unread) until it is fixed or the deadline answers.
        out.statuses = policy::analysis::current(&gate.spec.analysis, old);
        out.summary = policy::analysis::summary(&gate.spec.analysis, &out.statuses);
        out.invalid = Some(why);
        return out;
    }
    for a in &gate.spec.analysis {
        let prev = policy::analysis::history(a, old);
        let now = ctx.now();
        if !policy::analysis::due(a, prev, now) {
            out.statuses.extend(prev.cloned());
            continue;
        }
        let reading = match &ctx.settings.prometheus {
            None => Reading::Error(
                "no Prometheus is configured: set prometheus.url in the operator's configuration"
                    .into(),
            ),
            Some(p) => match p.query(&a.query).await {
                Ok(values) => match values.as_slice() {
                    [] => Reading::NoResult,
                    [v] => Reading::Value(*v),
                    many => Reading::SeveralSeries(many.len()),
                },
                Err(e) => Reading::Error(e.to_string()),
            },
        };
        let at = ctx.now();
        let new = policy::analysis::record(a, prev, &reading, at);
        ctx.metrics
            .analysis_readings
            .get_or_create(&labels([("result", result_word(new.result))]))
            .inc();
        let before = prev.map(|p| p.result).unwrap_or(AnalysisResult::Pending);
        if before != new.result {
            let hold = parse_duration(&a.hold_for).unwrap_or_default();
            let note = format!(
                "analysis {}: {before:?} → {:?}: {} (for {})",
                a.name,
                new.result,
                new.message,
                policy::analysis::go_duration(hold)
            );
            let warning = !matches!(new.result, AnalysisResult::Passing | AnalysisResult::Passed);
            out.changes.push((reason_of(new.result), note, warning));
        }
        out.statuses.push(new);
    }
    out.errors = out
        .statuses
        .iter()
        .filter(|s| s.result == AnalysisResult::Error)
        .map(|s| format!("analysis {}: {}", s.name, s.message))
        .collect();
    out.summary = policy::analysis::summary(&gate.spec.analysis, &out.statuses);
    out
}

/// One Event and one log line per reading that changed a verdict.
pub async fn publish(gate: &DeploymentGate, readings: &Readings, ctx: &Context) {
    for (reason, note, warning) in &readings.changes {
        let t = Transition {
            reason,
            note: note.clone(),
            warning: *warning,
        };
        crate::cluster::events::publish(&ctx.events, gate, &t).await;
        crate::cluster::events::log_gate(gate, &t, None);
    }
}

fn result_word(r: AnalysisResult) -> &'static str {
    match r {
        AnalysisResult::Pending => "pending",
        AnalysisResult::Passing | AnalysisResult::Passed => "pass",
        AnalysisResult::Failing | AnalysisResult::Failed => "fail",
        AnalysisResult::Inconclusive => "inconclusive",
        AnalysisResult::Error => "error",
    }
}

fn reason_of(r: AnalysisResult) -> &'static str {
    match r {
        AnalysisResult::Pending => "AnalysisPending",
        AnalysisResult::Passing => "AnalysisPassing",
        AnalysisResult::Passed => "AnalysisPassed",
        AnalysisResult::Failing => "AnalysisFailing",
        AnalysisResult::Failed => "AnalysisFailed",
        AnalysisResult::Inconclusive => "AnalysisInconclusive",
        AnalysisResult::Error => "AnalysisError",
    }
}
