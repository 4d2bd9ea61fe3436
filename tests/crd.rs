//! The generated CRDs: in sync with the checked-in copies, documented for
//! `kubectl explain`, and refusing bad objects through their OpenAPI schema.

use serde_json::{Value, json};

const CHECKED_IN: &str = include_str!("../crds/tollgate.dev_crds.yaml");
const CHART_COPY: &str = include_str!("../charts/tollgate/crds/tollgate.dev_crds.yaml");
const README: &str = include_str!("../README.md");
const SAMPLE_GATE: &str = include_str!("../examples/gate.yaml");
const SAMPLE_PAUSE: &str = include_str!("../examples/pause.yaml");
const SAMPLE_FREEZE: &str = include_str!("../examples/freeze.yaml");
const SAMPLE_ANALYSIS: &str = include_str!("../examples/analysis-gate.yaml");

fn crds() -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(CHECKED_IN)
        .map(|doc| {
            let v: Value = serde::Deserialize::deserialize(doc).expect("checked-in CRD is YAML");
            v
        })
        .collect()
}

fn crd(kind: &str) -> Value {
    crds()
        .into_iter()
        .find(|c| c["spec"]["names"]["kind"] == kind)
        .unwrap_or_else(|| panic!("no CRD for {kind}"))
}

fn version(kind: &str) -> Value {
    crd(kind)["spec"]["versions"][0].clone()
}

fn yaml(s: &str) -> Value {
    serde_yaml_ng::from_str(s).expect("sample is YAML")
}

/// Validates an object against the CRD's openAPIV3Schema with a JSON-schema
/// validator. OpenAPI's `nullable` has no JSON-schema meaning, so samples here
/// omit absent fields instead of writing null, as kubectl users do.
fn schema_errors(kind: &str, object: &Value) -> Vec<String> {
    let schema = version(kind)["schema"]["openAPIV3Schema"].clone();
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft4)
        .build(&schema)
        .expect("the CRD schema compiles");
    validator
        .iter_errors(object)
        .map(|e| format!("{}: {}", e.instance_path(), e))
        .collect()
}

#[test]
fn checked_in_crds_match_the_binary_output() {
    let generated = tollgate::api::crds_yaml().expect("CRDs render");
    assert_eq!(
        generated, CHECKED_IN,
        "crds/ is stale: run `cargo run -- crd > crds/tollgate.dev_crds.yaml`"
    );
    assert_eq!(
        generated, CHART_COPY,
        "the chart's CRDs are stale: copy crds/tollgate.dev_crds.yaml to charts/tollgate/crds/"
    );
}

#[test]
fn printer_columns_are_the_documented_ones() {
    let names = |kind: &str| -> Vec<String> {
        version(kind)["additionalPrinterColumns"]
            .as_array()
            .expect("printer columns")
            .iter()
            .filter(|c| c.get("priority").is_none())
            .map(|c| c["name"].as_str().expect("column name").to_uppercase())
            .collect()
    };
    assert_eq!(
        names("DeploymentGate"),
        [
            "REPOSITORY",
            "ENVIRONMENT",
            "SHA",
            "PHASE",
            "DELIVERY",
            "ANALYSIS",
            "REASON",
            "DEADLINE",
            "AGE"
        ]
    );
    assert_eq!(
        names("ReleasePause"),
        ["SCOPE", "STATE", "REASON", "SHA", "HELD", "AGE"]
    );
}

#[test]
fn names_short_names_categories_scope_and_status_subresource() {
    for (kind, short) in [("DeploymentGate", "dg"), ("ReleasePause", "rp")] {
        let c = crd(kind);
        assert_eq!(c["spec"]["group"], "tollgate.dev");
        assert_eq!(c["spec"]["scope"], "Namespaced");
        assert_eq!(c["spec"]["names"]["shortNames"], json!([short]));
        assert_eq!(c["spec"]["names"]["categories"], json!(["tollgate"]));
        let v = version(kind);
        assert_eq!(v["name"], "v1alpha1");
        assert_eq!(v["subresources"]["status"], json!({}));
        // Kubernetes 1.25 does not know selectableFields.
        assert!(v.get("selectableFields").is_none());
    }
}

#[test]
fn deadline_and_timeout_are_exclusive_by_cel_rule() {
    let spec = &version("DeploymentGate")["schema"]["openAPIV3Schema"]["properties"]["spec"];
    let rules = spec["x-kubernetes-validations"]
        .as_array()
        .expect("spec has CEL rules");
    assert!(rules.iter().any(|r| {
        r["rule"] == "!(has(self.deadline) && has(self.timeout))"
            && r["message"]
                .as_str()
                .is_some_and(|m| m.contains("spec.deadline") && m.contains("spec.timeout"))
    }));
    let timeout = &spec["properties"]["timeout"]["x-kubernetes-validations"][0];
    assert_eq!(timeout["rule"], "duration(self) <= duration('696h')");
    let duration = &version("ReleasePause")["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
        ["schedule"]["properties"]["duration"]["x-kubernetes-validations"][0];
    assert_eq!(duration["rule"], "duration(self) > duration('0s')");
}

#[test]
fn conditions_are_a_list_map_keyed_by_type() {
    for kind in ["DeploymentGate", "ReleasePause"] {
        let c = &version(kind)["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]["conditions"];
        assert_eq!(c["x-kubernetes-list-type"], "map");
        assert_eq!(c["x-kubernetes-list-map-keys"], json!(["type"]));
        let required = &c["items"]["required"];
        for field in ["type", "status", "lastTransitionTime", "reason", "message"] {
            assert!(
                required
                    .as_array()
                    .expect("required")
                    .iter()
                    .any(|r| r == field),
                "{kind}: {field}"
            );
        }
    }
}

fn undocumented(schema: &Value, path: &str, out: &mut Vec<String>) {
    if let Some(props) = schema["properties"].as_object() {
        for (name, prop) in props {
            let p = format!("{path}.{name}");
            if prop
                .get("description")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                out.push(p.clone());
            }
            undocumented(prop, &p, out);
            undocumented(&prop["items"], &format!("{p}[]"), out);
        }
    }
}

#[test]
fn every_spec_and_status_field_is_documented_for_kubectl_explain() {
    for kind in ["DeploymentGate", "ReleasePause"] {
        let root = &version(kind)["schema"]["openAPIV3Schema"]["properties"];
        let mut missing = Vec::new();
        undocumented(&root["spec"], "spec", &mut missing);
        undocumented(&root["status"], "status", &mut missing);
        assert!(
            missing.is_empty(),
            "{kind} fields without description: {missing:?}"
        );
        assert!(
            root["spec"]["description"].is_string() && root["status"]["description"].is_string()
        );
    }
}

#[test]
fn readme_shows_the_samples_verbatim() {
    for sample in [SAMPLE_GATE, SAMPLE_PAUSE, SAMPLE_FREEZE, SAMPLE_ANALYSIS] {
        assert!(
            README.contains(sample.trim_end()),
            "README is missing the sample:\n{sample}"
        );
    }
}

#[test]
fn readme_samples_validate_against_the_schema() {
    assert_eq!(
        schema_errors("DeploymentGate", &yaml(SAMPLE_GATE)),
        Vec::<String>::new()
    );
    assert_eq!(
        schema_errors("DeploymentGate", &yaml(SAMPLE_ANALYSIS)),
        Vec::<String>::new()
    );
    assert_eq!(
        schema_errors("ReleasePause", &yaml(SAMPLE_PAUSE)),
        Vec::<String>::new()
    );
    assert_eq!(
        schema_errors("ReleasePause", &yaml(SAMPLE_FREEZE)),
        Vec::<String>::new()
    );
}

fn gate_with(field: &str, value: Value) -> Value {
    let mut g = yaml(SAMPLE_GATE);
    g["spec"][field] = value;
    g
}

fn assert_refused(kind: &str, object: &Value, field_path: &str) {
    let errors = schema_errors(kind, object);
    assert!(
        errors.iter().any(|e| e.starts_with(field_path)),
        "expected an error at {field_path}, got {errors:?}"
    );
}

#[test]
fn bad_gates_are_refused_naming_the_field() {
    assert_refused(
        "DeploymentGate",
        &gate_with("sha", json!("9fceb02")),
        "/spec/sha",
    );
    assert_refused(
        "DeploymentGate",
        &gate_with("sha", json!("9FCEB02D0AE598E95DC970B74767F19372D61AF8")),
        "/spec/sha",
    );
    assert_refused(
        "DeploymentGate",
        &gate_with("repository", json!("acme")),
        "/spec/repository",
    );
    assert_refused(
        "DeploymentGate",
        &gate_with("repository", json!("acme/web/extra")),
        "/spec/repository",
    );
    assert_refused(
        "DeploymentGate",
        &gate_with("onDeadline", json!("Maybe")),
        "/spec/onDeadline",
    );
    assert_refused(
        "DeploymentGate",
        &gate_with("timeout", json!("2d")),
        "/spec/timeout",
    );
    assert_refused(
        "DeploymentGate",
        &gate_with("runId", json!(0)),
        "/spec/runId",
    );
    assert_refused(
        "DeploymentGate",
        &gate_with("override", json!({"decision": "Approve"})),
        "/spec/override",
    );
    assert_refused(
        "DeploymentGate",
        &gate_with("override", json!({"decision": "Approve", "reason": ""})),
        "/spec/override/reason",
    );
}

#[test]
fn deadline_with_timeout_is_left_to_the_cel_rule() {
    // JSON schema cannot express the exclusivity; the CEL rule (checked above and
    // against a real API server in e2e/) refuses it. The object is otherwise valid.
    let both = gate_with("deadline", json!("2026-11-23T08:00:00Z"));
    assert_eq!(schema_errors("DeploymentGate", &both), Vec::<String>::new());
    assert!(both["spec"]["timeout"].is_string());
}

#[test]
fn bad_pauses_are_refused_naming_the_field() {
    let mut p = yaml(SAMPLE_FREEZE);
    p["spec"]["schedule"]["cron"] = json!("0 18 * *");
    assert_refused("ReleasePause", &p, "/spec/schedule/cron");
    let mut p = yaml(SAMPLE_FREEZE);
    p["spec"]["schedule"]["timeZone"] = json!("Berlin time");
    assert_refused("ReleasePause", &p, "/spec/schedule/timeZone");
    let mut p = yaml(SAMPLE_FREEZE);
    p["spec"]["schedule"]["duration"] = json!("-1h");
    assert_refused("ReleasePause", &p, "/spec/schedule/duration");
    let mut p = yaml(SAMPLE_PAUSE);
    p["spec"]["reason"] = json!("CI Failed");
    assert_refused("ReleasePause", &p, "/spec/reason");
    let mut p = yaml(SAMPLE_PAUSE);
    p["spec"]["scope"]["repositories"] = json!([]);
    assert_refused("ReleasePause", &p, "/spec/scope/repositories");
}

#[test]
fn analysis_schema_refuses_what_cannot_work_by_cel_rule() {
    let spec = &version("DeploymentGate")["schema"]["openAPIV3Schema"]["properties"]["spec"];
    let item = &spec["properties"]["analysis"]["items"];
    let rules = |v: &Value| -> Vec<String> {
        v["x-kubernetes-validations"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|r| r["rule"].as_str().unwrap_or("").to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    assert!(rules(item).contains(&"has(self.min) || has(self.max)".to_string()));
    assert!(
        rules(&item["properties"]["interval"])
            .contains(&"duration(self) >= duration('10s')".to_string())
    );
    // `for` is a CEL keyword: the API server names it `__for__`.
    assert!(
        rules(spec)
            .iter()
            .any(|r| r.contains("duration(a.__for__) <= duration(self.timeout)"))
    );
    assert_eq!(item["properties"]["interval"]["default"], "1m");
    assert_eq!(item["properties"]["failureLimit"]["default"], 3);
    let ok = json!({
        "apiVersion": "tollgate.dev/v1alpha1", "kind": "DeploymentGate",
        "metadata": {"name": "g"},
        "spec": {"repository": "acme/web", "environment": "production", "sha": "a".repeat(40), "runId": 1,
                 "analysis": [{"name": "staging-errors", "query": "up", "max": 0.01, "for": "10m", "interval": "1m"}]},
    });
    assert_eq!(schema_errors("DeploymentGate", &ok), Vec::<String>::new());
    let mut bad = ok.clone();
    bad["spec"]["analysis"][0]["name"] = json!("Staging Errors");
    assert!(!schema_errors("DeploymentGate", &bad).is_empty());
}
