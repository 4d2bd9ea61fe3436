//! Property tests of everything that parses outside input: webhook signatures
//! and payloads, freeze-window schedules, `tollgate evaluate` manifests, the
//! callback URL a run id is read from, the names made from requests, globs,
//! the operator's configuration file and GitHub's `Link` header.
//! No input may panic; every refusal is a message naming what is wrong. The
//! same parsers are fuzzed by the targets in `fuzz/`.

use std::sync::OnceLock;

use proptest::prelude::*;
use tollgate::api::Schedule;
use tollgate::cli::evaluate::parse_manifests;
use tollgate::config::OperatorConfig;
use tollgate::github::webhook::{
    DeploymentProtectionRuleEvent, SignatureError, WorkflowRunEvent, deploy_pause_name,
    environment_label, gate_name, pause_name, repository_label, sign, verify,
};
use tollgate::github::{Auth, GitHub, GitHubConfig, next_cursor};
use tollgate::policy::glob_match;
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

// ---------------------------------------------------------------------------
// The callback URL a webhook names, and the run id read from it.

const API: &str = "https://api.github.com";

/// A client on the public API (its constructor needs a tokio runtime, kept
/// alive for the whole test binary).
fn github() -> &'static GitHub {
    static CLIENT: OnceLock<(tokio::runtime::Runtime, GitHub)> = OnceLock::new();
    &CLIENT
        .get_or_init(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            let gh = {
                let _in = rt.enter();
                GitHub::new(GitHubConfig {
                    api_base: API.into(),
                    auth: Auth::Token("proptest".into()),
                    ..GitHubConfig::default()
                })
                .expect("client")
            };
            (rt, gh)
        })
        .1
}

fn review_url(repo: &str, id: &str) -> String {
    format!("{API}/repos/{repo}/actions/runs/{id}/deployment_protection_rule")
}

/// What an accepted callback URL must be: the review endpoint of `repo` on
/// the configured API, its repository compared without case, and `id`
/// written in decimal digits.
fn is_review_endpoint(url: &str, repo: &str, id: i64) -> bool {
    let Some(rest) = url.strip_prefix(&format!("{API}/repos/")) else {
        return false;
    };
    let Some((named, tail)) = rest.split_at_checked(repo.len()) else {
        return false;
    };
    let digits = tail
        .strip_prefix("/actions/runs/")
        .and_then(|t| t.strip_suffix("/deployment_protection_rule"));
    named.eq_ignore_ascii_case(repo)
        && digits.is_some_and(|d| {
            !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()) && d.parse() == Ok(id)
        })
        && id > 0
}

fn repository() -> impl Strategy<Value = String> {
    ("[A-Za-z0-9-]{1,39}", "[A-Za-z0-9._-]{1,100}").prop_map(|(o, n)| format!("{o}/{n}"))
}

/// Callback URLs a forger would try: the real endpoint bent one way or another.
fn bent_callback(repo: String, id: i64) -> impl Strategy<Value = String> {
    let good = review_url(&repo, &id.to_string());
    prop_oneof![
        Just(good.replace(
            "https://api.github.com",
            "https://api.github.com.evil.example"
        )),
        Just(good.replace("https://api.github.com", "http://api.github.com")),
        Just(good.replace("https://", "https://user@")),
        Just(format!("{good}/")),
        Just(format!("{good}?x=1")),
        Just(format!("{good}#frag")),
        Just(good.replace("/repos/", "/repos/other/x/../../")),
        Just(good.replace("/actions/runs/", "/actions/runs/%31")),
        Just(review_url("someone/else", &id.to_string())),
        Just(review_url(&repo, "0")),
        Just(review_url(&repo, &format!("-{id}"))),
        Just(review_url(&repo, &format!("+{id}"))),
        Just(review_url(&repo, &format!(" {id}"))),
        Just(review_url(&repo, "99999999999999999999")),
        Just(review_url(&repo, "")),
        Just(good.replace("deployment_protection_rule", "approvals")),
    ]
}

// ---------------------------------------------------------------------------
// Names and labels made from requests.

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_label_value(s: &str) -> bool {
    s.is_empty()
        || (s.len() <= 63
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
            && s.as_bytes()[0].is_ascii_alphanumeric()
            && s.as_bytes()[s.len() - 1].is_ascii_alphanumeric())
}

// ---------------------------------------------------------------------------
// Globs, against a plain dynamic-programming matcher.

fn reference_glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    // m[i][j]: p[..i] matches t[..j].
    let mut m = vec![vec![false; t.len() + 1]; p.len() + 1];
    m[0][0] = true;
    for i in 1..=p.len() {
        for j in 0..=t.len() {
            m[i][j] = match p[i - 1] {
                '*' => m[i - 1][j] || (j > 0 && m[i][j - 1]),
                '?' => j > 0 && m[i - 1][j - 1],
                c => j > 0 && m[i - 1][j - 1] && t[j - 1] == c,
            };
        }
    }
    m[p.len()][t.len()]
}

// ---------------------------------------------------------------------------
// The operator's configuration file.

/// What a refusal of configuration text says first: which file is not YAML
/// of the right shape, or which field is wrong.
fn names_the_file_or_field(e: &str) -> bool {
    e.starts_with("the configuration file <config> is not valid: ")
        || e.starts_with("configuration ")
}

fn go_duration() -> impl Strategy<Value = String> {
    prop_oneof![
        (1u64..2000).prop_map(|n| format!("{n}h")),
        (0u64..100_000).prop_map(|n| format!("{n}m")),
        (0u64..100).prop_map(|n| format!("{n}s")),
        "[0-9hms.]{0,8}",
    ]
}

fn glob_list() -> impl Strategy<Value = Vec<String>> {
    proptest::collection::vec(
        prop_oneof![
            Just("*".to_string()),
            Just("acme/*".to_string()),
            "[a-z*?/]{0,10}",
        ],
        0..3,
    )
}

fn config_yaml() -> impl Strategy<Value = String> {
    let policy = (
        glob_list(),
        glob_list(),
        prop_oneof![
            Just(None),
            "[a-z0-9-]{1,12}".prop_map(Some),
            ".{0,12}".prop_map(Some)
        ],
        prop_oneof![Just(None), go_duration().prop_map(Some)],
        prop_oneof![Just("Reject"), Just("Approve"), Just("Maybe")],
    )
        .prop_map(
            |(repositories, environments, namespace, timeout, on_deadline)| {
                serde_json::json!({
                    "repositories": repositories, "environments": environments,
                    "namespace": namespace, "timeout": timeout, "onDeadline": on_deadline,
                })
            },
        );
    let tenancy = ("[a-z*-]{0,8}", glob_list())
        .prop_map(|(namespace, repositories)| serde_json::json!({"namespace": namespace, "repositories": repositories}));
    (
        go_duration(),
        go_duration(),
        proptest::collection::vec(policy, 0..3),
        proptest::collection::vec(tenancy, 0..3),
    )
        .prop_map(|(timeout, check_poll, policies, tenancy)| {
            let doc = serde_json::json!({
                "defaults": {"timeout": timeout, "checkPoll": check_poll},
                "policies": policies,
                "tenancy": tenancy,
            });
            serde_yaml_ng::to_string(&doc).expect("yaml")
        })
}

// ---------------------------------------------------------------------------
// GitHub's `Link` header (paging the App's webhook deliveries).

fn cursor_keeps_the_next_request_on_its_path(cursor: &str) -> bool {
    format!("/app/hook/deliveries?per_page=100&cursor={cursor}")
        .parse::<http::Uri>()
        .is_ok_and(|u| u.path() == "/app/hook/deliveries")
}

#[test]
fn link_header_paging_takes_the_next_cursor_and_ignores_the_others() {
    let h: http::HeaderValue = concat!(
        r#"<https://api.github.com/app/hook/deliveries?per_page=100&cursor=v1_prev>; rel="prev", "#,
        r#"<https://api.github.com/app/hook/deliveries?per_page=100&cursor=v1_next>; rel="next""#
    )
    .parse()
    .expect("header");
    assert_eq!(next_cursor(Some(&h)).as_deref(), Some("v1_next"));
    let last_only: http::HeaderValue =
        r#"<https://api.github.com/app/hook/deliveries?cursor=v1_last>; rel="last""#
            .parse()
            .expect("header");
    assert_eq!(next_cursor(Some(&last_only)), None);
}

/// Found by `any_glob_answers_matches_itself_and_star_matches_all`: a
/// pattern's `*` was compared with the text literally before it was treated
/// as a wildcard, so `*` did not match `* ` nor `a*` match `a*b`.
#[test]
fn a_star_in_the_text_is_matched_by_a_star_in_the_pattern() {
    assert!(glob_match("*", "* "));
    assert!(glob_match("a*", "a*b"));
    assert!(glob_match("*", "*"));
}

#[test]
fn a_glob_of_many_stars_against_a_long_text_answers() {
    let pattern = format!("{}b", "*a".repeat(30));
    let text = "a".repeat(5_000);
    assert!(!glob_match(&pattern, &text));
    assert!(glob_match(&pattern, &format!("{text}b")));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn the_review_endpoint_of_the_repository_gives_its_run_id(
        repo in repository(),
        id in 1i64..=i64::MAX,
        upper in any::<bool>(),
    ) {
        let named = if upper { repo.to_ascii_uppercase() } else { repo.clone() };
        prop_assert_eq!(github().callback_run_id(&review_url(&named, &id.to_string()), &repo).ok(), Some(id));
    }

    #[test]
    fn a_bent_callback_url_is_refused(
        (repo, id, url) in (repository(), 1i64..=i64::MAX)
            .prop_flat_map(|(repo, id)| (Just(repo.clone()), Just(id), bent_callback(repo, id))),
    ) {
        let got = github().callback_run_id(&url, &repo);
        prop_assert!(got.is_err(), "{} for {} was taken as run {:?} (real: {})", url, repo, got, id);
    }

    #[test]
    fn any_callback_url_is_refused_or_is_exactly_the_review_endpoint(
        url in prop_oneof![
            ".{0,200}",
            (repository(), "[0-9+-]{0,22}").prop_map(|(r, id)| review_url(&r, &id)),
        ],
        repo in prop_oneof![repository(), ".{0,40}"],
    ) {
        match github().callback_run_id(&url, &repo) {
            Ok(id) => prop_assert!(is_review_endpoint(&url, &repo, id), "{} for {} gave {}", url, repo, id),
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    #[test]
    fn gate_names_are_dns_labels_ending_in_the_run_and_blind_to_ascii_case(
        repo in prop_oneof![repository(), ".{0,150}"],
        env in prop_oneof!["[A-Za-z0-9 ._-]{0,40}", ".{0,300}"],
        run in 1i64..i64::MAX,
    ) {
        let name = gate_name(&repo, &env, run);
        prop_assert!(is_dns_label(&name), "{:?}", name);
        let run_suffix = format!("-{run}");
        prop_assert!(name.ends_with(&run_suffix), "{:?}", name);
        prop_assert_eq!(&gate_name(&repo.to_ascii_uppercase(), &env.to_ascii_uppercase(), run), &name);
        prop_assert_ne!(gate_name(&repo, &env, run + 1), name);
    }

    #[test]
    fn pause_names_are_dns_labels_and_labels_are_label_values(
        repo in prop_oneof![repository(), ".{0,150}"],
        part in ".{0,300}",
    ) {
        let ci = pause_name(&repo, &part);
        prop_assert!(is_dns_label(&ci) && ci.starts_with("ci-failed"), "{:?}", ci);
        let deploy = deploy_pause_name(&repo, &part);
        prop_assert!(is_dns_label(&deploy) && deploy.starts_with("deploy-failed"), "{:?}", deploy);
        prop_assert!(is_label_value(&repository_label(&repo)), "{:?}", repository_label(&repo));
        prop_assert!(is_label_value(&environment_label(&part)), "{:?}", environment_label(&part));
    }

    #[test]
    fn globs_match_as_the_plain_matcher_does(
        pattern in "[ab*?/]{0,12}",
        text in "[ab/]{0,14}",
    ) {
        prop_assert_eq!(glob_match(&pattern, &text), reference_glob(&pattern, &text), "{:?} ~ {:?}", pattern, text);
    }

    // Texts without `*`: repository and environment names hold none, and
    // see `a_star_in_the_text_is_matched_by_a_star_in_the_pattern`.
    #[test]
    fn any_glob_answers_matches_itself_and_star_matches_all(pattern in ".{0,60}", text in "[^*]{0,60}") {
        let _ = glob_match(&pattern, &text);
        prop_assert!(glob_match(&pattern, &pattern), "{:?}", pattern);
        prop_assert!(glob_match("*", &text));
        prop_assert_eq!(glob_match("", &text), text.is_empty());
    }

    #[test]
    fn any_configuration_text_parses_or_names_the_file_or_field(text in ".{0,400}") {
        if let Err(e) = OperatorConfig::parse(&text) {
            prop_assert!(names_the_file_or_field(&e.to_string()), "{}", e);
        }
    }

    #[test]
    fn configuration_shaped_yaml_parses_or_names_the_field(text in config_yaml()) {
        match OperatorConfig::parse(&text) {
            Ok(c) => {
                for p in &c.policies {
                    if let Some(ns) = &p.namespace {
                        prop_assert!(is_dns_label(ns), "{:?} in {}", ns, text);
                    }
                }
            }
            Err(e) => prop_assert!(names_the_file_or_field(&e.to_string()), "{}\n{}", e, text),
        }
    }

    #[test]
    fn any_link_header_gives_no_cursor_or_one_that_keeps_the_next_url(value in ".{0,200}") {
        let Ok(h) = http::HeaderValue::from_str(&value) else { return Ok(()) };
        if let Some(c) = next_cursor(Some(&h)) {
            prop_assert!(cursor_keeps_the_next_request_on_its_path(&c), "{:?} from {:?}", c, value);
        }
    }

    #[test]
    fn a_next_link_gives_its_cursor(
        cursor in "[A-Za-z0-9_=-]{1,40}",
        before in prop_oneof![Just(String::new()), Just(r#"<https://api.github.com/app/hook/deliveries?cursor=p>; rel="prev", "#.to_string())],
    ) {
        let value = format!(r#"{before}<https://api.github.com/app/hook/deliveries?per_page=100&cursor={cursor}>; rel="next""#);
        let h = http::HeaderValue::from_str(&value).expect("header");
        prop_assert_eq!(next_cursor(Some(&h)), Some(cursor));
    }
}
