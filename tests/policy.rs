//! The decision engine: ordering rules, the recovery rule, freeze windows on
//! real DST dates, the transition guard, and properties that rule out hot loops.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;
use serde_json::{Value, json};
use tollgate::api::{
    BlockerKind, DecisionSource, DeliveryState, DeploymentGate, DeploymentGateStatus, PauseState,
    Phase, ReleasePause, Schedule,
};
use tollgate::policy::transition::{guard_delivery, guard_phase, guard_status};
use tollgate::policy::window::Window;
use tollgate::policy::{
    CheckResults, CheckState, EvalContext, Guard, HealthResults, Ruling, WorkloadHealth, evaluate,
    recovery,
};

const SHA: &str = "9fceb02d0ae598e95dc970b74767f19372d61af8";
const SHA2: &str = "2222222222222222222222222222222222222222";

fn ts(s: &str) -> Timestamp {
    s.parse().expect("timestamp")
}

fn merge(base: &mut Value, extra: &Value) {
    if let (Some(b), Some(e)) = (base.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            b.insert(k.clone(), v.clone());
        }
    }
}

fn gate(extra: Value) -> DeploymentGate {
    let mut spec =
        json!({"repository": "acme/web", "environment": "production", "sha": SHA, "runId": 7});
    merge(&mut spec, &extra);
    serde_json::from_value(json!({
        "apiVersion": "tollgate.dev/v1alpha1", "kind": "DeploymentGate",
        "metadata": {"name": "g", "namespace": "web", "creationTimestamp": "2026-11-20T10:00:00Z"},
        "spec": spec,
    }))
    .expect("gate")
}

fn pause(name: &str, extra: Value) -> ReleasePause {
    let mut spec =
        json!({"scope": {"repositories": ["acme/*"]}, "reason": "ci-failed", "sha": SHA});
    merge(&mut spec, &extra);
    serde_json::from_value(json!({
        "apiVersion": "tollgate.dev/v1alpha1", "kind": "ReleasePause",
        "metadata": {"name": name, "namespace": "web"},
        "spec": spec,
    }))
    .expect("pause")
}

fn ctx(deadline: &str) -> EvalContext {
    EvalContext {
        deadline: ts(deadline),
        check_poll: Duration::from_secs(60),
    }
}

fn checks(pairs: &[(&str, CheckState)]) -> CheckResults {
    pairs.iter().map(|(n, s)| (n.to_string(), *s)).collect()
}

const NOW: &str = "2026-11-22T12:00:00Z";
const DEADLINE: &str = "2026-11-22T14:00:00Z";

#[test]
fn nothing_holding_approves_by_policy() {
    let v = evaluate(
        &gate(json!({})),
        &[],
        &CheckResults::new(),
        &HealthResults::new(),
        &[],
        &ctx(DEADLINE),
        ts(NOW),
    );
    assert!(
        matches!(
            v,
            Ruling::Approve {
                source: DecisionSource::Policy,
                ..
            }
        ),
        "{v:?}"
    );
}

#[test]
fn a_recorded_decision_is_kept_whatever_else_changed() {
    let mut g = gate(json!({"override": {"decision": "Approve", "reason": "ship it"}}));
    g.status = Some(serde_json::from_value(json!({"decision": {"verdict": "Reject", "source": "Policy", "reason": "check failed", "decidedAt": NOW}})).expect("status"));
    let v = evaluate(
        &g,
        &[pause("p", json!({}))],
        &CheckResults::new(),
        &HealthResults::new(),
        &[],
        &ctx(DEADLINE),
        ts(NOW),
    );
    assert_eq!(
        v,
        Ruling::Reject {
            reason: "check failed".into(),
            source: DecisionSource::Policy
        }
    );
}

#[test]
fn an_override_wins_over_pauses_checks_and_the_deadline() {
    let g = gate(
        json!({"override": {"decision": "Approve", "reason": "hotfix", "by": "alice"}, "requiredChecks": ["ci"]}),
    );
    let v = evaluate(
        &g,
        &[pause("p", json!({}))],
        &checks(&[("ci", CheckState::Failure)]),
        &HealthResults::new(),
        &[],
        &ctx(NOW),
        ts(DEADLINE),
    );
    assert_eq!(
        v,
        Ruling::Approve {
            reason: "override by alice: hotfix".into(),
            source: DecisionSource::Override
        }
    );
}

#[test]
fn a_passed_deadline_applies_on_deadline_naming_what_held_the_gate() {
    let g = gate(json!({"requiredChecks": ["ci/test"]}));
    let v = evaluate(
        &g,
        &[pause("red-main", json!({}))],
        &CheckResults::new(),
        &HealthResults::new(),
        &[],
        &ctx(NOW),
        ts(NOW),
    );
    let Ruling::Reject { reason, source } = v else {
        panic!("expected a reject: {v:?}")
    };
    assert_eq!(source, DecisionSource::Deadline);
    assert!(
        reason.contains("web/red-main") && reason.contains("ci/test"),
        "{reason}"
    );
    let open = gate(json!({"onDeadline": "Approve"}));
    let v = evaluate(
        &open,
        &[pause("red-main", json!({}))],
        &CheckResults::new(),
        &HealthResults::new(),
        &[],
        &ctx(NOW),
        ts(NOW),
    );
    assert!(
        matches!(
            v,
            Ruling::Approve {
                source: DecisionSource::Deadline,
                ..
            }
        ),
        "{v:?}"
    );
}

#[test]
fn a_failed_required_check_rejects_at_once_naming_it() {
    let g = gate(json!({"requiredChecks": ["ci/test", "ci/lint"]}));
    let c = checks(&[
        ("ci/test", CheckState::Failure),
        ("ci/lint", CheckState::Pending),
    ]);
    let v = evaluate(
        &g,
        &[pause("p", json!({}))],
        &c,
        &HealthResults::new(),
        &[],
        &ctx(DEADLINE),
        ts(NOW),
    );
    let Ruling::Reject { reason, source } = v else {
        panic!("{v:?}")
    };
    assert_eq!(source, DecisionSource::Policy);
    assert!(
        reason.contains("ci/test") && !reason.contains("ci/lint"),
        "{reason}"
    );
}

#[test]
fn pending_or_unreported_checks_and_unhealthy_workloads_wait_with_a_poll() {
    let g = gate(
        json!({"requiredChecks": ["ci/test"], "requireHealthy": [{"kind": "Deployment", "name": "api", "namespace": "staging"}]}),
    );
    let mut health = HealthResults::new();
    health.insert(
        "Deployment/staging/api".into(),
        WorkloadHealth::Unhealthy("1/3 available".into()),
    );
    let v = evaluate(
        &g,
        &[],
        &CheckResults::new(),
        &health,
        &[],
        &ctx(DEADLINE),
        ts(NOW),
    );
    let Ruling::Wait {
        blockers,
        next_evaluation,
    } = v
    else {
        panic!("{v:?}")
    };
    assert_eq!(
        blockers.iter().map(|b| b.kind).collect::<Vec<_>>(),
        [BlockerKind::Check, BlockerKind::Workload]
    );
    assert!(blockers[1].message.contains("1/3 available"));
    assert_eq!(next_evaluation, ts("2026-11-22T12:01:00Z"));
}

#[test]
fn an_active_pause_waits_until_the_deadline_without_polling() {
    let v = evaluate(
        &gate(json!({})),
        &[pause("red-main", json!({}))],
        &CheckResults::new(),
        &HealthResults::new(),
        &[],
        &ctx(DEADLINE),
        ts(NOW),
    );
    let Ruling::Wait {
        blockers,
        next_evaluation,
    } = v
    else {
        panic!("{v:?}")
    };
    assert_eq!(blockers[0].name, "web/red-main");
    assert_eq!(
        blockers[0].message,
        "held by ReleasePause web/red-main (ci-failed) until resumed"
    );
    assert_eq!(next_evaluation, ts(DEADLINE));
}

#[test]
fn pauses_out_of_scope_do_not_hold() {
    let other = pause("other", json!({"scope": {"repositories": ["acme/api"]}}));
    let staging = pause(
        "staging",
        json!({"scope": {"repositories": ["*"], "environments": ["staging"]}}),
    );
    let v = evaluate(
        &gate(json!({})),
        &[other, staging],
        &CheckResults::new(),
        &HealthResults::new(),
        &[],
        &ctx(DEADLINE),
        ts(NOW),
    );
    assert!(matches!(v, Ruling::Approve { .. }), "{v:?}");
}

#[test]
fn a_freeze_window_is_re_evaluated_exactly_at_its_end() {
    let freeze = pause(
        "freeze",
        json!({"reason": "freeze", "sha": null, "schedule": {"cron": "0 18 * * 5", "duration": "62h", "timeZone": "Europe/Berlin"}}),
    );
    // Saturday 2026-11-21 12:00 UTC is inside Friday 18:00 → Monday 08:00 Berlin.
    let v = evaluate(
        &gate(json!({})),
        &[freeze],
        &CheckResults::new(),
        &HealthResults::new(),
        &[],
        &ctx("2026-11-30T00:00:00Z"),
        ts("2026-11-21T12:00:00Z"),
    );
    let Ruling::Wait {
        blockers,
        next_evaluation,
    } = v
    else {
        panic!("{v:?}")
    };
    assert_eq!(next_evaluation, ts("2026-11-23T07:00:00Z"));
    assert_eq!(blockers[0].kind, BlockerKind::Window);
    assert_eq!(
        blockers[0].message,
        "freeze window web/freeze (freeze) ends 2026-11-23 08:00 Europe/Berlin"
    );
}

#[test]
fn restating_a_resumed_failure_stays_resumed_and_a_new_sha_pauses_again() {
    let mut p = pause("p", json!({"resume": {"sha": SHA, "reason": "ci-failed"}}));
    let now = ts(NOW);
    let rec = recovery::accepted_resume(&p, now).expect("resume accepted");
    assert_eq!(rec.sha.as_deref(), Some(SHA));
    p.status = Some(serde_json::from_value(json!({"recovery": rec})).expect("status"));
    assert_eq!(recovery::accepted_resume(&p, now), None, "already recorded");
    // A stale writer drops spec.resume and restates the same failure.
    p.spec.resume = None;
    assert_eq!(
        recovery::pause_state(&p, now).expect("state").state,
        PauseState::Resumed
    );
    p.spec.sha = Some(SHA2.into());
    assert_eq!(
        recovery::pause_state(&p, now).expect("state").state,
        PauseState::Active
    );
    p.spec.sha = Some(SHA.into());
    p.spec.reason = "deploy-failed".into();
    assert_eq!(
        recovery::pause_state(&p, now).expect("state").state,
        PauseState::Active
    );
}

#[test]
fn a_resume_releases_nothing_until_the_operator_records_it() {
    // spec.resume is a request: until status.recovery records it, the pause
    // holds, so no gate is released by a resume that could still be lost.
    let mut p = pause(
        "p",
        json!({"resume": {"sha": SHA, "reason": "ci-failed", "by": "alice"}}),
    );
    let now = ts(NOW);
    assert_eq!(
        recovery::pause_state(&p, now).expect("state").state,
        PauseState::Active
    );
    let held = evaluate(
        &gate(json!({})),
        std::slice::from_ref(&p),
        &CheckResults::new(),
        &HealthResults::new(),
        &[],
        &ctx(DEADLINE),
        now,
    );
    assert!(matches!(held, Ruling::Wait { .. }), "{held:?}");
    let rec = recovery::accepted_resume(&p, now).expect("resume accepted");
    assert_eq!(rec.by.as_deref(), Some("alice"));
    p.status = Some(serde_json::from_value(json!({"recovery": rec})).expect("status"));
    // Recorded: resumed, and still so once a writer drops spec.resume.
    p.spec.resume = None;
    assert_eq!(
        recovery::pause_state(&p, now).expect("state").state,
        PauseState::Resumed
    );
    let released = evaluate(
        &gate(json!({})),
        &[p],
        &CheckResults::new(),
        &HealthResults::new(),
        &[],
        &ctx(DEADLINE),
        now,
    );
    assert!(matches!(released, Ruling::Approve { .. }), "{released:?}");
}

#[test]
fn a_resume_for_another_failure_is_not_accepted() {
    let p = pause("p", json!({"resume": {"sha": SHA2, "reason": "ci-failed"}}));
    assert_eq!(recovery::accepted_resume(&p, ts(NOW)), None);
    assert_eq!(
        recovery::pause_state(&p, ts(NOW)).expect("state").state,
        PauseState::Active
    );
}

#[test]
fn a_forgotten_pause_expires_by_itself() {
    let p = pause("p", json!({"expiresAt": "2026-11-22T13:00:00Z"}));
    let before = recovery::pause_state(&p, ts(NOW)).expect("state");
    assert_eq!(
        (before.state, before.next_transition),
        (PauseState::Active, Some(ts("2026-11-22T13:00:00Z")))
    );
    assert_eq!(
        recovery::pause_state(&p, ts("2026-11-22T13:00:00Z"))
            .expect("state")
            .state,
        PauseState::Inactive
    );
}

#[test]
fn a_lifted_window_occurrence_pauses_again_at_the_next_one() {
    let schedule = json!({"cron": "0 18 * * 5", "duration": "62h", "timeZone": "Europe/Berlin"});
    let occurrence = "2026-11-20T17:00:00Z";
    let mut p = pause(
        "freeze",
        json!({"reason": "freeze", "sha": null, "schedule": schedule, "resume": {"reason": "freeze", "window": occurrence}}),
    );
    // The operator records the resume (only a recorded one lifts anything).
    let rec = recovery::accepted_resume(&p, ts("2026-11-21T11:00:00Z")).expect("accepted");
    assert_eq!(rec.window, Some(ts(occurrence)));
    p.status = Some(serde_json::from_value(json!({"recovery": rec})).expect("status"));
    let inside = recovery::pause_state(&p, ts("2026-11-21T12:00:00Z")).expect("state");
    assert_eq!(inside.state, PauseState::Resumed);
    assert_eq!(inside.next_transition, Some(ts("2026-11-23T07:00:00Z")));
    let between = recovery::pause_state(&p, ts("2026-11-25T12:00:00Z")).expect("state");
    assert_eq!(
        (between.state, between.next_transition),
        (PauseState::Inactive, Some(ts("2026-11-27T17:00:00Z")))
    );
    let next = recovery::pause_state(&p, ts("2026-11-28T12:00:00Z")).expect("state");
    assert_eq!(
        next.state,
        PauseState::Active,
        "the next occurrence is not lifted"
    );
}

#[test]
fn an_invalid_schedule_holds_and_names_the_field() {
    let p = pause(
        "bad",
        json!({"schedule": {"cron": "0 25 * * *", "duration": "1h", "timeZone": "Europe/Berlin"}}),
    );
    let err = recovery::pause_state(&p, ts(NOW)).expect_err("invalid");
    assert!(err.to_string().contains("spec.schedule.cron"), "{err}");
    let p = pause(
        "tz",
        json!({"schedule": {"cron": "0 1 * * *", "duration": "1h", "timeZone": "Mars/Olympus"}}),
    );
    assert!(
        recovery::pause_state(&p, ts(NOW))
            .expect_err("tz")
            .to_string()
            .contains("spec.schedule.timeZone")
    );
    let v = evaluate(
        &gate(json!({})),
        &[p],
        &CheckResults::new(),
        &HealthResults::new(),
        &[],
        &ctx(DEADLINE),
        ts(NOW),
    );
    let Ruling::Wait { blockers, .. } = v else {
        panic!("an invalid pause must hold: {v:?}")
    };
    assert!(blockers[0].message.contains("schedule is invalid"));
}

fn window(cron: &str, duration: &str, tz: &str) -> Window {
    Window::parse(&Schedule {
        cron: cron.into(),
        duration: duration.into(),
        time_zone: tz.into(),
    })
    .expect("schedule")
}

fn starts(w: &Window, from: &str, n: usize) -> Vec<String> {
    let mut t = ts(from);
    (0..n)
        .map(|_| {
            t = w.next_after(t).expect("occurrence");
            w.local(t)
        })
        .collect()
}

#[test]
fn berlin_spring_forward_start_in_the_gap_opens_after_it_and_fall_back_fires_once() {
    let w = window("30 2 * * *", "1h", "Europe/Berlin");
    assert_eq!(
        starts(&w, "2026-03-28T12:00:00Z", 2),
        [
            "2026-03-29 03:00 Europe/Berlin",
            "2026-03-30 02:30 Europe/Berlin"
        ]
    );
    let t = ts("2026-10-24T12:00:00Z");
    let first = w.next_after(t).expect("occurrence");
    assert_eq!(first, ts("2026-10-25T00:30:00Z"), "the first 02:30 (CEST)");
    assert_eq!(
        w.next_after(first).expect("next"),
        ts("2026-10-26T01:30:00Z"),
        "the repeated 02:30 does not fire again"
    );
}

#[test]
fn new_york_and_sydney_dst_dates() {
    let ny = window("30 2 * * *", "1h", "America/New_York");
    assert_eq!(
        starts(&ny, "2026-03-07T12:00:00Z", 2),
        [
            "2026-03-08 03:00 America/New_York",
            "2026-03-09 02:30 America/New_York"
        ]
    );
    // Fall back: 01:00–02:00 repeats on 1 November; 01:30 fires once (EDT).
    let ny_fold = window("30 1 * * *", "1h", "America/New_York");
    let first = ny_fold
        .next_after(ts("2026-10-31T12:00:00Z"))
        .expect("occurrence");
    assert_eq!(first, ts("2026-11-01T05:30:00Z"));
    assert_eq!(
        ny_fold.next_after(first).expect("next"),
        ts("2026-11-02T06:30:00Z")
    );
    let syd = window("30 2 * * *", "1h", "Australia/Sydney");
    assert_eq!(
        starts(&syd, "2026-10-03T00:00:00Z", 2),
        [
            "2026-10-04 03:00 Australia/Sydney",
            "2026-10-05 02:30 Australia/Sydney"
        ]
    );
    let first = syd
        .next_after(ts("2026-04-04T00:00:00Z"))
        .expect("occurrence");
    assert_eq!(
        first,
        ts("2026-04-04T15:30:00Z"),
        "the first 02:30 (AEDT) on 5 April"
    );
    assert_eq!(
        syd.next_after(first).expect("next"),
        ts("2026-04-05T16:30:00Z")
    );
}

#[test]
fn windows_span_midnight_and_weekends_and_merge_when_longer_than_their_period() {
    let night = window("0 22 * * *", "10h", "Europe/Berlin");
    let at = night.at(ts("2026-11-22T23:30:00Z"));
    assert_eq!(
        at.current,
        Some((ts("2026-11-22T21:00:00Z"), Some(ts("2026-11-23T07:00:00Z"))))
    );
    let weekend = window("0 18 * * 5", "62h", "Europe/Berlin");
    assert_eq!(
        weekend.at(ts("2026-11-22T12:00:00Z")).current.map(|c| c.1),
        Some(Some(ts("2026-11-23T07:00:00Z")))
    );
    assert_eq!(weekend.at(ts("2026-11-24T12:00:00Z")).current, None);
    // Every hour, two hours long: always open; the union has no end in sight.
    let always = window("0 * * * *", "2h", "UTC");
    assert_eq!(always.at(ts(NOW)).current.map(|c| c.1), Some(None));
    // Every 6 hours, 7 hours long on weekdays only: windows merge until the weekend gap.
    let merged = window("0 */6 * * 1-5", "7h", "UTC");
    let cur = merged.at(ts("2026-11-25T12:30:00Z")).current.expect("open");
    assert_eq!(cur.1, Some(ts("2026-11-28T01:00:00Z")), "Friday 18:00 + 7h");
}

#[test]
fn the_guard_refuses_regressions_and_flips() {
    assert_eq!(
        guard_phase(Some(Phase::Waiting), Phase::Approved),
        Guard::Allow
    );
    assert!(matches!(
        guard_phase(Some(Phase::Approved), Phase::Waiting),
        Guard::Refuse { .. }
    ));
    assert!(matches!(
        guard_phase(Some(Phase::Approved), Phase::Rejected),
        Guard::Refuse { .. }
    ));
    assert!(matches!(
        guard_delivery(Some(DeliveryState::Delivered), DeliveryState::Pending),
        Guard::Refuse { .. }
    ));
    let decided: DeploymentGateStatus = serde_json::from_value(json!({
        "phase": "Approved", "decision": {"verdict": "Approve", "source": "Policy", "reason": "ok", "decidedAt": NOW},
        "delivery": {"state": "Delivered", "attempts": 1},
    }))
    .expect("status");
    let mut stale = decided.clone();
    stale.phase = Some(Phase::Waiting);
    stale.decision = None;
    stale.delivery = None;
    let Guard::Refuse { why } = guard_status(&decided, &stale) else {
        panic!("a stale writer must be refused")
    };
    assert!(why.contains("final"), "{why}");
    let mut flipped = decided.clone();
    if let Some(d) = flipped.decision.as_mut() {
        d.verdict = tollgate::api::Verdict::Reject;
    }
    assert!(matches!(
        guard_status(&decided, &flipped),
        Guard::Refuse { .. }
    ));
}

fn any_phase() -> impl Strategy<Value = Phase> {
    prop_oneof![
        Just(Phase::Pending),
        Just(Phase::Waiting),
        Just(Phase::Approved),
        Just(Phase::Rejected),
        Just(Phase::Unknown)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn the_guard_never_lets_a_decided_phase_go(from in any_phase(), to in any_phase()) {
        if from.is_terminal() && to != from {
            let refused = matches!(guard_phase(Some(from), to), Guard::Refuse { .. });
            prop_assert!(refused, "{:?} -> {:?} allowed", from, to);
        }
    }

    #[test]
    fn next_evaluation_is_never_past_never_after_the_deadline_and_never_repeats(
        now_s in 0i64..86_400 * 30,
        deadline_in in 1i64..86_400 * 29,
        paused in any::<bool>(),
        with_window in any::<bool>(),
        check in prop_oneof![Just(None), Just(Some(CheckState::Pending)), Just(Some(CheckState::Success))],
        poll_s in 1u64..3_600,
    ) {
        let base = ts("2026-01-01T00:00:00Z");
        let now = base + SignedDuration::from_secs(now_s);
        let deadline = now + SignedDuration::from_secs(deadline_in);
        let g = gate(json!({"requiredChecks": ["ci"]}));
        let mut pauses = Vec::new();
        if paused { pauses.push(pause("p", json!({}))); }
        if with_window {
            pauses.push(pause("w", json!({"sha": null, "reason": "freeze", "schedule": {"cron": "0 18 * * 5", "duration": "62h", "timeZone": "Europe/Berlin"}})));
        }
        let c: CheckResults = check.map(|s| ("ci".to_string(), s)).into_iter().collect();
        let ctx = EvalContext { deadline, check_poll: Duration::from_secs(poll_s) };
        if let Ruling::Wait { next_evaluation, blockers } = evaluate(&g, &pauses, &c, &HealthResults::new(), &[], &ctx, now) {
            prop_assert!(next_evaluation > now, "in the past: {next_evaluation} <= {now}");
            prop_assert!(next_evaluation <= deadline, "after the deadline");
            if let Ruling::Wait { next_evaluation: again, blockers: b2 } = evaluate(&g, &pauses, &c, &HealthResults::new(), &[], &ctx, next_evaluation) {
                prop_assert!(!(again == next_evaluation && b2 == blockers), "hot loop at {next_evaluation}");
                prop_assert!(again > next_evaluation);
            }
        }
    }
}

// ---- Metric analysis: readings are facts, decided from (readings, now). ----

mod analysis {
    use super::*;
    use tollgate::api::{AnalysisResult, AnalysisStatus};
    use tollgate::policy::Reading;
    use tollgate::policy::analysis::{check_all, record};

    const T0: &str = "2026-11-22T12:00:00Z";

    fn at(secs: i64) -> Timestamp {
        ts(T0) + SignedDuration::from_secs(secs)
    }

    /// A gate with one analysis `staging-errors` (`bounds` merged in).
    fn analysed(bounds: Value, on_deadline: &str) -> DeploymentGate {
        let mut a = json!({"name": "staging-errors", "query": "errors", "for": "10m", "interval": "1m", "failureLimit": 3});
        merge(&mut a, &bounds);
        gate(json!({"analysis": [a], "onDeadline": on_deadline}))
    }

    /// Folds `(seconds after T0, reading)` into the analysis's history.
    fn fold(g: &DeploymentGate, readings: &[(i64, Reading)]) -> Vec<AnalysisStatus> {
        let a = &g.spec.analysis[0];
        let mut h: Option<AnalysisStatus> = None;
        for (s, r) in readings {
            h = Some(record(a, h.as_ref(), r, at(*s)));
        }
        h.into_iter().collect()
    }

    fn decide(g: &DeploymentGate, history: &[AnalysisStatus], now: i64) -> Ruling {
        evaluate(
            g,
            &[],
            &CheckResults::new(),
            &HealthResults::new(),
            history,
            &ctx("2026-11-22T14:00:00Z"),
            at(now),
        )
    }

    fn v(x: f64) -> Reading {
        Reading::Value(x)
    }

    /// Readings every minute from T0, all with value `x`, for `n` minutes.
    fn steady(x: f64, minutes: i64) -> Vec<(i64, Reading)> {
        (0..=minutes).map(|m| (m * 60, v(x))).collect()
    }

    fn wait_message(verdict: &Ruling) -> String {
        match verdict {
            Ruling::Wait { blockers, .. } => {
                assert_eq!(blockers.len(), 1, "{blockers:?}");
                assert_eq!(blockers[0].kind, BlockerKind::Analysis);
                blockers[0].message.clone()
            }
            other => panic!("expected a wait, got {other:?}"),
        }
    }

    #[test]
    fn passes_only_after_holding_for_the_whole_for() {
        let g = analysed(json!({"max": 0.01}), "Reject");
        // 9 minutes of good readings: not yet.
        let h = fold(&g, &steady(0.004, 9));
        let verdict = decide(&g, &h, 9 * 60);
        assert_eq!(
            wait_message(&verdict),
            "analysis staging-errors passing: 0.004 ≤ 0.01 for 9m0s of 10m0s"
        );
        let Ruling::Wait {
            next_evaluation, ..
        } = verdict
        else {
            unreachable!()
        };
        assert_eq!(
            next_evaluation,
            at(10 * 60),
            "the next reading is one interval on"
        );
        // The 10-minute reading: approved, and the reason explains itself.
        let h = fold(&g, &steady(0.004, 10));
        assert_eq!(h[0].result, AnalysisResult::Passed);
        assert_eq!(h[0].passing_since, Some(at(0)));
        assert_eq!(
            decide(&g, &h, 10 * 60),
            Ruling::Approve {
                reason: "no required checks; analysis staging-errors 0.004 ≤ 0.01 for 10m0s; no pause or freeze window in scope".into(),
                source: DecisionSource::Policy,
            }
        );
    }

    #[test]
    fn one_bad_reading_starts_the_hold_again() {
        let g = analysed(json!({"max": 0.01}), "Reject");
        let mut r = steady(0.004, 8);
        r.push((9 * 60, v(0.02)));
        r.extend((10..=18).map(|m| (m * 60, v(0.004))));
        let h = fold(&g, &r);
        assert_eq!(h[0].passing_since, Some(at(10 * 60)));
        assert_eq!(h[0].consecutive_failures, 0, "a pass forgives the failure");
        assert_eq!(
            wait_message(&decide(&g, &h, 18 * 60)),
            "analysis staging-errors passing: 0.004 ≤ 0.01 for 8m0s of 10m0s"
        );
        r.extend((19..=20).map(|m| (m * 60, v(0.004))));
        let h = fold(&g, &r);
        assert!(matches!(decide(&g, &h, 20 * 60), Ruling::Approve { .. }));
    }

    #[test]
    fn no_result_nan_and_several_series_are_inconclusive_and_say_which() {
        let g = analysed(json!({"max": 0.01}), "Reject");
        for (reading, why) in [
            (Reading::NoResult, "the query returned no result"),
            (v(f64::NAN), "the query returned NaN"),
            (
                Reading::SeveralSeries(3),
                "the query returned 3 series; it must return exactly one",
            ),
        ] {
            let mut r = steady(0.004, 5);
            r.push((6 * 60, reading));
            let h = fold(&g, &r);
            assert_eq!(h[0].result, AnalysisResult::Inconclusive);
            assert_eq!(
                h[0].passing_since, None,
                "an inconclusive reading is no pass"
            );
            assert_eq!(
                wait_message(&decide(&g, &h, 6 * 60)),
                format!("analysis staging-errors inconclusive: {why}")
            );
        }
    }

    #[test]
    fn inconclusive_readings_never_fail_the_gate() {
        let g = analysed(json!({"max": 0.01}), "Reject");
        let r: Vec<_> = (0..50).map(|m| (m * 60, Reading::NoResult)).collect();
        let h = fold(&g, &r);
        assert_eq!(h[0].consecutive_failures, 0);
        assert!(matches!(decide(&g, &h, 49 * 60), Ruling::Wait { .. }));
    }

    #[test]
    fn failure_limit_failures_in_a_row_reject_at_once() {
        let g = analysed(json!({"max": 0.01}), "Approve");
        let two = fold(&g, &[(0, v(0.05)), (60, v(0.06))]);
        assert_eq!(two[0].result, AnalysisResult::Failing);
        assert_eq!(
            wait_message(&decide(&g, &two, 60)),
            "analysis staging-errors failing: 0.06 > 0.01 (2 of 3 failures in a row)"
        );
        let three = fold(&g, &[(0, v(0.05)), (60, v(0.06)), (120, v(0.07))]);
        assert_eq!(
            decide(&g, &three, 120),
            Ruling::Reject {
                reason: "analysis staging-errors failed: 0.07 > 0.01 (3 of 3 failures in a row)"
                    .into(),
                source: DecisionSource::Policy,
            }
        );
        // Not in a row: a pass in between starts the count again.
        let broken = fold(
            &g,
            &[(0, v(0.05)), (60, v(0.06)), (120, v(0.001)), (180, v(0.07))],
        );
        assert_eq!(broken[0].consecutive_failures, 1);
        assert!(matches!(decide(&g, &broken, 180), Ruling::Wait { .. }));
    }

    #[test]
    fn at_the_deadline_inconclusive_data_gets_on_deadline_and_the_comment_says_so() {
        for (on, want) in [("Reject", "reject"), ("Approve", "approve")] {
            let g = analysed(json!({"max": 0.01}), on);
            let h = fold(&g, &[(0, Reading::NoResult)]);
            let verdict = evaluate(
                &g,
                &[],
                &CheckResults::new(),
                &HealthResults::new(),
                &h,
                &ctx("2026-11-22T14:00:00Z"),
                ts("2026-11-22T14:00:00Z"),
            );
            let reason = format!(
                "deadline 2026-11-22T14:00:00Z passed while analysis staging-errors inconclusive: the query returned no result; onDeadline: {want}"
            );
            let expected = if on == "Reject" {
                Ruling::Reject {
                    reason,
                    source: DecisionSource::Deadline,
                }
            } else {
                Ruling::Approve {
                    reason,
                    source: DecisionSource::Deadline,
                }
            };
            assert_eq!(verdict, expected);
        }
    }

    #[test]
    fn min_and_max_bound_the_value_on_both_sides() {
        let g = analysed(json!({"min": 0.5, "max": 2.0, "for": "0s"}), "Reject");
        for (x, result, message) in [
            (
                0.4,
                AnalysisResult::Failing,
                "0.4 < 0.5 (1 of 3 failures in a row)",
            ),
            (0.5, AnalysisResult::Passed, "0.5 ≥ 0.5 and ≤ 2 for 0s"),
            (2.0, AnalysisResult::Passed, "2 ≥ 0.5 and ≤ 2 for 0s"),
            (
                2.1,
                AnalysisResult::Failing,
                "2.1 > 2 (1 of 3 failures in a row)",
            ),
        ] {
            let h = fold(&g, &[(0, v(x))]);
            assert_eq!(
                (h[0].result, h[0].message.as_str()),
                (result, message),
                "{x}"
            );
        }
        let min_only = analysed(json!({"min": 100.0, "for": "0s"}), "Reject");
        assert_eq!(
            fold(&min_only, &[(0, v(99.0))])[0].result,
            AnalysisResult::Failing
        );
        assert_eq!(
            fold(&min_only, &[(0, v(1e9))])[0].result,
            AnalysisResult::Passed
        );
    }

    #[test]
    fn an_unreadable_prometheus_never_passes_and_backs_off() {
        let g = analysed(json!({"max": 0.01}), "Reject");
        let mut r = steady(0.004, 9);
        r.push((10 * 60, Reading::Error("connection refused".into())));
        let h = fold(&g, &r);
        assert_eq!(h[0].result, AnalysisResult::Error);
        assert_eq!(h[0].passing_since, None, "an unread interval is no pass");
        let verdict = decide(&g, &h, 10 * 60);
        assert_eq!(
            wait_message(&verdict),
            "analysis staging-errors unreadable: cannot read Prometheus: connection refused; retrying"
        );
        let Ruling::Wait {
            next_evaluation, ..
        } = verdict
        else {
            unreachable!()
        };
        assert_eq!(next_evaluation, at(10 * 60 + 5), "first retry after 5 s");
        r.push((10 * 60 + 5, Reading::Error("connection refused".into())));
        let h = fold(&g, &r);
        assert_eq!(h[0].consecutive_errors, 2);
        let Ruling::Wait {
            next_evaluation, ..
        } = decide(&g, &h, 10 * 60 + 5)
        else {
            panic!("still waiting")
        };
        assert_eq!(next_evaluation, at(10 * 60 + 15), "then after 10 s");
    }

    #[test]
    fn an_edited_query_starts_its_history_again() {
        // The adversary: a history earned by a harmless query must not
        // approve a gate whose query was changed since.
        let g = analysed(json!({"max": 0.01}), "Reject");
        let h = fold(&g, &steady(0.004, 10));
        let mut edited = g.clone();
        edited.spec.analysis[0].query = "other".into();
        assert_eq!(
            wait_message(&decide(&edited, &h, 10 * 60)),
            "analysis staging-errors not read yet"
        );
    }

    #[test]
    fn specs_that_cannot_work_are_refused_naming_the_field() {
        let one = |a: Value| -> Vec<tollgate::api::Analysis> {
            vec![serde_json::from_value(a).expect("analysis")]
        };
        let hour = Duration::from_secs(3600);
        for (a, want) in [
            (
                json!({"name": "a", "query": "q"}),
                "spec.analysis[0].min or spec.analysis[0].max: set at least one bound",
            ),
            (
                json!({"name": "a", "query": "q", "max": 1.0, "interval": "5s"}),
                "spec.analysis[0].interval 5s is under 10s",
            ),
            (
                json!({"name": "a", "query": "q", "max": 1.0, "for": "2h"}),
                "spec.analysis[0].for 2h is longer than the gate may wait (1h0m0s)",
            ),
            (
                json!({"name": "a", "query": "q", "min": 2.0, "max": 1.0}),
                "spec.analysis[0].min 2 is greater than spec.analysis[0].max 1",
            ),
        ] {
            let e = check_all(&one(a), "spec.analysis", hour).expect_err(want);
            assert!(e.starts_with(want), "{e}");
        }
        assert!(
            check_all(
                &one(json!({"name": "a", "query": "q", "max": 1.0, "for": "1h"})),
                "spec.analysis",
                hour
            )
            .is_ok()
        );
    }
}

#[test]
fn histories_end_with_their_analysis() {
    use tollgate::policy::Reading;
    use tollgate::policy::analysis::{current, record};
    let g = gate(json!({"analysis": [
        {"name": "a", "query": "qa", "max": 1.0},
        {"name": "b", "query": "qb", "max": 1.0},
    ]}));
    let now = ts(NOW);
    let histories: Vec<_> = g
        .spec
        .analysis
        .iter()
        .map(|a| record(a, None, &Reading::Value(0.5), now))
        .collect();
    let mut fewer = g.clone();
    fewer.spec.analysis.remove(0);
    let kept = current(&fewer.spec.analysis, &histories);
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].name, "b");
}
