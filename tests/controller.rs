//! The real controllers against the in-process fake Kubernetes API and the fake
//! GitHub: each test asserts the final status, the Events and the exact GitHub
//! requests.

mod support;

use std::sync::Arc;
use std::time::Duration;

use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::wait::await_condition;
use kube::{Api, Client};
use serde_json::{Value, json};
use support::github::{FakeGitHub, Fault};
use support::kube::FakeKube;
use tollgate::api::{DecisionSource, DeliveryState, DeploymentGate, Phase, ReleasePause, Verdict};
use tollgate::config::OperatorConfig;
use tollgate::controller::{self, Clock, Runtime, Scope, Settings, Wiring};
use tollgate::github::{Auth, GitHub, GitHubConfig};
use tollgate::telemetry::Metrics;

const SHA: &str = "9fceb02d0ae598e95dc970b74767f19372d61af8";
const SHA2: &str = "1111111111111111111111111111111111111111";
const GATES: &str = "tollgate.dev/v1alpha1/deploymentgates";
/// A hang guard only: every awaited transition is event-driven.
const GUARD: Duration = Duration::from_secs(20);

struct Operator {
    task: tokio::task::JoinHandle<()>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    metrics: Metrics,
}

impl Operator {
    async fn start(kube: &FakeKube, gh: &FakeGitHub, config: &str, dry_run: bool) -> Operator {
        let settings = Settings {
            dry_run,
            instance: Some("test".into()),
            ..Settings::default()
        };
        Operator::start_with(kube, gh, config, settings, 60_000).await
    }

    async fn start_with(
        kube: &FakeKube,
        gh: &FakeGitHub,
        config: &str,
        settings: Settings,
        writes_per_minute: u32,
    ) -> Operator {
        Operator::start_wired(
            kube,
            gh,
            config,
            settings,
            writes_per_minute,
            Wiring::default(),
        )
        .await
    }

    /// The operator on a hand-driven clock (see `Clock::manual`).
    async fn start_clocked(
        kube: &FakeKube,
        gh: &FakeGitHub,
        config: &str,
        settings: Settings,
        clock: Clock,
    ) -> Operator {
        let wiring = Wiring {
            clock,
            ..Wiring::default()
        };
        Operator::start_wired(kube, gh, config, settings, 60_000, wiring).await
    }

    async fn start_wired(
        kube: &FakeKube,
        gh: &FakeGitHub,
        config: &str,
        settings: Settings,
        writes_per_minute: u32,
        wiring: Wiring,
    ) -> Operator {
        if let Ok(filter) = std::env::var("TEST_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_test_writer()
                .try_init();
        }
        let github = GitHub::new(GitHubConfig {
            api_base: gh.url().to_string(),
            auth: Auth::Token("test-token".into()),
            request_timeout: Duration::from_millis(500),
            writes_per_minute,
            writes_per_hour: writes_per_minute.saturating_mul(60),
            max_in_flight: 100,
        })
        .expect("github client");
        let metrics = Metrics::new();
        let rt = Runtime {
            client: kube.client(),
            github,
            config: Arc::new(OperatorConfig::parse(&support::single_team(config)).expect("config")),
            settings,
            metrics: metrics.clone(),
            scope: Scope::default(),
        };
        let (ready_tx, mut ready_rx) = tokio::sync::watch::channel(false);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(controller::run_wired(rt, wiring, ready_tx, async move {
            let _ = stop_rx.await;
        }));
        tokio::time::timeout(GUARD, ready_rx.wait_for(|r| *r))
            .await
            .expect("caches sync")
            .expect("ready");
        Operator {
            task,
            stop: Some(stop_tx),
            metrics,
        }
    }

    /// Kills the controller at once, as a crash would.
    fn kill(mut self) {
        self.stop.take();
        self.task.abort();
    }
}

fn gates(client: &Client, ns: &str) -> Api<DeploymentGate> {
    Api::namespaced(client.clone(), ns)
}

fn pauses(client: &Client, ns: &str) -> Api<ReleasePause> {
    Api::namespaced(client.clone(), ns)
}

fn gate(name: &str, run_id: i64, extra: Value) -> DeploymentGate {
    let mut spec = json!({
        "repository": "acme/web",
        "environment": "production",
        "sha": SHA,
        "runId": run_id,
        "timeout": "1h",
    });
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            if v.is_null() {
                s.remove(k);
            } else {
                s.insert(k.clone(), v.clone());
            }
        }
    }
    serde_json::from_value(json!({
        "apiVersion": "tollgate.dev/v1alpha1",
        "kind": "DeploymentGate",
        "metadata": {"name": name},
        "spec": spec,
    }))
    .expect("gate manifest")
}

fn pause(name: &str, sha: &str, extra: Value) -> ReleasePause {
    let mut spec = json!({
        "scope": {"repositories": ["acme/*"], "environments": ["production"]},
        "reason": "ci-failed",
        "sha": sha,
    });
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            s.insert(k.clone(), v.clone());
        }
    }
    serde_json::from_value(json!({
        "apiVersion": "tollgate.dev/v1alpha1",
        "kind": "ReleasePause",
        "metadata": {"name": name},
        "spec": spec,
    }))
    .expect("pause manifest")
}

async fn until(
    api: &Api<DeploymentGate>,
    name: &str,
    what: &str,
    cond: impl Fn(&DeploymentGate) -> bool,
) -> DeploymentGate {
    let found = tokio::time::timeout(
        GUARD,
        await_condition(api.clone(), name, move |g: Option<&DeploymentGate>| {
            g.is_some_and(&cond)
        }),
    )
    .await
    .unwrap_or_else(|_| panic!("gate {name} never became {what}"))
    .expect("watch");
    found.expect("the gate exists")
}

/// Creates a pause and waits until the operator has seen it (it wrote its
/// status), so a gate created next is evaluated against it.
async fn create_pause(client: &Client, p: &ReleasePause) {
    let api = pauses(client, "default");
    let name = p.metadata.name.clone().expect("pause name");
    api.create(&PostParams::default(), p).await.expect("pause");
    tokio::time::timeout(
        GUARD,
        await_condition(api, &name, |p: Option<&ReleasePause>| {
            p.and_then(|p| p.status.as_ref())
                .is_some_and(|s| s.state.is_some())
        }),
    )
    .await
    .expect("the operator saw the pause")
    .expect("watch");
}

fn phase(g: &DeploymentGate) -> Option<Phase> {
    g.status.as_ref().and_then(|s| s.phase)
}

fn delivered(g: &DeploymentGate) -> bool {
    g.status
        .as_ref()
        .and_then(|s| s.delivery.as_ref())
        .is_some_and(|d| d.state.is_final())
}

fn event_reasons(kube: &FakeKube, name: &str) -> Vec<String> {
    let mut events: Vec<Value> = kube
        .events()
        .into_iter()
        .filter(|e| e.pointer("/regarding/name").and_then(|n| n.as_str()) == Some(name))
        .collect();
    events.sort_by_key(|e| {
        e.pointer("/metadata/resourceVersion")
            .and_then(|r| r.as_str())
            .and_then(|r| r.parse::<u64>().ok())
            .unwrap_or(0)
    });
    events
        .iter()
        .filter_map(|e| e.get("reason").and_then(|r| r.as_str()).map(str::to_string))
        .collect()
}

/// Events are published right after the status write they describe; wait for them.
async fn events_eventually(kube: &FakeKube, name: &str, expected: &[&str]) {
    let deadline = tokio::time::Instant::now() + GUARD;
    loop {
        let got = event_reasons(kube, name);
        if got == expected {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "events of {name}: {got:?}, expected {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn status_writes(kube: &FakeKube, name: &str) -> usize {
    kube.writes()
        .iter()
        .filter(|w| {
            w.collection == GATES
                && w.name.as_deref() == Some(name)
                && w.status_subresource
                && w.changed
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approve_path_decides_delivers_once_and_tells_why() {
    let (kube, gh) = (FakeKube::start().await, FakeGitHub::start().await);
    let op = Operator::start(&kube, &gh, "", false).await;
    let api = gates(&kube.client(), "default");
    api.create(&PostParams::default(), &gate("g1", 101, json!({})))
        .await
        .expect("create");
    let g = until(&api, "g1", "delivered", delivered).await;

    let s = g.status.expect("status");
    assert_eq!(s.phase, Some(Phase::Approved));
    let d = s.decision.expect("decision");
    assert_eq!(
        (d.verdict, d.source),
        (Verdict::Approve, DecisionSource::Policy)
    );
    assert_eq!(
        s.delivery.expect("delivery").state,
        DeliveryState::Delivered
    );
    assert_eq!(s.short_sha.as_deref(), Some("9fceb02"));
    assert!(
        s.conditions
            .iter()
            .any(|c| c.type_ == "Delivered" && c.status == "True")
    );
    assert_eq!(gh.accepted(101, "production"), 1);
    let reviews = gh.reviews(101);
    assert_eq!(reviews.len(), 1);
    assert_eq!(reviews[0].body["state"], "approved");
    assert_eq!(reviews[0].body["environment_name"], "production");
    assert_eq!(
        reviews[0].authorization.as_deref(),
        Some("Bearer test-token")
    );
    events_eventually(&kube, "g1", &["Approved", "Delivered"]).await;
    let text = op.metrics.render();
    assert!(
        text.contains("tollgate_decisions_total{verdict=\"approve\",source=\"Policy\"} 1"),
        "{text}"
    );
    // Each GitHub request is counted by endpoint and status, never by run
    // (the gauges pass takes the client's tally every 5 s).
    let text = metrics_until(&op, "the answer counted", |t| {
        t.contains("tollgate_github_requests_total{operation=\"review\",status=\"2")
    })
    .await;
    assert!(!text.contains("run 101"), "{text}");
    op.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_required_check_rejects_naming_the_check() {
    let (kube, gh) = (FakeKube::start().await, FakeGitHub::start().await);
    gh.add_check_run(SHA, "ci/test", "completed", Some("failure"));
    let op = Operator::start(&kube, &gh, "", false).await;
    let api = gates(&kube.client(), "default");
    api.create(
        &PostParams::default(),
        &gate("g2", 102, json!({"requiredChecks": ["ci/test"]})),
    )
    .await
    .expect("create");
    let g = until(&api, "g2", "delivered", delivered).await;
    let d = g
        .status
        .as_ref()
        .and_then(|s| s.decision.clone())
        .expect("decision");
    assert_eq!(d.verdict, Verdict::Reject);
    assert!(d.reason.contains("ci/test"), "{}", d.reason);
    assert_eq!(gh.reviews(102)[0].body["state"], "rejected");
    assert_eq!(gh.accepted(102, "production"), 1);
    op.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadline_rejects_naming_what_held_the_gate() {
    let (kube, gh) = (FakeKube::start().await, FakeGitHub::start().await);
    let op = Operator::start(&kube, &gh, "", false).await;
    let client = kube.client();
    create_pause(&client, &pause("red-main", SHA, json!({}))).await;
    let api = gates(&client, "default");
    let deadline = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(2);
    api.create(
        &PostParams::default(),
        &gate(
            "g3",
            103,
            json!({"timeout": null, "deadline": deadline.to_string()}),
        ),
    )
    .await
    .expect("create");
    until(&api, "g3", "waiting", |g| phase(g) == Some(Phase::Waiting)).await;
    let g = until(&api, "g3", "delivered", delivered).await;
    let d = g
        .status
        .as_ref()
        .and_then(|s| s.decision.clone())
        .expect("decision");
    assert_eq!(
        (d.verdict, d.source),
        (Verdict::Reject, DecisionSource::Deadline)
    );
    assert!(d.reason.contains("default/red-main"), "{}", d.reason);
    assert!(
        d.decided_at >= deadline,
        "decided before the deadline: {} < {deadline}",
        d.decided_at
    );
    events_eventually(&kube, "g3", &["Waiting", "Rejected", "Delivered"]).await;
    op.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumed_pause_releases_held_gate_at_once() {
    let (kube, gh) = (FakeKube::start().await, FakeGitHub::start().await);
    let op = Operator::start(&kube, &gh, "", false).await;
    let client = kube.client();
    let papi = pauses(&client, "default");
    create_pause(&client, &pause("red-main", SHA, json!({}))).await;
    let api = gates(&client, "default");
    // Deadline an hour away and the safety requeue at 10 minutes: only the wake
    // on resume can decide this gate within the guard.
    api.create(&PostParams::default(), &gate("g4", 104, json!({})))
        .await
        .expect("create");
    let held = until(&api, "g4", "waiting", |g| phase(g) == Some(Phase::Waiting)).await;
    assert_eq!(held.status.as_ref().map(|s| s.blockers.len()), Some(1));
    assert!(
        gh.comments(104, "production") >= 1,
        "the run was told why it waits"
    );

    let resumed_at = jiff::Timestamp::now();
    let resume = json!({"spec": {"resume": {"sha": SHA, "reason": "ci-failed", "by": "alice"}}});
    papi.patch("red-main", &PatchParams::default(), &Patch::Merge(&resume))
        .await
        .expect("resume");
    let g = until(&api, "g4", "approved", |g| {
        phase(g) == Some(Phase::Approved)
    })
    .await;
    let d = g
        .status
        .as_ref()
        .and_then(|s| s.decision.clone())
        .expect("decision");
    let latency = d.decided_at.duration_since(resumed_at);
    eprintln!("wake latency: {latency:?}");
    assert_eq!(d.source, DecisionSource::Policy);
    let g = until(&api, "g4", "delivered", delivered).await;
    assert_eq!(
        g.status.and_then(|s| s.delivery).map(|d| d.state),
        Some(DeliveryState::Delivered)
    );
    op.kill();
}

/// Waits, within `guard`, until `n` stored gates satisfy `cond`.
async fn until_count(
    kube: &FakeKube,
    n: usize,
    guard: Duration,
    what: &str,
    cond: impl Fn(&Value) -> bool,
) {
    let start = std::time::Instant::now();
    loop {
        let count = kube.count_where(GATES, &cond);
        if count >= n {
            return;
        }
        assert!(
            start.elapsed() < guard,
            "only {count} of {n} gates became {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_held_gate_wakes_on_resume_when_a_thousand_are_held() {
    // Regression: wakes once came from a second pause watch, which could run
    // ahead of the cache; a gate woken early re-read the old pause and stayed
    // held until its deadline (about 2% of 1,000 gates did). An hour's deadline
    // and no other trigger: only a correct wake decides them within the guard,
    // which is generous because a thousand gates share a loaded CI machine.
    const HELD: usize = 1000;
    const LONG_GUARD: Duration = Duration::from_secs(120);
    let (kube, gh) = (FakeKube::start().await, FakeGitHub::start().await);
    let op = Operator::start(&kube, &gh, "", false).await;
    let client = kube.client();
    create_pause(&client, &pause("red-main", SHA, json!({}))).await;
    let api = gates(&client, "default");
    for i in 0..HELD {
        api.create(
            &PostParams::default(),
            &gate(&format!("h{i}"), 5_000 + i as i64, json!({})),
        )
        .await
        .expect("create");
    }
    let phase_is = |want: &'static str| {
        move |g: &Value| g.pointer("/status/phase").and_then(|p| p.as_str()) == Some(want)
    };
    until_count(&kube, HELD, LONG_GUARD, "Waiting", phase_is("Waiting")).await;

    let resume = json!({"spec": {"resume": {"sha": SHA, "reason": "ci-failed"}}});
    pauses(&client, "default")
        .patch("red-main", &PatchParams::default(), &Patch::Merge(&resume))
        .await
        .expect("resume");
    until_count(&kube, HELD, LONG_GUARD, "Approved", phase_is("Approved")).await;
    until_count(&kube, HELD, LONG_GUARD, "Delivered", |g| {
        g.pointer("/status/delivery/state").and_then(|s| s.as_str()) == Some("Delivered")
    })
    .await;
    for i in 0..HELD {
        assert_eq!(
            gh.accepted(5_000 + i as i64, "production"),
            1,
            "gate h{i} answered once"
        );
    }
    op.kill();
}

/// A pause on staging; `queued` production gates, decidable at once (runs
/// 1..=queued); then gate `held` (run 999) on staging, held by the pause until
/// its deadline `secs` from now, which is returned.
async fn queue_answers_ahead_of_a_held_gate(
    client: &Client,
    queued: i64,
    secs: i64,
) -> jiff::Timestamp {
    create_pause(
        client,
        &pause(
            "red-main",
            SHA,
            json!({"scope": {"repositories": ["acme/*"], "environments": ["staging"]}}),
        ),
    )
    .await;
    let api = gates(client, "default");
    for run in 1..=queued {
        api.create(
            &PostParams::default(),
            &gate(&format!("q-{run}"), run, json!({})),
        )
        .await
        .expect("create");
    }
    let deadline = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(secs);
    let held = gate(
        "held",
        999,
        json!({"environment": "staging", "timeout": null, "deadline": deadline.to_string()}),
    );
    api.create(&PostParams::default(), &held)
        .await
        .expect("create");
    deadline
}

// Two reconciles at a time and ten GitHub writes a second: sixty answers take
// six seconds to drain. A reconcile never waits in that queue (it comes back
// when its slot is due), so every gate is decided at once and a deadline that
// falls meanwhile is met; the answers go out paced, each exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paced_answers_never_hold_up_decisions_or_a_deadline() {
    const QUEUED: i64 = 60;
    let (kube, gh) = (FakeKube::start().await, FakeGitHub::start().await);
    let settings = Settings {
        instance: Some("test".into()),
        concurrency: 2,
        ..Settings::default()
    };
    let op = Operator::start_with(&kube, &gh, "", settings, 600).await;
    let client = kube.client();
    let api = gates(&client, "default");
    let deadline = queue_answers_ahead_of_a_held_gate(&client, QUEUED, 2).await;

    // Decisions do not queue behind deliveries: every gate is decided while
    // most answers still wait for their slot (decided-then-sent-in-place would
    // leave at most the two in flight unsent).
    until_count(&kube, QUEUED as usize, GUARD, "Approved", |g| {
        g.pointer("/status/phase").and_then(|p| p.as_str()) == Some("Approved")
    })
    .await;
    let sent = gh.requests_to("POST", "/deployment_protection_rule").len();
    assert!(
        sent < QUEUED as usize * 3 / 4,
        "{sent} of {QUEUED} answers were sent before the last decision"
    );

    let decided = until(&api, "held", "decided by its deadline", |g| {
        g.status.as_ref().is_some_and(|s| s.decision.is_some())
    })
    .await;
    let answers_by_then = gh.requests_to("POST", "/deployment_protection_rule").len();
    let decision = decided.status.and_then(|s| s.decision).expect("decision");
    assert_eq!(decision.source, DecisionSource::Deadline);
    assert_eq!(decision.verdict, Verdict::Reject);
    let late = decision.decided_at.duration_since(deadline);
    assert!(
        late < jiff::SignedDuration::from_secs(1),
        "decided {late:?} after its deadline"
    );
    assert!(
        answers_by_then < QUEUED as usize,
        "the queue had drained ({answers_by_then} answers) before the deadline: nothing was shown"
    );

    until_count(&kube, QUEUED as usize + 1, GUARD, "Delivered", |g| {
        g.pointer("/status/delivery/state").and_then(|s| s.as_str()) == Some("Delivered")
    })
    .await;
    assert_eq!(gh.accepted(999, "staging"), 1);
    // The held gate's status report, if its turn came before the deadline, is
    // recorded with a write the gate needed anyway: Waiting, decision, delivery.
    let held = api.get("held").await.expect("held gate");
    let recorded = held
        .status
        .as_ref()
        .and_then(|s| s.reports.as_ref())
        .map_or(0, |r| r.count);
    assert_eq!(recorded, gh.comments(999, "staging"));
    assert!(
        status_writes(&kube, "held") <= 3,
        "{} status writes",
        status_writes(&kube, "held")
    );
    for run in 1..=QUEUED {
        assert_eq!(gh.accepted(run, "production"), 1, "run {run}");
    }
    let mut times: Vec<_> = gh
        .requests_to("POST", "/deployment_protection_rule")
        .iter()
        .map(|r| r.at)
        .collect();
    times.sort();
    // Paced, not sent as fast as they were decided: 61 writes at 600 a minute
    // take six seconds (a slot used a little late may sit closer to the next).
    let span = times[times.len() - 1] - times[0];
    assert!(
        span >= Duration::from_secs(5),
        "{} writes in {span:?}",
        times.len()
    );
    op.kill();
}

// A status report queued behind other writes is posted when its turn comes and
// recorded with the next write the gate needs anyway (here the decision), so a
// held gate costs three status writes: Waiting, decision, delivery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_status_report_is_posted_later_without_a_write_of_its_own() {
    let (kube, gh) = (FakeKube::start().await, FakeGitHub::start().await);
    let settings = Settings {
        instance: Some("test".into()),
        ..Settings::default()
    };
    let op = Operator::start_with(&kube, &gh, "", settings, 600).await;
    let client = kube.client();
    let api = gates(&client, "default");
    // Five answers ahead of the report: its turn is about half a second away.
    queue_answers_ahead_of_a_held_gate(&client, 5, 3).await;
    until(&api, "held", "Waiting", |g| {
        phase(g) == Some(Phase::Waiting)
    })
    .await;

    let done = until(&api, "held", "delivered", delivered).await;
    let status = done.status.expect("status");
    assert_eq!(
        status.decision.map(|d| d.source),
        Some(DecisionSource::Deadline)
    );
    assert_eq!(gh.comments(999, "staging"), 1);
    let reports = status.reports.expect("the report is recorded");
    assert_eq!(reports.count, 1);
    assert!(
        reports
            .last
            .as_deref()
            .is_some_and(|l| l.contains("red-main")),
        "{reports:?}"
    );
    assert_eq!(status_writes(&kube, "held"), 3);
    op.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_restatement_of_a_resumed_failure_keeps_gates_flowing_but_a_new_sha_pauses() {
    let (kube, gh) = (FakeKube::start().await, FakeGitHub::start().await);
    let op = Operator::start(&kube, &gh, "", false).await;
    let client = kube.client();
    let papi = pauses(&client, "default");
    papi.create(
        &PostParams::default(),
        &pause(
            "red-main",
            SHA,
            json!({"resume": {"sha": SHA, "reason": "ci-failed"}}),
        ),
    )
    .await
    .expect("pause");
    let recorded = tokio::time::timeout(
        GUARD,
        await_condition(papi.clone(), "red-main", |p: Option<&ReleasePause>| {
            p.and_then(|p| p.status.as_ref())
                .is_some_and(|s| s.recovery.is_some())
        }),
    )
    .await
    .expect("recovery recorded")
    .expect("watch");
    assert_eq!(
        recorded
            .and_then(|p| p.status)
            .and_then(|s| s.recovery)
            .and_then(|r| r.sha)
            .as_deref(),
        Some(SHA)
    );

    // A stale writer restates the old failure and drops spec.resume.
    let restate = json!({"spec": {"resume": null, "sha": SHA, "reason": "ci-failed", "message": "main is red"}});
    papi.patch("red-main", &PatchParams::default(), &Patch::Merge(&restate))
        .await
        .expect("restate");
    let api = gates(&client, "default");
    api.create(&PostParams::default(), &gate("g5", 105, json!({})))
        .await
        .expect("create");
    let g = until(&api, "g5", "delivered", delivered).await;
    assert_eq!(
        phase(&g),
        Some(Phase::Approved),
        "the restated failure must not hold the gate"
    );

    // A new failure pauses again.
    let new_failure = json!({"spec": {"sha": SHA2}});
    papi.patch(
        "red-main",
        &PatchParams::default(),
        &Patch::Merge(&new_failure),
    )
    .await
    .expect("new sha");
    api.create(&PostParams::default(), &gate("g6", 106, json!({})))
        .await
        .expect("create");
    let g = until(&api, "g6", "waiting", |g| phase(g) == Some(Phase::Waiting)).await;
    assert_eq!(
        g.status.map(|s| s.blockers[0].name.clone()).as_deref(),
        Some("default/red-main")
    );
    assert_eq!(gh.accepted(106, "production"), 0);
    op.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn freeze_window_end_approves_at_the_window_edge() {
    let (kube, gh) = (FakeKube::start().await, FakeGitHub::start().await);
    let op = Operator::start(&kube, &gh, "", false).await;
    let client = kube.client();
    // A daily window that opened at this minute's start and ends ~2 s from now.
    let now = jiff::Timestamp::now();
    let minute_start =
        jiff::Timestamp::from_second(now.as_second() - now.as_second().rem_euclid(60)).expect("ts");
    let duration_ms = now.as_millisecond() + 4_000 - minute_start.as_millisecond();
    let window_end = minute_start + jiff::SignedDuration::from_millis(duration_ms);
    let utc = minute_start.to_zoned(jiff::tz::TimeZone::UTC);
    let cron = format!("{} {} * * *", utc.minute(), utc.hour());
    let schedule = json!({"cron": cron, "duration": format!("{duration_ms}ms"), "timeZone": "UTC"});
    create_pause(
        &client,
        &pause(
            "freeze",
            SHA,
            json!({"schedule": schedule, "reason": "freeze"}),
        ),
    )
    .await;
    let api = gates(&client, "default");
    api.create(&PostParams::default(), &gate("g7", 107, json!({})))
        .await
        .expect("create");
    // On a loaded machine the first reconcile may come after the window ended;
    // then there is nothing to hold and the gate is approved at once. Either
    // way it is never approved inside the window.
    let first = until(&api, "g7", "evaluated", |g| phase(g).is_some()).await;
    if phase(&first) == Some(Phase::Waiting) {
        let blocker = first
            .status
            .as_ref()
            .map(|s| s.blockers[0].clone())
            .expect("blocker");
        assert_eq!(blocker.until, Some(window_end));
    }
    let g = until(&api, "g7", "approved", |g| {
        phase(g) == Some(Phase::Approved)
    })
    .await;
    let decided = g
        .status
        .and_then(|s| s.decision)
        .expect("decision")
        .decided_at;
    assert!(
        decided >= window_end,
        "approved inside the window: {decided} < {window_end}"
    );
    eprintln!(
        "approved {:?} after the window edge",
        decided.duration_since(window_end)
    );
    op.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_an_undecided_gate_delivers_a_reject_before_it_disappears() {
    let (kube, gh) = (FakeKube::start().await, FakeGitHub::start().await);
    let op = Operator::start(&kube, &gh, "", false).await;
    let client = kube.client();
    create_pause(&client, &pause("red-main", SHA, json!({}))).await;
    let api = gates(&client, "default");
    api.create(&PostParams::default(), &gate("g8", 108, json!({})))
        .await
        .expect("create");
    let held = until(&api, "g8", "waiting", |g| phase(g) == Some(Phase::Waiting)).await;
    assert_eq!(
        held.metadata.finalizers.as_deref(),
        Some(&["tollgate.dev/answer".to_string()][..])
    );
    api.delete("g8", &DeleteParams::default())
        .await
        .expect("delete");
    tokio::time::timeout(
        GUARD,
        await_condition(api.clone(), "g8", |g: Option<&DeploymentGate>| g.is_none()),
    )
    .await
    .expect("the gate is released")
    .expect("watch");
    let reviews = gh.reviews(108);
    assert_eq!(reviews.len(), 1);
    assert_eq!(reviews[0].body["state"], "rejected");
    assert_eq!(gh.accepted(108, "production"), 1);
    op.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_decision_and_delivery_delivers_the_same_decision_once() {
    let (kube, gh) = (FakeKube::start().await, FakeGitHub::start().await);
    // The first review never gets an answer and does not land: the operator
    // is killed while waiting for it.
    gh.script("review", &[Fault::Hang { lands: false }]);
    gh.script("approvals", &[Fault::Hang { lands: false }]);
    let op = Operator::start(&kube, &gh, "", false).await;
    let api = gates(&kube.client(), "default");
    api.create(&PostParams::default(), &gate("g9", 109, json!({})))
        .await
        .expect("create");
    let decided = until(&api, "g9", "decided", |g| {
        g.status.as_ref().is_some_and(|s| s.decision.is_some())
    })
    .await;
    let first = decided
        .status
        .as_ref()
        .and_then(|s| s.decision.clone())
        .expect("decision");
    op.kill();
    assert_eq!(gh.accepted(109, "production"), 0);

    let op = Operator::start(&kube, &gh, "", false).await;
    let g = until(&api, "g9", "delivered", delivered).await;
    assert_eq!(
        g.status.as_ref().and_then(|s| s.decision.clone()),
        Some(first),
        "the decision was re-sent, never re-made"
    );
    assert_eq!(gh.accepted(109, "production"), 1);
    op.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_controllers_racing_on_one_gate_make_one_decision() {
    let (kube, gh) = (FakeKube::start().await, FakeGitHub::start().await);
    let a = Operator::start(&kube, &gh, "", false).await;
    let b = Operator::start(&kube, &gh, "", false).await;
    let api = gates(&kube.client(), "default");
    api.create(&PostParams::default(), &gate("g10", 110, json!({})))
        .await
        .expect("create");
    until(&api, "g10", "delivered", delivered).await;
    let decision_writes = kube
        .writes()
        .iter()
        .filter(|w| w.name.as_deref() == Some("g10") && w.status_subresource && w.changed)
        .count();
    assert!(
        decision_writes <= 2,
        "decision and delivery: {decision_writes} status writes"
    );
    assert_eq!(
        gh.accepted(110, "production"),
        1,
        "GitHub took exactly one answer"
    );
    let conflicts = kube
        .writes()
        .iter()
        .filter(|w| w.name.as_deref() == Some("g10") && w.code == 409)
        .count();
    eprintln!("conflicts refused by resourceVersion: {conflicts}");
    a.kill();
    b.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gate_in_a_namespace_not_allowed_its_repository_is_never_delivered() {
    let (kube, gh) = (FakeKube::start().await, FakeGitHub::start().await);
    let config = "tenancy:\n- namespace: web\n  repositories: [acme/web]\n";
    let op = Operator::start(&kube, &gh, config, false).await;
    let api = gates(&kube.client(), "billing");
    api.create(&PostParams::default(), &gate("g11", 111, json!({})))
        .await
        .expect("create");
    let g = until(&api, "g11", "forbidden", |g| {
        g.status.as_ref().is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == "Forbidden" && c.status == "True")
        })
    })
    .await;
    let s = g.status.expect("status");
    assert!(s.decision.is_none());
    assert!(
        s.reason
            .as_deref()
            .is_some_and(|r| r.contains("namespace billing may not gate any repository")),
        "{:?}",
        s.reason
    );
    assert_eq!(gh.reviews(111).len(), 0);
    events_eventually(&kube, "g11", &["Forbidden"]).await;

    let allowed = gates(&kube.client(), "web");
    allowed
        .create(&PostParams::default(), &gate("g12", 112, json!({})))
        .await
        .expect("create");
    until(&allowed, "g12", "delivered", delivered).await;
    assert_eq!(gh.accepted(112, "production"), 1);
    assert_eq!(gh.reviews(111).len(), 0);
    op.kill();
}

// ---------------------------------------------------------------------------
// Trust: a gate is answered only for the team that owns it.

const TEAMS: &str = "tenancy:\n- namespace: team-a\n  repositories: [acme/a]\n- namespace: team-b\n  repositories: [acme/b]\n- namespace: tollgate\n  repositories: ['*']\n";

fn shows(g: &DeploymentGate, condition: &str) -> bool {
    g.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == condition && c.status == "True")
    })
}

/// Every GitHub request that names `run` in its path.
fn requests_for_run(gh: &FakeGitHub, run: i64) -> Vec<String> {
    gh.requests()
        .iter()
        .filter(|r| r.path.contains(&format!("/runs/{run}")))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_forbidden_gate_sends_nothing_to_github() {
    let (kube, gh) = (FakeKube::start().await, FakeGitHub::start().await);
    let op = Operator::start(&kube, &gh, TEAMS, false).await;
    // team-b may not gate acme/a; it tries a fail-open gate with the finalizer
    // that would make deletion answer, and a deadline already past.
    let api = gates(&kube.client(), "team-b");
    let mut g = gate(
        "bypass",
        700,
        json!({"repository": "acme/a", "onDeadline": "Approve", "timeout": "1ms"}),
    );
    g.metadata.finalizers = Some(vec![tollgate::api::FINALIZER.to_string()]);
    api.create(&PostParams::default(), &g)
        .await
        .expect("create");
    let g = until(&api, "bypass", "forbidden", |g| shows(g, "Forbidden")).await;
    let g = if g
        .metadata
        .finalizers
        .as_ref()
        .is_some_and(|f| !f.is_empty())
    {
        until(&api, "bypass", "without its finalizer", |g| {
            g.metadata.finalizers.as_ref().is_none_or(|f| f.is_empty())
        })
        .await
    } else {
        g
    };
    assert!(g.status.as_ref().is_some_and(|s| s.decision.is_none()));
    api.delete("bypass", &DeleteParams::default())
        .await
        .expect("delete");
    tokio::time::timeout(
        GUARD,
        await_condition(api.clone(), "bypass", |g: Option<&DeploymentGate>| {
            g.is_none()
        }),
    )
    .await
    .expect("the forbidden gate goes at once")
    .expect("watch");
    assert_eq!(requests_for_run(&gh, 700), Vec::<String>::new());
    events_eventually(&kube, "bypass", &["Forbidden"]).await;
    op.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_tenancy_rules_only_intakes_namespaces_may_gate() {
    let (kube, gh) = (FakeKube::start().await, FakeGitHub::start().await);
    // No rules: intake writes to `web` (policy) and `tollgate` (defaults) only.
    let config = "tenancy: []\npolicies:\n- repositories: [acme/web]\n  namespace: web\n";
    let op = Operator::start(&kube, &gh, config, false).await;
    let elsewhere = gates(&kube.client(), "default");
    elsewhere
        .create(
            &PostParams::default(),
            &gate(
                "stranger",
                710,
                json!({"override": {"decision": "Approve", "reason": "trust me"}, "dryRun": true}),
            ),
        )
        .await
        .expect("create");
    let g = until(&elsewhere, "stranger", "forbidden", |g| {
        shows(g, "Forbidden")
    })
    .await;
    let reason = g.status.and_then(|s| s.reason).unwrap_or_default();
    assert!(
        reason.contains("no tenancy rules are configured"),
        "{reason}"
    );
    let web = gates(&kube.client(), "web");
    web.create(&PostParams::default(), &gate("ours", 711, json!({})))
        .await
        .expect("create");
    until(&web, "ours", "delivered", delivered).await;
    assert_eq!(gh.accepted(711, "production"), 1);
    assert_eq!(requests_for_run(&gh, 710), Vec::<String>::new());
    op.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_star_pause_in_team_b_holds_only_team_b_and_one_in_the_operators_namespace_holds_both() {
    let (kube, gh) = (FakeKube::start().await, FakeGitHub::start().await);
    let op = Operator::start(&kube, &gh, TEAMS, false).await;
    let client = kube.client();
    let mut wide = pause(
        "everything",
        SHA,
        json!({"scope": {"repositories": ["*"]}, "message": "team-b says stop"}),
    );
    wide.metadata.namespace = Some("team-b".into());
    let team_b_pauses = pauses(&client, "team-b");
    team_b_pauses
        .create(&PostParams::default(), &wide)
        .await
        .expect("pause");
    let p = tokio::time::timeout(
        GUARD,
        await_condition(
            team_b_pauses.clone(),
            "everything",
            |p: Option<&ReleasePause>| {
                p.and_then(|p| p.status.as_ref()).is_some_and(|s| {
                    s.conditions
                        .iter()
                        .any(|c| c.type_ == "ScopeRestricted" && c.status == "True")
                })
            },
        ),
    )
    .await
    .expect("the pause says its scope is restricted")
    .expect("watch")
    .expect("pause");
    let msg = p
        .status
        .and_then(|s| {
            s.conditions
                .into_iter()
                .find(|c| c.type_ == "ScopeRestricted")
        })
        .map(|c| c.message)
        .unwrap_or_default();
    assert!(msg.contains("namespace team-b may not gate *"), "{msg}");

    let a = gates(&client, "team-a");
    let b = gates(&client, "team-b");
    a.create(
        &PostParams::default(),
        &gate("a1", 720, json!({"repository": "acme/a"})),
    )
    .await
    .expect("create");
    b.create(
        &PostParams::default(),
        &gate("b1", 721, json!({"repository": "acme/b"})),
    )
    .await
    .expect("create");
    until(&a, "a1", "delivered", delivered).await;
    let held = until(&b, "b1", "held", |g| phase(g) == Some(Phase::Waiting)).await;
    assert_eq!(
        held.status.expect("status").blockers[0].name,
        "team-b/everything"
    );
    assert_eq!(
        gh.comments(720, "production"),
        0,
        "nothing posted to team-a's run"
    );
    assert_eq!(
        gh.answer(720, "production").map(|a| a.0),
        Some("approved".into())
    );

    // A release manager's pause in the operator's namespace holds everyone.
    let mut global = pause("freeze-all", SHA, json!({"scope": {"repositories": ["*"]}}));
    global.metadata.namespace = Some("tollgate".into());
    pauses(&client, "tollgate")
        .create(&PostParams::default(), &global)
        .await
        .expect("pause");
    a.create(
        &PostParams::default(),
        &gate("a2", 722, json!({"repository": "acme/a"})),
    )
    .await
    .expect("create");
    b.create(
        &PostParams::default(),
        &gate("b2", 723, json!({"repository": "acme/b"})),
    )
    .await
    .expect("create");
    for (api, name) in [(&a, "a2"), (&b, "b2")] {
        let g = until(api, name, "held by the global pause", |g| {
            g.status
                .as_ref()
                .is_some_and(|s| s.blockers.iter().any(|b| b.name == "tollgate/freeze-all"))
        })
        .await;
        assert_eq!(phase(&g), Some(Phase::Waiting));
    }
    op.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gate_that_drops_the_policys_checks_still_waits_for_them() {
    let (kube, gh) = (FakeKube::start().await, FakeGitHub::start().await);
    let config = "defaults:\n  checkPoll: 1s\npolicies:\n- repositories: [acme/web]\n  environments: [production]\n  namespace: default\n  requiredChecks: [ci/test]\n";
    let op = Operator::start(&kube, &gh, config, false).await;
    let api = gates(&kube.client(), "default");
    // Hand-made, without the policy's check, fail-open and dry.
    api.create(
        &PostParams::default(),
        &gate(
            "loose",
            730,
            json!({"dryRun": true, "onDeadline": "Approve"}),
        ),
    )
    .await
    .expect("create");
    let g = until(&api, "loose", "waiting for the policy's check", |g| {
        g.status
            .as_ref()
            .is_some_and(|s| s.blockers.iter().any(|b| b.name == "ci/test"))
    })
    .await;
    assert!(shows(&g, "PolicyBound"), "{:?}", g.status);
    assert_eq!(gh.accepted(730, "production"), 0);
    gh.add_check_run(SHA, "ci/test", "completed", Some("failure"));
    let g = until(&api, "loose", "delivered", delivered).await;
    let d = g.status.and_then(|s| s.decision).expect("decision");
    assert_eq!(d.verdict, Verdict::Reject);
    assert!(!d.dry_run, "the policy does not allow dry runs");
    assert_eq!(
        gh.answer(730, "production").map(|a| a.0),
        Some("rejected".into())
    );
    op.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gate_whose_sha_is_not_the_runs_is_never_answered() {
    let (kube, gh) = (FakeKube::start().await, FakeGitHub::start().await);
    let op = Operator::start(&kube, &gh, "", false).await;
    let api = gates(&kube.client(), "default");
    // Run 740's head is SHA; this gate names another commit, with an override.
    api.create(
        &PostParams::default(),
        &gate(
            "wrong-sha",
            740,
            json!({"sha": SHA2, "override": {"decision": "Approve", "reason": "ship it"}}),
        ),
    )
    .await
    .expect("create");
    let g = until(&api, "wrong-sha", "refused", |g| shows(g, "ShaMismatch")).await;
    let s = g.status.expect("status");
    assert!(s.decision.is_none());
    assert!(
        s.reason
            .as_deref()
            .is_some_and(|r| r.contains("is not the commit of workflow run 740")),
        "{:?}",
        s.reason
    );
    assert_eq!(
        gh.requests_to("POST", "/runs/740/").len(),
        0,
        "no answer, no report"
    );
    events_eventually(&kube, "wrong-sha", &["ShaMismatch"]).await;
    until(&api, "wrong-sha", "without a finalizer", |g| {
        g.metadata.finalizers.as_ref().is_none_or(|f| f.is_empty())
    })
    .await;
    // Deleting it answers nothing either.
    api.delete("wrong-sha", &DeleteParams::default())
        .await
        .expect("delete");
    tokio::time::timeout(
        GUARD,
        await_condition(api.clone(), "wrong-sha", |g: Option<&DeploymentGate>| {
            g.is_none()
        }),
    )
    .await
    .expect("gone")
    .expect("watch");
    assert_eq!(gh.requests_to("POST", "/runs/740/").len(), 0);
    op.kill();
}

// ---------------------------------------------------------------------------
// Every request answered exactly once, for the right request.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recreated_name_is_decided_afresh_and_never_inherits_the_old_decision() {
    let (kube, gh) = (FakeKube::start().await, FakeGitHub::start().await);
    let op = Operator::start(&kube, &gh, "", false).await;
    let client = kube.client();
    let api = gates(&client, "default");
    api.create(&PostParams::default(), &gate("reused", 750, json!({})))
        .await
        .expect("create");
    until(&api, "reused", "delivered", delivered).await;
    // Gone without the operator seeing it go (its finalizer removed by hand).
    let clear = json!({"metadata": {"finalizers": null}});
    api.patch("reused", &PatchParams::default(), &Patch::Merge(&clear))
        .await
        .expect("unfinalize");
    api.delete("reused", &DeleteParams::default())
        .await
        .expect("delete");
    // The same name for another run, held by a pause.
    create_pause(&client, &pause("hold", SHA, json!({}))).await;
    api.create(&PostParams::default(), &gate("reused", 751, json!({})))
        .await
        .expect("recreate");
    let g = until(&api, "reused", "held", |g| phase(g) == Some(Phase::Waiting)).await;
    assert!(g.status.as_ref().is_some_and(|s| s.decision.is_none()));
    // Another reconcile of the new gate (a spec change) restores nothing either.
    let touch = json!({"spec": {"ref": "main"}});
    api.patch("reused", &PatchParams::default(), &Patch::Merge(&touch))
        .await
        .expect("touch");
    let g = until(&api, "reused", "observed", |g| {
        g.status.as_ref().and_then(|s| s.observed_generation) == g.metadata.generation
    })
    .await;
    assert_eq!(phase(&g), Some(Phase::Waiting));
    assert_eq!(gh.accepted(751, "production"), 0);
    assert!(
        !event_reasons(&kube, "reused").contains(&"DecisionRestored".to_string()),
        "{:?}",
        event_reasons(&kube, "reused")
    );
    op.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_404_on_the_run_then_success_still_answers() {
    let (kube, gh) = (FakeKube::start().await, FakeGitHub::start().await);
    gh.script("run", &[Fault::Status(404, "Not Found")]);
    let op = Operator::start(&kube, &gh, "", false).await;
    let api = gates(&kube.client(), "default");
    api.create(&PostParams::default(), &gate("flaky-run", 760, json!({})))
        .await
        .expect("create");
    let g = until(&api, "flaky-run", "delivered", delivered).await;
    assert_eq!(phase(&g), Some(Phase::Approved));
    assert_eq!(gh.accepted(760, "production"), 1);
    op.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gate_github_denies_is_deletable_at_once() {
    let (kube, gh) = (FakeKube::start().await, FakeGitHub::start().await);
    let denied = Fault::Status(403, "Resource not accessible by integration");
    gh.script("review", &vec![denied; 50]);
    let op = Operator::start(&kube, &gh, "", false).await;
    let api = gates(&kube.client(), "default");
    api.create(&PostParams::default(), &gate("denied", 770, json!({})))
        .await
        .expect("create");
    let g = until(&api, "denied", "denied", |g| shows(g, "DeliveryDenied")).await;
    let msg = g
        .status
        .and_then(|s| {
            s.conditions
                .into_iter()
                .find(|c| c.type_ == "DeliveryDenied")
        })
        .map(|c| c.message)
        .unwrap_or_default();
    assert!(msg.contains("not accessible by integration"), "{msg}");
    let attempts_before = gh.reviews(770).len();
    api.delete("denied", &DeleteParams::default())
        .await
        .expect("delete");
    tokio::time::timeout(
        GUARD,
        await_condition(api.clone(), "denied", |g: Option<&DeploymentGate>| {
            g.is_none()
        }),
    )
    .await
    .expect("a denied gate never blocks its deletion")
    .expect("watch");
    // One last attempt on the way out; a retry the backoff had already
    // scheduled may land between the count above and the delete.
    let attempts = gh.reviews(770).len();
    assert!(
        (attempts_before + 1..=attempts_before + 2).contains(&attempts),
        "one last attempt on the way out: {attempts_before} before the delete, {attempts} after"
    );
    assert!(event_reasons(&kube, "denied").contains(&"AnswerAbandoned".to_string()));
    op.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gate_made_days_after_its_request_is_answered_within_githubs_thirty_days() {
    let (kube, gh) = (FakeKube::start().await, FakeGitHub::start().await);
    let op = Operator::start(&kube, &gh, "", false).await;
    create_pause(&kube.client(), &pause("hold", SHA, json!({}))).await;
    let api = gates(&kube.client(), "default");
    let requested = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(72);
    api.create(
        &PostParams::default(),
        &gate(
            "late",
            780,
            json!({"timeout": "696h", "requestedAt": requested.to_string()}),
        ),
    )
    .await
    .expect("create");
    let g = until(&api, "late", "held", |g| phase(g) == Some(Phase::Waiting)).await;
    let deadline = g.status.and_then(|s| s.deadline).expect("deadline");
    assert_eq!(
        deadline,
        requested + jiff::SignedDuration::from_hours(29 * 24)
    );
    assert!(deadline < requested + jiff::SignedDuration::from_hours(30 * 24));
    op.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciles_that_change_nothing_write_nothing() {
    let (kube, gh) = (FakeKube::start().await, FakeGitHub::start().await);
    let op = Operator::start(&kube, &gh, "", false).await;
    let api = gates(&kube.client(), "default");
    api.create(&PostParams::default(), &gate("g13", 113, json!({})))
        .await
        .expect("create");
    until(&api, "g13", "delivered", delivered).await;
    let before = status_writes(&kube, "g13");
    assert_eq!(before, 2, "one decision write and one delivery write");
    // Label changes trigger reconciles that have nothing to do.
    for i in 0..5 {
        let patch = json!({"metadata": {"labels": {"touch": i.to_string()}}});
        api.patch("g13", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("touch");
    }
    let last = json!({"metadata": {"labels": {"touch": "done"}}});
    api.patch("g13", &PatchParams::default(), &Patch::Merge(&last))
        .await
        .expect("touch");
    until(&api, "g13", "touched", |g| {
        g.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("touch"))
            .is_some_and(|v| v == "done")
    })
    .await;
    // A second gate decided after the touches proves the controller processed them.
    api.create(&PostParams::default(), &gate("g14", 114, json!({})))
        .await
        .expect("create");
    until(&api, "g14", "delivered", delivered).await;
    assert_eq!(
        status_writes(&kube, "g13"),
        before,
        "no-op reconciles wrote status"
    );
    assert_eq!(gh.reviews(113).len(), 1);
    op.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_records_the_real_verdict_but_tells_github_approve() {
    let (kube, gh) = (FakeKube::start().await, FakeGitHub::start().await);
    gh.add_status(SHA, "ci/test", "failure");
    let op = Operator::start(&kube, &gh, "", true).await;
    let api = gates(&kube.client(), "default");
    api.create(
        &PostParams::default(),
        &gate("g15", 115, json!({"requiredChecks": ["ci/test"]})),
    )
    .await
    .expect("create");
    let g = until(&api, "g15", "delivered", delivered).await;
    let d = g
        .status
        .as_ref()
        .and_then(|s| s.decision.clone())
        .expect("decision");
    assert_eq!(d.verdict, Verdict::Reject);
    assert!(d.dry_run && d.reason.starts_with("dry run"), "{}", d.reason);
    assert_eq!(phase(&g), Some(Phase::Rejected));
    assert_eq!(gh.reviews(115)[0].body["state"], "approved");
    op.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gate_whose_run_completed_while_undecided_becomes_unknown() {
    let (kube, gh) = (FakeKube::start().await, FakeGitHub::start().await);
    gh.set_run(116, "completed", Some("cancelled"));
    let op = Operator::start(&kube, &gh, "", false).await;
    let client = kube.client();
    create_pause(&client, &pause("red-main", SHA, json!({}))).await;
    let api = gates(&client, "default");
    api.create(&PostParams::default(), &gate("g16", 116, json!({})))
        .await
        .expect("create");
    let g = until(&api, "g16", "unknown", |g| phase(g) == Some(Phase::Unknown)).await;
    assert!(
        g.status
            .and_then(|s| s.reason)
            .is_some_and(|r| r.contains("cancelled"))
    );
    assert_eq!(gh.reviews(116).len(), 0);
    op.kill();
}

// ---- retries back off, answers first, resumes on record (issue 22) ----------------

/// Failed writes to the named gate, in the fake API server's log.
fn failed_writes(kube: &FakeKube, name: &str) -> usize {
    kube.writes()
        .iter()
        .filter(|w| w.name.as_deref() == Some(name) && w.code == 500)
        .count()
}

// A gate whose deadline has passed while the API server fails its writes: the
// retries come at least a second apart at first and then back off (1–2 s,
// then 2–4 s), where they once came every 10 ms. The gaps are sampled from
// the fake API server's log; each bound is a least wait the operator keeps
// however slow the machine, so a slow run only widens them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconcile_failing_after_the_deadline_is_retried_about_once_a_second_then_backs_off() {
    const FAILURES: usize = 3;
    let (kube, gh) = (FakeKube::start().await, FakeGitHub::start().await);
    let op = Operator::start(&kube, &gh, "", false).await;
    let client = kube.client();
    create_pause(&client, &pause("red-main", SHA, json!({}))).await;
    let past = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(60);
    // Held past its deadline, as an operator that was down left it. The
    // failures are queued first: the gate's first write meets them.
    kube.fail_next_writes_to("late", &[500; FAILURES]);
    kube.put(
        GATES,
        json!({
            "apiVersion": "tollgate.dev/v1alpha1", "kind": "DeploymentGate",
            "metadata": {"name": "late", "namespace": "default"},
            "spec": {"repository": "acme/web", "environment": "production", "sha": SHA,
                     "runId": 301, "deadline": past.to_string()},
            "status": {"phase": "Waiting", "deadline": past.to_string()},
        }),
    );

    let guard = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    while seen.len() < FAILURES {
        assert!(
            tokio::time::Instant::now() < guard,
            "only {} of {FAILURES} failed writes",
            seen.len()
        );
        let n = failed_writes(&kube, "late");
        while seen.len() < n {
            seen.push(tokio::time::Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let gaps: Vec<Duration> = seen.windows(2).map(|w| w[1] - w[0]).collect();
    eprintln!("retry gaps: {gaps:?}");
    // Retry n waits at least 2^(n-1) s; the sampling may cut up to this much.
    let sampling = Duration::from_millis(150);
    for (n, gap) in gaps.iter().enumerate() {
        let least = Duration::from_secs(1 << n);
        assert!(
            *gap + sampling >= least,
            "retry {} came after {gap:?}, not at least {least:?}: {gaps:?}",
            n + 1
        );
    }

    // Once the API server takes writes again, the deadline applies, answered once.
    let api = gates(&client, "default");
    let g = until(&api, "late", "delivered", delivered).await;
    let d = g.status.and_then(|s| s.decision).expect("decision");
    assert_eq!(
        (d.verdict, d.source),
        (Verdict::Reject, DecisionSource::Deadline)
    );
    assert_eq!(gh.accepted(301, "production"), 1);
    assert_eq!(failed_writes(&kube, "late"), FAILURES);
    op.kill();
}

// Six gates held on staging want to tell their runs why; one report finds the
// budget (60 writes a minute) free, five wait. Then four production gates are
// decided: their answers go out before any waiting report, which follow them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_small_budget_waiting_status_reports_never_go_out_before_pending_answers() {
    const HELD: i64 = 6;
    const ANSWERS: i64 = 4;
    let (kube, gh) = (FakeKube::start().await, FakeGitHub::start().await);
    let settings = Settings {
        instance: Some("test".into()),
        ..Settings::default()
    };
    let op = Operator::start_with(&kube, &gh, "", settings, 60).await;
    let client = kube.client();
    create_pause(
        &client,
        &pause(
            "red-staging",
            SHA,
            json!({"scope": {"repositories": ["acme/*"], "environments": ["staging"]}}),
        ),
    )
    .await;
    let api = gates(&client, "default");
    for run in 1..=HELD {
        let g = gate(
            &format!("held-{run}"),
            200 + run,
            json!({"environment": "staging"}),
        );
        api.create(&PostParams::default(), &g)
            .await
            .expect("create");
    }
    for run in 1..=HELD {
        until(&api, &format!("held-{run}"), "waiting", |g| {
            phase(g) == Some(Phase::Waiting)
        })
        .await;
    }
    let reports_asked = tokio::time::Instant::now();
    for run in 1..=ANSWERS {
        let g = gate(&format!("go-{run}"), 300 + run, json!({}));
        api.create(&PostParams::default(), &g)
            .await
            .expect("create");
    }
    for run in 1..=ANSWERS {
        until(&api, &format!("go-{run}"), "delivered", delivered).await;
    }
    let posts = gh.requests_to("POST", "/deployment_protection_rule");
    let last_answer = posts
        .iter()
        .filter(|p| p.body.get("state").is_some())
        .map(|p| p.at)
        .max()
        .expect("answers");
    let reports_between: Vec<_> = posts
        .iter()
        .filter(|p| p.body.get("state").is_none() && p.at > reports_asked && p.at < last_answer)
        .map(|p| p.path.clone())
        .collect();
    // At most one report, sent before the first answer was asked for (on a
    // slow machine the second report's slot may come before the answers do).
    assert!(
        reports_between.len() <= 1,
        "reports went out while answers waited: {reports_between:?}"
    );
    // The waiting reports are not lost: they follow the answers, one each.
    let guard = tokio::time::Instant::now() + GUARD;
    loop {
        let posted: u32 = (1..=HELD)
            .map(|run| gh.comments(200 + run, "staging"))
            .sum();
        if posted == HELD as u32 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < guard,
            "only {posted} of {HELD} reports went out"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for run in 1..=ANSWERS {
        assert_eq!(gh.accepted(300 + run, "production"), 1);
    }
    op.kill();
}

// `tollgate unpause`, and at once a stale writer restates the failure without
// spec.resume — 50 times, each for a new failure. The resume is on record every
// time, and the restated pause does not hold the next gate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_dropped_at_once_is_still_recorded_and_the_restated_pause_does_not_hold() {
    const ROUNDS: i64 = 50;
    let (kube, gh) = (FakeKube::start().await, FakeGitHub::start().await);
    kube.set_user("alice@example.com");
    let op = Operator::start(&kube, &gh, "", false).await;
    let client = kube.client();
    let papi = pauses(&client, "default");
    let api = gates(&client, "default");
    create_pause(&client, &pause("red-main", SHA, json!({}))).await;
    let args = tollgate::cli::unpause::UnpauseArgs {
        name: "red-main".into(),
        namespace: Some("default".into()),
        no_wait: true,
        timeout: Duration::from_secs(30),
    };
    for round in 1..=ROUNDS {
        // A new failure.
        let sha = format!("{:040x}", 0xfa11_0000 + round);
        let failure = json!({"spec": {"sha": sha}});
        papi.patch("red-main", &PatchParams::default(), &Patch::Merge(&failure))
            .await
            .expect("new failure");
        tollgate::cli::unpause::unpause(&client, &args, jiff::Timestamp::now())
            .await
            .expect("unpause");
        let restate =
            json!({"spec": {"resume": null, "message": format!("main is red ({round})")}});
        let restated = papi
            .patch("red-main", &PatchParams::default(), &Patch::Merge(&restate))
            .await
            .expect("restate");
        assert!(restated.spec.resume.is_none());
        let generation = restated.metadata.generation;

        let want = sha.clone();
        let seen = tokio::time::timeout(
            GUARD,
            await_condition(papi.clone(), "red-main", move |p: Option<&ReleasePause>| {
                p.and_then(|p| p.status.as_ref()).is_some_and(|s| {
                    s.observed_generation == generation
                        && s.state == Some(tollgate::api::PauseState::Resumed)
                        && s.recovery.as_ref().and_then(|r| r.sha.as_deref()) == Some(want.as_str())
                })
            }),
        )
        .await
        .unwrap_or_else(|_| panic!("round {round}: the resume of {sha} was not recorded"))
        .expect("watch")
        .expect("pause");
        let recovery = seen.status.and_then(|s| s.recovery).expect("recovery");
        assert_eq!(
            (recovery.reason.as_str(), recovery.by.as_deref()),
            ("ci-failed", Some("alice@example.com")),
            "round {round}"
        );

        let name = format!("after-{round}");
        gh.set_run_head(600 + round, &sha);
        api.create(
            &PostParams::default(),
            &gate(&name, 600 + round, json!({"sha": sha})),
        )
        .await
        .expect("create");
        let g = until(&api, &name, "delivered", delivered).await;
        assert_eq!(
            phase(&g),
            Some(Phase::Approved),
            "round {round}: the restated pause held the gate"
        );
        assert_eq!(gh.accepted(600 + round, "production"), 1, "round {round}");
    }
    op.kill();
}

// Six gates held on staging each want to tell their run why, at one write a
// second: one or two reports go out, the rest wait. The pause is resumed, the
// gates are answered, and each answer drops its gate's waiting report. Every
// held gate's report is either posted or counted as dropped, and the gauges say so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_an_answer_overtakes_are_dropped_and_counted() {
    const HELD: i64 = 6;
    let (kube, gh) = (FakeKube::start().await, FakeGitHub::start().await);
    let settings = Settings {
        instance: Some("test".into()),
        ..Settings::default()
    };
    let op = Operator::start_with(&kube, &gh, "", settings, 60).await;
    let client = kube.client();
    create_pause(
        &client,
        &pause(
            "red-staging",
            SHA,
            json!({"scope": {"repositories": ["acme/*"], "environments": ["staging"]}}),
        ),
    )
    .await;
    let api = gates(&client, "default");
    for run in 1..=HELD {
        let g = gate(
            &format!("held-{run}"),
            400 + run,
            json!({"environment": "staging"}),
        );
        api.create(&PostParams::default(), &g)
            .await
            .expect("create");
    }
    for run in 1..=HELD {
        until(&api, &format!("held-{run}"), "waiting", |g| {
            phase(g) == Some(Phase::Waiting)
        })
        .await;
    }
    let resume = json!({"spec": {"resume": {"sha": SHA, "reason": "ci-failed"}}});
    pauses(&client, "default")
        .patch(
            "red-staging",
            &PatchParams::default(),
            &Patch::Merge(&resume),
        )
        .await
        .expect("resume");
    for run in 1..=HELD {
        until(&api, &format!("held-{run}"), "delivered", delivered).await;
    }
    let posted: u32 = (1..=HELD)
        .map(|run| gh.comments(400 + run, "staging"))
        .sum();
    assert!(
        (posted as i64) < HELD,
        "every report went out before the answers: nothing was overtaken"
    );
    let want_dropped = format!(
        "tollgate_status_reports_dropped_total {}",
        HELD as u32 - posted
    );
    // The gauges are read every 5 s.
    let guard = tokio::time::Instant::now() + GUARD;
    loop {
        let text = op.metrics.render();
        if text.contains(&want_dropped) && text.contains("tollgate_status_reports_waiting 0") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < guard,
            "want `{want_dropped}` and no report waiting; metrics:\n{}",
            text.lines()
                .filter(|l| l.contains("status_reports"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for run in 1..=HELD {
        assert_eq!(gh.accepted(400 + run, "staging"), 1);
    }
    op.kill();
}

/// Adversary: a watch cache that lags behind our own writes (a busy API
/// server). Each event of an intermediate write of ours reaches the operator
/// after the gate was already delivered; reconciling it must not cost a read:
/// our own last write is the freshest copy, and every write carries its
/// resourceVersion.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_behind_only_our_own_writes_costs_no_read() {
    let (kube, gh) = (FakeKube::start().await, FakeGitHub::start().await);
    kube.set_watch_lag(Duration::from_millis(300));
    let op = Operator::start(&kube, &gh, "", false).await;
    kube.record_requests();
    let api = gates(&kube.client(), "default");
    api.create(&PostParams::default(), &gate("g1", 101, json!({})))
        .await
        .expect("create");
    until(&api, "g1", "delivered", delivered).await;
    assert_eq!(gh.accepted(101, "production"), 1);
    // The finalizer, the decision and the delivery are three writes; their
    // events arrive one by one, each a reconcile of a cache behind ours.
    let reconciles = || {
        op.metrics
            .render()
            .lines()
            .find(|l| {
                l.starts_with("tollgate_reconcile_duration_seconds_count{controller=\"gate\"}")
            })
            .and_then(|l| l.rsplit_once(' '))
            .and_then(|(_, n)| n.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let waited = tokio::time::Instant::now();
    while reconciles() < 4 && waited.elapsed() < GUARD {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(reconciles() >= 4, "every write's event was reconciled");
    let reads: Vec<_> = kube
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.collection == GATES && r.name.as_deref() == Some("g1"))
        .collect();
    assert!(
        reads.is_empty(),
        "the operator read the gate it had just written: {reads:?}"
    );
    let text = op.metrics.render();
    assert!(
        text.contains("tollgate_kube_requests_total{client=\"work\",verb=\"patch\",resource=\"deploymentgates/status\"} 2"),
        "the decision and the delivery, counted by verb and resource: {text}"
    );
    assert!(
        !text.contains("tollgate_kube_requests_total{client=\"work\",verb=\"get\",resource=\"deploymentgates\"}"),
        "{text}"
    );
    assert_eq!(gh.accepted(101, "production"), 1, "answered once");
    op.kill();
}

// ---- GitHub as documented: report limits, invalid answers ---------------------------

/// Status reports (review POSTs without a state) sent for a run, as GitHub got them.
fn reports_sent(gh: &FakeGitHub, run: i64) -> Vec<(u16, String)> {
    gh.requests_to(
        "POST",
        &format!("/actions/runs/{run}/deployment_protection_rule"),
    )
    .into_iter()
    .filter(|r| r.body.get("state").is_none())
    .map(|r| {
        (
            r.status,
            r.body["comment"].as_str().unwrap_or_default().to_string(),
        )
    })
    .collect()
}

fn reports_count(g: &DeploymentGate) -> u32 {
    g.status
        .as_ref()
        .and_then(|s| s.reports.as_ref())
        .map_or(0, |r| r.count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gate_held_by_forty_pauses_and_checks_reports_within_1024_characters_without_a_retry_storm()
 {
    let (kube, gh) = (FakeKube::start().await, FakeGitHub::start().await);
    let op = Operator::start(&kube, &gh, "", false).await;
    let client = kube.client();
    for i in 0..20 {
        create_pause(
            &client,
            &pause(&format!("red-main-number-{i:02}"), SHA, json!({})),
        )
        .await;
    }
    let checks: Vec<String> = (0..20)
        .map(|i| format!("ci/integration-suite-{i:02}"))
        .collect();
    let api = gates(&client, "default");
    api.create(
        &PostParams::default(),
        &gate("held40", 940, json!({"requiredChecks": checks})),
    )
    .await
    .expect("create");
    let g = until(&api, "held40", "reported", |g| reports_count(g) == 1).await;
    assert_eq!(g.status.as_ref().map(|s| s.blockers.len()), Some(40));

    // Reconciles that change nothing post nothing.
    for n in 0..3 {
        let touch = json!({"metadata": {"annotations": {"test/touch": n.to_string()}}});
        api.patch("held40", &PatchParams::default(), &Patch::Merge(&touch))
            .await
            .expect("touch");
    }
    // What holds it changes: one more report.
    pauses(&client, "default")
        .delete("red-main-number-00", &DeleteParams::default())
        .await
        .expect("delete pause");
    until(&api, "held40", "reported again", |g| reports_count(g) == 2).await;

    let sent = reports_sent(&gh, 940);
    assert_eq!(sent.len(), 2, "one report per change, no retries: {sent:?}");
    for (status, text) in &sent {
        assert_eq!(*status, 204, "{text}");
        assert!(
            text.chars().count() <= 1024,
            "{} characters",
            text.chars().count()
        );
        assert!(text.contains("… and ") && text.ends_with(" more"), "{text}");
    }
    assert_ne!(sent[0].1, sent[1].1, "the second names what changed");
    op.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_422_is_recorded_once_on_the_gate_and_not_retried() {
    let (kube, gh) = (FakeKube::start().await, FakeGitHub::start().await);
    gh.script(
        "review",
        &[Fault::Status(
            422,
            "Validation Failed: state is not included in the list",
        )],
    );
    let op = Operator::start(&kube, &gh, "", false).await;
    let api = gates(&kube.client(), "default");
    api.create(&PostParams::default(), &gate("invalid", 941, json!({})))
        .await
        .expect("create");
    let g = until(&api, "invalid", "failed", |g| {
        g.status
            .as_ref()
            .and_then(|s| s.delivery.as_ref())
            .is_some_and(|d| d.state == DeliveryState::Failed)
    })
    .await;
    let status = g.status.clone().expect("status");
    let delivery = status.delivery.clone().expect("delivery");
    assert_eq!(delivery.attempts, 1);
    let error = delivery.last_error.unwrap_or_default();
    assert!(
        error.contains("422: Validation Failed: state is not included in the list"),
        "{error}"
    );
    let cond = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Delivered")
        .expect("Delivered condition");
    assert_eq!(
        (cond.status.as_str(), cond.reason.as_str()),
        ("False", "Invalid")
    );
    assert!(
        cond.message.contains("Validation Failed"),
        "{}",
        cond.message
    );

    // Reconciled again: still nothing sent.
    let touch = json!({"metadata": {"annotations": {"test/touch": "1"}}});
    api.patch("invalid", &PatchParams::default(), &Patch::Merge(&touch))
        .await
        .expect("touch");
    until(&api, "invalid", "touched", |g| {
        g.metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key("test/touch"))
    })
    .await;
    events_eventually(&kube, "invalid", &["Approved", "DeliveryInvalid"]).await;
    assert_eq!(gh.reviews(941).len(), 1);
    assert_eq!(gh.accepted(941, "production"), 0);
    let text = op.metrics.render();
    assert!(
        text.contains(r#"tollgate_github_invalid_requests_total{operation="review"} 1"#),
        "{text}"
    );
    op.kill();
}

// ---- Metric analysis against a real Prometheus (tests/support/prometheus.rs) ----

/// The operator reads Prometheus on its own clock: the test moves it one
/// interval on, then touches the gate so it is looked at now rather than
/// when the real interval has passed.
async fn next_interval(api: &Api<DeploymentGate>, name: &str, clock: &Clock, by_secs: i64, n: u32) {
    clock.advance(jiff::SignedDuration::from_secs(by_secs));
    let patch = json!({"metadata": {"annotations": {"test.tollgate.dev/poke": n.to_string()}}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("poke");
}

/// Waits until the operator read the gate's first analysis at the clock's time.
async fn read_at_now(api: &Api<DeploymentGate>, name: &str, clock: &Clock) -> DeploymentGate {
    let now = clock.now();
    until(api, name, "read at the clock's time", move |g| {
        g.status
            .as_ref()
            .and_then(|s| s.analysis.first())
            .and_then(|a| a.read_at)
            .is_some_and(|t| t >= now)
    })
    .await
}

fn analysis_gate(name: &str, run_id: i64, failure_limit: u32) -> DeploymentGate {
    gate(
        name,
        run_id,
        json!({"analysis": [{
            "name": "staging-errors",
            "query": "tollgate_test_error_ratio",
            "max": 0.01,
            "for": "20s",
            "interval": "10s",
            "failureLimit": failure_limit,
        }]}),
    )
}

fn prometheus_settings(url: &str) -> Settings {
    Settings {
        instance: Some("test".into()),
        prometheus: Some(
            tollgate::prometheus::Prometheus::new(&support::prometheus::settings(url))
                .expect("prometheus client"),
        ),
        ..Settings::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analysis_against_a_real_prometheus_approves_after_for_and_rejects_at_the_failure_limit() {
    let test = "analysis_against_a_real_prometheus";
    let Some(bin) = support::prometheus::binary_or_skip(test) else {
        return;
    };
    let exporter = support::prometheus::Exporter::start(0.004).await;
    let prom = support::prometheus::Prometheus::start(&bin, exporter.addr()).await;
    prom.reads("tollgate_test_error_ratio", 0.004).await;

    let (kube, gh) = (FakeKube::start().await, FakeGitHub::start().await);
    let clock = Clock::manual(jiff::Timestamp::now());
    let config = format!("prometheus:\n  url: {}\n", prom.url());
    let op = Operator::start_clocked(
        &kube,
        &gh,
        &config,
        prometheus_settings(prom.url()),
        clock.clone(),
    )
    .await;
    let api = gates(&kube.client(), "default");

    // Prometheus's own answers: an error for a bad query, several series,
    // none. The first is no reading; the others are inconclusive.
    let client = tollgate::prometheus::Prometheus::new(&support::prometheus::settings(prom.url()))
        .expect("client");
    let e = client.query("sum(").await.expect_err("a parse error");
    assert!(
        e.to_string()
            .starts_with("Prometheus refused the query (400 bad_data)"),
        "{e}"
    );
    for (name, run, query, why) in [
        (
            "several",
            805,
            r#"{job="exporter"}"#,
            "series; it must return exactly one",
        ),
        (
            "absent",
            806,
            "tollgate_test_no_such_metric",
            "the query returned no result",
        ),
    ] {
        let mut g = analysis_gate(name, run, 2);
        g.spec.analysis[0].query = query.into();
        api.create(&PostParams::default(), &g)
            .await
            .expect("create");
        let g = read_at_now(&api, name, &clock).await;
        let s = g.status.expect("status");
        assert_eq!(
            s.analysis[0].result,
            tollgate::api::AnalysisResult::Inconclusive,
            "{name}"
        );
        assert!(
            s.analysis[0].message.ends_with(why),
            "{name}: {}",
            s.analysis[0].message
        );
        assert_eq!(s.phase, Some(Phase::Waiting), "{name}");
    }

    // Good for `for` (20 s: readings at 0, 10 and 20 s) → approved.
    api.create(&PostParams::default(), &analysis_gate("good", 801, 2))
        .await
        .expect("create");
    let g = read_at_now(&api, "good", &clock).await;
    let s = g.status.expect("status");
    assert_eq!(s.phase, Some(Phase::Waiting));
    assert_eq!(s.analysis[0].last_value, Some(0.004));
    assert_eq!(s.analysis[0].message, "0.004 ≤ 0.01 for 0s of 20s");
    assert_eq!(s.analysis_summary.as_deref(), Some("0/1 passing"));
    next_interval(&api, "good", &clock, 10, 1).await;
    let g = read_at_now(&api, "good", &clock).await;
    assert_eq!(
        phase(&g),
        Some(Phase::Waiting),
        "10 s of 20 s is not enough"
    );
    assert_eq!(gh.reviews(801).len(), 0);
    next_interval(&api, "good", &clock, 10, 2).await;
    let g = until(&api, "good", "delivered", delivered).await;
    let s = g.status.expect("status");
    assert_eq!(s.phase, Some(Phase::Approved));
    assert_eq!(s.analysis_summary.as_deref(), Some("1/1 passing"));
    let reviews = gh.reviews(801);
    assert_eq!(reviews.len(), 1);
    assert_eq!(reviews[0].body["state"], "approved");
    let comment = reviews[0].body["comment"].as_str().unwrap_or_default();
    assert!(
        comment.contains("analysis staging-errors 0.004 ≤ 0.01 for 20s"),
        "{comment}"
    );
    events_eventually(
        &kube,
        "good",
        &[
            "Waiting",
            "AnalysisPassing",
            "AnalysisPassed",
            "Approved",
            "Delivered",
        ],
    )
    .await;

    // Bad: `failureLimit` (2) failing readings in a row → rejected.
    exporter.set(0.05);
    prom.reads("tollgate_test_error_ratio", 0.05).await;
    api.create(&PostParams::default(), &analysis_gate("bad", 802, 2))
        .await
        .expect("create");
    let g = read_at_now(&api, "bad", &clock).await;
    let s = g.status.expect("status");
    assert_eq!(s.phase, Some(Phase::Waiting), "one failure of two");
    assert_eq!(s.analysis[0].consecutive_failures, 1);
    next_interval(&api, "bad", &clock, 10, 1).await;
    let g = until(&api, "bad", "delivered", delivered).await;
    let s = g.status.expect("status");
    assert_eq!(s.phase, Some(Phase::Rejected));
    let reviews = gh.reviews(802);
    assert_eq!(reviews.len(), 1);
    assert_eq!(reviews[0].body["state"], "rejected");
    assert_eq!(
        reviews[0].body["comment"],
        "Tollgate: rejected — analysis staging-errors failed: 0.05 > 0.01 (2 of 2 failures in a row)"
    );
    events_eventually(
        &kube,
        "bad",
        &[
            "Waiting",
            "AnalysisFailing",
            "AnalysisFailed",
            "Rejected",
            "Delivered",
        ],
    )
    .await;
    let text = op.metrics.render();
    for (result, n) in [("pass", 3), ("fail", 2)] {
        let line = format!("tollgate_analysis_readings_total{{result=\"{result}\"}} {n}");
        assert!(text.contains(&line), "{line} in {text}");
    }
    op.kill();
    drop(prom);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_prometheus_is_a_condition_and_an_event_never_a_pass() {
    // A loopback port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let url = format!("http://{closed}");
    let (kube, gh) = (FakeKube::start().await, FakeGitHub::start().await);
    let clock = Clock::manual(jiff::Timestamp::now());
    let config = format!("prometheus:\n  url: {url}\n");
    let op = Operator::start_clocked(
        &kube,
        &gh,
        &config,
        prometheus_settings(&url),
        clock.clone(),
    )
    .await;
    let api = gates(&kube.client(), "default");
    let mut g = analysis_gate("dark", 803, 2);
    g.spec.analysis[0].hold_for = "0s".into();
    api.create(&PostParams::default(), &g)
        .await
        .expect("create");
    let g = read_at_now(&api, "dark", &clock).await;
    let s = g.status.expect("status");
    assert_eq!(s.phase, Some(Phase::Waiting));
    assert_eq!(s.analysis[0].result, tollgate::api::AnalysisResult::Error);
    let c = s
        .conditions
        .iter()
        .find(|c| c.type_ == "AnalysisError")
        .expect("AnalysisError condition");
    assert_eq!(c.status, "True");
    assert!(
        c.message
            .contains(&format!("cannot reach Prometheus at {url}")),
        "{}",
        c.message
    );
    // Read again with backoff (5 s), still no pass, still one Event.
    next_interval(&api, "dark", &clock, 5, 1).await;
    let g = until(&api, "dark", "read twice", |g| {
        g.status.as_ref().is_some_and(|s| {
            s.analysis
                .first()
                .is_some_and(|a| a.consecutive_errors == 2)
        })
    })
    .await;
    assert_eq!(phase(&g), Some(Phase::Waiting));
    assert_eq!(gh.reviews(803).len(), 0, "never a pass");
    events_eventually(&kube, "dark", &["Waiting", "AnalysisError"]).await;
    let text = op.metrics.render();
    assert!(
        text.contains("tollgate_analysis_readings_total{result=\"error\"} 2"),
        "{text}"
    );
    op.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_analysis_longer_than_the_deadline_allows_is_invalid_naming_the_field() {
    // `for` 2h on a gate whose deadline is the default 1h away: the schema
    // cannot see it (no spec.timeout), the operator does.
    let (kube, gh) = (FakeKube::start().await, FakeGitHub::start().await);
    let clock = Clock::manual(jiff::Timestamp::now());
    let url = "http://127.0.0.1:9";
    let config = format!("prometheus:\n  url: {url}\n");
    let op =
        Operator::start_clocked(&kube, &gh, &config, prometheus_settings(url), clock.clone()).await;
    let api = gates(&kube.client(), "default");
    let mut g = analysis_gate("too-long", 804, 2);
    g.spec.timeout = None;
    g.spec.analysis[0].hold_for = "2h".into();
    api.create(&PostParams::default(), &g)
        .await
        .expect("create");
    let g = until(&api, "too-long", "invalid", |g| {
        g.status
            .as_ref()
            .is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "Invalid"))
    })
    .await;
    let s = g.status.expect("status");
    let c = s
        .conditions
        .iter()
        .find(|c| c.type_ == "Invalid")
        .expect("Invalid");
    assert_eq!(c.reason, "InvalidAnalysis");
    assert!(
        c.message
            .starts_with("spec.analysis[0].for 2h is longer than the gate may wait (1h0m0s)"),
        "{}",
        c.message
    );
    assert_eq!(s.phase, Some(Phase::Waiting));
    assert!(
        s.analysis.is_empty(),
        "nothing is read for a spec that cannot work"
    );
    events_eventually(&kube, "too-long", &["Waiting", "InvalidAnalysis"]).await;
    // Later reconciles keep the condition as it is: no write per reconcile.
    let writes = status_writes(&kube, "too-long");
    let since = c.last_transition_time.clone();
    let reconciles = || {
        let text = op.metrics.render();
        text.lines()
            .find(|l| {
                l.starts_with(r#"tollgate_reconcile_duration_seconds_count{controller="gate"}"#)
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let before = reconciles();
    next_interval(&api, "too-long", &clock, 30, 1).await;
    let deadline = tokio::time::Instant::now() + GUARD;
    while reconciles() <= before {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no reconcile after the poke"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let g = api.get("too-long").await.expect("get");
    let c = g
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Invalid").cloned())
        .expect("still Invalid");
    assert_eq!(c.last_transition_time, since);
    assert_eq!(status_writes(&kube, "too-long"), writes, "no status write");
    assert!(
        !op.metrics
            .render()
            .contains("tollgate_analysis_readings_total{"),
        "no reading was made"
    );
    assert_eq!(gh.reviews(804).len(), 0);
    op.kill();
}

/// Polls the operator's metrics (the gauges are refreshed every 5 s) until
/// `cond` holds, within the guard.
async fn metrics_until(op: &Operator, what: &str, cond: impl Fn(&str) -> bool) -> String {
    let guard = tokio::time::Instant::now() + GUARD;
    loop {
        let text = op.metrics.render();
        if cond(&text) {
            return text;
        }
        assert!(
            tokio::time::Instant::now() < guard,
            "metrics never showed {what}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_waiting_gate_exports_its_deadline_until_decided_and_the_leader_gauge_follows_the_controllers()
 {
    let (kube, gh) = (FakeKube::start().await, FakeGitHub::start().await);
    let mut op = Operator::start(&kube, &gh, "", false).await;
    assert!(
        op.metrics.render().contains("tollgate_leader 1\n"),
        "running controllers lead"
    );
    let client = kube.client();
    create_pause(&client, &pause("red-main", SHA, json!({}))).await;
    let api = gates(&client, "default");
    api.create(&PostParams::default(), &gate("held", 120, json!({})))
        .await
        .expect("create");
    let held = until(&api, "held", "waiting", |g| {
        phase(g) == Some(Phase::Waiting)
    })
    .await;
    let deadline = held
        .status
        .as_ref()
        .and_then(|s| s.deadline)
        .expect("a waiting gate has a deadline");
    let series = format!(
        "tollgate_gate_deadline_timestamp_seconds{{namespace=\"default\",gate=\"held\",repository=\"acme/web\",environment=\"production\"}} {}\n",
        deadline.as_second()
    );
    metrics_until(&op, "the held gate's deadline", |t| t.contains(&series)).await;

    // A person resumes the pause: the gate is decided, answered before its
    // deadline, and its deadline series ends.
    let resume = json!({"spec": {"resume": {"sha": SHA, "reason": "ci-failed", "by": "alice"}}});
    pauses(&client, "default")
        .patch("red-main", &PatchParams::default(), &Patch::Merge(&resume))
        .await
        .expect("resume");
    until(&api, "held", "delivered", delivered).await;
    let text = metrics_until(&op, "no deadline series", |t| {
        !t.contains("tollgate_gate_deadline_timestamp_seconds{")
    })
    .await;
    assert!(
        text.contains("tollgate_delivery_lateness_seconds_count 1\n")
            && text.contains("tollgate_delivery_lateness_seconds_bucket{le=\"0.0\"} 1\n"),
        "one answer, on time:\n{text}"
    );
    assert!(
        text.contains("tollgate_deliveries_total{outcome=\"denied\"} 0\n"),
        "outcomes never seen are exported at 0:\n{text}"
    );

    // The controllers stop: this instance no longer leads.
    let _ = op.stop.take().expect("running").send(());
    tokio::time::timeout(GUARD, &mut op.task)
        .await
        .expect("the controllers stop")
        .expect("cleanly");
    assert!(op.metrics.render().contains("tollgate_leader 0\n"));
}
