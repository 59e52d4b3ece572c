#!/usr/bin/env bash
# `make fuzz`: each target for FUZZ_SECONDS (default 60), from the seed corpus copied to a scratch
# directory; exits non-zero on any crash and prints the reproducer's path.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${FUZZ_SECONDS:-60}
# cargo-fuzz passes sanitizer flags that need unstable options; this is the stable toolchain.
export RUSTC_BOOTSTRAP=1
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
status=0
for target in request_parsing canonical_hashing stored_bson_printing; do
  mkdir -p "$scratch/$target"
  cp corpus/$target/seed-* "$scratch/$target/"
  echo "== $target ($seconds s)"
  if ! cargo fuzz run "$target" "$scratch/$target" -- -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=4096 -print_final_stats=1; then
    echo "CRASH in $target: reproducer under fuzz/artifacts/$target/"
    status=1
  fi
done
exit $status
