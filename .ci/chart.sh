#!/usr/bin/env bash
# Lints the chart, renders it with several value sets, validates every render
# offline against the Kubernetes schemas, and checks that bad values are refused.
set -euo pipefail
cd "$(dirname "$0")/.."

chart=charts/tollgate
out=target/chart-renders
kube_version=1.33.0
rm -rf "$out" && mkdir -p "$out"

helm lint --strict "$chart"
for values in "$chart"/ci/*-values.yaml; do
  [[ -e "$values" ]] || continue
  helm lint --strict "$chart" -f "$values" > /dev/null
done

render() { # name, extra helm args...
  local name="$1"; shift
  helm template tollgate "$chart" --namespace tollgate-system --kube-version "$kube_version" "$@" > "$out/$name.yaml"
  # --strict refuses unknown fields. Kinds kubernetes-validate has no schema for
  # (the Prometheus Operator's ServiceMonitor) are skipped with a warning.
  kubernetes-validate --strict --quiet --kubernetes-version "$kube_version" "$out/$name.yaml"
  echo "chart: rendered and validated: $name ($(grep -c '^kind:' "$out/$name.yaml") objects)"
}

# Defaults: no Prometheus Operator in the cluster.
render defaults
# Every ci/*-values.yaml, in a cluster that serves monitoring.coreos.com/v1, so
# optional objects gated on that API group render too.
for values in "$chart"/ci/*-values.yaml; do
  [[ -e "$values" ]] || continue
  render "$(basename "$values" -values.yaml)" -f "$values" --api-versions monitoring.coreos.com/v1
done
grep -q '^kind: ServiceMonitor' "$out/all-features.yaml" || { echo "chart: all-features rendered no ServiceMonitor" >&2; exit 1; }
grep -q '^kind: ServiceMonitor' "$out/defaults.yaml" && { echo "chart: defaults rendered a ServiceMonitor" >&2; exit 1; }
grep -q '^kind: PrometheusRule' "$out/all-features.yaml" || { echo "chart: all-features rendered no PrometheusRule" >&2; exit 1; }
grep -q '^kind: PrometheusRule' "$out/defaults.yaml" && { echo "chart: defaults rendered a PrometheusRule" >&2; exit 1; }

refused() { # description, helm args...
  local what="$1"; shift
  if helm template tollgate "$chart" "$@" > /dev/null 2> "$out/refused.err"; then
    echo "chart: the chart accepted $what" >&2
    exit 1
  fi
  echo "chart: refused as it should: $what ($(head -c 160 "$out/refused.err" | tr '\n' ' '))"
}
refused "an unknown key" --set notAValue=1
refused "an unknown nested key" --set github.appId=1
printf 'replicaCount: "two"\n' > "$out/two-values.yaml"
refused 'replicaCount: "two"' -f "$out/two-values.yaml"
refused "a wrong type for image.tag" --set-json 'image={"tag":5}'
refused "an unknown onDeadline" --set config.defaults.onDeadline=Maybe
refused "a policy with an unknown field" --set-json 'config={"policies":[{"repositories":["a/b"],"timout":"1h"}]}'
refused "both existingSecret and createSecret" --set github.existingSecret=x --set github.createSecret.enabled=true --set github.createSecret.webhookSecret=s --set github.createSecret.appId=1 --set github.createSecret.privateKey=k
refused "a created App Secret without a private key" --set github.createSecret.enabled=true --set github.createSecret.webhookSecret=s --set github.createSecret.appId=1
refused "the admission policy on Kubernetes 1.29" --set admissionPolicy.enabled=true --kube-version 1.29.0
