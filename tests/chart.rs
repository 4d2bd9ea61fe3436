//! Renders the Helm chart with `helm template` and checks what a cluster would
//! run: the restricted security context, the probes, least-privilege RBAC, the
//! credentials as mounted files, leader election and the disruption budget only
//! with several replicas, the optional objects only when asked for, and a
//! ConfigMap the operator's own configuration parser accepts.
//!
//! Needs helm: `HELM=/path/to/helm`, or `helm` on PATH (`bash .ci/tools.sh`
//! installs it into target/ci-tools/bin).

use std::path::Path;
use std::process::Command;

use serde::Deserialize;
use serde_yaml_ng::Value;
use tollgate::config::OperatorConfig;

const RELEASE: &str = "tg";
const NAMESPACE: &str = "tollgate-system";

fn chart_dir() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("charts/tollgate")
        .display()
        .to_string()
}

fn helm() -> String {
    std::env::var("HELM").unwrap_or_else(|_| "helm".to_string())
}

/// `helm template` output, or the error helm printed.
fn try_render(extra: &[&str]) -> Result<Vec<Value>, String> {
    let out = Command::new(helm())
        .args(["template", RELEASE, &chart_dir(), "--namespace", NAMESPACE])
        .args(extra)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run helm ({}): {e}. Install it with `bash .ci/tools.sh` and put target/ci-tools/bin on PATH (or set HELM)",
                helm()
            )
        });
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let text = String::from_utf8(out.stdout).expect("helm prints UTF-8");
    let docs = serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).expect("helm renders valid YAML"))
        .filter(|v| !v.is_null())
        .collect();
    Ok(docs)
}

fn render(extra: &[&str]) -> Vec<Value> {
    try_render(extra).unwrap_or_else(|e| panic!("helm template {extra:?} failed: {e}"))
}

fn all_features() -> Vec<Value> {
    render(&[
        "-f",
        &format!("{}/ci/all-features-values.yaml", chart_dir()),
        "--api-versions",
        "monitoring.coreos.com/v1",
    ])
}

fn kind(doc: &Value) -> &str {
    doc["kind"].as_str().unwrap_or_default()
}

fn of_kind<'a>(docs: &'a [Value], k: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| kind(d) == k).collect()
}

fn one<'a>(docs: &'a [Value], k: &str) -> &'a Value {
    let found = of_kind(docs, k);
    assert_eq!(
        found.len(),
        1,
        "expected exactly one {k}, got {}",
        found.len()
    );
    found[0]
}

/// The operator's configuration ConfigMap (the dashboard has one of its own).
fn config_map(docs: &[Value]) -> &Value {
    let found: Vec<&Value> = of_kind(docs, "ConfigMap")
        .into_iter()
        .filter(|d| d["data"]["config.yaml"].is_string())
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected exactly one configuration ConfigMap"
    );
    found[0]
}

fn container(docs: &[Value]) -> &Value {
    let containers = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
        .as_sequence()
        .expect("containers is a list");
    assert_eq!(containers.len(), 1, "one container");
    &containers[0]
}

fn args(docs: &[Value]) -> Vec<String> {
    container(docs)["args"]
        .as_sequence()
        .expect("args is a list")
        .iter()
        .map(|a| a.as_str().expect("args are strings").to_string())
        .collect()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence()
        .map(|s| {
            s.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn yaml(text: &str) -> Value {
    serde_yaml_ng::from_str(text).expect("test YAML parses")
}

#[test]
fn deployment_runs_with_the_restricted_security_context() {
    for docs in [render(&[]), all_features()] {
        let pod = &one(&docs, "Deployment")["spec"]["template"]["spec"];
        assert_eq!(
            pod["securityContext"],
            yaml(
                "{runAsNonRoot: true, runAsUser: 65532, runAsGroup: 65532, fsGroup: 65532, seccompProfile: {type: RuntimeDefault}}"
            )
        );
        assert_eq!(
            container(&docs)["securityContext"],
            yaml(
                "{allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, runAsNonRoot: true, runAsUser: 65532, runAsGroup: 65532, capabilities: {drop: [ALL]}, seccompProfile: {type: RuntimeDefault}}"
            )
        );
        let resources = &container(&docs)["resources"];
        assert!(
            resources["requests"]["memory"].is_string(),
            "memory request set: {resources:?}"
        );
        assert!(
            resources["limits"]["memory"].is_string(),
            "memory limit set: {resources:?}"
        );
    }
}

#[test]
fn probes_check_livez_and_readyz_on_the_metrics_port() {
    let docs = render(&[]);
    let c = container(&docs);
    assert_eq!(
        c["ports"],
        yaml(
            "[{name: webhook, containerPort: 8080, protocol: TCP}, {name: metrics, containerPort: 9090, protocol: TCP}]"
        )
    );
    assert_eq!(
        c["livenessProbe"]["httpGet"],
        yaml("{path: /livez, port: metrics}")
    );
    assert_eq!(
        c["readinessProbe"]["httpGet"],
        yaml("{path: /readyz, port: metrics}")
    );
    let a = args(&docs);
    assert!(a.contains(&"--listen=0.0.0.0:8080".to_string()), "{a:?}");
    assert!(
        a.contains(&"--metrics-listen=0.0.0.0:9090".to_string()),
        "{a:?}"
    );
}

#[test]
fn only_the_webhook_port_is_on_the_exposable_service_and_the_ingress() {
    let docs = all_features();
    let services = of_kind(&docs, "Service");
    assert_eq!(services.len(), 2, "the webhook and the metrics Service");
    let named = |name: &str| {
        *services
            .iter()
            .find(|s| s["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no Service {name}"))
    };
    let webhook = named("tg-tollgate");
    assert_eq!(
        webhook["spec"]["ports"],
        yaml("[{name: webhook, port: 8080, targetPort: webhook, protocol: TCP}]")
    );
    let metrics = named("tg-tollgate-metrics");
    assert_eq!(metrics["spec"]["type"], "ClusterIP");
    assert_eq!(
        metrics["spec"]["ports"],
        yaml("[{name: metrics, port: 9090, targetPort: metrics, protocol: TCP}]")
    );
    assert_eq!(
        metrics["metadata"]["labels"]["tollgate.dev/service"],
        "metrics"
    );
    // A LoadBalancer in front of the webhook Service still exposes nothing else.
    let lb = render(&["--set", "service.type=LoadBalancer"]);
    for s in of_kind(&lb, "Service") {
        let ports = s["spec"]["ports"].as_sequence().expect("ports");
        match s["spec"]["type"].as_str() {
            Some("LoadBalancer") => assert_eq!(ports[0]["name"], "webhook", "{s:?}"),
            other => assert_eq!(other, Some("ClusterIP"), "{s:?}"),
        }
    }
    let ingress = one(&docs, "Ingress");
    let paths = &ingress["spec"]["rules"][0]["http"]["paths"];
    assert_eq!(paths.as_sequence().expect("paths").len(), 1);
    assert_eq!(paths[0]["path"], "/webhook");
    assert_eq!(
        paths[0]["backend"]["service"],
        yaml("{name: tg-tollgate, port: {name: webhook}}")
    );
}

#[test]
fn webhook_limits_become_flags() {
    let a = args(&render(&[
        "--set",
        "webhook.maxConnections=4096",
        "--set",
        "webhook.idleTimeout=2m",
        "--set",
        "webhook.headerTimeout=5s",
        "--set",
        "webhook.bodyTimeout=20s",
    ]));
    for flag in [
        "--webhook-max-connections=4096",
        "--webhook-idle-timeout=2m",
        "--webhook-header-timeout=5s",
        "--webhook-body-timeout=20s",
    ] {
        assert!(a.contains(&flag.to_string()), "{flag} not in {a:?}");
    }
    let defaults = args(&render(&[]));
    for flag in [
        "--webhook-max-connections=1024",
        "--webhook-idle-timeout=90s",
        "--webhook-header-timeout=10s",
        "--webhook-body-timeout=10s",
    ] {
        assert!(
            defaults.contains(&flag.to_string()),
            "{flag} not in {defaults:?}"
        );
    }
    let e = try_render(&["--set", "webhook.maxConnections=0"]).expect_err("no connections");
    assert!(e.contains("maxConnections"), "{e}");
}

#[test]
fn rbac_has_no_wildcards_no_secrets_and_exactly_the_operators_verbs() {
    let expected_operator_rules = yaml(
        r#"
- {apiGroups: [tollgate.dev], resources: [deploymentgates, releasepauses], verbs: [get, list, watch, create, patch, delete]}
- {apiGroups: [tollgate.dev], resources: [deploymentgates/status, releasepauses/status], verbs: [get, patch, update]}
- {apiGroups: [tollgate.dev], resources: [deploymentgates/finalizers, releasepauses/finalizers], verbs: [update]}
- {apiGroups: [events.k8s.io], resources: [events], verbs: [create, patch]}
- {apiGroups: [apps], resources: [deployments, statefulsets, daemonsets], verbs: [get, list, watch]}
"#,
    );
    // Cluster-wide only: start-up reads Tollgate's own two CRDs to tell a stale schema.
    let crd_rule = yaml(
        "{apiGroups: [apiextensions.k8s.io], resources: [customresourcedefinitions], resourceNames: [deploymentgates.tollgate.dev, releasepauses.tollgate.dev], verbs: [get]}",
    );
    for (what, docs) in [("defaults", render(&[])), ("all features", all_features())] {
        let roles: Vec<&Value> = docs
            .iter()
            .filter(|d| matches!(kind(d), "Role" | "ClusterRole"))
            .collect();
        assert!(!roles.is_empty(), "{what}: RBAC rendered");
        for role in &roles {
            for rule in role["rules"].as_sequence().expect("rules") {
                let verbs = strings(&rule["verbs"]);
                let resources = strings(&rule["resources"]);
                let groups = strings(&rule["apiGroups"]);
                for word in verbs.iter().chain(&resources).chain(&groups) {
                    assert!(!word.contains('*'), "{what}: wildcard in {rule:?}");
                }
                assert!(
                    !resources
                        .iter()
                        .any(|r| r == "secrets" || r.starts_with("secrets/")),
                    "{what}: Secrets permission in {rule:?}"
                );
                assert!(
                    !resources.iter().any(|r| r == "selfsubjectreviews"),
                    "{what}: the operator needs no selfsubjectreviews: {rule:?}"
                );
            }
        }
    }
    let docs = render(&[]);
    let mut cluster_rules = expected_operator_rules.clone();
    if let Some(rules) = cluster_rules.as_sequence_mut() {
        rules.push(crd_rule);
    }
    assert_eq!(one(&docs, "ClusterRole")["rules"], cluster_rules);
    let binding = one(&docs, "ClusterRoleBinding");
    assert_eq!(
        binding["subjects"],
        yaml(&format!(
            "[{{kind: ServiceAccount, name: tg-tollgate, namespace: {NAMESPACE}}}]"
        ))
    );
    // All features watch two namespaces: a Role per namespace (and the
    // release namespace, whose pauses are cluster-wide), no ClusterRole.
    let docs = all_features();
    assert!(of_kind(&docs, "ClusterRole").is_empty());
    let per_namespace: Vec<&Value> = of_kind(&docs, "Role")
        .into_iter()
        .filter(|r| r["metadata"]["name"] == "tg-tollgate")
        .collect();
    let namespaces: Vec<&str> = per_namespace
        .iter()
        .map(|r| r["metadata"]["namespace"].as_str().expect("namespaced"))
        .collect();
    assert_eq!(namespaces, ["web", "payments", NAMESPACE]);
    for role in per_namespace {
        assert_eq!(role["rules"], expected_operator_rules);
    }
}

#[test]
fn credentials_are_files_mounted_read_only_from_the_secret() {
    let docs = render(&[]);
    let pod = &one(&docs, "Deployment")["spec"]["template"]["spec"];
    let c = container(&docs);
    assert!(
        c["volumeMounts"]
            .as_sequence()
            .expect("mounts")
            .contains(&yaml(
                "{name: github, mountPath: /etc/tollgate/github, readOnly: true}"
            )),
        "{:?}",
        c["volumeMounts"]
    );
    let github = pod["volumes"]
        .as_sequence()
        .expect("volumes")
        .iter()
        .find(|v| v["name"] == "github")
        .expect("github volume");
    assert_eq!(
        github["secret"],
        yaml(
            "{secretName: tg-tollgate-github, defaultMode: 0440, items: [{key: app-id, path: app-id}, {key: private-key.pem, path: private-key.pem}, {key: webhook-secret, path: webhook-secret}]}"
        )
    );
    let a = args(&docs);
    for flag in [
        "--github-app-id-file=/etc/tollgate/github/app-id",
        "--github-private-key-file=/etc/tollgate/github/private-key.pem",
        "--webhook-secret-file=/etc/tollgate/github/webhook-secret",
    ] {
        assert!(a.contains(&flag.to_string()), "missing {flag} in {a:?}");
    }
    // Never through the environment.
    let env = serde_yaml_ng::to_string(&c["env"]).expect("env serialises");
    assert!(!env.contains("secretKeyRef"), "{env}");
    assert!(c["envFrom"].is_null());
    assert!(
        of_kind(&docs, "Secret").is_empty(),
        "no Secret created by default"
    );

    // An existing Secret in token mode mounts only the token and webhook secret.
    let docs = render(&[
        "--set",
        "github.auth=token",
        "--set",
        "github.existingSecret=gh-creds",
    ]);
    let pod = &one(&docs, "Deployment")["spec"]["template"]["spec"];
    let github = pod["volumes"]
        .as_sequence()
        .expect("volumes")
        .iter()
        .find(|v| v["name"] == "github")
        .expect("github volume");
    assert_eq!(
        github["secret"],
        yaml(
            "{secretName: gh-creds, defaultMode: 0440, items: [{key: token, path: token}, {key: webhook-secret, path: webhook-secret}]}"
        )
    );
    let a = args(&docs);
    assert!(a.contains(&"--github-token-file=/etc/tollgate/github/token".to_string()));
    assert!(!a.iter().any(|x| x.starts_with("--github-app-id-file")));

    // A trial Secret created from values carries exactly the App's keys.
    let docs = all_features();
    let secret = one(&docs, "Secret");
    let keys: Vec<&str> = secret["data"]
        .as_mapping()
        .expect("data")
        .keys()
        .map(|k| k.as_str().expect("string keys"))
        .collect();
    assert_eq!(keys, ["app-id", "private-key.pem", "webhook-secret"]);
}

#[test]
fn leader_election_and_rolling_updates_only_with_more_than_one_replica() {
    let docs = render(&[]);
    let a = args(&docs);
    assert!(
        !a.iter()
            .any(|x| x.starts_with("--leader-elect") || x.starts_with("--lease")),
        "{a:?}"
    );
    assert_eq!(
        one(&docs, "Deployment")["spec"]["strategy"],
        yaml("{type: Recreate}")
    );
    assert!(
        of_kind(&docs, "Role").is_empty(),
        "no Lease role without election"
    );

    let docs = render(&["--set", "replicaCount=2"]);
    let a = args(&docs);
    for flag in [
        "--leader-elect",
        "--lease-namespace=$(POD_NAMESPACE)",
        "--lease-name=tg-tollgate",
    ] {
        assert!(a.contains(&flag.to_string()), "missing {flag} in {a:?}");
    }
    assert_eq!(
        one(&docs, "Deployment")["spec"]["strategy"]["type"],
        "RollingUpdate"
    );
    let lease_role = one(&docs, "Role");
    assert_eq!(lease_role["metadata"]["namespace"], NAMESPACE);
    assert_eq!(
        lease_role["rules"],
        yaml(
            "[{apiGroups: [coordination.k8s.io], resources: [leases], verbs: [get, create, update, patch]}]"
        )
    );
    // The downward API provides what the flags refer to.
    let env = &container(&docs)["env"];
    assert_eq!(
        env,
        &yaml(
            "[{name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}, {name: POD_NAMESPACE, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}}]"
        )
    );
}

#[test]
fn disruption_budget_only_with_more_than_one_replica() {
    assert!(of_kind(&render(&[]), "PodDisruptionBudget").is_empty());
    let docs = render(&["--set", "replicaCount=2"]);
    let pdb = one(&docs, "PodDisruptionBudget");
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"],
        one(&docs, "Deployment")["spec"]["selector"]["matchLabels"]
    );
}

#[test]
fn service_monitor_only_when_enabled_and_the_api_exists() {
    assert!(
        of_kind(&render(&[]), "ServiceMonitor").is_empty(),
        "absent by default"
    );
    let enabled_without_api = render(&["--set", "serviceMonitor.enabled=true"]);
    assert!(
        of_kind(&enabled_without_api, "ServiceMonitor").is_empty(),
        "absent without the API group"
    );
    let docs = all_features();
    let sm = one(&docs, "ServiceMonitor");
    assert_eq!(sm["spec"]["endpoints"][0]["port"], "metrics");
    assert_eq!(
        sm["spec"]["selector"]["matchLabels"]["tollgate.dev/service"], "metrics",
        "the ServiceMonitor selects the metrics Service only"
    );
    assert_eq!(sm["spec"]["endpoints"][0]["path"], "/metrics");
}

/// The operator's configuration as rendered, parsed as start-up parses it.
fn config_of(docs: &[Value]) -> OperatorConfig {
    let text = config_map(docs)["data"]["config.yaml"]
        .as_str()
        .expect("config.yaml is text")
        .to_string();
    OperatorConfig::parse(&text)
        .unwrap_or_else(|e| panic!("the operator refuses the rendered config: {e}\n{text}"))
}

#[test]
fn config_map_holds_a_file_the_operator_accepts() {
    let defaults = config_of(&render(&[]));
    assert_eq!(
        defaults.defaults.namespace, NAMESPACE,
        "gates default to the release namespace"
    );
    assert_eq!(
        defaults.defaults.timeout,
        std::time::Duration::from_secs(3600)
    );
    assert!(
        defaults.policies.is_empty()
            && defaults.tenancy.is_empty()
            && defaults.auto_pause.is_empty()
    );

    let all = config_of(&all_features());
    assert_eq!(all.defaults.namespace, "web");
    assert_eq!(
        all.defaults.timeout,
        std::time::Duration::from_secs(4 * 3600)
    );
    assert_eq!(all.policies.len(), 2);
    assert_eq!(all.policies[0].required_checks, ["build", "e2e"]);
    assert!(all.policies[0].pause_on_failure);
    assert_eq!(all.tenancy.len(), 2);
    assert_eq!(all.auto_pause[0].repository, "acme/web");
    let args = args(&all_features());
    assert!(args.contains(&"--config=/etc/tollgate/config/config.yaml".to_string()));
}

#[test]
fn prometheus_values_reach_the_operator_with_its_secrets_mounted_read_only() {
    assert!(
        config_of(&render(&[])).prometheus.is_none(),
        "off by default"
    );
    let docs = all_features();
    let config = config_of(&docs);
    let p = config.prometheus.expect("prometheus");
    assert_eq!(p.url, "https://prometheus.monitoring:9090");
    assert_eq!(p.timeout, std::time::Duration::from_secs(5));
    assert_eq!(
        p.bearer_token_file.as_deref(),
        Some(Path::new("/etc/tollgate/prometheus/token/token"))
    );
    assert_eq!(
        p.ca_file.as_deref(),
        Some(Path::new("/etc/tollgate/prometheus/ca/ca.crt"))
    );
    assert_eq!(config.policies[0].analysis[0].name, "staging-errors");
    let mounts = container(&docs)["volumeMounts"].clone();
    for m in [
        "{name: prometheus-token, mountPath: /etc/tollgate/prometheus/token, readOnly: true}",
        "{name: prometheus-ca, mountPath: /etc/tollgate/prometheus/ca, readOnly: true}",
    ] {
        assert!(
            mounts.as_sequence().expect("mounts").contains(&yaml(m)),
            "{m} in {mounts:?}"
        );
    }
    let volumes = one(&docs, "Deployment")["spec"]["template"]["spec"]["volumes"].clone();
    let volume = |name: &str| {
        volumes
            .as_sequence()
            .expect("volumes")
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("volume {name}"))
            .clone()
    };
    assert_eq!(
        volume("prometheus-token")["secret"],
        yaml(
            "{secretName: prometheus-reader, defaultMode: 0440, items: [{key: token, path: token}]}"
        )
    );
    assert_eq!(
        volume("prometheus-ca")["secret"],
        yaml(
            "{secretName: prometheus-ca, defaultMode: 0444, items: [{key: ca.pem, path: ca.crt}]}"
        )
    );
    for bad in [
        "prometheus.url=prometheus:9090",
        "prometheus.timeout=ten",
        "prometheus.bearerToken=abc",
    ] {
        assert!(try_render(&["--set", bad]).is_err(), "{bad} was accepted");
    }
    let bad_policy = r#"config={"policies":[{"analysis":[{"name":"e","query":"up"}]}]}"#;
    assert!(
        try_render(&["--set-json", bad_policy]).is_err(),
        "an analysis without min or max was accepted"
    );
}

#[test]
fn a_namespaced_install_needs_no_cluster_rbac_and_refuses_a_config_namespace_it_does_not_watch() {
    let docs = render(&["--set", "watch.namespaces={team-a}"]);
    assert!(of_kind(&docs, "ClusterRole").is_empty());
    assert!(of_kind(&docs, "ClusterRoleBinding").is_empty());
    let bound: Vec<(&str, &str)> = of_kind(&docs, "RoleBinding")
        .into_iter()
        .map(|b| {
            (
                b["metadata"]["namespace"].as_str().expect("namespaced"),
                b["roleRef"]["name"].as_str().expect("role"),
            )
        })
        .collect();
    assert_eq!(
        bound,
        [("team-a", "tg-tollgate"), (NAMESPACE, "tg-tollgate")],
        "team-a and the release namespace (gates by default, cluster-wide pauses)"
    );
    assert!(args(&docs).contains(&"--namespace=team-a".to_string()));
    // A workload a policy requires in a namespace not watched: read-only there.
    let docs = render(&[
        "--set",
        "watch.namespaces={team-a}",
        "--set",
        "config.policies[0].namespace=team-a,config.policies[0].requireHealthy[0].kind=Deployment,config.policies[0].requireHealthy[0].name=api,config.policies[0].requireHealthy[0].namespace=staging",
    ]);
    let readers: Vec<&Value> = of_kind(&docs, "Role")
        .into_iter()
        .filter(|r| r["metadata"]["name"] == "tg-tollgate-workloads")
        .collect();
    assert_eq!(readers.len(), 1);
    assert_eq!(readers[0]["metadata"]["namespace"], "staging");
    assert_eq!(
        readers[0]["rules"],
        yaml(
            "[{apiGroups: [apps], resources: [deployments, statefulsets, daemonsets], verbs: [get, list, watch]}]"
        )
    );
    for (set, field) in [
        (
            "config.policies[0].namespace=team-b",
            "config.policies[0].namespace team-b is not watched",
        ),
        (
            "config.defaults.namespace=team-b",
            "config.defaults.namespace team-b is not watched",
        ),
        (
            "config.autoPause[0].repository=acme/web,config.autoPause[0].branch=main,config.autoPause[0].namespace=team-b",
            "config.autoPause[0].namespace team-b is not watched",
        ),
    ] {
        let e = try_render(&["--set", "watch.namespaces={team-a}", "--set", set]).expect_err(set);
        assert!(e.contains(field), "{set}: {e}");
    }
}

#[test]
fn retention_values_reach_the_operator_and_bad_ones_are_refused() {
    let config_of = |docs: &[Value]| {
        OperatorConfig::parse(
            config_map(docs)["data"]["config.yaml"]
                .as_str()
                .expect("config.yaml"),
        )
        .expect("the operator accepts the rendered config")
    };
    let defaults = config_of(&render(&[])).retention;
    assert!(defaults.enabled);
    assert_eq!(
        defaults.finished_ttl,
        std::time::Duration::from_secs(168 * 3600)
    );
    assert_eq!(defaults.keep_per_environment, 10);
    let set = config_of(&render(&[
        "--set",
        "config.retention.finishedTTL=24h,config.retention.keepPerEnvironment=3",
    ]))
    .retention;
    assert_eq!(set.finished_ttl, std::time::Duration::from_secs(24 * 3600));
    assert_eq!(set.keep_per_environment, 3);
    for bad in [
        "config.retention.finishedTTL=7d",
        "config.retention.keepPerEnvironment=-1",
        "config.retention.deletionsPerSecond=0",
        "config.retention.ttl=1h",
    ] {
        let e = try_render(&["--set", bad]).expect_err(bad);
        assert!(e.contains("retention"), "{bad}: {e}");
    }
}

#[test]
fn sharding_values_become_flags() {
    let a = args(&all_features());
    for flag in [
        "--namespace=web",
        "--namespace=payments",
        "--label-selector=tollgate.dev/shard=a",
        "--dry-run",
        "--log-format=json",
        "--pod-name=$(POD_NAME)",
        "--github-api-url=https://github.example.com/api/v3",
    ] {
        assert!(a.contains(&flag.to_string()), "missing {flag} in {a:?}");
    }
    assert_eq!(a[0], "run");
}

#[test]
fn admission_policy_requires_the_override_author_to_be_the_requester() {
    assert!(
        of_kind(&render(&[]), "ValidatingAdmissionPolicy").is_empty(),
        "off by default"
    );
    let docs = all_features();
    let policy = one(&docs, "ValidatingAdmissionPolicy");
    assert_eq!(policy["apiVersion"], "admissionregistration.k8s.io/v1");
    let rule = &policy["spec"]["matchConstraints"]["resourceRules"][0];
    assert_eq!(rule["resources"], yaml("[deploymentgates]"));
    assert_eq!(rule["operations"], yaml("[CREATE, UPDATE]"));
    let expression = policy["spec"]["validations"][0]["expression"]
        .as_str()
        .expect("expression");
    assert!(
        expression.contains("object.spec.override.by == request.userInfo.username"),
        "{expression}"
    );
    let binding = one(&docs, "ValidatingAdmissionPolicyBinding");
    assert_eq!(binding["spec"]["policyName"], policy["metadata"]["name"]);
}

#[test]
fn schema_refuses_bad_values() {
    let e = try_render(&["--set-string", "replicaCount=two"]).expect_err("a string replica count");
    assert!(e.contains("replicaCount"), "{e}");
    let e = try_render(&["--set", "replicas=2"]).expect_err("an unknown key");
    assert!(e.contains("replicas"), "{e}");
}

#[test]
fn every_object_carries_the_standard_labels() {
    for doc in all_features() {
        let labels = &doc["metadata"]["labels"];
        for key in [
            "app.kubernetes.io/name",
            "app.kubernetes.io/instance",
            "app.kubernetes.io/version",
            "app.kubernetes.io/managed-by",
            "helm.sh/chart",
        ] {
            assert!(
                labels[key].is_string(),
                "{} {:?} lacks {key}",
                kind(&doc),
                doc["metadata"]["name"]
            );
        }
    }
}

// ---- monitoring: the dashboard, the alerts and the metrics they read --------

const README: &str = include_str!("../README.md");
const DASHBOARD: &str = include_str!("../charts/tollgate/dashboards/tollgate.json");

fn with_monitoring(extra: &[&str]) -> Vec<Value> {
    let mut args = vec![
        "--set",
        "alerts.enabled=true",
        "--set",
        "dashboards.enabled=true",
        "--api-versions",
        "monitoring.coreos.com/v1",
    ];
    args.extend_from_slice(extra);
    render(&args)
}

/// Every rule of the rendered PrometheusRule.
fn alert_rules(docs: &[Value]) -> Vec<Value> {
    one(docs, "PrometheusRule")["spec"]["groups"]
        .as_sequence()
        .expect("groups is a list")
        .iter()
        .flat_map(|g| g["rules"].as_sequence().expect("rules is a list").clone())
        .collect()
}

fn dashboard() -> serde_json::Value {
    serde_json::from_str(DASHBOARD).expect("the dashboard is valid JSON")
}

/// Every panel, rows' nested panels included.
fn panels(d: &serde_json::Value) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().expect("panels is a list") {
        out.push(p.clone());
        if let Some(nested) = p["panels"].as_array() {
            out.extend(nested.iter().cloned());
        }
    }
    out
}

fn dashboard_exprs() -> Vec<String> {
    panels(&dashboard())
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| t["expr"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The `tollgate_…` metric names a PromQL expression reads.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("tollgate_") {
        let before = rest[..at].chars().next_back();
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        // Inside a label value (`job="tollgate_x"`) or a longer identifier: not a metric.
        if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '"') {
            names.push(tail[..end].to_string());
        }
        rest = &tail[end..];
    }
    names
}

/// The sample names the operator's registry exports, from its own
/// exposition: every registered metric has its `# TYPE` line even before
/// its first observation, and a counter's samples end in `_total`, a
/// histogram's in `_bucket`, `_sum` and `_count`.
fn exported_names() -> std::collections::BTreeSet<String> {
    use tollgate::telemetry::labels;
    let m = tollgate::telemetry::Metrics::new();
    // A family shows in the exposition once it has a label set; give each
    // one (values do not matter here, names do).
    let l = || labels([("any", "x")]);
    for f in [
        &m.webhooks,
        &m.decisions,
        &m.deliveries,
        &m.github_requests,
        &m.reconcile_errors,
        &m.github_invalid_requests,
        &m.deployments,
        &m.http_connections_refused,
        &m.http_connections_evicted,
        &m.http_connection_timeouts,
        &m.retention_deletions,
        &m.kube_requests,
    ] {
        let _ = f.get_or_create(&l());
    }
    for f in [
        &m.gates_by_phase,
        &m.pauses_by_state,
        &m.github_write_budget_remaining,
        &m.http_connections,
        &m.http_requests_in_flight,
        &m.retention_last_pass,
        &m.gate_deadline,
    ] {
        let _ = f.get_or_create(&l());
    }
    let _ = m.reconcile_duration.get_or_create(&l());
    let text = m.render();
    let mut names = std::collections::BTreeSet::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
        match kind {
            "counter" => {
                names.insert(format!("{name}_total"));
            }
            "histogram" => {
                for s in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{s}"));
                }
            }
            _ => {
                names.insert(name.to_string());
            }
        }
    }
    names
}

#[test]
fn dashboard_config_map_only_when_enabled_with_the_sidecar_label() {
    assert!(
        !render(&[])
            .iter()
            .any(|d| d["metadata"]["name"] == "tg-tollgate-dashboard"),
        "absent by default"
    );
    let docs = with_monitoring(&[]);
    let cm = of_kind(&docs, "ConfigMap")
        .into_iter()
        .find(|d| d["metadata"]["name"] == "tg-tollgate-dashboard")
        .expect("the dashboard ConfigMap");
    assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1");
    assert_eq!(cm["metadata"]["namespace"], NAMESPACE);
    let json = cm["data"]["tollgate.json"].as_str().expect("tollgate.json");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(json).expect("the ConfigMap holds valid JSON"),
        dashboard(),
        "the ConfigMap holds the chart's dashboards/tollgate.json"
    );
    let docs = with_monitoring(&[
        "--set",
        "dashboards.label=example.com/dashboard",
        "--set",
        "dashboards.labelValue=tollgate",
        "--set",
        "dashboards.namespace=grafana",
    ]);
    let cm = of_kind(&docs, "ConfigMap")
        .into_iter()
        .find(|d| d["metadata"]["name"] == "tg-tollgate-dashboard")
        .expect("the dashboard ConfigMap");
    assert_eq!(
        cm["metadata"]["labels"]["example.com/dashboard"],
        "tollgate"
    );
    assert!(cm["metadata"]["labels"]["grafana_dashboard"].is_null());
    assert_eq!(cm["metadata"]["namespace"], "grafana");
}

#[test]
fn dashboard_json_has_unique_panel_ids_and_an_expression_in_every_target() {
    let d = dashboard();
    assert_eq!(d["uid"], "tollgate");
    assert!(d["schemaVersion"].as_u64().is_some(), "schemaVersion set");
    let all = panels(&d);
    let mut ids = std::collections::BTreeSet::new();
    for p in &all {
        let id = p["id"].as_u64().expect("every panel has a numeric id");
        assert!(ids.insert(id), "panel id {id} is used twice");
        assert!(
            p["gridPos"]["w"].as_u64().is_some(),
            "panel {id} has a gridPos"
        );
        if p["type"] == "row" {
            continue;
        }
        let targets = p["targets"].as_array().expect("a panel has targets");
        assert!(!targets.is_empty(), "panel {id} has no target");
        for t in targets {
            let expr = t["expr"].as_str().unwrap_or_default();
            assert!(!expr.trim().is_empty(), "panel {id}: a target without expr");
            assert!(
                expr.contains("$job"),
                "panel {id} ignores the job variable: {expr}"
            );
        }
        assert_eq!(p["datasource"]["uid"], "${datasource}", "panel {id}");
    }
    let titles: Vec<&str> = all
        .iter()
        .filter(|p| p["type"] == "row")
        .map(|p| p["title"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        titles,
        [
            "Gates",
            "Decisions",
            "Delivery to GitHub",
            "GitHub budget",
            "Intake",
            "Operator"
        ]
    );
}

#[test]
fn every_metric_the_dashboard_and_the_alerts_read_is_exported() {
    let exported = exported_names();
    let rules = alert_rules(&with_monitoring(&[]));
    let exprs: Vec<String> = dashboard_exprs()
        .into_iter()
        .chain(
            rules
                .iter()
                .map(|r| r["expr"].as_str().expect("expr").to_string()),
        )
        .collect();
    let mut read = 0;
    for expr in &exprs {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "reads no tollgate metric: {expr}");
        for name in names {
            read += 1;
            assert!(
                exported.contains(&name),
                "{name} is not exported by the operator (in: {expr}); exported: {exported:?}"
            );
        }
    }
    assert!(read > 20, "only {read} metric reads found");
}

#[test]
fn the_late_answer_alert_reads_a_bucket_the_operator_exports() {
    let rules = alert_rules(&with_monitoring(&[]));
    let late = rules
        .iter()
        .find(|r| r["alert"] == "TollgateGateDeliveredLate")
        .expect("the late-answer alert");
    let expr = late["expr"].as_str().expect("expr");
    let metrics = tollgate::telemetry::Metrics::new();
    metrics.delivery_lateness.observe(0.0);
    let text = metrics.render();
    let bucket = "tollgate_delivery_lateness_seconds_bucket{le=\"60.0\"}";
    assert!(text.contains(bucket), "no {bucket} in:\n{text}");
    assert!(expr.contains("le=\"60.0\""), "{expr}");
}

#[test]
fn prometheus_rule_only_when_enabled_and_the_api_exists_or_is_assumed() {
    assert!(of_kind(&render(&[]), "PrometheusRule").is_empty());
    assert!(
        of_kind(&render(&["--set", "alerts.enabled=true"]), "PrometheusRule").is_empty(),
        "absent without the API group"
    );
    let assumed = render(&[
        "--set",
        "alerts.enabled=true",
        "--set",
        "alerts.assumeApiAvailable=true",
    ]);
    one(&assumed, "PrometheusRule");
    let docs = with_monitoring(&[]);
    let alerts: Vec<String> = alert_rules(&docs)
        .iter()
        .map(|r| r["alert"].as_str().expect("alert name").to_string())
        .collect();
    assert_eq!(
        alerts,
        [
            "TollgateGateNearDeadline",
            "TollgateDeliveriesDenied",
            "TollgateDeliveriesFailing",
            "TollgateGateDeliveredLate",
            "TollgateGitHubRateLimited",
            "TollgateWebhookSignatureFailures",
            "TollgateReconcileErrors",
            "TollgateNoLeader"
        ]
    );
    for r in alert_rules(&docs) {
        let expr = r["expr"].as_str().expect("expr");
        for name in metric_names(expr) {
            let at = expr.find(&name).expect("name in expr") + name.len();
            assert!(
                expr[at..]
                    .starts_with("{job=\"tg-tollgate-metrics\", namespace=\"tollgate-system\""),
                "{name} in {:?} is not limited to this release's metrics: {expr}",
                r["alert"]
            );
        }
    }
    let threshold = with_monitoring(&["--set", "alerts.thresholds.deadlineSeconds=900"]);
    let near = alert_rules(&threshold)
        .into_iter()
        .find(|r| r["alert"] == "TollgateGateNearDeadline")
        .expect("near-deadline alert");
    assert!(
        near["expr"]
            .as_str()
            .expect("expr")
            .trim_end()
            .ends_with("< 900"),
        "{:?}",
        near["expr"]
    );
}

/// GitHub's anchor for a Markdown heading: lower case, spaces to dashes,
/// punctuation dropped.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

#[test]
fn every_alert_links_to_its_runbook_section_in_the_readme() {
    let anchors: Vec<String> = README
        .lines()
        .filter_map(|l| l.strip_prefix('#'))
        .map(|l| anchor(l.trim_start_matches('#')))
        .collect();
    for r in alert_rules(&with_monitoring(&[])) {
        let name = r["alert"].as_str().expect("alert");
        let url = r["annotations"]["runbook_url"]
            .as_str()
            .expect("runbook_url");
        let (base, fragment) = url.split_once('#').expect("the runbook URL has an anchor");
        assert_eq!(
            base,
            "https://github.com/tollgate-dev/tollgate/blob/main/README.md"
        );
        assert_eq!(fragment, name.to_lowercase());
        assert!(
            anchors.iter().any(|a| a == fragment),
            "README has no section #{fragment} for {name}"
        );
        for a in ["summary", "description"] {
            assert!(r["annotations"][a].is_string(), "{name} lacks {a}");
        }
        assert!(
            r["labels"]["severity"].is_string(),
            "{name} lacks a severity"
        );
    }
}

/// promtool, or why the test cannot run: in CI (`CI` set) a missing promtool
/// fails the test, elsewhere it is skipped with one line.
fn promtool() -> Option<String> {
    let bin = std::env::var("PROMTOOL").unwrap_or_else(|_| "promtool".to_string());
    let found = Command::new(&bin)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return Some(bin);
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "promtool not found ({bin}) and CI is set: `bash .ci/tools.sh` installs it into target/ci-tools/bin"
        );
    }
    eprintln!("skipped: promtool not found ({bin}); `bash .ci/tools.sh` installs it");
    None
}

#[test]
fn promtool_accepts_the_rendered_alert_rules() {
    let Some(promtool) = promtool() else {
        return;
    };
    for docs in [with_monitoring(&[]), all_features()] {
        let spec = &one(&docs, "PrometheusRule")["spec"];
        let dir = std::env::temp_dir().join(format!("tollgate-rules-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("rules.yaml");
        std::fs::write(&file, serde_yaml_ng::to_string(spec).expect("spec as YAML"))
            .expect("write the rules file");
        let out = Command::new(&promtool)
            .args(["check", "rules"])
            .arg(&file)
            .output()
            .expect("run promtool");
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "promtool check rules failed:\n{said}");
        assert!(said.contains("SUCCESS: 8 rules found"), "{said}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
