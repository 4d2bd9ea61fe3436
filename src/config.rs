//! The operator's configuration file (a ConfigMap rendered from Helm values),
//! parsed once at start-up into typed structs. Nothing else reads files or
//! environment variables.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::api::{self, Analysis, OnDeadline, WorkloadRef};
use crate::policy::{Bound, IntakeGrant, Tenancy, TenancyRule, glob_match};

/// The configuration file could not be used; the operator refuses to start.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the configuration file {path} is not valid: {source}")]
    Parse {
        path: PathBuf,
        source: serde_yaml_ng::Error,
    },
    #[error("configuration {field}: {why}")]
    Invalid { field: String, why: String },
}

/// Everything the operator is told by its configuration file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OperatorConfig {
    /// Defaults for gates that say nothing themselves.
    #[serde(default)]
    pub defaults: Defaults,
    /// Ordered intake rules: the first whose patterns match a request decides
    /// the gate's namespace and spec; `defaults` applies when none matches.
    #[serde(default)]
    pub policies: Vec<IntakePolicy>,
    /// Which namespaces may hold gates for which repositories. Empty: closed by
    /// default, each namespace may gate only what intake writes there.
    #[serde(default)]
    pub tenancy: Vec<TenancyRule>,
    /// Turn failed workflow runs into ReleasePauses.
    #[serde(default)]
    pub auto_pause: Vec<AutoPauseRule>,
    /// The webhook receiver and the lost-webhook sweeper.
    #[serde(default)]
    pub intake: IntakeSettings,
    /// When finished gates and automatic pauses are deleted.
    #[serde(default)]
    pub retention: RetentionSettings,
    /// The Prometheus server metric analyses read. Without it, a gate with
    /// `analysis` cannot be read and waits (condition `AnalysisError`).
    #[serde(default)]
    pub prometheus: Option<PrometheusSettings>,
}

/// Where metric analyses read their queries (Prometheus HTTP API `/api/v1/query`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrometheusSettings {
    /// Base URL of the Prometheus server (`http://prometheus.monitoring:9090`),
    /// or of any API-compatible one (Thanos, Mimir's `/prometheus` prefix).
    pub url: String,
    /// How long one query may take before the reading counts as unreadable.
    #[serde(default = "default_prometheus_timeout", with = "go_duration")]
    pub timeout: Duration,
    /// A file holding a bearer token sent with every query (a mounted Secret).
    #[serde(default)]
    pub bearer_token_file: Option<PathBuf>,
    /// A PEM file of CA certificates to trust for an `https` URL, instead of the system's.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

fn default_prometheus_timeout() -> Duration {
    Duration::from_secs(10)
}

/// When finished gates and automatic pauses are deleted (see `policy::retention`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetentionSettings {
    /// Delete anything at all. Off: every gate and pause stays until someone deletes it.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// How long a finished gate (and a resumed or expired automatic pause)
    /// stays after it finished.
    #[serde(
        rename = "finishedTTL",
        default = "default_finished_ttl",
        with = "go_duration"
    )]
    pub finished_ttl: Duration,
    /// Finished gates kept per (namespace, repository, environment) however
    /// old, until newer ones finish.
    #[serde(default = "default_keep_per_environment")]
    pub keep_per_environment: u32,
    /// Deletions per second at most, on a budget of their own: retention
    /// never takes API requests from gate work.
    #[serde(default = "default_deletions_per_second")]
    pub deletions_per_second: u32,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        RetentionSettings {
            enabled: true,
            finished_ttl: default_finished_ttl(),
            keep_per_environment: default_keep_per_environment(),
            deletions_per_second: default_deletions_per_second(),
        }
    }
}

impl RetentionSettings {
    /// The rules of the pure retention engine.
    pub fn rules(&self) -> crate::policy::retention::Rules {
        crate::policy::retention::Rules {
            finished_ttl: self.finished_ttl,
            keep_per_environment: self.keep_per_environment,
        }
    }
}

fn default_true() -> bool {
    true
}
fn default_finished_ttl() -> Duration {
    Duration::from_secs(168 * 3600)
}
fn default_keep_per_environment() -> u32 {
    10
}
fn default_deletions_per_second() -> u32 {
    10
}

/// Settings of the webhook receiver and the lost-webhook sweeper.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IntakeSettings {
    /// How often the App's failed webhook deliveries are checked for lost
    /// `deployment_protection_rule` requests.
    #[serde(default = "default_sweep_period", with = "go_duration")]
    pub sweep_period: Duration,
    /// How long the receiver waits for the API server to write a gate before it
    /// answers 503 (GitHub gives up after 10 seconds).
    #[serde(default = "default_write_timeout", with = "go_duration")]
    pub write_timeout: Duration,
}

impl Default for IntakeSettings {
    fn default() -> Self {
        IntakeSettings {
            sweep_period: default_sweep_period(),
            write_timeout: default_write_timeout(),
        }
    }
}

fn default_sweep_period() -> Duration {
    Duration::from_secs(600)
}
fn default_write_timeout() -> Duration {
    Duration::from_secs(8)
}

/// Defaults applied to gates.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Defaults {
    /// Namespace for gates created from webhooks when no policy names one.
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// Deadline of a gate that sets neither `deadline` nor `timeout`.
    #[serde(default = "default_timeout", with = "go_duration")]
    pub timeout: Duration,
    /// The longest any gate may wait, from its creation, when the intake
    /// policy matching it sets no `timeout` (a policy's timeout bounds its
    /// gates). At most 696h (29 days).
    #[serde(default = "default_max_timeout", with = "go_duration")]
    pub max_timeout: Duration,
    /// What the deadline does when no policy says.
    #[serde(default)]
    pub on_deadline: OnDeadline,
    /// How often pending checks and workloads are polled.
    #[serde(default = "default_check_poll", with = "go_duration")]
    pub check_poll: Duration,
    /// How often an undecided gate's workflow run is checked for completion.
    #[serde(default = "default_orphan_check", with = "go_duration")]
    pub orphan_check: Duration,
    /// How long an approved deployment may stay silent before it is Unknown.
    #[serde(default = "default_deployment_report", with = "go_duration")]
    pub deployment_report: Duration,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            namespace: default_namespace(),
            timeout: default_timeout(),
            max_timeout: default_max_timeout(),
            on_deadline: OnDeadline::Reject,
            check_poll: default_check_poll(),
            orphan_check: default_orphan_check(),
            deployment_report: default_deployment_report(),
        }
    }
}

fn default_namespace() -> String {
    "tollgate".into()
}
fn default_timeout() -> Duration {
    Duration::from_secs(3600)
}
fn default_max_timeout() -> Duration {
    api::MAX_GATE_LIFETIME
}
fn default_check_poll() -> Duration {
    Duration::from_secs(60)
}
fn default_orphan_check() -> Duration {
    Duration::from_secs(300)
}
fn default_deployment_report() -> Duration {
    Duration::from_secs(3600)
}

/// One intake rule: requests whose repository and environment match get this gate spec.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IntakePolicy {
    /// Repository globs (`acme/*`); empty matches every repository.
    #[serde(default)]
    pub repositories: Vec<String>,
    /// Environment globs; empty matches every environment.
    #[serde(default)]
    pub environments: Vec<String>,
    /// Namespace the gate is created in.
    pub namespace: Option<String>,
    /// Timeout of the gate (Go duration).
    pub timeout: Option<String>,
    /// `Reject` or `Approve` at the deadline.
    pub on_deadline: Option<OnDeadline>,
    /// Checks that must succeed.
    #[serde(default)]
    pub required_checks: Vec<String>,
    /// Workloads that must be healthy.
    #[serde(default)]
    pub require_healthy: Vec<WorkloadRef>,
    /// Metric analyses every gate of the policy must pass (see the gate's `spec.analysis`).
    #[serde(default)]
    pub analysis: Vec<Analysis>,
    /// Answer approve whatever the verdict.
    #[serde(default)]
    pub dry_run: bool,
    /// A failed deployment pauses later releases of the same repository and environment.
    #[serde(default)]
    pub pause_on_failure: bool,
}

/// Turns a failed workflow run on a branch into a ReleasePause (`reason: ci-failed`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AutoPauseRule {
    /// The repository (`owner/name`) whose runs are watched.
    pub repository: String,
    /// The branch, e.g. `main`.
    pub branch: String,
    /// Workflow names that count; empty: all.
    #[serde(default)]
    pub workflows: Vec<String>,
    /// Environments the pause holds; empty: all.
    #[serde(default)]
    pub environments: Vec<String>,
    /// Namespace of the ReleasePause; defaults to `defaults.namespace`.
    pub namespace: Option<String>,
}

impl OperatorConfig {
    /// Reads and checks the configuration file.
    pub fn load(path: &Path) -> Result<OperatorConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        Self::parse(&text).map_err(|e| match e {
            ConfigError::Parse { source, .. } => ConfigError::Parse {
                path: path.into(),
                source,
            },
            other => other,
        })
    }

    /// Parses and checks configuration text.
    pub fn parse(text: &str) -> Result<OperatorConfig, ConfigError> {
        let config: OperatorConfig = if text.trim().is_empty() {
            OperatorConfig::default()
        } else {
            serde_yaml_ng::from_str(text).map_err(|source| ConfigError::Parse {
                path: PathBuf::from("<config>"),
                source,
            })?
        };
        config.check()?;
        Ok(config)
    }

    /// The first intake policy whose repository and environment patterns both
    /// match, with its index. Empty pattern lists match everything; names
    /// compare case-insensitively, as GitHub's do.
    pub fn policy_for(
        &self,
        repository: &str,
        environment: &str,
    ) -> Option<(usize, &IntakePolicy)> {
        let repo = repository.to_ascii_lowercase();
        let env = environment.to_lowercase();
        self.policies.iter().enumerate().find(|(_, p)| {
            let repo_ok = p.repositories.is_empty()
                || p.repositories
                    .iter()
                    .any(|g| glob_match(&g.to_ascii_lowercase(), &repo));
            let env_ok = p.environments.is_empty()
                || p.environments
                    .iter()
                    .any(|g| glob_match(&g.to_lowercase(), &env));
            repo_ok && env_ok
        })
    }

    /// The namespace intake writes a policy's gates to.
    fn namespace_of<'a>(&'a self, p: &'a IntakePolicy) -> &'a str {
        p.namespace.as_deref().unwrap_or(&self.defaults.namespace)
    }

    /// True when some request falls through every policy to the defaults.
    fn defaults_reachable(&self) -> bool {
        !self
            .policies
            .iter()
            .any(|p| p.repositories.is_empty() && p.environments.is_empty())
    }

    /// The tenancy in force: the explicit rules, or (none configured) exactly
    /// what intake writes: each policy's namespace for its repositories, the
    /// defaults' namespace for every repository, each auto-pause namespace for
    /// its repository.
    pub fn tenancy(&self) -> Tenancy {
        if !self.tenancy.is_empty() {
            return Tenancy::explicit(self.tenancy.clone());
        }
        let mut grants: Vec<IntakeGrant> = self
            .policies
            .iter()
            .map(|p| {
                let ns = self.namespace_of(p).to_string();
                IntakeGrant {
                    read_namespaces: p
                        .require_healthy
                        .iter()
                        .filter_map(|w| w.namespace.clone())
                        .filter(|n| *n != ns)
                        .collect(),
                    namespace: ns,
                    repositories: p.repositories.clone(),
                }
            })
            .collect();
        if self.defaults_reachable() {
            grants.push(IntakeGrant {
                namespace: self.defaults.namespace.clone(),
                repositories: Vec::new(),
                read_namespaces: Vec::new(),
            });
        }
        grants.extend(self.auto_pause.iter().map(|r| {
            IntakeGrant {
                namespace: r
                    .namespace
                    .clone()
                    .unwrap_or_else(|| self.defaults.namespace.clone()),
                repositories: vec![r.repository.clone()],
                read_namespaces: Vec::new(),
            }
        }));
        Tenancy::derived(&grants)
    }

    /// The most a gate of (repository, environment) may be: the matching
    /// intake policy's checks and workloads, whether it may run dry or fail
    /// open, and its timeout; the defaults when no policy matches.
    pub fn bound_for(&self, repository: &str, environment: &str) -> Bound {
        match self.policy_for(repository, environment) {
            Some((i, p)) => Bound {
                origin: format!("policies[{i}]"),
                required_checks: p.required_checks.clone(),
                require_healthy: p.require_healthy.clone(),
                analysis: p.analysis.clone(),
                allow_dry_run: p.dry_run,
                on_deadline: p.on_deadline.unwrap_or(self.defaults.on_deadline),
                // Checked at start-up: a policy timeout always parses.
                max_timeout: p
                    .timeout
                    .as_deref()
                    .and_then(|t| api::parse_duration(t).ok())
                    .unwrap_or(self.defaults.max_timeout),
            },
            None => Bound {
                origin: "defaults".into(),
                required_checks: Vec::new(),
                require_healthy: Vec::new(),
                analysis: Vec::new(),
                allow_dry_run: false,
                on_deadline: self.defaults.on_deadline,
                max_timeout: self.defaults.max_timeout,
            },
        }
    }

    /// Refuses a configuration whose intake would write gates (or pauses) that
    /// tenancy then forbids, naming the field. `operator_namespace` holds the
    /// cluster-wide pauses.
    pub fn check_tenancy(&self, operator_namespace: &str) -> Result<(), ConfigError> {
        let tenancy = self.tenancy();
        let invalid = |field: String, why: String| ConfigError::Invalid { field, why };
        for (i, p) in self.policies.iter().enumerate() {
            let ns = self.namespace_of(p);
            let field = if p.namespace.is_some() {
                format!("policies[{i}].namespace")
            } else {
                "defaults.namespace".to_string()
            };
            let patterns = if p.repositories.is_empty() {
                vec!["*".to_string()]
            } else {
                p.repositories.clone()
            };
            for pattern in &patterns {
                if !tenancy.covers(ns, pattern) {
                    return Err(invalid(
                        field,
                        format!(
                            "intake writes gates for {pattern} to namespace {ns}, but no tenancy rule lets {ns} gate it; add a tenancy rule or choose another namespace"
                        ),
                    ));
                }
            }
            for (j, w) in p.require_healthy.iter().enumerate() {
                if let Some(wns) = &w.namespace
                    && let Err(why) = tenancy.check_read(ns, wns)
                {
                    return Err(invalid(
                        format!("policies[{i}].requireHealthy[{j}].namespace"),
                        why,
                    ));
                }
            }
        }
        if self.defaults_reachable() && !tenancy.covers(&self.defaults.namespace, "*") {
            let ns = &self.defaults.namespace;
            return Err(invalid(
                "defaults.namespace".into(),
                format!(
                    "requests no policy matches get their gate in namespace {ns}, but no tenancy rule lets {ns} gate every repository; add `{{namespace: {ns}, repositories: [\"*\"]}}` to tenancy, or a last policy without patterns"
                ),
            ));
        }
        for (i, r) in self.auto_pause.iter().enumerate() {
            let ns = r.namespace.as_deref().unwrap_or(&self.defaults.namespace);
            if !tenancy.pause_may_hold(ns, operator_namespace, &r.repository) {
                return Err(invalid(
                    format!("autoPause[{i}].namespace"),
                    format!(
                        "pauses in namespace {ns} may not hold gates of {}; add a tenancy rule or use the operator's namespace {operator_namespace}",
                        r.repository
                    ),
                ));
            }
        }
        Ok(())
    }

    /// With the operator watching only `watched` namespaces (`--namespace`;
    /// empty: all), refuses a configuration whose intake writes gates or
    /// pauses anywhere else: nothing would ever reconcile them.
    pub fn check_watched(&self, watched: &[String]) -> Result<(), ConfigError> {
        if watched.is_empty() {
            return Ok(());
        }
        let unwatched = |field: String, ns: &str, what: &str| ConfigError::Invalid {
            field,
            why: format!(
                "intake writes {what} to namespace {ns}, which this operator does not watch (--namespace {}); add {ns} to --namespace (chart: watch.namespaces) or choose a watched namespace",
                watched.join(", --namespace ")
            ),
        };
        let is_watched = |ns: &str| watched.iter().any(|w| w == ns);
        for (i, p) in self.policies.iter().enumerate() {
            if let Some(ns) = &p.namespace
                && !is_watched(ns)
            {
                return Err(unwatched(format!("policies[{i}].namespace"), ns, "gates"));
            }
        }
        let defaults_used = self.defaults_reachable()
            || self.policies.iter().any(|p| p.namespace.is_none())
            || self.auto_pause.iter().any(|r| r.namespace.is_none());
        if defaults_used && !is_watched(&self.defaults.namespace) {
            return Err(unwatched(
                "defaults.namespace".into(),
                &self.defaults.namespace,
                "gates and pauses",
            ));
        }
        for (i, r) in self.auto_pause.iter().enumerate() {
            if let Some(ns) = &r.namespace
                && !is_watched(ns)
            {
                return Err(unwatched(format!("autoPause[{i}].namespace"), ns, "pauses"));
            }
        }
        Ok(())
    }

    fn check(&self) -> Result<(), ConfigError> {
        let invalid = |field: String, why: &str| ConfigError::Invalid {
            field,
            why: why.to_string(),
        };
        if self.defaults.timeout > api::MAX_GATE_LIFETIME {
            return Err(invalid(
                "defaults.timeout".into(),
                "must be at most 696h (29 days)",
            ));
        }
        if self.defaults.max_timeout > api::MAX_GATE_LIFETIME {
            return Err(invalid(
                "defaults.maxTimeout".into(),
                "must be at most 696h (29 days)",
            ));
        }
        if self.defaults.check_poll < Duration::from_secs(1) {
            return Err(invalid("defaults.checkPoll".into(), "must be at least 1s"));
        }
        for (i, p) in self.policies.iter().enumerate() {
            if let Some(t) = &p.timeout {
                let d = api::parse_duration(t)
                    .map_err(|e| invalid(format!("policies[{i}].timeout"), &e.to_string()))?;
                if d > api::MAX_GATE_LIFETIME {
                    return Err(invalid(
                        format!("policies[{i}].timeout"),
                        "must be at most 696h (29 days)",
                    ));
                }
            }
            if let Some(ns) = &p.namespace
                && !is_dns_label(ns)
            {
                return Err(invalid(
                    format!("policies[{i}].namespace"),
                    "must be a Kubernetes namespace name",
                ));
            }
            let lifetime = match &p.timeout {
                Some(t) => api::parse_duration(t).unwrap_or(api::MAX_GATE_LIFETIME),
                None => self.defaults.timeout,
            };
            let field = format!("policies[{i}].analysis");
            crate::policy::analysis::check_all(&p.analysis, &field, lifetime)
                .map_err(|why| ConfigError::Invalid { field, why })?;
            if !p.analysis.is_empty() && self.prometheus.is_none() {
                return Err(invalid(
                    format!("policies[{i}].analysis"),
                    "needs `prometheus.url`: nothing could read its queries",
                ));
            }
        }
        if let Some(prom) = &self.prometheus {
            let ok =
                prom.url.parse::<http::Uri>().ok().filter(|u| {
                    matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some()
                });
            if ok.is_none() {
                return Err(invalid(
                    "prometheus.url".into(),
                    "must be an http:// or https:// URL with a host, e.g. http://prometheus.monitoring:9090",
                ));
            }
            if prom.timeout < Duration::from_millis(100) || prom.timeout > Duration::from_secs(120)
            {
                return Err(invalid(
                    "prometheus.timeout".into(),
                    "must be between 100ms and 2m",
                ));
            }
        }
        for (i, r) in self.tenancy.iter().enumerate() {
            if r.namespace.is_empty() {
                return Err(invalid(
                    format!("tenancy[{i}].namespace"),
                    "name a namespace or a glob (`*` for every namespace)",
                ));
            }
            if r.repositories.is_empty() {
                return Err(invalid(
                    format!("tenancy[{i}].repositories"),
                    "list at least one repository glob",
                ));
            }
        }
        for (i, r) in self.auto_pause.iter().enumerate() {
            if !r.repository.contains('/') {
                return Err(invalid(
                    format!("autoPause[{i}].repository"),
                    "must be owner/name",
                ));
            }
            if r.branch.is_empty() {
                return Err(invalid(
                    format!("autoPause[{i}].branch"),
                    "name the branch whose failed runs pause releases",
                ));
            }
            if let Some(ns) = &r.namespace
                && !is_dns_label(ns)
            {
                return Err(invalid(
                    format!("autoPause[{i}].namespace"),
                    "must be a Kubernetes namespace name",
                ));
            }
        }
        if self.retention.finished_ttl < Duration::from_secs(1) {
            return Err(invalid(
                "retention.finishedTTL".into(),
                "must be at least 1s (turn retention off with `retention.enabled: false`)",
            ));
        }
        if self.retention.keep_per_environment > 10_000 {
            return Err(invalid(
                "retention.keepPerEnvironment".into(),
                "must be at most 10000: every kept gate stays in the operator's cache",
            ));
        }
        if !(1..=1000).contains(&self.retention.deletions_per_second) {
            return Err(invalid(
                "retention.deletionsPerSecond".into(),
                "must be between 1 and 1000",
            ));
        }
        if self.intake.sweep_period < Duration::from_secs(1) {
            return Err(invalid("intake.sweepPeriod".into(), "must be at least 1s"));
        }
        if self.intake.write_timeout < Duration::from_millis(100)
            || self.intake.write_timeout > Duration::from_secs(9)
        {
            return Err(invalid(
                "intake.writeTimeout".into(),
                "must be between 100ms and 9s (GitHub waits 10s for an answer)",
            ));
        }
        Ok(())
    }
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Serde adapter for Go-style duration strings.
mod go_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        crate::api::parse_duration(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_the_defaults() {
        let c = OperatorConfig::parse("").expect("empty config is fine");
        assert_eq!(c.defaults.timeout, Duration::from_secs(3600));
        assert_eq!(c.defaults.namespace, "tollgate");
    }

    #[test]
    fn analysis_policies_are_checked_at_start_up_naming_the_field() {
        let policy = |a: &str| {
            format!(
                "prometheus: {{url: 'http://prom:9090'}}\npolicies:\n- timeout: 1h\n  analysis:\n  - {{name: e, query: up, {a}}}\n"
            )
        };
        for (a, field, why) in [
            (
                "for: 10m",
                "policies[0].analysis",
                "policies[0].analysis[0].min or policies[0].analysis[0].max: set at least one bound",
            ),
            (
                "max: 1, interval: 5s",
                "policies[0].analysis",
                "policies[0].analysis[0].interval 5s is under 10s",
            ),
            (
                "max: 1, for: 2h",
                "policies[0].analysis",
                "policies[0].analysis[0].for 2h is longer than the gate may wait (1h0m0s)",
            ),
        ] {
            let e = OperatorConfig::parse(&policy(a)).expect_err(a).to_string();
            assert!(
                e.starts_with(&format!("configuration {field}: {why}")),
                "{e}"
            );
        }
        assert!(OperatorConfig::parse(&policy("max: 1, for: 1h")).is_ok());
        let e = OperatorConfig::parse("policies:\n- analysis:\n  - {name: e, query: up, max: 1}\n")
            .expect_err("no prometheus")
            .to_string();
        assert!(e.contains("needs `prometheus.url`"), "{e}");
        let e = OperatorConfig::parse("prometheus: {url: 'prom:9090'}\n")
            .expect_err("no scheme")
            .to_string();
        assert!(
            e.starts_with("configuration prometheus.url: must be an http:// or https:// URL"),
            "{e}"
        );
        let c = OperatorConfig::parse("prometheus:\n  url: https://prom.example\n  timeout: 3s\n  bearerTokenFile: /var/run/secrets/prom/token\n  caFile: /etc/prom/ca.pem\n").expect("full prometheus section");
        let p = c.prometheus.expect("prometheus");
        assert_eq!(p.timeout, Duration::from_secs(3));
        assert_eq!(p.ca_file.as_deref(), Some(Path::new("/etc/prom/ca.pem")));
    }

    #[test]
    fn unknown_field_is_refused_with_its_name() {
        let e = OperatorConfig::parse("defaults:\n  timout: 1h\n").expect_err("typo");
        assert!(e.to_string().contains("timout"), "{e}");
    }

    #[test]
    fn intake_settings_default_to_ten_minutes_and_eight_seconds() {
        let c = OperatorConfig::parse("").expect("empty config is fine");
        assert_eq!(c.intake.sweep_period, Duration::from_secs(600));
        assert_eq!(c.intake.write_timeout, Duration::from_secs(8));
        let c = OperatorConfig::parse("intake:\n  sweepPeriod: 2m\n  writeTimeout: 5s\n")
            .expect("valid intake settings");
        assert_eq!(c.intake.sweep_period, Duration::from_secs(120));
        assert_eq!(c.intake.write_timeout, Duration::from_secs(5));
        let e = OperatorConfig::parse("intake:\n  writeTimeout: 30s\n").expect_err("too long");
        assert!(e.to_string().contains("intake.writeTimeout"), "{e}");
    }

    #[test]
    fn auto_pause_rule_without_branch_names_the_rule() {
        let e = OperatorConfig::parse("autoPause:\n- repository: acme/web\n  branch: ''\n")
            .expect_err("no branch");
        assert!(e.to_string().contains("autoPause[0].branch"), "{e}");
    }

    #[test]
    fn no_tenancy_rules_allow_exactly_what_intake_writes() {
        let c = OperatorConfig::parse(
            "policies:\n- repositories: ['acme/web']\n  namespace: web\n  requireHealthy: [{kind: Deployment, name: api, namespace: staging}]\n",
        )
        .expect("valid");
        let t = c.tenancy();
        assert_eq!(t.check("web", "acme/web"), Ok(()));
        assert!(t.check("web", "acme/billing").is_err());
        assert_eq!(t.check("tollgate", "acme/billing"), Ok(()));
        assert!(t.check("default", "acme/web").is_err());
        assert_eq!(t.check_read("web", "staging"), Ok(()));
        c.check_tenancy("tollgate")
            .expect("intake and tenancy agree");
    }

    #[test]
    fn intake_that_tenancy_forbids_is_refused_naming_the_field() {
        let c = OperatorConfig::parse(
            "policies:\n- repositories: ['acme/*']\n  namespace: web\n- repositories: ['other/*']\n  namespace: other\ntenancy:\n- namespace: web\n  repositories: ['acme/*']\n- namespace: tollgate\n  repositories: ['*']\n",
        )
        .expect("parses");
        let e = c
            .check_tenancy("tollgate")
            .expect_err("policies[1] is not allowed");
        assert!(e.to_string().contains("policies[1].namespace"), "{e}");
        let c = OperatorConfig::parse("tenancy:\n- namespace: web\n  repositories: ['*']\n")
            .expect("parses");
        let e = c
            .check_tenancy("tollgate")
            .expect_err("defaults not allowed");
        assert!(e.to_string().contains("defaults.namespace"), "{e}");
        let open = OperatorConfig::parse("tenancy:\n- namespace: '*'\n  repositories: ['*']\n")
            .expect("parses");
        open.check_tenancy("tollgate").expect("open on purpose");
        assert_eq!(open.tenancy().check("anyone", "any/repo"), Ok(()));
    }

    #[test]
    fn the_bound_of_a_gate_is_its_policy_or_the_defaults() {
        let c = OperatorConfig::parse(
            "policies:\n- repositories: ['acme/*']\n  environments: [Production]\n  timeout: 2h\n  requiredChecks: [ci]\n  onDeadline: Approve\n",
        )
        .expect("valid");
        let b = c.bound_for("Acme/Web", "production");
        assert_eq!(b.origin, "policies[0]");
        assert_eq!(b.required_checks, vec!["ci"]);
        assert_eq!(b.max_timeout, Duration::from_secs(7200));
        assert_eq!(b.on_deadline, OnDeadline::Approve);
        assert!(!b.allow_dry_run);
        let d = c.bound_for("other/web", "production");
        assert_eq!(d.origin, "defaults");
        assert_eq!(d.max_timeout, api::MAX_GATE_LIFETIME);
    }

    #[test]
    fn retention_defaults_to_a_week_and_ten_per_environment_and_checks_its_fields() {
        let c = OperatorConfig::parse("").expect("empty config is fine");
        assert_eq!(
            c.retention,
            RetentionSettings {
                enabled: true,
                finished_ttl: Duration::from_secs(168 * 3600),
                keep_per_environment: 10,
                deletions_per_second: 10,
            }
        );
        let c = OperatorConfig::parse(
            "retention:\n  finishedTTL: 24h\n  keepPerEnvironment: 0\n  deletionsPerSecond: 50\n",
        )
        .expect("valid retention");
        assert_eq!(c.retention.finished_ttl, Duration::from_secs(24 * 3600));
        assert_eq!(c.retention.keep_per_environment, 0);
        assert_eq!(c.retention.deletions_per_second, 50);
        for (yaml, field) in [
            ("retention:\n  finishedTTL: 0s\n", "retention.finishedTTL"),
            (
                "retention:\n  finishedTTL: 7d\n",
                "retention: invalid duration \"7d\"",
            ),
            (
                "retention:\n  deletionsPerSecond: 0\n",
                "retention.deletionsPerSecond",
            ),
            (
                "retention:\n  keepPerEnvironment: 20000\n",
                "retention.keepPerEnvironment",
            ),
            ("retention:\n  finishedTtl: 1h\n", "finishedTtl"),
        ] {
            let e = OperatorConfig::parse(yaml).expect_err(yaml);
            assert!(e.to_string().contains(field), "{yaml}: {e}");
        }
    }

    #[test]
    fn intake_writing_to_a_namespace_the_operator_does_not_watch_is_refused_naming_the_field() {
        let c = OperatorConfig::parse(
            "defaults:\n  namespace: tollgate\npolicies:\n- repositories: ['acme/*']\n  namespace: web\n- repositories: ['other/*']\n  namespace: other\n",
        )
        .expect("parses");
        c.check_watched(&[]).expect("watching everything");
        let e = c
            .check_watched(&["web".into(), "tollgate".into()])
            .expect_err("other is not watched");
        assert!(e.to_string().contains("policies[1].namespace"), "{e}");
        assert!(e.to_string().contains("namespace other"), "{e}");
        let e = c
            .check_watched(&["web".into(), "other".into()])
            .expect_err("the defaults' namespace is not watched");
        assert!(e.to_string().contains("defaults.namespace"), "{e}");
        c.check_watched(&["web".into(), "other".into(), "tollgate".into()])
            .expect("every namespace intake writes to is watched");
        let pauses = OperatorConfig::parse(
            "autoPause:\n- repository: acme/web\n  branch: main\n  namespace: web\n",
        )
        .expect("parses");
        let e = pauses
            .check_watched(&["tollgate".into()])
            .expect_err("the pause namespace is not watched");
        assert!(e.to_string().contains("autoPause[0].namespace"), "{e}");
    }

    #[test]
    fn bad_policy_timeout_names_the_rule() {
        let e = OperatorConfig::parse("policies:\n- repositories: ['a/*']\n  timeout: 2d\n")
            .expect_err("bad");
        assert!(e.to_string().contains("policies[0].timeout"), "{e}");
    }
}
