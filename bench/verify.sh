#!/usr/bin/env bash
# `tollgate verify` over a large trail (issue 15: 1,000,000 events, target >= 200,000 events/s on
# this 2-core machine), with its time and peak memory, beside a baseline in the same run: the
# floor of reading every event once (every object gunzipped and SHA-256'd, two at a time: the
# part of the work no verifier can skip).
#
#   bash bench/verify.sh [EVENTS] [PER_BATCH]     # defaults 1000000 1000
#
# The trail is built first through the real parts (`verify/examples/build_trail.rs`: rows in
# SQLite, the audit writer, the integrator and the digester at simulated times, a batch a
# minute ending now) into a fresh directory; its build time is reported too. Results go to
# bench/results/verify-<time>.json. TOLLGATE_BENCH_TRAIL=DIR reuses a trail built before.
set -euo pipefail
cd "$(dirname "$0")/.."
events="${1:-1000000}"
per_batch="${2:-1000}"
command -v /usr/bin/time >/dev/null || { echo "bench/verify.sh needs GNU time (apt-get install time)" >&2; exit 2; }

cargo build --release -q -p tollgate-ingress --bin tollgate
cargo build --release -q -p tollgate-verify --example build_trail
bin=target/release/tollgate
if [ -n "${TOLLGATE_BENCH_TRAIL:-}" ]; then
  # Reuse a trail built before (valid until its newest period's digest is overdue: within the hour).
  dir="$TOLLGATE_BENCH_TRAIL"
  build='{"reused": true}'
else
  dir="$(mktemp -d "${TMPDIR:-/tmp}/tollgate-verify-bench.XXXXXX")"
  trap 'rm -rf "$dir"' EXIT
  echo "building a trail of $events events ($per_batch a batch) in $dir" >&2
  build="$(target/release/examples/build_trail "$dir" "$events" "$per_batch")"
  echo "built: $build" >&2
fi

# Baseline: gunzip + SHA-256 of every object, 2 processes (the cores), page cache warm.
objects="$dir/objects/audit"
find "$objects" -name '*.ndjson.gz' -print0 | xargs -0 cat > /dev/null
base_start=$(date +%s.%N)
find "$objects" -name '*.ndjson.gz' -print0 | xargs -0 -P 2 -n 64 sh -c 'for f; do gzip -dc "$f"; done | sha256sum > /dev/null' _
base_end=$(date +%s.%N)
baseline_s=$(echo "$base_end - $base_start" | bc -l)

load="$(cut -d' ' -f1-3 /proc/loadavg)"
# Candidate: the whole verification (chain, objects, tree, checkpoints, tiles, request log).
/usr/bin/time -v "$bin" verify --data-dir "$dir" --json > "$dir/report.json" 2> "$dir/time.txt" || {
  cat "$dir/report.json" "$dir/time.txt" >&2; echo "verify failed" >&2; exit 1; }
cand_s=$(grep 'Elapsed (wall clock)' "$dir/time.txt" | awk '{print $NF}' | awk -F: '{ if (NF==3) print $1*3600+$2*60+$3; else print $1*60+$2 }')
rss_kb=$(grep 'Maximum resident set size' "$dir/time.txt" | awk '{print $NF}')
user_s=$(grep 'User time' "$dir/time.txt" | awk '{print $NF}')
sys_s=$(grep 'System time' "$dir/time.txt" | awk '{print $NF}')
checked=$(python3 -S -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["events"]["checked"])' "$dir/report.json")
phases=$(python3 -S -c 'import json,sys; r=json.load(open(sys.argv[1])); print(json.dumps({p: round(s, 3) for p, s in r["phase_seconds"]}))' "$dir/report.json")

rate=$(echo "$checked / $cand_s" | bc -l)
base_rate=$(echo "$checked / $baseline_s" | bc -l)
ratio=$(echo "$cand_s / $baseline_s" | bc -l)
stamp=$(date +%s)
mkdir -p bench/results
out="bench/results/verify-$stamp.json"
cat > "$out" <<EOF
{
  "what": "tollgate verify over an embedded trail (release build)",
  "machine": "$(nproc) cores, $(uname -m)",
  "trail": $build,
  "events_checked": $checked,
  "baseline": {"what": "gunzip + sha256 of every object, 2 processes", "seconds": $(printf %.3f "$baseline_s"), "events_per_s": $(printf %.0f "$base_rate")},
  "verify": {"seconds": $(printf %.3f "$cand_s"), "user_s": $user_s, "sys_s": $sys_s, "peak_rss_mb": $(echo "$rss_kb / 1024" | bc), "events_per_s": $(printf %.0f "$rate"), "phase_seconds": $phases},
  "load_average_before": "$load",
  "ratio_verify_to_baseline_time": $(printf %.2f "$ratio"),
  "target_events_per_s": 200000
}
EOF
cat "$out"
