//! `--kubeconfig PATH`: the deadline phase against a real API server.
//!
//! The in-process fake answers in microseconds and stores nothing on disk; a
//! real kube-apiserver with etcd behind it does neither, and that is where a
//! burst of deadlines shows what each one costs. This phase runs the operator
//! binary against the cluster `PATH` names (its CRDs applied by this phase),
//! in a namespace of its own, with the fake GitHub on loopback: `--deadlines`
//! gates whose deadlines fall over `--spread-secs`, held by a pause nobody
//! resumes. Lateness is measured at GitHub (the fake's log: when the answer
//! was accepted, against the gate's deadline), so it includes the delivery.
//! The operator's own `tollgate_kube_requests_total` gives the API requests
//! per gate, Events apart.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use futures::StreamExt;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use serde_json::{Value, json};
use tollgate::api::{DeploymentGate, ReleasePause};

use super::{FakeGitHub, Opts, PHASE_LIMIT, get_local, percentiles, round, spawn_operator};

/// A client for the cluster `path` names, or why there is none.
async fn client(path: &Path) -> Result<Client, String> {
    let kubeconfig = Kubeconfig::read_from(path)
        .map_err(|e| format!("cannot read the kubeconfig {}: {e}", path.display()))?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|e| {
            format!(
                "the kubeconfig {} names no usable cluster: {e}",
                path.display()
            )
        })?;
    Client::try_from(config).map_err(|e| format!("cannot build a client: {e}"))
}

/// Server-side applies the CRDs this binary was built with and waits
/// (bounded) until both are served.
async fn apply_crds(client: &Client) -> Result<(), String> {
    let yaml = tollgate::api::crds_yaml().map_err(|e| format!("CRD YAML: {e}"))?;
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let params = PatchParams::apply("tollgate-bench").force();
    let mut names = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(&yaml) {
        let crd: CustomResourceDefinition =
            serde::Deserialize::deserialize(doc).map_err(|e| format!("CRD YAML: {e}"))?;
        let name = crd.metadata.name.clone().unwrap_or_default();
        api.patch(&name, &params, &Patch::Apply(&crd))
            .await
            .map_err(|e| format!("applying the CRD {name}: {e}"))?;
        names.push(name);
    }
    let start = Instant::now();
    for name in names {
        loop {
            let established = api.get(&name).await.ok().is_some_and(|c| {
                c.status.and_then(|s| s.conditions).is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c.type_ == "Established" && c.status == "True")
                })
            });
            if established {
                break;
            }
            if start.elapsed() > Duration::from_secs(60) {
                return Err(format!("the CRD {name} was not established within 60 s"));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
}

/// `tollgate_kube_requests_total` from the operator's metrics, by
/// (client, verb, resource).
fn kube_requests(port: u16) -> BTreeMap<(String, String, String), f64> {
    let text = get_local(port, "/metrics").unwrap_or_default();
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("tollgate_kube_requests_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.split_once("} ") else {
            continue;
        };
        let label = |key: &str| {
            labels
                .split(',')
                .find_map(|kv| kv.strip_prefix(&format!("{key}=\"")))
                .map(|v| v.trim_end_matches('"').to_string())
                .unwrap_or_default()
        };
        if let Ok(v) = value.trim().parse::<f64>() {
            out.insert((label("client"), label("verb"), label("resource")), v);
        }
    }
    out
}

/// A counter of the operator's metrics, summed over its labels.
fn counter(port: u16, name: &str) -> f64 {
    let text = get_local(port, "/metrics").unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum()
}

pub async fn run(o: &Opts, path: &Path, gh: &FakeGitHub) -> Value {
    match run_phase(o, path, gh).await {
        Ok(report) => report,
        Err(why) => {
            eprintln!("load: {why}");
            json!({"error": why})
        }
    }
}

async fn run_phase(o: &Opts, path: &Path, gh: &FakeGitHub) -> Result<Value, String> {
    let client = client(path).await?;
    apply_crds(&client).await?;
    let ns = format!("tollgate-bench-{}", std::process::id());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace: Namespace =
        serde_json::from_value(json!({"metadata": {"name": ns}})).map_err(|e| e.to_string())?;
    namespaces
        .create(&PostParams::default(), &namespace)
        .await
        .map_err(|e| format!("creating the namespace {ns}: {e}"))?;

    let files = std::env::temp_dir().join(format!("tollgate-bench-real-{}", std::process::id()));
    std::fs::create_dir_all(&files).map_err(|e| e.to_string())?;
    let config = format!(
        "defaults: {{namespace: {ns}}}\ntenancy: [{{namespace: {ns}, repositories: ['*']}}]\n"
    );
    let extra = [
        "--namespace".to_string(),
        ns.clone(),
        "--operator-namespace".to_string(),
        ns.clone(),
        "--lease-namespace".to_string(),
        ns.clone(),
    ];
    let (operator, port) = spawn_operator(o, gh, path, files, &config, &extra).await;
    let gates: Api<DeploymentGate> = Api::namespaced(client.clone(), &ns);
    let pauses: Api<ReleasePause> = Api::namespaced(client.clone(), &ns);
    let mut freeze = super::pause("freeze", "canary");
    freeze.metadata.namespace = Some(ns.clone());
    pauses
        .create(&PostParams::default(), &freeze)
        .await
        .map_err(|e| format!("creating the pause: {e}"))?;
    // Gates are created only once the operator holds by the pause (it wrote
    // the pause's status), or the first would be decided at once.
    let seen = Instant::now();
    loop {
        let active = pauses
            .get("freeze")
            .await
            .ok()
            .and_then(|p| p.status)
            .is_some_and(|s| s.state == Some(tollgate::api::PauseState::Active));
        if active {
            break;
        }
        if seen.elapsed() > Duration::from_secs(60) {
            return Err(
                "the operator never took up the pause (status.state Active) within 60 s".into(),
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Deadlines begin once every gate can have been created and seen Waiting:
    // on a 2-core machine a real server takes about a hundred new gates a
    // second while the operator writes each one's Waiting status.
    let lead = SignedDuration::from_millis(30_000 + 25 * o.deadlines as i64);
    let start = Timestamp::now() + lead;
    let spread_ms = (o.spread_secs * 1000) as i64;
    let base_run = 3_000_000i64;
    let mut deadline_of = HashMap::new();
    let batch: Vec<DeploymentGate> = (0..o.deadlines)
        .map(|i| {
            let at = start
                + SignedDuration::from_millis(spread_ms * i as i64 / o.deadlines.max(1) as i64);
            deadline_of.insert(base_run + i as i64, at);
            let mut g = super::gate(&format!("t-{i}"), base_run + i as i64, "canary", Some(at));
            g.metadata.namespace = Some(ns.clone());
            g
        })
        .collect();
    let before = kube_requests(port);
    let created = futures::stream::iter(batch)
        .map(|g| {
            let gates = gates.clone();
            async move {
                match gates.create(&PostParams::default(), &g).await {
                    Ok(_) => true,
                    Err(e) => {
                        eprintln!(
                            "load: creating {}: {e}",
                            g.metadata.name.unwrap_or_default()
                        );
                        false
                    }
                }
            }
        })
        .buffer_unordered(32)
        .filter(|ok| futures::future::ready(*ok))
        .count()
        .await;
    let created_by = Timestamp::now();
    let creation_seconds = (created_by - (start - lead))
        .total(jiff::Unit::Second)
        .unwrap_or(0.0);
    if created < o.deadlines {
        eprintln!("load: only {created} of {} gates were created", o.deadlines);
    }
    if created_by > start {
        eprintln!(
            "load: creating the gates ended {:.1} s after the first deadline; lateness includes that",
            (created_by - start)
                .total(jiff::Unit::Second)
                .unwrap_or(0.0)
        );
    }

    // Anchor the fake GitHub's clock (tokio instants) to wall time.
    let anchor = (tokio::time::Instant::now(), Timestamp::now());
    let wall = |at: tokio::time::Instant| {
        let offset = |d: Duration| SignedDuration::try_from(d).unwrap_or_default();
        if at <= anchor.0 {
            anchor.1 - offset(anchor.0 - at)
        } else {
            anchor.1 + offset(at - anchor.0)
        }
    };
    let answered = |gh: &FakeGitHub| -> HashMap<i64, Timestamp> {
        let mut first = HashMap::new();
        for r in gh.requests() {
            // An answer carries a state; a status report is a comment only.
            let answer = r.body.get("state").is_some_and(|s| !s.is_null());
            if r.method != "POST"
                || r.status != 204
                || !answer
                || !r.path.ends_with("/deployment_protection_rule")
            {
                continue;
            }
            if let Some(run) = super::run_of(&r.path).filter(|run| deadline_of.contains_key(run)) {
                let at = wall(r.at);
                first
                    .entry(run)
                    .and_modify(|t: &mut Timestamp| *t = (*t).min(at))
                    .or_insert(at);
            }
        }
        first
    };
    let waited = Instant::now();
    let mut told = Instant::now();
    let answers = loop {
        let answers = answered(gh);
        if answers.len() >= created || waited.elapsed() > PHASE_LIMIT {
            break answers;
        }
        if told.elapsed() > Duration::from_secs(10) {
            eprintln!(
                "load: real server: {}/{created} deadlines answered",
                answers.len()
            );
            told = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    // Trailing work (delivery writes, Events) before the requests are counted.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = kube_requests(port);
    let events_dropped = counter(port, "tollgate_events_dropped_total");
    // Why reconciles failed, if they did (each retry waits a backoff).
    let errors: serde_json::Map<String, Value> = get_local(port, "/metrics")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.strip_prefix("tollgate_reconcile_errors_total{"))
        .filter_map(|l| l.split_once("} "))
        .map(|(labels, n)| {
            (
                labels.to_string(),
                json!(n.trim().parse::<f64>().unwrap_or(0.0)),
            )
        })
        .collect();

    let lateness: Vec<f64> = answers
        .iter()
        .map(|(run, at)| {
            (*at - deadline_of[run])
                .total(jiff::Unit::Second)
                .unwrap_or(0.0)
        })
        .collect();
    let early = lateness.iter().filter(|l| **l < 0.0).count();
    let first_answer = answers.values().min().copied();
    let last_answer = answers.values().max().copied();
    let answer_rate = match (first_answer, last_answer) {
        (Some(a), Some(b)) if b > a => {
            answers.len() as f64 / (b - a).total(jiff::Unit::Second).unwrap_or(1.0)
        }
        _ => 0.0,
    };
    let per_gate = |pick: &dyn Fn(&str, &str, &str) -> bool| {
        let n: f64 = after
            .iter()
            .filter(|((c, v, r), _)| pick(c, v, r))
            .map(|(k, v)| v - before.get(k).copied().unwrap_or(0.0))
            .sum();
        round(n / created.max(1) as f64)
    };
    let reads = per_gate(&|c, v, _| c == "work" && (v == "get" || v == "list"));
    let writes = per_gate(&|c, v, _| c == "work" && !matches!(v, "get" | "list" | "watch"));
    let status_writes = per_gate(&|c, v, r| c == "work" && v == "patch" && r.ends_with("/status"));
    let events = per_gate(&|c, _, _| c == "events");
    let by_request: Value = after
        .iter()
        .map(|((c, v, r), n)| {
            (
                format!("{c} {v} {r}"),
                json!(round(
                    (n - before
                        .get(&(c.clone(), v.clone(), r.clone()))
                        .copied()
                        .unwrap_or(0.0))
                        / created.max(1) as f64
                )),
            )
        })
        .collect::<serde_json::Map<String, Value>>()
        .into();

    // Leave nothing behind but the namespace (the operator releases each
    // decided gate's finalizer on delete; a cluster without a namespace
    // controller keeps the empty namespace).
    let _ = gates
        .delete_collection(&DeleteParams::default(), &ListParams::default())
        .await;
    let gone = Instant::now();
    while gates
        .list(&ListParams::default().limit(1))
        .await
        .is_ok_and(|l| !l.items.is_empty())
        && gone.elapsed() < Duration::from_secs(120)
    {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    drop(operator);
    let _ = namespaces.delete(&ns, &DeleteParams::default()).await;

    let lateness = percentiles(lateness.into_iter().map(|l| l.max(0.0)).collect());
    let at_most = |v: &Value, limit: f64| v.as_f64().is_some_and(|x| x <= limit);
    Ok(json!({
        "api_server": "real (--kubeconfig)",
        "deadlines": o.deadlines,
        "deadline_spread_secs": o.spread_secs,
        "gates_created": created,
        "creation_seconds": round(creation_seconds),
        "creation_ended_before_the_first_deadline": created_by <= start,
        "answered": answers.len(),
        "answered_before_deadline": early,
        "deadline_lateness_seconds_at_github": lateness,
        "answers_per_second": round(answer_rate),
        "api_requests_per_gate": {
            "reads": reads,
            "writes": writes,
            "status_writes": status_writes,
            "events": events,
            "by_request": by_request,
        },
        "events_dropped": events_dropped,
        "reconcile_errors": errors,
        "targets": {"deadline_lateness_p99_seconds": 1.0, "deadline_lateness_max_seconds": 2.0},
        "met": {
            "deadline_lateness_p99": at_most(&lateness["p99"], 1.0),
            "deadline_lateness_max": at_most(&lateness["max"], 2.0),
            "every_gate_answered": answers.len() == o.deadlines,
            "none_before_its_deadline": early == 0,
        },
        "note": "the operator binary and this process (the fake GitHub, the driver) share the CPU with the API server and etcd",
    }))
}
