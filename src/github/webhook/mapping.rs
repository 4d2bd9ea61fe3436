//! From a verified request to the DeploymentGate it becomes: the policy that
//! applies, the gate's namespace, name, labels and spec. Pure: no I/O.
//!
//! A request is (repository, workflow run, deployment, environment). GitHub
//! sends one `deployment_protection_rule` request per job that targets a
//! protected environment, with that job's `deployment.id`; one review
//! (`POST …/runs/{run_id}/deployment_protection_rule` with `environment_name`)
//! answers every job of the run waiting on that environment at once. So:
//!
//! - requests of one run and environment that arrive while its gate is still
//!   undecided (matrix jobs pending together) share that gate and its answer;
//! - a request that arrives after the run's gate for that environment was
//!   decided (a re-run, which brings a new run attempt and a new deployment, or
//!   a later job of the same run) is a new request with a gate and an answer of
//!   its own;
//! - a redelivery (same deployment id, or same `X-GitHub-Delivery`) is the same
//!   request and lands on the same gate.
//!
//! Names are deterministic, so redeliveries are idempotent:
//!
//! - the first gate of a run and environment is `<repo>-<env>-<run_id>`, where
//!   `<repo>` is `owner-name` and both parts are lowercased with every run of
//!   characters outside `[a-z0-9]` turned into one `-`;
//! - a later request's gate adds its deployment id, `…-<run_id>-d<deployment>`
//!   (or, without a deployment, 8 hex digits of its delivery id: `…-r<hash8>`);
//! - when the name is longer than 63 characters, or the environment lost
//!   characters to sanitising (`prod.eu` and `prod-eu` would otherwise
//!   collide), the `<repo>-<env>` part is cut short and followed by 8 hex
//!   digits of SHA-256 over (repository, environment, run id), lowercased.
//!
//! The result is always a valid DNS label (at most 63 characters). Repository
//! and environment names compare case-insensitively, as at GitHub.

use std::collections::BTreeMap;

use kube::api::ObjectMeta;
use sha2::{Digest, Sha256};

use jiff::Timestamp;

use crate::api::{
    ANNOTATION_DELIVERY, DeploymentGate, DeploymentGateSpec, FINALIZER, LABEL_MADE_BY,
    MADE_BY_INTAKE,
};
use crate::config::OperatorConfig;

/// Label holding the repository as `owner.name` (owner logins cannot contain a
/// dot, so the first dot separates them), lowercased.
pub const LABEL_REPOSITORY: &str = "tollgate.dev/repository";
/// Label holding the environment, sanitised to a label value.
pub const LABEL_ENVIRONMENT: &str = "tollgate.dev/environment";
/// Label holding the workflow run id.
pub const LABEL_RUN_ID: &str = "tollgate.dev/run-id";

/// Longest Kubernetes name Tollgate generates (a DNS label).
const MAX_NAME: usize = 63;

/// What a verified `deployment_protection_rule` request says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateRequest {
    /// `owner/name`, as GitHub spells it.
    pub repository: String,
    pub environment: String,
    /// 40 lowercase hex digits.
    pub sha: String,
    pub git_ref: Option<String>,
    pub run_id: i64,
    pub installation_id: Option<i64>,
    pub deployment_id: Option<i64>,
    /// When GitHub raised the request: the deployment's `created_at`, else the
    /// webhook's receipt.
    pub requested_at: Timestamp,
    /// The `X-GitHub-Delivery` id (the same on redeliveries).
    pub delivery: Option<String>,
}

/// Where a request's gate lives and what it is called.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateKey {
    pub namespace: String,
    pub name: String,
}

/// The namespace and name of the gate for (repository, environment, run id).
pub fn gate_key(
    config: &OperatorConfig,
    repository: &str,
    environment: &str,
    run_id: i64,
) -> GateKey {
    let namespace = config
        .policy_for(repository, environment)
        .and_then(|(_, p)| p.namespace.clone())
        .unwrap_or_else(|| config.defaults.namespace.clone());
    GateKey {
        namespace,
        name: gate_name(repository, environment, run_id),
    }
}

/// The deterministic name of a run's first gate for an environment; see the
/// module documentation.
pub fn gate_name(repository: &str, environment: &str, run_id: i64) -> String {
    named(repository, environment, run_id, None)
}

/// The names a request's gate may take, in order: the run's first gate, then
/// one of the request's own (by deployment, else by delivery), then one by a
/// hash of the whole request (when the others are held by a stranger's gate).
pub fn candidate_names(request: &GateRequest) -> Vec<String> {
    let (repo, env, run) = (
        request.repository.as_str(),
        request.environment.as_str(),
        request.run_id,
    );
    let mut names = vec![gate_name(repo, env, run)];
    match (request.deployment_id, &request.delivery) {
        (Some(d), _) => names.push(named(repo, env, run, Some(&format!("d{d}")))),
        (None, Some(g)) => names.push(named(
            repo,
            env,
            run,
            Some(&format!("r{}", short_hash(&[g]))),
        )),
        (None, None) => {}
    }
    let whole = short_hash(&[
        &repo.to_ascii_lowercase(),
        &env.to_lowercase(),
        &run.to_string(),
        &request.deployment_id.unwrap_or(0).to_string(),
        request.delivery.as_deref().unwrap_or(""),
        &request.sha,
    ]);
    names.push(named(repo, env, run, Some(&format!("x{whole}"))));
    names
}

fn named(repository: &str, environment: &str, run_id: i64, tail: Option<&str>) -> String {
    let env = environment.to_lowercase();
    let env_part = dns_part(&env);
    let base = join_nonempty(&[dns_part(repository), env_part.clone()]);
    let suffix = match tail {
        Some(t) => format!("-{run_id}-{t}"),
        None => format!("-{run_id}"),
    };
    let lossless = env_part == env;
    if lossless && !base.is_empty() && base.len() + suffix.len() <= MAX_NAME {
        return format!("{base}{suffix}");
    }
    let hash = short_hash(&[&repository.to_ascii_lowercase(), &env, &run_id.to_string()]);
    let room = MAX_NAME.saturating_sub(suffix.len() + hash.len() + 1);
    let cut = cut_label(&base, room);
    if cut.is_empty() {
        format!("{hash}{suffix}")
    } else {
        format!("{cut}-{hash}{suffix}")
    }
}

/// The deterministic name of the ReleasePause for failed runs on (repository,
/// branch): `ci-failed-<repo>-<branch>`, with the same hashing rule as gates.
pub fn pause_name(repository: &str, branch: &str) -> String {
    prefixed_name("ci-failed", repository, branch)
}

/// The deterministic name of the ReleasePause for failed deployments to
/// (repository, environment): `deploy-failed-<repo>-<env>`, with the same
/// hashing rule as gates. Environments compare case-insensitively.
pub fn deploy_pause_name(repository: &str, environment: &str) -> String {
    prefixed_name("deploy-failed", repository, &environment.to_lowercase())
}

fn prefixed_name(prefix: &str, repository: &str, part: &str) -> String {
    let base = join_nonempty(&[prefix.into(), dns_part(repository), dns_part(part)]);
    let lossless = dns_part(part) == part;
    if lossless && base.len() <= MAX_NAME {
        return base;
    }
    let hash = short_hash(&[&repository.to_ascii_lowercase(), part]);
    let cut = cut_label(&base, MAX_NAME - hash.len() - 1);
    format!("{cut}-{hash}")
}

/// The repository label value: `owner.name`, lowercased.
pub fn repository_label(repository: &str) -> String {
    label_value(&repository.to_ascii_lowercase().replacen('/', ".", 1))
}

/// The environment label value: the name with characters a label value cannot
/// hold turned into `-`.
pub fn environment_label(environment: &str) -> String {
    label_value(environment)
}

/// The DeploymentGate for `request`, as the webhook creates it: in the policy's
/// namespace, with the policy's spec, labels, and the answer finalizer already
/// set so the controller needs no extra write.
pub fn build_gate(config: &OperatorConfig, request: &GateRequest) -> DeploymentGate {
    let policy = config
        .policy_for(&request.repository, &request.environment)
        .map(|(_, p)| p);
    let key = gate_key(
        config,
        &request.repository,
        &request.environment,
        request.run_id,
    );
    let spec = DeploymentGateSpec {
        repository: request.repository.clone(),
        environment: request.environment.clone(),
        sha: request.sha.clone(),
        git_ref: request.git_ref.clone(),
        run_id: request.run_id,
        installation_id: request.installation_id,
        deployment_id: request.deployment_id,
        deployment_ids: Vec::new(),
        requested_at: Some(request.requested_at),
        deadline: None,
        timeout: policy.and_then(|p| p.timeout.clone()),
        on_deadline: policy
            .and_then(|p| p.on_deadline)
            .unwrap_or(config.defaults.on_deadline),
        required_checks: policy
            .map(|p| p.required_checks.clone())
            .unwrap_or_default(),
        require_healthy: policy
            .map(|p| p.require_healthy.clone())
            .unwrap_or_default(),
        analysis: policy.map(|p| p.analysis.clone()).unwrap_or_default(),
        decision_override: None,
        dry_run: policy.is_some_and(|p| p.dry_run),
    };
    let labels = BTreeMap::from([
        (
            LABEL_REPOSITORY.to_string(),
            repository_label(&request.repository),
        ),
        (
            LABEL_ENVIRONMENT.to_string(),
            environment_label(&request.environment),
        ),
        (LABEL_RUN_ID.to_string(), request.run_id.to_string()),
        (LABEL_MADE_BY.to_string(), MADE_BY_INTAKE.to_string()),
    ]);
    let annotations = request
        .delivery
        .as_ref()
        .map(|d| BTreeMap::from([(ANNOTATION_DELIVERY.to_string(), d.clone())]));
    DeploymentGate {
        metadata: ObjectMeta {
            name: Some(key.name),
            namespace: Some(key.namespace),
            labels: Some(labels),
            annotations,
            finalizers: Some(vec![FINALIZER.to_string()]),
            ..ObjectMeta::default()
        },
        spec,
        status: None,
    }
}

/// How a request relates to a gate found under one of its names, or for its run.
#[derive(Debug, Clone, PartialEq)]
pub enum Merge {
    /// Same request (a redelivery), or one that shares this undecided gate;
    /// nothing to write.
    Unchanged,
    /// Shares this undecided gate and adds these spec fields (a JSON merge
    /// patch of `spec`).
    AddsInformation(serde_json::Value),
    /// Intake's gate for an earlier request of the same run and environment,
    /// already decided: this request needs a gate of its own.
    Answered,
    /// Not intake's gate for this run, environment and commit (hand-made, or
    /// about another request): it must not take this request.
    Stranger(String),
}

/// True when intake wrote `gate` (its `tollgate.dev/made-by` label).
pub fn made_by_intake(gate: &DeploymentGate) -> bool {
    gate.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(LABEL_MADE_BY))
        .is_some_and(|v| v == MADE_BY_INTAKE)
}

/// True when `existing` is the gate this very request created (a redelivery):
/// the same deployment, or, without one, the same delivery id.
pub fn same_request(existing: &DeploymentGate, request: &GateRequest) -> bool {
    if !same_run(existing, request) {
        return false;
    }
    match (existing.spec.deployment_id, request.deployment_id) {
        (Some(_), Some(b)) => existing.spec.follows_deployment(b),
        _ => {
            let theirs = existing
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(ANNOTATION_DELIVERY));
            theirs.is_some() && theirs == request.delivery.as_ref()
        }
    }
}

fn same_run(existing: &DeploymentGate, request: &GateRequest) -> bool {
    let spec = &existing.spec;
    made_by_intake(existing)
        && spec.repository.eq_ignore_ascii_case(&request.repository)
        && spec.environment.to_lowercase() == request.environment.to_lowercase()
        && spec.run_id == request.run_id
        && spec.sha == request.sha
}

/// Compares a request with a gate found under one of its names. An undecided
/// gate of the same run shares its answer, and only fields it lacks are
/// filled in.
pub fn merge(existing: &DeploymentGate, request: &GateRequest) -> Merge {
    if !same_run(existing, request) {
        let spec = &existing.spec;
        let why = if !made_by_intake(existing) {
            format!(
                "gate {} was not made by intake (no {LABEL_MADE_BY}={MADE_BY_INTAKE} label)",
                existing.metadata.name.as_deref().unwrap_or("")
            )
        } else {
            format!(
                "gate is for {} {} run {} commit {}, not {} {} run {} commit {}",
                spec.repository,
                spec.environment,
                spec.run_id,
                spec.sha,
                request.repository,
                request.environment,
                request.run_id,
                request.sha
            )
        };
        return Merge::Stranger(why);
    }
    let spec = &existing.spec;
    let decided = existing
        .status
        .as_ref()
        .is_some_and(|s| s.decision.is_some() || s.phase.is_some_and(|p| p.is_terminal()));
    if decided {
        return if same_request(existing, request) {
            Merge::Unchanged
        } else {
            Merge::Answered
        };
    }
    let mut patch = serde_json::Map::new();
    match (spec.deployment_id, request.deployment_id) {
        (None, Some(id)) => {
            patch.insert("deploymentId".into(), id.into());
        }
        // Another job's request shares this gate: follow its deployment too.
        // (A merge patch replaces a list: the whole list is sent.)
        (Some(_), Some(id)) if !spec.follows_deployment(id) && spec.deployment_ids.len() < 256 => {
            let mut ids = spec.deployment_ids.clone();
            ids.push(id);
            patch.insert("deploymentIds".into(), ids.into());
        }
        _ => {}
    }
    if spec.installation_id.is_none()
        && let Some(id) = request.installation_id
    {
        patch.insert("installationId".into(), id.into());
    }
    if spec.git_ref.is_none()
        && let Some(r) = &request.git_ref
    {
        patch.insert("ref".into(), r.clone().into());
    }
    if patch.is_empty() {
        Merge::Unchanged
    } else {
        Merge::AddsInformation(serde_json::Value::Object(patch))
    }
}

/// Lowercase, runs outside `[a-z0-9]` become one `-`, no `-` at either end.
fn dns_part(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_string()
}

fn join_nonempty(parts: &[String]) -> String {
    parts
        .iter()
        .filter(|p| !p.is_empty())
        .cloned()
        .collect::<Vec<_>>()
        .join("-")
}

/// At most `max` bytes of an ASCII label, without a trailing `-`.
fn cut_label(s: &str, max: usize) -> String {
    s[..s.len().min(max)].trim_end_matches('-').to_string()
}

fn short_hash(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0u8]);
    }
    hex::encode(&h.finalize()[..4])
}

/// A valid label value: at most 63 of `[A-Za-z0-9._-]`, alphanumeric at both ends.
fn label_value(s: &str) -> String {
    let mapped: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    let trimmed = mapped.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    if trimmed.len() <= MAX_NAME {
        return trimmed.to_string();
    }
    let hash = short_hash(&[s]);
    let cut =
        trimmed[..MAX_NAME - hash.len() - 1].trim_end_matches(|c: char| !c.is_ascii_alphanumeric());
    format!("{cut}-{hash}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{OnDeadline, Phase, WorkloadKind, WorkloadRef};

    fn is_dns_label(s: &str) -> bool {
        !s.is_empty()
            && s.len() <= 63
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !s.starts_with('-')
            && !s.ends_with('-')
    }

    fn config(yaml: &str) -> OperatorConfig {
        OperatorConfig::parse(yaml).expect("test config is valid")
    }

    fn request() -> GateRequest {
        GateRequest {
            repository: "Acme/Web".into(),
            environment: "production".into(),
            sha: "a".repeat(40),
            git_ref: Some("main".into()),
            run_id: 4242,
            installation_id: Some(7),
            deployment_id: None,
            requested_at: "2026-11-20T10:00:00Z".parse().expect("time"),
            delivery: Some("72d3162e-cc78-11e3-81ab-4c9367dc0958".into()),
        }
    }

    #[test]
    fn short_names_read_as_repository_environment_run() {
        assert_eq!(
            gate_name("acme/web", "production", 4242),
            "acme-web-production-4242"
        );
        assert_eq!(
            gate_name("Acme/Web", "Production", 4242),
            "acme-web-production-4242"
        );
    }

    #[test]
    fn lossy_environments_get_a_hash_so_they_do_not_collide() {
        let dot = gate_name("acme/web", "prod.eu", 1);
        let dash = gate_name("acme/web", "prod-eu", 1);
        assert_eq!(dash, "acme-web-prod-eu-1");
        assert_ne!(dot, dash);
        assert!(
            dot.starts_with("acme-web-prod-eu-") && dot.ends_with("-1"),
            "{dot}"
        );
        assert!(is_dns_label(&dot), "{dot}");
        assert_eq!(
            dot,
            gate_name("ACME/web", "PROD.EU", 1),
            "deterministic, case-insensitive"
        );
    }

    #[test]
    fn long_names_are_cut_to_a_dns_label_with_a_hash_and_the_run_id() {
        let repo = format!("an-organisation-with-a-long-name/{}", "service".repeat(10));
        let run_id = i64::MAX;
        let name = gate_name(&repo, "production-europe-west", run_id);
        assert_eq!(name.len(), 63, "{name}");
        assert!(is_dns_label(&name), "{name}");
        assert!(name.ends_with(&format!("-{run_id}")), "{name}");
        assert_ne!(name, gate_name(&repo, "production-europe-east", run_id));
        assert_eq!(name, gate_name(&repo, "production-europe-west", run_id));
    }

    #[test]
    fn names_are_dns_labels_whatever_the_input() {
        for (repo, env) in [
            ("_/_", "!!!"),
            ("a/b", ""),
            ("-x-/.y.", "Ünïcødé env"),
            ("o/r", &"e".repeat(255)),
        ] {
            let name = gate_name(repo, env, 9);
            assert!(is_dns_label(&name), "{repo} {env}: {name}");
        }
        let p = pause_name(&format!("o/{}", "r".repeat(100)), "feature/x");
        assert!(is_dns_label(&p), "{p}");
        assert_eq!(pause_name("acme/web", "main"), "ci-failed-acme-web-main");
    }

    #[test]
    fn labels_are_valid_label_values() {
        assert_eq!(repository_label("Acme/Web.App"), "acme.web.app");
        assert_eq!(environment_label("Prod (EU)"), "Prod--EU");
        let long = environment_label(&"x".repeat(300));
        assert_eq!(long.len(), 63);
    }

    #[test]
    fn first_matching_policy_wins_and_no_match_uses_the_defaults() {
        let c = config(
            "defaults:\n  namespace: gates\n  onDeadline: Approve\npolicies:\n\
             - repositories: ['acme/*']\n  environments: ['prod*']\n  namespace: web-prod\n  timeout: 4h\n  onDeadline: Reject\n  requiredChecks: [ci, e2e]\n  requireHealthy: [{kind: Deployment, name: web, namespace: staging}]\n\
             - repositories: ['acme/*']\n  namespace: web\n  dryRun: true\n",
        );
        let gate = build_gate(&c, &request());
        assert_eq!(gate.metadata.namespace.as_deref(), Some("web-prod"));
        assert_eq!(gate.spec.timeout.as_deref(), Some("4h"));
        assert_eq!(gate.spec.on_deadline, OnDeadline::Reject);
        assert_eq!(gate.spec.required_checks, vec!["ci", "e2e"]);
        assert_eq!(
            gate.spec.require_healthy,
            vec![WorkloadRef {
                kind: WorkloadKind::Deployment,
                name: "web".into(),
                namespace: Some("staging".into())
            }]
        );
        assert!(!gate.spec.dry_run);

        let staging = build_gate(
            &c,
            &GateRequest {
                environment: "staging".into(),
                ..request()
            },
        );
        assert_eq!(staging.metadata.namespace.as_deref(), Some("web"));
        assert!(staging.spec.dry_run);
        assert_eq!(
            staging.spec.on_deadline,
            OnDeadline::Approve,
            "policy is silent: default"
        );
        assert_eq!(staging.spec.timeout, None);

        let other = build_gate(
            &c,
            &GateRequest {
                repository: "other/api".into(),
                ..request()
            },
        );
        assert_eq!(other.metadata.namespace.as_deref(), Some("gates"));
        assert!(other.spec.required_checks.is_empty());
        assert_eq!(other.spec.on_deadline, OnDeadline::Approve);
    }

    #[test]
    fn webhook_gates_carry_the_policys_analysis() {
        let c = config(
            "prometheus: {url: 'http://prometheus.monitoring:9090'}\npolicies:\n\
             - environments: [production]\n  timeout: 2h\n  analysis:\n  - name: staging-errors\n    query: sum(rate(errors[5m]))\n    max: 0.01\n    for: 10m\n    interval: 1m\n",
        );
        let gate = build_gate(&c, &request());
        assert_eq!(gate.spec.analysis.len(), 1);
        let a = &gate.spec.analysis[0];
        assert_eq!(
            (a.name.as_str(), a.max, a.hold_for.as_str(), a.failure_limit),
            ("staging-errors", Some(0.01), "10m", 3)
        );
        let other = build_gate(
            &c,
            &GateRequest {
                environment: "staging".into(),
                ..request()
            },
        );
        assert!(other.spec.analysis.is_empty());
    }

    #[test]
    fn built_gate_carries_the_request_labels_and_finalizer() {
        let gate = build_gate(&OperatorConfig::default(), &request());
        assert_eq!(
            gate.metadata.name.as_deref(),
            Some("acme-web-production-4242")
        );
        assert_eq!(gate.metadata.namespace.as_deref(), Some("tollgate"));
        assert_eq!(gate.metadata.finalizers, Some(vec![FINALIZER.to_string()]));
        let labels = gate.metadata.labels.expect("labels");
        assert_eq!(labels[LABEL_REPOSITORY], "acme.web");
        assert_eq!(labels[LABEL_ENVIRONMENT], "production");
        assert_eq!(labels[LABEL_RUN_ID], "4242");
        assert_eq!(labels[LABEL_MADE_BY], MADE_BY_INTAKE);
        assert_eq!(
            gate.spec.requested_at,
            Some("2026-11-20T10:00:00Z".parse().expect("time"))
        );
        assert_eq!(gate.spec.repository, "Acme/Web");
        assert_eq!(gate.spec.sha, "a".repeat(40));
        assert_eq!(gate.spec.git_ref.as_deref(), Some("main"));
        assert_eq!(gate.spec.run_id, 4242);
        assert_eq!(gate.spec.installation_id, Some(7));
        assert_eq!(gate.spec.deployment_id, None);
    }

    #[test]
    fn repeated_request_fills_only_missing_fields_of_an_undecided_gate() {
        let gate = build_gate(&OperatorConfig::default(), &request());
        assert_eq!(merge(&gate, &request()), Merge::Unchanged);
        let with_deployment = GateRequest {
            deployment_id: Some(99),
            installation_id: Some(8),
            ..request()
        };
        assert_eq!(
            merge(&gate, &with_deployment),
            Merge::AddsInformation(serde_json::json!({"deploymentId": 99}))
        );
        let mut decided = gate.clone();
        decided.status = Some(crate::api::DeploymentGateStatus {
            phase: Some(Phase::Approved),
            ..Default::default()
        });
        assert_eq!(
            merge(&decided, &request()),
            Merge::Unchanged,
            "a redelivery of the answered request"
        );
        let other_sha = GateRequest {
            sha: "b".repeat(40),
            ..request()
        };
        assert!(matches!(merge(&gate, &other_sha), Merge::Stranger(_)));
    }

    #[test]
    fn a_later_request_after_the_answer_needs_a_gate_of_its_own() {
        let mut first = build_gate(
            &OperatorConfig::default(),
            &GateRequest {
                deployment_id: Some(10),
                ..request()
            },
        );
        first.status = Some(crate::api::DeploymentGateStatus {
            phase: Some(Phase::Approved),
            ..Default::default()
        });
        let rerun = GateRequest {
            deployment_id: Some(11),
            delivery: Some("another-delivery".into()),
            ..request()
        };
        assert_eq!(merge(&first, &rerun), Merge::Answered);
        let names = candidate_names(&rerun);
        assert_eq!(names[0], "acme-web-production-4242");
        assert_eq!(names[1], "acme-web-production-4242-d11");
        assert!(
            names[2].starts_with("acme-web-production-4242-x"),
            "{names:?}"
        );
        let same_again = GateRequest {
            deployment_id: Some(10),
            ..rerun.clone()
        };
        assert_eq!(merge(&first, &same_again), Merge::Unchanged);
    }

    #[test]
    fn a_gate_not_made_by_intake_never_takes_a_request() {
        let mut squatter = build_gate(&OperatorConfig::default(), &request());
        squatter.metadata.labels = None;
        assert!(
            matches!(merge(&squatter, &request()), Merge::Stranger(why) if why.contains("not made by intake"))
        );
    }
}
