//! The operator commands (`pause`, `unpause`, `approve`, `reject`, `status`)
//! parsed as a person types them and run against the in-process fake
//! Kubernetes API: each test asserts the stored objects and the exact output.

mod support;

use std::time::Duration;

use clap::Parser;
use jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::wait::await_condition;
use kube::{Api, Client};
use serde_json::{Value, json};
use support::kube::FakeKube;
use tollgate::api::ReleasePause;
use tollgate::cli::commands::{OpsCli, run};
use tollgate::cli::error::CliError;

const SHA: &str = "9fceb02d0ae598e95dc970b74767f19372d61af8";
const GATES: &str = "tollgate.dev/v1alpha1/deploymentgates";
const PAUSES: &str = "tollgate.dev/v1alpha1/releasepauses";
/// A hang guard only: waits are event-driven.
const GUARD: Duration = Duration::from_secs(20);

fn now() -> Timestamp {
    "2026-03-02T09:00:00Z".parse().expect("timestamp")
}

/// Parses a command line as the binary would and runs it against `client`.
async fn tollgate(client: &Client, argv: &[&str]) -> Result<String, CliError> {
    let cli = OpsCli::try_parse_from(std::iter::once("tollgate").chain(argv.iter().copied()))
        .unwrap_or_else(|e| panic!("tollgate {argv:?} does not parse: {e}"));
    run(client, cli.command, now()).await
}

fn gate(namespace: &str, name: &str, repository: &str, environment: &str, status: Value) -> Value {
    json!({
        "apiVersion": "tollgate.dev/v1alpha1", "kind": "DeploymentGate",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"repository": repository, "environment": environment, "sha": SHA, "runId": 42, "onDeadline": "Reject"},
        "status": status,
    })
}

fn pause_object(namespace: &str, name: &str, spec: Value, status: Value) -> Value {
    json!({
        "apiVersion": "tollgate.dev/v1alpha1", "kind": "ReleasePause",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
        "status": status,
    })
}

#[tokio::test]
async fn pause_creates_a_release_pause_with_the_given_fields() {
    let fake = FakeKube::start().await;
    let client = fake.client();
    let out = tollgate(
        &client,
        &[
            "pause",
            "--repository",
            "acme/web",
            "-e",
            "production",
            "--environment",
            "staging",
            "--reason",
            "ci-failed",
            "--sha",
            SHA,
            "--message",
            "main is red",
            "--for",
            "4h",
            "-n",
            "web",
        ],
    )
    .await
    .expect("pause");
    assert_eq!(
        out,
        "ReleasePause web/acme-web-ci-failed created: holds acme/web (production, staging) for ci-failed at 9fceb02 until 2026-03-02T13:00:00Z.\n\
         Lift it with: tollgate unpause acme-web-ci-failed -n web\n"
    );
    let stored = fake
        .get(PAUSES, "web", "acme-web-ci-failed")
        .expect("pause stored");
    assert_eq!(
        stored["spec"],
        json!({
            "scope": {"repositories": ["acme/web"], "environments": ["production", "staging"]},
            "reason": "ci-failed",
            "sha": SHA,
            "message": "main is red",
            "expiresAt": "2026-03-02T13:00:00Z",
        })
    );
}

#[tokio::test]
async fn pause_without_for_or_environment_holds_every_environment_until_resumed() {
    let fake = FakeKube::start().await;
    let client = fake.client();
    let out = tollgate(
        &client,
        &[
            "pause",
            "-r",
            "acme/*",
            "--reason",
            "freeze",
            "--name",
            "all-frozen",
        ],
    )
    .await
    .expect("pause");
    assert_eq!(
        out,
        "ReleasePause default/all-frozen created: holds acme/* (every environment) for freeze until resumed.\n\
         Lift it with: tollgate unpause all-frozen -n default\n"
    );
    let stored = fake
        .get(PAUSES, "default", "all-frozen")
        .expect("pause stored");
    assert_eq!(
        stored["spec"],
        json!({"scope": {"repositories": ["acme/*"]}, "reason": "freeze"})
    );

    let again = tollgate(
        &client,
        &[
            "pause",
            "-r",
            "acme/*",
            "--reason",
            "freeze",
            "--name",
            "all-frozen",
        ],
    )
    .await
    .expect_err("the name is taken");
    assert_eq!(
        again.to_string(),
        "ReleasePause default/all-frozen already exists: pick another name with --name, or resume it with `tollgate unpause all-frozen -n default`"
    );
}

#[test]
fn pause_reason_must_be_a_machine_word() {
    let e = OpsCli::try_parse_from([
        "tollgate",
        "pause",
        "-r",
        "acme/web",
        "--reason",
        "CI is red",
    ])
    .expect_err("words are for --message");
    assert!(
        e.to_string().contains("the reason is a machine word"),
        "{e}"
    );
}

#[tokio::test]
async fn unpause_no_wait_writes_the_resume_for_the_current_sha_and_reason() {
    let fake = FakeKube::start().await;
    fake.set_user("alice@example.com");
    let client = fake.client();
    // An older resume (another sha) is replaced by one for the current failure.
    fake.put(
        PAUSES,
        pause_object(
            "web",
            "ci",
            json!({"scope": {"repositories": ["acme/web"]}, "reason": "ci-failed", "sha": SHA,
                   "resume": {"sha": "1111111111111111111111111111111111111111", "reason": "ci-failed", "by": "bob"}}),
            json!({"state": "Active", "heldGates": 2}),
        ),
    );
    let out = tollgate(&client, &["unpause", "ci", "-n", "web", "--no-wait"])
        .await
        .expect("unpause");
    assert_eq!(
        out,
        "ReleasePause web/ci: resume of ci-failed at 9fceb02 recorded by alice@example.com; not waiting for the operator.\n"
    );
    let stored = fake.get(PAUSES, "web", "ci").expect("pause");
    assert_eq!(
        stored["spec"]["resume"],
        json!({"sha": SHA, "reason": "ci-failed", "by": "alice@example.com"})
    );
}

#[tokio::test]
async fn unpause_returns_once_the_operator_acknowledges_the_resume() {
    let fake = FakeKube::start().await;
    fake.set_user("alice@example.com");
    let client = fake.client();
    fake.put(
        PAUSES,
        pause_object(
            "web",
            "ci",
            json!({"scope": {"repositories": ["acme/web"]}, "reason": "ci-failed", "sha": SHA}),
            json!({"state": "Active", "heldGates": 1, "observedGeneration": 1}),
        ),
    );
    let cli_client = client.clone();
    let cli =
        tokio::spawn(async move { tollgate(&cli_client, &["unpause", "ci", "-n", "web"]).await });

    // Play the operator: once the resume is written, acknowledge it in status.
    let api: Api<ReleasePause> = Api::namespaced(client.clone(), "web");
    let seen = tokio::time::timeout(
        GUARD,
        await_condition(api.clone(), "ci", |p: Option<&ReleasePause>| {
            p.is_some_and(|p| p.spec.resume.is_some())
        }),
    )
    .await
    .expect("the CLI writes spec.resume")
    .expect("watch")
    .expect("pause exists");
    assert!(!cli.is_finished(), "the CLI waits for the operator");
    let generation = seen.metadata.generation.expect("generation");
    assert_eq!(generation, 2, "the resume is a spec change");
    api.patch_status(
        "ci",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {
            "state": "Resumed", "observedGeneration": generation, "heldGates": 0,
            "recovery": {"sha": SHA, "reason": "ci-failed", "at": "2026-03-02T09:00:01Z", "by": "alice@example.com"},
        }})),
    )
    .await
    .expect("status write");

    let out = tokio::time::timeout(GUARD, cli)
        .await
        .expect("the CLI returns")
        .expect("task")
        .expect("unpause");
    assert_eq!(
        out,
        "ReleasePause web/ci: resumed ci-failed at 9fceb02 by alice@example.com; the operator acknowledged it and held gates are released.\n"
    );
}

#[tokio::test]
async fn unpause_says_so_when_the_operator_does_not_acknowledge() {
    let fake = FakeKube::start().await;
    let client = fake.client();
    fake.put(
        PAUSES,
        pause_object(
            "web",
            "ci",
            json!({"scope": {"repositories": ["acme/web"]}, "reason": "ci-failed"}),
            json!({"state": "Active"}),
        ),
    );
    let e = tollgate(
        &client,
        &["unpause", "ci", "-n", "web", "--timeout", "300ms"],
    )
    .await
    .expect_err("nobody acknowledges");
    assert!(matches!(e, CliError::NotAcknowledged { .. }), "{e}");
    assert!(
        e.to_string().starts_with(
            "the operator has not acknowledged the resume of ReleasePause web/ci within 300ms"
        ),
        "{e}"
    );
    assert_eq!(
        fake.get(PAUSES, "web", "ci").expect("pause")["spec"]["resume"],
        json!({"reason": "ci-failed", "by": "test-user"}),
        "the resume stays recorded"
    );
}

#[tokio::test]
async fn unpause_of_a_missing_pause_says_how_to_list_them() {
    let fake = FakeKube::start().await;
    let e = tollgate(
        &fake.client(),
        &["unpause", "nope", "-n", "web", "--no-wait"],
    )
    .await
    .expect_err("missing");
    assert_eq!(
        e.to_string(),
        "no ReleasePause web/nope: list them with `tollgate status -n web`"
    );
}

#[test]
fn approve_without_a_reason_is_refused() {
    let e = OpsCli::try_parse_from(["tollgate", "approve", "web-gate"]).expect_err("no reason");
    assert_eq!(e.kind(), clap::error::ErrorKind::MissingRequiredArgument);
    assert!(e.to_string().contains("--reason <REASON>"), "{e}");
    let e = OpsCli::try_parse_from(["tollgate", "reject", "web-gate", "--reason", "  "])
        .expect_err("empty reason");
    assert!(e.to_string().contains("say why in words"), "{e}");
}

#[tokio::test]
async fn approve_sets_the_override_with_the_callers_identity() {
    let fake = FakeKube::start().await;
    fake.set_user("alice@example.com");
    let client = fake.client();
    fake.put(
        GATES,
        gate(
            "web",
            "web-prod-42",
            "acme/web",
            "production",
            json!({"phase": "Waiting"}),
        ),
    );
    let out = tollgate(
        &client,
        &[
            "approve",
            "web-prod-42",
            "-n",
            "web",
            "--reason",
            "hotfix for INC-42",
        ],
    )
    .await
    .expect("approve");
    assert_eq!(
        out,
        "DeploymentGate web/web-prod-42: override approve by alice@example.com recorded (hotfix for INC-42); the operator decides and tells GitHub.\n\
         Follow it with: kubectl -n web wait --for=condition=Delivered dg/web-prod-42\n"
    );
    let stored = fake.get(GATES, "web", "web-prod-42").expect("gate");
    assert_eq!(
        stored["spec"]["override"],
        json!({"decision": "Approve", "reason": "hotfix for INC-42", "by": "alice@example.com"})
    );

    tollgate(
        &client,
        &[
            "reject",
            "web-prod-42",
            "-n",
            "web",
            "--reason",
            "changed my mind",
        ],
    )
    .await
    .expect("reject while undecided");
    let stored = fake.get(GATES, "web", "web-prod-42").expect("gate");
    assert_eq!(
        stored["spec"]["override"],
        json!({"decision": "Reject", "reason": "changed my mind", "by": "alice@example.com"})
    );
}

#[tokio::test]
async fn approving_a_decided_gate_says_the_decision_is_final() {
    let fake = FakeKube::start().await;
    let client = fake.client();
    fake.put(
        GATES,
        gate("web", "done", "acme/web", "production", json!({
            "phase": "Rejected",
            "decision": {"verdict": "Reject", "source": "Policy", "reason": "check e2e failed", "decidedAt": "2026-03-02T08:00:00Z"},
        })),
    );
    let e = tollgate(
        &client,
        &["approve", "done", "-n", "web", "--reason", "please"],
    )
    .await
    .expect_err("final");
    assert_eq!(
        e.to_string(),
        "DeploymentGate web/done is already decided (Rejected by Policy: check e2e failed); a decision is final and cannot be overridden"
    );
    assert!(
        fake.get(GATES, "web", "done").expect("gate")["spec"]
            .get("override")
            .is_none()
    );
}

#[tokio::test]
async fn approve_errors_name_the_missing_gate_or_permission() {
    let fake = FakeKube::start().await;
    let client = fake.client();
    let e = tollgate(&client, &["approve", "x", "-n", "web", "--reason", "r"])
        .await
        .expect_err("missing");
    assert_eq!(
        e.to_string(),
        "no DeploymentGate web/x: list them with `tollgate status -n web`"
    );

    fake.put(
        GATES,
        gate(
            "web",
            "x",
            "acme/web",
            "production",
            json!({"phase": "Waiting"}),
        ),
    );
    fake.fail_next_writes(&[403]);
    let e = tollgate(&client, &["approve", "x", "-n", "web", "--reason", "r"])
        .await
        .expect_err("forbidden");
    assert!(
        matches!(e, CliError::Forbidden { verb: "patch", .. }),
        "{e:?}"
    );
    assert!(
        e.to_string().starts_with("forbidden: you may not patch deploymentgates.tollgate.dev in namespace web; ask a cluster admin"),
        "{e}"
    );
}

#[tokio::test]
async fn no_cluster_is_said_plainly() {
    // Nothing listens on port 9 of 127.0.0.1.
    let client = Client::try_from(kube::Config::new(
        "http://127.0.0.1:9".parse().expect("url"),
    ))
    .expect("client");
    let e = tollgate(&client, &["status", "-n", "web"])
        .await
        .expect_err("no server");
    assert!(matches!(e, CliError::Unreachable { .. }), "{e:?}");
    assert!(e.to_string().starts_with("cannot reach the Kubernetes API server while trying to list deploymentgates.tollgate.dev in namespace web"), "{e}");
}

#[tokio::test]
async fn status_prints_gates_and_pauses_as_tables() {
    let fake = FakeKube::start().await;
    let client = fake.client();
    fake.put(
        GATES,
        gate(
            "web",
            "web-prod-7",
            "acme/web",
            "production",
            json!({
                "phase": "Waiting",
                "deadline": "2026-03-02T10:00:00Z",
                "blockers": [
                    {"kind": "Pause", "name": "web/ci"},
                    {"kind": "Check", "name": "e2e"},
                ],
            }),
        ),
    );
    let mut held_by_window = gate(
        "web",
        "web-stg-8",
        "acme/web",
        "staging",
        json!({
            "phase": "Waiting",
            "deadline": "2026-03-03T09:00:00Z",
            "blockers": [{"kind": "Window", "name": "web/freeze", "until": "2026-03-02T18:00:00Z"}],
        }),
    );
    held_by_window["spec"]["onDeadline"] = json!("Approve");
    fake.put(GATES, held_by_window);
    fake.put(
        GATES,
        gate("web", "api-prod-3", "acme/api", "production", json!({
            "phase": "Approved",
            "decision": {"verdict": "Approve", "source": "Policy", "reason": "all clear", "decidedAt": "2026-03-02T08:00:00Z"},
        })),
    );
    fake.put(
        GATES,
        gate("web", "new", "acme/web", "production", json!(null)),
    );
    fake.put(
        GATES,
        gate(
            "other",
            "elsewhere",
            "acme/other",
            "production",
            json!({"phase": "Waiting"}),
        ),
    );
    fake.put(
        PAUSES,
        pause_object(
            "web",
            "ci",
            json!({"scope": {"repositories": ["acme/web"], "environments": ["production"]}, "reason": "ci-failed", "sha": SHA}),
            json!({"state": "Active", "heldGates": 1, "scope": "acme/web @ production", "shortSha": "9fceb02"}),
        ),
    );
    fake.put(
        PAUSES,
        pause_object(
            "web",
            "freeze",
            json!({"scope": {"repositories": ["acme/*"]}, "reason": "freeze"}),
            json!(null),
        ),
    );

    let out = tollgate(&client, &["status", "-n", "web"])
        .await
        .expect("status");
    let expected = [
        "NAMESPACE/NAME   REPOSITORY   ENV          PHASE      WAITING FOR                UNTIL                  AT DEADLINE",
        "web/api-prod-3   acme/api     production   Approved   -                          -                      -",
        "web/new          acme/web     production   Pending    evaluation                 -                      Reject",
        "web/web-prod-7   acme/web     production   Waiting    pause web/ci, check e2e    2026-03-02T10:00:00Z   Reject",
        "web/web-stg-8    acme/web     staging      Waiting    freeze window web/freeze   2026-03-02T18:00:00Z   Approve",
        "",
        "NAME         SCOPE                   STATE    REASON      SHA       HELD",
        "web/ci       acme/web @ production   Active   ci-failed   9fceb02   1",
        "web/freeze   acme/*                  -        freeze      -         0",
        "",
    ]
    .join("\n");
    assert_eq!(out, expected, "\n{out}");

    let out = tollgate(&client, &["status", "-A"])
        .await
        .expect("status -A");
    assert!(
        out.lines()
            .any(|l| l.starts_with("other/elsewhere   acme/other")),
        "{out}"
    );

    let out = tollgate(&client, &["status", "-n", "empty"])
        .await
        .expect("status of an empty namespace");
    assert_eq!(
        out,
        "No DeploymentGates in namespace empty.\n\nNo ReleasePauses in namespace empty.\n"
    );
}

#[tokio::test]
async fn unpause_of_a_freeze_window_lifts_only_the_open_occurrence() {
    let fake = FakeKube::start().await;
    let client = fake.client();
    // Daily 06:00–18:00 UTC; at 09:00 the window that opened at 06:00 is open.
    let schedule = json!({"cron": "0 6 * * *", "duration": "12h", "timeZone": "UTC"});
    fake.put(
        PAUSES,
        pause_object("web", "freeze", json!({"scope": {"repositories": ["acme/*"]}, "reason": "freeze", "schedule": schedule}), json!({"state": "Active"})),
    );
    let out = tollgate(&client, &["unpause", "freeze", "-n", "web", "--no-wait"])
        .await
        .expect("unpause");
    assert_eq!(
        out,
        "ReleasePause web/freeze: resume of freeze (the window opened 2026-03-02T06:00:00Z) recorded by test-user; not waiting for the operator.\n"
    );
    assert_eq!(
        fake.get(PAUSES, "web", "freeze").expect("pause")["spec"]["resume"],
        json!({"reason": "freeze", "window": "2026-03-02T06:00:00Z", "by": "test-user"})
    );

    // Outside its window there is nothing to lift, and nothing is written.
    let night = json!({"cron": "0 20 * * *", "duration": "2h", "timeZone": "UTC"});
    fake.put(
        PAUSES,
        pause_object(
            "web",
            "night",
            json!({"scope": {"repositories": ["acme/*"]}, "reason": "freeze", "schedule": night}),
            json!({"state": "Inactive"}),
        ),
    );
    let out = tollgate(&client, &["unpause", "night", "-n", "web"])
        .await
        .expect("unpause");
    assert_eq!(
        out,
        "ReleasePause web/night is outside its freeze window: nothing to lift now; the next one opens at 2026-03-02T20:00:00Z.\n"
    );
    assert!(
        fake.get(PAUSES, "web", "night").expect("pause")["spec"]
            .get("resume")
            .is_none()
    );
}
