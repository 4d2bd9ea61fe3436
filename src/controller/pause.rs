//! The ReleasePause reconciler: state from the recovery rule, the recovery
//! remembered durably, held gates counted, requeued at the next transition.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};

use super::context::Context;
use super::error::Error;
use crate::api::{
    CONDITION_ACTIVE, CONDITION_INVALID, CONDITION_RESUMED, CONDITION_SCOPE_RESTRICTED, PauseState,
    ReleasePause,
};
use crate::cluster::events::{self, Transition};
use crate::cluster::status::{key_of, write_status};
use crate::policy;
use crate::telemetry::labels;

/// Reconciles one pause.
pub async fn pause_reconcile(pause: Arc<ReleasePause>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = reconcile_inner(&pause, &ctx).await;
    ctx.metrics
        .reconcile_duration
        .get_or_create(&labels([("controller", "pause")]))
        .observe(started.elapsed().as_secs_f64());
    if result.is_ok() {
        ctx.backoff.succeeded(&key_of(&*pause));
    }
    result
}

async fn reconcile_inner(pause: &ReleasePause, ctx: &Context) -> Result<Action, Error> {
    if pause.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let api: Api<ReleasePause> =
        Api::namespaced(ctx.client.clone(), &pause.namespace().unwrap_or_default());
    let now = ctx.now();
    let old = pause.status.clone().unwrap_or_default();
    let mut s = old.clone();
    s.observed_generation = pause.metadata.generation;
    s.short_sha = pause
        .spec
        .sha
        .as_ref()
        .map(|sha| sha.chars().take(7).collect());
    s.scope = Some(scope_line(pause));

    // The resume is remembered in status the first time it is seen, so a writer
    // that later drops or rewrites spec.resume cannot bring the old failure back.
    if let Some(recovery) = policy::recovery::accepted_resume(pause, now) {
        s.recovery = Some(recovery);
    }
    let mut with_recovery = pause.clone();
    with_recovery.status = Some(s.clone());

    let pause_name = key_of(pause);
    s.held_gates = ctx
        .gates
        .state()
        .iter()
        .filter(|g| {
            g.status.as_ref().is_some_and(|st| {
                st.decision.is_none() && st.blockers.iter().any(|b| b.name == pause_name)
            })
        })
        .count() as u32;

    let generation = s.observed_generation;
    let (state, next, message) = match policy::recovery::pause_state(&with_recovery, now) {
        Ok(eval) => {
            policy::conditions::set_condition(
                &mut s.conditions,
                CONDITION_INVALID,
                false,
                "Valid",
                "the schedule is valid",
                generation,
                now,
            );
            (eval.state, eval.next_transition, eval.message)
        }
        Err(e) => {
            // An invalid schedule holds (fail closed); the condition and Event say how to fix it.
            let msg = e.to_string();
            policy::conditions::set_condition(
                &mut s.conditions,
                CONDITION_INVALID,
                true,
                "InvalidSchedule",
                &msg,
                generation,
                now,
            );
            (PauseState::Active, None, format!("holding releases: {msg}"))
        }
    };
    s.state = Some(state);
    s.message = Some(message.clone());
    s.next_transition = next;
    let active = state == PauseState::Active;
    policy::conditions::set_condition(
        &mut s.conditions,
        CONDITION_ACTIVE,
        active,
        &format!("{state:?}"),
        &message,
        generation,
        now,
    );
    let resumed = state == PauseState::Resumed;
    policy::conditions::set_condition(
        &mut s.conditions,
        CONDITION_RESUMED,
        resumed,
        if resumed { "Resumed" } else { "NotResumed" },
        &message,
        generation,
        now,
    );

    let restricted = scope_restriction(pause, ctx);
    let was_restricted = shows(&old.conditions, CONDITION_SCOPE_RESTRICTED);
    policy::conditions::set_condition(
        &mut s.conditions,
        CONDITION_SCOPE_RESTRICTED,
        restricted.is_some(),
        if restricted.is_some() {
            "TenancyLimitsScope"
        } else {
            "WithinTenancy"
        },
        restricted
            .as_deref()
            .unwrap_or("the pause's namespace may gate everything in its scope"),
        generation,
        now,
    );

    if let Some(written) = write_status(&api, pause, pause.status.as_ref(), &s).await? {
        ctx.wrote(&written);
        if let Some(why) = restricted.filter(|_| !was_restricted) {
            let t = Transition {
                reason: "ScopeRestricted",
                note: why,
                warning: true,
            };
            events::publish(&ctx.events, &written, &t).await;
        }
        if old.state != s.state {
            let t = Transition {
                reason: match state {
                    PauseState::Active => "Active",
                    PauseState::Resumed => "Resumed",
                    PauseState::Inactive => "Inactive",
                },
                note: message.clone(),
                warning: false,
            };
            events::publish(&ctx.events, &written, &t).await;
            tracing::info!(pause = %pause_name, reason = %pause.spec.reason, sha = pause.spec.sha.as_deref(), state = ?state, message = %message, "pause transition");
        }
        let was_invalid = old
            .conditions
            .iter()
            .any(|c| c.type_ == CONDITION_INVALID && c.status == "True");
        let is_invalid = s
            .conditions
            .iter()
            .any(|c| c.type_ == CONDITION_INVALID && c.status == "True");
        if is_invalid && !was_invalid {
            let t = Transition {
                reason: "InvalidSchedule",
                note: message.clone(),
                warning: true,
            };
            events::publish(&ctx.events, &written, &t).await;
        }
    }
    let action = match next {
        Some(at) => {
            let ms = (at.as_millisecond() - ctx.now().as_millisecond()).max(1) as u64;
            Action::requeue(Duration::from_millis(ms).min(Duration::from_secs(600)))
        }
        None => Action::requeue(Duration::from_secs(600)),
    };
    Ok(action)
}

/// What of the pause's scope its namespace may not hold, in words; `None`
/// when it may hold all of it (or lives in the operator's namespace).
fn scope_restriction(pause: &ReleasePause, ctx: &Context) -> Option<String> {
    let ns = pause.namespace().unwrap_or_default();
    let uncovered = ctx.tenancy.uncovered_scope(
        &ns,
        ctx.operator_namespace(),
        &pause.spec.scope.repositories,
    );
    (!uncovered.is_empty()).then(|| {
        format!(
            "namespace {ns} may not gate {}: this pause holds only the gates its namespace may gate; put it in the operator's namespace {} to hold every team's",
            uncovered.join(", "),
            ctx.operator_namespace()
        )
    })
}

fn shows(
    conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    type_: &str,
) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == type_ && c.status == "True")
}

fn scope_line(pause: &ReleasePause) -> String {
    let repos = pause.spec.scope.repositories.join(",");
    if pause.spec.scope.environments.is_empty() {
        repos
    } else {
        format!("{repos} @ {}", pause.spec.scope.environments.join(","))
    }
}
