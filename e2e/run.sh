#!/usr/bin/env bash
# The end-to-end suite against the cluster KUBECONFIG names. Without one it says
# so and exits 0; it never pretends to have passed.
#
# It installs (server-side applies) the CRDs, works only in namespaces of its
# own (tollgate-e2e-NNNNN, the operator's, and its -a, -b and -x neighbours: two
# teams and one namespace no tenancy rule names; all deleted at the end), runs
# the operator binary on this machine against the kubeconfig and a fake GitHub
# on 127.0.0.1 (the fake of tests/support, as examples/fake_github.rs), and
# asserts each scenario through kubectl output and the fake's request log.
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
# $NS is the operator's namespace and may gate anything; team a and team b may
# gate only their own repository; no tenancy rule names $NS-x.
# $NS-d holds the leader-electing second operator of the doctor scenario.
NAMESPACES=("$NS" "$NS-a" "$NS-b" "$NS-x" "$NS-d")
WORK="$(mktemp -d)"

cleanup() {
  set +e
  local ns dg deletes=()
  # Gates carry a finalizer that the operator removes after answering GitHub:
  # delete them while it still runs (all namespaces at once, so the wait stays
  # 30 s), then stop it and the fake, then the namespaces.
  for ns in "${NAMESPACES[@]}"; do
    kubectl -n "$ns" delete dg,rp --all --wait=true --timeout=30s >/dev/null 2>&1 &
    deletes+=($!)
  done
  wait "${deletes[@]}"
  [[ -f "$WORK/operator.pid" ]] && kill "$(cat "$WORK/operator.pid")" 2>/dev/null
  [[ -f "$WORK/fake.pid" ]] && kill "$(cat "$WORK/fake.pid")" 2>/dev/null
  [[ -f "$WORK/leader.pid" ]] && kill "$(cat "$WORK/leader.pid")" 2>/dev/null
  [[ -f "$WORK/prometheus.pid" ]] && kill "$(cat "$WORK/prometheus.pid")" 2>/dev/null
  [[ -f "$WORK/exporter.pid" ]] && kill "$(cat "$WORK/exporter.pid")" 2>/dev/null
  for ns in "${NAMESPACES[@]}"; do
    for dg in $(kubectl -n "$ns" get dg -o name 2>/dev/null); do
      kubectl -n "$ns" patch "$dg" --type=merge -p '{"metadata":{"finalizers":null}}' >/dev/null 2>&1
    done
    kubectl delete namespace "$ns" --wait=false >/dev/null 2>&1
  done
  if [[ -n "${E2E_KEEP:-}" ]]; then echo "e2e: kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

for ns in "${NAMESPACES[@]}"; do kubectl create namespace "$ns" >/dev/null; done
echo "e2e: namespaces ${NAMESPACES[*]}"

# The fake GitHub: first line its API URL, second its control URL.
"$FAKE_BIN" >"$WORK/fake.out" 2>"$WORK/fake.err" &
echo $! >"$WORK/fake.pid"
for _ in $(seq 1 100); do [[ $(wc -l <"$WORK/fake.out") -ge 2 ]] && break; sleep 0.1; done
FAKE="$(sed -n 1p "$WORK/fake.out")"
CTL="$(sed -n 2p "$WORK/fake.out")"
echo "e2e: fake GitHub at $FAKE (control $CTL)"

echo "e2e-token" >"$WORK/token"
echo "e2e webhook secret" >"$WORK/webhook-secret"
# Tenancy is closed by default: the rules say which namespace may gate what.
cat >"$WORK/config.yaml" <<YAML
defaults:
  namespace: $NS
  checkPoll: 2s
policies:
- repositories: ["acme/shipping"]
  environments: [production]
  pauseOnFailure: true
- repositories: ["acme/failopen"]
  onDeadline: Approve
tenancy:
- namespace: $NS
  repositories: ["*"]
- namespace: $NS-a
  repositories: ["acme/team-a"]
- namespace: $NS-b
  repositories: ["acme/team-b"]
YAML
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# Fixed ports for the operator's webhook receiver and metrics (SIGKILL and
# restart keep them, so Prometheus keeps scraping the same target).
PORT=$(free_port)
METRICS_PORT=$(free_port)

# One real Prometheus (from PATH; CI: target/ci-tools/bin) scrapes, every
# second, the operator's /metrics (for the dashboard scenario) and an exporter
# that serves e2e_error_ratio from a file the analysis scenario rewrites.
# Without the binary those two scenarios are skipped (and fail under CI).
PROMETHEUS="$(command -v prometheus || true)"
PROM_PORT=$(free_port)
PROM_URL=""
EXPORTER_PORT=""
if [[ -n "$PROMETHEUS" ]]; then
  echo 0.004 >"$WORK/exporter.value"
  python3 - "$WORK/exporter.value" >"$WORK/exporter.out" 2>"$WORK/exporter.err" <<'PY' &
import http.server, sys
path = sys.argv[1]
class Metrics(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        value = open(path).read().strip()
        body = f"# TYPE e2e_error_ratio gauge\ne2e_error_ratio {value}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", 0), Metrics)
print(server.server_address[1], flush=True)
server.serve_forever()
PY
  echo $! >"$WORK/exporter.pid"
  for _ in $(seq 1 100); do [[ -s "$WORK/exporter.out" ]] && break; sleep 0.1; done
  EXPORTER_PORT="$(cat "$WORK/exporter.out")"
  PROM_URL="http://127.0.0.1:$PROM_PORT"
  printf 'prometheus:\n  url: %s\n  timeout: 5s\n' "$PROM_URL" >>"$WORK/config.yaml"
fi

# Starts the operator in the background, appending to operator.log.
start_operator() {
  "$TOLLGATE" run --namespace "$NS" --github-api-url "$FAKE" \
    --namespace "$NS-a" --namespace "$NS-b" --namespace "$NS-x" \
    --operator-namespace "$NS" \
    --github-token-file "$WORK/token" --config "$WORK/config.yaml" \
    --webhook-secret-file "$WORK/webhook-secret" \
    --listen "127.0.0.1:$PORT" --github-timeout 30s --pod-name e2e-operator \
    --metrics-listen "127.0.0.1:$METRICS_PORT" \
    >>"$WORK/operator.log" 2>&1 &
  echo $! >"$WORK/operator.pid"
  disown # a SIGKILL on purpose is not news
}

# Starts a real Prometheus scraping the operator's /metrics every second, from
# before the first gate, so every counter's increases are seen. Without the
# binary (`bash .ci/tools.sh` unpacks Debian's) the dashboard scenario fails in
# CI and is skipped elsewhere.
start_prometheus() {
  [[ -n "$PROMETHEUS" ]] || return 0
  mkdir -p "$WORK/prometheus"
  cat >"$WORK/prometheus.yml" <<YAML
global: {scrape_interval: 1s, evaluation_interval: 1s}
scrape_configs:
- job_name: tollgate-e2e
  static_configs: [{targets: ["127.0.0.1:$METRICS_PORT"]}]
- job_name: e2e
  static_configs: [{targets: ["127.0.0.1:$EXPORTER_PORT"]}]
YAML
  "$PROMETHEUS" --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/prometheus" \
    --web.listen-address="127.0.0.1:$PROM_PORT" >"$WORK/prometheus.log" 2>&1 &
  echo $! >"$WORK/prometheus.pid"
  PROM_START=$(date +%s)
  local i
  for i in $(seq 1 100); do curl -fsS "http://127.0.0.1:$PROM_PORT/-/ready" >/dev/null 2>&1 && break; sleep 0.1; done
  echo "e2e: prometheus at http://127.0.0.1:$PROM_PORT scraping 127.0.0.1:$METRICS_PORT"
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

# gate NAME REPO RUN_ID SHA [extra spec lines...]: the manifest on stdout; the
# fake's run RUN_ID reports SHA as its head commit (Tollgate answers only for it).
gate() {
  local name=$1 repo=$2 run=$3 sha=$4; shift 4
  curl -fsS -X POST "$CTL/_run?run=$run&head=$sha" >/dev/null
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

# k and jp in another of the suite's namespaces: kn NS ARGS..., jpn NS OBJECT JSONPATH.
kn() { local ns=$1; shift; kubectl -n "$ns" "$@"; }
jpn() { kubectl -n "$1" get "$2" -o jsonpath="$3"; }
# condition_is NS OBJECT TYPE STATUS
condition_is() { [[ "$(jpn "$1" "$2" "{.status.conditions[?(@.type==\"$3\")].status}")" == "$4" ]]; }
# gone NS OBJECT: the API server answers, and the object is not there.
gone() { local out; out=$(kubectl -n "$1" get "$2" --ignore-not-found -o name) && [[ -z "$out" ]]; }
# evaluated NS GATE: the operator has written a phase past Pending.
evaluated() { local p; p=$(jpn "$1" "dg/$2" '{.status.phase}') && [[ -n "$p" && "$p" != Pending ]]; }
# pause_seen NS PAUSE: the operator has written status for the pause's current spec.
pause_seen() {
  local seen; seen=$(jpn "$1" "rp/$2" '{.status.observedGeneration}') &&
    [[ -n "$seen" && "$seen" == "$(jpn "$1" "rp/$2" '{.metadata.generation}')" ]]
}
# held_by NS GATE: the pauses holding the gate, sorted, on one line.
held_by() {
  jpn "$1" "dg/$2" '{range .status.blockers[?(@.kind=="Pause")]}{.name}{"\n"}{end}' | LC_ALL=C sort | paste -sd' ' -
}
# requests_naming RUN SHA REPO: every request to the fake about that run, sha or
# repository, as "METHOD PATH STATUS [STATE]" lines.
requests_naming() {
  ghlog | jq -r --arg run "$1" --arg sha "$2" --arg repo "$3" '.[]
    | select((.path | test("/runs/\($run)([/?]|$)")) or (.path | contains($sha)) or (.path | contains("/repos/\($repo)/")))
    | "\(.method) \(.path) \(.status) \(.body.state? // "")" | rtrimstr(" ")'
}
# requests_carrying RUN TEXT: requests about the run whose body holds TEXT.
requests_carrying() {
  ghlog | jq -r --arg run "$1" --arg text "$2" '.[]
    | select((.path | test("/runs/\($run)([/?]|$)")) and ((.body // "") | tostring | contains($text)))
    | "\(.method) \(.path) \(.body | tostring)"'
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
  refused bad-interval "spec.analysis[].interval must be at least 10s" \
    "$(gate bad-interval acme/web 1 "$good" "analysis: [{name: e, query: up, max: 1, interval: 5s}]")"
  refused bad-bounds "spec.analysis[].min or spec.analysis[].max" \
    "$(gate bad-bounds acme/web 1 "$good" "analysis: [{name: e, query: up}]")"
  refused bad-for "spec.analysis[].for must not be longer than spec.timeout" \
    "$(gate bad-for acme/web 1 "$good" "timeout: 1h" "analysis: [{name: e, query: up, max: 1, for: 2h}]")"
}

happy_path() {
  local sha; sha=$(sha_of happy)
  curl -fsS -X POST "$CTL/_check?sha=$sha&name=ci/test&conclusion=success"
  gate happy acme/web 1001 "$sha" "timeout: 2h" "requiredChecks: [ci/test]" | k apply -f -
  k wait --for=condition=Delivered dg/happy --timeout=60s
  k get dg happy | tee "$WORK/happy.table"
  expect_eq phase "$(jp dg/happy '{.status.phase}')" Approved
  expect_eq delivery "$(jp dg/happy '{.status.delivery.state}')" Delivered
  grep -qE '^NAME +REPOSITORY +ENVIRONMENT +SHA +PHASE +DELIVERY +ANALYSIS +REASON +DEADLINE +AGE' "$WORK/happy.table" ||
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
# The pause of the resume scenarios; each extra round (E2E_RESUME_ROUNDS) has
# its own pause, failed commit, gates and runs.
RP=red-main HELD=held AFTER=after-resume RUN_HELD=1003 RUN_AFTER=1004
pause_yaml() {
  cat <<YAML
apiVersion: tollgate.dev/v1alpha1
kind: ReleasePause
metadata:
  name: $RP
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
  until_true 30 eval '[[ "$(jp rp/$RP "{.status.state}")" == Active ]]'
  gate "$HELD" acme/paused "$RUN_HELD" "$sha" "timeout: 2h" | k apply -f -
  until_true 30 phase_is "$HELD" Waiting
  k wait --for=condition=Blocked "dg/$HELD" --timeout=10s
  sleep 3 # the hold must last: nothing decided, nothing answered
  expect_eq "phase while paused" "$(jp "dg/$HELD" '{.status.phase}')" Waiting
  expect_eq "GitHub reviews while paused" "$(reviews "$RUN_HELD")" ""
  k get dg "$HELD"
  k get rp "$RP"
  resumed=$(date -u +%Y-%m-%dT%H:%M:%S.%NZ)
  k patch rp "$RP" --type=merge \
    -p "{\"spec\":{\"resume\":{\"sha\":\"$PAUSE_SHA\",\"reason\":\"ci-failed\"}}}"
  k wait --for=condition=Delivered "dg/$HELD" --timeout=30s
  expect_eq phase "$(jp "dg/$HELD" '{.status.phase}')" Approved
  expect_eq "GitHub reviews for run $RUN_HELD" "$(reviews "$RUN_HELD")" "approved 204 production"
  decided=$(jp "dg/$HELD" '{.status.decision.decidedAt}')
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
  k patch rp "$RP" --type=json -p '[{"op":"remove","path":"/spec/resume"},{"op":"replace","path":"/spec/message","value":"main is red (restated)"}]'
  pause_yaml | k apply -f -
  until_true 30 eval '[[ "$(jp rp/$RP "{.status.observedGeneration}")" == "$(jp rp/$RP "{.metadata.generation}")" ]]'
  expect_eq "pause state after restating" "$(jp rp/$RP '{.status.state}')" Resumed
  gate "$AFTER" acme/paused "$RUN_AFTER" "$sha" "timeout: 2h" | k apply -f -
  k wait --for=condition=Delivered "dg/$AFTER" --timeout=30s
  expect_eq phase "$(jp "dg/$AFTER" '{.status.phase}')" Approved
  expect_eq "GitHub reviews for run $RUN_AFTER" "$(reviews "$RUN_AFTER")" "approved 204 production"
  k get rp "$RP"
}

deadline_applies_on_deadline() {
  local sha; sha=$(sha_of deadline)
  # ci/slow never reports, so only the deadline can decide; it fails open
  # (the policy for acme/failopen allows that).
  gate late acme/failopen 1005 "$sha" "timeout: 4s" "onDeadline: Approve" "requiredChecks: [ci/slow]" | k apply -f -
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

# protection_rule RUN DEPLOYMENT SHA DELIVERY: posts a signed
# `deployment_protection_rule` request for acme/rerun (callback on the fake's
# API, as GitHub's would be on api.github.com); prints the HTTP code.
protection_rule() {
  python3 - "$1" "$2" "$3" "$4" "$WORK/webhook-secret" "http://127.0.0.1:$PORT/webhook" "$FAKE" <<'PY'
import hashlib, hmac, json, sys, urllib.error, urllib.request
run, dep, sha, delivery, secret_file, url, api = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6], sys.argv[7]
secret = open(secret_file).read().strip().encode()
repo = "acme/rerun"
body = json.dumps({
    "action": "requested", "environment": "production", "event": "push",
    "ref": "refs/heads/main", "sha": sha,
    "deployment_callback_url": f"{api}/repos/{repo}/actions/runs/{run}/deployment_protection_rule",
    "deployment": {
        "id": dep, "sha": sha, "ref": "main", "task": "deploy", "environment": "production",
        "original_environment": "production", "payload": {}, "production_environment": True,
        "url": f"{api}/repos/{repo}/deployments/{dep}",
        "created_at": "2026-12-01T10:00:00Z", "updated_at": "2026-12-01T10:00:00Z",
        "creator": {"login": "github-actions[bot]", "id": 41898282, "type": "Bot"},
    },
    "pull_requests": [],
    "repository": {"id": 1296270, "name": "rerun", "full_name": repo, "private": True,
                   "owner": {"login": "acme", "id": 9919, "type": "Organization"}},
    "installation": {"id": 41234567},
    "sender": {"login": "octocat", "id": 1, "type": "User"},
}).encode()
sig = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
req = urllib.request.Request(url, data=body, method="POST", headers={
    "content-type": "application/json", "x-github-event": "deployment_protection_rule",
    "x-github-delivery": delivery, "x-hub-signature-256": sig})
try:
    with urllib.request.urlopen(req, timeout=30) as res:
        print(res.status)
except urllib.error.HTTPError as e:
    print(e.code, e.read().decode(errors="replace"))
PY
}

rerun_gets_its_own_answer() {
  local sha; sha=$(sha_of "rerun-$NS")
  curl -fsS -X POST "$CTL/_run?run=1401&head=$sha" >/dev/null
  expect_eq "receiver answer to the first request" "$(protection_rule 1401 9001 "$sha" "e2e-rr-$NS-1")" 201
  k wait --for=condition=Delivered dg/acme-rerun-production-1401 --timeout=60s
  # The job is re-run: same run, a new attempt and deployment, waiting again.
  curl -fsS -X POST "$CTL/_pending?run=1401&environment=production" >/dev/null
  expect_eq "receiver answer to the re-run's request" "$(protection_rule 1401 9002 "$sha" "e2e-rr-$NS-2")" 201
  k wait --for=condition=Delivered dg/acme-rerun-production-1401-d9002 --timeout=60s
  # A redelivery of the first request changes nothing.
  expect_eq "receiver answer to a redelivery" "$(protection_rule 1401 9001 "$sha" "e2e-rr-$NS-1")" 200
  expect_eq "GitHub answers for run 1401" "$(reviews 1401)" "approved 204 production
approved 204 production"
  expect_eq "gates of run 1401" "$(k get dg -l tollgate.dev/run-id=1401 -o name | sort | tr '\n' ' ')" \
    "deploymentgate.tollgate.dev/acme-rerun-production-1401 deploymentgate.tollgate.dev/acme-rerun-production-1401-d9002 "
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

# Tenancy is decided first, on every path: a gate in a namespace no rule names,
# failing open at a deadline that passes, then deleted, never reaches GitHub.
# Were the finalizer or the deadline handled first, the deletion would send the
# deadline's approval for a run this namespace has no say over.
forbidden_gate_deleted_sends_nothing() {
  local ns="$NS-x" run=1201 repo=acme/elsewhere sha t0 fins events
  sha=$(sha_of "forbidden-$NS")
  t0=$SECONDS
  gate forbidden "$repo" "$run" "$sha" "timeout: 5s" "onDeadline: Approve" | kn "$ns" apply -f -
  until_true 30 condition_is "$ns" dg/forbidden Forbidden True
  kn "$ns" get dg forbidden
  echo "    Forbidden: $(jpn "$ns" dg/forbidden '{.status.conditions[?(@.type=="Forbidden")].message}')"
  fins=$(jpn "$ns" dg/forbidden '{.metadata.finalizers}')
  [[ "$fins" != *tollgate.dev/* ]] || fail "the forbidden gate carries a finalizer: $fins"
  # Past the 5 s deadline and a few check polls: nothing decided, nothing sent.
  sleep $((t0 + 9 > SECONDS ? t0 + 9 - SECONDS : 0))
  expect_eq "decision after the deadline" "$(jpn "$ns" dg/forbidden '{.status.decision}')" ""
  expect_eq "GitHub requests before the delete" "$(requests_naming "$run" "$sha" "$repo")" ""
  events=$(kn "$ns" get events --field-selector involvedObject.name=forbidden \
    -o jsonpath='{range .items[*]}{.reason}{"\n"}{end}')
  expect_eq "Forbidden Events on the gate" "$(grep -cx Forbidden <<<"$events" || true)" 1
  kn "$ns" delete dg forbidden --wait=false
  until_true 30 gone "$ns" dg/forbidden
  sleep 2 # a late reconcile of the deleted gate would show now
  expect_eq "GitHub requests after the delete" "$(requests_naming "$run" "$sha" "$repo")" ""
}

# any_pause NAME MESSAGE: an always-on pause of every repository.
any_pause() {
  cat <<YAML
apiVersion: tollgate.dev/v1alpha1
kind: ReleasePause
metadata:
  name: $1
spec:
  scope:
    repositories: ["*"]
  reason: freeze
  message: $2
YAML
}

# A pause holds only what its namespace may gate, and its text reaches only
# runs it holds; a pause in the operator's namespace holds every team.
pauses_keep_to_their_namespace() {
  local a="$NS-a" b="$NS-b" msg="team-b freeze $NS" rmsg="release freeze $NS"
  # They hold everything in reach: gone when this scenario ends, however it ends.
  trap 'kn "$NS-b" delete rp team-b-freeze --ignore-not-found >/dev/null 2>&1; k delete rp release-freeze --ignore-not-found >/dev/null 2>&1' EXIT
  any_pause team-b-freeze "$msg" | kn "$b" apply -f -
  until_true 30 pause_seen "$b" team-b-freeze
  gate team-a acme/team-a 1301 "$(sha_of "team-a-$NS")" "timeout: 2h" | kn "$a" apply -f -
  kn "$a" wait --for=condition=Delivered dg/team-a --timeout=30s
  expect_eq "team a's phase" "$(jpn "$a" dg/team-a '{.status.phase}')" Approved
  expect_eq "GitHub reviews for run 1301" "$(reviews 1301)" "approved 204 production"
  gate team-b acme/team-b 1302 "$(sha_of "team-b-$NS")" "timeout: 2h" | kn "$b" apply -f -
  until_true 30 evaluated "$b" team-b
  expect_eq "team b's phase" "$(jpn "$b" dg/team-b '{.status.phase}')" Waiting
  expect_eq "team b held by" "$(held_by "$b" team-b)" "$b/team-b-freeze"
  expect_eq "GitHub reviews for run 1302" "$(reviews 1302)" ""
  expect_eq "team b's pause message on team a's run" "$(requests_carrying 1301 "$msg")" ""
  until_true 30 condition_is "$b" rp/team-b-freeze ScopeRestricted True
  expect_eq "ScopeRestricted reason" \
    "$(jpn "$b" rp/team-b-freeze '{.status.conditions[?(@.type=="ScopeRestricted")].reason}')" TenancyLimitsScope
  kn "$b" get rp team-b-freeze

  any_pause release-freeze "$rmsg" | k apply -f -
  until_true 30 pause_seen "$NS" release-freeze
  ! condition_is "$NS" rp/release-freeze ScopeRestricted True ||
    fail "a pause in the operator's namespace is ScopeRestricted"
  sleep 1 # the other namespaces' watches deliver it too, not only the operator namespace's
  gate team-a-2 acme/team-a 1303 "$(sha_of "team-a-2-$NS")" "timeout: 2h" | kn "$a" apply -f -
  gate team-b-2 acme/team-b 1304 "$(sha_of "team-b-2-$NS")" "timeout: 2h" | kn "$b" apply -f -
  until_true 30 evaluated "$a" team-a-2
  until_true 30 evaluated "$b" team-b-2
  kn "$a" get dg team-a-2
  kn "$b" get dg team-b-2
  expect_eq "fresh team a gate's phase" "$(jpn "$a" dg/team-a-2 '{.status.phase}')" Waiting
  expect_eq "fresh team a gate held by" "$(held_by "$a" team-a-2)" "$NS/release-freeze"
  expect_eq "fresh team b gate's phase" "$(jpn "$b" dg/team-b-2 '{.status.phase}')" Waiting
  expect_eq "fresh team b gate held by" "$(held_by "$b" team-b-2)" "$b/team-b-freeze $NS/release-freeze"
  expect_eq "GitHub reviews for runs 1303 and 1304" "$(reviews 1303)$(reviews 1304)" ""

  # Deleting the pauses lets everything they held through.
  kn "$b" delete rp team-b-freeze --wait=true --timeout=30s
  k delete rp release-freeze --wait=true --timeout=30s
  kn "$a" wait --for=condition=Delivered dg/team-a-2 --timeout=30s
  kn "$b" wait --for=condition=Delivered dg/team-b dg/team-b-2 --timeout=30s
  expect_eq "GitHub reviews for runs 1302-1304 after the pauses went" \
    "$(reviews 1302); $(reviews 1303); $(reviews 1304)" \
    "approved 204 production; approved 204 production; approved 204 production"
}

columns() {
  local out
  out=$(k get dg,rp)
  echo "$out"
  expect_in "dg header" "$out" "NAME"
  for col in REPOSITORY ENVIRONMENT SHA PHASE DELIVERY ANALYSIS REASON DEADLINE AGE; do
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

# prom_reads VALUE: Prometheus's latest e2e_error_ratio is VALUE (scraped).
prom_reads() {
  curl -fsS "$PROM_URL/api/v1/query" --data-urlencode 'query=e2e_error_ratio' |
    jq -e --arg v "$1" '.data.result[0].value[1] == $v'
}
# event_reasons NAME: the reasons of the gate's Events, oldest first, on one line.
event_reasons() {
  k get events --field-selector "involvedObject.name=$1" --sort-by=.metadata.creationTimestamp \
    -o jsonpath='{range .items[*]}{.reason}{" "}{end}'
}

# Metric analysis against a real Prometheus: good for `for` → approved;
# `failureLimit` bad readings in a row → rejected. Real time: interval 10 s.
analysis_gates() {
  if [[ -z "$PROM_URL" ]]; then
    echo "    skipped: prometheus not found on PATH"
    return 0
  fi
  local good bad spec
  good=$(sha_of analysis-good) bad=$(sha_of analysis-bad)
  spec="- {name: staging-errors, query: e2e_error_ratio, max: 0.01, for: 10s, interval: 10s, failureLimit: 2}"
  until_true 60 prom_reads 0.004
  gate analysis-good acme/web 1501 "$good" "timeout: 2h" "analysis:" "$spec" | k apply -f -
  until_true 30 evaluated "$NS" analysis-good
  expect_eq "first reading" "$(jp dg/analysis-good '{.status.analysis[0].lastValue}')" 0.004
  k wait --for=condition=Delivered dg/analysis-good --timeout=90s
  k get dg analysis-good | tee "$WORK/analysis.table"
  grep -qE "^analysis-good +acme/web +production +${good:0:7} +Approved +Delivered +1/1 passing " "$WORK/analysis.table" ||
    fail "the row does not read Approved/Delivered/1/1 passing: $(tail -1 "$WORK/analysis.table")"
  expect_in reason "$(jp dg/analysis-good '{.status.decision.reason}')" "analysis staging-errors 0.004 ≤ 0.01 for 10s"
  expect_eq "GitHub reviews for run 1501" "$(reviews 1501)" "approved 204 production"

  echo 0.05 >"$WORK/exporter.value"
  until_true 60 prom_reads 0.05
  gate analysis-bad acme/web 1502 "$bad" "timeout: 2h" "analysis:" "$spec" | k apply -f -
  k wait --for=condition=Delivered dg/analysis-bad --timeout=90s
  expect_eq phase "$(jp dg/analysis-bad '{.status.phase}')" Rejected
  expect_eq reason "$(jp dg/analysis-bad '{.status.decision.reason}')" \
    "analysis staging-errors failed: 0.05 > 0.01 (2 of 2 failures in a row)"
  expect_eq "GitHub reviews for run 1502" "$(reviews 1502)" "rejected 204 production"
  until_true 30 bash -c "kubectl -n $NS get events --field-selector involvedObject.name=analysis-bad -o jsonpath='{.items[*].reason}' | grep -q AnalysisFailed"
  expect_in "events of analysis-bad" "$(event_reasons analysis-bad)" "AnalysisFailing"
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

# Every query of the dashboard, run as Grafana runs a panel (a range query over
# the time the suite ran, $job the scrape job, $__rate_interval 10 s at a 1 s
# scrape), returns at least one series with a number in it.
dashboard_queries_return_data() {
  if [[ -z "$PROMETHEUS" ]]; then
    [[ -z "${CI:-}" ]] || fail "prometheus not found and CI is set: bash .ci/tools.sh unpacks it into target/ci-tools/bin"
    echo "    skipped: prometheus not found (bash .ci/tools.sh unpacks Debian's into target/ci-tools/bin)"
    return 0
  fi
  # The last scrape must have happened after the last gate of the suite.
  sleep 2
  python3 - "http://127.0.0.1:$PROM_PORT" "$PROM_START" charts/tollgate/dashboards/tollgate.json <<'PY'
import json, math, sys, time, urllib.parse, urllib.request
base, start, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
dash = json.load(open(path))
def panels(ps):
    for p in ps:
        yield p
        yield from panels(p.get("panels", []))
end = int(time.time())
empty = []
for p in panels(dash["panels"]):
    for t in p.get("targets", []):
        expr = t["expr"].replace("$__rate_interval", "10s").replace("$job", "tollgate-e2e")
        q = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": 2})
        with urllib.request.urlopen(f"{base}/api/v1/query_range?{q}", timeout=30) as r:
            res = json.load(r)
        if res.get("status") != "success":
            empty.append(f"{p['title']} [{t['refId']}]: {res}")
            continue
        series = res["data"]["result"]
        numbers = sum(1 for s in series for _, v in s["values"] if not math.isnan(float(v)))
        print(f"    {p['title']} [{t['refId']}]: {len(series)} series, {numbers} values")
        if numbers == 0:
            empty.append(f"{p['title']} [{t['refId']}]: no data for {expr}")
for e in empty:
    print(f"    EMPTY {e}", file=sys.stderr)
sys.exit(1 if empty else 0)
PY
}

# A healthy install, as `tollgate doctor` sees it against the real API server.
# No controller manager runs here, so the operator's Deployment is a stand-in
# whose status the suite sets to ready; the Lease is held by a real second
# operator electing itself leader (it watches only $NS-d, its own namespace).
doctor_finds_a_healthy_install() {
  local d="$NS-d" out rc
  printf 'defaults:\n  namespace: %s\n' "$d" >"$WORK/leader-config.yaml"
  "$TOLLGATE" run --leader-elect --lease-namespace "$NS" --lease-name tollgate \
    --namespace "$d" --operator-namespace "$d" --config "$WORK/leader-config.yaml" \
    --github-api-url "$FAKE" --github-token-file "$WORK/token" --pod-name e2e-leader \
    --listen "127.0.0.1:$(free_port)" --metrics-listen "127.0.0.1:$(free_port)" \
    >>"$WORK/leader.log" 2>&1 &
  echo $! >"$WORK/leader.pid"
  until_true 60 eval '[[ "$(k get lease tollgate -o jsonpath={.spec.holderIdentity})" == e2e-leader ]]'
  k apply -f - <<YAML
apiVersion: apps/v1
kind: Deployment
metadata:
  name: tollgate
spec:
  replicas: 1
  selector: {matchLabels: {app: tollgate}}
  template:
    metadata: {labels: {app: tollgate}}
    spec:
      containers:
      - name: tollgate
        image: ghcr.io/tollgate-dev/tollgate:0.1.0
        args: [run, --leader-elect, --lease-name=tollgate]
YAML
  k patch deploy tollgate --subresource=status --type=merge \
    -p '{"status":{"replicas":1,"readyReplicas":1,"availableReplicas":1,"updatedReplicas":1}}'
  echo 1 >"$WORK/app-id"
  set +e
  out=$("$TOLLGATE" doctor -n "$NS" --config "$WORK/config.yaml" --github-api-url "$FAKE" \
    --github-app-id-file "$WORK/app-id" --github-private-key-file tests/support/test_app_key.pem \
    --webhook-secret-file "$WORK/webhook-secret")
  rc=$?
  set -e
  echo "$out" | sed 's/^/    /' | tee "$WORK/doctor.out"
  expect_eq "doctor exit code" "$rc" 0
  if grep -qv '^✓\|passed, 0 failed, 0 not checked$' <<<"$out"; then fail "not all ✓"; fi
  expect_in "doctor summary" "$out" "passed, 0 failed, 0 not checked"
  "$TOLLGATE" doctor -n "$NS" --config "$WORK/config.yaml" --github-api-url "$FAKE" \
    --github-app-id-file "$WORK/app-id" --github-private-key-file tests/support/test_app_key.pem \
    --webhook-secret-file "$WORK/webhook-secret" --output json | jq -e '.ok and all(.checks[]; .status == "pass")' >/dev/null ||
    fail "doctor --output json is not all pass"
  kill "$(cat "$WORK/leader.pid")"
}

# ---- run ---------------------------------------------------------------------

scenario "CRDs install and become Established" crds_install
start_prometheus
start_operator
echo "e2e: operator pid $(cat "$WORK/operator.pid"), log $WORK/operator.log"
scenario "a bad gate is refused naming the field" bad_gates_refused
scenario "happy path: approved and delivered" happy_path
scenario "a failing required check rejects" check_failing_rejects
scenario "metric analysis against a real Prometheus approves after for, rejects at failureLimit" analysis_gates
scenario "a pause holds a gate; the resume releases it at once" pause_holds_then_resume_releases
scenario "the same pause restated after the resume does not hold again" restated_pause_does_not_hold
scenario "the deadline applies onDeadline" deadline_applies_on_deadline
scenario "deleting an undecided gate delivers a reject first" delete_rejects_first
scenario "SIGKILL between decision and delivery: exactly one callback" killed_between_decision_and_delivery
scenario "a failed deploy pauses the next ones until resumed" failed_deploy_pauses
scenario "a re-run of an answered run gets its own gate and answer" rerun_gets_its_own_answer
scenario "a forbidden gate deleted sends nothing to GitHub" forbidden_gate_deleted_sends_nothing
scenario "a pause in another team's namespace holds nothing of ours; one in the operator's namespace holds both" pauses_keep_to_their_namespace
scenario "kubectl get dg,rp and get tollgate show the documented columns" columns
scenario "the chart's objects pass a server-side dry run" chart_dry_run
scenario "every dashboard query returns data from a real Prometheus" dashboard_queries_return_data
scenario "tollgate doctor: a healthy install is all ✓" doctor_finds_a_healthy_install

# E2E_RESUME_ROUNDS=N runs the resume and restated-pause scenarios N times in
# all (the first round above), each with its own pause, failed commit and runs.
for ((round = 2; round <= ${E2E_RESUME_ROUNDS:-1}; round++)); do
  RP="red-main-$round" HELD="held-$round" AFTER="after-resume-$round"
  RUN_HELD=$((70000 + 2 * round)) RUN_AFTER=$((70001 + 2 * round))
  PAUSE_SHA=$(sha_of "red-main-$round")
  scenario "round $round: a pause holds a gate; the resume releases it at once" pause_holds_then_resume_releases
  scenario "round $round: the same pause restated after the resume does not hold again" restated_pause_does_not_hold
done

if ((FAILED > 0)); then
  echo "e2e: operator log (last 40 lines):"
  tail -n 40 "$WORK/operator.log" | sed 's/^/    /'
fi
echo "e2e: $PASSED passed, $FAILED failed"
((FAILED == 0))
