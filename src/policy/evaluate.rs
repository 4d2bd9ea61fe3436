//! `evaluate`: the one function that decides a gate.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use super::analysis::{self, Assessment};
use super::checks::{CheckResults, CheckState, HealthResults, WorkloadHealth};
use super::recovery::pause_state;
use super::scope;
use crate::api::{
    AnalysisStatus, Blocker, BlockerKind, DecisionSource, DeploymentGate, PauseState, ReleasePause,
    Verdict,
};

/// What the engine says about a gate: approve, reject, or wait (the API's
/// [`Verdict`] is only the first two, the answer GitHub is given).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ruling {
    /// Let the deployment through.
    Approve {
        reason: String,
        source: DecisionSource,
    },
    /// Stop the deployment.
    Reject {
        reason: String,
        source: DecisionSource,
    },
    /// Something holds the gate; evaluate again at `next_evaluation`.
    Wait {
        blockers: Vec<Blocker>,
        next_evaluation: Timestamp,
    },
}

/// What the engine needs besides the objects.
#[derive(Debug, Clone, Copy)]
pub struct EvalContext {
    /// The gate's effective deadline (see `deadline::resolve`).
    pub deadline: Timestamp,
    /// How often pending checks and workloads are looked at again.
    pub check_poll: Duration,
}

fn verdict(v: Verdict, reason: String, source: DecisionSource) -> Ruling {
    match v {
        Verdict::Approve => Ruling::Approve { reason, source },
        Verdict::Reject => Ruling::Reject { reason, source },
    }
}

/// Decides a gate. Order: already decided → that decision; override → it;
/// deadline passed with something still holding → `onDeadline`, naming what held
/// it; a failed required check or analysis → reject; anything holding → wait
/// until the earliest instant it can change (a window's end, the next poll,
/// the next reading of an analysis); otherwise approve.
///
/// `analyses` are the histories of the gate's metric analyses after the
/// readings the caller just made (see `policy::analysis`); an analysis
/// without one is not read yet and holds the gate.
pub fn evaluate(
    gate: &DeploymentGate,
    pauses: &[ReleasePause],
    checks: &CheckResults,
    health: &HealthResults,
    analyses: &[AnalysisStatus],
    ctx: &EvalContext,
    now: Timestamp,
) -> Ruling {
    if let Some(d) = gate.status.as_ref().and_then(|s| s.decision.as_ref()) {
        return verdict(d.verdict, d.reason.clone(), d.source);
    }
    if let Some(o) = &gate.spec.decision_override {
        let by =
            o.by.as_deref()
                .map(|b| format!(" by {b}"))
                .unwrap_or_default();
        return verdict(
            o.decision,
            format!("override{by}: {}", o.reason),
            DecisionSource::Override,
        );
    }

    let (mut blockers, poll) = holders(gate, pauses, checks, health, now);
    let failed: Vec<&str> = gate
        .spec
        .required_checks
        .iter()
        .filter(|c| checks.get(*c) == Some(&CheckState::Failure))
        .map(String::as_str)
        .collect();
    let mut analyses_failed = Vec::new();
    let mut analyses_passed = Vec::new();
    let mut next_reading: Option<Timestamp> = None;
    for a in &gate.spec.analysis {
        match analysis::assess(a, analysis::history(a, analyses)) {
            Assessment::Passed(why) => analyses_passed.push(why),
            Assessment::Failed(why) => analyses_failed.push(why),
            Assessment::Holding { message, next } => {
                if let Some(n) = next {
                    next_reading = Some(next_reading.map_or(n, |m| m.min(n)));
                }
                blockers.push(Blocker {
                    kind: BlockerKind::Analysis,
                    name: a.name.clone(),
                    until: None,
                    message,
                });
            }
        }
    }

    if now >= ctx.deadline
        && (!blockers.is_empty() || !failed.is_empty() || !analyses_failed.is_empty())
    {
        let v = Verdict::from(gate.spec.on_deadline);
        let mut held: Vec<String> = failed.iter().map(|c| format!("check {c} failed")).collect();
        held.extend(analyses_failed.iter().cloned());
        held.extend(blockers.iter().map(|b| b.message.clone()));
        let reason = format!(
            "deadline {} passed while {}; onDeadline: {}",
            ctx.deadline,
            held.join("; "),
            match v {
                Verdict::Approve => "approve",
                Verdict::Reject => "reject",
            }
        );
        return verdict(v, reason, DecisionSource::Deadline);
    }
    if !failed.is_empty() {
        let reason = format!(
            "required check {} failed on {}",
            failed.join(", "),
            short(&gate.spec.sha)
        );
        return Ruling::Reject {
            reason,
            source: DecisionSource::Policy,
        };
    }
    if !analyses_failed.is_empty() {
        return Ruling::Reject {
            reason: analyses_failed.join("; "),
            source: DecisionSource::Policy,
        };
    }
    if !blockers.is_empty() {
        let mut next = ctx.deadline;
        if let Some(n) = next_reading {
            next = next.min(n);
        }
        for b in &blockers {
            if let Some(u) = b.until {
                next = next.min(u);
            }
        }
        if poll {
            let at = now.checked_add(
                SignedDuration::try_from(ctx.check_poll).unwrap_or(SignedDuration::from_secs(60)),
            );
            if let Ok(at) = at {
                next = next.min(at);
            }
        }
        // Never in the past and never now: an instant in the past would hot-loop.
        if next <= now {
            next = now + SignedDuration::from_millis(1);
        }
        return Ruling::Wait {
            blockers,
            next_evaluation: next,
        };
    }
    let mut why = Vec::new();
    if gate.spec.required_checks.is_empty() {
        why.push("no required checks".to_string());
    } else {
        why.push(format!(
            "required checks passed ({})",
            gate.spec.required_checks.join(", ")
        ));
    }
    if !gate.spec.require_healthy.is_empty() {
        why.push("required workloads healthy".to_string());
    }
    if !analyses_passed.is_empty() {
        why.push(format!("analysis {}", analyses_passed.join(", ")));
    }
    why.push("no pause or freeze window in scope".to_string());
    Ruling::Approve {
        reason: why.join("; "),
        source: DecisionSource::Policy,
    }
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(7)]
}

/// Everything holding the gate now, and whether any of it is polled.
fn holders(
    gate: &DeploymentGate,
    pauses: &[ReleasePause],
    checks: &CheckResults,
    health: &HealthResults,
    now: Timestamp,
) -> (Vec<Blocker>, bool) {
    let mut blockers = Vec::new();
    let mut poll = false;
    for p in pauses {
        if p.metadata.deletion_timestamp.is_some()
            || !scope::matches(&p.spec.scope, &gate.spec.repository, &gate.spec.environment)
        {
            continue;
        }
        let name = format!(
            "{}/{}",
            p.metadata.namespace.as_deref().unwrap_or(""),
            p.metadata.name.as_deref().unwrap_or("")
        );
        match pause_state(p, now) {
            Ok(eval) if eval.state == PauseState::Active => {
                let (kind, until, message) = match (&p.spec.schedule, eval.window) {
                    (Some(_), Some((_, end))) => {
                        let at = eval
                            .window_end_local
                            .clone()
                            .unwrap_or_else(|| "(no end)".into());
                        (
                            BlockerKind::Window,
                            end.or(p.spec.expires_at),
                            format!("freeze window {name} ({}) ends {at}", p.spec.reason),
                        )
                    }
                    _ => {
                        let until = match p.spec.expires_at {
                            Some(e) => format!("until resumed or {e}"),
                            None => "until resumed".to_string(),
                        };
                        (
                            BlockerKind::Pause,
                            p.spec.expires_at,
                            format!("held by ReleasePause {name} ({}) {until}", p.spec.reason),
                        )
                    }
                };
                blockers.push(Blocker {
                    kind,
                    name,
                    until,
                    message,
                });
            }
            Ok(_) => {}
            Err(e) => blockers.push(Blocker {
                kind: BlockerKind::Pause,
                name: name.clone(),
                until: p.spec.expires_at,
                message: format!("held by ReleasePause {name}: its schedule is invalid ({e})"),
            }),
        }
    }
    for c in &gate.spec.required_checks {
        match checks.get(c).copied().unwrap_or(CheckState::Pending) {
            CheckState::Success | CheckState::Failure => {}
            CheckState::Pending => {
                poll = true;
                blockers.push(Blocker {
                    kind: BlockerKind::Check,
                    name: c.clone(),
                    until: None,
                    message: format!("waiting for check {c}"),
                });
            }
        }
    }
    let ns = gate.metadata.namespace.as_deref().unwrap_or("");
    for w in &gate.spec.require_healthy {
        let key = format!(
            "{:?}/{}/{}",
            w.kind,
            w.namespace.as_deref().unwrap_or(ns),
            w.name
        );
        let why = match health.get(&key) {
            Some(WorkloadHealth::Healthy) => continue,
            Some(WorkloadHealth::Unhealthy(why)) => why.clone(),
            None => "not checked".to_string(),
        };
        poll = true;
        blockers.push(Blocker {
            kind: BlockerKind::Workload,
            name: key.clone(),
            until: None,
            message: format!("waiting for {key}: {why}"),
        });
    }
    (blockers, poll)
}
