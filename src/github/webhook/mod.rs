//! The webhook receiver: `POST /webhook` turns GitHub's
//! `deployment_protection_rule` requests into DeploymentGates (and, when
//! configured, failed `workflow_run`s into ReleasePauses), and follows approved
//! deployments through `deployment_status` (see `deployment.rs`). It only writes
//! resources, never evaluates, and answers within GitHub's 10 seconds.
//!
//! Order of checks: body size (413) and arrival (408, see
//! `telemetry::listener`), signature over the raw body (401), a redelivery of
//! a delivery already answered (200, see `dedupe.rs`), then parsing (400
//! naming the field), the callback URL (400: possible forgery), and the write
//! (503 when the API server is too slow, so GitHub records a failed delivery
//! that the sweeper recovers). Nothing is written unless every check passed;
//! the one write is a single create. Log lines about unverified requests are
//! rate-limited (one a minute, with a count), since anyone can send them.

mod autopause;
mod dedupe;
mod deployment;
mod mapping;
mod payload;
mod signature;
mod sweeper;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};

use crate::api::DeploymentGate;
use crate::config::OperatorConfig;
use crate::github::GitHub;
use crate::telemetry::{Metrics, Throttle, is_body_timeout, labels};
use dedupe::{Deliveries, DeliveryKey};

pub use autopause::{REASON as AUTO_PAUSE_REASON, build_pause, matching_rules};
pub use deployment::{
    DeploymentStatusEvent, PAUSE_REASON as DEPLOY_PAUSE_REASON, build_pause as build_deploy_pause,
    find_gate,
};
pub use mapping::{
    GateKey, GateRequest, LABEL_ENVIRONMENT, LABEL_REPOSITORY, LABEL_RUN_ID, Merge, build_gate,
    deploy_pause_name, environment_label, gate_key, gate_name, merge, pause_name, repository_label,
    select_policy,
};
pub use payload::{DeploymentProtectionRuleEvent, FieldError, WorkflowRunEvent};
pub use signature::{SignatureError, sign, verify};
pub use sweeper::{SweepError, SweepReport};

/// Largest webhook body accepted (GitHub caps payloads at 25 MB; protection
/// rule requests are a few kilobytes).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The receiver's shared state: clients, configuration, the webhook secret
/// and metrics. Cheap to clone.
#[derive(Clone)]
pub struct Intake {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    github: GitHub,
    config: Arc<OperatorConfig>,
    secret: Vec<u8>,
    metrics: Metrics,
    write_timeout: Duration,
    /// Events for `deployment_status` transitions.
    recorder: crate::controller::record::Events,
}

impl Intake {
    /// The receiver. `webhook_secret` is the App's webhook secret, as mounted;
    /// API-server writes time out after `config.intake.writeTimeout`.
    pub fn new(
        client: Client,
        github: GitHub,
        config: Arc<OperatorConfig>,
        webhook_secret: String,
        metrics: Metrics,
    ) -> Intake {
        let write_timeout = config.intake.write_timeout;
        Intake {
            inner: Arc::new(Inner {
                recorder: crate::controller::record::Events::new(client.clone(), None),
                client,
                github,
                config,
                secret: webhook_secret.into_bytes(),
                metrics,
                write_timeout,
            }),
        }
    }
}

/// `POST /webhook`, with the 1 MiB body limit; nothing else is routed.
pub fn routes(intake: Intake) -> Router {
    Router::new()
        .route("/webhook", post(receive))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(Receiver {
            intake,
            memory: Arc::new(Memory::default()),
        })
}

/// The receiver's state: the intake, and what it remembers between deliveries.
#[derive(Clone)]
struct Receiver {
    intake: Intake,
    memory: Arc<Memory>,
}

/// What the receiver remembers between deliveries: those recently answered,
/// and when it last logged a request it could not trust.
struct Memory {
    deliveries: Deliveries,
    bad_signatures: Throttle,
    bad_bodies: Throttle,
}

impl Default for Memory {
    fn default() -> Self {
        Memory {
            deliveries: Deliveries::default(),
            bad_signatures: Throttle::per_minute(),
            bad_bodies: Throttle::per_minute(),
        }
    }
}

/// The answer to one delivery, and how it is counted.
struct Reply {
    status: StatusCode,
    event: String,
    outcome: &'static str,
    text: String,
}

impl Reply {
    fn new(
        status: StatusCode,
        event: &str,
        outcome: &'static str,
        text: impl Into<String>,
    ) -> Self {
        Reply {
            status,
            event: event.to_string(),
            outcome,
            text: text.into(),
        }
    }
}

async fn receive(
    State(receiver): State<Receiver>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let intake = &receiver.intake;
    let reply = intake.handle(&receiver.memory, &headers, body).await;
    intake
        .inner
        .metrics
        .webhooks
        .get_or_create(&labels([
            ("event", &reply.event),
            ("outcome", reply.outcome),
        ]))
        .inc();
    (reply.status, reply.text).into_response()
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

impl Intake {
    async fn handle(
        &self,
        memory: &Memory,
        headers: &HeaderMap,
        body: Result<Bytes, BytesRejection>,
    ) -> Reply {
        // Until the signature is checked, nothing in the request is trusted,
        // not even the event name used as a metric label.
        let body = match body {
            Ok(b) => b,
            Err(rejection) => {
                let (status, outcome, text) = if is_body_timeout(&rejection) {
                    (
                        StatusCode::REQUEST_TIMEOUT,
                        "timed_out",
                        "the request body did not arrive in time".to_string(),
                    )
                } else if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    (rejection.status(), "too_large", rejection.body_text())
                } else {
                    (rejection.status(), "unreadable", rejection.body_text())
                };
                if let Some(suppressed) = memory.bad_bodies.admit() {
                    tracing::warn!(status = status.as_u16(), error = %text, suppressed, "webhook body refused (one line a minute; `suppressed` is the count left out)");
                }
                return Reply::new(status, "unverified", outcome, text);
            }
        };
        let delivery = header(headers, "x-github-delivery")
            .unwrap_or("-")
            .to_string();
        let signature = header(headers, "x-hub-signature-256");
        if let Err(e) = signature::verify(&self.inner.secret, &body, signature) {
            self.inner.metrics.signature_failures.inc();
            if let Some(suppressed) = memory.bad_signatures.admit() {
                tracing::warn!(delivery = %delivery, error = %e, suppressed, "webhook refused: bad signature (one line a minute; `suppressed` is the count left out)");
            }
            return Reply::new(
                StatusCode::UNAUTHORIZED,
                "unverified",
                "unauthorized",
                e.to_string(),
            );
        }
        let Some(event) = header(headers, "x-github-event") else {
            return Reply::new(
                StatusCode::BAD_REQUEST,
                "unknown",
                "malformed",
                "the X-GitHub-Event header is missing",
            );
        };
        // Only the events whose handling writes objects are deduplicated: a
        // replayed deployment_status is already absorbed without a write, and
        // its answer says why.
        let key = matches!(event, "deployment_protection_rule" | "workflow_run")
            .then(|| DeliveryKey::new(header(headers, "x-github-delivery"), signature))
            .flatten();
        if let Some(key) = &key
            && memory.deliveries.seen(key, tokio::time::Instant::now())
        {
            self.inner.metrics.duplicate_deliveries.inc();
            tracing::info!(delivery = %delivery, event = %event, "redelivery of a delivery already answered; nothing written");
            return Reply::new(
                StatusCode::OK,
                event,
                "duplicate_delivery",
                format!("delivery {delivery} was already handled"),
            );
        }
        let reply = self.dispatch(event, &body, &delivery).await;
        if let Some(key) = key
            && reply.status.is_success()
        {
            memory.deliveries.record(key, tokio::time::Instant::now());
        }
        reply
    }

    async fn dispatch(&self, event: &str, body: &Bytes, delivery: &str) -> Reply {
        match event {
            "ping" => Reply::new(StatusCode::OK, event, "pong", "pong"),
            "deployment_protection_rule" => self.protection_rule(body, delivery).await,
            "workflow_run" => self.workflow_run(body, delivery).await,
            "deployment_status" => self.deployment_status(body, delivery).await,
            other => {
                tracing::info!(delivery = %delivery, event = %other, "ignoring a webhook event Tollgate does not handle");
                let label: String = other.chars().take(64).collect();
                Reply::new(
                    StatusCode::ACCEPTED,
                    &label,
                    "ignored",
                    format!("event {other} is not handled"),
                )
            }
        }
    }

    async fn protection_rule(&self, body: &[u8], delivery: &str) -> Reply {
        const EVENT: &str = "deployment_protection_rule";
        let bad = |text: String| {
            tracing::warn!(delivery = %delivery, error = %text, "malformed deployment_protection_rule webhook");
            Reply::new(StatusCode::BAD_REQUEST, EVENT, "malformed", text)
        };
        let action = match serde_json::from_slice::<payload::Action>(body) {
            Ok(a) => a.action,
            Err(e) => return bad(payload::describe_json_error(EVENT, &e)),
        };
        if action.as_deref() != Some("requested") {
            tracing::info!(delivery = %delivery, action = ?action, "ignoring a deployment_protection_rule action other than requested");
            return Reply::new(
                StatusCode::ACCEPTED,
                EVENT,
                "ignored",
                format!("action {action:?} is not handled"),
            );
        }
        let ev: DeploymentProtectionRuleEvent = match serde_json::from_slice(body) {
            Ok(ev) => ev,
            Err(e) => return bad(payload::describe_json_error(EVENT, &e)),
        };
        if let Err(e) = ev.check() {
            return bad(format!("invalid {EVENT} payload: {e}"));
        }
        let sha = match ev.commit() {
            Ok(s) => s,
            Err(e) => return bad(format!("invalid {EVENT} payload: {e}")),
        };
        let repository = ev.repository.full_name.clone();
        let run_id = match self
            .inner
            .github
            .callback_run_id(&ev.deployment_callback_url, &repository)
        {
            Ok(id) => id,
            Err(e) => {
                tracing::warn!(
                    delivery = %delivery,
                    repository = %repository,
                    environment = %ev.environment,
                    callback_url = %ev.deployment_callback_url,
                    error = %e,
                    "refusing a deployment_protection_rule webhook: its callback URL is not the review endpoint on the configured GitHub API (possible forgery)"
                );
                return Reply::new(
                    StatusCode::BAD_REQUEST,
                    EVENT,
                    "forged",
                    format!("field `deployment_callback_url` refused: {e}"),
                );
            }
        };
        let request = GateRequest {
            repository,
            environment: ev.environment.clone(),
            sha,
            git_ref: ev.reference(),
            run_id,
            installation_id: ev.installation.as_ref().map(|i| i.id),
            deployment_id: ev.deployment.as_ref().map(|d| d.id),
        };
        let gate = build_gate(&self.inner.config, &request);
        let namespace = gate.metadata.namespace.clone().unwrap_or_default();
        let name = gate.metadata.name.clone().unwrap_or_default();
        let written =
            tokio::time::timeout(self.inner.write_timeout, self.write_gate(&gate, &request)).await;
        let log = |outcome: &str| {
            tracing::info!(
                delivery = %delivery,
                gate = %format!("{namespace}/{name}"),
                repository = %request.repository,
                environment = %request.environment,
                sha = %request.sha,
                run_id = request.run_id,
                outcome,
                "deployment_protection_rule request"
            );
        };
        match written {
            Ok(Ok(GateWrite::Created)) => {
                self.inner.metrics.gates_created.inc();
                log("created");
                Reply::new(
                    StatusCode::CREATED,
                    EVENT,
                    "created",
                    format!("created DeploymentGate {namespace}/{name}"),
                )
            }
            Ok(Ok(GateWrite::Merged)) => {
                log("merged");
                Reply::new(
                    StatusCode::OK,
                    EVENT,
                    "merged",
                    format!(
                        "DeploymentGate {namespace}/{name} exists; added the new request's details"
                    ),
                )
            }
            Ok(Ok(GateWrite::Duplicate)) => {
                log("duplicate");
                Reply::new(
                    StatusCode::OK,
                    EVENT,
                    "duplicate",
                    format!("DeploymentGate {namespace}/{name} exists"),
                )
            }
            Ok(Ok(GateWrite::Conflict(why))) => {
                tracing::error!(delivery = %delivery, gate = %format!("{namespace}/{name}"), reason = %why, "a different DeploymentGate holds this request's name");
                Reply::new(
                    StatusCode::CONFLICT,
                    EVENT,
                    "conflict",
                    format!("DeploymentGate {namespace}/{name}: {why}"),
                )
            }
            Ok(Err(e)) => {
                tracing::error!(delivery = %delivery, gate = %format!("{namespace}/{name}"), error = %e, "cannot write the DeploymentGate; GitHub records a failed delivery for the sweeper to recover");
                let status = match &e {
                    kube::Error::Api(s) if s.code >= 500 || s.code == 429 => {
                        StatusCode::SERVICE_UNAVAILABLE
                    }
                    kube::Error::Api(_) => StatusCode::INTERNAL_SERVER_ERROR,
                    _ => StatusCode::SERVICE_UNAVAILABLE,
                };
                Reply::new(
                    status,
                    EVENT,
                    "error",
                    format!("cannot write DeploymentGate {namespace}/{name}: {e}"),
                )
            }
            Err(_) => {
                tracing::error!(delivery = %delivery, gate = %format!("{namespace}/{name}"), timeout = ?self.inner.write_timeout, "the API server did not write the DeploymentGate in time; GitHub records a failed delivery for the sweeper to recover");
                Reply::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    EVENT,
                    "unavailable",
                    format!(
                        "the Kubernetes API server did not write DeploymentGate {namespace}/{name} in time"
                    ),
                )
            }
        }
    }

    /// Creates the gate; on AlreadyExists, merges the request into the existing one.
    async fn write_gate(
        &self,
        gate: &DeploymentGate,
        request: &GateRequest,
    ) -> Result<GateWrite, kube::Error> {
        let namespace = gate
            .metadata
            .namespace
            .as_deref()
            .expect("build_gate sets the namespace");
        let name = gate
            .metadata
            .name
            .as_deref()
            .expect("build_gate sets the name");
        let api: Api<DeploymentGate> = Api::namespaced(self.inner.client.clone(), namespace);
        match api.create(&PostParams::default(), gate).await {
            Ok(_) => return Ok(GateWrite::Created),
            Err(kube::Error::Api(s)) if s.is_already_exists() => {}
            Err(e) => return Err(e),
        }
        let existing = api.get(name).await?;
        match merge(&existing, request) {
            Merge::Unchanged => Ok(GateWrite::Duplicate),
            Merge::Conflict(why) => Ok(GateWrite::Conflict(why)),
            Merge::AddsInformation(spec) => {
                // Optimistic concurrency: if the gate changed since it was read
                // (e.g. it was just decided), leave it alone.
                let patch = serde_json::json!({
                    "metadata": {"resourceVersion": existing.metadata.resource_version},
                    "spec": spec,
                });
                match api
                    .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    Ok(_) => Ok(GateWrite::Merged),
                    Err(kube::Error::Api(s)) if s.is_conflict() => Ok(GateWrite::Duplicate),
                    Err(e) => Err(e),
                }
            }
        }
    }

    async fn workflow_run(&self, body: &[u8], delivery: &str) -> Reply {
        const EVENT: &str = "workflow_run";
        let config = &self.inner.config;
        if config.auto_pause.is_empty() {
            return Reply::new(
                StatusCode::ACCEPTED,
                EVENT,
                "ignored",
                "no autoPause rules are configured",
            );
        }
        let ev: WorkflowRunEvent = match serde_json::from_slice(body) {
            Ok(ev) => ev,
            Err(e) => {
                let text = payload::describe_json_error(EVENT, &e);
                tracing::warn!(delivery = %delivery, error = %text, "malformed workflow_run webhook");
                return Reply::new(StatusCode::BAD_REQUEST, EVENT, "malformed", text);
            }
        };
        let rules = matching_rules(&config.auto_pause, &ev);
        if rules.is_empty() {
            return Reply::new(
                StatusCode::ACCEPTED,
                EVENT,
                "ignored",
                "not a failed run on a watched branch",
            );
        }
        let mut pauses = Vec::with_capacity(rules.len());
        for rule in rules {
            match build_pause(config, rule, &ev) {
                Ok(p) => pauses.push(p),
                Err(e) => {
                    return Reply::new(
                        StatusCode::BAD_REQUEST,
                        EVENT,
                        "malformed",
                        format!("invalid {EVENT} payload: {e}"),
                    );
                }
            }
        }
        let mut written = Vec::new();
        for pause in &pauses {
            let id = format!(
                "{}/{}",
                pause.metadata.namespace.as_deref().unwrap_or_default(),
                pause.metadata.name.as_deref().unwrap_or_default()
            );
            match tokio::time::timeout(
                self.inner.write_timeout,
                autopause::write(&self.inner.client, pause),
            )
            .await
            {
                Ok(Ok(how)) => {
                    self.inner.metrics.auto_pauses.inc();
                    tracing::info!(
                        delivery = %delivery,
                        pause = %id,
                        repository = %ev.repository.full_name,
                        sha = %ev.workflow_run.head_sha,
                        run_id = ev.workflow_run.id,
                        written = ?how,
                        "a failed workflow run paused releases"
                    );
                    written.push(id);
                }
                Ok(Err(e)) => {
                    tracing::error!(delivery = %delivery, pause = %id, error = %e, "cannot write the ReleasePause");
                    return Reply::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        EVENT,
                        "error",
                        format!("cannot write ReleasePause {id}: {e}"),
                    );
                }
                Err(_) => {
                    tracing::error!(delivery = %delivery, pause = %id, "the API server did not write the ReleasePause in time");
                    return Reply::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        EVENT,
                        "unavailable",
                        format!(
                            "the Kubernetes API server did not write ReleasePause {id} in time"
                        ),
                    );
                }
            }
        }
        Reply::new(
            StatusCode::OK,
            EVENT,
            "paused",
            format!("paused releases: {}", written.join(", ")),
        )
    }
}

/// What writing a gate did.
enum GateWrite {
    Created,
    /// The gate existed and was undecided; the request filled in missing details.
    Merged,
    /// The gate existed; nothing new.
    Duplicate,
    /// Another request's gate holds the name.
    Conflict(String),
}
