#!/usr/bin/env bash
# Lints the chart, renders it with several value sets, validates every render
# offline against the Kubernetes schemas, and checks that bad values are refused.
set -euo pipefail
cd "$(dirname "$0")/.."

chart=charts/tollgate
out=target/chart-renders
rm -rf "$out" && mkdir -p "$out"

helm lint --strict "$chart"

render() { # name, extra helm args...
  local name="$1"; shift
  helm template tollgate "$chart" --namespace tollgate-system "$@" > "$out/$name.yaml"
  kubernetes-validate --quiet --kubernetes-version 1.33.0 "$out/$name.yaml"
  echo "chart: rendered and validated: $name"
}

render defaults
for values in "$chart"/ci/*-values.yaml; do
  [[ -e "$values" ]] || continue
  render "$(basename "$values" -values.yaml)" -f "$values"
done

refused() { # description, helm args...
  local what="$1"; shift
  if helm template tollgate "$chart" "$@" > /dev/null 2> "$out/refused.err"; then
    echo "chart: the schema accepted $what" >&2
    exit 1
  fi
  echo "chart: refused as it should: $what ($(head -c 160 "$out/refused.err" | tr '\n' ' '))"
}
refused "an unknown key" --set notAValue=1
refused "a wrong type for image.tag" --set-json 'image={"tag":5}'
