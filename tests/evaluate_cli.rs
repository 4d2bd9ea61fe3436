//! `tollgate evaluate` on the README's examples prints what the README documents.

use std::path::PathBuf;
use std::time::Duration;

use tollgate::cli::evaluate::{EvaluateArgs, evaluate};
use tollgate::policy::CheckState;

const README: &str = include_str!("../README.md");

fn args(files: &[&str], checks: &[(&str, CheckState)]) -> EvaluateArgs {
    EvaluateArgs {
        files: files
            .iter()
            .map(|f| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(f))
            .collect(),
        now: Some("2026-11-21T12:00:00Z".parse().expect("timestamp")),
        checks: checks.iter().map(|(n, s)| (n.to_string(), *s)).collect(),
        healthy: Vec::new(),
        default_timeout: Duration::from_secs(3600),
        check_poll: Duration::from_secs(60),
        readings: None,
    }
}

#[test]
fn the_readme_examples_give_the_documented_verdicts() {
    let held = evaluate(&args(
        &[
            "examples/gate.yaml",
            "examples/pause.yaml",
            "examples/freeze.yaml",
        ],
        &[],
    ))
    .expect("evaluates");
    assert_eq!(held.len(), 1);
    assert!(
        README.contains(&held[0]),
        "README does not show:\n{}",
        held[0]
    );
    assert!(held[0].contains(r#""verdict":"wait""#));
    let green = evaluate(&args(
        &["examples/gate.yaml"],
        &[("ci/test", CheckState::Success)],
    ))
    .expect("evaluates");
    assert!(
        README.contains(&green[0]),
        "README does not show:\n{}",
        green[0]
    );
    assert!(green[0].contains(r#""verdict":"approve""#));
    let red = evaluate(&args(
        &["examples/gate.yaml"],
        &[("ci/test", CheckState::Failure)],
    ))
    .expect("evaluates");
    assert!(
        red[0].contains(r#""verdict":"reject""#) && red[0].contains("ci/test"),
        "{}",
        red[0]
    );
}

#[test]
fn invalid_manifests_name_the_file_document_and_field() {
    let dir = std::env::temp_dir().join(format!("tollgate-evaluate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let bad = dir.join("bad.yaml");
    std::fs::write(&bad, "kind: ReleasePause\nmetadata: {name: p}\nspec: {scope: {repositories: ['*']}}\n---\nkind: DeploymentGate\nmetadata: {name: g}\nspec: {repository: acme/web, environment: prod, sha: 9fceb02, runId: 1}\n").expect("write");
    let mut a = args(&[], &[]);
    a.files = vec![bad.clone()];
    let e = evaluate(&a).expect_err("invalid").to_string();
    assert!(
        e.contains("bad.yaml: document 1") && e.contains("reason"),
        "{e}"
    );
    std::fs::write(&bad, "kind: DeploymentGate\nmetadata: {name: g}\nspec: {repository: acme/web, environment: prod, sha: 9fceb02, runId: 1}\n").expect("write");
    let e = evaluate(&a).expect_err("invalid").to_string();
    assert!(e.contains("document 1") && e.contains("spec.sha"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn readings_from_a_file_try_an_analysis_offline() {
    let mut a = args(&["examples/analysis-gate.yaml"], &[]);
    a.readings = Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/readings.yaml"));
    for (now, verdict) in [
        ("2026-11-21T12:05:00Z", "wait"),
        ("2026-11-21T12:10:00Z", "approve"),
    ] {
        a.now = Some(now.parse().expect("timestamp"));
        let out = evaluate(&a).expect("evaluates");
        assert!(
            out[0].contains(&format!(r#""verdict":"{verdict}""#)),
            "{now}: {}",
            out[0]
        );
        assert!(
            README.contains(&out[0]),
            "README does not show:\n{}",
            out[0]
        );
    }

    // One inconclusive reading at the end keeps the gate waiting and says why.
    let dir = std::env::temp_dir().join(format!("tollgate-readings-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let file = dir.join("readings.yaml");
    let mut text = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/readings.yaml"),
    )
    .expect("example readings");
    text.push_str("- {analysis: staging-errors, at: \"2026-11-21T12:10:30Z\", result: none}\n");
    std::fs::write(&file, &text).expect("write");
    a.readings = Some(file.clone());
    a.now = Some("2026-11-21T12:11:00Z".parse().expect("timestamp"));
    let out = evaluate(&a).expect("evaluates");
    assert!(
        out[0].contains("analysis staging-errors inconclusive: the query returned no result"),
        "{}",
        out[0]
    );
    // A reading with both a value and a result names the file and the reading.
    std::fs::write(
        &file,
        "- {analysis: staging-errors, at: \"2026-11-21T12:00:00Z\", value: 1, result: none}\n",
    )
    .expect("write");
    let e = evaluate(&a).expect_err("ambiguous reading").to_string();
    assert!(
        e.contains("readings.yaml") && e.contains("give either `value` or `result"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
