#!/usr/bin/env bash
# The end-to-end suite against the cluster KUBECONFIG names. Without one it says
# so and exits 0; it never pretends to have passed.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -z "${KUBECONFIG:-}" || ! -r "${KUBECONFIG%%:*}" ]] || ! kubectl version --request-timeout=5s >/dev/null 2>&1; then
  echo "e2e: skipped (no cluster)"
  exit 0
fi

echo "e2e: no scenarios yet" >&2
exit 1
