#!/usr/bin/env bash
# Issue 15's "time from an answer to its available inclusion proof" (target: p99 <= 1 s at 1,000
# requests/s in embedded mode): runs the end-to-end transparency log test (512 answers over 16
# connections against an in-process ingress; every 4th answer's proof is awaited) in the release
# profile, and keeps its measurement line in bench/results/tlog-proof-latency-<time>.txt.
#   bash bench/tlog-proof-latency.sh
set -euo pipefail
cd "$(dirname "$0")/.."
out="bench/results/tlog-proof-latency-$(date +%s).txt"
cargo test -q --release -p tollgate-ingress --test transparency_log -- --nocapture 2>&1 | grep '^tlog:' | tee "$out"
