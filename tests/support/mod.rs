//! Test support: the in-process fake Kubernetes API and the fake GitHub.
pub mod github;
pub mod kube;
pub mod prometheus;

/// The operator configuration a test runs with: `config` as written, opened
/// for a single team (`{namespace: "*", repositories: ["*"]}`) unless it says
/// something about `tenancy` itself — the suite's tests create gates in any
/// namespace; the tenancy tests set their own rules (or `tenancy: []`).
#[allow(dead_code)]
pub fn single_team(config: &str) -> String {
    if config.contains("tenancy") {
        config.to_string()
    } else {
        format!("{config}\ntenancy: [{{namespace: '*', repositories: ['*']}}]\n")
    }
}
