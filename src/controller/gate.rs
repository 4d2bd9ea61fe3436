//! The DeploymentGate reconciler: evaluate, decide (write-ahead), deliver, record.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Resource, ResourceExt};

use super::analysis::{self, Readings};
use super::backoff;
use super::context::{Context, Freshness};
use super::error::Error;
use crate::api::{
    Blocker, CONDITION_ANALYSIS_ERROR, CONDITION_BLOCKED, CONDITION_DECIDED, CONDITION_DELIVERED,
    CONDITION_DELIVERY_DENIED, CONDITION_FORBIDDEN, CONDITION_INVALID, CONDITION_POLICY_BOUND,
    CONDITION_SHA_MISMATCH, Decision, DecisionSource, Delivery, DeliveryState, DeploymentGate,
    DeploymentGateStatus, FINALIZER, Phase, ReleasePause, Reports, Verdict,
};
use crate::cluster::events::{self, Transition};
use crate::cluster::status::{key_of, write_finalizers, write_status};
use crate::github::{Pace, ReviewOutcome, RunState, RunTarget, Turn};
use crate::policy::{self, CheckResults, CheckState, EvalContext, Guard};
use crate::telemetry::labels;

/// A run GitHub keeps calling missing for this long is gone: one 404 is not proof.
const GONE_AFTER: Duration = Duration::from_secs(600);
/// Even a gate with nothing scheduled is looked at this often.
const SAFETY_REQUEUE: Duration = Duration::from_secs(600);

/// Reconciles one gate. Reads like the story it tells: load, evaluate, carry out, record.
pub async fn gate_reconcile(
    cached: Arc<DeploymentGate>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let started = Instant::now();
    let result = match reconcile_inner(cached.clone(), &ctx).await {
        // Deleted while we worked (its finalizer released after the answer, the
        // delete completed): nothing is left to do, and nothing to warn about.
        Err(e) if e.is_not_found() => {
            tracing::debug!(gate = %key_of(&*cached), "the gate is gone");
            ctx.forget(&*cached);
            Ok(Action::await_change())
        }
        result => result,
    };
    ctx.metrics
        .reconcile_duration
        .get_or_create(&labels([("controller", "gate")]))
        .observe(started.elapsed().as_secs_f64());
    if result.is_ok() {
        ctx.backoff.succeeded(&key_of(&*cached));
    }
    result
}

// Each step is boxed: thousands of reconciles can be in flight at once (most
// waiting for GitHub's pacing or the API cap), and each then holds only the step
// it is in, not room for the largest of them.
async fn reconcile_inner(cached: Arc<DeploymentGate>, ctx: &Context) -> Result<Action, Error> {
    // A gate is never evaluated against a pause cache that is still filling.
    if !*ctx.pauses_synced.borrow() {
        return Ok(Action::requeue(Duration::from_millis(100)));
    }
    let api: Api<DeploymentGate> =
        Api::namespaced(ctx.client.clone(), &cached.namespace().unwrap_or_default());
    // Anything sent to GitHub is decided on the freshest copy: after our own write
    // the cache may lag behind, and acting on it could deliver twice.
    // A cache behind only our own writes needs no read: our last write is the
    // freshest copy, and every write carries its resourceVersion, so a foreign
    // change since then makes the next write conflict and the retry read.
    let gate = match ctx.freshness(&*cached) {
        Freshness::Cached => (*cached).clone(),
        Freshness::Ours(g) => g,
        Freshness::Unknown => match Box::pin(api.get_opt(&cached.name_any()))
            .await
            .map_err(|e| Error::kube(key_of(&*cached), e))?
        {
            Some(g) => g,
            None => {
                ctx.forget(&*cached);
                return Ok(Action::await_change());
            }
        },
    };

    // Tenancy first, before every other path (deletion, restore, delivery,
    // reports, the deadline): a forbidden gate causes no GitHub call at all.
    if let Err(why) = admit(&gate, ctx) {
        return Box::pin(forbid(&api, gate, &why, ctx)).await;
    }
    // Evaluated and delivered as the intake policy bounds it, never looser.
    let (gate, bound_notes) = bounded(gate, ctx);
    let deadline = deadline_of(&gate, ctx);

    if gate.meta().deletion_timestamp.is_some() {
        return Box::pin(finalize(&api, gate, deadline, ctx)).await;
    }
    // A write returns the stored object, whose spec is the unbounded one.
    let (gate, _) = bounded(Box::pin(ensure_finalizer(&api, gate, ctx)).await?, ctx);
    if let Some(ours) = ctx.overwritten_decision(&gate) {
        return Box::pin(restore(&api, gate, ours, ctx)).await;
    }
    let status = gate.status.clone().unwrap_or_default();
    let now = ctx.now();

    if let Some(decision) = status.decision.clone() {
        return match status.delivery.as_ref().map(|d| d.state) {
            Some(DeliveryState::Delivered) if decision.delivered_verdict() == Verdict::Approve => {
                Box::pin(watch_deployment(&api, gate, &decision, ctx)).await
            }
            Some(s) if s.is_final() => {
                ctx.finished(&gate);
                Ok(Action::await_change())
            }
            _ => Box::pin(deliver(&api, gate, decision, ctx))
                .await
                .map(|(_, action)| action),
        };
    }
    if status.phase == Some(Phase::Unknown) || shows(&status, CONDITION_SHA_MISMATCH) {
        ctx.finished(&gate);
        return Ok(Action::await_change());
    }

    if ctx.run_check_due(&gate, ctx.config.defaults.orphan_check)
        && let Some(action) = Box::pin(orphan_check(&api, &gate, deadline, ctx)).await?
    {
        return Ok(action);
    }

    // A pause holds only gates its namespace may gate (the operator's own
    // namespace holds every gate), so its text reaches only runs it holds.
    let cluster = ctx
        .cluster_pauses
        .as_ref()
        .map(|s| s.state())
        .unwrap_or_default();
    let pauses: Vec<ReleasePause> = ctx
        .pauses
        .state()
        .iter()
        .chain(cluster.iter())
        .filter(|p| pause_may_hold(p, &gate, ctx))
        .map(|p| (**p).clone())
        .collect();
    let checks = Box::pin(read_checks(&gate, ctx)).await;
    let health = Box::pin(crate::cluster::workloads::read(
        &ctx.client,
        &gate.spec.require_healthy,
        &gate.namespace().unwrap_or_default(),
    ))
    .await;
    let readings = Box::pin(analysis::read(&gate, deadline, ctx)).await;
    let eval_ctx = EvalContext {
        deadline,
        check_poll: ctx.config.defaults.check_poll,
    };
    // Readings take time: the verdict is of the instant after them.
    let now = if gate.spec.analysis.is_empty() {
        now
    } else {
        ctx.now()
    };
    let (verdict, source, reason) = match policy::evaluate(
        &gate,
        &pauses,
        &checks,
        &health,
        &readings.statuses,
        &eval_ctx,
        now,
    ) {
        policy::Ruling::Wait {
            blockers,
            next_evaluation,
        } => {
            return Box::pin(wait(
                &api,
                gate,
                blockers,
                next_evaluation,
                deadline,
                &bound_notes,
                &readings,
                ctx,
            ))
            .await;
        }
        policy::Ruling::Approve { reason, source } => (Verdict::Approve, source, reason),
        policy::Ruling::Reject { reason, source } => (Verdict::Reject, source, reason),
    };
    // An answer is given only for the run's own commit.
    let dry_run = gate.spec.dry_run || ctx.settings.dry_run;
    match Box::pin(verify_sha(&gate, verdict, dry_run, ctx)).await {
        ShaCheck::Matches => {}
        ShaCheck::Mismatch { head } => {
            return Box::pin(sha_mismatch(&api, gate, &head, deadline, ctx)).await;
        }
        ShaCheck::Unknown { why } => {
            tracing::warn!(gate = %key_of(&gate), error = %why, "cannot read the workflow run's commit; holding the approval until it can be confirmed");
            return Ok(Action::requeue(ctx.config.defaults.check_poll));
        }
    }
    Box::pin(decide(
        &api,
        gate,
        verdict,
        source,
        reason,
        deadline,
        &bound_notes,
        &readings,
        ctx,
    ))
    .await
}

/// The tenancy verdict: may the gate's namespace gate its repository, and read
/// the workloads its own spec names?
fn admit(gate: &DeploymentGate, ctx: &Context) -> Result<(), String> {
    let ns = gate.namespace().unwrap_or_default();
    ctx.tenancy.check(&ns, &gate.spec.repository)?;
    for w in &gate.spec.require_healthy {
        if let Some(wns) = &w.namespace {
            ctx.tenancy
                .check_read(&ns, wns)
                .map_err(|why| format!("spec.requireHealthy {}: {why}", w.name))?;
        }
    }
    Ok(())
}

/// The gate with its effective spec (see `policy::bounds`), and what was tightened.
fn bounded(mut gate: DeploymentGate, ctx: &Context) -> (DeploymentGate, Vec<String>) {
    let bound = ctx
        .config
        .bound_for(&gate.spec.repository, &gate.spec.environment);
    let (spec, notes) = policy::bounds::bound_spec(&gate.spec, &bound);
    gate.spec = spec;
    (gate, notes)
}

/// When the gate was created; `now` for one the API server has not stamped.
pub(super) fn created_at(gate: &DeploymentGate, now: Timestamp) -> Timestamp {
    gate.metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0)
        .unwrap_or(now)
}

/// The effective deadline: the spec's, bounded by the policy's timeout and
/// by GitHub's 30 days from the request.
fn deadline_of(gate: &DeploymentGate, ctx: &Context) -> Timestamp {
    let created = created_at(gate, ctx.now());
    let bound = ctx
        .config
        .bound_for(&gate.spec.repository, &gate.spec.environment);
    let horizon = policy::deadline::Horizon {
        created,
        requested: gate.spec.requested_at,
        default_timeout: ctx.config.defaults.timeout,
        max_timeout: bound.max_timeout,
    };
    policy::deadline::resolve(&gate.spec, &horizon).at
}

fn pause_may_hold(pause: &ReleasePause, gate: &DeploymentGate, ctx: &Context) -> bool {
    ctx.tenancy.pause_may_hold(
        &pause.namespace().unwrap_or_default(),
        ctx.operator_namespace(),
        &gate.spec.repository,
    )
}

fn shows(status: &DeploymentGateStatus, condition: &str) -> bool {
    status
        .conditions
        .iter()
        .any(|c| c.type_ == condition && c.status == "True")
}

/// Whether the gate's commit is its run's.
enum ShaCheck {
    Matches,
    Mismatch { head: String },
    Unknown { why: String },
}

/// Reads the run's head commit (once per gate) and compares it with
/// `spec.sha`. A reject may go out unconfirmed (failing closed beats leaving
/// the run waiting); an approval never does.
async fn verify_sha(
    gate: &DeploymentGate,
    verdict: Verdict,
    dry_run: bool,
    ctx: &Context,
) -> ShaCheck {
    let mut head = ctx.run_facts(gate).head_sha;
    let mut why = String::from("the run's commit was not read yet");
    if head.is_none() {
        match ctx
            .github
            .run_state(
                &gate.spec.repository,
                gate.spec.installation_id,
                gate.spec.run_id,
            )
            .await
        {
            Ok(RunState::Waiting { head_sha }) => {
                ctx.record_run(gate, |f| {
                    f.head_sha = head_sha.clone();
                    f.gone_since = None;
                });
                head = head_sha;
            }
            Ok(other) => why = format!("the run reads {other:?}"),
            Err(e) => why = e.to_string(),
        }
    }
    match head {
        Some(h) if h.eq_ignore_ascii_case(&gate.spec.sha) => ShaCheck::Matches,
        Some(h) => ShaCheck::Mismatch { head: h },
        None if verdict == Verdict::Reject && !dry_run => ShaCheck::Matches,
        None => ShaCheck::Unknown { why },
    }
}

/// `spec.sha` is not the run's commit: the gate is not this run's request.
/// No answer and no report, ever; a condition and one Event say why.
async fn sha_mismatch(
    api: &Api<DeploymentGate>,
    gate: DeploymentGate,
    head: &str,
    deadline: Timestamp,
    ctx: &Context,
) -> Result<Action, Error> {
    let now = ctx.now();
    let why = format!(
        "spec.sha {} is not the commit of workflow run {} ({head}); Tollgate never answers for another commit — fix spec.sha or delete this gate",
        gate.spec.sha, gate.spec.run_id
    );
    let mut s = base_status(&gate, deadline);
    s.phase = Some(s.phase.unwrap_or(Phase::Pending));
    s.reason = Some(why.clone());
    s.blockers.clear();
    s.next_evaluation = None;
    set_condition(
        &mut s,
        CONDITION_SHA_MISMATCH,
        true,
        "NotTheRunsCommit",
        &why,
        now,
    );
    let (gate, wrote) = commit(api, gate, s, ctx).await?;
    let gate = drop_finalizer(api, gate, ctx).await?;
    if wrote {
        let t = Transition {
            reason: "ShaMismatch",
            note: why,
            warning: true,
        };
        events::publish(&ctx.events, &gate, &t).await;
        events::log_gate(&gate, &t, None);
    }
    ctx.finished(&gate);
    Ok(Action::await_change())
}

/// Removes the answer finalizer, if the gate carries it.
async fn drop_finalizer(
    api: &Api<DeploymentGate>,
    gate: DeploymentGate,
    ctx: &Context,
) -> Result<DeploymentGate, Error> {
    if !gate.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(gate);
    }
    let finalizers: Vec<String> = gate
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect();
    let written = write_finalizers(api, &gate, finalizers).await?;
    ctx.wrote(&written);
    Ok(written)
}

/// After a delivered approval: a deployment that stays silent for
/// `defaults.deploymentReport` becomes Unknown. No write until then.
async fn watch_deployment(
    api: &Api<DeploymentGate>,
    gate: DeploymentGate,
    decision: &Decision,
    ctx: &Context,
) -> Result<Action, Error> {
    let window = ctx.config.defaults.deployment_report;
    let status = gate.status.clone().unwrap_or_default();
    let current = status.deployment.as_ref();
    let Some(at) = policy::deployment::silence_deadline(current, decision.decided_at, window)
    else {
        return Ok(Action::await_change());
    };
    let now = ctx.now();
    if at > now {
        return Ok(requeue_at(at, now));
    }
    let outcome = policy::deployment::silent(current, window, now);
    let note = outcome.reason.clone().unwrap_or_default();
    let mut s = status;
    s.deployment = Some(outcome);
    let (gate, wrote) = commit(api, gate, s, ctx).await?;
    if wrote {
        ctx.metrics
            .deployments
            .get_or_create(&labels([("outcome", "unknown")]))
            .inc();
        let t = Transition {
            reason: "DeployUnknown",
            note,
            warning: true,
        };
        events::publish(&ctx.events, &gate, &t).await;
        events::log_gate(&gate, &t, None);
    }
    Ok(Action::await_change())
}

/// The gates a ReleasePause change may concern: undecided gates in its scope, and
/// gates that name it as a blocker (its scope may have shrunk, or it is gone).
pub fn gates_for_pause(
    gates: &Store<DeploymentGate>,
    pause: &ReleasePause,
    tenancy: &policy::Tenancy,
    operator_namespace: &str,
) -> Vec<ObjectRef<DeploymentGate>> {
    let pause_name = key_of(pause);
    let pause_ns = pause.namespace().unwrap_or_default();
    gates
        .state()
        .iter()
        .filter(|g| {
            let status = g.status.as_ref();
            if status.is_some_and(|s| s.decision.is_some() || s.phase == Some(Phase::Unknown)) {
                return false;
            }
            let named = status.is_some_and(|s| s.blockers.iter().any(|b| b.name == pause_name));
            named
                || (tenancy.pause_may_hold(&pause_ns, operator_namespace, &g.spec.repository)
                    && policy::scope::matches(
                        &pause.spec.scope,
                        &g.spec.repository,
                        &g.spec.environment,
                    ))
        })
        .map(|g| ObjectRef::from_obj(&**g))
        .collect()
}

async fn ensure_finalizer(
    api: &Api<DeploymentGate>,
    gate: DeploymentGate,
    ctx: &Context,
) -> Result<DeploymentGate, Error> {
    // Nothing left to answer: an Unknown gate, a delivered one, or one whose
    // commit is not its run's (never answered).
    let finished = gate.status.as_ref().is_some_and(|s| {
        s.phase == Some(Phase::Unknown)
            || shows(s, CONDITION_SHA_MISMATCH)
            || s.delivery.as_ref().is_some_and(|d| d.state.is_final())
    });
    if finished || gate.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(gate);
    }
    let mut finalizers = gate.finalizers().to_vec();
    finalizers.push(FINALIZER.to_string());
    let gate = write_finalizers(api, &gate, finalizers).await?;
    ctx.wrote(&gate);
    Ok(gate)
}

/// Deleting a gate first answers GitHub, so deleting never strands a
/// deployment. A gate GitHub refuses to take an answer for (a denial: the
/// App lacks a permission) gets one last attempt, then lets go, so it never
/// blocks the deletion of itself or its namespace.
async fn finalize(
    api: &Api<DeploymentGate>,
    gate: DeploymentGate,
    deadline: Timestamp,
    ctx: &Context,
) -> Result<Action, Error> {
    if !gate.finalizers().iter().any(|f| f == FINALIZER) {
        ctx.forget(&gate);
        return Ok(Action::await_change());
    }
    let status = gate.status.clone().unwrap_or_default();
    let answered = |g: &DeploymentGate| {
        g.status.as_ref().is_some_and(|s| {
            s.phase == Some(Phase::Unknown)
                || shows(s, CONDITION_SHA_MISMATCH)
                || s.delivery.as_ref().is_some_and(|d| d.state.is_final())
        })
    };
    let (gate, action) = if answered(&gate) {
        (gate, None)
    } else if let Some(decision) = status.decision.clone() {
        let (gate, action) = deliver_now(api, gate, decision, ctx).await?;
        (gate, Some(action))
    } else {
        let verdict = Verdict::from(gate.spec.on_deadline);
        let dry_run = gate.spec.dry_run || ctx.settings.dry_run;
        match verify_sha(&gate, verdict, dry_run, ctx).await {
            ShaCheck::Mismatch { head } => {
                return sha_mismatch(api, gate, &head, deadline, ctx).await;
            }
            ShaCheck::Unknown { why } => {
                tracing::warn!(gate = %key_of(&gate), error = %why, "cannot confirm the run's commit before answering a deleted gate; retrying");
                return Ok(Action::requeue(Duration::from_secs(5)));
            }
            ShaCheck::Matches => {}
        }
        let reason = format!(
            "the DeploymentGate was deleted while undecided; answering {} (onDeadline)",
            verdict.github_state()
        );
        let gate = write_decision(
            api,
            gate,
            verdict,
            DecisionSource::Deleted,
            reason,
            deadline,
            &[],
            None,
            ctx,
        )
        .await?;
        let decision = recorded_decision(&gate)?;
        let (gate, action) = deliver_now(api, gate, decision, ctx).await?;
        (gate, Some(action))
    };
    let denied = gate
        .status
        .as_ref()
        .is_some_and(|s| shows(s, CONDITION_DELIVERY_DENIED));
    if answered(&gate) || denied {
        let gate = drop_finalizer(api, gate, ctx).await?;
        if denied && !answered(&gate) {
            let t = Transition {
                reason: "AnswerAbandoned",
                note: "deleted while GitHub refuses the answer (see DeliveryDenied); the last attempt failed too, so the gate lets go — answer the run at GitHub by hand".into(),
                warning: true,
            };
            events::publish(&ctx.events, &gate, &t).await;
            events::log_gate(&gate, &t, None);
        }
        ctx.forget(&gate);
        return Ok(Action::await_change());
    }
    Ok(action.unwrap_or_else(|| Action::requeue(Duration::from_secs(5))))
}

/// The decision a gate's status records, after `write_decision` wrote it.
fn recorded_decision(gate: &DeploymentGate) -> Result<Decision, Error> {
    gate.status
        .as_ref()
        .and_then(|s| s.decision.clone())
        .ok_or_else(|| Error::Conflict {
            object: key_of(gate),
        })
}

/// The base status every write starts from: identity columns kept current.
fn base_status(gate: &DeploymentGate, deadline: Timestamp) -> DeploymentGateStatus {
    let mut s = gate.status.clone().unwrap_or_default();
    s.short_sha = Some(gate.spec.sha.chars().take(7).collect());
    s.deadline = Some(deadline);
    s.observed_generation = gate.metadata.generation;
    s
}

/// The gate's analysis histories, its summary column and the conditions
/// they show: `AnalysisError` while Prometheus cannot answer, `Invalid` for
/// an analysis that cannot work.
fn set_analysis(s: &mut DeploymentGateStatus, r: &Readings, now: Timestamp) {
    s.analysis = r.statuses.clone();
    s.analysis_summary = r.summary.clone();
    if r.errors.is_empty() {
        remove_condition(s, CONDITION_ANALYSIS_ERROR);
    } else {
        let text = format!("{}; retrying with backoff", r.errors.join("; "));
        set_condition(s, CONDITION_ANALYSIS_ERROR, true, "Unreadable", &text, now);
    }
    if let Some(why) = &r.invalid {
        set_condition(s, CONDITION_INVALID, true, "InvalidAnalysis", why, now);
    }
}

/// The `PolicyBound` condition: present while the intake policy tightened the spec.
fn set_bound(s: &mut DeploymentGateStatus, notes: &[String], now: Timestamp) {
    if notes.is_empty() {
        remove_condition(s, CONDITION_POLICY_BOUND);
    } else {
        let text = format!("the intake policy applies: {}", notes.join("; "));
        set_condition(s, CONDITION_POLICY_BOUND, true, "Tightened", &text, now);
    }
}

fn set_condition(
    s: &mut DeploymentGateStatus,
    type_: &str,
    on: bool,
    reason: &str,
    message: &str,
    now: Timestamp,
) {
    let generation = s.observed_generation;
    policy::conditions::set_condition(
        &mut s.conditions,
        type_,
        on,
        reason,
        message,
        generation,
        now,
    );
}

/// Writes a new gate status, refused by the transition guard if it would move the
/// gate backwards. Returns the written gate, or the input when nothing changed.
async fn commit(
    api: &Api<DeploymentGate>,
    gate: DeploymentGate,
    mut new: DeploymentGateStatus,
    ctx: &Context,
) -> Result<(DeploymentGate, bool), Error> {
    let old = gate.status.clone().unwrap_or_default();
    if new != old {
        // Written anyway: it also records reports posted since the last write.
        ctx.with_unrecorded_reports(&gate, &mut new);
        // Retention counts from the write that finished the gate.
        policy::retention::stamp(&mut new, ctx.now());
    }
    if let Guard::Refuse { why } = policy::transition::guard_status(&old, &new) {
        ctx.metrics.guard_refusals.inc();
        tracing::error!(gate = %key_of(&gate), why = %why, writer = "tollgate", "refused a status write that would move the gate backwards");
        return Ok((gate, false));
    }
    match write_status(api, &gate, gate.status.as_ref(), &new).await? {
        Some(written) => {
            ctx.wrote(&written);
            ctx.remember_decided(&written);
            ctx.reports_recorded(&written);
            Ok((written, true))
        }
        None => Ok((gate, false)),
    }
}

/// A writer without a resourceVersion (an old replica, a hand edit) replaced the
/// decision this process recorded for this very object (same UID, never a
/// namesake): write it back, unless the status shows a later decision.
async fn restore(
    api: &Api<DeploymentGate>,
    gate: DeploymentGate,
    ours: DeploymentGateStatus,
    ctx: &Context,
) -> Result<Action, Error> {
    ctx.metrics.guard_refusals.inc();
    let theirs = gate.status.as_ref().and_then(|s| s.phase);
    // The same guard as any write, seen from the decision we recorded: ours
    // is final unless the status shows a decision made after it (then it is
    // not a stale writer's, and nothing is flipped back).
    let theirs_decision = gate.status.as_ref().and_then(|s| s.decision.as_ref());
    if let (Some(t), Some(o)) = (theirs_decision, ours.decision.as_ref())
        && t.decided_at > o.decided_at
    {
        tracing::error!(gate = %key_of(&gate), "not restoring the recorded decision: the status shows a later one");
        return Ok(Action::await_change());
    }
    if let Some(written) = write_status(api, &gate, gate.status.as_ref(), &ours).await? {
        ctx.wrote(&written);
        let t = Transition {
            reason: "DecisionRestored",
            note: format!(
                "another writer replaced the recorded decision (phase {theirs:?}); restored it"
            ),
            warning: true,
        };
        events::publish(&ctx.events, &written, &t).await;
        events::log_gate(&written, &t, None);
    }
    Ok(Action::await_change())
}

/// Tenancy refuses the gate: no decision, no GitHub call of any kind, no
/// finalizer (a deleted forbidden gate goes at once, answering nothing), the
/// `Forbidden` condition and one Event.
async fn forbid(
    api: &Api<DeploymentGate>,
    gate: DeploymentGate,
    why: &str,
    ctx: &Context,
) -> Result<Action, Error> {
    if gate.meta().deletion_timestamp.is_some() {
        let gate = drop_finalizer(api, gate, ctx).await?;
        ctx.forget(&gate);
        return Ok(Action::await_change());
    }
    let now = ctx.now();
    let mut s = base_status(&gate, deadline_of(&gate, ctx));
    let was_forbidden = shows(&s, CONDITION_FORBIDDEN);
    s.phase = Some(s.phase.unwrap_or(Phase::Pending));
    s.reason = Some(format!("forbidden: {why}"));
    s.blockers.clear();
    s.next_evaluation = None;
    set_condition(
        &mut s,
        CONDITION_FORBIDDEN,
        true,
        "TenancyRefused",
        why,
        now,
    );
    let (gate, wrote) = commit(api, gate, s, ctx).await?;
    let gate = drop_finalizer(api, gate, ctx).await?;
    if wrote && !was_forbidden {
        ctx.metrics.gates_forbidden.inc();
        let t = Transition {
            reason: "Forbidden",
            note: format!("never decided or delivered: {why}"),
            warning: true,
        };
        events::publish(&ctx.events, &gate, &t).await;
        events::log_gate(&gate, &t, None);
    }
    ctx.finished(&gate);
    Ok(Action::await_change())
}

/// Reads the gate's run: a run that completed or was cancelled while the gate
/// was undecided makes it Unknown; so does one GitHub keeps calling missing
/// for [`GONE_AFTER`] (a single 404 is not proof). Its head commit is kept to
/// confirm `spec.sha` before an answer.
async fn orphan_check(
    api: &Api<DeploymentGate>,
    gate: &DeploymentGate,
    deadline: Timestamp,
    ctx: &Context,
) -> Result<Option<Action>, Error> {
    let state = ctx
        .github
        .run_state(
            &gate.spec.repository,
            gate.spec.installation_id,
            gate.spec.run_id,
        )
        .await;
    let now = ctx.now();
    let why = match state {
        Err(_) => return Ok(None),
        Ok(RunState::Waiting { head_sha }) => {
            ctx.record_run(gate, |f| {
                f.head_sha = head_sha;
                f.gone_since = None;
            });
            return Ok(None);
        }
        Ok(RunState::Completed { conclusion }) => format!(
            "the workflow run completed at GitHub ({conclusion}) while the gate was undecided"
        ),
        Ok(RunState::Cancelled) => {
            "the workflow run was cancelled at GitHub while the gate was undecided".to_string()
        }
        Ok(RunState::Gone) => {
            let mut since = now;
            ctx.record_run(gate, |f| since = *f.gone_since.get_or_insert(now));
            let missing_for = now.duration_since(since).unsigned_abs();
            if missing_for < GONE_AFTER {
                tracing::info!(gate = %key_of(gate), run_id = gate.spec.run_id, missing_for_s = missing_for.as_secs(), "GitHub says the workflow run does not exist; asking again before giving up on it");
                return Ok(None);
            }
            format!(
                "the workflow run no longer exists at GitHub (404 for {}m)",
                missing_for.as_secs() / 60
            )
        }
    };
    let mut s = base_status(gate, deadline);
    s.phase = Some(Phase::Unknown);
    s.reason = Some(why.clone());
    s.blockers.clear();
    s.next_evaluation = None;
    set_condition(&mut s, CONDITION_BLOCKED, false, "Orphaned", &why, now);
    set_condition(&mut s, CONDITION_DECIDED, false, "Orphaned", &why, now);
    let (gate, wrote) = commit(api, gate.clone(), s, ctx).await?;
    if wrote {
        let t = Transition {
            reason: "Unknown",
            note: why,
            warning: true,
        };
        events::publish(&ctx.events, &gate, &t).await;
        events::log_gate(&gate, &t, None);
    }
    Ok(Some(Action::await_change()))
}

async fn read_checks(gate: &DeploymentGate, ctx: &Context) -> CheckResults {
    let required = &gate.spec.required_checks;
    if required.is_empty() {
        return CheckResults::new();
    }
    let poll = ctx.config.defaults.check_poll;
    let cached = ctx.cached_checks(&gate.spec.repository, &gate.spec.sha, poll / 2);
    let all = match cached {
        Some(c) if required.iter().all(|r| c.contains_key(r)) => c,
        _ => match ctx
            .github
            .commit_checks(
                &gate.spec.repository,
                gate.spec.installation_id,
                &gate.spec.sha,
            )
            .await
        {
            Ok(facts) => {
                let r = policy::required_checks(required, facts.run_facts(), facts.status_facts());
                ctx.cache_checks(&gate.spec.repository, &gate.spec.sha, r.clone());
                r
            }
            Err(e) => {
                // A failed read holds the gate (pending), it never approves it.
                tracing::warn!(gate = %key_of(gate), error = %e, "cannot read check results; treating them as pending");
                required
                    .iter()
                    .map(|r| (r.clone(), CheckState::Pending))
                    .collect()
            }
        },
    };
    required
        .iter()
        .map(|r| {
            (
                r.clone(),
                all.get(r).copied().unwrap_or(CheckState::Pending),
            )
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
async fn wait(
    api: &Api<DeploymentGate>,
    gate: DeploymentGate,
    blockers: Vec<Blocker>,
    next_evaluation: Timestamp,
    deadline: Timestamp,
    bound_notes: &[String],
    readings: &Readings,
    ctx: &Context,
) -> Result<Action, Error> {
    let now = ctx.now();
    let text = policy::report::describe_blockers(&blockers);
    let mut s = base_status(&gate, deadline);
    set_bound(&mut s, bound_notes, now);
    let phase_before = s.phase;
    s.phase = Some(Phase::Waiting);
    s.reason = Some(text.clone());
    // The persisted time is the earliest known change (deadline, window end, expiry);
    // polling of checks and workloads stays internal, so polls do not rewrite status.
    s.next_evaluation = blockers
        .iter()
        .filter_map(|b| b.until)
        .chain([deadline])
        .min();
    s.blockers = blockers;
    set_condition(&mut s, CONDITION_BLOCKED, true, "Held", &text, now);
    set_condition(
        &mut s,
        CONDITION_DECIDED,
        false,
        "Waiting",
        "not decided yet",
        now,
    );
    set_condition(
        &mut s,
        CONDITION_FORBIDDEN,
        false,
        "Allowed",
        "the namespace may gate this repository",
        now,
    );
    // Set again below while an analysis cannot work: removed and re-added,
    // it would get a new transition time (and a write) on every reconcile.
    if readings.invalid.is_none() {
        remove_condition(&mut s, CONDITION_INVALID);
    }
    set_analysis(&mut s, readings, now);

    // Tell the person watching the run, only when what holds the gate changed.
    // Reports take only slots no answer waits for: one whose turn is later is
    // posted (with the text of then) when it comes, and recorded with the next
    // status write; if the gate is decided first, its answer drops it.
    let reports = ctx.reports(&gate);
    let mut report_in = None;
    if let Some(report) = policy::report::next_report(&reports, &s.blockers, &key_of(&gate)) {
        let target = target(&gate);
        match ctx.github.report_turn(&target) {
            Turn::Later(after) => report_in = Some(after),
            Turn::Now => {
                let posted = Reports {
                    count: reports.count + 1,
                    last: Some(report.text.clone()),
                };
                match ctx.github.comment(&target, &report.body).await {
                    Ok(_) => {
                        ctx.metrics.status_reports.inc();
                        ctx.report_unrecorded(&gate, posted);
                    }
                    // GitHub refused this report itself: sending it again gets
                    // the same answer. It counts against the ten (GitHub may
                    // have counted it too), and the next change is reported.
                    Err(e) if e.is_invalid() => {
                        ctx.metrics
                            .github_invalid_requests
                            .get_or_create(&labels([("operation", "status_report")]))
                            .inc();
                        tracing::warn!(gate = %key_of(&gate), error = %e, "GitHub refused a status report as invalid; not sending it again");
                        ctx.report_unrecorded(&gate, posted);
                    }
                    Err(e) => {
                        tracing::warn!(gate = %key_of(&gate), error = %e, "could not post a status report to the workflow run; trying again at the next evaluation")
                    }
                }
            }
        }
    }

    let invalid_before = gate
        .status
        .as_ref()
        .is_some_and(|s| shows(s, CONDITION_INVALID));
    let (gate, wrote) = commit(api, gate, s, ctx).await?;
    if wrote && phase_before != Some(Phase::Waiting) {
        let t = Transition {
            reason: "Waiting",
            note: text,
            warning: false,
        };
        events::publish(&ctx.events, &gate, &t).await;
        events::log_gate(&gate, &t, None);
    }
    if wrote {
        analysis::publish(&gate, readings, ctx).await;
        if let Some(why) = &readings.invalid
            && !invalid_before
        {
            let t = Transition {
                reason: "InvalidAnalysis",
                note: format!("{why}; the analysis is not read until the spec is fixed"),
                warning: true,
            };
            events::publish(&ctx.events, &gate, &t).await;
            events::log_gate(&gate, &t, None);
        }
    }
    let next = requeue_delay(next_evaluation, ctx.now());
    Ok(Action::requeue(report_in.map_or(next, |r| r.min(next))))
}

fn remove_condition(s: &mut DeploymentGateStatus, type_: &str) {
    s.conditions.retain(|c| c.type_ != type_);
}

/// Requeue exactly at `at` (millisecond precision), or after the safety interval.
fn requeue_at(at: Timestamp, now: Timestamp) -> Action {
    Action::requeue(requeue_delay(at, now))
}

fn requeue_delay(at: Timestamp, now: Timestamp) -> Duration {
    let ms = at.as_millisecond() - now.as_millisecond();
    Duration::from_millis(ms.max(1) as u64).min(SAFETY_REQUEUE)
}

#[allow(clippy::too_many_arguments)]
async fn decide(
    api: &Api<DeploymentGate>,
    gate: DeploymentGate,
    verdict: Verdict,
    source: DecisionSource,
    reason: String,
    deadline: Timestamp,
    bound_notes: &[String],
    readings: &Readings,
    ctx: &Context,
) -> Result<Action, Error> {
    let gate = Box::pin(write_decision(
        api,
        gate,
        verdict,
        source,
        reason,
        deadline,
        bound_notes,
        Some(readings),
        ctx,
    ))
    .await?;
    let decision = recorded_decision(&gate)?;
    Box::pin(deliver(api, gate, decision, ctx))
        .await
        .map(|(_, action)| action)
}

/// Write-ahead: the decision is persisted (with the resourceVersion precondition)
/// before anything is sent, so a crash re-sends it and never re-makes it.
#[allow(clippy::too_many_arguments)]
async fn write_decision(
    api: &Api<DeploymentGate>,
    gate: DeploymentGate,
    verdict: Verdict,
    source: DecisionSource,
    reason: String,
    deadline: Timestamp,
    bound_notes: &[String],
    readings: Option<&Readings>,
    ctx: &Context,
) -> Result<DeploymentGate, Error> {
    let now = ctx.now();
    let dry_run = gate.spec.dry_run || ctx.settings.dry_run;
    let by = match source {
        DecisionSource::Override => gate
            .spec
            .decision_override
            .as_ref()
            .and_then(|o| o.by.clone()),
        _ => None,
    };
    let reason = if dry_run {
        format!(
            "dry run, GitHub is told approve; would {}: {reason}",
            verb(verdict)
        )
    } else {
        reason
    };
    let decision = Decision {
        verdict,
        source,
        reason: reason.clone(),
        decided_at: now,
        by,
        dry_run,
    };
    let mut s = base_status(&gate, deadline);
    set_bound(&mut s, bound_notes, now);
    if let Some(r) = readings {
        set_analysis(&mut s, r, now);
    }
    s.phase = Some(Phase::of(verdict));
    s.reason = Some(reason.clone());
    s.decision = Some(decision);
    s.delivery = Some(Delivery {
        state: DeliveryState::Pending,
        attempts: 0,
        last_error: None,
        next_attempt_at: None,
        delivered_at: None,
        settled_by: None,
    });
    s.blockers.clear();
    s.next_evaluation = None;
    set_condition(
        &mut s,
        CONDITION_DECIDED,
        true,
        &format!("{source:?}"),
        &reason,
        now,
    );
    set_condition(&mut s, CONDITION_BLOCKED, false, "Decided", "decided", now);
    set_condition(
        &mut s,
        CONDITION_DELIVERED,
        false,
        "Pending",
        "sending the decision to GitHub",
        now,
    );
    let (gate, wrote) = commit(api, gate, s, ctx).await?;
    if !wrote {
        // Identical status already stored or the guard refused: re-read and let the next reconcile act.
        return Err(Error::Conflict {
            object: key_of(&gate),
        });
    }
    let verdict_word = match verdict {
        Verdict::Approve => "approve",
        Verdict::Reject => "reject",
    };
    let source_word = format!("{source:?}");
    ctx.metrics
        .decisions
        .get_or_create(&labels([
            ("verdict", verdict_word),
            ("source", &source_word),
        ]))
        .inc();
    let created = created_at(&gate, now);
    let latency = (now.as_millisecond() - created.as_millisecond()).max(0);
    ctx.metrics
        .decision_latency
        .observe(latency as f64 / 1000.0);
    if source == DecisionSource::Deadline {
        let late = (now.as_millisecond() - deadline.as_millisecond()).max(0);
        ctx.metrics.deadline_lateness.observe(late as f64 / 1000.0);
    }
    let t = Transition {
        reason: if verdict == Verdict::Approve {
            "Approved"
        } else {
            "Rejected"
        },
        note: reason,
        warning: false,
    };
    if let Some(r) = readings {
        analysis::publish(&gate, r, ctx).await;
    }
    events::publish(&ctx.events, &gate, &t).await;
    events::log_gate(&gate, &t, Some(latency as u128));
    Ok(gate)
}

fn verb(v: Verdict) -> &'static str {
    match v {
        Verdict::Approve => "approve",
        Verdict::Reject => "reject",
    }
}

fn target(gate: &DeploymentGate) -> RunTarget {
    RunTarget {
        repository: gate.spec.repository.clone(),
        run_id: gate.spec.run_id,
        environment: gate.spec.environment.clone(),
        installation_id: gate.spec.installation_id,
    }
}

/// Sends the recorded decision and records the outcome. Never re-decides.
async fn deliver(
    api: &Api<DeploymentGate>,
    gate: DeploymentGate,
    decision: Decision,
    ctx: &Context,
) -> Result<(DeploymentGate, Action), Error> {
    deliver_with(api, gate, decision, false, ctx).await
}

/// [`deliver`] for a deleted gate: one attempt now, whatever the backoff says.
async fn deliver_now(
    api: &Api<DeploymentGate>,
    gate: DeploymentGate,
    decision: Decision,
    ctx: &Context,
) -> Result<(DeploymentGate, Action), Error> {
    deliver_with(api, gate, decision, true, ctx).await
}

async fn deliver_with(
    api: &Api<DeploymentGate>,
    gate: DeploymentGate,
    decision: Decision,
    now_or_never: bool,
    ctx: &Context,
) -> Result<(DeploymentGate, Action), Error> {
    let now = ctx.now();
    let status = gate.status.clone().unwrap_or_default();
    let mut delivery = status.delivery.clone().unwrap_or(Delivery {
        state: DeliveryState::Pending,
        attempts: 0,
        last_error: None,
        next_attempt_at: None,
        delivered_at: None,
        settled_by: None,
    });
    if delivery.state.is_final() {
        return Ok((gate, Action::await_change()));
    }
    if let Some(at) = delivery.next_attempt_at
        && at > now
        && !now_or_never
    {
        return Ok((gate, requeue_at(at, now)));
    }
    let target = target(&gate);
    // GitHub's pacing: a later turn is kept for this gate, and the reconcile
    // ends until then rather than waiting in the queue.
    if let Turn::Later(after) = ctx.github.write_turn(&target) {
        return Ok((gate, Action::requeue(after)));
    }
    let comment = comment_for(&decision);
    let outcome = ctx
        .github
        .review(&target, decision.delivered_verdict(), &comment)
        .await;
    delivery.attempts += 1;
    let now = ctx.now();
    let (word, transition, action) = match outcome {
        ReviewOutcome::Delivered => {
            delivery.state = DeliveryState::Delivered;
            delivery.delivered_at = Some(now);
            delivery.last_error = None;
            delivery.next_attempt_at = None;
            (
                "delivered",
                Some((
                    "Delivered",
                    format!(
                        "GitHub confirmed: {}",
                        decision.delivered_verdict().github_state()
                    ),
                    false,
                )),
                Action::await_change(),
            )
        }
        ReviewOutcome::AlreadySettled { by } => {
            delivery.state = DeliveryState::Settled;
            delivery.settled_by = by.clone();
            delivery.last_error = None;
            delivery.next_attempt_at = None;
            let who = by.map(|b| format!(" by {b}")).unwrap_or_default();
            (
                "settled",
                Some((
                    "Settled",
                    format!("GitHub already had an answer for this request{who}"),
                    false,
                )),
                Action::await_change(),
            )
        }
        ReviewOutcome::Gone => {
            delivery.state = DeliveryState::Failed;
            delivery.last_error =
                Some("the workflow run or repository no longer exists at GitHub".into());
            delivery.next_attempt_at = None;
            (
                "gone",
                Some((
                    "DeliveryFailed",
                    "the workflow run or repository no longer exists at GitHub".to_string(),
                    true,
                )),
                Action::await_change(),
            )
        }
        ReviewOutcome::Denied { why } => {
            // A permission an administrator can grant: keep trying, ever more
            // slowly (to 30 minutes), so the deployment is answered once the App is fixed.
            let retry = backoff::delivery_delay(Pace::Refused, Duration::ZERO, delivery.attempts);
            delivery.last_error = Some(why.clone());
            delivery.next_attempt_at = Some(later(now, retry));
            let first = delivery.attempts == 1;
            (
                "denied",
                first.then_some(("DeliveryDenied", why, true)),
                Action::requeue(retry),
            )
        }
        ReviewOutcome::Invalid { status, message } => {
            // A defect in our request: recorded once, never sent again (the
            // same request gets the same answer). The run still waits at
            // GitHub; the condition and Event say so, for a person to answer it.
            let why = format!(
                "GitHub refused the answer as invalid ({status}: {message}) while the run still waits on {}; not sending it again — answer the run at GitHub by hand and report this defect",
                gate.spec.environment
            );
            ctx.metrics
                .github_invalid_requests
                .get_or_create(&labels([("operation", "review")]))
                .inc();
            delivery.state = DeliveryState::Failed;
            delivery.last_error = Some(why.clone());
            delivery.next_attempt_at = None;
            (
                "invalid",
                Some(("DeliveryInvalid", why, true)),
                Action::await_change(),
            )
        }
        ReviewOutcome::Retry { after, error, pace } => {
            let after = backoff::delivery_delay(pace, after, delivery.attempts);
            delivery.last_error = Some(error.clone());
            delivery.next_attempt_at = Some(later(now, after));
            let first = delivery.attempts == 1;
            (
                "retry",
                first.then(|| {
                    (
                        "DeliveryRetrying",
                        format!(
                            "GitHub did not take the answer yet ({error}); retrying with backoff"
                        ),
                        true,
                    )
                }),
                Action::requeue(after.max(Duration::from_millis(10))),
            )
        }
    };
    ctx.metrics
        .deliveries
        .get_or_create(&labels([("outcome", word)]))
        .inc();
    if word == "delivered"
        && let Some(deadline) = status.deadline.or(gate.spec.deadline)
    {
        let late = (now.as_millisecond() - deadline.as_millisecond()).max(0);
        ctx.metrics.delivery_lateness.observe(late as f64 / 1000.0);
    }
    let mut s = status;
    let settled = delivery.state;
    s.delivery = Some(delivery.clone());
    match settled {
        DeliveryState::Delivered => set_condition(
            &mut s,
            CONDITION_DELIVERED,
            true,
            "Delivered",
            "GitHub confirmed the decision",
            now,
        ),
        DeliveryState::Settled => set_condition(
            &mut s,
            CONDITION_DELIVERED,
            true,
            "Settled",
            "GitHub already had an answer for this request",
            now,
        ),
        DeliveryState::Failed => set_condition(
            &mut s,
            CONDITION_DELIVERED,
            false,
            if word == "invalid" {
                "Invalid"
            } else {
                "Failed"
            },
            delivery.last_error.as_deref().unwrap_or("failed"),
            now,
        ),
        DeliveryState::Pending => {}
    }
    // A denial is a condition a person sees (and lets a deleted gate go); it
    // clears once GitHub takes the answer.
    let was_denied = shows(&s, CONDITION_DELIVERY_DENIED);
    if word == "denied" {
        let why = delivery.last_error.clone().unwrap_or_default();
        set_condition(&mut s, CONDITION_DELIVERY_DENIED, true, "Denied", &why, now);
    } else if delivery.state.is_final() && was_denied {
        remove_condition(&mut s, CONDITION_DELIVERY_DENIED);
    }
    // Every attempt is recorded: the attempt count is what the next backoff
    // grows from, and `nextAttemptAt` what a person sees. It costs one status
    // write per attempt, and attempts are paced by GitHub's write budget.
    let (gate, _) = commit(api, gate, s, ctx).await?;
    if let Some((reason, note, warning)) = transition {
        let t = Transition {
            reason,
            note,
            warning,
        };
        events::publish(&ctx.events, &gate, &t).await;
        events::log_gate(&gate, &t, None);
    }
    Ok((gate, action))
}

fn later(now: Timestamp, after: Duration) -> Timestamp {
    now.checked_add(
        jiff::SignedDuration::try_from(after).unwrap_or(jiff::SignedDuration::from_secs(60)),
    )
    .unwrap_or(now)
}

/// The comment GitHub shows beside the answer.
fn comment_for(d: &Decision) -> String {
    let mut c = format!(
        "Tollgate: {} — {}",
        d.delivered_verdict().github_state(),
        d.reason
    );
    if let Some(by) = &d.by {
        c.push_str(&format!(" (by {by})"));
    }
    c.chars().take(1000).collect()
}
