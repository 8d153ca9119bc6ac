#!/usr/bin/env bash
# What a newcomer's first `cargo run` compiles: the ingress from nothing (a fresh target
# directory, the crates already downloaded), as `cargo run` builds it (embedded mode, no AWS SDK)
# and with the aws feature (what it compiled before the feature existed, and what the container
# builds), one after the other in the same run. Wall time, crates compiled, and the ratio go to
# bench/results/first-build-<time>.json and stdout.
#   bash bench/first-build.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fetch --locked -q
out="bench/results/first-build-$(date +%s).json"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
run() { # name, cargo build args...
    local name="$1" started crates
    shift
    started=$(date +%s.%N)
    CARGO_TARGET_DIR="$work/$name" cargo build --locked -p tollgate-ingress "$@" 2>"$work/$name.log"
    local seconds
    seconds=$(python3 -S -c "import sys; print(round($(date +%s.%N) - $started, 1))")
    crates=$(grep -c '^ *Compiling ' "$work/$name.log" || true)
    echo "$name $seconds $crates"
}
{
    run embedded
    run aws --features aws
} | tee "$work/rows"
python3 -S - "$work/rows" "$out" "$(nproc)" <<'PY'
import json, sys
rows = {}
for line in open(sys.argv[1]):
    name, seconds, crates = line.split()
    rows[name] = {"seconds": float(seconds), "crates_compiled": int(crates)}
result = {
    "what": "cargo build -p tollgate-ingress (debug, as cargo run) from an empty target directory",
    "cpus": int(sys.argv[3]),
    "builds": rows,
    "embedded_over_aws_time": round(rows["embedded"]["seconds"] / rows["aws"]["seconds"], 3),
}
json.dump(result, open(sys.argv[2], "w"), indent=2)
print(f"cargo run's first build: {rows['embedded']['seconds']} s, {rows['embedded']['crates_compiled']} crates; "
      f"with the AWS SDK (before): {rows['aws']['seconds']} s, {rows['aws']['crates_compiled']} crates "
      f"({result['embedded_over_aws_time']:.0%} of the time); written {sys.argv[2]}")
PY
