#!/usr/bin/env bash
# The cargo-fuzz targets of fuzz/ (issue 14), each run for a while: a crash (a panic, a broken
# invariant, a timeout or running out of memory) fails the run and names the reproducer.
#   bash scripts/fuzz.sh                  # every target, 10 s each
#   bash scripts/fuzz.sh 600              # every target, 10 minutes each (the acceptance run)
#   bash scripts/fuzz.sh 60 redact cursor # some targets
# Targets: credentials routes redact alb_response cursor (fuzz/fuzz_targets/*.rs).
#
# cargo-fuzz is installed once, at a pinned version, into the tools directory (as cargo-deny
# is). It runs on the pinned stable toolchain: the targets are built with `--sanitizer none`
# (libFuzzer's coverage instrumentation is stable `-C` flags; only AddressSanitizer needs the
# nightly-only `-Zsanitizer`), with debug assertions on (cargo-fuzz's default: overflow checks
# and debug_assert! run). The targets are safe Rust; FUZZ_SANITIZER=address builds them with
# AddressSanitizer through RUSTC_BOOTSTRAP=1 (see docs/development.md).
#
# Each target starts from its committed seeds (fuzz/corpus/<target>/seed-*) and grows its corpus
# in the same directory (git-ignored: only the seeds are committed). Reproducers are written to
# fuzz/artifacts/<target>/; `cargo fuzz run --sanitizer none <target> <file>` replays one.
# FUZZ_JOBS=N runs N targets at a time (default 1); FUZZ_ARGS adds libFuzzer flags (-dict=...).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/prereqs.sh
FUZZ_VERSION=0.13.2
ALL_TARGETS=(credentials routes redact alb_response cursor)
seconds="${1:-10}"
shift || true
targets=("$@")
[ "${#targets[@]}" -gt 0 ] || targets=("${ALL_TARGETS[@]}")
case "$seconds" in
    '' | *[!0-9]*) echo "usage: bash scripts/fuzz.sh [seconds-per-target] [target...]" >&2; exit 2 ;;
esac
for t in "${targets[@]}"; do
    [ -f "fuzz/fuzz_targets/$t.rs" ] || { echo "no fuzz target $t (have: ${ALL_TARGETS[*]})" >&2; exit 2; }
done

fuzz_root="$TOLLGATE_TOOLS_DIR/cargo-fuzz-$FUZZ_VERSION"
if [ ! -x "$fuzz_root/bin/cargo-fuzz" ]; then
    echo "installing cargo-fuzz $FUZZ_VERSION into $fuzz_root" >&2
    started=$SECONDS
    CARGO_TARGET_DIR="$(mktemp -d)" cargo install -q cargo-fuzz --version "$FUZZ_VERSION" --locked --root "$fuzz_root"
    echo "   cargo-fuzz installed in $((SECONDS - started)) s" >&2
fi
export PATH="$fuzz_root/bin:$PATH"

sanitizer="${FUZZ_SANITIZER:-none}"
if [ "$sanitizer" != none ]; then
    # -Zsanitizer on the pinned stable compiler (no nightly can be fetched here).
    export RUSTC_BOOTSTRAP=1
fi
echo "== cargo fuzz build (sanitizer $sanitizer): ${targets[*]}"
started=$SECONDS
for t in "${targets[@]}"; do
    cargo fuzz build --sanitizer "$sanitizer" "$t"
done
echo "   built in $((SECONDS - started)) s"

logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT
run_one() { # target: runs it for $seconds; its libFuzzer log and exit code in $logs/<target>.*
    local t="$1" rc=0
    mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
    # -timeout: one input taking over 10 s is a hang; -rss_limit_mb: libFuzzer's default.
    cargo fuzz run --sanitizer "$sanitizer" "$t" -- -max_total_time="$seconds" -timeout=10 \
        -rss_limit_mb=2048 -print_final_stats=1 ${FUZZ_ARGS:-} >"$logs/$t.log" 2>&1 || rc=$?
    echo "$rc" >"$logs/$t.rc"
}
failed=()
jobs_max="${FUZZ_JOBS:-1}"
echo "== cargo fuzz run: ${seconds} s per target, $jobs_max at a time"
for t in "${targets[@]}"; do
    while [ "$(jobs -rp | wc -l)" -ge "$jobs_max" ]; do sleep 1; done
    run_one "$t" &
done
wait
for t in "${targets[@]}"; do
    rc="$(cat "$logs/$t.rc")"
    execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$logs/$t.log" | tail -1)"
    corpus="$(find "fuzz/corpus/$t" -type f | wc -l)"
    if [ "$rc" = 0 ]; then
        echo "   $t: no crash in ${seconds} s, ${execs:-?} executions, corpus $corpus inputs"
    else
        failed+=("$t")
        tail -n 60 "$logs/$t.log" >&2
        artifact="$(grep -o 'Test unit written to [^ ]*' "$logs/$t.log" | tail -1 | cut -d' ' -f5)"
        echo "FAILED $t (exit $rc) after ${execs:-?} executions: reproducer ${artifact:-(none written; log above)}" >&2
        [ -z "$artifact" ] || echo "   replay: cargo fuzz run --sanitizer $sanitizer $t $artifact" >&2
    fi
done
if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzzing found crashes in: ${failed[*]}" >&2
    exit 1
fi
