#!/usr/bin/env bash
# Issue 15 item 4's cost target: a receipt costs <= 3 us of server CPU per request, amortized,
# at 1,000 requests/s. Builds the release binaries and, in one run, starts a release tollgate
# with a fresh data directory for each case and drives it with bench/src/bin/receipt-cost.rs
# (open-loop /v1/echo at a fixed arrival rate):
#   none         no request asks for a receipt (the baseline)
#   per-commit   every request sends Prefer: tollgate-receipt, TOLLGATE_RECEIPT_WINDOW_MS=0
#                (one signature per group commit, as before the signing window)
#   window-<ms>  every request asks, TOLLGATE_RECEIPT_WINDOW_MS=<ms> (each --windows value)
# The cases run --rounds times, interleaved, so that other load on the machine falls on all of
# them alike. Server CPU is utime+stime from /proc/<pid>/stat over the measured window; the
# receipt cost per request is a case's CPU per request minus the baseline's of the same round.
# Some kept receipts of every receipted case are checked with `tollgate verify-receipt`.
# Keeps bench/results/receipt-cost-<time>.json.
#   bash bench/receipt-cost.sh [--rate 1000] [--duration 20] [--warmup 5] [--rounds 2]
#                              [--windows "20"] [--connections 64]
set -euo pipefail
cd "$(dirname "$0")/.."
rate=1000 duration=20 warmup=5 rounds=2 windows="20" connections=64
while [ $# -gt 0 ]; do
    case "$1" in
    --rate) rate="$2" ;;
    --duration) duration="$2" ;;
    --warmup) warmup="$2" ;;
    --rounds) rounds="$2" ;;
    --windows) windows="$2" ;;
    --connections) connections="$2" ;;
    *) echo "receipt-cost.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift 2
done
cargo build --release -p tollgate-ingress -p tollgate-bench
target="${CARGO_TARGET_DIR:-target}"
tollgate="$target/release/tollgate"
loadgen="$target/release/receipt-cost"

work="$(mktemp -d "${TMPDIR:-/tmp}/tollgate-receipt-cost.XXXXXX")"
source bench/lib/tollgate.sh
trap 'tollgate_stop; rm -rf "$work"' EXIT

# Starts a fresh tollgate with the given environment; sets pid and addr.
start() {
    local data="$work/data-$1"
    shift
    mkdir -p "$data"
    tollgate_start "$data.log" TOLLGATE_DATA_DIR="$data" "$@"
}

cases="none per-commit"
for w in $windows; do cases="$cases window-$w"; done
for round in $(seq 1 "$rounds"); do
    for case in $cases; do
        env=() receipt=()
        case "$case" in
        none) ;;
        per-commit) env=(TOLLGATE_RECEIPT_WINDOW_MS=0) receipt=(--receipt) ;;
        window-*) env=(TOLLGATE_RECEIPT_WINDOW_MS="${case#window-}") receipt=(--receipt) ;;
        esac
        start "$case-$round" "${env[@]}"
        echo "round $round, $case: tollgate pid $pid on $addr" >&2
        "$loadgen" --addr "$addr" --server-pid "$pid" --rate "$rate" --duration "$duration" \
            --warmup "$warmup" --connections "$connections" "${receipt[@]}" --label "$case" \
            --keep-receipts 20 --keep-dir "$work/receipts-$case-$round" \
            --out "$work/result-$case-$round.json" >/dev/null
        if [ "$case" != none ]; then
            vkey="$(TOLLGATE_DATA_DIR="$work/data-$case-$round" "$tollgate" log-key)"
            n=0
            for r in "$work/receipts-$case-$round"/receipt-*; do
                "$tollgate" verify-receipt --vkey "$vkey" "$r" >/dev/null
                n=$((n + 1))
            done
            [ "$n" -gt 0 ] || { echo "receipt-cost.sh: no receipts kept for $case" >&2; exit 1; }
            echo "  $n kept receipts verify with tollgate verify-receipt" >&2
        fi
        tollgate_stop
    done
done

mkdir -p bench/results
out="bench/results/receipt-cost-$(date +%s).json"
python3 -S - "$work" "$rounds" "$out" $cases <<'PY'
import json, sys, platform, os
work, rounds, out, cases = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
runs = {c: [json.load(open(f"{work}/result-{c}-{r}.json")) for r in range(1, rounds + 1)] for c in cases}
summary = {}
for c in cases:
    diffs = [runs[c][r]["server_cpu_us_per_request"] - runs["none"][r]["server_cpu_us_per_request"] for r in range(rounds)]
    summary[c] = {
        "cpu_us_per_request": [x["server_cpu_us_per_request"] for x in runs[c]],
        "receipt_cost_us_per_request": diffs,
        "receipt_cost_us_per_request_mean": sum(diffs) / len(diffs),
        # The standard error of that mean (the rounds' spread over sqrt(rounds)): the whole
        # server's CPU per request varies by more than a receipt costs, so this says how far
        # the mean can be trusted.
        "receipt_cost_us_per_request_stderr": (
            (sum((d - sum(diffs) / len(diffs)) ** 2 for d in diffs) / (len(diffs) - 1)) ** 0.5 / len(diffs) ** 0.5
            if len(diffs) > 1 else None),
        "receipts_per_signature": [x["receipts_per_statement"] for x in runs[c]],
        "latency_p50_ms": [x["latency"]["p50_ms"] for x in runs[c]],
        "latency_p99_ms": [x["latency"]["p99_ms"] for x in runs[c]],
        "achieved_rate_per_s": [x["achieved_rate_per_s"] for x in runs[c]],
    }
report = {"what": "receipt-cost", "cpus": os.cpu_count(), "kernel": platform.release(),
          "target_us_per_request": 3.0, "summary": summary, "runs": runs}
json.dump(report, open(out, "w"), indent=2)
for c in cases:
    s = summary[c]
    print(f"{c:12} cpu/req {' '.join(f'{v:6.1f}' for v in s['cpu_us_per_request'])} us"
          f"  receipt cost {' '.join(f'{v:5.2f}' for v in s['receipt_cost_us_per_request'])} us"
          f" (mean {s['receipt_cost_us_per_request_mean']:.2f}, stderr {s['receipt_cost_us_per_request_stderr'] or 0:.2f})"
          f"  receipts/signature {' '.join(f'{v:5.1f}' for v in s['receipts_per_signature'])}"
          f"  p50 {' '.join(f'{v:.2f}' for v in s['latency_p50_ms'])} ms"
          f"  p99 {' '.join(f'{v:.2f}' for v in s['latency_p99_ms'])} ms")
print(f"results: {out}")
PY
