#!/usr/bin/env bash
# Issue 15's proof generation latency: the tlog_proofs criterion target (tollgate_core::translog::prove
# and tollgate_tlog::verify_proof over embedded logs of 1,000, 100,000 and 1,000,000 leaves; how the
# logs are built: bench/benches/tlog_proofs.rs), then criterion's estimates and the logs' build
# timings in bench/results/tlog-proofs-<time>.json.
#   bash bench/tlog-proofs.sh [criterion options]      TOLLGATE_BENCH_TLOG_SIZES=1000,100000 picks sizes
#   bash bench/tlog-proofs.sh --collect BENCH-LOG STARTED-UNIX LOADAVG   (only re-collect a kept run)
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bench/results
started="$(date +%s)"
out="bench/results/tlog-proofs-$started.json"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
loadavg="$(cat /proc/loadavg)"
if [ "${1:-}" = --collect ]; then
    # Only collect: from a kept bench log and criterion's estimates of that run.
    cp "$2" "$log"; started="$3"; loadavg="$4"; out="bench/results/tlog-proofs-$started.json"
else
    cargo bench -p tollgate-bench --bench tlog_proofs -- "$@" 2>&1 | tee "$log"
fi
python3 -S - "$log" "$out" "$started" "$loadavg" <<'EOF'
import json, os, re, sys, time
log, out, started, loadavg = sys.argv[1:]
report = {
    "what": "latency of one tollgate_core::translog::prove (state row from SQLite, tiles from the directory "
            "store, authenticated against the checkpoint) and one tollgate_tlog::verify_proof, criterion "
            "estimates (the slope, as criterion prints it) with 95% intervals, wall-clock and (_cpu) the bench process's CPU time "
            "(bench/tlog-proofs.sh; bench/benches/tlog_proofs.rs)",
    "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(started))),
    "machine": {"cpus": os.cpu_count(), "loadavg_at_start": loadavg},
    "build": {}, "results_us": {},
}
for line in open(log):
    m = re.match(r"tlog_proofs: (\d+) leaves: inserted in ([\d.]+) s, marked and sequenced in ([\d.]+) s, "
                 r"integrated \(tiles \+ checkpoint\) in ([\d.]+) s \((\d+) leaves/s\)", line)
    if m:
        report["build"][m[1]] = {"insert_s": float(m[2]), "mark_and_sequence_s": float(m[3]),
                                 "integrate_s": float(m[4]), "integrate_leaves_per_s": int(m[5])}
for group in ("tlog_prove", "tlog_prove_cpu", "tlog_verify_proof", "tlog_verify_proof_cpu"):
    for size in report["build"]:
        path = os.path.join("target", "criterion", group, size, "new", "estimates.json")
        if not os.path.exists(path):
            sys.exit(f"no criterion estimates at {path}")
        # The figure criterion prints: the slope of time over iterations (linear sampling), else
        # the mean.
        est = json.load(open(path))
        e = est.get("slope") or est["mean"]
        ci = e["confidence_interval"]
        report["results_us"].setdefault(group, {})[size] = {
            "low": round(ci["lower_bound"] / 1000, 3), "estimate": round(e["point_estimate"] / 1000, 3),
            "high": round(ci["upper_bound"] / 1000, 3)}
if not report["build"]:
    sys.exit("the bench printed no build timings")
json.dump(report, open(out, "w"), indent=1)
print(f"results: {out}")
for group, by_size in report["results_us"].items():
    print(group, ", ".join(f"{s} leaves: {v['estimate']} us" for s, v in by_size.items()))
EOF
