#!/usr/bin/env bash
# One command for the load benchmark: installs wrk if missing, builds the release binaries,
# runs the baseline and tollgate embedded in one run, writes bench/results/<time>.json.
#   bash bench/run.sh [--duration 10] [--warmup 3] [--concurrency 1,64,256] [--idle-connections 1000]
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v wrk >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
        apt-get install -y wrk >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }
    else
        sudo apt-get install -y wrk >/dev/null
    fi
fi
# 1,000 idle connections need more descriptors than the usual soft limit of 1,024.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || ulimit -n 65536 2>/dev/null || true
cargo build --release -p tollgate-ingress -p tollgate-bench
exec target/release/tollgate-bench "$@"
