//! The run id read from a webhook's `deployment_callback_url`: only the
//! review endpoint of the payload's repository on the configured API gives
//! one. No input may panic. First line: the repository; the rest: the URL.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tollgate::github::{Auth, GitHub, GitHubConfig};

const API: &str = "https://api.github.com";

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
                    auth: Auth::Token("fuzz".into()),
                    ..GitHubConfig::default()
                })
                .expect("client")
            };
            (rt, gh)
        })
        .1
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (repo, url) = text.split_once('\n').unwrap_or(("acme/web", text));
    let Ok(id) = github().callback_run_id(url, repo) else {
        return;
    };
    // Accepted: exactly `{API}/repos/{repo}/actions/runs/{id}/deployment_protection_rule`,
    // the repository compared without case, the id in decimal digits.
    assert!(id > 0, "{url}: {id}");
    let rest = url
        .strip_prefix(&format!("{API}/repos/"))
        .unwrap_or_else(|| panic!("{url} is not on {API}"));
    let (named, tail) = rest
        .split_at_checked(repo.len())
        .unwrap_or_else(|| panic!("{url} is too short for {repo}"));
    assert!(
        named.eq_ignore_ascii_case(repo),
        "{url} names {named}, not {repo}"
    );
    let digits = tail
        .strip_prefix("/actions/runs/")
        .and_then(|t| t.strip_suffix("/deployment_protection_rule"))
        .unwrap_or_else(|| panic!("{url} is not the review endpoint"));
    assert!(digits.bytes().all(|b| b.is_ascii_digit()), "{url}");
    assert_eq!(digits.parse::<i64>().ok(), Some(id), "{url}");
});
