//! Retention against the in-process fake Kubernetes API and the fake GitHub:
//! the real controllers on a hand-driven clock, so a TTL passes when the test
//! says so. Each test asserts which objects are deleted, which stay, and the
//! exact deletes the API server saw. "Stays" is proven by a retention pass
//! that ran at the advanced time (its `tollgate_retention_last_pass` gauge),
//! never by waiting.
//!
//! Also namespaced mode: the operator watching one namespace (and its own)
//! under namespaced RBAC, which the fake enforces with 403s.

mod support;

use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::wait::await_condition;
use kube::{Api, Client};
use serde_json::{Value, json};
use support::github::FakeGitHub;
use support::kube::FakeKube;
use tollgate::api::{DeploymentGate, Phase, ReleasePause};
use tollgate::config::OperatorConfig;
use tollgate::controller::{self, Clock, GateIndex, Runtime, Scope, Settings, Wiring};
use tollgate::github::{Auth, GitHub, GitHubConfig};
use tollgate::telemetry::{Metrics, labels};

const SHA: &str = "9fceb02d0ae598e95dc970b74767f19372d61af8";
const GATES: &str = "tollgate.dev/v1alpha1/deploymentgates";
const PAUSES: &str = "tollgate.dev/v1alpha1/releasepauses";
/// A hang guard only: every awaited change is event-driven.
const GUARD: Duration = Duration::from_secs(20);

struct Operator {
    task: tokio::task::JoinHandle<()>,
    _stop: tokio::sync::oneshot::Sender<()>,
    metrics: Metrics,
    clock: Clock,
    shard: String,
}

impl Operator {
    async fn start(kube: &FakeKube, gh: &FakeGitHub, config: &str) -> Operator {
        Operator::start_in(kube, gh, config, Scope::default()).await
    }

    async fn start_in(kube: &FakeKube, gh: &FakeGitHub, config: &str, scope: Scope) -> Operator {
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
            writes_per_minute: 60_000,
            writes_per_hour: 10_000_000,
            max_in_flight: 100,
        })
        .expect("github client");
        let metrics = Metrics::new();
        // Whole seconds, so the gauge of the last pass (Unix seconds) compares exactly.
        let clock = Clock::manual(
            Timestamp::from_second(Timestamp::now().as_second()).expect("a current time"),
        );
        let shard = match scope.namespaces.first() {
            Some(ns) => ns.clone(),
            None => "*".into(),
        };
        let rt = Runtime {
            client: kube.client(),
            github,
            config: Arc::new(OperatorConfig::parse(&support::single_team(config)).expect("config")),
            settings: Settings {
                instance: Some("test".into()),
                ..Settings::default()
            },
            metrics: metrics.clone(),
            scope,
        };
        let wiring = Wiring {
            gate_index: GateIndex::new(),
            clock: clock.clone(),
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
            _stop: stop_tx,
            metrics,
            clock,
            shard,
        }
    }

    /// Moves the clock on and returns once a retention pass has looked at
    /// the caches at the new time (or later), so whatever it left stays.
    async fn advance(&self, by: SignedDuration) -> Timestamp {
        self.clock.advance(by);
        let now = self.clock.now();
        let gauge = self
            .metrics
            .retention_last_pass
            .get_or_create(&labels([("shard", &self.shard)]));
        let deadline = tokio::time::Instant::now() + GUARD;
        while gauge.get() < now.as_second() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no retention pass at {now}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        now
    }

    fn deletions(&self, kind: &str, outcome: &str) -> u64 {
        self.metrics
            .retention_deletions
            .get_or_create(&labels([("kind", kind), ("outcome", outcome)]))
            .get()
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn gates(client: &Client, ns: &str) -> Api<DeploymentGate> {
    Api::namespaced(client.clone(), ns)
}

/// A gate a person rejects at once: finished as soon as GitHub has the answer.
fn rejected(name: &str, run_id: i64, environment: &str, labels: Value) -> DeploymentGate {
    serde_json::from_value(json!({
        "apiVersion": "tollgate.dev/v1alpha1",
        "kind": "DeploymentGate",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "repository": "acme/web",
            "environment": environment,
            "sha": SHA,
            "runId": run_id,
            "timeout": "24h",
            "override": {"decision": "Reject", "reason": "not today", "by": "alice"},
        },
    }))
    .expect("gate manifest")
}

/// Creates a gate and waits until it finished; returns when (`status.finishedAt`).
async fn finish(api: &Api<DeploymentGate>, gate: DeploymentGate) -> Timestamp {
    let name = gate.metadata.name.clone().expect("name");
    api.create(&PostParams::default(), &gate)
        .await
        .expect("create");
    let g = tokio::time::timeout(
        GUARD,
        await_condition(api.clone(), &name, |g: Option<&DeploymentGate>| {
            g.and_then(|g| g.status.as_ref())
                .is_some_and(|s| s.finished_at.is_some())
        }),
    )
    .await
    .unwrap_or_else(|_| panic!("gate {name} never finished"))
    .expect("watch")
    .expect("the gate exists");
    let s = g.status.expect("status");
    assert_eq!(s.phase, Some(Phase::Rejected), "{name}");
    s.finished_at.expect("finishedAt")
}

async fn gone<K>(api: &Api<K>, name: &str)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    tokio::time::timeout(
        GUARD,
        await_condition(api.clone(), name, |o: Option<&K>| o.is_none()),
    )
    .await
    .unwrap_or_else(|_| panic!("{name} was never deleted"))
    .expect("watch");
}

/// The names the API server was asked to delete in `collection`, with the answer codes.
fn deletes(kube: &FakeKube, collection: &str) -> Vec<(String, u16)> {
    kube.writes()
        .iter()
        .filter(|w| w.method == "DELETE" && w.collection == collection)
        .map(|w| (w.name.clone().unwrap_or_default(), w.code))
        .collect()
}

fn names(kube: &FakeKube, collection: &str) -> Vec<String> {
    let mut n: Vec<String> = kube
        .objects(collection)
        .iter()
        .filter_map(|o| o["metadata"]["name"].as_str().map(str::to_string))
        .collect();
    n.sort();
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_gate_is_deleted_once_its_ttl_has_passed_and_not_a_second_before() {
    let (kube, gh) = (FakeKube::start().await, FakeGitHub::start().await);
    let op = Operator::start(
        &kube,
        &gh,
        "retention:\n  finishedTTL: 1h\n  keepPerEnvironment: 0\n",
    )
    .await;
    let api = gates(&kube.client(), "default");
    let finished_at = finish(&api, rejected("g1", 101, "production", json!({}))).await;
    assert_eq!(
        finished_at,
        op.clock.now(),
        "finishedAt is the operator's clock"
    );

    op.advance(SignedDuration::from_secs(3599)).await;
    assert_eq!(names(&kube, GATES), ["g1"], "not a second early");
    assert!(deletes(&kube, GATES).is_empty());

    op.clock.advance(SignedDuration::from_secs(1));
    gone(&api, "g1").await;
    assert_eq!(deletes(&kube, GATES), [("g1".to_string(), 200)]);
    assert_eq!(op.deletions("DeploymentGate", "deleted"), 1);
    assert_eq!(gh.accepted(101, "production"), 1, "answered once, before");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_newest_finished_gates_of_an_environment_stay_until_newer_ones_finish() {
    let (kube, gh) = (FakeKube::start().await, FakeGitHub::start().await);
    let op = Operator::start(
        &kube,
        &gh,
        "retention:\n  finishedTTL: 1h\n  keepPerEnvironment: 2\n",
    )
    .await;
    let api = gates(&kube.client(), "default");
    for (name, run, env) in [
        ("p1", 201, "production"),
        ("p2", 202, "production"),
        ("p3", 203, "production"),
        ("s1", 204, "staging"),
    ] {
        finish(&api, rejected(name, run, env, json!({}))).await;
        op.clock.advance(SignedDuration::from_mins(1));
    }
    op.advance(SignedDuration::from_hours(2)).await;
    gone(&api, "p1").await;
    op.advance(SignedDuration::from_secs(1)).await;
    assert_eq!(
        names(&kube, GATES),
        ["p2", "p3", "s1"],
        "the two newest of production and the one of staging stay, however old"
    );

    // A newer finish pushes the third-newest out.
    finish(&api, rejected("p4", 205, "production", json!({}))).await;
    gone(&api, "p2").await;
    op.advance(SignedDuration::from_secs(1)).await;
    assert_eq!(names(&kube, GATES), ["p3", "p4", "s1"]);
    assert_eq!(
        deletes(&kube, GATES),
        [("p1".to_string(), 200), ("p2".to_string(), 200)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gate_labelled_keep_is_never_deleted() {
    let (kube, gh) = (FakeKube::start().await, FakeGitHub::start().await);
    let op = Operator::start(
        &kube,
        &gh,
        "retention:\n  finishedTTL: 1h\n  keepPerEnvironment: 0\n",
    )
    .await;
    let api = gates(&kube.client(), "default");
    finish(
        &api,
        rejected(
            "kept",
            301,
            "production",
            json!({"tollgate.dev/keep": "true"}),
        ),
    )
    .await;
    finish(&api, rejected("plain", 302, "production", json!({}))).await;
    op.advance(SignedDuration::from_hours(30 * 24)).await;
    gone(&api, "plain").await;
    op.advance(SignedDuration::from_secs(1)).await;
    assert_eq!(names(&kube, GATES), ["kept"]);
    assert_eq!(deletes(&kube, GATES), [("plain".to_string(), 200)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gate_that_changed_between_the_decision_and_the_delete_is_not_deleted() {
    let (kube, gh) = (FakeKube::start().await, FakeGitHub::start().await);
    let op = Operator::start(
        &kube,
        &gh,
        "retention:\n  finishedTTL: 1h\n  keepPerEnvironment: 0\n",
    )
    .await;
    let api = gates(&kube.client(), "default");
    finish(&api, rejected("g1", 401, "production", json!({}))).await;
    // Someone pins the gate just as retention sends its delete.
    kube.before_delete_of("g1", |g| {
        g["metadata"]["labels"]["tollgate.dev/keep"] = json!("true");
    });
    op.advance(SignedDuration::from_hours(2)).await;
    let deadline = tokio::time::Instant::now() + GUARD;
    while deletes(&kube, GATES).is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "no delete was sent");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Later passes see the pinned version and leave it.
    op.advance(SignedDuration::from_secs(1)).await;
    op.advance(SignedDuration::from_secs(1)).await;
    assert_eq!(
        deletes(&kube, GATES),
        [("g1".to_string(), 409)],
        "one delete, refused by its preconditions"
    );
    let g = api.get("g1").await.expect("the gate stays");
    assert_eq!(
        g.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("tollgate.dev/keep"))
            .map(String::as_str),
        Some("true")
    );
    assert_eq!(op.deletions("DeploymentGate", "changed"), 1);
    assert_eq!(op.deletions("DeploymentGate", "deleted"), 0);
}

fn pause(name: &str, labels: Value, extra: Value) -> ReleasePause {
    let mut spec = json!({
        "scope": {"repositories": ["acme/web"]},
        "reason": "ci-failed",
        "sha": SHA,
    });
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            s.insert(k.clone(), v.clone());
        }
    }
    serde_json::from_value(json!({
        "apiVersion": "tollgate.dev/v1alpha1",
        "kind": "ReleasePause",
        "metadata": {"name": name, "labels": labels},
        "spec": spec,
    }))
    .expect("pause manifest")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automatic_pauses_go_a_ttl_after_they_are_resumed_or_expire_and_a_persons_pause_stays() {
    let (kube, gh) = (FakeKube::start().await, FakeGitHub::start().await);
    let op = Operator::start(&kube, &gh, "retention:\n  finishedTTL: 1h\n").await;
    let api: Api<ReleasePause> = Api::namespaced(kube.client(), "default");
    let intake = json!({"tollgate.dev/made-by": "intake"});
    let resume = json!({"resume": {"sha": SHA, "reason": "ci-failed"}});
    let expires = (op.clock.now() + SignedDuration::from_mins(10)).to_string();
    for p in [
        pause("ci-failed-resumed", intake.clone(), resume.clone()),
        pause("ci-failed-active", intake.clone(), json!({})),
        pause(
            "ci-failed-expiring",
            intake.clone(),
            json!({"expiresAt": expires}),
        ),
        pause("freeze-by-hand", json!({}), resume.clone()),
    ] {
        api.create(&PostParams::default(), &p).await.expect("pause");
    }
    for name in ["ci-failed-resumed", "freeze-by-hand"] {
        tokio::time::timeout(
            GUARD,
            await_condition(api.clone(), name, |p: Option<&ReleasePause>| {
                p.and_then(|p| p.status.as_ref())
                    .is_some_and(|s| s.recovery.is_some())
            }),
        )
        .await
        .expect("the resume is recorded")
        .expect("watch");
    }
    op.advance(SignedDuration::from_mins(59)).await;
    assert_eq!(
        names(&kube, PAUSES),
        [
            "ci-failed-active",
            "ci-failed-expiring",
            "ci-failed-resumed",
            "freeze-by-hand"
        ],
        "nothing is an hour over yet"
    );
    op.clock.advance(SignedDuration::from_hours(2));
    gone(&api, "ci-failed-resumed").await;
    gone(&api, "ci-failed-expiring").await;
    op.advance(SignedDuration::from_secs(1)).await;
    assert_eq!(
        names(&kube, PAUSES),
        ["ci-failed-active", "freeze-by-hand"],
        "an active automatic pause and a person's pause stay"
    );
    assert_eq!(op.deletions("ReleasePause", "deleted"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_namespace_flag_the_operator_works_under_namespaced_rbac_alone() {
    let (kube, gh) = (FakeKube::start().await, FakeGitHub::start().await);
    // A Role in team-a and in the operator's namespace, nothing cluster-wide.
    kube.allow_only_namespaces(&["team-a", "tollgate"]);
    kube.record_requests();
    let op = Operator::start_in(
        &kube,
        &gh,
        "retention:\n  finishedTTL: 1h\n  keepPerEnvironment: 0\n",
        Scope {
            namespaces: vec!["team-a".into()],
            label_selector: None,
        },
    )
    .await;
    let client = kube.client();
    // The operator's own namespace is watched too: its pause is reconciled
    // and holds team-a's gate.
    let pauses: Api<ReleasePause> = Api::namespaced(client.clone(), "tollgate");
    pauses
        .create(
            &PostParams::default(),
            &pause("freeze", json!({}), json!({})),
        )
        .await
        .expect("pause");
    // Seen once its status is written; team-a's shard watches the same
    // namespace, so its copy has the pause too before the gate comes.
    tokio::time::timeout(
        GUARD,
        await_condition(pauses.clone(), "freeze", |p: Option<&ReleasePause>| {
            p.and_then(|p| p.status.as_ref())
                .is_some_and(|s| s.state.is_some())
        }),
    )
    .await
    .expect("the operator saw the pause")
    .expect("watch");
    let team_a = gates(&client, "team-a");
    let mut held = rejected("held", 501, "production", json!({}));
    held.spec.decision_override = None;
    team_a
        .create(&PostParams::default(), &held)
        .await
        .expect("create");
    let g = tokio::time::timeout(
        GUARD,
        await_condition(team_a.clone(), "held", |g: Option<&DeploymentGate>| {
            g.and_then(|g| g.status.as_ref())
                .is_some_and(|s| s.blockers.iter().any(|b| b.name == "tollgate/freeze"))
        }),
    )
    .await
    .expect("held by the operator namespace's pause")
    .expect("watch")
    .expect("gate");
    assert_eq!(g.status.and_then(|s| s.phase), Some(Phase::Waiting));
    // Each shard counts its own gates (the gauges pass runs every 5 s): the
    // operator namespace's shard never overwrites team-a's count.
    let deadline = tokio::time::Instant::now() + GUARD;
    loop {
        let text = op.metrics.render();
        if text.contains("tollgate_gates{phase=\"Waiting\",shard=\"team-a\"} 1")
            && text.contains("tollgate_gates{phase=\"Waiting\",shard=\"tollgate\"} 0")
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "per-shard gate counts never showed:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A finished gate of team-a goes after its TTL.
    finish(&team_a, rejected("done", 502, "production", json!({}))).await;
    op.advance(SignedDuration::from_hours(2)).await;
    gone(&team_a, "done").await;
    // Resumed: the held gate is answered.
    pauses
        .patch(
            "freeze",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"resume": {"sha": SHA, "reason": "ci-failed"}}})),
        )
        .await
        .expect("resume");
    tokio::time::timeout(
        GUARD,
        await_condition(team_a.clone(), "held", |g: Option<&DeploymentGate>| {
            g.and_then(|g| g.status.as_ref()).is_some_and(|s| {
                s.phase == Some(Phase::Approved)
                    && s.delivery.as_ref().is_some_and(|d| d.state.is_final())
            })
        }),
    )
    .await
    .expect("approved and delivered once resumed")
    .expect("watch");
    assert_eq!(
        gh.answer(501, "production").map(|a| a.0),
        Some("approved".into())
    );
    let refused: Vec<_> = kube
        .requests()
        .into_iter()
        .filter(|r| r.forbidden)
        .collect();
    assert!(
        refused.is_empty(),
        "nothing outside team-a and tollgate was asked for: {refused:?}"
    );
    assert!(
        kube.requests()
            .iter()
            .any(|r| r.namespace.as_deref() == Some("tollgate") && r.watch),
        "the operator's namespace is watched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fake_refuses_what_namespaced_rbac_would() {
    // The namespaced test above proves something only if the fake refuses a
    // cluster-wide list, as the API server does for a Role.
    let kube = FakeKube::start().await;
    kube.allow_only_namespaces(&["team-a"]);
    let all: Api<DeploymentGate> = Api::all(kube.client());
    let e = all
        .list(&Default::default())
        .await
        .expect_err("a cluster-wide list is forbidden");
    assert!(matches!(&e, kube::Error::Api(s) if s.code == 403), "{e:?}");
    let other = gates(&kube.client(), "team-b");
    assert!(other.list(&Default::default()).await.is_err());
    gates(&kube.client(), "team-a")
        .list(&Default::default())
        .await
        .expect("team-a is allowed");
}
