//! Which namespaces may hold gates for which repositories. The namespace is
//! the trust boundary: whoever can write objects in a namespace must never be
//! able to approve, reject, hold or comment on another team's run.
//!
//! Closed by default: with no explicit rules, the allowances are exactly what
//! intake itself writes (see [`Tenancy::derived`]).

use serde::Deserialize;

use super::glob::glob_match;

/// One allowance: gates in namespaces matching `namespace` may gate repositories
/// matching any of `repositories`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TenancyRule {
    /// Namespace name or glob (`*` opens every namespace).
    pub namespace: String,
    /// Repository globs (`acme/web`, `acme/*`, `*`).
    pub repositories: Vec<String>,
    /// Other namespaces whose workloads these gates may require to be healthy
    /// (`requireHealthy`); a gate may always read its own namespace.
    #[serde(default)]
    pub read_namespaces: Vec<String>,
}

/// The allowances in force, explicit or derived from intake.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tenancy {
    rules: Vec<TenancyRule>,
    /// True when the rules were derived from intake (no `tenancy` configured).
    derived: bool,
}

/// What intake writes where: one entry per intake policy (and one for the
/// defaults), used to derive the closed-by-default allowances.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntakeGrant {
    pub namespace: String,
    /// Repository globs; empty means every repository.
    pub repositories: Vec<String>,
    /// Namespaces of the workloads the policy requires to be healthy.
    pub read_namespaces: Vec<String>,
}

impl Tenancy {
    /// Explicit rules from the configuration.
    pub fn explicit(rules: Vec<TenancyRule>) -> Tenancy {
        Tenancy {
            rules,
            derived: false,
        }
    }

    /// Closed by default: a namespace may gate exactly what intake writes there.
    pub fn derived(grants: &[IntakeGrant]) -> Tenancy {
        let rules = grants
            .iter()
            .map(|g| TenancyRule {
                namespace: g.namespace.clone(),
                repositories: if g.repositories.is_empty() {
                    vec!["*".into()]
                } else {
                    g.repositories.clone()
                },
                read_namespaces: g.read_namespaces.clone(),
            })
            .collect();
        Tenancy {
            rules,
            derived: true,
        }
    }

    /// True when no tenancy rules were configured and intake's allowances apply.
    pub fn is_derived(&self) -> bool {
        self.derived
    }

    /// The rules in force.
    pub fn rules(&self) -> &[TenancyRule] {
        &self.rules
    }

    /// `Ok` when gates in `namespace` may gate `repository`; the error says why
    /// not, in words a tenant can act on.
    pub fn check(&self, namespace: &str, repository: &str) -> Result<(), String> {
        let repo = repository.to_ascii_lowercase();
        let mine: Vec<&TenancyRule> = self
            .rules
            .iter()
            .filter(|r| glob_match(&r.namespace, namespace))
            .collect();
        if mine.is_empty() {
            let how = if self.derived {
                "no tenancy rules are configured, so only the namespaces intake writes gates to may hold them; add a `tenancy` rule for this namespace to the operator configuration"
            } else {
                "add a `tenancy` rule for it to the operator configuration"
            };
            return Err(format!(
                "namespace {namespace} may not gate any repository: {how}"
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
            "namespace {namespace} may gate only {}, not {repository}",
            allowed.join(", "),
        ))
    }

    /// True when a ReleasePause in `pause_namespace` may hold a gate of
    /// `repository`: pauses in the operator's own namespace are cluster-wide,
    /// any other holds only what its namespace may gate.
    pub fn pause_may_hold(
        &self,
        pause_namespace: &str,
        operator_namespace: &str,
        repository: &str,
    ) -> bool {
        pause_namespace == operator_namespace || self.check(pause_namespace, repository).is_ok()
    }

    /// The repository patterns of a pause's scope that its namespace may not
    /// cover (for its status). Empty for the operator's namespace. A pattern
    /// counts as covered when some allowed repository glob matches it as text
    /// (`acme/*` covers `acme/web-*`).
    pub fn uncovered_scope<'a>(
        &self,
        pause_namespace: &str,
        operator_namespace: &str,
        patterns: &'a [String],
    ) -> Vec<&'a str> {
        if pause_namespace == operator_namespace {
            return Vec::new();
        }
        patterns
            .iter()
            .filter(|p| !self.covers(pause_namespace, p))
            .map(String::as_str)
            .collect()
    }

    /// True when `namespace` may gate every repository `pattern` matches, judged
    /// by matching the allowed globs against the pattern's text.
    pub fn covers(&self, namespace: &str, pattern: &str) -> bool {
        let pattern = pattern.to_ascii_lowercase();
        self.rules
            .iter()
            .filter(|r| glob_match(&r.namespace, namespace))
            .flat_map(|r| r.repositories.iter())
            .any(|g| glob_match(&g.to_ascii_lowercase(), &pattern))
    }

    /// `Ok` when gates in `gate_namespace` may require workloads in
    /// `workload_namespace` to be healthy: their own namespace, or one a rule
    /// for their namespace lists in `readNamespaces`.
    pub fn check_read(&self, gate_namespace: &str, workload_namespace: &str) -> Result<(), String> {
        if gate_namespace == workload_namespace
            || self
                .rules
                .iter()
                .filter(|r| glob_match(&r.namespace, gate_namespace))
                .flat_map(|r| r.read_namespaces.iter())
                .any(|n| glob_match(n, workload_namespace))
        {
            return Ok(());
        }
        Err(format!(
            "namespace {gate_namespace} may not read workloads in namespace {workload_namespace}; list it in `readNamespaces` of a tenancy rule for {gate_namespace}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(ns: &str, repos: &[&str]) -> TenancyRule {
        TenancyRule {
            namespace: ns.into(),
            repositories: repos.iter().map(|s| s.to_string()).collect(),
            read_namespaces: Vec::new(),
        }
    }

    fn rules() -> Tenancy {
        Tenancy::explicit(vec![
            rule("web", &["acme/web", "acme/web-*"]),
            rule("team-*", &["acme/shared"]),
        ])
    }

    #[test]
    fn namespace_may_gate_only_its_repositories() {
        let t = rules();
        assert_eq!(t.check("web", "acme/web"), Ok(()));
        assert_eq!(t.check("web", "Acme/Web-API"), Ok(()));
        let e = t.check("web", "acme/billing").expect_err("not allowed");
        assert_eq!(
            e,
            "namespace web may gate only acme/web, acme/web-*, not acme/billing"
        );
        assert_eq!(t.check("team-a", "acme/shared"), Ok(()));
    }

    #[test]
    fn no_rules_is_closed_not_open() {
        let t = Tenancy::derived(&[]);
        let e = t
            .check("anything", "any/repo")
            .expect_err("closed by default");
        assert!(e.contains("no tenancy rules are configured"), "{e}");
        assert!(
            rules()
                .check("other", "acme/web")
                .unwrap_err()
                .contains("may not gate any repository")
        );
    }

    #[test]
    fn derived_rules_allow_exactly_what_intake_writes() {
        let t = Tenancy::derived(&[
            IntakeGrant {
                namespace: "web".into(),
                repositories: vec!["acme/web".into()],
                read_namespaces: vec!["staging".into()],
            },
            IntakeGrant {
                namespace: "tollgate".into(),
                repositories: vec![],
                read_namespaces: vec![],
            },
        ]);
        assert!(t.is_derived());
        assert_eq!(t.check("web", "acme/web"), Ok(()));
        assert!(t.check("web", "acme/billing").is_err());
        assert_eq!(t.check("tollgate", "anyone/anything"), Ok(()));
        assert!(t.check("team-b", "acme/web").is_err());
        assert_eq!(t.check_read("web", "staging"), Ok(()));
        assert_eq!(t.check_read("web", "web"), Ok(()));
        assert!(t.check_read("web", "payments").is_err());
    }

    #[test]
    fn a_star_rule_opens_every_namespace_on_purpose() {
        let t = Tenancy::explicit(vec![rule("*", &["*"])]);
        assert_eq!(t.check("whatever", "any/repo"), Ok(()));
    }

    #[test]
    fn pauses_hold_only_what_their_namespace_may_gate_except_the_operators() {
        let t = Tenancy::explicit(vec![
            rule("team-a", &["acme/a"]),
            rule("team-b", &["acme/b"]),
        ]);
        assert!(t.pause_may_hold("team-b", "tollgate", "acme/b"));
        assert!(!t.pause_may_hold("team-b", "tollgate", "acme/a"));
        assert!(t.pause_may_hold("tollgate", "tollgate", "acme/a"));
        let star = vec!["*".to_string(), "acme/b".to_string()];
        assert_eq!(t.uncovered_scope("team-b", "tollgate", &star), vec!["*"]);
        assert!(t.uncovered_scope("tollgate", "tollgate", &star).is_empty());
        assert!(Tenancy::explicit(vec![rule("x", &["acme/*"])]).covers("x", "acme/web-*"));
    }
}
