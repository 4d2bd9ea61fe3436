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
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};

use crate::api::{DeploymentGate, LABEL_MADE_BY, MADE_BY_INTAKE};
use crate::config::OperatorConfig;
use crate::controller::GateIndex;
use crate::github::GitHub;
use crate::telemetry::{Metrics, Throttle, is_body_timeout, labels};
use dedupe::{Deliveries, DeliveryKey};

pub use autopause::{REASON as AUTO_PAUSE_REASON, matching_rules, pause_for_failed_run};
pub use deployment::{
    DeploymentStatusEvent, PAUSE_REASON as DEPLOY_PAUSE_REASON, find_gate,
    pause_for_failed_deployment,
};
pub use mapping::{
    GateKey, GateRequest, LABEL_ENVIRONMENT, LABEL_REPOSITORY, LABEL_RUN_ID, Merge, build_gate,
    candidate_names, deploy_pause_name, environment_label, gate_key, gate_name, made_by_intake,
    merge, pause_name, repository_label, same_request,
};
pub use payload::{DeploymentProtectionRuleEvent, FieldError, WorkflowRunEvent};
pub use signature::{SignatureError, sign, verify};
pub use sweeper::{SweepError, SweepReport};

/// Largest webhook body accepted, 1 MiB (GitHub caps payloads at 25 MB;
/// protection rule requests are a few kilobytes). A larger one is answered
/// 413, saying the limit, and the sweeper never redelivers it.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The receiver's shared state: clients, configuration, the webhook secret
/// and metrics. Cheap to clone.
#[derive(Clone)]
pub struct Intake {
    inner: Arc<Inner>,
    /// Where gates are: `deployment_status` finds its gate here, never by a LIST.
    index: GateIndex,
}

struct Inner {
    client: Client,
    github: GitHub,
    config: Arc<OperatorConfig>,
    /// Which namespaces may gate which repositories: a gate elsewhere never
    /// takes a deployment's outcome.
    tenancy: crate::policy::Tenancy,
    secret: Vec<u8>,
    metrics: Metrics,
    write_timeout: Duration,
    /// Events for `deployment_status` transitions.
    recorder: crate::cluster::events::Events,
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
            index: GateIndex::new(),
            inner: Arc::new(Inner {
                recorder: crate::cluster::events::Events::new(client.clone(), None),
                client,
                github,
                tenancy: config.tenancy(),
                config,
                secret: webhook_secret.into_bytes(),
                metrics,
                write_timeout,
            }),
        }
    }
}

impl Intake {
    /// The index `deployment_status` finds gates in. Whoever watches the
    /// gates feeds it: the controllers (`controller::run_wired`), or on a
    /// standby replica `controller::index::follow`.
    pub fn gate_index(&self) -> GateIndex {
        self.index.clone()
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
                    (
                        rejection.status(),
                        "too_large",
                        format!(
                            "the webhook body is larger than the limit of {MAX_BODY_BYTES} bytes (1 MiB)"
                        ),
                    )
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
            // GitHub's 30 days count from the request: the deployment's creation,
            // else now (the receipt). Intake is an edge: it may read the clock.
            requested_at: ev
                .deployment
                .as_ref()
                .and_then(|d| d.created_at)
                .unwrap_or_else(jiff::Timestamp::now),
            delivery: (delivery != "-").then(|| delivery.to_string()),
        };
        let gate = build_gate(&self.inner.config, &request);
        let namespace = gate.metadata.namespace.clone().unwrap_or_default();
        let primary = gate.metadata.name.clone().unwrap_or_default();
        let written =
            tokio::time::timeout(self.inner.write_timeout, self.write_gate(gate, &request)).await;
        let name = match &written {
            Ok(Ok(GateWrite::Created(n) | GateWrite::Merged(n) | GateWrite::Duplicate(n))) => {
                n.clone()
            }
            _ => primary,
        };
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
            Ok(Ok(GateWrite::Created(_))) => {
                self.inner.metrics.gates_created.inc();
                log("created");
                Reply::new(
                    StatusCode::CREATED,
                    EVENT,
                    "created",
                    format!("created DeploymentGate {namespace}/{name}"),
                )
            }
            Ok(Ok(GateWrite::Merged(_))) => {
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
            Ok(Ok(GateWrite::Duplicate(_))) => {
                log("duplicate");
                Reply::new(
                    StatusCode::OK,
                    EVENT,
                    "duplicate",
                    format!("DeploymentGate {namespace}/{name} exists"),
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

    /// Writes the request's gate: an undecided gate of the same run and
    /// environment takes it (matrix jobs share one answer); otherwise a new
    /// gate under the first of its names that is free. A name held by a gate
    /// intake did not make (or made for another request) is skipped, with an
    /// Event on that gate; the request is never dropped.
    async fn write_gate(
        &self,
        mut gate: DeploymentGate,
        request: &GateRequest,
    ) -> Result<GateWrite, kube::Error> {
        let namespace = gate
            .metadata
            .namespace
            .clone()
            .expect("build_gate sets the namespace");
        let api: Api<DeploymentGate> = Api::namespaced(self.inner.client.clone(), &namespace);
        let selector = format!(
            "{LABEL_RUN_ID}={},{LABEL_MADE_BY}={MADE_BY_INTAKE}",
            request.run_id
        );
        let same_run = api.list(&ListParams::default().labels(&selector)).await?;
        if let Some(g) = same_run
            .items
            .iter()
            .find(|g| same_request(g, request))
            .or_else(|| {
                same_run.items.iter().find(|g| {
                    matches!(
                        merge(g, request),
                        Merge::AddsInformation(_) | Merge::Unchanged
                    )
                })
            })
        {
            return self.merge_into(&api, g, request).await;
        }
        let mut strangers: Vec<(DeploymentGate, String)> = Vec::new();
        let mut outcome = None;
        for name in candidate_names(request) {
            gate.metadata.name = Some(name.clone());
            match api.create(&PostParams::default(), &gate).await {
                Ok(_) => {
                    outcome = Some(GateWrite::Created(name));
                    break;
                }
                Err(kube::Error::Api(s)) if s.is_already_exists() => {}
                Err(e) => return Err(e),
            }
            let Some(existing) = api.get_opt(&name).await? else {
                continue;
            };
            match merge(&existing, request) {
                Merge::Answered => continue,
                Merge::Stranger(why) => strangers.push((existing, why)),
                Merge::Unchanged | Merge::AddsInformation(_) => {
                    outcome = Some(self.merge_into(&api, &existing, request).await?);
                    break;
                }
            }
        }
        let outcome = match outcome {
            Some(o) => o,
            None => {
                // Every deterministic name is held: the API server picks one.
                let prefix: String =
                    gate_name(&request.repository, &request.environment, request.run_id)
                        .chars()
                        .take(57)
                        .collect();
                gate.metadata.name = None;
                gate.metadata.generate_name = Some(format!("{}-", prefix.trim_end_matches('-')));
                let created = api.create(&PostParams::default(), &gate).await?;
                GateWrite::Created(created.metadata.name.unwrap_or_default())
            }
        };
        let (GateWrite::Created(ours) | GateWrite::Merged(ours) | GateWrite::Duplicate(ours)) =
            &outcome;
        for (stranger, why) in strangers {
            tracing::warn!(
                gate = %format!("{namespace}/{}", stranger.metadata.name.as_deref().unwrap_or("")),
                repository = %request.repository,
                environment = %request.environment,
                run_id = request.run_id,
                reason = %why,
                "a gate holds the name intake uses for a request; the request got another gate"
            );
            let t = crate::cluster::events::Transition {
                reason: "NameTaken",
                note: format!(
                    "this gate holds the name intake uses for {} {} run {} ({why}); the request was written to gate {namespace}/{ours}",
                    request.repository, request.environment, request.run_id
                ),
                warning: true,
            };
            crate::cluster::events::publish(&self.inner.recorder, &stranger, &t).await;
        }
        Ok(outcome)
    }

    /// Fills in what an existing gate of the same request lacks.
    async fn merge_into(
        &self,
        api: &Api<DeploymentGate>,
        existing: &DeploymentGate,
        request: &GateRequest,
    ) -> Result<GateWrite, kube::Error> {
        let name = existing.metadata.name.clone().unwrap_or_default();
        let Merge::AddsInformation(spec) = merge(existing, request) else {
            return Ok(GateWrite::Duplicate(name));
        };
        // Optimistic concurrency: if the gate changed since it was read
        // (e.g. it was just decided), leave it alone.
        let patch = serde_json::json!({
            "metadata": {"resourceVersion": existing.metadata.resource_version},
            "spec": spec,
        });
        match api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(GateWrite::Merged(name)),
            Err(kube::Error::Api(s)) if s.is_conflict() => Ok(GateWrite::Duplicate(name)),
            Err(e) => Err(e),
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
            match pause_for_failed_run(config, rule, &ev) {
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

/// What writing a gate did, and the gate's name.
enum GateWrite {
    Created(String),
    /// An undecided gate of the same run shares the request; it filled in missing details.
    Merged(String),
    /// The request's gate exists (a redelivery), or an undecided one shares it; nothing new.
    Duplicate(String),
}
