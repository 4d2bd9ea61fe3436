//! Which gates a ReleasePause holds.

use super::glob::glob_match;
use crate::api::PauseScope;

/// True when a gate of `repository` deploying to `environment` is in `scope`.
/// Repository and environment names compare case-insensitively, as GitHub's
/// do (`Production` is `production`); an empty environment list means every
/// environment.
pub fn matches(scope: &PauseScope, repository: &str, environment: &str) -> bool {
    let repo = repository.to_ascii_lowercase();
    let env = environment.to_lowercase();
    let repo_ok = scope
        .repositories
        .iter()
        .any(|p| glob_match(&p.to_ascii_lowercase(), &repo));
    let env_ok = scope.environments.is_empty()
        || scope
            .environments
            .iter()
            .any(|p| glob_match(&p.to_lowercase(), &env));
    repo_ok && env_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(repos: &[&str], envs: &[&str]) -> PauseScope {
        PauseScope {
            repositories: repos.iter().map(|s| s.to_string()).collect(),
            environments: envs.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn empty_environments_mean_all_environments() {
        assert!(matches(&scope(&["acme/web"], &[]), "acme/web", "staging"));
        assert!(matches(
            &scope(&["acme/web"], &[]),
            "Acme/Web",
            "production"
        ));
    }

    #[test]
    fn repository_globs_and_environment_lists_both_must_match() {
        let s = scope(&["acme/*"], &["production", "prod-*"]);
        assert!(matches(&s, "acme/web", "production"));
        assert!(matches(&s, "acme/api", "prod-eu"));
        assert!(!matches(&s, "acme/web", "staging"));
        assert!(!matches(&s, "other/web", "production"));
        assert!(matches(&scope(&["*"], &[]), "anyone/anything", "x"));
    }

    #[test]
    fn environments_match_case_insensitively_as_at_github() {
        let s = scope(&["acme/*"], &["Prod-*", "production"]);
        assert!(matches(&s, "acme/web", "PRODUCTION"));
        assert!(matches(&s, "acme/web", "prod-EU"));
        assert!(!matches(&s, "acme/web", "staging"));
    }
}
