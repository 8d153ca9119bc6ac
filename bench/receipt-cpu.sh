#!/usr/bin/env bash
# Issue 15's "receipt cost per request (target <= 3 us of CPU amortized)": the criterion group
# `receipt_cpu` of bench/benches/hot_paths.rs, run here, written to bench/results/receipt-cpu-<time>.json.
#
#   bash bench/receipt-cpu.sh [criterion args...]
#
# Each case is n receipted requests sharing one signing window (one Ed25519 signature): default =
# the audit event serialized to its JSON line (what every record costs), receipt_only = leaf
# hashes, the window's RFC 6962 tree, the statement's signature, each request's path and header
# value, default_with_receipt = both. Thread CPU time divided by n (criterion's estimates with 95%
# intervals), so other processes on the machine do not inflate it. How many requests share a
# window at a given rate is bench/receipt-cost.sh's measurement (about 21 at 1,000 requests/s
# with the default 20 ms window); the target is judged at that n.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench -q -p tollgate-bench --bench hot_paths -- receipt_cpu "$@" >&2
stamp=$(date +%s)
mkdir -p bench/results
out="bench/results/receipt-cpu-$stamp.json"
python3 -S - "${CARGO_TARGET_DIR:-target}/criterion/receipt_cpu" "$out" <<'EOF'
import json, os, sys, time
root, out = sys.argv[1], sys.argv[2]
results = {}
for case in sorted(os.listdir(root)):
    path = os.path.join(root, case, "new", "estimates.json")
    if not os.path.exists(path):
        continue
    est = json.load(open(path))
    # The figure criterion prints: the slope of the linear sampling when there is one.
    mean = est.get("slope") or est["mean"]
    kind, n = case.rsplit("_", 1)
    results[f"{kind}/{n}"] = {
        "n_per_signature": int(n),
        "mean_ns": round(mean["point_estimate"], 1),
        "low_ns": round(mean["confidence_interval"]["lower_bound"], 1),
        "high_ns": round(mean["confidence_interval"]["upper_bound"], 1),
    }
if not results:
    sys.exit(f"no criterion estimates under {root}")
target = 3000.0
verdict = {
    f"receipt_only/{n}": results[f"receipt_only/{n}"]["mean_ns"] <= target
    for n in (10, 20, 64) if f"receipt_only/{n}" in results
}
json.dump({
    "what": "CPU per receipted request, amortized over the n requests of one signing window, beside the default path in the same run (thread CPU time / n; criterion's printed estimate, with its 95% interval)",
    "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    "machine": f"{os.cpu_count()} cores",
    "target_ns": target,
    "meets_target": verdict,
    "results": results,
}, open(out, "w"), indent=1)
print(open(out).read())
EOF
