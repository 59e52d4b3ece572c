#!/usr/bin/env bash
# `make bench`: release binaries, then the service benchmark (writes bench/results.md) and the criterion
# handler benchmarks. BENCH_QUICK=1 runs a short smoke version (proves it works; its figures mean nothing).
# The database: MONGODB_URI, else DocumentDB through ../shared/documentdb (a free slot of DOCUMENTDB_PORTS),
# else the stand-in; the Node peer from ../shared/peer when node and npm are here (bench/src/peer.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
export MONGO_STANDIN_PYTHON="${MONGO_STANDIN_PYTHON:-$PWD/.venv/bin/python}"
cargo build --release --locked --bins
cargo bench --locked -p bench --bench service
if [ "${BENCH_QUICK:-0}" = "1" ]; then
  for bench in handlers request_steps; do
    cargo bench --locked -p bench --bench "$bench" -- --warm-up-time 0.2 --measurement-time 0.5 --sample-size 10
  done
  cargo bench --locked -p payload --bench payload_steps -- --warm-up-time 0.2 --measurement-time 0.5 --sample-size 10
else
  out=$(mktemp)
  cargo bench --locked -p bench --bench handlers | tee "$out"
  cargo bench --locked -p bench --bench request_steps | tee -a "$out"
  cargo bench --locked -p payload --bench payload_steps | tee -a "$out"
  {
    echo
    echo "## Criterion: [lower bound, estimate, upper bound] of the mean"
    echo
    echo "\`handler_only/*\`: the request → domain → response path, database time excluded."
    echo "\`request_steps_40/*\`, \`payload_steps_40/*\`: one step over the benchmark user's 40 passes, in process, no database (\`bench/profile.md\`)."
    echo
    echo '```'
    grep -E '^(handler_only|request_steps_40|payload_steps_40)/[a-z0-9_]+( |$)|time:' "$out" | grep -v -E 'Benchmarking|^Found'
    echo '```'
  } >> bench/results.md
  rm -f "$out"
fi
