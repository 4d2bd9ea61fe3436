//! The webhook receiver end to end: the real axum router on 127.0.0.1, signed
//! real-shaped GitHub payloads, the fake Kubernetes API server and the fake
//! GitHub (App webhook deliveries) from `tests/support`, all over HTTP.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{Method, StatusCode};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use tollgate::api::{DeploymentGate, FINALIZER, OnDeadline, ReleasePause};
use tollgate::config::OperatorConfig;
use tollgate::github::webhook::{self, Intake, SweepReport};
use tollgate::github::{Auth, GitHub, GitHubConfig};
use tollgate::telemetry::Metrics;

use support::github::{FakeGitHub, TEST_APP_KEY};
use support::kube::FakeKube;

const SECRET: &str = "test webhook secret";
const SHA: &str = "4d3bd4fd7d44b0ad9e4cdc8c9f2a5ad3f5f4c53e";

const GATES: &str = "tollgate.dev/v1alpha1/deploymentgates";
const PAUSES: &str = "tollgate.dev/v1alpha1/releasepauses";

fn stored_gates(kube: &FakeKube) -> Vec<DeploymentGate> {
    kube.objects(GATES)
        .into_iter()
        .map(|v| serde_json::from_value(v).expect("stored gate parses"))
        .collect()
}

fn stored_pauses(kube: &FakeKube) -> Vec<ReleasePause> {
    kube.objects(PAUSES)
        .into_iter()
        .map(|v| serde_json::from_value(v).expect("stored pause parses"))
        .collect()
}

/// Writes the receiver sent to the API server (including refused ones).
fn writes(kube: &FakeKube) -> Vec<String> {
    kube.writes()
        .iter()
        .map(|w| {
            format!(
                "{} {} {}",
                w.method,
                w.name.as_deref().unwrap_or("-"),
                w.code
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------
// The receiver under test, and a client that talks to it.

async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    addr
}

struct Harness {
    kube: FakeKube,
    hub: FakeGitHub,
    hub_url: String,
    intake: Intake,
    url: String,
    http: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Full<Bytes>,
    >,
}

async fn harness(config: &str) -> Harness {
    let kube = FakeKube::start().await;
    let client = kube.client();
    let hub = FakeGitHub::start().await;
    let hub_url = hub.url().to_string();
    let github = GitHub::new(GitHubConfig {
        api_base: hub_url.clone(),
        auth: Auth::App {
            app_id: 4242,
            private_key_pem: TEST_APP_KEY.into(),
        },
        ..GitHubConfig::default()
    })
    .expect("GitHub client");
    let config = Arc::new(
        OperatorConfig::parse(&support::single_team(config)).expect("test config is valid"),
    );
    let metrics = Metrics::new();
    let intake = Intake::new(client, github, config, SECRET.into(), metrics.clone());
    let (_ready_tx, ready_rx) = tokio::sync::watch::channel(true);
    let app = webhook::routes(intake.clone()).merge(tollgate::telemetry::routes(
        ready_rx,
        tokio::sync::watch::channel("caches not synced yet".to_string()).1,
        metrics,
    ));
    let addr = serve(app).await;
    let http = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    Harness {
        kube,
        hub,
        hub_url,
        intake,
        url: format!("http://{addr}"),
        http,
    }
}

impl Harness {
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

    /// Posts `body` as GitHub would: signed with the webhook secret, as a
    /// delivery of its own (a fresh `X-GitHub-Delivery` id).
    async fn deliver(&self, event: &str, body: &Value) -> (StatusCode, String) {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = format!("72d3162e-cc78-11e3-81ab-{n:012}");
        let bytes = serde_json::to_vec(body).expect("payload serialises");
        let sig = webhook::sign(SECRET.as_bytes(), &bytes);
        self.request(
            Method::POST,
            "/webhook",
            &[
                ("x-github-event", event),
                ("x-github-delivery", &id),
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
        parse_metrics(&text)
    }

    /// The documented `deployment_protection_rule` sample, for run `run_id`.
    fn protection_rule(&self, repo: &str, environment: &str, run_id: i64) -> Value {
        let base = &self.hub_url;
        let (owner, name) = repo.split_once('/').expect("owner/name");
        json!({
            "action": "requested",
            "environment": environment,
            "event": "push",
            "ref": "refs/heads/main",
            "sha": SHA,
            "deployment_callback_url": format!("{base}/repos/{repo}/actions/runs/{run_id}/deployment_protection_rule"),
            "deployment": {
                "url": format!("{base}/repos/{repo}/deployments/1234567"),
                "id": 1234567,
                "node_id": "DE_kwDOJ0EKj84ABLaH",
                "task": "deploy",
                "original_environment": environment,
                "environment": environment,
                "description": null,
                "created_at": "2026-11-23T10:00:00Z",
                "updated_at": "2026-11-23T10:00:00Z",
                "statuses_url": format!("{base}/repos/{repo}/deployments/1234567/statuses"),
                "repository_url": format!("{base}/repos/{repo}"),
                "creator": {"login": "github-actions[bot]", "id": 41898282, "type": "Bot"},
                "sha": SHA,
                "ref": "main",
                "payload": {},
                "transient_environment": false,
                "production_environment": environment == "production",
                "performed_via_github_app": null
            },
            "pull_requests": [],
            "repository": {
                "id": 1296269, "node_id": "R_kgDOABCDEF", "name": name, "full_name": repo, "private": true,
                "owner": {"login": owner, "id": 9919, "type": "Organization"},
                "html_url": format!("https://github.com/{repo}"), "default_branch": "main"
            },
            "organization": {"login": owner, "id": 9919, "node_id": "O_kgDOAAAmvw"},
            "installation": {"id": 41234567, "node_id": "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9uNDEyMzQ1Njc="},
            "sender": {"login": "octocat", "id": 583231, "type": "User"}
        })
    }
}

/// `name{labels} value` lines of the text exposition, keyed by `name{labels}`.
fn parse_metrics(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            Some((key.to_string(), value.parse().ok()?))
        })
        .collect()
}

fn gate_named<'a>(gates: &'a [DeploymentGate], ns: &str, name: &str) -> &'a DeploymentGate {
    gates
        .iter()
        .find(|g| {
            g.metadata.namespace.as_deref() == Some(ns) && g.metadata.name.as_deref() == Some(name)
        })
        .unwrap_or_else(|| {
            panic!(
                "no gate {ns}/{name} among {:?}",
                gates.iter().map(|g| &g.metadata.name).collect::<Vec<_>>()
            )
        })
}

// ---------------------------------------------------------------------------

#[tokio::test]
async fn documented_payload_creates_one_gate_with_finalizer_labels_and_request_fields() {
    let h = harness("").await;
    let (status, text) = h
        .deliver(
            "deployment_protection_rule",
            &h.protection_rule("acme/web", "production", 9876543210),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{text}");
    assert_eq!(
        text,
        "created DeploymentGate tollgate/acme-web-production-9876543210"
    );

    let gates = stored_gates(&h.kube);
    assert_eq!(gates.len(), 1);
    let g = gate_named(&gates, "tollgate", "acme-web-production-9876543210");
    assert_eq!(g.metadata.finalizers, Some(vec![FINALIZER.to_string()]));
    let labels = g.metadata.labels.clone().expect("labels");
    assert_eq!(labels["tollgate.dev/repository"], "acme.web");
    assert_eq!(labels["tollgate.dev/environment"], "production");
    assert_eq!(labels["tollgate.dev/run-id"], "9876543210");
    assert_eq!(g.spec.repository, "acme/web");
    assert_eq!(g.spec.environment, "production");
    assert_eq!(g.spec.sha, SHA);
    assert_eq!(g.spec.git_ref.as_deref(), Some("refs/heads/main"));
    assert_eq!(g.spec.run_id, 9876543210);
    assert_eq!(g.spec.installation_id, Some(41234567));
    assert_eq!(g.spec.deployment_id, Some(1234567));
    assert_eq!(g.spec.on_deadline, OnDeadline::Reject);
    assert_eq!(
        g.spec.timeout, None,
        "the operator's default deadline applies"
    );
    assert!(g.status.is_none(), "the receiver writes no status");
}

#[tokio::test]
async fn null_deployment_and_short_ref_still_make_a_gate() {
    let h = harness("").await;
    let mut body = h.protection_rule("acme/web", "staging", 77);
    body["deployment"] = Value::Null;
    body["ref"] = json!("main");
    let (status, text) = h.deliver("deployment_protection_rule", &body).await;
    assert_eq!(status, StatusCode::CREATED, "{text}");
    let gates = stored_gates(&h.kube);
    let g = gate_named(&gates, "tollgate", "acme-web-staging-77");
    assert_eq!(g.spec.git_ref.as_deref(), Some("main"));
    assert_eq!(g.spec.deployment_id, None);
    assert_eq!(g.spec.sha, SHA);
}

#[tokio::test]
async fn bad_or_missing_signature_is_refused_with_401_and_nothing_written() {
    let h = harness("").await;
    let body = serde_json::to_vec(&h.protection_rule("acme/web", "production", 1)).expect("json");
    let wrong = webhook::sign(b"not the secret", &body);
    let (status, text) = h
        .request(
            Method::POST,
            "/webhook",
            &[
                ("x-github-event", "deployment_protection_rule"),
                ("x-hub-signature-256", &wrong),
            ],
            body.clone(),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(text.contains("does not match"), "{text}");

    let (status, text) = h
        .request(
            Method::POST,
            "/webhook",
            &[("x-github-event", "deployment_protection_rule")],
            body.clone(),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        text.contains("X-Hub-Signature-256 header is missing"),
        "{text}"
    );

    // A correct signature over a different body does not carry over.
    let mut tampered = body.clone();
    tampered.extend_from_slice(b" ");
    let good_for_original = webhook::sign(SECRET.as_bytes(), &body);
    let (status, _) = h
        .request(
            Method::POST,
            "/webhook",
            &[
                ("x-github-event", "deployment_protection_rule"),
                ("x-hub-signature-256", &good_for_original),
            ],
            tampered,
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    assert!(stored_gates(&h.kube).is_empty());
    assert_eq!(writes(&h.kube), Vec::<String>::new());
    let m = h.metrics().await;
    assert_eq!(m["tollgate_webhook_signature_failures_total"], 3.0);
    assert_eq!(
        m[r#"tollgate_webhooks_total{event="unverified",outcome="unauthorized"}"#],
        3.0
    );
}

#[tokio::test]
async fn redeliveries_and_matrix_jobs_merge_into_one_gate() {
    let h = harness("").await;
    let mut first = h.protection_rule("acme/web", "production", 555);
    first["deployment"] = Value::Null;
    let (status, _) = h.deliver("deployment_protection_rule", &first).await;
    assert_eq!(status, StatusCode::CREATED);

    // GitHub redelivers the same request: same gate, nothing written.
    let (status, text) = h.deliver("deployment_protection_rule", &first).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(
        text,
        "DeploymentGate tollgate/acme-web-production-555 exists"
    );

    // A matrix sibling of the same run and environment brings the deployment id
    // the first request lacked: merged into the undecided gate.
    let sibling = h.protection_rule("acme/web", "production", 555);
    let (status, text) = h.deliver("deployment_protection_rule", &sibling).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(text.ends_with("added the new request's details"), "{text}");

    // Another sibling with its own deployment id: the first one stays, and
    // the gate follows the sibling's deployment too (its deployment_status
    // events must find it).
    let mut third = h.protection_rule("acme/web", "production", 555);
    third["deployment"]["id"] = json!(7654321);
    let (status, text) = h.deliver("deployment_protection_rule", &third).await;
    assert_eq!(status, StatusCode::OK);
    assert!(text.ends_with("added the new request's details"), "{text}");
    // Its redelivery is the same request.
    let (status, text) = h.deliver("deployment_protection_rule", &third).await;
    assert_eq!(status, StatusCode::OK);
    assert!(text.ends_with("exists"), "{text}");

    let gates = stored_gates(&h.kube);
    assert_eq!(gates.len(), 1);
    let g = gate_named(&gates, "tollgate", "acme-web-production-555");
    assert_eq!(g.spec.deployment_id, Some(1234567));
    assert_eq!(g.spec.deployment_ids, vec![7654321]);
    assert!(g.spec.follows_deployment(7654321) && g.spec.follows_deployment(1234567));

    let m = h.metrics().await;
    assert_eq!(m["tollgate_gates_created_total"], 1.0);
    assert_eq!(
        m[r#"tollgate_webhooks_total{event="deployment_protection_rule",outcome="created"}"#],
        1.0
    );
    assert_eq!(
        m[r#"tollgate_webhooks_total{event="deployment_protection_rule",outcome="duplicate"}"#],
        2.0
    );
    assert_eq!(
        m[r#"tollgate_webhooks_total{event="deployment_protection_rule",outcome="merged"}"#],
        2.0
    );
}

#[tokio::test]
async fn decided_gate_is_left_untouched_by_a_late_duplicate() {
    let h = harness("").await;
    let mut first = h.protection_rule("acme/web", "production", 556);
    first["deployment"] = Value::Null;
    assert_eq!(
        h.deliver_rule_as("d-556", &first).await.0,
        StatusCode::CREATED
    );
    let mut decided = stored_gates(&h.kube).remove(0);
    decided.status = Some(tollgate::api::DeploymentGateStatus {
        phase: Some(tollgate::api::Phase::Approved),
        ..Default::default()
    });
    h.kube
        .put(GATES, serde_json::to_value(&decided).expect("gate json"));
    let before = writes(&h.kube);

    // The same request again: a redelivery, with its delivery id.
    let (status, _) = h.deliver_rule_as("d-556", &first).await;
    assert_eq!(status, StatusCode::OK);
    let after = writes(&h.kube);
    assert_eq!(
        after[before.len()..],
        [] as [String; 0],
        "the redelivery finds its gate: no create, no patch"
    );
    assert_eq!(stored_gates(&h.kube)[0].spec.deployment_id, None);
}

// ---------------------------------------------------------------------------
// One gate per request, answered: re-runs, later jobs, squatted names.

impl Harness {
    /// Posts `body` signed, with its own `X-GitHub-Delivery` id.
    async fn deliver_rule_as(&self, delivery: &str, body: &Value) -> (StatusCode, String) {
        let bytes = serde_json::to_vec(body).expect("payload serialises");
        let sig = webhook::sign(SECRET.as_bytes(), &bytes);
        self.request(
            Method::POST,
            "/webhook",
            &[
                ("x-github-event", "deployment_protection_rule"),
                ("x-github-delivery", delivery),
                ("x-hub-signature-256", &sig),
                ("content-type", "application/json"),
            ],
            bytes,
        )
        .await
    }

    /// Runs the real controllers against the harness's fakes until the
    /// returned sender is dropped.
    async fn run_controllers(&self) -> tokio::sync::oneshot::Sender<()> {
        let github = GitHub::new(GitHubConfig {
            api_base: self.hub_url.clone(),
            auth: Auth::Token("test-token".into()),
            request_timeout: Duration::from_millis(500),
            writes_per_minute: 60_000,
            writes_per_hour: 10_000_000,
            max_in_flight: 100,
        })
        .expect("github client");
        let rt = tollgate::controller::Runtime {
            client: self.kube.client(),
            github,
            config: Arc::new(
                OperatorConfig::parse(&support::single_team("")).expect("test config is valid"),
            ),
            settings: tollgate::controller::Settings::default(),
            metrics: Metrics::new(),
            scope: tollgate::controller::Scope::default(),
        };
        let (ready_tx, mut ready_rx) = tokio::sync::watch::channel(false);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(tollgate::controller::run(rt, ready_tx, async move {
            let _ = stop_rx.await;
        }));
        tokio::time::timeout(Duration::from_secs(20), ready_rx.wait_for(|r| *r))
            .await
            .expect("caches sync")
            .expect("ready");
        stop_tx
    }
}

/// Waits (event-driven, bounded) until `run`'s answers for `environment` reach `n`.
async fn until_answered(hub: &FakeGitHub, run: i64, environment: &str, n: u32) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while hub.accepted(run, environment) < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "run {run} has {} answers for {environment}, not {n}",
            hub.accepted(run, environment)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn rule_for_deployment(h: &Harness, run: i64, deployment: i64) -> Value {
    let mut body = h.protection_rule("acme/web", "production", run);
    body["deployment"]["id"] = deployment.into();
    body
}

#[tokio::test]
async fn a_rerun_of_an_answered_run_gets_its_own_gate_and_answer() {
    let h = harness("").await;
    h.hub.set_run_head(600, SHA);
    let _controllers = h.run_controllers().await;
    let first = rule_for_deployment(&h, 600, 1);
    assert_eq!(
        h.deliver_rule_as("d-1", &first).await.0,
        StatusCode::CREATED
    );
    until_answered(&h.hub, 600, "production", 1).await;

    // The re-run: same run id, a new attempt and a new deployment, waiting again.
    h.hub.pending_again(600, "production");
    let rerun = rule_for_deployment(&h, 600, 2);
    let (status, text) = h.deliver_rule_as("d-2", &rerun).await;
    assert_eq!(status, StatusCode::CREATED, "{text}");
    assert!(text.contains("acme-web-production-600-d2"), "{text}");
    until_answered(&h.hub, 600, "production", 2).await;

    // A redelivery of either request changes nothing.
    assert_eq!(h.deliver_rule_as("d-2", &rerun).await.0, StatusCode::OK);
    assert_eq!(h.deliver_rule_as("d-1", &first).await.0, StatusCode::OK);
    let mut names: Vec<String> = stored_gates(&h.kube)
        .iter()
        .map(|g| g.metadata.name.clone().unwrap_or_default())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["acme-web-production-600", "acme-web-production-600-d2"]
    );
}

#[tokio::test]
async fn a_later_job_to_the_same_environment_after_the_answer_is_answered() {
    let h = harness("").await;
    h.hub.set_run_head(601, SHA);
    let _controllers = h.run_controllers().await;
    let mut first = h.protection_rule("acme/web", "production", 601);
    first["deployment"] = Value::Null;
    assert_eq!(
        h.deliver_rule_as("job-1", &first).await.0,
        StatusCode::CREATED
    );
    until_answered(&h.hub, 601, "production", 1).await;

    // A later job of the same run, without a deployment object: its own delivery.
    h.hub.pending_again(601, "production");
    let (status, text) = h.deliver_rule_as("job-2", &first).await;
    assert_eq!(status, StatusCode::CREATED, "{text}");
    until_answered(&h.hub, 601, "production", 2).await;
    assert_eq!(stored_gates(&h.kube).len(), 2);
}

#[tokio::test]
async fn a_squatted_name_still_gets_the_real_request_answered() {
    let h = harness("").await;
    h.hub.set_run_head(602, SHA);
    // A tenant pre-creates a gate under the name intake would use, for another commit.
    let squatter: DeploymentGate = serde_json::from_value(json!({
        "apiVersion": "tollgate.dev/v1alpha1",
        "kind": "DeploymentGate",
        "metadata": {"name": "acme-web-production-602", "namespace": "tollgate"},
        "spec": {"repository": "acme/web", "environment": "production",
                 "sha": "1111111111111111111111111111111111111111", "runId": 602,
                 "override": {"decision": "Reject", "reason": "squatting"}},
    }))
    .expect("squatter");
    h.kube
        .put(GATES, serde_json::to_value(&squatter).expect("json"));
    let _controllers = h.run_controllers().await;

    let (status, text) = h
        .deliver_rule_as("real", &rule_for_deployment(&h, 602, 9))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{text}");
    assert!(text.contains("acme-web-production-602-d9"), "{text}");
    until_answered(&h.hub, 602, "production", 1).await;
    let (state, _) = h.hub.answer(602, "production").expect("answered");
    assert_eq!(
        state, "approved",
        "the real request's answer, not the squatter's"
    );
    let real = gate_named(
        &stored_gates(&h.kube),
        "tollgate",
        "acme-web-production-602-d9",
    )
    .clone();
    assert!(webhook::made_by_intake(&real));
    let warned = h.kube.events().iter().any(|e| {
        e.pointer("/reason").and_then(|r| r.as_str()) == Some("NameTaken")
            && e.pointer("/regarding/name").and_then(|n| n.as_str())
                == Some("acme-web-production-602")
    });
    assert!(warned, "an Event on the squatter: {:?}", h.kube.events());
}

#[tokio::test]
async fn forged_callback_url_is_refused_with_400_and_no_gate() {
    let h = harness("").await;
    let mut other_host = h.protection_rule("acme/web", "production", 1);
    other_host["deployment_callback_url"] =
        json!("https://evil.example/repos/acme/web/actions/runs/1/deployment_protection_rule");
    let (status, text) = h.deliver("deployment_protection_rule", &other_host).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        text.starts_with("field `deployment_callback_url` refused"),
        "{text}"
    );
    assert!(text.contains("possible forgery"), "{text}");

    let mut other_repo = h.protection_rule("acme/web", "production", 1);
    other_repo["deployment_callback_url"] = json!(format!(
        "{}/repos/acme/billing/actions/runs/1/deployment_protection_rule",
        h.hub_url
    ));
    let (status, _) = h.deliver("deployment_protection_rule", &other_repo).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let mut other_endpoint = h.protection_rule("acme/web", "production", 1);
    other_endpoint["deployment_callback_url"] = json!(format!(
        "{}/repos/acme/web/actions/runs/1/approve",
        h.hub_url
    ));
    let (status, _) = h
        .deliver("deployment_protection_rule", &other_endpoint)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    assert!(stored_gates(&h.kube).is_empty());
    assert_eq!(writes(&h.kube), Vec::<String>::new());
    let m = h.metrics().await;
    assert_eq!(
        m[r#"tollgate_webhooks_total{event="deployment_protection_rule",outcome="forged"}"#],
        3.0
    );
}

#[tokio::test]
async fn oversized_body_is_refused_with_413_before_anything_else() {
    let h = harness("").await;
    let mut body =
        serde_json::to_vec(&h.protection_rule("acme/web", "production", 1)).expect("json");
    body.resize(webhook::MAX_BODY_BYTES + 1, b' ');
    let sig = webhook::sign(SECRET.as_bytes(), &body);
    let (status, text) = h
        .request(
            Method::POST,
            "/webhook",
            &[
                ("x-github-event", "deployment_protection_rule"),
                ("x-hub-signature-256", &sig),
            ],
            body,
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        format!("{text:?}").contains("larger than the limit of 1048576 bytes (1 MiB)"),
        "{text:?}"
    );
    assert!(stored_gates(&h.kube).is_empty());
    let m = h.metrics().await;
    assert_eq!(
        m[r#"tollgate_webhooks_total{event="unverified",outcome="too_large"}"#],
        1.0
    );
    assert_eq!(m["tollgate_webhook_signature_failures_total"], 0.0);
}

#[tokio::test]
async fn malformed_json_and_missing_fields_answer_400_naming_the_field() {
    let h = harness("").await;
    let mut no_callback = h.protection_rule("acme/web", "production", 1);
    no_callback
        .as_object_mut()
        .expect("object")
        .remove("deployment_callback_url");
    let (status, text) = h.deliver("deployment_protection_rule", &no_callback).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        text.contains("missing field `deployment_callback_url`"),
        "{text}"
    );

    let mut no_sha = h.protection_rule("acme/web", "production", 1);
    no_sha.as_object_mut().expect("object").remove("sha");
    no_sha["deployment"] = Value::Null;
    let (status, text) = h.deliver("deployment_protection_rule", &no_sha).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(text.contains("field `sha` is missing"), "{text}");

    let mut bad_type = h.protection_rule("acme/web", "production", 1);
    bad_type["installation"]["id"] = json!("forty-one");
    let (status, text) = h.deliver("deployment_protection_rule", &bad_type).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        text.contains("invalid type: string \"forty-one\", expected i64"),
        "{text}"
    );

    let body = b"{\"action\": \"requested\", ".to_vec();
    let sig = webhook::sign(SECRET.as_bytes(), &body);
    let (status, text) = h
        .request(
            Method::POST,
            "/webhook",
            &[
                ("x-github-event", "deployment_protection_rule"),
                ("x-hub-signature-256", &sig),
            ],
            body,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        text.starts_with("invalid deployment_protection_rule payload: EOF"),
        "{text}"
    );

    assert!(stored_gates(&h.kube).is_empty());
    assert_eq!(writes(&h.kube), Vec::<String>::new());
}

#[tokio::test]
async fn policies_map_repository_and_environment_to_namespace_deadline_and_checks() {
    let h = harness(
        "defaults:\n  namespace: gates\n\
         policies:\n\
         - repositories: ['acme/*']\n  environments: [production]\n  namespace: web-prod\n  timeout: 4h\n  onDeadline: Approve\n  requiredChecks: [build, e2e]\n  requireHealthy: [{kind: Deployment, name: web, namespace: staging}]\n\
         - repositories: ['acme/*']\n  namespace: web\n  dryRun: true\n",
    )
    .await;
    for (env, run) in [("production", 10), ("staging", 11)] {
        assert_eq!(
            h.deliver(
                "deployment_protection_rule",
                &h.protection_rule("acme/web", env, run)
            )
            .await
            .0,
            StatusCode::CREATED
        );
    }
    assert_eq!(
        h.deliver(
            "deployment_protection_rule",
            &h.protection_rule("other/api", "production", 12)
        )
        .await
        .0,
        StatusCode::CREATED
    );

    let gates = stored_gates(&h.kube);
    let prod = gate_named(&gates, "web-prod", "acme-web-production-10");
    assert_eq!(prod.spec.timeout.as_deref(), Some("4h"));
    assert_eq!(prod.spec.on_deadline, OnDeadline::Approve);
    assert_eq!(prod.spec.required_checks, vec!["build", "e2e"]);
    assert_eq!(prod.spec.require_healthy.len(), 1);
    assert_eq!(prod.spec.require_healthy[0].name, "web");
    assert!(!prod.spec.dry_run);

    let staging = gate_named(&gates, "web", "acme-web-staging-11");
    assert!(staging.spec.dry_run);
    assert_eq!(staging.spec.timeout, None);
    assert!(staging.spec.required_checks.is_empty());

    let other = gate_named(&gates, "gates", "other-api-production-12");
    assert_eq!(other.spec.on_deadline, OnDeadline::Reject);
    assert!(!other.spec.dry_run);
}

#[tokio::test]
async fn ping_answers_200_and_unhandled_events_202() {
    let h = harness("").await;
    let (status, text) = h
        .deliver(
            "ping",
            &json!({"zen": "Keep it logically awesome.", "hook_id": 1}),
        )
        .await;
    assert_eq!((status, text.as_str()), (StatusCode::OK, "pong"));
    let (status, text) = h.deliver("push", &json!({"ref": "refs/heads/main"})).await;
    assert_eq!(
        (status, text.as_str()),
        (StatusCode::ACCEPTED, "event push is not handled")
    );
    let (status, _) = h
        .deliver("workflow_run", &json!({"action": "completed"}))
        .await;
    assert_eq!(
        status,
        StatusCode::ACCEPTED,
        "no autoPause rules: workflow runs are not read"
    );
    assert_eq!(writes(&h.kube), Vec::<String>::new());
    let m = h.metrics().await;
    assert_eq!(
        m[r#"tollgate_webhooks_total{event="ping",outcome="pong"}"#],
        1.0
    );
    assert_eq!(
        m[r#"tollgate_webhooks_total{event="push",outcome="ignored"}"#],
        1.0
    );
}

#[tokio::test]
async fn slow_api_server_gets_503_within_the_write_timeout() {
    let h = harness("intake:\n  writeTimeout: 100ms\n").await;
    // A slow API server: every answer comes a second late, after GitHub's
    // receiver would have had to answer.
    h.kube.set_delay(Duration::from_secs(1));
    let (status, text) = h
        .deliver(
            "deployment_protection_rule",
            &h.protection_rule("acme/web", "production", 3),
        )
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        text,
        "the Kubernetes API server did not write DeploymentGate tollgate/acme-web-production-3 in time"
    );
    let m = h.metrics().await;
    assert_eq!(
        m[r#"tollgate_webhooks_total{event="deployment_protection_rule",outcome="unavailable"}"#],
        1.0
    );
    assert_eq!(m["tollgate_gates_created_total"], 0.0);
}

#[tokio::test]
async fn sweeper_redelivers_a_lost_request_and_skips_one_that_has_a_gate() {
    let h = harness("").await;
    // Run 100 reached us (gate exists) although GitHub recorded a failure
    // (e.g. our answer timed out); run 200 was lost while we were down.
    let gated = h.protection_rule("acme/web", "production", 100);
    assert_eq!(
        h.deliver("deployment_protection_rule", &gated).await.0,
        StatusCode::CREATED
    );
    let lost = h.protection_rule("acme/web", "production", 200);
    let mut forged = h.protection_rule("acme/web", "production", 300);
    forged["deployment_callback_url"] =
        json!("https://evil.example/repos/acme/web/actions/runs/300/deployment_protection_rule");

    h.hub
        .add_delivery(1, "deployment_protection_rule", 502, lost);
    h.hub
        .add_delivery(2, "deployment_protection_rule", 503, gated);
    h.hub
        .add_delivery(4, "deployment_protection_rule", 500, forged);
    let delivered = h.protection_rule("acme/web", "production", 400);
    h.hub
        .add_delivery(5, "deployment_protection_rule", 201, delivered);
    let ci = json!({"action": "completed"});
    h.hub.add_delivery(6, "workflow_run", 500, ci);

    let report = h.intake.sweep_once().await.expect("sweep");
    assert_eq!(report.examined, vec![4, 2, 1], "newest first");
    assert_eq!(report.redelivered, vec![1]);
    assert_eq!(report.already_gated, vec![2]);
    assert_eq!(
        report.skipped.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        vec![4]
    );
    assert!(
        report.skipped[0].1.contains("possible forgery"),
        "{:?}",
        report.skipped
    );
    assert_eq!(report.errors, vec![]);
    assert_eq!(h.hub.redelivered(), vec![1]);
    assert_eq!(
        stored_gates(&h.kube).len(),
        1,
        "the sweeper writes no gate itself; the redelivery does"
    );

    // GitHub redelivers; the gate appears; the next sweep has nothing to do.
    let (status, _) = h
        .deliver(
            "deployment_protection_rule",
            &h.protection_rule("acme/web", "production", 200),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let again: SweepReport = h.intake.sweep_once().await.expect("sweep");
    assert_eq!(again.redelivered, Vec::<i64>::new());
    assert_eq!(again.already_gated, vec![2, 1]);
    assert_eq!(h.hub.redelivered(), vec![1]);

    let m = h.metrics().await;
    assert_eq!(m["tollgate_recovered_deliveries_total"], 1.0);
    assert_eq!(m["tollgate_gates_created_total"], 2.0);
}

#[tokio::test]
async fn the_sweeper_reads_failures_back_to_72_hours_and_redelivers_only_lost_protection_rule_requests()
 {
    let h = harness("").await;
    let now = jiff::Timestamp::now();
    let ago = |hours: i64| now - jiff::SignedDuration::from_hours(hours);
    // 250 failed deliveries of other events within the window (three pages
    // of 100, newest first), among them the lost requests.
    let mut id = 1000;
    for i in 0..250 {
        id += 1;
        let at = ago(1) - jiff::SignedDuration::from_secs(i * 60);
        h.hub
            .add_delivery_at(id, "workflow_run", 500, at, json!({"action": "completed"}));
    }
    let lost = h.protection_rule("acme/web", "production", 700);
    h.hub
        .add_delivery_at(1, "deployment_protection_rule", 503, ago(70), lost);
    // Our receiver refused these as invalid: a redelivery only replays them.
    let malformed = h.protection_rule("acme/web", "production", 701);
    h.hub
        .add_delivery_at(2, "deployment_protection_rule", 400, ago(10), malformed);
    let oversized = h.protection_rule("acme/web", "production", 702);
    h.hub
        .add_delivery_at(3, "deployment_protection_rule", 413, ago(11), oversized);
    // Delivered fine: not listed with status=failure at all.
    let fine = h.protection_rule("acme/web", "production", 703);
    h.hub
        .add_delivery_at(4, "deployment_protection_rule", 201, ago(2), fine);
    // Past GitHub's 72 hours (and more pages of them): never redelivered, never read.
    for i in 0..300 {
        let old = h.protection_rule("acme/web", "production", 800 + i);
        h.hub.add_delivery_at(
            5000 + i,
            "deployment_protection_rule",
            502,
            ago(73) - jiff::SignedDuration::from_secs(i * 60),
            old,
        );
    }

    let report = h.intake.sweep_once().await.expect("sweep");

    assert_eq!(report.redelivered, vec![1]);
    assert_eq!(report.examined, vec![1]);
    assert_eq!(h.hub.redelivered(), vec![1]);
    let lists = h.hub.requests_to("GET", "/app/hook/deliveries");
    let lists: Vec<_> = lists
        .iter()
        .filter(|r| r.path == "/app/hook/deliveries")
        .collect();
    // 250 + 3 failures inside the window, then the first past it: 3 pages.
    assert_eq!(report.pages, 3);
    assert_eq!(
        lists.len(),
        3,
        "stopped at the horizon, not at a page count"
    );
    let payload_reads = h.hub.requests_to("GET", "/app/hook/deliveries/").len();
    assert_eq!(payload_reads, 1, "only the lost request's payload is read");
}

fn workflow_run(conclusion: &str, sha: &str, run_id: i64) -> Value {
    json!({
        "action": "completed",
        "workflow_run": {
            "id": run_id, "name": "CI", "node_id": "WFR_kwLOAAAAAA", "head_branch": "main", "head_sha": sha,
            "path": ".github/workflows/ci.yml", "run_number": 562, "event": "push", "status": "completed",
            "conclusion": conclusion, "workflow_id": 159038,
            "html_url": format!("https://github.com/acme/web/actions/runs/{run_id}"),
            "created_at": "2026-11-23T10:00:00Z", "updated_at": "2026-11-23T10:05:00Z"
        },
        "workflow": {"id": 159038, "name": "CI", "path": ".github/workflows/ci.yml"},
        "repository": {"id": 1296269, "name": "web", "full_name": "acme/web", "owner": {"login": "acme"}},
        "sender": {"login": "octocat", "id": 583231}
    })
}

#[tokio::test]
async fn failed_main_run_pauses_releases_and_a_later_success_does_not_resume() {
    let h = harness("autoPause:\n- repository: acme/web\n  branch: main\n  workflows: [CI]\n  environments: [production]\n  namespace: web\n").await;
    let first = "1111111111111111111111111111111111111111";
    let (status, text) = h
        .deliver("workflow_run", &workflow_run("failure", first, 901))
        .await;
    assert_eq!(
        (status, text.as_str()),
        (
            StatusCode::OK,
            "paused releases: web/ci-failed-acme-web-main"
        )
    );
    let pauses = stored_pauses(&h.kube);
    assert_eq!(pauses.len(), 1);
    let p = &pauses[0];
    assert_eq!(p.spec.reason, "ci-failed");
    assert_eq!(p.spec.sha.as_deref(), Some(first));
    assert_eq!(p.spec.scope.repositories, vec!["acme/web"]);
    assert_eq!(p.spec.scope.environments, vec!["production"]);
    assert_eq!(
        p.spec.message.as_deref(),
        Some("CI failed on acme/web@main at 1111111: https://github.com/acme/web/actions/runs/901")
    );

    // A person resumes it; a success on main afterwards changes nothing.
    let mut resumed = serde_json::to_value(p).expect("json");
    resumed["spec"]["resume"] = json!({"sha": first, "reason": "ci-failed", "by": "alice"});
    h.kube.put(PAUSES, resumed);
    let (status, _) = h
        .deliver(
            "workflow_run",
            &workflow_run("success", "2222222222222222222222222222222222222222", 902),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let p = &stored_pauses(&h.kube)[0];
    assert_eq!(p.spec.sha.as_deref(), Some(first));
    assert!(p.spec.resume.is_some());

    // A new failing commit updates the same pause (the engine pauses again:
    // its sha no longer equals the resumed one); the resume is left in place.
    let second = "3333333333333333333333333333333333333333";
    let (status, _) = h
        .deliver("workflow_run", &workflow_run("failure", second, 903))
        .await;
    assert_eq!(status, StatusCode::OK);
    let pauses = stored_pauses(&h.kube);
    assert_eq!(pauses.len(), 1);
    assert_eq!(pauses[0].spec.sha.as_deref(), Some(second));
    assert_eq!(
        pauses[0].spec.resume.as_ref().map(|r| r.sha.as_deref()),
        Some(Some(first))
    );

    // Other branches and workflows do not pause.
    let mut feature = workflow_run("failure", second, 904);
    feature["workflow_run"]["head_branch"] = json!("feature/x");
    assert_eq!(
        h.deliver("workflow_run", &feature).await.0,
        StatusCode::ACCEPTED
    );

    let m = h.metrics().await;
    assert_eq!(m["tollgate_auto_pauses_total"], 2.0);
    assert_eq!(
        m[r#"tollgate_webhooks_total{event="workflow_run",outcome="paused"}"#],
        2.0
    );
    assert_eq!(
        m[r#"tollgate_webhooks_total{event="workflow_run",outcome="ignored"}"#],
        2.0
    );
}

#[tokio::test]
async fn metrics_endpoint_shows_the_intake_counters_moving() {
    let h = harness("").await;
    let before = h.metrics().await;
    assert_eq!(before["tollgate_gates_created_total"], 0.0);
    assert_eq!(before["tollgate_webhook_signature_failures_total"], 0.0);
    assert_eq!(before["tollgate_recovered_deliveries_total"], 0.0);
    assert!(
        !before
            .keys()
            .any(|k| k.starts_with("tollgate_webhooks_total{"))
    );

    let body = h.protection_rule("acme/web", "production", 42);
    assert_eq!(
        h.deliver("deployment_protection_rule", &body).await.0,
        StatusCode::CREATED
    );
    assert_eq!(
        h.deliver("deployment_protection_rule", &body).await.0,
        StatusCode::OK
    );
    let unsigned = serde_json::to_vec(&body).expect("json");
    assert_eq!(
        h.request(
            Method::POST,
            "/webhook",
            &[("x-github-event", "deployment_protection_rule")],
            unsigned
        )
        .await
        .0,
        StatusCode::UNAUTHORIZED
    );

    let after = h.metrics().await;
    assert_eq!(after["tollgate_gates_created_total"], 1.0);
    assert_eq!(after["tollgate_webhook_signature_failures_total"], 1.0);
    assert_eq!(
        after[r#"tollgate_webhooks_total{event="deployment_protection_rule",outcome="created"}"#],
        1.0
    );
    assert_eq!(
        after[r#"tollgate_webhooks_total{event="deployment_protection_rule",outcome="duplicate"}"#],
        1.0
    );
    assert_eq!(
        after[r#"tollgate_webhooks_total{event="unverified",outcome="unauthorized"}"#],
        1.0
    );
}

// ---------------------------------------------------------------------------
// Delivery dedupe, and the log lines outsiders can cause.

impl Harness {
    /// Posts `body` signed, as the delivery with id `delivery`.
    async fn deliver_as(&self, event: &str, body: &Value, delivery: &str) -> (StatusCode, String) {
        let bytes = serde_json::to_vec(body).expect("payload serialises");
        let sig = webhook::sign(SECRET.as_bytes(), &bytes);
        self.request(
            Method::POST,
            "/webhook",
            &[
                ("x-github-event", event),
                ("x-github-delivery", delivery),
                ("x-hub-signature-256", &sig),
                ("content-type", "application/json"),
            ],
            bytes,
        )
        .await
    }
}

#[tokio::test]
async fn a_redelivery_with_the_same_delivery_id_is_answered_without_a_write() {
    let h = harness("").await;
    let body = h.protection_rule("acme/web", "production", 801);
    let (status, text) = h
        .deliver_as("deployment_protection_rule", &body, "d-801")
        .await;
    assert_eq!(status, StatusCode::CREATED, "{text}");
    let before = writes(&h.kube);

    let (status, text) = h
        .deliver_as("deployment_protection_rule", &body, "d-801")
        .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(text, "delivery d-801 was already handled");
    assert_eq!(writes(&h.kube), before, "no second write to the API server");

    let m = h.metrics().await;
    assert_eq!(m["tollgate_webhook_duplicate_deliveries_total"], 1.0);
    assert_eq!(
        m[r#"tollgate_webhooks_total{event="deployment_protection_rule",outcome="duplicate_delivery"}"#],
        1.0
    );
    assert_eq!(m["tollgate_gates_created_total"], 1.0);
}

#[tokio::test]
async fn a_failed_delivery_is_handled_again_when_redelivered() {
    let h = harness("").await;
    let body = h.protection_rule("acme/web", "production", 802);
    h.kube.fail_next_writes(&[500]);
    let (status, text) = h
        .deliver_as("deployment_protection_rule", &body, "d-802")
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{text}");
    assert!(stored_gates(&h.kube).is_empty());

    let (status, text) = h
        .deliver_as("deployment_protection_rule", &body, "d-802")
        .await;
    assert_eq!(status, StatusCode::CREATED, "{text}");
    assert_eq!(
        text,
        "created DeploymentGate tollgate/acme-web-production-802"
    );
    assert_eq!(
        h.metrics().await["tollgate_webhook_duplicate_deliveries_total"],
        0.0
    );
}

#[tokio::test]
async fn an_id_that_comes_with_another_body_is_handled_not_dropped() {
    let h = harness("").await;
    let first = h.protection_rule("acme/web", "production", 803);
    let other = h.protection_rule("acme/web", "production", 804);
    assert_eq!(
        h.deliver_as("deployment_protection_rule", &first, "d-same")
            .await
            .0,
        StatusCode::CREATED
    );
    let (status, text) = h
        .deliver_as("deployment_protection_rule", &other, "d-same")
        .await;
    assert_eq!(status, StatusCode::CREATED, "{text}");
    assert_eq!(
        text,
        "created DeploymentGate tollgate/acme-web-production-804"
    );
    assert_eq!(stored_gates(&h.kube).len(), 2);
}

/// Log lines written while the guard lives (this thread's subscriber: the
/// test's current-thread runtime runs the server tasks on it too).
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("not poisoned").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn start(&self) -> tracing::subscriber::DefaultGuard {
        let sink = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || sink.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    fn lines_with(&self, needle: &str) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().expect("not poisoned"))
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_string)
            .collect()
    }
}

#[tokio::test]
async fn a_flood_of_bad_signatures_logs_one_line_and_counts_every_one() {
    let logs = Captured::default();
    let _guard = logs.start();
    let h = harness("").await;
    let body = serde_json::to_vec(&h.protection_rule("acme/web", "production", 805)).expect("json");
    for i in 0..25 {
        let forged = webhook::sign(b"not the secret", &body);
        let (status, _) = h
            .request(
                Method::POST,
                "/webhook",
                &[
                    ("x-github-event", "deployment_protection_rule"),
                    ("x-github-delivery", &format!("forged-{i}")),
                    ("x-hub-signature-256", &forged),
                ],
                body.clone(),
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let lines = logs.lines_with("webhook refused: bad signature");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("suppressed=0"), "{}", lines[0]);
    let m = h.metrics().await;
    assert_eq!(m["tollgate_webhook_signature_failures_total"], 25.0);
    assert_eq!(
        m[r#"tollgate_webhooks_total{event="unverified",outcome="unauthorized"}"#],
        25.0
    );
}

// ---------------------------------------------------------------------------
// The two listeners as `tollgate run` serves them (`telemetry::serve`): what
// an Internet-facing webhook port must withstand.

use futures::StreamExt;
use tokio::net::TcpStream;
use tollgate::telemetry::Limits;

/// Reads what has arrived on `conn` (0: closed). By hand: the tests build
/// tokio without its io-util helpers.
async fn read_some(conn: &TcpStream, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        conn.readable().await?;
        match conn.try_read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            done => return done,
        }
    }
}

/// Writes all of `bytes` to `conn`.
async fn write_all(conn: &TcpStream, mut bytes: &[u8]) -> std::io::Result<()> {
    while !bytes.is_empty() {
        conn.writable().await?;
        match conn.try_write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The intake of [`harness`], served on a webhook listener with `limits`, and
/// `/readyz` and `/metrics` on a metrics listener of its own.
struct Listeners {
    h: Harness,
    webhook: SocketAddr,
    metrics: SocketAddr,
}

async fn listeners(limits: Limits) -> Listeners {
    let h = harness("").await;
    let metrics = Metrics::new();
    let (_ready_tx, ready_rx) = tokio::sync::watch::channel(true);
    let bind = || async {
        tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind")
    };
    let (webhook_listener, metrics_listener) = (bind().await, bind().await);
    let webhook = webhook_listener.local_addr().expect("addr");
    let metrics_addr = metrics_listener.local_addr().expect("addr");
    tokio::spawn(tollgate::telemetry::serve(
        webhook_listener,
        webhook::routes(h.intake.clone()),
        "webhook",
        limits,
        metrics.clone(),
    ));
    tokio::spawn(tollgate::telemetry::serve(
        metrics_listener,
        tollgate::telemetry::routes(
            ready_rx,
            tokio::sync::watch::channel("caches not synced yet".to_string()).1,
            metrics.clone(),
        ),
        "metrics",
        Limits::METRICS,
        metrics,
    ));
    Listeners {
        h,
        webhook,
        metrics: metrics_addr,
    }
}

impl Listeners {
    async fn get(&self, addr: SocketAddr, path: &str) -> (StatusCode, String) {
        let req = http::Request::get(format!("http://{addr}{path}"))
            .body(Full::new(Bytes::new()))
            .expect("request");
        let res = self.h.http.request(req).await.expect("an answer");
        let status = res.status();
        let body = res.into_body().collect().await.expect("body").to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    /// The listeners' metrics, from the metrics port.
    async fn connection_metrics(&self) -> HashMap<String, f64> {
        let (status, text) = self.get(self.metrics, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        parse_metrics(&text)
    }

    /// Waits (at most 10 s) until the metric `key` on the metrics port reads `want`.
    async fn until_metric(&self, key: &str, want: f64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let got = self.connection_metrics().await.get(key).copied();
            if got == Some(want) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{key} is {got:?}, not {want}"
            );
            tokio::task::yield_now().await;
        }
    }

    /// A signed `deployment_protection_rule` for `run_id` on the webhook port.
    async fn deliver(&self, run_id: i64) -> (StatusCode, String) {
        let bytes = serde_json::to_vec(&self.h.protection_rule("acme/web", "production", run_id))
            .expect("json");
        let sig = webhook::sign(SECRET.as_bytes(), &bytes);
        let req = http::Request::post(format!("http://{}/webhook", self.webhook))
            .header("x-github-event", "deployment_protection_rule")
            .header("x-github-delivery", format!("listener-{run_id}"))
            .header("x-hub-signature-256", sig)
            .body(Full::new(Bytes::from(bytes)))
            .expect("request");
        let res = self.h.http.request(req).await.expect("an answer");
        let status = res.status();
        let body = res.into_body().collect().await.expect("body").to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }
}

/// What the server sent on `conn` until it closed it (bounded by `within`).
async fn read_until_closed(conn: &TcpStream, within: Duration) -> Vec<u8> {
    let mut got = Vec::new();
    let read = tokio::time::timeout(within, async {
        let mut buf = [0u8; 4096];
        loop {
            match read_some(conn, &mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "the server kept the connection open for {within:?}"
    );
    got
}

fn short(limits: Limits) -> Limits {
    Limits {
        idle_timeout: Duration::from_millis(300),
        header_timeout: Duration::from_millis(300),
        body_timeout: Duration::from_millis(300),
        ..limits
    }
}

#[tokio::test]
async fn a_slow_header_client_is_cut_off_without_an_answer() {
    let l = listeners(short(Limits::WEBHOOK)).await;
    let head = format!(
        "POST /webhook HTTP/1.1\r\nhost: {}\r\nx-github-event: ping\r\nx-padding: {}\r\n\r\n",
        l.webhook,
        "a".repeat(100)
    );
    let conn = TcpStream::connect(l.webhook).await.expect("connect");
    // One byte every 20 ms: the head would take about 3.5 s, the limit is 0.3 s.
    let mut sent = 0;
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let closed = loop {
        tokio::select! {
            read = read_some(&conn, &mut buf) => match read {
                Ok(0) | Err(_) => break true,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            },
            _ = tick.tick() => {
                if sent == head.len() {
                    break false;
                }
                if write_all(&conn, &head.as_bytes()[sent..sent + 1]).await.is_err() {
                    break true;
                }
                sent += 1;
            }
        }
    };
    assert!(closed, "the server waited for the whole slow head");
    assert!(
        sent < head.len(),
        "cut off after {sent} of {} bytes",
        head.len()
    );
    assert_eq!(
        String::from_utf8_lossy(&got),
        "",
        "no answer to a slow head"
    );
    let m = l.connection_metrics().await;
    assert_eq!(
        m[r#"tollgate_http_connection_timeouts_total{listener="webhook",phase="header"}"#],
        1.0
    );
    // The listener still answers a delivery sent at once.
    assert_eq!(l.deliver(806).await.0, StatusCode::CREATED);
}

#[tokio::test]
async fn an_idle_connection_is_closed_and_a_slow_body_answered_408() {
    let l = listeners(short(Limits::WEBHOOK)).await;
    let idle = TcpStream::connect(l.webhook).await.expect("connect");
    assert_eq!(read_until_closed(&idle, Duration::from_secs(10)).await, b"");

    let slow = TcpStream::connect(l.webhook).await.expect("connect");
    write_all(
        &slow,
        b"POST /webhook HTTP/1.1\r\nhost: tollgate\r\nx-github-event: ping\r\ncontent-length: 100\r\n\r\n{\"zen\":",
    )
    .await
    .expect("write");
    let answer = read_until_closed(&slow, Duration::from_secs(10)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    assert!(answer.contains("connection: close"), "{answer}");
    assert!(
        answer.ends_with("the request body did not arrive in time"),
        "{answer}"
    );

    let m = l.connection_metrics().await;
    assert_eq!(
        m[r#"tollgate_http_connection_timeouts_total{listener="webhook",phase="idle"}"#],
        1.0
    );
    assert_eq!(
        m[r#"tollgate_http_connection_timeouts_total{listener="webhook",phase="body"}"#],
        1.0
    );
    assert_eq!(
        l.h.metrics().await[r#"tollgate_webhooks_total{event="unverified",outcome="timed_out"}"#],
        1.0
    );
}

#[tokio::test]
async fn at_the_cap_with_every_connection_answering_a_new_one_is_refused_at_once() {
    let l = listeners(Limits {
        max_connections: 2,
        ..Limits::WEBHOOK
    })
    .await;
    // Two requests whose bodies are still coming: both slots are answering.
    let mut busy = Vec::new();
    for _ in 0..2 {
        let c = TcpStream::connect(l.webhook).await.expect("connect");
        write_all(
            &c,
            b"POST /webhook HTTP/1.1\r\nhost: tollgate\r\ncontent-length: 100\r\n\r\n{",
        )
        .await
        .expect("write");
        busy.push(c);
    }
    // The metrics port sees both being answered before the third arrives.
    l.until_metric(
        r#"tollgate_http_requests_in_flight{listener="webhook"}"#,
        2.0,
    )
    .await;
    let third = TcpStream::connect(l.webhook).await.expect("connect");
    assert_eq!(
        read_until_closed(&third, Duration::from_secs(10)).await,
        b""
    );
    let m = l.connection_metrics().await;
    assert_eq!(
        m[r#"tollgate_http_connections_refused_total{listener="webhook"}"#],
        1.0
    );
    assert_eq!(
        m[r#"tollgate_http_connections_evicted_total{listener="webhook"}"#],
        0.0
    );
    drop(busy);
}

/// Raises this process's soft limit of open files towards `want` (within the
/// hard limit) and returns the soft limit now in force.
fn raise_open_files_limit(want: u64) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur < want {
            let raised = libc::rlimit {
                rlim_cur: want.min(lim.rlim_max),
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim = raised;
            }
        }
    }
    lim.rlim_cur
}

#[tokio::test]
async fn five_thousand_idle_connections_leave_the_webhook_answering_and_readyz_200() {
    const IDLE: usize = 5_000;
    let cap = Limits::WEBHOOK.max_connections;
    // Client and server sockets live in this one process.
    let needed = (IDLE + cap + 256) as u64;
    let limit = raise_open_files_limit(needed);
    assert!(
        limit >= needed,
        "this test needs {needed} open files; the hard limit allows {limit}"
    );

    let l = listeners(Limits::WEBHOOK).await;
    let run = async {
        // At most 64 connects in flight, so the listen backlog never overflows.
        let idle: Vec<TcpStream> = futures::stream::iter(0..IDLE)
            .map(|_| async { TcpStream::connect(l.webhook).await.expect("connect") })
            .buffer_unordered(64)
            .collect()
            .await;
        assert_eq!(idle.len(), IDLE);

        // Accepted after all of them (the backlog is first in, first out): a
        // signed delivery is answered, and the metrics port is ready.
        let (status, text) = l.deliver(807).await;
        assert_eq!(status, StatusCode::CREATED, "{text}");
        assert_eq!(
            text,
            "created DeploymentGate tollgate/acme-web-production-807"
        );
        assert_eq!(
            l.get(l.metrics, "/readyz").await,
            (StatusCode::OK, "ready".to_string())
        );
        let m = l.connection_metrics().await;
        // Every connection past the cap took the oldest idle one's slot.
        assert_eq!(
            m[r#"tollgate_http_connections_evicted_total{listener="webhook"}"#],
            (IDLE + 1 - cap) as f64
        );
        assert_eq!(
            m[r#"tollgate_http_connections_refused_total{listener="webhook"}"#],
            0.0
        );
        assert_eq!(stored_gates(&l.h.kube).len(), 1);
        // The evicted connections' tasks end: exactly the cap stays open.
        l.until_metric(
            r#"tollgate_http_connections{listener="webhook"}"#,
            cap as f64,
        )
        .await;
        drop(idle);
    };
    // Under the webhook's idle timeout (90 s), so none is cut for idleness.
    tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("bounded: the whole load takes under a minute");
}

#[tokio::test]
async fn the_webhook_port_serves_nothing_but_post_webhook() {
    let l = listeners(Limits::WEBHOOK).await;
    for path in ["/metrics", "/readyz", "/livez", "/"] {
        assert_eq!(
            l.get(l.webhook, path).await.0,
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    assert_eq!(
        l.get(l.webhook, "/webhook").await.0,
        StatusCode::METHOD_NOT_ALLOWED
    );
    assert_eq!(
        l.get(l.metrics, "/readyz").await,
        (StatusCode::OK, "ready".to_string())
    );
    assert_eq!(l.get(l.metrics, "/livez").await.0, StatusCode::OK);
    assert_eq!(l.get(l.metrics, "/webhook").await.0, StatusCode::NOT_FOUND);
}

// ---- fixtures in GitHub's documented shapes (tests/fixtures/github) ---------------

fn fixture(name: &str, api_base: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/github/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    // The callback URL names the API the operator talks to: here, the fake's.
    let text = text.replace(
        "https://api.github.com/repos/",
        &format!("{api_base}/repos/"),
    );
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[tokio::test]
async fn fixture_deployment_protection_rule_with_a_deployment_maps_to_a_gate() {
    let h = harness("").await;
    let body = fixture("deployment_protection_rule.requested.json", &h.hub_url);
    let parsed: webhook::DeploymentProtectionRuleEvent =
        serde_json::from_value(body.clone()).expect("the documented shape deserialises");
    assert_eq!(parsed.deployment.as_ref().map(|d| d.id), Some(1863429557));

    let (status, text) = h.deliver("deployment_protection_rule", &body).await;
    assert_eq!(status, StatusCode::CREATED, "{text}");
    let gates = stored_gates(&h.kube);
    let g = gate_named(&gates, "tollgate", "acme-web-production-11983470512");
    assert_eq!(g.spec.repository, "acme/web");
    assert_eq!(g.spec.environment, "production");
    assert_eq!(g.spec.sha, "7638417db6d59f3c431d3e1f261cc637155684cd");
    assert_eq!(g.spec.git_ref.as_deref(), Some("refs/heads/main"));
    assert_eq!(g.spec.run_id, 11983470512);
    assert_eq!(g.spec.installation_id, Some(51234567));
    assert_eq!(g.spec.deployment_id, Some(1863429557));
    assert_eq!(
        g.spec.requested_at.map(|t| t.to_string()).as_deref(),
        Some("2026-11-23T10:00:07Z")
    );
}

#[tokio::test]
async fn fixture_deployment_protection_rule_without_a_deployment_maps_to_a_gate() {
    let h = harness("").await;
    let body = fixture(
        "deployment_protection_rule.requested.no_deployment.json",
        &h.hub_url,
    );
    assert!(body["deployment"].is_null());
    let (status, text) = h.deliver("deployment_protection_rule", &body).await;
    assert_eq!(status, StatusCode::CREATED, "{text}");
    let gates = stored_gates(&h.kube);
    let g = gate_named(&gates, "tollgate", "acme-web-production-11983470512");
    assert_eq!(g.spec.sha, "7638417db6d59f3c431d3e1f261cc637155684cd");
    assert_eq!(g.spec.deployment_id, None);
    assert_eq!(g.spec.installation_id, Some(51234567));
    assert_eq!(g.spec.run_id, 11983470512);
}

#[tokio::test]
async fn fixture_workflow_runs_completed_pauses_and_requested_is_ignored() {
    let h = harness("autoPause:\n- repository: acme/web\n  branch: main\n  workflows: [CI]\n  environments: [production]\n  namespace: web\n").await;
    let requested = fixture("workflow_run.requested.json", &h.hub_url);
    let parsed: webhook::WorkflowRunEvent =
        serde_json::from_value(requested.clone()).expect("requested deserialises");
    assert_eq!(parsed.workflow_run.conclusion, None);
    let (status, _) = h.deliver("workflow_run", &requested).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert!(stored_pauses(&h.kube).is_empty());

    let completed = fixture("workflow_run.completed.json", &h.hub_url);
    let parsed: webhook::WorkflowRunEvent =
        serde_json::from_value(completed.clone()).expect("completed deserialises");
    assert_eq!(parsed.workflow_run.conclusion.as_deref(), Some("failure"));
    assert_eq!(parsed.workflow_run.head_branch.as_deref(), Some("main"));
    let (status, text) = h.deliver("workflow_run", &completed).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let pauses = stored_pauses(&h.kube);
    assert_eq!(pauses.len(), 1);
    let p = &pauses[0];
    assert_eq!(p.metadata.namespace.as_deref(), Some("web"));
    assert_eq!(p.spec.reason, "ci-failed");
    assert_eq!(
        p.spec.sha.as_deref(),
        Some("7638417db6d59f3c431d3e1f261cc637155684cd")
    );
    assert_eq!(p.spec.scope.repositories, vec!["acme/web".to_string()]);
    assert_eq!(p.spec.scope.environments, vec!["production".to_string()]);
}

#[test]
fn fixture_deployment_statuses_with_and_without_installation_find_their_gate() {
    let gate: DeploymentGate = serde_json::from_value(json!({
        "apiVersion": "tollgate.dev/v1alpha1",
        "kind": "DeploymentGate",
        "metadata": {"name": "acme-web-production-11983470512", "namespace": "tollgate"},
        "spec": {
            "repository": "acme/web", "environment": "production",
            "sha": "7638417db6d59f3c431d3e1f261cc637155684cd", "runId": 11983470512_i64,
            "deploymentId": 1863420000, "deploymentIds": [1863429557]
        },
        "status": {"phase": "Approved", "decision": {
            "verdict": "Approve", "source": "Policy", "reason": "ok",
            "decidedAt": "2026-11-23T10:01:00Z"
        }}
    }))
    .expect("gate");
    for name in [
        "deployment_status.created.json",
        "deployment_status.created.no_installation.json",
    ] {
        let body = fixture(name, "https://api.github.com");
        assert_eq!(
            body.get("installation").is_some(),
            !name.contains("no_installation")
        );
        let ev: webhook::DeploymentStatusEvent =
            serde_json::from_value(body).expect("the documented shape deserialises");
        assert_eq!(ev.deployment_status.state, "success");
        assert_eq!(ev.deployment.id, 1863429557);
        assert_eq!(ev.deployment.environment.as_deref(), Some("production"));
        // A sibling's deployment (in `deploymentIds`) finds the gate.
        let gates = [gate.clone()];
        let found = webhook::find_gate(&gates, &ev).expect("the gate follows the deployment");
        assert_eq!(found.metadata.name, gate.metadata.name);
    }
}
