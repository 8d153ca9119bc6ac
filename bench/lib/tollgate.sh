# Sourced by the load benchmarks (bench/receipt-cost.sh, bench/tlog-proof-latency.sh): starts
# and stops one tollgate for a run. The caller sets `tollgate` (the binary: a release build)
# and `work` (its scratch directory).
#
#   tollgate_start LOG [NAME=VALUE...]   start "$tollgate" on a free loopback port with the given
#                                        environment (RUST_LOG unset: the log is JSON lines),
#                                        its output in LOG; wait until it logs "tollgate ready"
#                                        (30 s at most) and set `pid` and `addr`; exit the script
#                                        when it dies first or never gets ready
#   tollgate_stop                        stop it (TERM, then wait: it flushes its records)

pid=""
addr=""

tollgate_start() {
    local log="$1"
    shift
    env -u RUST_LOG TOLLGATE_LISTEN=127.0.0.1:0 "$@" "$tollgate" >"$log" 2>&1 &
    pid=$!
    addr=""
    for _ in $(seq 1 300); do
        addr="$(python3 -S -c 'import json,sys
for l in open(sys.argv[1]):
    try: v = json.loads(l)
    except ValueError: continue
    if v.get("message") == "tollgate ready": print(v["listen"]); break' "$log")"
        [ -n "$addr" ] && return 0
        kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; echo "tollgate exited before it was ready" >&2; exit 1; }
        sleep 0.1
    done
    grep -m1 '"tollgate ready"' "$log" >&2 || true
    echo "${0##*/}: tollgate did not say where it listens within 30 s" >&2
    exit 1
}

tollgate_stop() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    pid=""
}
