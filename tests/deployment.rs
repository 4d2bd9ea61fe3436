//! After the gate: `deployment_status` webhooks, signed and real-shaped, sent to
//! the running receiver on 127.0.0.1 while the real controllers run against the
//! fake Kubernetes API. Gates are stored already approved and delivered.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use kube::api::{Patch, PatchParams};
use kube::runtime::wait::await_condition;
use kube::{Api, Client};
use serde_json::{Value, json};
use tollgate::api::{DeploymentGate, DeploymentState, PauseState, ReleasePause};
use tollgate::config::OperatorConfig;
use tollgate::controller::{self, GateIndex, Runtime, Scope, Settings, Wiring};
use tollgate::github::webhook::{self, Intake};
use tollgate::github::{Auth, GitHub, GitHubConfig};
use tollgate::telemetry::Metrics;

use support::github::FakeGitHub;
use support::kube::FakeKube;

const SECRET: &str = "test webhook secret";
const SHA: &str = "4d3bd4fd7d44b0ad9e4cdc8c9f2a5ad3f5f4c53e";
const SHA2: &str = "acb5820ced9479c074f688cc328bf03f341a511d";
const NS: &str = "tollgate";
const GATES: &str = "tollgate.dev/v1alpha1/deploymentgates";
const PAUSES: &str = "tollgate.dev/v1alpha1/releasepauses";
const PAUSE: &str = "deploy-failed-acme-web-production";
const GUARD: Duration = Duration::from_secs(20);
const CONFIG: &str =
    "policies:\n- repositories: ['acme/*']\n  environments: [production]\n  pauseOnFailure: true\n";

struct Harness {
    kube: FakeKube,
    index: GateIndex,
    _hub: FakeGitHub,
    url: String,
    http: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Full<Bytes>,
    >,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn harness(config: &str) -> Harness {
    if let Ok(filter) = std::env::var("TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    }
    let kube = FakeKube::start().await;
    let hub = FakeGitHub::start().await;
    let github = GitHub::new(GitHubConfig {
        api_base: hub.url().to_string(),
        auth: Auth::Token("test-token".into()),
        request_timeout: Duration::from_millis(500),
        writes_per_minute: 60_000,
        writes_per_hour: 10_000_000,
        max_in_flight: 100,
    })
    .expect("github client");
    let config = Arc::new(
        OperatorConfig::parse(&support::single_team(config)).expect("test config is valid"),
    );
    let metrics = Metrics::new();
    let intake = Intake::new(
        kube.client(),
        github.clone(),
        config.clone(),
        SECRET.into(),
        metrics.clone(),
    );
    let (_ready_tx, ready_rx) = tokio::sync::watch::channel(true);
    let index = intake.gate_index();
    let app = webhook::routes(intake).merge(tollgate::telemetry::routes(
        ready_rx,
        tokio::sync::watch::channel("caches not synced yet".to_string()).1,
        metrics.clone(),
    ));
    let addr = serve(app).await;

    let rt = Runtime {
        client: kube.client(),
        github,
        config,
        settings: Settings {
            dry_run: false,
            instance: Some("test".into()),
            ..Settings::default()
        },
        metrics,
        scope: Scope::default(),
    };
    let (ready_tx, mut ready) = tokio::sync::watch::channel(false);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    // Intake finds gates in the index the controllers keep, as in `tollgate run`.
    let wiring = Wiring {
        gate_index: index.clone(),
        ..Wiring::default()
    };
    tokio::spawn(controller::run_wired(rt, wiring, ready_tx, async move {
        let _ = stopped.await;
    }));
    tokio::time::timeout(GUARD, ready.wait_for(|r| *r))
        .await
        .expect("caches sync")
        .expect("ready");
    Harness {
        kube,
        index,
        _hub: hub,
        url: format!("http://{addr}"),
        http: hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http(),
        _stop: stop,
    }
}

async fn serve(app: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    addr
}

impl Harness {
    fn client(&self) -> Client {
        self.kube.client()
    }

    async fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> (StatusCode, String) {
        let mut req = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.url));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(Bytes::from(body))).expect("request");
        let res = self.http.request(req).await.expect("the receiver answers");
        let status = res.status();
        let body = res.into_body().collect().await.expect("body").to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    /// Waits until the gate index holds every stored gate: GitHub reports
    /// on a deployment only after its gate approved it, long after the
    /// operator's watch saw the gate; a test that stores a gate and reports
    /// at once must wait for the watch too.
    async fn until_indexed(&self) {
        let deadline = tokio::time::Instant::now() + GUARD;
        while self.index.len() != self.kube.objects(GATES).len() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the gate index never caught up"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Posts a `deployment_status` delivery as GitHub would: signed.
    async fn deliver(&self, body: &Value) -> (StatusCode, String) {
        self.until_indexed().await;
        let bytes = serde_json::to_vec(body).expect("payload serialises");
        let sig = webhook::sign(SECRET.as_bytes(), &bytes);
        self.request(
            Method::POST,
            "/webhook",
            &[
                ("x-github-event", "deployment_status"),
                ("x-github-delivery", "5f1ab2c0-cc78-11e3-81ab-4c9367dc0958"),
                ("x-hub-signature-256", &sig),
                ("content-type", "application/json"),
            ],
            bytes,
        )
        .await
    }

    async fn metrics(&self) -> HashMap<String, f64> {
        let (status, text) = self.request(Method::GET, "/metrics", &[], Vec::new()).await;
        assert_eq!(status, StatusCode::OK);
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .filter_map(|l| {
                let (key, value) = l.rsplit_once(' ')?;
                Some((key.to_string(), value.parse().ok()?))
            })
            .collect()
    }

    /// Stores a gate as the intake and the gate controller would have left it:
    /// labelled, approved and delivered. `deployment_id: None` stores a gate
    /// applied with kubectl (no labels, no deployment id).
    fn approved_gate(
        &self,
        name: &str,
        run_id: i64,
        sha: &str,
        deployment_id: Option<i64>,
        decided_at: &str,
    ) -> Value {
        let mut spec = json!({
            "repository": "acme/web", "environment": "production", "sha": sha,
            "ref": "main", "runId": run_id, "installationId": 41234567,
            "timeout": "1h", "onDeadline": "Reject",
        });
        let mut metadata = json!({"name": name, "namespace": NS});
        if let Some(id) = deployment_id {
            spec["deploymentId"] = json!(id);
            metadata["labels"] = json!({
                "tollgate.dev/repository": "acme.web",
                "tollgate.dev/environment": "production",
                "tollgate.dev/run-id": run_id.to_string(),
            });
        }
        self.kube.put(
            GATES,
            json!({
                "apiVersion": "tollgate.dev/v1alpha1",
                "kind": "DeploymentGate",
                "metadata": metadata,
                "spec": spec,
                "status": {
                    "phase": "Approved",
                    "reason": "all required checks passed; nothing holds the gate",
                    "shortSha": &sha[..7],
                    "deadline": "2026-11-23T11:00:00Z",
                    "decision": {
                        "verdict": "Approve", "source": "Policy",
                        "reason": "all required checks passed; nothing holds the gate",
                        "decidedAt": decided_at,
                    },
                    "delivery": {"state": "Delivered", "attempts": 1, "deliveredAt": decided_at},
                    "observedGeneration": 1,
                    "conditions": [
                        {"type": "Decided", "status": "True", "reason": "Policy", "message": "approved", "lastTransitionTime": decided_at, "observedGeneration": 1},
                        {"type": "Delivered", "status": "True", "reason": "Delivered", "message": "GitHub confirmed the decision", "lastTransitionTime": decided_at, "observedGeneration": 1}
                    ]
                }
            }),
        )
    }

    fn stored(&self, name: &str) -> Value {
        self.kube.get(GATES, NS, name).expect("the gate is stored")
    }

    /// The `decision` and `delivery` of a stored gate, exactly as stored.
    fn decision_and_delivery(&self, name: &str) -> String {
        let g = self.stored(name);
        format!("{}\n{}", g["status"]["decision"], g["status"]["delivery"])
    }

    /// Status writes that changed this gate.
    fn status_writes(&self, name: &str) -> usize {
        self.kube
            .writes()
            .iter()
            .filter(|w| {
                w.collection == GATES
                    && w.name.as_deref() == Some(name)
                    && w.status_subresource
                    && w.changed
            })
            .count()
    }

    /// Writes of the kind the receiver makes: gate status, pause spec.
    fn receiver_writes(&self) -> usize {
        self.kube
            .writes()
            .iter()
            .filter(|w| {
                (w.collection == GATES && w.status_subresource)
                    || (w.collection == PAUSES && !w.status_subresource)
            })
            .count()
    }

    /// Event reasons about this object, in order.
    fn events(&self, name: &str) -> Vec<String> {
        let mut events = self.kube.events();
        events.retain(|e| e["regarding"]["name"] == name);
        events.sort_by_key(|e| {
            e["metadata"]["resourceVersion"]
                .as_str()
                .and_then(|r| r.parse::<u64>().ok())
        });
        events
            .iter()
            .filter_map(|e| e["reason"].as_str().map(str::to_string))
            .collect()
    }

    async fn until_gate(
        &self,
        name: &str,
        what: &str,
        cond: impl Fn(&DeploymentGate) -> bool,
    ) -> DeploymentGate {
        let api: Api<DeploymentGate> = Api::namespaced(self.client(), NS);
        tokio::time::timeout(
            GUARD,
            await_condition(api, name, move |g: Option<&DeploymentGate>| {
                g.is_some_and(&cond)
            }),
        )
        .await
        .unwrap_or_else(|_| panic!("gate {name} never became {what}"))
        .expect("watch")
        .expect("the gate exists")
    }

    /// Waits until the pause reconciler has seen the pause's latest spec.
    async fn settled_pause(&self) -> ReleasePause {
        let api: Api<ReleasePause> = Api::namespaced(self.client(), NS);
        tokio::time::timeout(
            GUARD,
            await_condition(api, PAUSE, |p: Option<&ReleasePause>| {
                p.is_some_and(|p| {
                    p.status.as_ref().is_some_and(|s| {
                        s.observed_generation == p.metadata.generation && s.state.is_some()
                    })
                })
            }),
        )
        .await
        .expect("the pause reconciler catches up")
        .expect("watch")
        .expect("the pause exists")
    }

    async fn resume(&self, sha: &str) -> ReleasePause {
        let api: Api<ReleasePause> = Api::namespaced(self.client(), NS);
        api.patch(
            PAUSE,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"resume": {"sha": sha, "reason": "deploy-failed"}}})),
        )
        .await
        .expect("resume");
        let p = self.settled_pause().await;
        assert_eq!(pause_state(&p), Some(PauseState::Resumed));
        p
    }
}

fn pause_state(p: &ReleasePause) -> Option<PauseState> {
    p.status.as_ref().and_then(|s| s.state)
}

fn outcome(g: &DeploymentGate) -> Option<DeploymentState> {
    g.status
        .as_ref()
        .and_then(|s| s.deployment.as_ref())
        .map(|d| d.state)
}

/// A `deployment_status` delivery shaped like GitHub's documented sample.
fn deployment_status(deployment_id: i64, sha: &str, state: &str) -> Value {
    let repo = "acme/web";
    let api = "https://api.github.com";
    let (environment_url, log_url) = match state {
        "success" => (
            "https://web.example.com",
            "https://github.com/acme/web/actions/runs/30433642/job/1",
        ),
        _ => (
            "",
            "https://github.com/acme/web/actions/runs/30433642/job/1",
        ),
    };
    json!({
        "action": "created",
        "deployment_status": {
            "url": format!("{api}/repos/{repo}/deployments/{deployment_id}/statuses/{}", deployment_id * 10),
            "id": deployment_id * 10,
            "node_id": "DES_kwDOJ0EKj84ABLaH",
            "state": state,
            "creator": {"login": "github-actions[bot]", "id": 41898282, "type": "Bot"},
            "description": "",
            "environment": "production",
            "target_url": log_url,
            "created_at": "2026-11-23T10:05:00Z",
            "updated_at": "2026-11-23T10:05:00Z",
            "deployment_url": format!("{api}/repos/{repo}/deployments/{deployment_id}"),
            "repository_url": format!("{api}/repos/{repo}"),
            "environment_url": environment_url,
            "log_url": log_url,
            "performed_via_github_app": null
        },
        "deployment": {
            "url": format!("{api}/repos/{repo}/deployments/{deployment_id}"),
            "id": deployment_id,
            "node_id": "DE_kwDOJ0EKj84ABLaH",
            "task": "deploy",
            "original_environment": "production",
            "environment": "production",
            "description": null,
            "created_at": "2026-11-23T10:00:00Z",
            "updated_at": "2026-11-23T10:05:00Z",
            "statuses_url": format!("{api}/repos/{repo}/deployments/{deployment_id}/statuses"),
            "repository_url": format!("{api}/repos/{repo}"),
            "creator": {"login": "github-actions[bot]", "id": 41898282, "type": "Bot"},
            "sha": sha,
            "ref": "main",
            "payload": {},
            "transient_environment": false,
            "production_environment": true,
            "performed_via_github_app": null
        },
        "workflow_run": {"id": 30433642, "name": "Deploy", "head_sha": sha, "status": "in_progress"},
        "repository": {
            "id": 1296269, "node_id": "R_kgDOABCDEF", "name": "web", "full_name": repo, "private": true,
            "owner": {"login": "acme", "id": 9919, "type": "Organization"},
            "html_url": "https://github.com/acme/web", "default_branch": "main"
        },
        "organization": {"login": "acme", "id": 9919, "node_id": "O_kgDOAAAmvw"},
        "installation": {"id": 41234567, "node_id": "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9uNDEyMzQ1Njc="},
        "sender": {"login": "octocat", "id": 1, "type": "User"}
    })
}

fn recent() -> String {
    jiff::Timestamp::now().to_string()
}

/// A failed deployment of gate `gate-1` (deployment 101, SHA) that paused
/// releases; also returns the gate's decision and delivery from before.
async fn failed_and_paused(h: &Harness) -> (ReleasePause, String) {
    h.approved_gate("gate-1", 1, SHA, Some(101), &recent());
    let before = h.decision_and_delivery("gate-1");
    for state in ["in_progress", "failure"] {
        let (status, body) = h.deliver(&deployment_status(101, SHA, state)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let p = h.settled_pause().await;
    assert_eq!(pause_state(&p), Some(PauseState::Active));
    (p, before)
}

#[tokio::test]
async fn success_path_reaches_ready_with_one_write_and_event_per_transition() {
    let h = harness(CONFIG).await;
    h.approved_gate("gate-1", 1, SHA, Some(101), &recent());
    let before = h.decision_and_delivery("gate-1");
    for (state, code) in [
        ("queued", StatusCode::OK),
        ("in_progress", StatusCode::OK),
        ("success", StatusCode::OK),
    ] {
        let (status, body) = h.deliver(&deployment_status(101, SHA, state)).await;
        assert_eq!(status, code, "{state}: {body}");
    }
    let g = h
        .until_gate("gate-1", "Ready", |g| {
            outcome(g) == Some(DeploymentState::Ready)
        })
        .await;
    let d = g
        .status
        .as_ref()
        .and_then(|s| s.deployment.clone())
        .expect("deployment");
    assert_eq!(d.id, Some(101));
    assert_eq!(d.url.as_deref(), Some("https://web.example.com"));
    assert_eq!(
        d.reason.as_deref(),
        Some("deployment 101 deployed (success)")
    );
    assert_eq!(
        h.decision_and_delivery("gate-1"),
        before,
        "decision and delivery untouched"
    );
    assert_eq!(
        h.status_writes("gate-1"),
        2,
        "queued and in_progress are one transition"
    );
    assert_eq!(h.events("gate-1"), vec!["Deploying", "DeployReady"]);
    assert!(h.kube.objects(PAUSES).is_empty());
    let m = h.metrics().await;
    assert_eq!(m[r#"tollgate_deployments_total{outcome="ready"}"#], 1.0);
    assert_eq!(m["tollgate_approval_to_ready_seconds_count"], 1.0);
    assert_eq!(
        m[r#"tollgate_webhooks_total{event="deployment_status",outcome="recorded"}"#],
        2.0
    );
    assert_eq!(
        m[r#"tollgate_webhooks_total{event="deployment_status",outcome="unchanged"}"#],
        1.0
    );
}

#[tokio::test]
async fn failed_deployment_is_failed_and_pauses_the_repository_and_environment() {
    let h = harness(CONFIG).await;
    let (p, before) = failed_and_paused(&h).await;
    let g = h
        .until_gate("gate-1", "Failed", |g| {
            outcome(g) == Some(DeploymentState::Failed)
        })
        .await;
    let d = g
        .status
        .as_ref()
        .and_then(|s| s.deployment.clone())
        .expect("deployment");
    assert_eq!(
        d.url.as_deref(),
        Some("https://github.com/acme/web/actions/runs/30433642/job/1")
    );
    assert_eq!(
        h.decision_and_delivery("gate-1"),
        before,
        "decision and delivery untouched"
    );
    assert_eq!(h.events("gate-1"), vec!["Deploying", "DeployFailed"]);
    assert_eq!(p.spec.reason, "deploy-failed");
    assert_eq!(p.spec.sha.as_deref(), Some(SHA));
    assert_eq!(p.spec.scope.repositories, vec!["acme/web"]);
    assert_eq!(p.spec.scope.environments, vec!["production"]);
    assert_eq!(
        p.spec.message.as_deref(),
        Some(
            "deployment 101 of acme/web@4d3bd4f to production failed: https://github.com/acme/web/actions/runs/30433642/job/1"
        )
    );
    let m = h.metrics().await;
    assert_eq!(m[r#"tollgate_deployments_total{outcome="failed"}"#], 1.0);
}

#[tokio::test]
async fn failure_without_pause_on_failure_pauses_nothing() {
    let h = harness("policies:\n- repositories: ['acme/*']\n").await;
    h.approved_gate("gate-1", 1, SHA, Some(101), &recent());
    let (status, body) = h.deliver(&deployment_status(101, SHA, "failure")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let g = h
        .until_gate("gate-1", "Failed", |g| {
            outcome(g) == Some(DeploymentState::Failed)
        })
        .await;
    assert_eq!(outcome(&g), Some(DeploymentState::Failed));
    assert!(h.kube.objects(PAUSES).is_empty());
}

#[tokio::test]
async fn replayed_failure_after_resume_does_not_pause_again() {
    let h = harness(CONFIG).await;
    failed_and_paused(&h).await;
    let resumed = h.resume(SHA).await;

    // The same delivery again: absorbed, neither the gate nor the pause written.
    let writes = h.receiver_writes();
    let (status, body) = h.deliver(&deployment_status(101, SHA, "failure")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("already Failed"), "{body}");
    assert_eq!(h.receiver_writes(), writes, "a replay writes nothing");

    // A rerun of the same commit failing again restates (sha, deploy-failed).
    h.approved_gate("gate-2", 2, SHA, Some(102), &recent());
    let (status, body) = h.deliver(&deployment_status(102, SHA, "failure")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let p = h.settled_pause().await;
    assert!(
        p.metadata.generation > resumed.metadata.generation,
        "the pause was restated"
    );
    assert_eq!(
        pause_state(&p),
        Some(PauseState::Resumed),
        "the recovery holds"
    );
    assert_eq!(p.spec.resume, resumed.spec.resume, "spec.resume kept");
    assert_eq!(
        p.status
            .as_ref()
            .and_then(|s| s.recovery.as_ref())
            .map(|r| (r.sha.clone(), r.reason.clone())),
        Some((Some(SHA.to_string()), "deploy-failed".to_string()))
    );
}

#[tokio::test]
async fn failure_of_a_new_sha_pauses_again() {
    let h = harness(CONFIG).await;
    failed_and_paused(&h).await;
    h.resume(SHA).await;
    h.approved_gate("gate-3", 3, SHA2, Some(103), &recent());
    let before = h.decision_and_delivery("gate-3");
    let (status, body) = h.deliver(&deployment_status(103, SHA2, "error")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let p = h.settled_pause().await;
    assert_eq!(p.spec.sha.as_deref(), Some(SHA2));
    assert_eq!(pause_state(&p), Some(PauseState::Active));
    assert_eq!(h.decision_and_delivery("gate-3"), before);
    assert_eq!(h.events("gate-3"), vec!["DeployFailed"]);
}

#[tokio::test]
async fn out_of_order_and_duplicate_deliveries_end_ready() {
    let h = harness(CONFIG).await;
    h.approved_gate("gate-1", 1, SHA, Some(101), &recent());
    let before = h.decision_and_delivery("gate-1");
    let mut answers = Vec::new();
    for state in [
        "success",
        "in_progress",
        "queued",
        "success",
        "inactive",
        "failure",
        "success",
    ] {
        let (status, _) = h.deliver(&deployment_status(101, SHA, state)).await;
        answers.push((state, status.as_u16()));
    }
    assert_eq!(
        answers,
        vec![
            ("success", 200),
            ("in_progress", 200),
            ("queued", 200),
            ("success", 200),
            ("inactive", 202),
            ("failure", 200),
            ("success", 200)
        ]
    );
    let g = h
        .until_gate("gate-1", "Ready", |g| {
            outcome(g) == Some(DeploymentState::Ready)
        })
        .await;
    assert_eq!(outcome(&g), Some(DeploymentState::Ready));
    assert_eq!(
        h.status_writes("gate-1"),
        1,
        "only the first success is a transition"
    );
    assert_eq!(h.events("gate-1"), vec!["DeployReady"]);
    assert_eq!(h.decision_and_delivery("gate-1"), before);
    assert!(
        h.kube.objects(PAUSES).is_empty(),
        "a late failure does not pause"
    );
}

#[tokio::test]
async fn gate_without_deployment_id_is_found_by_repository_environment_and_sha() {
    let h = harness(CONFIG).await;
    h.approved_gate("applied-by-kubectl", 7, SHA, None, &recent());
    let (status, body) = h.deliver(&deployment_status(555, SHA, "in_progress")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let g = h
        .until_gate("applied-by-kubectl", "Deploying", |g| {
            outcome(g) == Some(DeploymentState::Deploying)
        })
        .await;
    assert_eq!(
        g.status
            .as_ref()
            .and_then(|s| s.deployment.as_ref())
            .and_then(|d| d.id),
        Some(555)
    );
    let (status, body) = h.deliver(&deployment_status(556, SHA2, "success")).await;
    assert_eq!(
        status,
        StatusCode::ACCEPTED,
        "another commit has no gate: {body}"
    );
}

#[tokio::test]
async fn undecided_or_rejected_gates_are_not_touched() {
    let h = harness(CONFIG).await;
    let mut g = h.approved_gate("gate-1", 1, SHA, Some(101), &recent());
    g["status"]["decision"]["verdict"] = json!("Reject");
    g["status"]["phase"] = json!("Rejected");
    h.kube.put(GATES, g);
    let writes = h.receiver_writes();
    let (status, body) = h.deliver(&deployment_status(101, SHA, "success")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert!(body.contains("has not approved"), "{body}");
    assert_eq!(h.receiver_writes(), writes);
}

#[tokio::test]
async fn silent_deployment_becomes_unknown_after_the_report_window() {
    let h = harness(&format!("{CONFIG}defaults:\n  deploymentReport: 1h\n")).await;
    let long_ago = (jiff::Timestamp::now() - jiff::SignedDuration::from_hours(2)).to_string();
    h.approved_gate("silent", 1, SHA, Some(101), &long_ago);
    h.approved_gate("talkative", 2, SHA, Some(102), &long_ago);
    let (status, _) = h.deliver(&deployment_status(102, SHA, "in_progress")).await;
    assert_eq!(status, StatusCode::OK);
    let g = h
        .until_gate("silent", "Unknown", |g| {
            outcome(g) == Some(DeploymentState::Unknown)
        })
        .await;
    assert_eq!(
        g.status
            .as_ref()
            .and_then(|s| s.deployment.as_ref())
            .and_then(|d| d.reason.clone())
            .as_deref(),
        Some("no deployment_status reported within 1h of the approval")
    );
    // The controller publishes the Event right after its status write.
    tokio::time::timeout(GUARD, async {
        while h.events("silent").is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the DeployUnknown Event is published");
    assert_eq!(h.events("silent"), vec!["DeployUnknown"]);
    h.until_gate("talkative", "Deploying", |g| {
        outcome(g) == Some(DeploymentState::Deploying)
    })
    .await;

    // A late report still moves an Unknown deployment on.
    let (status, body) = h.deliver(&deployment_status(101, SHA, "success")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    h.until_gate("silent", "Ready", |g| {
        outcome(g) == Some(DeploymentState::Ready)
    })
    .await;
}

#[tokio::test]
async fn deployment_status_finds_its_gate_through_the_index_and_lists_nothing() {
    let h = harness(CONFIG).await;
    h.approved_gate("gate-1", 1, SHA, Some(101), &recent());
    h.approved_gate("other-commit", 2, SHA2, Some(102), &recent());
    h.until_indexed().await;
    h.kube.record_requests();
    let (status, body) = h.deliver(&deployment_status(101, SHA, "success")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Taken when the answer came: the test's own watches below are not the receiver's.
    let requests = h.kube.requests();
    h.until_gate("gate-1", "Ready", |g| {
        outcome(g) == Some(DeploymentState::Ready)
    })
    .await;
    let lists: Vec<_> = requests.iter().filter(|r| r.is_list()).collect();
    assert!(lists.is_empty(), "no LIST of anything: {lists:?}");
    let gate_reads: Vec<&str> = requests
        .iter()
        .filter(|r| r.method == "GET" && r.collection == GATES)
        .filter_map(|r| r.name.as_deref())
        .collect();
    assert!(
        !gate_reads.is_empty() && gate_reads.iter().all(|n| *n == "gate-1"),
        "only the deployment's own gate is read, by name: {gate_reads:?}"
    );
    assert_eq!(
        outcome(&serde_json::from_value(h.stored("other-commit")).expect("gate")),
        None,
        "the other commit's gate is untouched"
    );
}

#[tokio::test]
async fn a_gate_in_a_namespace_that_may_not_gate_the_repository_never_takes_its_outcome() {
    // Tenancy: only the operator's namespace may gate acme/*. A gate elsewhere
    // that claims the same deployment id is never a candidate.
    let config = format!("{CONFIG}tenancy:\n- namespace: {NS}\n  repositories: ['acme/*']\n");
    let h = harness(&config).await;
    h.approved_gate("gate-1", 1, SHA, Some(101), &recent());
    let mut squatter = h.stored("gate-1");
    squatter["metadata"] = json!({"name": "squatter", "namespace": "intruder"});
    h.kube.put(GATES, squatter);
    let (status, body) = h.deliver(&deployment_status(101, SHA, "success")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    h.until_gate("gate-1", "Ready", |g| {
        outcome(g) == Some(DeploymentState::Ready)
    })
    .await;
    let squatter = h
        .kube
        .get(GATES, "intruder", "squatter")
        .expect("the squatter is stored");
    assert!(
        squatter["status"]["deployment"].is_null(),
        "the intruder's gate took nothing: {}",
        squatter["status"]
    );
}
