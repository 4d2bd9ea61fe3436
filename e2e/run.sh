#!/usr/bin/env bash
# The end-to-end suite against the cluster KUBECONFIG names. Without one it says
# so and exits 0; it never pretends to have passed.
#
# It installs (server-side applies) the CRDs, works only in a namespace of its
# own (tollgate-e2e-NNNNN, deleted at the end), runs the operator binary on this
# machine against the kubeconfig and a fake GitHub on 127.0.0.1 (the fake of
# tests/support, as examples/fake_github.rs), and asserts each scenario through
# kubectl output and the fake's request log.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -z "${KUBECONFIG:-}" || ! -r "${KUBECONFIG%%:*}" ]] || ! kubectl version --request-timeout=5s >/dev/null 2>&1; then
  echo "e2e: skipped (no cluster)"
  exit 0
fi

echo "e2e: building"
cargo build -q --bins --examples
TOLLGATE="$PWD/target/debug/tollgate"
FAKE_BIN="$PWD/target/debug/examples/fake_github"

NS="tollgate-e2e-$RANDOM$RANDOM"
WORK="$(mktemp -d)"

cleanup() {
  set +e
  # Gates carry a finalizer that the operator removes after answering GitHub:
  # delete them while it still runs, then stop it and the fake, then the namespace.
  kubectl -n "$NS" delete dg,rp --all --wait=true --timeout=30s >/dev/null 2>&1
  [[ -f "$WORK/operator.pid" ]] && kill "$(cat "$WORK/operator.pid")" 2>/dev/null
  [[ -f "$WORK/fake.pid" ]] && kill "$(cat "$WORK/fake.pid")" 2>/dev/null
  for dg in $(kubectl -n "$NS" get dg -o name 2>/dev/null); do
    kubectl -n "$NS" patch "$dg" --type=merge -p '{"metadata":{"finalizers":null}}' >/dev/null 2>&1
  done
  kubectl delete namespace "$NS" --wait=false >/dev/null 2>&1
  if [[ -n "${E2E_KEEP:-}" ]]; then echo "e2e: kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

kubectl create namespace "$NS" >/dev/null
echo "e2e: namespace $NS"

# The fake GitHub: first line its API URL, second its control URL.
"$FAKE_BIN" >"$WORK/fake.out" 2>"$WORK/fake.err" &
echo $! >"$WORK/fake.pid"
for _ in $(seq 1 100); do [[ $(wc -l <"$WORK/fake.out") -ge 2 ]] && break; sleep 0.1; done
FAKE="$(sed -n 1p "$WORK/fake.out")"
CTL="$(sed -n 2p "$WORK/fake.out")"
echo "e2e: fake GitHub at $FAKE (control $CTL)"

echo "e2e-token" >"$WORK/token"
echo "e2e webhook secret" >"$WORK/webhook-secret"
cat >"$WORK/config.yaml" <<'YAML'
defaults:
  checkPoll: 2s
policies:
- repositories: ["acme/shipping"]
  environments: [production]
  pauseOnFailure: true
YAML
# A fixed port for the operator's webhook receiver (SIGKILL and restart keep it).
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

# Starts the operator in the background, appending to operator.log.
start_operator() {
  "$TOLLGATE" run --namespace "$NS" --github-api-url "$FAKE" \
    --github-token-file "$WORK/token" --config "$WORK/config.yaml" \
    --webhook-secret-file "$WORK/webhook-secret" \
    --listen "127.0.0.1:$PORT" --github-timeout 30s --pod-name e2e-operator \
    --metrics-listen "127.0.0.1:$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')" \
    >>"$WORK/operator.log" 2>&1 &
  echo $! >"$WORK/operator.pid"
  disown # a SIGKILL on purpose is not news
}

# ---- helpers (used inside scenarios, which run with set -e) -----------------

k() { kubectl -n "$NS" "$@"; }
# The fake's request log as JSON.
ghlog() { curl -fsS "$CTL/_log"; }
# Review POSTs carrying a state for a run, as "state status" lines.
reviews() {
  ghlog | jq -r --arg run "$1" '.[] | select(.method == "POST" and (.path | endswith("/actions/runs/\($run)/deployment_protection_rule")) and (.body.state != null)) | "\(.body.state) \(.status) \(.body.environment_name)"'
}
# Fails the scenario with a message.
fail() { echo "    $*" >&2; return 1; }
# expect_eq WHAT GOT WANT
expect_eq() { [[ "$2" == "$3" ]] || fail "$1: got '$2', want '$3'"; }
# expect_in WHAT TEXT NEEDLE
expect_in() { [[ "$2" == *"$3"* ]] || fail "$1: '$3' not in: $2"; }
# until_true SECONDS CMD...: polls CMD every 0.1 s.
until_true() {
  local end=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < end)) || fail "timed out waiting for: $*"
    sleep 0.1
  done
}
jp() { k get "$1" -o jsonpath="$2"; }
phase_is() { [[ "$(jp "dg/$1" '{.status.phase}')" == "$2" ]]; }
sha_of() { printf '%s' "$1" | sha1sum | cut -c1-40; }

# gate NAME REPO RUN_ID SHA [extra spec lines...]
gate() {
  local name=$1 repo=$2 run=$3 sha=$4; shift 4
  {
    cat <<YAML
apiVersion: tollgate.dev/v1alpha1
kind: DeploymentGate
metadata:
  name: $name
spec:
  repository: $repo
  environment: production
  sha: $sha
  runId: $run
YAML
    for line in "$@"; do echo "  $line"; done
  }
}

PASSED=0
FAILED=0
# scenario NAME FUNCTION: runs FUNCTION in a subshell with set -e.
scenario() {
  local name=$1 fn=$2 rc
  echo "--- $name"
  set +e
  (set -euo pipefail; "$fn")
  rc=$?
  set -e
  if ((rc == 0)); then
    PASSED=$((PASSED + 1)); echo "ok   $name"
  else
    FAILED=$((FAILED + 1)); echo "FAIL $name"
  fi
}

# ---- scenarios ---------------------------------------------------------------

crds_install() {
  "$TOLLGATE" crd | kubectl apply --server-side --force-conflicts --field-manager=tollgate-e2e -f -
  kubectl wait --for=condition=Established --timeout=60s \
    crd/deploymentgates.tollgate.dev crd/releasepauses.tollgate.dev
  # The API discovery catches up a moment after Established.
  until_true 30 k get dg
  until_true 30 k get rp
}

bad_gates_refused() {
  local good out
  good=$(sha_of bad)
  # refused NAME FIELD-TEXT MANIFEST: apply must fail naming the field.
  refused() {
    if out=$(echo "$3" | k apply -f - 2>&1); then fail "$1 was accepted: $out"; fi
    echo "    $1: $out"
    expect_in "$1 message" "$out" "$2"
    if k get dg "$1" >/dev/null 2>&1; then fail "$1 exists after a refused apply"; fi
  }
  refused bad-sha "spec.sha" "$(gate bad-sha acme/web 1 9fceb02)"
  refused bad-both "spec.deadline or spec.timeout" \
    "$(gate bad-both acme/web 1 "$good" "deadline: \"2030-01-01T00:00:00Z\"" "timeout: 2h")"
  refused bad-repo "spec.repository" "$(gate bad-repo 'not a repository' 1 "$good")"
}

happy_path() {
  local sha; sha=$(sha_of happy)
  curl -fsS -X POST "$CTL/_check?sha=$sha&name=ci/test&conclusion=success"
  gate happy acme/web 1001 "$sha" "timeout: 2h" "requiredChecks: [ci/test]" | k apply -f -
  k wait --for=condition=Delivered dg/happy --timeout=60s
  k get dg happy | tee "$WORK/happy.table"
  expect_eq phase "$(jp dg/happy '{.status.phase}')" Approved
  expect_eq delivery "$(jp dg/happy '{.status.delivery.state}')" Delivered
  grep -qE '^NAME +REPOSITORY +ENVIRONMENT +SHA +PHASE +DELIVERY +REASON +DEADLINE +AGE' "$WORK/happy.table" ||
    fail "unexpected header: $(head -1 "$WORK/happy.table")"
  grep -qE "^happy +acme/web +production +${sha:0:7} +Approved +Delivered " "$WORK/happy.table" ||
    fail "the row does not read Approved/Delivered: $(tail -1 "$WORK/happy.table")"
  expect_eq "GitHub reviews for run 1001" "$(reviews 1001)" "approved 204 production"
}

check_failing_rejects() {
  local sha; sha=$(sha_of failing)
  curl -fsS -X POST "$CTL/_check?sha=$sha&name=ci/test&conclusion=failure"
  gate failing acme/web 1002 "$sha" "timeout: 2h" "requiredChecks: [ci/test]" | k apply -f -
  k wait --for=condition=Delivered dg/failing --timeout=60s
  k get dg failing
  expect_eq phase "$(jp dg/failing '{.status.phase}')" Rejected
  expect_in reason "$(jp dg/failing '{.status.decision.reason}')" "ci/test"
  expect_eq "GitHub reviews for run 1002" "$(reviews 1002)" "rejected 204 production"
}

PAUSE_SHA=$(sha_of red-main)
pause_yaml() {
  cat <<YAML
apiVersion: tollgate.dev/v1alpha1
kind: ReleasePause
metadata:
  name: red-main
spec:
  scope:
    repositories: ["acme/paused"]
  reason: ci-failed
  sha: $PAUSE_SHA
  message: main is red
YAML
}

pause_holds_then_resume_releases() {
  local sha resumed decided
  sha=$(sha_of paused)
  pause_yaml | k apply -f -
  until_true 30 eval '[[ "$(jp rp/red-main "{.status.state}")" == Active ]]'
  gate held acme/paused 1003 "$sha" "timeout: 2h" | k apply -f -
  until_true 30 phase_is held Waiting
  k wait --for=condition=Blocked dg/held --timeout=10s
  sleep 3 # the hold must last: nothing decided, nothing answered
  expect_eq "phase while paused" "$(jp dg/held '{.status.phase}')" Waiting
  expect_eq "GitHub reviews while paused" "$(reviews 1003)" ""
  k get dg held
  k get rp red-main
  resumed=$(date -u +%Y-%m-%dT%H:%M:%S.%NZ)
  k patch rp red-main --type=merge \
    -p "{\"spec\":{\"resume\":{\"sha\":\"$PAUSE_SHA\",\"reason\":\"ci-failed\"}}}"
  k wait --for=condition=Delivered dg/held --timeout=30s
  expect_eq phase "$(jp dg/held '{.status.phase}')" Approved
  expect_eq "GitHub reviews for run 1003" "$(reviews 1003)" "approved 204 production"
  decided=$(jp dg/held '{.status.decision.decidedAt}')
  python3 - "$resumed" "$decided" <<'PY' | tee "$WORK/resume.measure"
import sys, datetime
def t(s):
    s = s.rstrip("Z")
    if "." in s:
        a, b = s.split(".")
        s = a + "." + (b + "000000")[:6]
    else:
        s += ".000000"
    return datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%f")
d = (t(sys.argv[2]) - t(sys.argv[1])).total_seconds()
print(f"    measurement: resume patched at {sys.argv[1]}, decision.decidedAt {sys.argv[2]}: {d:.3f} s after the resume")
PY
}

restated_pause_does_not_hold() {
  local sha; sha=$(sha_of restated)
  # Another writer restates the same failure, dropping spec.resume.
  k patch rp red-main --type=json -p '[{"op":"remove","path":"/spec/resume"},{"op":"replace","path":"/spec/message","value":"main is red (restated)"}]'
  pause_yaml | k apply -f -
  until_true 30 eval '[[ "$(jp rp/red-main "{.status.observedGeneration}")" == "$(jp rp/red-main "{.metadata.generation}")" ]]'
  expect_eq "pause state after restating" "$(jp rp/red-main '{.status.state}')" Resumed
  gate after-resume acme/paused 1004 "$sha" "timeout: 2h" | k apply -f -
  k wait --for=condition=Delivered dg/after-resume --timeout=30s
  expect_eq phase "$(jp dg/after-resume '{.status.phase}')" Approved
  expect_eq "GitHub reviews for run 1004" "$(reviews 1004)" "approved 204 production"
  k get rp red-main
}

deadline_applies_on_deadline() {
  local sha; sha=$(sha_of deadline)
  # ci/slow never reports, so only the deadline can decide; it fails open.
  gate late acme/web 1005 "$sha" "timeout: 4s" "onDeadline: Approve" "requiredChecks: [ci/slow]" | k apply -f -
  k wait --for=condition=Delivered dg/late --timeout=60s
  k get dg late
  expect_eq phase "$(jp dg/late '{.status.phase}')" Approved
  expect_eq source "$(jp dg/late '{.status.decision.source}')" Deadline
  expect_eq "GitHub reviews for run 1005" "$(reviews 1005)" "approved 204 production"
  expect_in reason "$(jp dg/late '{.status.decision.reason}')" "ci/slow"
}

delete_rejects_first() {
  local sha; sha=$(sha_of deleted)
  gate doomed acme/web 1006 "$sha" "timeout: 2h" "requiredChecks: [ci/slow]" | k apply -f -
  until_true 30 phase_is doomed Waiting
  expect_eq "GitHub reviews before delete" "$(reviews 1006)" ""
  k delete dg doomed --wait=true --timeout=30s
  if k get dg doomed >/dev/null 2>&1; then fail "dg/doomed still exists"; fi
  expect_eq "GitHub reviews for run 1006" "$(reviews 1006)" "rejected 204 production"
}

killed_between_decision_and_delivery() {
  local sha old; sha=$(sha_of killed)
  # The fake never answers the next review: the operator has decided and is sending.
  curl -fsS -X POST "$CTL/_hang?route=review"
  gate killed acme/web 1007 "$sha" "timeout: 2h" | k apply -f -
  until_true 30 eval '[[ "$(reviews 1007)" == "approved 599 production" ]]'
  expect_eq "decision before the kill" "$(jp dg/killed '{.status.decision.verdict}')" Approve
  [[ "$(jp dg/killed '{.status.delivery.state}')" != Delivered ]] || fail "delivered before the kill"
  old=$(cat "$WORK/operator.pid")
  kill -KILL "$old"
  echo "    killed operator $old (SIGKILL) with the answer in flight; restarting"
  start_operator
  k wait --for=condition=Delivered dg/killed --timeout=60s
  k get dg killed
  expect_eq phase "$(jp dg/killed '{.status.phase}')" Approved
  # One hung attempt that never took effect, then exactly one accepted answer.
  expect_eq "accepted GitHub answers for run 1007" "$(reviews 1007 | grep -c ' 204 ')" 1
  echo "    review attempts for run 1007: $(reviews 1007 | tr '\n' ';')"
}

# deploy_status DEPLOYMENT_ID SHA STATE: posts a signed `deployment_status`
# delivery shaped like GitHub's to the operator's receiver; prints the HTTP code.
deploy_status() {
  python3 - "$1" "$2" "$3" "$WORK/webhook-secret" "http://127.0.0.1:$PORT/webhook" <<'PY'
import hashlib, hmac, json, sys, urllib.error, urllib.request
dep, sha, state, secret_file, url = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
secret = open(secret_file).read().strip().encode()
api, repo = "https://api.github.com", "acme/shipping"
body = json.dumps({
    "action": "created",
    "deployment_status": {
        "id": dep * 10, "state": state, "environment": "production", "description": "",
        "url": f"{api}/repos/{repo}/deployments/{dep}/statuses/{dep * 10}",
        "target_url": f"https://github.com/{repo}/actions/runs/77/job/1",
        "log_url": f"https://github.com/{repo}/actions/runs/77/job/1",
        "environment_url": "https://shipping.example.com" if state == "success" else "",
        "created_at": "2026-12-01T10:05:00Z", "updated_at": "2026-12-01T10:05:00Z",
        "creator": {"login": "github-actions[bot]", "id": 41898282, "type": "Bot"},
    },
    "deployment": {
        "id": dep, "sha": sha, "ref": "main", "task": "deploy", "environment": "production",
        "original_environment": "production", "payload": {}, "production_environment": True,
        "url": f"{api}/repos/{repo}/deployments/{dep}",
        "created_at": "2026-12-01T10:00:00Z", "updated_at": "2026-12-01T10:05:00Z",
        "creator": {"login": "github-actions[bot]", "id": 41898282, "type": "Bot"},
    },
    "repository": {"id": 1296269, "name": "shipping", "full_name": repo, "private": True,
                   "owner": {"login": "acme", "id": 9919, "type": "Organization"}},
    "installation": {"id": 41234567},
    "sender": {"login": "octocat", "id": 1, "type": "User"},
}).encode()
sig = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
req = urllib.request.Request(url, data=body, method="POST", headers={
    "content-type": "application/json", "x-github-event": "deployment_status",
    "x-github-delivery": f"e2e-{dep}-{state}", "x-hub-signature-256": sig})
try:
    with urllib.request.urlopen(req, timeout=30) as res:
        print(res.status)
except urllib.error.HTTPError as e:
    print(e.code, e.read().decode(errors="replace"))
PY
}

failed_deploy_pauses() {
  local sha sha2 pause before after out
  sha=$(sha_of "shipped-$NS") sha2=$(sha_of "fixed-$NS")
  pause=deploy-failed-acme-shipping-production
  gate shipped acme/shipping 1101 "$sha" "timeout: 2h" "deploymentId: 5101" | k apply -f -
  k wait --for=condition=Delivered dg/shipped --timeout=60s
  expect_eq phase "$(jp dg/shipped '{.status.phase}')" Approved
  before=$(jp dg/shipped '{.status.decision}{"\n"}{.status.delivery}')

  expect_eq "receiver answer to in_progress" "$(deploy_status 5101 "$sha" in_progress)" 200
  until_true 30 eval '[[ "$(jp dg/shipped "{.status.deployment.state}")" == Deploying ]]'
  expect_eq "receiver answer to failure" "$(deploy_status 5101 "$sha" failure)" 200
  until_true 30 eval '[[ "$(jp dg/shipped "{.status.deployment.state}")" == Failed ]]'
  # A late, out-of-order in_progress never moves a Failed deployment back.
  expect_eq "receiver answer to a late in_progress" "$(deploy_status 5101 "$sha" in_progress)" 200
  out=$(k get dg shipped -o wide)
  echo "$out"
  grep -qE "^shipped +acme/shipping .* Failed( |$)" <<<"$out" || fail "the DEPLOY column does not read Failed"
  expect_eq "deployment state after the late in_progress" "$(jp dg/shipped '{.status.deployment.state}')" Failed
  after=$(jp dg/shipped '{.status.decision}{"\n"}{.status.delivery}')
  expect_eq "decision and delivery after the deployment failed" "$after" "$before"
  expect_in "gate Events" "$(k get events --field-selector involvedObject.name=shipped -o jsonpath='{.items[*].reason}')" DeployFailed

  # The failure paused the next deploys of that repository and environment.
  until_true 30 eval '[[ "$(jp rp/$pause "{.status.state}")" == Active ]]'
  k get rp "$pause"
  expect_eq "pause reason" "$(jp "rp/$pause" '{.spec.reason}')" deploy-failed
  expect_eq "pause sha" "$(jp "rp/$pause" '{.spec.sha}')" "$sha"
  gate next-deploy acme/shipping 1102 "$sha2" "timeout: 2h" | k apply -f -
  until_true 30 phase_is next-deploy Waiting
  k wait --for=condition=Blocked dg/next-deploy --timeout=10s
  sleep 2
  expect_eq "GitHub reviews while the failed deploy holds" "$(reviews 1102)" ""

  # Someone looked: the resume releases the held gate.
  k patch rp "$pause" --type=merge -p "{\"spec\":{\"resume\":{\"sha\":\"$sha\",\"reason\":\"deploy-failed\"}}}"
  k wait --for=condition=Delivered dg/next-deploy --timeout=30s
  expect_eq "phase after the resume" "$(jp dg/next-deploy '{.status.phase}')" Approved
  expect_eq "GitHub reviews for run 1102" "$(reviews 1102)" "approved 204 production"

  # A replay of the same failure does not pause again.
  expect_eq "receiver answer to a replayed failure" "$(deploy_status 5101 "$sha" failure)" 200
  sleep 1
  expect_eq "pause after the replay" "$(jp "rp/$pause" '{.status.state}')" Resumed
  gate after-replay acme/shipping 1103 "$sha2" "timeout: 2h" | k apply -f -
  k wait --for=condition=Delivered dg/after-replay --timeout=30s
  expect_eq "phase after the replay" "$(jp dg/after-replay '{.status.phase}')" Approved
  k get dg -o wide
}

columns() {
  local out
  out=$(k get dg,rp)
  echo "$out"
  expect_in "dg header" "$out" "NAME"
  for col in REPOSITORY ENVIRONMENT SHA PHASE DELIVERY REASON DEADLINE AGE; do
    grep -E "^NAME +REPOSITORY" <<<"$out" | grep -qw "$col" || fail "dg column $col missing"
  done
  for col in SCOPE STATE REASON SHA HELD AGE; do
    grep -E "^NAME +SCOPE" <<<"$out" | grep -qw "$col" || fail "rp column $col missing"
  done
  expect_in "dg row" "$out" "deploymentgate.tollgate.dev/happy"
  expect_in "rp row" "$out" "releasepause.tollgate.dev/red-main"
  out=$(k get tollgate)
  echo "$out"
  expect_in "tollgate category: gates" "$out" "deploymentgate.tollgate.dev/happy"
  expect_in "tollgate category: pauses" "$out" "releasepause.tollgate.dev/red-main"
}

chart_dry_run() {
  local helm rendered
  helm="$PWD/target/ci-tools/bin/helm"
  [[ -x "$helm" ]] || bash .ci/tools.sh >/dev/null
  rendered="$WORK/chart.yaml"
  "$helm" template tollgate charts/tollgate --namespace "$NS" --include-crds >"$rendered"
  # Objects whose API this server does not serve (e.g. ServiceMonitor without the
  # Prometheus operator) cannot be dry-run here: skip them, and say so.
  python3 - "$rendered" "$WORK/chart-served.yaml" <<'PY'
import json, subprocess, sys
src, dst = sys.argv[1], sys.argv[2]
kinds = {}
def served(api, kind):
    if api not in kinds:
        path = "/api/v1" if api == "v1" else "/apis/" + api
        out = subprocess.run(["kubectl", "get", "--raw", path], capture_output=True, text=True)
        kinds[api] = {r["kind"] for r in json.loads(out.stdout)["resources"]} if out.returncode == 0 else set()
    return kind in kinds[api]
kept, skipped = [], []
for doc in open(src).read().split("\n---"):
    field = lambda f: next((l.split(":", 1)[1].strip() for l in doc.splitlines() if l.startswith(f + ":")), None)
    kind, api = field("kind"), field("apiVersion")
    if not kind or not api:
        continue
    if served(api, kind):
        kept.append(doc)
    else:
        skipped.append(f"{kind} ({api})")
open(dst, "w").write("\n---".join(kept) + "\n")
print(f"    chart: {len(kept)} objects to dry-run", file=sys.stderr)
for s in skipped:
    print(f"    chart: skipped {s}: its API is not served by this API server", file=sys.stderr)
PY
  k apply --dry-run=server --server-side --force-conflicts --field-manager=tollgate-e2e \
    -f "$WORK/chart-served.yaml"
}

# ---- run ---------------------------------------------------------------------

scenario "CRDs install and become Established" crds_install
start_operator
echo "e2e: operator pid $(cat "$WORK/operator.pid"), log $WORK/operator.log"
scenario "a bad gate is refused naming the field" bad_gates_refused
scenario "happy path: approved and delivered" happy_path
scenario "a failing required check rejects" check_failing_rejects
scenario "a pause holds a gate; the resume releases it at once" pause_holds_then_resume_releases
scenario "the same pause restated after the resume does not hold again" restated_pause_does_not_hold
scenario "the deadline applies onDeadline" deadline_applies_on_deadline
scenario "deleting an undecided gate delivers a reject first" delete_rejects_first
scenario "SIGKILL between decision and delivery: exactly one callback" killed_between_decision_and_delivery
scenario "a failed deploy pauses the next ones until resumed" failed_deploy_pauses
scenario "kubectl get dg,rp and get tollgate show the documented columns" columns
scenario "the chart's objects pass a server-side dry run" chart_dry_run

if ((FAILED > 0)); then
  echo "e2e: operator log (last 40 lines):"
  tail -n 40 "$WORK/operator.log" | sed 's/^/    /'
fi
echo "e2e: $PASSED passed, $FAILED failed"
((FAILED == 0))
