#!/usr/bin/env bash
# Faults on a real API server, beside the e2e suite. GATES gates (default 500)
# wait for deadlines spread over a minute; meanwhile the API server and etcd are
# stopped, started again with their data kept, and then the operator is
# SIGKILLed and started again. Each round checks, from the fake GitHub's log:
# every gate answered exactly once, none before its deadline, and each within
# 60 s of the later of its deadline and the moment both were back. It also
# reports how many lines the operator logged a second during the outage.
#
#   KUBECONFIG=~/.cache/kapi/kubeconfig TOLLGATE_KAPI=~/.cache/kapi/start.sh e2e/restart.sh [ROUNDS]
#
# TOLLGATE_KAPI is the start.sh of ../shared/tools/kapi (it must accept `stop`
# and, with KAPI_KEEP_DATA=1, `start`): only a server this script may restart
# will do. Without it, or without a cluster, the script says "skipped".
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${1:-1}
GATES=${GATES:-500}
OUTAGE=${OUTAGE:-30}
if [[ -z "${KUBECONFIG:-}" || -z "${TOLLGATE_KAPI:-}" || ! -x "${TOLLGATE_KAPI}" ]] ||
  ! kubectl version --request-timeout=5s >/dev/null 2>&1; then
  echo "restart: skipped (needs KUBECONFIG and TOLLGATE_KAPI, the kapi start.sh that may restart that server)"
  exit 0
fi

echo "restart: building"
cargo build -q --bins --examples
TOLLGATE="$PWD/target/debug/tollgate"
FAKE_BIN="$PWD/target/debug/examples/fake_github"
WORK="$(mktemp -d)"
NS="tollgate-restart-$RANDOM$RANDOM"

cleanup() {
  set +e
  kubectl -n "$NS" delete dg --all --wait=true --timeout=60s >/dev/null 2>&1
  [[ -f "$WORK/operator.pid" ]] && kill -9 "$(cat "$WORK/operator.pid")" 2>/dev/null
  [[ -f "$WORK/fake.pid" ]] && kill "$(cat "$WORK/fake.pid")" 2>/dev/null
  for dg in $(kubectl -n "$NS" get dg -o name 2>/dev/null); do
    kubectl -n "$NS" patch "$dg" --type=merge -p '{"metadata":{"finalizers":null}}' >/dev/null 2>&1
  done
  kubectl delete namespace "$NS" --wait=false >/dev/null 2>&1
  if [[ -n "${E2E_KEEP:-}" ]]; then echo "restart: kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

"$TOLLGATE" crd | kubectl apply --server-side --force-conflicts --field-manager=tollgate-e2e -f - >/dev/null
kubectl wait --for=condition=Established --timeout=60s \
  crd/deploymentgates.tollgate.dev crd/releasepauses.tollgate.dev >/dev/null
kubectl create namespace "$NS" >/dev/null

"$FAKE_BIN" >"$WORK/fake.out" 2>"$WORK/fake.err" &
echo $! >"$WORK/fake.pid"
for _ in $(seq 1 100); do [[ $(wc -l <"$WORK/fake.out") -ge 2 ]] && break; sleep 0.1; done
FAKE="$(sed -n 1p "$WORK/fake.out")"
CTL="$(sed -n 2p "$WORK/fake.out")"

echo "restart-token" >"$WORK/token"
cat >"$WORK/config.yaml" <<YAML
defaults:
  namespace: $NS
  checkPoll: 10s
tenancy:
- namespace: $NS
  repositories: ["*"]
YAML
PORT() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

start_operator() {
  # The fake GitHub sets no write limit; the operator's is raised so that the
  # outage, not GitHub's pace, is what the answers wait for.
  "$TOLLGATE" run --namespace "$NS" --operator-namespace "$NS" --github-api-url "$FAKE" \
    --github-token-file "$WORK/token" --config "$WORK/config.yaml" \
    --github-writes-per-minute 6000 --github-writes-per-hour 360000 \
    --listen "127.0.0.1:$(PORT)" --metrics-listen "127.0.0.1:$(PORT)" --pod-name restart-operator \
    >>"$WORK/operator.log" 2>&1 &
  echo $! >"$WORK/operator.pid"
  disown
}

now() { date +%s.%N; }
SHA=$(printf restart | sha1sum | cut -c1-40)
FAILED=0
start_operator

for ((round = 1; round <= ROUNDS; round++)); do
  base=$((900000 + round * 10000))
  # Deadlines from 60 s after now, spread over 60 s (creation takes a while).
  first=$(($(date +%s) + 60))
  python3 - "$WORK" "$round" "$base" "$first" "$GATES" "$SHA" <<'PY'
import datetime, sys
work, rnd, base, first, gates, sha = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
with open(f"{work}/gates.yaml", "w") as y, open(f"{work}/deadlines", "w") as d:
    for i in range(gates):
        at = datetime.datetime.fromtimestamp(first + 60 * i / gates, datetime.timezone.utc)
        d.write(f"{base + i} {first} {i}\n")
        y.write(f"""---
apiVersion: tollgate.dev/v1alpha1
kind: DeploymentGate
metadata:
  name: r{rnd}-{i}
spec:
  repository: acme/restart
  environment: production
  sha: {sha}
  runId: {base + i}
  deadline: "{at.strftime('%Y-%m-%dT%H:%M:%S.%fZ')}"
  requiredChecks: [ci/never]
""")
PY
  for ((i = 0; i < GATES; i++)); do curl -fsS -X POST "$CTL/_run?run=$((base + i))&head=$SHA" >/dev/null; done
  kubectl -n "$NS" apply -f "$WORK/gates.yaml" >/dev/null
  created=$(now)
  # The outage begins 10 s into the deadlines: some are answered, most wait.
  while (($(date +%s) < first + 10)); do sleep 0.2; done
  lines_before=$(wc -l <"$WORK/operator.log")
  down=$(now)
  "$TOLLGATE_KAPI" stop >/dev/null 2>&1
  sleep "$OUTAGE"
  # Counted while both are down only: what follows is the recovery's own work.
  lines_outage=$(($(wc -l <"$WORK/operator.log") - lines_before))
  sed -n "$((lines_before + 1)),$((lines_before + lines_outage))p" "$WORK/operator.log" >"$WORK/outage-$round.log"
  KAPI_KEEP_DATA=1 "$TOLLGATE_KAPI" start >/dev/null 2>&1
  api_back=$(now)
  kill -9 "$(cat "$WORK/operator.pid")"
  start_operator
  back=$(now)
  # Wait (bounded) until every gate has an accepted answer, or 120 s after back.
  while :; do
    n=$(curl -fsS "$CTL/_log" | jq --argjson lo "$base" --argjson hi "$((base + GATES))" \
      '[.[] | select(.method == "POST" and .body.state != null and .status == 204) | (.path | capture("/runs/(?<id>[0-9]+)/").id | tonumber) | select(. >= $lo and . < $hi)] | unique | length')
    ((n >= GATES)) && break
    python3 -c "import sys; sys.exit(0 if float('$(now)') - float('$back') < 120 else 1)" || break
    sleep 1
  done
  sleep 3 # a late duplicate would show here
  curl -fsS "$CTL/_log" >"$WORK/log-$round.json"
  if ! OUTAGE=$OUTAGE python3 - "$WORK/log-$round.json" "$WORK/deadlines" "$GATES" "$created" "$down" "$api_back" "$back" "$lines_outage" "$round" <<'PY'; then
import json, os, re, sys
log, deadlines_file, gates = sys.argv[1], sys.argv[2], int(sys.argv[3])
created, down, api_back, back, lines, rnd = map(float, sys.argv[4:10])
deadline = {}
for line in open(deadlines_file):
    run, first, i = map(int, line.split())
    deadline[run] = first + 60 * i / gates
answers = {}
for r in json.load(open(log)):
    m = re.search(r"/runs/([0-9]+)/deployment_protection_rule$", r["path"])
    if r["method"] == "POST" and m and r["body"].get("state") is not None and r["status"] == 204:
        run = int(m.group(1))
        if run in deadline:
            answers.setdefault(run, []).append(r["at"])
missing = [r for r in deadline if r not in answers]
twice = [r for r, a in answers.items() if len(a) != 1]
early = [r for r, a in answers.items() if min(a) < deadline[r]]
lateness = sorted(min(a) - max(deadline[r], back) for r, a in answers.items())
late = [x for x in lateness if x > 60]
worst = lateness[-1] if lateness else float("nan")
outage = float(os.environ["OUTAGE"])
print(f"round {int(rnd)}: {len(answers)}/{gates} answered, {len(twice)} more than once, {len(early)} early, "
      f"{len(missing)} unanswered, {len(late)} over 60 s after both were back; "
      f"worst {worst:.1f} s after max(deadline, back); operator back {back - down:.1f} s after the API server went down; "
      f"API server back {api_back - down:.1f} s after it went down; "
      f"{lines:.0f} operator log lines in the {outage:.0f} s both were down ({lines / outage:.1f}/s)")
sys.exit(0 if not (missing or twice or early or late) else 1)
PY
    FAILED=$((FAILED + 1))
  fi
done

echo "restart: outage log of the last round (first 15 lines):"
head -n 15 "$WORK/outage-$ROUNDS.log" | cut -c1-240 | sed 's/^/    /'
echo "restart: $((ROUNDS - FAILED)) of $ROUNDS rounds passed"
((FAILED == 0))
