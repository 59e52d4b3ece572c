#!/usr/bin/env bash
# `make run`: the whole service on this machine.
#  1. MongoDB, printed: $MONGODB_URI if set; else DocumentDB through its launcher ($DOCUMENTDB_LAUNCHER, default
#     ../shared/documentdb/documentdb) on port $DOCUMENTDB_PORT (default 10260; PostgreSQL on the next port),
#     keeping its data between runs; else, or with DB=standin, the project's stand-in (in memory).
#     DB=documentdb insists on DocumentDB.
#  2. All four functions under `cargo lambda watch` (reloads on code changes), in AUTH_MODE=local, each under
#     its own prefix on port $PORT (/lambda-url/<function>/…).
#  3. The local API Gateway (infra/local/gateway.py) on port $API_PORT: one base URL with the production paths,
#     each route sent to its function as functions/routes.json says. Printed as `API: <url>` once all is ready.
#  4. The sweeper invoked once (creates the indexes), then a few demo users written through the API.
# Ctrl-C stops everything this script started (a DocumentDB that was already running is left running).
set -euo pipefail
cd "$(dirname "$0")/../.."

PY=.venv/bin/python
PORT=${PORT:-9000}
API_PORT=${API_PORT:-$((PORT + 1))}
STANDIN_PORT=${STANDIN_PORT:-27018}
DB=${DB:-auto}
LAUNCHER=${DOCUMENTDB_LAUNCHER:-../shared/documentdb/documentdb}
DOCDB_PORT=${DOCUMENTDB_PORT:-10260}
DATABASE=${MONGODB_DATABASE:-cache}
BASE="http://127.0.0.1:${PORT}/lambda-url"
API="http://127.0.0.1:${API_PORT}"
workdir=$(mktemp -d)
pids=()
started_documentdb=""

cleanup() {
  trap - EXIT INT TERM
  echo
  echo "stopping…"
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  pkill -P $$ 2>/dev/null || true
  wait 2>/dev/null || true
  if [ -n "$started_documentdb" ]; then "$LAUNCHER" stop "$DOCDB_PORT" || true; fi
  rm -rf "$workdir"
}
trap cleanup EXIT INT TERM

start_standin() {
  mkfifo "$workdir/standin"
  "$PY" tests/mongo-standin/standin.py --host 127.0.0.1 --port "$STANDIN_PORT" >"$workdir/standin" &
  pids+=($!)
  read -r first <"$workdir/standin"
  MONGODB_URI="${first#LISTENING }/?directConnection=true"
  stopped_with=" and the stand-in"
  echo "MongoDB: the stand-in at $MONGODB_URI (in memory, nothing is kept; connect with: mongosh \"$MONGODB_URI\")"
}

start_documentdb() {
  if (exec 3<>"/dev/tcp/127.0.0.1/$DOCDB_PORT") 2>/dev/null; then
    MONGODB_URI=$("$LAUNCHER" uri "$DOCDB_PORT")
    echo "MongoDB: DocumentDB already running on port $DOCDB_PORT (not started here, so left running)"
  else
    # Its own session: a Ctrl-C reaches this script, which stops the server cleanly, not the server itself.
    started_documentdb=1
    MONGODB_URI=$(setsid -w "$LAUNCHER" start "$DOCDB_PORT" </dev/null)
    stopped_with=" and DocumentDB"
    echo "MongoDB: DocumentDB on port $DOCDB_PORT, data kept between runs (DB=standin for the in-memory stand-in)"
  fi
  echo "  connect with: mongosh \"$MONGODB_URI\""
}

stopped_with=""
case "$DB" in auto | documentdb | standin) ;; *) echo "DB=$DB: expected documentdb or standin" >&2; exit 2 ;; esac
if [ -n "${MONGODB_URI:-}" ]; then
  echo "MongoDB: \$MONGODB_URI$( [ "$DB" != auto ] && echo " (it wins over DB=$DB)")"
elif [ "$DB" = standin ]; then
  start_standin
elif [ -x "$LAUNCHER" ]; then
  start_documentdb
elif [ "$DB" = documentdb ]; then
  echo "DB=documentdb: no DocumentDB launcher at $LAUNCHER (set DOCUMENTDB_LAUNCHER)" >&2
  exit 1
else
  echo "(no DocumentDB launcher at $LAUNCHER)"
  start_standin
fi

# An env file, not --env-var: URIs can contain commas. Values are quoted for the dotenv format.
quote() { local v=${1//\\/\\\\}; printf '"%s"' "${v//\"/\\\"}"; }
{
  echo "MONGODB_URI=$(quote "$MONGODB_URI")"
  echo "MONGODB_DATABASE=$(quote "$DATABASE")"
  echo 'AUTH_MODE="local"'
  echo "RUST_LOG=$(quote "${RUST_LOG:-info}")"
} >"$workdir/env"

echo "building the functions…"
cargo build --quiet --bins
# WATCH_ARGS: more `cargo lambda watch` options (`make contract` passes --ignore-changes: no reload mid-run).
# shellcheck disable=SC2086
cargo lambda watch --quiet -A 127.0.0.1 -P "$PORT" --env-file "$workdir/env" ${WATCH_ARGS:-} &
pids+=($!)
for _ in $(seq 1 120); do
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
  kill -0 "${pids[-1]}" 2>/dev/null || { echo "cargo lambda watch exited"; exit 1; }
  sleep 0.5
done

mkfifo "$workdir/gateway"
"$PY" infra/local/gateway.py --port "$API_PORT" --upstream "http://127.0.0.1:$PORT" >"$workdir/gateway" &
pids+=($!)
read -r _ <"$workdir/gateway"

echo "ensuring indexes (one sweeper run)…"
cargo lambda invoke ttl-sweeper -A 127.0.0.1 -P "$PORT" --data-ascii '{"source":"make-run"}' >/dev/null

echo "loading demo users 1001 and 1002…"
now=$(($(date +%s) * 1000))
for user in 1001 1002; do
  curl -sf -o /dev/null -X PUT "$API/v1/users/$user/tickets" -H 'x-local-scope: tickets/write' \
    -H 'content-type: application/json' \
    -d "{\"timestamp\": $now, \"passes\": [{\"pass_uuid\": \"demo-$user-a\", \"status\": \"ACTIVE\", \"free_ticket_status\": 0, \"payload\": {\"fare\": {\"amount\": 2.75, \"currency\": \"USD\"}, \"rides\": 1}}], \"passes4\": [{\"pass_uuid\": \"demo-$user-b\", \"status\": \"USABLE\", \"payload\": {\"zone\": \"A\"}}]}"
  curl -sf -o /dev/null -X POST "$API/v1/users/$user/logs" -H 'x-local-scope: tickets/write' \
    -H 'content-type: application/json' -d '{"kind": "passes", "errors": [{"code": "BM_TIMEOUT", "message": "upstream timeout"}], "id": "demo-1"}'
done

cat <<HELP

Ready. Try (one line per route of functions/routes.json, from infra/local/tour.py; the contract is api/openapi.json):
$("$PY" infra/local/tour.py curl "$API" --functions-port "$PORT")
The whole tour, checked (what make contract runs first): $PY infra/local/tour.py run $API --functions-port $PORT

Identity in local mode: x-local-user-id (a reader) or x-local-scope (space-separated scopes, e.g. tickets/admin).
Each function also answers under its own prefix: $BASE/<function>/v1/… (cargo lambda watch).
Ctrl-C stops the functions, the gateway$stopped_with.
API: $API
HELP
wait
