//! Which namespaces may hold gates for which repositories. Without this,
//! anyone allowed to create a DeploymentGate anywhere could approve any
//! repository's deployment.

use serde::Deserialize;

use super::glob::glob_match;

/// One allowance: gates in namespaces matching `namespace` may gate repositories
/// matching any of `repositories`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TenancyRule {
    /// Namespace name or glob.
    pub namespace: String,
    /// Repository globs (`acme/web`, `acme/*`).
    pub repositories: Vec<String>,
}

/// `Ok` when the namespace may gate the repository. No rules at all means
/// tenancy is off (a single-team installation). The error says why, in words.
pub fn check(rules: &[TenancyRule], namespace: &str, repository: &str) -> Result<(), String> {
    if rules.is_empty() {
        return Ok(());
    }
    let repo = repository.to_ascii_lowercase();
    let mine: Vec<&TenancyRule> = rules
        .iter()
        .filter(|r| glob_match(&r.namespace, namespace))
        .collect();
    if mine.is_empty() {
        return Err(format!(
            "no tenancy rule allows namespace {namespace} to gate any repository; add one to the operator configuration"
        ));
    }
    if mine.iter().any(|r| {
        r.repositories
            .iter()
            .any(|p| glob_match(&p.to_ascii_lowercase(), &repo))
    }) {
        return Ok(());
    }
    let allowed: Vec<&str> = mine
        .iter()
        .flat_map(|r| r.repositories.iter().map(String::as_str))
        .collect();
    Err(format!(
        "namespace {namespace} may gate only {} (tenancy rule for {}), not {repository}",
        allowed.join(", "),
        mine[0].namespace
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> Vec<TenancyRule> {
        vec![
            TenancyRule {
                namespace: "web".into(),
                repositories: vec!["acme/web".into(), "acme/web-*".into()],
            },
            TenancyRule {
                namespace: "team-*".into(),
                repositories: vec!["acme/shared".into()],
            },
        ]
    }

    #[test]
    fn namespace_may_gate_only_its_repositories() {
        assert_eq!(check(&rules(), "web", "acme/web"), Ok(()));
        assert_eq!(check(&rules(), "web", "acme/web-api"), Ok(()));
        let e = check(&rules(), "web", "acme/billing").expect_err("not allowed");
        assert!(
            e.contains("namespace web may gate only acme/web, acme/web-*"),
            "{e}"
        );
        assert_eq!(check(&rules(), "team-a", "acme/shared"), Ok(()));
    }

    #[test]
    fn unknown_namespace_is_refused_and_no_rules_means_off() {
        assert!(
            check(&rules(), "other", "acme/web")
                .unwrap_err()
                .contains("no tenancy rule")
        );
        assert_eq!(check(&[], "anything", "any/repo"), Ok(()));
    }
}
