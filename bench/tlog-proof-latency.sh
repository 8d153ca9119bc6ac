#!/usr/bin/env bash
# Issue 15's "time from an answer to its available inclusion proof" (target: p99 <= 1 s at 1,000
# requests/s in embedded mode). Builds the release binaries, starts a release tollgate with a fresh
# data directory (its real defaults, except the proof route's per-caller rate limit: see below),
# and drives it with bench/src/bin/tlog-proof-latency.rs: open-loop /v1/echo at a fixed arrival
# rate, every 50th answer's proof polled with the admin key until it is served, every proof
# verified with the key `tollgate log-key` prints. Keeps bench/results/tlog-proof-latency-<time>.json.
#   bash bench/tlog-proof-latency.sh [--rate 1000] [--duration 60] [--warmup 5] [--sample-every 50]
#                                    [--poll-ms 20] [--connections 64] [--label TEXT]
# Environment: TOLLGATE_PROFILE=profiling builds and runs target/profiling/tollgate (symbols, for
# `perf record -e cpu-clock -g -p <pid>`; the pid is printed); any other TOLLGATE_* variable is
# passed to the server (e.g. TOLLGATE_AUDIT_BATCH_MAX_AGE_MS=250) and recorded in the result.
set -euo pipefail
cd "$(dirname "$0")/.."
profile="${TOLLGATE_PROFILE:-release}"
unset TOLLGATE_PROFILE
# One cargo command for both, as bench/run.sh builds them (the same features, so no rebuild).
cargo build --release -p tollgate-ingress -p tollgate-bench
[ "$profile" = release ] || cargo build --profile "$profile" -p tollgate-ingress
tollgate="target/$profile/tollgate"

work="$(mktemp -d "${TMPDIR:-/tmp}/tollgate-tlog-latency.XXXXXX")"
source bench/lib/tollgate.sh
trap 'tollgate_stop; rm -rf "$work"' EXIT

# The proof route is limited to 100 requests/s per caller (routes.toml), and the pollers are one
# caller (the admin key) asking ~300 times a second (~1,250 with --sample-every 10): this run's
# routes file raises that limit on the /v1/requests* routes only. Everything else is routes.toml as it stands.
sed -e 's|^rate = "100/s"$|rate = "1000000/s"|' -e 's|^burst = 200$|burst = 1000000|' routes.toml >"$work/routes.toml"
if [ "$(grep -c '^rate = "1000000/s"$' "$work/routes.toml")" != 3 ]; then
    echo "tlog-proof-latency.sh: routes.toml no longer has the three /v1/requests* rate lines this script raises" >&2
    exit 1
fi

mkdir -p "$work/data"
tollgate_start "$work/tollgate.log" TOLLGATE_DATA_DIR="$work/data" TOLLGATE_ROUTES="$work/routes.toml"
vkey="$(TOLLGATE_DATA_DIR="$work/data" "$tollgate" log-key)"
echo "tollgate pid $pid on $addr ($tollgate), log $vkey" >&2

mkdir -p bench/results
out="bench/results/tlog-proof-latency-$(date +%s).json"
target/release/tlog-proof-latency --addr "$addr" --data-dir "$work/data" --vkey "$vkey" --server-pid "$pid" \
    --out "$out" "$@"
echo "results: $out"
