//! The webhook receiver end to end: the real axum router on 127.0.0.1, signed
//! real-shaped GitHub payloads, a fake Kubernetes API server and a fake GitHub
//! (App webhook deliveries), both in-process over HTTP.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use tollgate::api::{DeploymentGate, FINALIZER, OnDeadline, ReleasePause};
use tollgate::config::OperatorConfig;
use tollgate::github::webhook::{self, Intake, SweepReport};
use tollgate::github::{Auth, GitHub, GitHubConfig};
use tollgate::telemetry::Metrics;

const SECRET: &str = "test webhook secret";
const SHA: &str = "4d3bd4fd7d44b0ad9e4cdc8c9f2a5ad3f5f4c53e";

// ---------------------------------------------------------------------------
// A fake Kubernetes API: namespaced custom resources under tollgate.dev, kept
// in memory, with create (AlreadyExists), get (NotFound), merge patch
// (resourceVersion conflicts) — what the receiver uses.

#[derive(Default)]
struct KubeState {
    objects: BTreeMap<(String, String, String), Value>,
    version: u64,
    requests: Vec<String>,
}

#[derive(Clone, Default)]
struct FakeKube {
    state: Arc<Mutex<KubeState>>,
}

fn status(code: u16, reason: &str, message: String) -> axum::response::Response {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                      "reason": reason, "code": code, "message": message});
    (
        StatusCode::from_u16(code).expect("valid code"),
        axum::Json(body),
    )
        .into_response()
}

fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = json!({});
            }
            let t = target.as_object_mut().expect("made an object");
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        other => *target = other.clone(),
    }
}

impl FakeKube {
    async fn start() -> (FakeKube, kube::Client) {
        let fake = FakeKube::default();
        let app = Router::new()
            .route(
                "/apis/tollgate.dev/v1alpha1/namespaces/{ns}/{plural}",
                post(Self::create),
            )
            .route(
                "/apis/tollgate.dev/v1alpha1/namespaces/{ns}/{plural}/{name}",
                get(Self::get).patch(Self::patch),
            )
            .with_state(fake.clone());
        let addr = serve(app).await;
        let config = kube::Config::new(format!("http://{addr}").parse().expect("url"));
        let client = kube::Client::try_from(config).expect("kube client");
        (fake, client)
    }

    async fn create(
        State(f): State<FakeKube>,
        Path((ns, plural)): Path<(String, String)>,
        axum::Json(mut obj): axum::Json<Value>,
    ) -> axum::response::Response {
        let mut s = f.state.lock().expect("lock");
        let name = obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        s.requests.push(format!("POST {plural}/{name}"));
        let key = (plural.clone(), ns.clone(), name.clone());
        if s.objects.contains_key(&key) {
            return status(
                409,
                "AlreadyExists",
                format!("{plural} \"{name}\" already exists"),
            );
        }
        s.version += 1;
        obj["metadata"]["namespace"] = json!(ns);
        obj["metadata"]["resourceVersion"] = json!(s.version.to_string());
        obj["metadata"]["uid"] = json!(format!("uid-{}", s.version));
        obj["metadata"]["generation"] = json!(1);
        obj["metadata"]["creationTimestamp"] = json!("2026-11-23T10:00:00Z");
        s.objects.insert(key, obj.clone());
        (StatusCode::CREATED, axum::Json(obj)).into_response()
    }

    async fn get(
        State(f): State<FakeKube>,
        Path((ns, plural, name)): Path<(String, String, String)>,
    ) -> axum::response::Response {
        let mut s = f.state.lock().expect("lock");
        s.requests.push(format!("GET {plural}/{name}"));
        match s.objects.get(&(plural.clone(), ns, name.clone())) {
            Some(o) => axum::Json(o.clone()).into_response(),
            None => status(404, "NotFound", format!("{plural} \"{name}\" not found")),
        }
    }

    async fn patch(
        State(f): State<FakeKube>,
        Path((ns, plural, name)): Path<(String, String, String)>,
        headers: HeaderMap,
        body: Bytes,
    ) -> axum::response::Response {
        let mut s = f.state.lock().expect("lock");
        s.requests.push(format!("PATCH {plural}/{name}"));
        assert_eq!(
            headers.get("content-type").and_then(|v| v.to_str().ok()),
            Some("application/merge-patch+json"),
            "the receiver only sends merge patches"
        );
        let patch: Value = serde_json::from_slice(&body).expect("patch is JSON");
        s.version += 1;
        let version = s.version.to_string();
        let Some(obj) = s.objects.get_mut(&(plural.clone(), ns, name.clone())) else {
            return status(404, "NotFound", format!("{plural} \"{name}\" not found"));
        };
        if let Some(rv) = patch["metadata"]["resourceVersion"].as_str()
            && Some(rv) != obj["metadata"]["resourceVersion"].as_str()
        {
            return status(409, "Conflict", "the object has been modified".into());
        }
        let before_spec = obj["spec"].clone();
        merge_patch(obj, &patch);
        obj["metadata"]["resourceVersion"] = json!(version);
        if obj["spec"] != before_spec {
            let g = obj["metadata"]["generation"].as_i64().unwrap_or(1);
            obj["metadata"]["generation"] = json!(g + 1);
        }
        axum::Json(obj.clone()).into_response()
    }

    fn gates(&self) -> Vec<DeploymentGate> {
        self.all("deploymentgates")
    }

    fn pauses(&self) -> Vec<ReleasePause> {
        self.all("releasepauses")
    }

    fn all<T: serde::de::DeserializeOwned>(&self, plural: &str) -> Vec<T> {
        let s = self.state.lock().expect("lock");
        s.objects
            .iter()
            .filter(|((p, _, _), _)| p == plural)
            .map(|(_, v)| serde_json::from_value(v.clone()).expect("stored object parses"))
            .collect()
    }

    fn insert_gate(&self, gate: &DeploymentGate) {
        let mut s = self.state.lock().expect("lock");
        s.version += 1;
        let mut v = serde_json::to_value(gate).expect("gate serialises");
        v["metadata"]["resourceVersion"] = json!(s.version.to_string());
        let key = (
            "deploymentgates".to_string(),
            gate.metadata.namespace.clone().expect("namespace"),
            gate.metadata.name.clone().expect("name"),
        );
        s.objects.insert(key, v);
    }

    fn writes(&self) -> usize {
        let s = self.state.lock().expect("lock");
        s.requests.iter().filter(|r| !r.starts_with("GET")).count()
    }
}

// ---------------------------------------------------------------------------
// A fake GitHub: the App's webhook deliveries (list, payload, redeliver).

#[derive(Default)]
struct HubState {
    deliveries: Vec<Value>,
    payloads: HashMap<i64, Value>,
    redelivered: Vec<i64>,
}

#[derive(Clone, Default)]
struct FakeGitHub {
    state: Arc<Mutex<HubState>>,
}

impl FakeGitHub {
    async fn start() -> (FakeGitHub, String) {
        let fake = FakeGitHub::default();
        let app = Router::new()
            .route("/app/hook/deliveries", get(Self::list))
            .route("/app/hook/deliveries/{id}", get(Self::delivery))
            .route("/app/hook/deliveries/{id}/attempts", post(Self::attempt))
            .with_state(fake.clone());
        let addr = serve(app).await;
        (fake, format!("http://{addr}"))
    }

    fn add_delivery(&self, id: i64, guid: &str, event: &str, status_code: u16, payload: Value) {
        let mut s = self.state.lock().expect("lock");
        let delivered_at = jiff::Timestamp::now() - jiff::SignedDuration::from_mins(id);
        s.deliveries.push(json!({
            "id": id, "guid": guid, "delivered_at": delivered_at.to_string(), "redelivery": false,
            "duration": 0.27, "status": if status_code < 300 { "OK" } else { "Service Unavailable" },
            "status_code": status_code, "event": event, "action": payload["action"],
            "installation_id": 41234567, "repository_id": 1296269
        }));
        s.payloads.insert(id, payload);
    }

    async fn list(State(f): State<FakeGitHub>, headers: HeaderMap) -> axum::response::Response {
        let auth = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(
            auth.starts_with("Bearer "),
            "App endpoints are called with the App's JWT"
        );
        let s = f.state.lock().expect("lock");
        axum::Json(Value::Array(s.deliveries.clone())).into_response()
    }

    async fn delivery(
        State(f): State<FakeGitHub>,
        Path(id): Path<i64>,
    ) -> axum::response::Response {
        let s = f.state.lock().expect("lock");
        match s.payloads.get(&id) {
            Some(p) => axum::Json(
                json!({"id": id, "request": {"headers": {}, "payload": p}, "response": {}}),
            )
            .into_response(),
            None => (
                StatusCode::NOT_FOUND,
                axum::Json(json!({"message": "Not Found"})),
            )
                .into_response(),
        }
    }

    async fn attempt(State(f): State<FakeGitHub>, Path(id): Path<i64>) -> axum::response::Response {
        f.state.lock().expect("lock").redelivered.push(id);
        (StatusCode::ACCEPTED, axum::Json(json!({}))).into_response()
    }

    fn redelivered(&self) -> Vec<i64> {
        self.state.lock().expect("lock").redelivered.clone()
    }
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
    let (kube, client) = FakeKube::start().await;
    harness_with(config, kube, client).await
}

async fn harness_with(config: &str, kube: FakeKube, client: kube::Client) -> Harness {
    let (hub, hub_url) = FakeGitHub::start().await;
    let github = GitHub::new(GitHubConfig {
        api_base: hub_url.clone(),
        auth: Auth::App {
            app_id: 4242,
            private_key_pem: TEST_APP_KEY.into(),
        },
        ..GitHubConfig::default()
    })
    .expect("GitHub client");
    let config = Arc::new(OperatorConfig::parse(config).expect("test config is valid"));
    let metrics = Metrics::new();
    let intake = Intake::new(client, github, config, SECRET.into(), metrics.clone());
    let (_ready_tx, ready_rx) = tokio::sync::watch::channel(true);
    let app = webhook::routes(intake.clone()).merge(tollgate::telemetry::routes(ready_rx, metrics));
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

    /// Posts `body` as GitHub would: signed with the webhook secret.
    async fn deliver(&self, event: &str, body: &Value) -> (StatusCode, String) {
        let bytes = serde_json::to_vec(body).expect("payload serialises");
        let sig = webhook::sign(SECRET.as_bytes(), &bytes);
        self.request(
            Method::POST,
            "/webhook",
            &[
                ("x-github-event", event),
                ("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
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

    let gates = h.kube.gates();
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
    let gates = h.kube.gates();
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

    assert!(h.kube.gates().is_empty());
    assert_eq!(h.kube.writes(), 0);
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

    // Another sibling with its own deployment id: the first one stays.
    let mut third = h.protection_rule("acme/web", "production", 555);
    third["deployment"]["id"] = json!(7654321);
    let (status, _) = h.deliver("deployment_protection_rule", &third).await;
    assert_eq!(status, StatusCode::OK);

    let gates = h.kube.gates();
    assert_eq!(gates.len(), 1);
    let g = gate_named(&gates, "tollgate", "acme-web-production-555");
    assert_eq!(g.spec.deployment_id, Some(1234567));

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
        1.0
    );
}

#[tokio::test]
async fn decided_gate_is_left_untouched_by_a_late_duplicate() {
    let h = harness("").await;
    let mut first = h.protection_rule("acme/web", "production", 556);
    first["deployment"] = Value::Null;
    assert_eq!(
        h.deliver("deployment_protection_rule", &first).await.0,
        StatusCode::CREATED
    );
    let mut decided = h.kube.gates().remove(0);
    decided.status = Some(tollgate::api::DeploymentGateStatus {
        phase: Some(tollgate::api::Phase::Approved),
        ..Default::default()
    });
    h.kube.insert_gate(&decided);
    let writes = h.kube.writes();

    let (status, _) = h
        .deliver(
            "deployment_protection_rule",
            &h.protection_rule("acme/web", "production", 556),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        h.kube.writes(),
        writes + 1,
        "only the refused create, no patch"
    );
    assert_eq!(h.kube.gates()[0].spec.deployment_id, None);
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

    assert!(h.kube.gates().is_empty());
    assert_eq!(h.kube.writes(), 0);
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
    let (status, _) = h
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
    assert!(h.kube.gates().is_empty());
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

    assert!(h.kube.gates().is_empty());
    assert_eq!(h.kube.writes(), 0);
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

    let gates = h.kube.gates();
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
    assert_eq!(h.kube.writes(), 0);
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
    // An API server that accepts connections and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = silent.local_addr().expect("addr");
    let client = kube::Client::try_from(kube::Config::new(
        format!("http://{addr}").parse().expect("url"),
    ))
    .expect("client");
    let h = harness_with(
        "intake:\n  writeTimeout: 100ms\n",
        FakeKube::default(),
        client,
    )
    .await;
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
    drop(silent);
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

    h.hub.add_delivery(
        1,
        "guid-lost",
        "deployment_protection_rule",
        502,
        lost.clone(),
    );
    h.hub
        .add_delivery(2, "guid-gated", "deployment_protection_rule", 503, gated);
    h.hub
        .add_delivery(3, "guid-lost", "deployment_protection_rule", 504, lost); // an earlier failed attempt
    h.hub
        .add_delivery(4, "guid-forged", "deployment_protection_rule", 500, forged);
    h.hub.add_delivery(
        5,
        "guid-ok",
        "deployment_protection_rule",
        201,
        h.protection_rule("acme/web", "production", 400),
    );
    h.hub.add_delivery(
        6,
        "guid-ci",
        "workflow_run",
        500,
        json!({"action": "completed"}),
    );

    let report = h.intake.sweep_once().await.expect("sweep");
    assert_eq!(report.examined, vec![1, 2, 4]);
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
        h.kube.gates().len(),
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
    assert_eq!(again.already_gated, vec![1, 2]);
    assert_eq!(h.hub.redelivered(), vec![1]);

    let m = h.metrics().await;
    assert_eq!(m["tollgate_recovered_deliveries_total"], 1.0);
    assert_eq!(m["tollgate_gates_created_total"], 2.0);
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
    let pauses = h.kube.pauses();
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
    {
        let mut s = h.kube.state.lock().expect("lock");
        let key = (
            "releasepauses".to_string(),
            "web".to_string(),
            "ci-failed-acme-web-main".to_string(),
        );
        s.objects.insert(key, resumed);
    }
    let (status, _) = h
        .deliver(
            "workflow_run",
            &workflow_run("success", "2222222222222222222222222222222222222222", 902),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let p = &h.kube.pauses()[0];
    assert_eq!(p.spec.sha.as_deref(), Some(first));
    assert!(p.spec.resume.is_some());

    // A new failing commit updates the same pause (the engine pauses again:
    // its sha no longer equals the resumed one); the resume is left in place.
    let second = "3333333333333333333333333333333333333333";
    let (status, _) = h
        .deliver("workflow_run", &workflow_run("failure", second, 903))
        .await;
    assert_eq!(status, StatusCode::OK);
    let pauses = h.kube.pauses();
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

/// A throwaway RSA key for the fake GitHub App (the fake does not verify JWTs).
const TEST_APP_KEY: &str = r"-----BEGIN RSA PRIVATE KEY-----
MIIEowIBAAKCAQEAxLJBn6ZxYrsPAdREMmfVfMhbJPcuOHxlpwvcy99r7OaqyIPP
PsrLE8S3rHvXDTuAswHkPAUdkHQAIN24py6tBE/Bix59OqhHYYaIoAjXNBCDR5xU
cJdfHRJN4kDJd5LC2XuQIlm0ogKUf29PeRPC6/izw8DAgDAXkAza5//48aBrWzuG
WME64TSg+3aoP+PCSzCkEb7Xy1vPdm+ZC/6kixY5ujO+nnwc8eKNbsquYSBX9SHq
9Mr1FfMNsT9O97eRyx2jdRJ+Ko+tmBRu+vdooeGY5MNeEXjVibkuQ4il5BHQkgjE
REZatoqwCX2Y3imPHQWQWmAljNpG5DhT1W3ZcwIDAQABAoIBABKFdhnaTbJa/dp3
8LIBLM05F1TSp607w9101JlbIOnOSjkv9cuQw4pjGCgenMBLIMVgwYTug5Tbr28C
bpKwTPkE3F5et39wY0RPxQnliAO7JR/dnLMVAqivCNsFeB/eMTw5K96bYGxu9/YZ
KgkZiMQfVFum70ypLdbR6kNoflPPuZhY4ZJYDzZcx5LNPsMxyNDdDb6VFwNTBzqx
FiyyAxFv3wFRgM1UwnvovemxiPc3GYMD8QgIyrdaJ8+iWBB+7LgFerS9VnzIh4Iq
QI+j6A3Z0VYGaBX2kFVMFXM6u9kU4ve5O53r92uw25g/oPz0K9kwL2h7hAPfG/EV
ysXdD3kCgYEA7qCLXIBWgfxqvG/W/U20h/znk54+isAY9tpEfmVycp7USWTzqBp1
d80ctEYIv5dNI6YoZFmMHIXIMndlFuHow/7CMG3GRC6HK0qgRCSd+MPHcEdFTnGa
WQzdrr9aT8C3fe8NoMk/6TqlicBO9P7/4oXvroMvJ9zhDnYXU8zsQskCgYEA0wQ4
DhEdkYunKT9QTXo8kYgU7V7+joeQtoOFspTI7bvufQvOqZLw4MLaihgO8d1IRSq2
K8MlzvZFuyOHG0gKdxMf0+ziHk9S0J6uM7HDGJ7wtnzWvpIdfNq522Xj6VnC6vB/
Vk7qj3MMK3I4lQ3yFPCfWuqOEnm0G6lXYPHzPFsCgYBveANhpHnEorrhZ4UQMnpA
g/1RUbx5aB7BQVh5ir4ZmOQlnMjNH/77hY8BDy4LAYyBOJ7psYLn1/6axHcuZz0q
QRlJMh5Jv0pZCLUw38IDcMD7S++uIxcsvfvYI372flm4tDCziQ8XzdOCM5kujOfP
Uy2RYapnfqCK9tMSzEkZMQKBgQCyxflDmaaGX12AqX48FZpo5XRtYjShxiKJLkY/
9KOCHdzAHhe5PJ9MnGiP5DANIx8OUlBCJTPL8oNDN6dIKrGLDi3B2wf7C9MqobUO
YMTcABQJVxyMGbhXxer+AIWldgGYD6aiFXvNine9+ygKx+TXbsBjQyKYbnlzkfVQ
UctzzwKBgBCin/IbnNueu0VxvOGOViJ7gjJX9IkIKSp5ovoDnLCw4rwE15PEtNB3
eL2PLyZdsG40XuyoXO7vSsLKnn2+zzTS8cNgFfLCMK0z3QLbQeGw+RgdvY1fs6cA
loq2FAmoymt4ULZanPnm5ksnv1tT67spbXQy8pIbQ4l8YfSJScQj
-----END RSA PRIVATE KEY-----
";

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
