//! Names and labels made from a request: gate and pause names are DNS labels,
//! gate names end in the run id and ignore ASCII case, labels are valid label
//! values. No input may panic. First 8 bytes: the run id; then the
//! repository and the environment (or branch), one per line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate::github::webhook::{
    deploy_pause_name, environment_label, gate_name, pause_name, repository_label,
};

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

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    // Run ids from a callback URL are positive.
    let run = i64::from_le_bytes(data[..8].try_into().expect("8 bytes"))
        .checked_abs()
        .unwrap_or(1)
        .max(1);
    let Ok(text) = std::str::from_utf8(&data[8..]) else {
        return;
    };
    let (repo, env) = text.split_once('\n').unwrap_or((text, "production"));

    let name = gate_name(repo, env, run);
    assert!(is_dns_label(&name), "{repo:?} {env:?} {run}: {name:?}");
    assert!(name.ends_with(&format!("-{run}")), "{name:?}");
    assert_eq!(
        gate_name(&repo.to_ascii_uppercase(), &env.to_ascii_uppercase(), run),
        name
    );
    if let Some(next) = run.checked_add(1) {
        assert_ne!(gate_name(repo, env, next), name);
    }
    let ci = pause_name(repo, env);
    assert!(is_dns_label(&ci) && ci.starts_with("ci-failed"), "{ci:?}");
    let deploy = deploy_pause_name(repo, env);
    assert!(
        is_dns_label(&deploy) && deploy.starts_with("deploy-failed"),
        "{deploy:?}"
    );
    assert!(is_label_value(&repository_label(repo)));
    assert!(is_label_value(&environment_label(env)));
});
