//! Property tests of everything that parses outside input: webhook signatures
//! and payloads, freeze-window schedules and `tollgate evaluate` manifests.
//! No input may panic; every refusal is a message naming what is wrong. The
//! same parsers are fuzzed by the targets in `fuzz/`.

use proptest::prelude::*;
use tollgate::api::Schedule;
use tollgate::cli::evaluate::parse_manifests;
use tollgate::github::webhook::{
    DeploymentProtectionRuleEvent, SignatureError, WorkflowRunEvent, sign, verify,
};
use tollgate::policy::window::Window;

const SECRET: &[u8] = b"proptest-secret";

fn schedule(cron: &str, duration: &str, zone: &str) -> Schedule {
    Schedule {
        cron: cron.into(),
        duration: duration.into(),
        time_zone: zone.into(),
    }
}

fn any_instant() -> impl Strategy<Value = jiff::Timestamp> {
    let (min, max) = (
        jiff::Timestamp::MIN.as_second(),
        jiff::Timestamp::MAX.as_second(),
    );
    (min..=max).prop_map(|s| jiff::Timestamp::from_second(s).expect("in range"))
}

/// Cron fields that are often valid, sometimes not.
fn cron_field() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("*".to_string()),
        (0u32..70).prop_map(|n| n.to_string()),
        (0u32..70, 0u32..70).prop_map(|(a, b)| format!("{a}-{b}")),
        (1u32..70).prop_map(|n| format!("*/{n}")),
        Just("L".to_string()),
        Just("MON-FRI".to_string()),
        "[0-9A-Z*/,#L?-]{1,6}",
    ]
}

fn zone() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("UTC".to_string()),
        Just("Europe/Berlin".to_string()),
        Just("America/New_York".to_string()),
        Just("Australia/Lord_Howe".to_string()),
        Just("Asia/Kathmandu".to_string()),
        "[A-Za-z/_+-]{0,20}",
    ]
}

fn duration() -> impl Strategy<Value = String> {
    prop_oneof![
        (1u64..200).prop_map(|n| format!("{n}h")),
        (0u64..100_000).prop_map(|n| format!("{n}m")),
        any::<u64>().prop_map(|n| format!("{n}ms")),
        any::<u64>().prop_map(|n| format!("{n}h")),
        "[0-9hms]{0,12}",
    ]
}

#[test]
fn a_window_that_ends_past_the_calendar_never_ends_instead_of_panicking() {
    // 100,000,000 hours is more than 11,000 years: past jiff's last instant.
    let w = Window::parse(&schedule("0 18 * * 5", "100000000h", "UTC")).expect("valid");
    let state = w.at(jiff::Timestamp::UNIX_EPOCH);
    let (start, end) = state.current.expect("inside the window");
    assert!(start < jiff::Timestamp::UNIX_EPOCH);
    assert_eq!((end, state.next_start), (None, None));
}

#[test]
fn a_window_at_the_end_of_time_does_not_panic() {
    let w = Window::parse(&schedule("0 0 * * *", "48h", "Pacific/Kiritimati")).expect("valid");
    let _ = w.at(jiff::Timestamp::MAX);
    let _ = w.at(jiff::Timestamp::MIN);
    let _ = w.local(jiff::Timestamp::MAX);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn signatures_verify_only_for_the_exact_body_and_secret(
        body in proptest::collection::vec(any::<u8>(), 0..512),
        other in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let good = sign(SECRET, &body);
        prop_assert!(verify(SECRET, &body, Some(&good)).is_ok());
        prop_assert_eq!(verify(b"", &body, Some(&good)), Err(SignatureError::NoSecret));
        prop_assert_eq!(verify(SECRET, &body, None), Err(SignatureError::Missing));
        if other != body {
            prop_assert_eq!(verify(SECRET, &other, Some(&good)), Err(SignatureError::Mismatch));
        }
    }

    #[test]
    fn any_signature_header_is_an_answer_not_a_panic(header in ".{0,100}", body in ".{0,100}") {
        if let Err(e) = verify(SECRET, body.as_bytes(), Some(&header)) {
            prop_assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn any_webhook_body_parses_or_is_refused_with_a_message(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        match serde_json::from_slice::<DeploymentProtectionRuleEvent>(&body) {
            Ok(ev) => {
                let _ = (ev.check(), ev.commit(), ev.reference());
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
        let _ = serde_json::from_slice::<WorkflowRunEvent>(&body);
    }

    #[test]
    fn any_payload_field_values_are_checked_without_panics(
        env in ".{0,300}",
        repo in ".{0,150}",
        sha in prop_oneof![Just(None), "[0-9a-fA-F]{40}".prop_map(Some), ".{0,45}".prop_map(Some)],
        dsha in prop_oneof![Just(None), "[0-9a-fA-F]{40}".prop_map(Some), ".{0,45}".prop_map(Some)],
        git_ref in prop_oneof![Just(None), ".{0,20}".prop_map(Some)],
    ) {
        let body = serde_json::json!({
            "action": "requested",
            "environment": env,
            "sha": sha,
            "ref": git_ref,
            "deployment_callback_url": "https://api.github.com/repos/a/b/actions/runs/1/deployment_protection_rule",
            "deployment": {"sha": dsha, "ref": null},
            "repository": {"full_name": repo},
            "installation": {"id": 1},
        });
        if let Ok(ev) = serde_json::from_value::<DeploymentProtectionRuleEvent>(body) {
            if let Err(e) = ev.check() {
                prop_assert!(e.to_string().starts_with("field `"), "{}", e);
            }
            match ev.commit() {
                Ok(c) => prop_assert!(c.len() == 40 && c.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())),
                Err(e) => prop_assert!(e.to_string().starts_with("field `sha`"), "{}", e),
            }
        }
    }

    #[test]
    fn any_schedule_parses_or_names_its_field_and_any_instant_has_a_window_state(
        fields in proptest::collection::vec(cron_field(), 3..7),
        duration in duration(),
        zone in zone(),
        t in any_instant(),
    ) {
        let s = schedule(&fields.join(" "), &duration, &zone);
        match Window::parse(&s) {
            Err(e) => prop_assert!(e.to_string().contains("spec.schedule."), "{}", e),
            Ok(w) => {
                let state = w.at(t);
                if let Some((start, end)) = state.current {
                    prop_assert!(start <= t, "{:?} at {}: {:?}", s, t, state);
                    if let Some(end) = end {
                        prop_assert!(t < end, "{:?} at {}: {:?}", s, t, state);
                    }
                }
                if let Some(next) = state.next_start {
                    prop_assert!(next > t, "{:?} at {}: {:?}", s, t, state);
                }
                let _ = w.local(t);
            }
        }
    }

    #[test]
    fn arbitrary_cron_text_never_panics(cron in ".{0,64}", t in any_instant()) {
        if let Ok(w) = Window::parse(&schedule(&cron, "1h", "UTC")) {
            let _ = w.at(t);
        }
    }

    #[test]
    fn any_manifest_text_parses_or_names_file_and_document(text in ".{0,400}") {
        if let Err(e) = parse_manifests("in.yaml", &text) {
            prop_assert!(e.to_string().starts_with("in.yaml: "), "{}", e);
        }
    }

    #[test]
    fn manifest_shaped_yaml_parses_or_names_the_field(
        kind in prop_oneof![Just("DeploymentGate"), Just("ReleasePause"), Just("Pod"), Just("")],
        repo in prop_oneof![Just("acme/web".to_string()), ".{0,12}"],
        sha in prop_oneof!["[0-9a-f]{40}", ".{0,41}"],
        timeout in prop_oneof![Just(None), duration().prop_map(Some)],
        deadline in prop_oneof![Just(None), Just(Some("2026-01-01T00:00:00Z".to_string())), ".{0,25}".prop_map(Some)],
        cron in prop_oneof![Just(None), ".{0,20}".prop_map(Some)],
        docs in 1usize..4,
    ) {
        let doc = serde_json::json!({
            "apiVersion": "tollgate.dev/v1alpha1",
            "kind": kind,
            "metadata": {"name": "x", "namespace": "default"},
            "spec": {
                "repository": repo, "environment": "production", "sha": sha, "runId": 1,
                "timeout": timeout, "deadline": deadline,
                "scope": {"repositories": ["acme/*"]}, "reason": "ci-failed",
                "schedule": cron.map(|c| serde_json::json!({"cron": c, "duration": "1h"})),
            },
        });
        let one = serde_yaml_ng::to_string(&doc).expect("yaml");
        let text = vec![one; docs].join("---\n");
        match parse_manifests("in.yaml", &text) {
            Ok(m) => prop_assert_eq!(m.gates.len() + m.pauses.len(), docs),
            Err(e) => prop_assert!(e.to_string().starts_with("in.yaml: document 1: "), "{}", e),
        }
    }
}
