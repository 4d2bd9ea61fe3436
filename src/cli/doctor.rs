//! `tollgate doctor`: checks an installation the way a person would, one
//! line each — the API server, the caller's permissions for the operator's
//! verbs, the CRDs against this binary's, the configuration (parsed and
//! checked as start-up does), the GitHub credentials and App installations,
//! the webhook secret, the operator's Deployment and its leader — each ✓ or ✗
//! with the fix in one line. Exit status 1 when anything is ✗.
//!
//! Nothing here writes to the cluster or to GitHub except the read-only
//! reviews the API server offers (SelfSubjectAccessReview) and a GitHub
//! installation token, minted as the operator would.

use std::path::{Path, PathBuf};

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, PostParams};
use kube::{Client, CustomResourceExt};
use serde::Serialize;

use crate::api::{DeploymentGate, ReleasePause};
use crate::config::{ConfigError, OperatorConfig};
use crate::github::{CredentialError, GitHub, GitHubConfig, GitHubError, GitHubFlags};

/// Where the chart mounts the configuration and the GitHub credentials: run
/// inside the operator's pod (`kubectl exec deploy/tollgate -- tollgate
/// doctor`) the doctor finds them without flags.
const MOUNTED_CONFIG: &str = "/etc/tollgate/config/config.yaml";
const MOUNTED_GITHUB: &str = "/etc/tollgate/github";

use crate::cluster::crds::APPLY_CRDS;

/// Flags of `tollgate doctor`.
#[derive(clap::Args, Debug, Clone)]
pub struct DoctorArgs {
    /// The operator's namespace (its Deployment, Lease and ConfigMap, and
    /// where permissions are checked); default: the kubeconfig context's.
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
    /// Name of the operator's Deployment (the chart's release full name).
    #[arg(long, default_value = "tollgate")]
    pub deployment: String,
    /// Name of the leader-election Lease; default: the Deployment's
    /// `--lease-name`, else the Deployment's name.
    #[arg(long)]
    pub lease_name: Option<String>,
    /// The operator's configuration file; default: the chart's mount, else the
    /// ConfigMap `<deployment>-config`.
    #[arg(long, env = "TOLLGATE_CONFIG")]
    pub config: Option<PathBuf>,
    /// The GitHub flags of `tollgate run`; each file defaults to the chart's
    /// mount when it exists.
    #[command(flatten)]
    pub github: GitHubFlags,
    /// File holding the webhook secret.
    #[arg(long)]
    pub webhook_secret_file: Option<PathBuf>,
    /// `text` (one line per check) or `json` (for scripts).
    #[arg(long, short = 'o', value_enum, default_value = "text")]
    pub output: Output,
}

/// How the report is printed.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Text,
    Json,
}

/// How one check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// ✓
    Pass,
    /// ✗: the installation is broken here.
    Fail,
    /// Not checked: what it needs was not given, or an earlier check failed.
    Skip,
}

/// One line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// A stable name for scripts: `api-server`, `permissions`, `crd`, `config`,
    /// `github-credentials`, `github-installation`, `webhook-secret`,
    /// `deployment`, `leader`.
    pub check: &'static str,
    pub status: Outcome,
    pub message: String,
    /// What to do, for a ✗ (and for a skip, how to make it checkable).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    fn pass(check: &'static str, message: impl Into<String>) -> Check {
        Check {
            check,
            status: Outcome::Pass,
            message: message.into(),
            fix: None,
        }
    }

    fn fail(check: &'static str, message: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            check,
            status: Outcome::Fail,
            message: message.into(),
            fix: Some(fix.into()),
        }
    }

    fn skip(check: &'static str, message: impl Into<String>, fix: Option<String>) -> Check {
        Check {
            check,
            status: Outcome::Skip,
            message: message.into(),
            fix,
        }
    }
}

/// Every check, in order.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub ok: bool,
    pub checks: Vec<Check>,
}

impl Report {
    fn new(checks: Vec<Check>) -> Report {
        Report {
            ok: !checks.iter().any(|c| c.status == Outcome::Fail),
            checks,
        }
    }

    /// The process's exit status: 1 when any check failed.
    pub fn exit_code(&self) -> u8 {
        if self.ok { 0 } else { 1 }
    }

    /// What to print.
    pub fn render(&self, output: Output) -> String {
        match output {
            Output::Json => {
                // Plain data of strings and enums: serialising cannot fail.
                serde_json::to_string_pretty(self).unwrap_or_default() + "\n"
            }
            Output::Text => {
                let mut out = String::new();
                for c in &self.checks {
                    let mark = match c.status {
                        Outcome::Pass => "✓",
                        Outcome::Fail => "✗",
                        Outcome::Skip => "-",
                    };
                    out.push_str(&format!("{mark} {}\n", c.message));
                    if let Some(fix) = &c.fix {
                        out.push_str(&format!("    fix: {fix}\n"));
                    }
                }
                let count = |o| self.checks.iter().filter(|c| c.status == o).count();
                out.push_str(&format!(
                    "{} passed, {} failed, {} not checked\n",
                    count(Outcome::Pass),
                    count(Outcome::Fail),
                    count(Outcome::Skip)
                ));
                out
            }
        }
    }
}

/// The cluster to check: a client and the server's URL (for the messages),
/// or why there is none.
pub type Cluster = Result<(Client, String), String>;

/// Reads the kubeconfig (or in-cluster config) and runs every check.
pub async fn execute(args: &DoctorArgs) -> Report {
    let cluster = match kube::Config::infer().await {
        Ok(config) => {
            let url = config.cluster_url.to_string();
            Client::try_from(config)
                .map(|c| (c, url))
                .map_err(|e| e.to_string())
        }
        Err(e) => Err(e.to_string()),
    };
    doctor(cluster, args, Timestamp::now()).await
}

/// Runs every check against `cluster` and the files `args` names.
pub async fn doctor(cluster: Cluster, args: &DoctorArgs, now: Timestamp) -> Report {
    let mut checks = Vec::new();
    let kube = match cluster {
        Ok((client, url)) => match client.apiserver_version().await {
            Ok(v) => {
                checks.push(Check::pass(
                    "api-server",
                    format!("API server {url} reachable (Kubernetes {})", v.git_version),
                ));
                Some(client)
            }
            Err(e) => {
                checks.push(Check::fail(
                    "api-server",
                    format!("API server {url} not reachable: {e}"),
                    "check that the cluster is up and `kubectl config current-context` names it",
                ));
                None
            }
        },
        Err(why) => {
            checks.push(Check::fail(
                "api-server",
                format!("no Kubernetes configuration: {why}"),
                "set KUBECONFIG or select a context with `kubectl config use-context`",
            ));
            None
        }
    };
    let namespace = kube
        .as_ref()
        .map(|c| {
            args.namespace
                .clone()
                .unwrap_or_else(|| c.default_namespace().to_string())
        })
        .or_else(|| args.namespace.clone())
        .unwrap_or_else(|| "default".to_string());
    let deployment = match &kube {
        Some(client) => {
            checks.push(permissions(client, &namespace).await);
            for crd in [DeploymentGate::crd(), ReleasePause::crd()] {
                checks.push(crd_check(client, &crd).await);
            }
            read_deployment(client, &namespace, &args.deployment).await
        }
        None => Err(None),
    };
    let deployment_args = deployment
        .as_ref()
        .ok()
        .map(operator_args)
        .unwrap_or_default();

    let config = load_config(kube.as_ref(), args, &namespace, &deployment_args).await;
    let config = match config {
        Ok((config, message)) => {
            checks.push(Check::pass("config", message));
            Some(config)
        }
        Err(check) => {
            checks.push(check);
            None
        }
    };

    checks.extend(github_checks(args, config.as_ref()).await);
    checks.push(webhook_secret(args));

    match (&kube, deployment) {
        (Some(client), Ok(d)) => {
            let ready = deployment_ready(&d, &namespace, &args.deployment);
            let is_ready = ready.status == Outcome::Pass;
            checks.push(ready);
            checks.push(leader(client, &namespace, args, &deployment_args, is_ready, now).await);
        }
        (Some(_), Err(Some(check))) => {
            checks.push(check);
            checks.push(Check::skip(
                "leader",
                "leader: not checked (no operator Deployment)",
                None,
            ));
        }
        _ => {
            for (check, what) in [("deployment", "Deployment"), ("leader", "leader")] {
                checks.push(Check::skip(
                    check,
                    format!("{what}: not checked (needs the API server)"),
                    None,
                ));
            }
        }
    }
    Report::new(checks)
}

/// What the operator does with the API server (the chart's `rbac.yaml`),
/// as (API group, resource, subresource, verbs).
const OPERATOR_VERBS: &[(&str, &str, &str, &[&str])] = &[
    (
        "tollgate.dev",
        "deploymentgates",
        "",
        &["get", "list", "watch", "create", "patch", "delete"],
    ),
    (
        "tollgate.dev",
        "releasepauses",
        "",
        &["get", "list", "watch", "create", "patch", "delete"],
    ),
    ("tollgate.dev", "deploymentgates", "status", &["patch"]),
    ("tollgate.dev", "releasepauses", "status", &["patch"]),
    ("events.k8s.io", "events", "", &["create"]),
    ("apps", "deployments", "", &["get", "list", "watch"]),
];

/// One SelfSubjectAccessReview per verb of [`OPERATOR_VERBS`] in `namespace`.
async fn permissions(client: &Client, namespace: &str) -> Check {
    let api: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let mut missing = Vec::new();
    let mut asked = 0;
    for (group, resource, sub, verbs) in OPERATOR_VERBS {
        for verb in *verbs {
            asked += 1;
            let review = SelfSubjectAccessReview {
                spec: SelfSubjectAccessReviewSpec {
                    resource_attributes: Some(ResourceAttributes {
                        namespace: Some(namespace.to_string()),
                        verb: Some(verb.to_string()),
                        group: Some(group.to_string()),
                        resource: Some(resource.to_string()),
                        subresource: (!sub.is_empty()).then(|| sub.to_string()),
                        ..ResourceAttributes::default()
                    }),
                    ..SelfSubjectAccessReviewSpec::default()
                },
                ..SelfSubjectAccessReview::default()
            };
            let what = if sub.is_empty() {
                format!("{verb} {resource}.{group}")
            } else {
                format!("{verb} {resource}/{sub}.{group}")
            };
            match api.create(&PostParams::default(), &review).await {
                Ok(answer) if answer.status.as_ref().is_some_and(|s| s.allowed) => {}
                Ok(_) => missing.push(what),
                Err(e) => {
                    return Check::fail(
                        "permissions",
                        format!("cannot ask the API server what you may do: {e}"),
                        "SelfSubjectAccessReview (authorization.k8s.io/v1) must be allowed; every authenticated user has it by default",
                    );
                }
            }
        }
    }
    if missing.is_empty() {
        Check::pass(
            "permissions",
            format!(
                "permissions: you may do all {asked} things the operator does in namespace {namespace}"
            ),
        )
    } else {
        Check::fail(
            "permissions",
            format!(
                "permissions: in namespace {namespace} you may not {}",
                missing.join(", ")
            ),
            "bind the chart's ClusterRole (or Role) to your user or group, or run as the operator's ServiceAccount (`kubectl auth can-i --list --as system:serviceaccount:NAMESPACE:tollgate`)",
        )
    }
}

/// The CRD as served against the one this binary generates: installed,
/// serving `v1alpha1`, with the same schema.
async fn crd_check(client: &Client, want: &CustomResourceDefinition) -> Check {
    let name = want.metadata.name.clone().unwrap_or_default();
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let version = env!("CARGO_PKG_VERSION");
    let served = match api.get_opt(&name).await {
        Ok(Some(crd)) => crd,
        Ok(None) => {
            return Check::fail(
                "crd",
                format!("CRD {name} is not installed"),
                format!("install the CRDs: {APPLY_CRDS}"),
            );
        }
        Err(kube::Error::Api(s)) if s.code == 403 => {
            return Check::fail(
                "crd",
                format!("CRD {name}: you may not read CustomResourceDefinitions"),
                "ask for `get` on customresourcedefinitions.apiextensions.k8s.io, or run the doctor as a cluster admin",
            );
        }
        Err(e) => {
            return Check::fail(
                "crd",
                format!("CRD {name} could not be read: {e}"),
                "check the API server, then run the doctor again",
            );
        }
    };
    let schema = |crd: &CustomResourceDefinition, v: &str| {
        crd.spec
            .versions
            .iter()
            .find(|x| x.name == v)
            .map(|x| (x.served, serde_json::to_value(&x.schema).ok()))
    };
    for v in &want.spec.versions {
        match schema(&served, &v.name) {
            None => {
                return Check::fail(
                    "crd",
                    format!(
                        "CRD {name} does not have version {} (this binary is tollgate {version})",
                        v.name
                    ),
                    format!("apply this version's CRDs: {APPLY_CRDS}"),
                );
            }
            Some((false, _)) => {
                return Check::fail(
                    "crd",
                    format!("CRD {name} does not serve version {}", v.name),
                    format!("apply this version's CRDs: {APPLY_CRDS}"),
                );
            }
            Some((true, got)) if got != serde_json::to_value(&v.schema).ok() => {
                return Check::fail(
                    "crd",
                    format!(
                        "CRD {name} {} differs from this binary's (tollgate {version}): an older or newer Tollgate installed it",
                        v.name
                    ),
                    format!("apply this version's CRDs: {APPLY_CRDS}"),
                );
            }
            Some(_) => {}
        }
    }
    let versions: Vec<&str> = want.spec.versions.iter().map(|v| v.name.as_str()).collect();
    Check::pass(
        "crd",
        format!(
            "CRD {name} installed, {} as tollgate {version} defines it",
            versions.join(", ")
        ),
    )
}

/// The operator's Deployment, or the ✗ that says why there is none
/// (`None`: the API server could not be asked).
async fn read_deployment(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<Deployment, Option<Check>> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    match api.get_opt(name).await {
        Ok(Some(d)) => Ok(d),
        Ok(None) => Err(Some(Check::fail(
            "deployment",
            format!("no Deployment {namespace}/{name}"),
            "install the chart (`helm install tollgate charts/tollgate -n NAMESPACE`), or name it with --deployment NAME -n NAMESPACE",
        ))),
        Err(e) => Err(Some(Check::fail(
            "deployment",
            format!("Deployment {namespace}/{name} could not be read: {e}"),
            "you need `get` on deployments.apps in that namespace",
        ))),
    }
}

/// The operator container's arguments (the first container's).
fn operator_args(d: &Deployment) -> Vec<String> {
    d.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.containers.first())
        .and_then(|c| c.args.clone())
        .unwrap_or_default()
}

/// The value of `--flag=value` (or `--flag value`) in `args`, last one wins.
fn flag_values(args: &[String], flag: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if let Some(v) = a.strip_prefix(&format!("{flag}=")) {
            out.push(v.to_string());
        } else if a == flag
            && let Some(v) = it.next()
        {
            out.push(v.clone());
        }
    }
    out
}

/// The configuration, parsed and checked as `tollgate run` does (the same
/// parser, tenancy and watched-namespace checks), from `--config`, the chart's
/// mount, or the release's ConfigMap.
async fn load_config(
    client: Option<&Client>,
    args: &DoctorArgs,
    namespace: &str,
    deployment_args: &[String],
) -> Result<(OperatorConfig, String), Check> {
    let file = args
        .config
        .clone()
        .or_else(|| Some(PathBuf::from(MOUNTED_CONFIG)).filter(|p| p.exists()));
    let fix_for = |e: &ConfigError| match e {
        ConfigError::Read { .. } => "pass the configuration file with --config FILE".to_string(),
        _ => {
            "correct the field named (chart: the `config` values), then `helm upgrade`".to_string()
        }
    };
    let (parsed, source) = match file {
        Some(path) => (OperatorConfig::load(&path), path.display().to_string()),
        None => {
            let Some(client) = client else {
                return Err(Check::skip(
                    "config",
                    "configuration: not checked (no --config, and no API server to read the ConfigMap from)",
                    Some("pass --config FILE".into()),
                ));
            };
            let name = format!("{}-config", args.deployment);
            let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
            match api.get_opt(&name).await {
                Ok(Some(cm)) => {
                    let text = cm
                        .data
                        .as_ref()
                        .and_then(|d| d.get("config.yaml"))
                        .cloned()
                        .unwrap_or_default();
                    (
                        OperatorConfig::parse(&text),
                        format!("ConfigMap {namespace}/{name}"),
                    )
                }
                Ok(None) => {
                    return Err(Check::skip(
                        "config",
                        format!(
                            "configuration: not checked (no --config, no ConfigMap {namespace}/{name})"
                        ),
                        Some("pass --config FILE".into()),
                    ));
                }
                Err(e) => {
                    return Err(Check::skip(
                        "config",
                        format!(
                            "configuration: not checked (ConfigMap {namespace}/{name} could not be read: {e})"
                        ),
                        Some("pass --config FILE".into()),
                    ));
                }
            }
        }
    };
    let watched = flag_values(deployment_args, "--namespace");
    let operator_namespace = flag_values(deployment_args, "--operator-namespace")
        .pop()
        .unwrap_or_else(|| namespace.to_string());
    let checked = parsed.and_then(|c| {
        c.check_tenancy(&operator_namespace)?;
        let mut watched = watched.clone();
        if !watched.is_empty() && !watched.contains(&operator_namespace) {
            watched.push(operator_namespace.clone());
        }
        c.check_watched(&watched)?;
        Ok(c)
    });
    match checked {
        Ok(c) => {
            let message = format!(
                "configuration {source} valid ({} policies, {} tenancy rules)",
                c.policies.len(),
                c.tenancy.len()
            );
            Ok((c, message))
        }
        Err(e) => Err(Check::fail(
            "config",
            format!("configuration {source} refused: {e}"),
            fix_for(&e),
        )),
    }
}

/// The flag's file, or the chart's mount of `key` when it exists.
fn file_or_mounted(flag: &Option<PathBuf>, key: &str) -> Option<PathBuf> {
    flag.clone()
        .or_else(|| Some(Path::new(MOUNTED_GITHUB).join(key)).filter(|p| p.exists()))
}

/// The credentials: they authenticate (`GET /app` or `GET /user`), and the
/// App is installed on each configured repository that is not a pattern.
async fn github_checks(args: &DoctorArgs, config: Option<&OperatorConfig>) -> Vec<Check> {
    // Start-up's own reading of the flags, with the chart's mounts as defaults.
    let mut flags = args.github.clone();
    flags.github_token_file = file_or_mounted(&flags.github_token_file, "token");
    if flags.github_token_file.is_none() {
        flags.github_app_id_file = file_or_mounted(&flags.github_app_id_file, "app-id");
        flags.github_private_key_file =
            file_or_mounted(&flags.github_private_key_file, "private-key.pem");
    }
    let auth = match flags.auth() {
        Ok(a) => a,
        Err(CredentialError::Missing) => {
            return vec![Check::skip(
                "github-credentials",
                "GitHub credentials: not checked (none given)",
                Some("pass --github-app-id-file and --github-private-key-file (or --github-token-file), or run it in the operator's pod: kubectl -n NAMESPACE exec deploy/tollgate -- tollgate doctor".into()),
            )];
        }
        Err(e @ CredentialError::AppIdNotANumber { .. }) => {
            return vec![Check::fail(
                "github-credentials",
                e.to_string(),
                "write the App's numeric ID (its settings page, \"App ID\") into the file",
            )];
        }
        Err(e @ CredentialError::Unreadable { what, .. }) => {
            return vec![Check::fail(
                "github-credentials",
                e.to_string(),
                format!("point the flag at the file holding {what}"),
            )];
        }
    };
    let config_for_client = GitHubConfig {
        api_base: args.github.github_api_url.clone(),
        auth,
        ..GitHubConfig::default()
    };
    if config_for_client.plain_token_on_github_com() {
        return vec![Check::fail(
            "github-credentials",
            "a plain token against api.github.com: GitHub accepts answers to custom deployment protection rules only from the App's installation token",
            "use --github-app-id-file and --github-private-key-file (chart: github.auth: app)",
        )];
    }
    let github = match GitHub::new(config_for_client) {
        Ok(g) => g,
        Err(e) => {
            return vec![Check::fail(
                "github-credentials",
                format!("GitHub client: {e}"),
                "use the PEM file from the App's settings page and the API base URL (https://api.github.com or https://HOST/api/v3)",
            )];
        }
    };
    let mut checks = Vec::new();
    let base = github.api_base().to_string();
    let slug = match github.whoami().await {
        Ok(login) => {
            let how = if github.is_app() {
                "GitHub App credentials authenticate (GET /app)"
            } else {
                "GitHub token authenticates (GET /user)"
            };
            checks.push(Check::pass(
                "github-credentials",
                format!("{how} at {base}: answers are posted as {login}"),
            ));
            login.trim_end_matches("[bot]").to_string()
        }
        Err(e) => {
            checks.push(Check::fail(
                "github-credentials",
                format!("GitHub refused the credentials: {e}"),
                if github.is_app() {
                    "check the App ID and private key against the App's settings page (generate a new key if in doubt)"
                } else {
                    "the token is expired or revoked: create a new one and update the Secret"
                },
            ));
            return checks;
        }
    };
    let Some(config) = config else {
        checks.push(Check::skip(
            "github-installation",
            "App installations: not checked (no valid configuration to read repositories from)",
            None,
        ));
        return checks;
    };
    let repos = concrete_repositories(config);
    if !github.is_app() {
        checks.push(Check::skip(
            "github-installation",
            "App installations: not checked (a plain token has none)",
            None,
        ));
        return checks;
    }
    if repos.is_empty() {
        checks.push(Check::skip(
            "github-installation",
            "App installations: not checked (no configured repository pattern names one repository)",
            None,
        ));
    }
    for repo in repos {
        checks.push(match github.installation_token_for(&repo).await {
            Ok(id) => Check::pass(
                "github-installation",
                format!("GitHub App installed on {repo} (installation {id}, token minted)"),
            ),
            Err(GitHubError::NotInstalled { .. }) => Check::fail(
                "github-installation",
                format!("GitHub App {slug} is not installed on {repo}"),
                format!("install it: https://github.com/apps/{slug}/installations/new (choose {repo})"),
            ),
            Err(e) => Check::fail(
                "github-installation",
                format!("GitHub App installation on {repo}: {e}"),
                "check the App's installation and its permissions (Deployments: write, Actions: read)",
            ),
        });
    }
    checks
}

/// Repositories the configuration names exactly (no glob characters), in
/// order of first mention, each once.
fn concrete_repositories(config: &OperatorConfig) -> Vec<String> {
    let mut named: Vec<&str> = Vec::new();
    for p in &config.policies {
        named.extend(p.repositories.iter().map(String::as_str));
    }
    named.extend(config.auto_pause.iter().map(|r| r.repository.as_str()));
    for t in &config.tenancy {
        named.extend(t.repositories.iter().map(String::as_str));
    }
    let mut out: Vec<String> = Vec::new();
    for r in named {
        let concrete = !r.contains(['*', '?', '[']) && crate::github::split_repository(r).is_ok();
        if concrete && !out.iter().any(|o| o.eq_ignore_ascii_case(r)) {
            out.push(r.to_string());
        }
    }
    out
}

/// The webhook secret is set: the file exists and is not empty (its content
/// is never shown).
fn webhook_secret(args: &DoctorArgs) -> Check {
    let Some(path) = file_or_mounted(&args.webhook_secret_file, "webhook-secret") else {
        return Check::skip(
            "webhook-secret",
            "webhook secret: not checked (no --webhook-secret-file)",
            Some("pass --webhook-secret-file FILE, or run it in the operator's pod".into()),
        );
    };
    match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => Check::pass(
            "webhook-secret",
            format!("webhook secret set ({})", path.display()),
        ),
        Ok(_) => Check::fail(
            "webhook-secret",
            format!("webhook secret {} is empty", path.display()),
            "put the secret from the App's webhook settings into the Secret's webhook-secret key",
        ),
        Err(e) => Check::fail(
            "webhook-secret",
            format!("cannot read the webhook secret {}: {e}", path.display()),
            "point --webhook-secret-file at the file holding the secret",
        ),
    }
}

fn deployment_ready(d: &Deployment, namespace: &str, name: &str) -> Check {
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let ready = d
        .status
        .as_ref()
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0);
    if want > 0 && ready >= want {
        Check::pass(
            "deployment",
            format!("Deployment {namespace}/{name} ready ({ready}/{want} replicas)"),
        )
    } else {
        Check::fail(
            "deployment",
            format!("Deployment {namespace}/{name} has {ready} of {want} replicas ready"),
            format!(
                "see why: kubectl -n {namespace} describe deploy/{name}; kubectl -n {namespace} logs deploy/{name}"
            ),
        )
    }
}

/// With leader election, a Lease held and renewed within its duration;
/// without, the single ready replica leads.
async fn leader(
    client: &Client,
    namespace: &str,
    args: &DoctorArgs,
    deployment_args: &[String],
    ready: bool,
    now: Timestamp,
) -> Check {
    let elects = deployment_args.iter().any(|a| a == "--leader-elect");
    if !elects {
        return if ready {
            Check::pass(
                "leader",
                "leader: no leader election (one replica); the ready replica runs the controllers",
            )
        } else {
            Check::fail(
                "leader",
                "leader: no replica is ready, so none runs the controllers",
                "fix the Deployment first (see above)",
            )
        };
    }
    let name = args
        .lease_name
        .clone()
        .or_else(|| flag_values(deployment_args, "--lease-name").pop())
        .unwrap_or_else(|| args.deployment.clone());
    let api: Api<Lease> = Api::namespaced(client.clone(), namespace);
    let lease = match api.get_opt(&name).await {
        Ok(Some(l)) => l,
        Ok(None) => {
            return Check::fail(
                "leader",
                format!("leader: no Lease {namespace}/{name}; no instance has led yet"),
                format!(
                    "see why the pods do not lead: kubectl -n {namespace} logs deploy/{}",
                    args.deployment
                ),
            );
        }
        Err(e) => {
            return Check::fail(
                "leader",
                format!("leader: Lease {namespace}/{name} could not be read: {e}"),
                "you need `get` on leases.coordination.k8s.io in that namespace",
            );
        }
    };
    let spec = lease.spec.unwrap_or_default();
    let holder = spec.holder_identity.filter(|h| !h.is_empty());
    let renewed = spec.renew_time.map(|t| t.0);
    let duration = i64::from(spec.lease_duration_seconds.unwrap_or(15));
    match (holder, renewed) {
        (Some(holder), Some(at)) if now.as_second() - at.as_second() <= duration => Check::pass(
            "leader",
            format!(
                "leader: Lease {namespace}/{name} held by {holder} (renewed {}s ago)",
                (now.as_second() - at.as_second()).max(0)
            ),
        ),
        (Some(holder), Some(at)) => Check::fail(
            "leader",
            format!(
                "leader: Lease {namespace}/{name} expired: {holder} last renewed it {}s ago (duration {duration}s)",
                now.as_second() - at.as_second()
            ),
            format!("the leader stopped renewing: kubectl -n {namespace} logs {holder}"),
        ),
        _ => Check::fail(
            "leader",
            format!("leader: Lease {namespace}/{name} is held by nobody"),
            format!(
                "see why the pods do not lead: kubectl -n {namespace} logs deploy/{}",
                args.deployment
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_read_in_both_spellings() {
        let args: Vec<String> = ["--namespace=a", "--namespace", "b", "--lease-name=x"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(flag_values(&args, "--namespace"), ["a", "b"]);
        assert_eq!(flag_values(&args, "--lease-name"), ["x"]);
        assert!(flag_values(&args, "--leader-elect").is_empty());
    }

    #[test]
    fn only_repositories_named_exactly_are_checked_for_the_app() {
        let config = OperatorConfig::parse(
            "policies:\n- repositories: [acme/web, 'acme/api-*', Acme/Web]\n  namespace: web\ntenancy:\n- namespace: web\n  repositories: ['*', acme/ops]\n- namespace: '*'\n  repositories: ['*']\n",
        )
        .expect("config");
        assert_eq!(concrete_repositories(&config), ["acme/web", "acme/ops"]);
    }
}
