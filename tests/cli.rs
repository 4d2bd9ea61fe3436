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

// ---- tollgate doctor ----------------------------------------------------------

mod doctor {
    use super::*;
    use support::github::{FakeGitHub, Fault, TEST_APP_KEY};
    use tollgate::cli::doctor::{Cluster, DoctorArgs, Output, Report, doctor};

    const NS: &str = "tollgate-system";
    const CRDS: &str = "apiextensions.k8s.io/v1/customresourcedefinitions";
    const DEPLOYMENTS: &str = "apps/v1/deployments";
    const LEASES: &str = "coordination.k8s.io/v1/leases";

    /// A healthy installation: CRDs of this binary, a ready Deployment that
    /// elects a leader, a fresh Lease, the files the operator is given.
    struct Install {
        kube: FakeKube,
        gh: FakeGitHub,
        dir: std::path::PathBuf,
    }

    impl Install {
        async fn healthy() -> Install {
            Install::without_crd("").await
        }

        /// [`Install::healthy`] with every CRD but the one called `missing`.
        async fn without_crd(missing: &str) -> Install {
            let kube = FakeKube::start().await;
            let gh = FakeGitHub::start().await;
            for crd in [
                <tollgate::api::DeploymentGate as kube::CustomResourceExt>::crd(),
                <tollgate::api::ReleasePause as kube::CustomResourceExt>::crd(),
            ] {
                if crd.metadata.name.as_deref() != Some(missing) {
                    kube.put(CRDS, serde_json::to_value(&crd).expect("crd as JSON"));
                }
            }
            kube.put(
                DEPLOYMENTS,
                json!({
                    "apiVersion": "apps/v1", "kind": "Deployment",
                    "metadata": {"name": "tollgate", "namespace": NS},
                    "spec": {"replicas": 2, "selector": {}, "template": {"spec": {"containers": [{
                        "name": "tollgate",
                        "args": ["run", "--leader-elect", "--lease-name=tollgate-lease"],
                    }]}}},
                    "status": {"replicas": 2, "readyReplicas": 2},
                }),
            );
            kube.put(
                LEASES,
                json!({
                    "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": "tollgate-lease", "namespace": NS},
                    "spec": {"holderIdentity": "tollgate-7d9c-abcde", "leaseDurationSeconds": 15,
                             "renewTime": "2026-03-02T08:59:55.000000Z"},
                }),
            );
            let dir = std::env::temp_dir().join(format!(
                "tollgate-doctor-{}-{}",
                std::process::id(),
                rand_suffix()
            ));
            std::fs::create_dir_all(&dir).expect("temp dir");
            let write = |name: &str, text: &str| {
                std::fs::write(dir.join(name), text).expect("write test file");
            };
            write(
                "config.yaml",
                "defaults:\n  namespace: tollgate-system\npolicies:\n- repositories: [acme/web, 'acme/api-*']\n  namespace: tollgate-system\n",
            );
            write("app-id", "1\n");
            write("private-key.pem", TEST_APP_KEY);
            write("webhook-secret", "s3cret\n");
            Install { kube, gh, dir }
        }

        fn args(&self, extra: &[&str]) -> DoctorArgs {
            let file = |name: &str| self.dir.join(name).display().to_string();
            let mut argv = vec![
                "tollgate".to_string(),
                "doctor".into(),
                "-n".into(),
                NS.into(),
                "--config".into(),
                file("config.yaml"),
                "--github-api-url".into(),
                self.gh.url().to_string(),
                "--github-app-id-file".into(),
                file("app-id"),
                "--github-private-key-file".into(),
                file("private-key.pem"),
                "--webhook-secret-file".into(),
                file("webhook-secret"),
            ];
            argv.extend(extra.iter().map(|s| s.to_string()));
            #[derive(clap::Parser)]
            struct Cli {
                #[command(subcommand)]
                command: Sub,
            }
            #[derive(clap::Subcommand)]
            enum Sub {
                Doctor(DoctorArgs),
            }
            let Sub::Doctor(args) = <Cli as clap::Parser>::try_parse_from(argv)
                .unwrap_or_else(|e| panic!("doctor flags do not parse: {e}"))
                .command;
            args
        }

        fn cluster(&self) -> Cluster {
            Ok((self.kube.client(), self.kube.url().to_string()))
        }

        async fn run(&self, extra: &[&str]) -> Report {
            doctor(self.cluster(), &self.args(extra), now()).await
        }

        fn write(&self, name: &str, text: &str) {
            std::fs::write(self.dir.join(name), text).expect("write test file");
        }
    }

    impl Drop for Install {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn rand_suffix() -> u64 {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        N.fetch_add(1, Ordering::Relaxed)
    }

    /// The lines of the text report.
    fn lines(report: &Report) -> Vec<String> {
        report
            .render(Output::Text)
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// The report has exactly one ✗ (followed by its fix), and it is `want`.
    fn only_failure(report: &Report, want: &str, fix: &str) {
        let text = report.render(Output::Text);
        let failed: Vec<&str> = text.lines().filter(|l| l.starts_with('✗')).collect();
        assert_eq!(failed, [want], "report:\n{text}");
        let at = text.lines().position(|l| l == want).expect("the ✗ line");
        assert_eq!(
            text.lines().nth(at + 1),
            Some(format!("    fix: {fix}").as_str()),
            "report:\n{text}"
        );
        assert_eq!(report.exit_code(), 1);
        assert!(!report.ok);
    }

    #[tokio::test]
    async fn a_healthy_install_is_all_passed() {
        let install = Install::healthy().await;
        let report = install.run(&[]).await;
        let url = install.kube.url().to_string();
        let gh = install.gh.url().to_string();
        let config = install.dir.join("config.yaml").display().to_string();
        let secret = install.dir.join("webhook-secret").display().to_string();
        assert_eq!(
            lines(&report),
            [
                format!("✓ API server {url} reachable (Kubernetes v1.33.0-fake)"),
                "✓ permissions: you may do all 18 things the operator does in namespace tollgate-system".to_string(),
                "✓ CRD deploymentgates.tollgate.dev installed, v1alpha1 as tollgate 0.1.0 defines it".to_string(),
                "✓ CRD releasepauses.tollgate.dev installed, v1alpha1 as tollgate 0.1.0 defines it".to_string(),
                format!("✓ configuration {config} valid (1 policies, 0 tenancy rules)"),
                format!("✓ GitHub App credentials authenticate (GET /app) at {gh}: answers are posted as tollgate[bot]"),
                "✓ GitHub App installed on acme/web (installation 42, token minted)".to_string(),
                format!("✓ webhook secret set ({secret})"),
                "✓ Deployment tollgate-system/tollgate ready (2/2 replicas)".to_string(),
                "✓ leader: Lease tollgate-system/tollgate-lease held by tollgate-7d9c-abcde (renewed 5s ago)".to_string(),
                "10 passed, 0 failed, 0 not checked".to_string(),
            ]
        );
        assert_eq!(report.exit_code(), 0);
        let json: Value =
            serde_json::from_str(&report.render(Output::Json)).expect("--output json is JSON");
        assert_eq!(json["ok"], true);
        let names: Vec<&str> = json["checks"]
            .as_array()
            .expect("checks")
            .iter()
            .map(|c| c["check"].as_str().expect("check name"))
            .collect();
        assert_eq!(
            names,
            [
                "api-server",
                "permissions",
                "crd",
                "crd",
                "config",
                "github-credentials",
                "github-installation",
                "webhook-secret",
                "deployment",
                "leader"
            ]
        );
        assert!(
            json["checks"]
                .as_array()
                .expect("checks")
                .iter()
                .all(|c| c["status"] == "pass")
        );
        assert!(
            !report.render(Output::Json).contains("s3cret"),
            "the secret is never shown"
        );
    }

    #[tokio::test]
    async fn an_api_server_that_does_not_answer_fails_first_and_skips_what_needs_it() {
        let install = Install::healthy().await;
        // A port nothing listens on: bound, then closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let url = format!("http://127.0.0.1:{port}");
        let config = kube::Config::new(url.parse().expect("url"));
        let client = Client::try_from(config).expect("client");
        let report = doctor(Ok((client, url.clone())), &install.args(&[]), now()).await;
        let text = report.render(Output::Text);
        let first = text.lines().next().expect("a line");
        assert!(
            first.starts_with(&format!("✗ API server {url} not reachable: ")),
            "{text}"
        );
        assert_eq!(
            text.lines().nth(1),
            Some(
                "    fix: check that the cluster is up and `kubectl config current-context` names it"
            )
        );
        assert!(
            text.contains("- Deployment: not checked (needs the API server)\n"),
            "{text}"
        );
        assert!(
            text.ends_with("4 passed, 1 failed, 2 not checked\n"),
            "{text}"
        );
        assert_eq!(report.exit_code(), 1);
    }

    #[tokio::test]
    async fn a_missing_permission_is_named() {
        let install = Install::healthy().await;
        install.kube.deny("patch", "deploymentgates/status");
        install.kube.deny("create", "events");
        only_failure(
            &install.run(&[]).await,
            "✗ permissions: in namespace tollgate-system you may not patch deploymentgates/status.tollgate.dev, create events.events.k8s.io",
            "bind the chart's ClusterRole (or Role) to your user or group, or run as the operator's ServiceAccount (`kubectl auth can-i --list --as system:serviceaccount:NAMESPACE:tollgate`)",
        );
    }

    #[tokio::test]
    async fn missing_or_outdated_crds_say_how_to_apply_this_versions() {
        let install = Install::healthy().await;
        let mut old = install
            .kube
            .get(CRDS, "", "releasepauses.tollgate.dev")
            .expect("crd");
        // An older Tollgate's schema: a field this binary has is not there.
        let props = old["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
            ["properties"]
            .as_object_mut()
            .expect("spec properties");
        props.remove("message");
        install.kube.put(CRDS, old);
        only_failure(
            &install.run(&[]).await,
            "✗ CRD releasepauses.tollgate.dev v1alpha1 differs from this binary's (tollgate 0.1.0): an older or newer Tollgate installed it",
            "apply this version's CRDs: tollgate crd | kubectl apply --server-side --force-conflicts -f -",
        );

        let install = Install::without_crd("deploymentgates.tollgate.dev").await;
        let report = install.run(&[]).await;
        only_failure(
            &report,
            "✗ CRD deploymentgates.tollgate.dev is not installed",
            "install the CRDs: tollgate crd | kubectl apply --server-side --force-conflicts -f -",
        );
    }

    #[tokio::test]
    async fn an_invalid_configuration_is_refused_as_at_start_up() {
        let install = Install::healthy().await;
        install.write("config.yaml", "defaults:\n  timout: 1h\n");
        let config = install.dir.join("config.yaml").display().to_string();
        let report = install.run(&[]).await;
        let text = report.render(Output::Text);
        let failed: Vec<&str> = text.lines().filter(|l| l.starts_with('✗')).collect();
        assert_eq!(failed.len(), 1, "{text}");
        assert!(
            failed[0].starts_with(&format!(
                "✗ configuration {config} refused: the configuration file {config} is not valid: defaults: unknown field `timout`"
            )),
            "{text}"
        );
        assert!(
            text.contains("- App installations: not checked (no valid configuration to read repositories from)\n"),
            "{text}"
        );
        assert_eq!(report.exit_code(), 1);
    }

    #[tokio::test]
    async fn credentials_github_refuses_and_a_repository_without_the_app_fail() {
        let install = Install::healthy().await;
        install.gh.script("app", &[Fault::Unauthorized]);
        let report = install.run(&[]).await;
        let text = report.render(Output::Text);
        let failed: Vec<&str> = text.lines().filter(|l| l.starts_with('✗')).collect();
        assert_eq!(
            failed,
            [
                "✗ GitHub refused the credentials: reading the App's own login (GET /app): GitHub answered 401: Bad credentials"
            ],
            "{text}"
        );
        assert!(text.contains("    fix: check the App ID and private key against the App's settings page (generate a new key if in doubt)\n"));
        assert_eq!(report.exit_code(), 1);

        let install = Install::healthy().await;
        install.gh.not_installed_on("acme/web");
        only_failure(
            &install.run(&[]).await,
            "✗ GitHub App tollgate is not installed on acme/web",
            "install it: https://github.com/apps/tollgate/installations/new (choose acme/web)",
        );
    }

    #[tokio::test]
    async fn an_empty_webhook_secret_fails() {
        let install = Install::healthy().await;
        install.write("webhook-secret", "\n");
        let secret = install.dir.join("webhook-secret").display().to_string();
        only_failure(
            &install.run(&[]).await,
            &format!("✗ webhook secret {secret} is empty"),
            "put the secret from the App's webhook settings into the Secret's webhook-secret key",
        );
    }

    #[tokio::test]
    async fn an_unready_deployment_and_an_expired_lease_fail() {
        let install = Install::healthy().await;
        let mut d = install
            .kube
            .get(DEPLOYMENTS, NS, "tollgate")
            .expect("deployment");
        d["status"]["readyReplicas"] = json!(1);
        install.kube.put(DEPLOYMENTS, d);
        only_failure(
            &install.run(&[]).await,
            "✗ Deployment tollgate-system/tollgate has 1 of 2 replicas ready",
            "see why: kubectl -n tollgate-system describe deploy/tollgate; kubectl -n tollgate-system logs deploy/tollgate",
        );

        let install = Install::healthy().await;
        let mut lease = install
            .kube
            .get(LEASES, NS, "tollgate-lease")
            .expect("lease");
        lease["spec"]["renewTime"] = json!("2026-03-02T08:58:00.000000Z");
        install.kube.put(LEASES, lease);
        only_failure(
            &install.run(&[]).await,
            "✗ leader: Lease tollgate-system/tollgate-lease expired: tollgate-7d9c-abcde last renewed it 120s ago (duration 15s)",
            "the leader stopped renewing: kubectl -n tollgate-system logs tollgate-7d9c-abcde",
        );

        let install = Install::healthy().await;
        let report = install.run(&["--deployment", "other"]).await;
        let text = report.render(Output::Text);
        assert!(
            text.contains("✗ no Deployment tollgate-system/other\n"),
            "{text}"
        );
        assert_eq!(report.exit_code(), 1);
    }
}

/// The binary, also called as the kubectl plugin `kubectl-tollgate`: a broken
/// install exits 1 and `--output json` is JSON a script can read.
#[test]
fn doctor_as_a_kubectl_plugin_exits_1_with_json_when_the_cluster_is_down() {
    let dir = std::env::temp_dir().join(format!("tollgate-doctor-bin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: down\n  cluster: {{server: \"http://127.0.0.1:{port}\"}}\nusers:\n- name: u\n  user: {{token: t}}\ncontexts:\n- name: down\n  context: {{cluster: down, user: u, namespace: tollgate-system}}\ncurrent-context: down\n"
        ),
    )
    .expect("kubeconfig");
    let plugin = dir.join("kubectl-tollgate");
    let _ = std::fs::remove_file(&plugin);
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_tollgate"), &plugin).expect("symlink");
    let out = std::process::Command::new(&plugin)
        .args(["doctor", "--output", "json"])
        .env("KUBECONFIG", &kubeconfig)
        .env_remove("TOLLGATE_CONFIG")
        .output()
        .expect("run kubectl-tollgate doctor");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(report["ok"], false);
    assert_eq!(report["checks"][0]["check"], "api-server");
    assert_eq!(report["checks"][0]["status"], "fail");
    let message = report["checks"][0]["message"].as_str().expect("message");
    assert!(
        message.starts_with(&format!(
            "API server http://127.0.0.1:{port}/ not reachable"
        )),
        "{message}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
