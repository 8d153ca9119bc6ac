#!/usr/bin/env bash
# What the embedded adapters cost a Lambda: every function in functions.toml is built in release
# (the profile `sam build` and the Dockerfile use) as deployed, and, where it has an `embedded`
# feature, again with it; sizes in bytes and the ratio go to bench/results/lambda-sizes-<time>.json
# and stdout. The linking itself is kept out by a test (ingress/tests/registry.rs,
# no_lambda_links_the_embedded_adapters_unless_asked_to); this measures what that saves.
#   bash bench/lambda-sizes.sh [--target aarch64-unknown-linux-gnu]
set -euo pipefail
cd "$(dirname "$0")/.."
target_args=()
target_dir=target/release
if [ "${1:-}" = "--target" ]; then
    target_args=(--target "$2")
    target_dir="target/$2/release"
fi
out="bench/results/lambda-sizes-$(date +%s).json"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# name, package name, has-embedded-feature, one line per function.
python3 -S - >"$work/functions" <<'PY'
import tomllib
for f in tomllib.load(open("functions.toml", "rb"))["functions"]:
    m = tomllib.load(open(f["package"] + "/Cargo.toml", "rb"))
    print(f["name"], m["package"]["name"], "embedded" in m.get("features", {}))
PY
rows=()
while read -r bin package has_embedded; do
    cargo build -q --release "${target_args[@]}" -p "$package" --bin "$bin"
    without=$(stat -c %s "$target_dir/$bin")
    with=""
    if [ "$has_embedded" = True ]; then
        cargo build -q --release "${target_args[@]}" -p "$package" --bin "$bin" --features embedded
        with=$(stat -c %s "$target_dir/$bin")
        # Leave the deployable build behind.
        cargo build -q --release "${target_args[@]}" -p "$package" --bin "$bin"
    fi
    rows+=("$bin $without ${with:--}")
done <"$work/functions"
printf '%s\n' "${rows[@]}" >"$work/rows"
python3 -S - "$work/rows" "$out" "${target_args[1]:-}" <<'PY'
import json, platform, sys
rows_file, out, target = sys.argv[1], sys.argv[2], sys.argv[3] or platform.machine()
rows = []
print(f"{'function':<18} {'deployed (B)':>14} {'with embedded (B)':>18} {'saved':>8}")
for line in open(rows_file).read().split("\n"):
    if not line:
        continue
    name, without, with_ = line.split()
    r = {"function": name, "deployed_bytes": int(without)}
    shown = "-"
    saved = "n/a"
    if with_ != "-":
        r["with_embedded_bytes"] = int(with_)
        r["saved_ratio"] = round(1 - int(without) / int(with_), 4)
        shown = f"{int(with_):,}"
        saved = f"{r['saved_ratio']:.1%}"
    rows.append(r)
    print(f"{name:<18} {int(without):>14,} {shown:>18} {saved:>8}")
json.dump({"target": target, "profile": "release", "functions": rows}, open(out, "w"), indent=2)
print("written", out)
PY
