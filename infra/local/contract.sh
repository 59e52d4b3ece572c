#!/usr/bin/env bash
# `make contract`: schemathesis against the service as `make run` serves it (local auth mode, the local
# gateway's one base URL), on ports of its own so it can run beside `make run`. Prints schemathesis'
# summary; exits non-zero on any failure or error.
#   CONTRACT_PORT (9010; the gateway on +1), CONTRACT_DOCUMENTDB_PORT (10264), DB (as for make run),
#   CONTRACT_EXAMPLES (examples per operation and phase, 50), CONTRACT_SEED (fixed: a CI run is repeatable),
#   CONTRACT_MAX_TIME (seconds for the whole run, 180).
set -euo pipefail
cd "$(dirname "$0")/../.."

PORT=${CONTRACT_PORT:-9010}
PY=.venv/bin/python
log=$(mktemp)
stack=""
stop() {
  trap - EXIT INT TERM
  if [ -n "$stack" ]; then
    kill -TERM "$stack" 2>/dev/null || true
    wait "$stack" 2>/dev/null || true
  fi
  rm -f "$log"
}
trap stop EXIT INT TERM

echo "starting the service as make run does (log: kept on failure)…"
# --ignore-changes: an edit in the tree during a run must not restart the functions under the fuzzer.
PORT=$PORT API_PORT=$((PORT + 1)) DOCUMENTDB_PORT=${CONTRACT_DOCUMENTDB_PORT:-10264} WATCH_ARGS=--ignore-changes \
  bash infra/local/run.sh >"$log" 2>&1 &
stack=$!
api=""
for _ in $(seq 1 600); do
  api=$(sed -n 's/^API: //p' "$log")
  [ -n "$api" ] && break
  if ! kill -0 "$stack" 2>/dev/null; then
    cat "$log"
    echo "make run stopped before serving" >&2
    exit 1
  fi
  sleep 1
done
[ -n "$api" ] || { cat "$log"; echo "no API after 10 minutes" >&2; exit 1; }
grep '^MongoDB: ' "$log" || true
echo "API: $api"

# Every route (and both sweeper tasks) answering as the README specifies, with the local auth headers.
if ! "$PY" infra/local/tour.py run "$api" --functions-port "$PORT"; then
  echo "--- the service's log (tail) ---"
  tail -50 "$log"
  exit 1
fi

status=0
(
  cd api/contract
  SCHEMATHESIS_HOOKS=identities schemathesis run ../openapi.json --url "$api" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance,negative_data_rejection \
    --phases examples,coverage,fuzzing,stateful --mode all \
    --max-examples "${CONTRACT_EXAMPLES:-50}" --seed "${CONTRACT_SEED:-16}" --max-time "${CONTRACT_MAX_TIME:-180}" \
    --workers 1 --request-timeout 30 --suppress-health-check too_slow
) || status=$?
if [ "$status" -ne 0 ]; then
  echo "--- the service's log (tail) ---"
  tail -50 "$log"
fi
exit "$status"
