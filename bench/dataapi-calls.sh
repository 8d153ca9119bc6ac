#!/usr/bin/env bash
# Issue 15's "the sequencer's extra Data API calls per 1,000 requests" (target <= 2), in aws mode
# against the local stand-ins (PostgreSQL + dataapi-local + the S3 server + kms-local, started by
# scripts/aws-local.sh): sends N requests (default 1,000 and 10,000) through the ingress with the
# transparency log off (baseline: TOLLGATE_LOG_KMS_KEY_ID empty, events sequenced only) and on
# (candidate: the audit-writer integrates after each batch and signs through KMS), both in this
# run, and reports the Data API calls per 1,000 requests that dataapi-local served
# (GET /_dataapi-local/stats, every operation), each run counted from its first request until
# the calls stop (the writer's marking and integration included), and splits them by statement
# (GET /_dataapi-local/stats/statements): marking (with sequencing), integration (the log's
# state reads and compare-and-sets), and the rest.
#   bash bench/dataapi-calls.sh [1000,10000]
# TOLLGATE_PROFILE=release for release binaries; TOLLGATE_BENCH_CONCURRENCY (default 32).
# Writes bench/results/dataapi-calls-<time>.json.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/prereqs.sh
COUNTS="${1:-1000,10000}"
CONCURRENCY="${TOLLGATE_BENCH_CONCURRENCY:-32}"
STAMP="$(date +%s)"
OUT="bench/results/dataapi-calls-$STAMP.json"
LOGS="$(mktemp -d /tmp/tollgate-dataapi-calls.XXXXXX)"
STACK_PID=""
stop_stack() {
    if [ -n "$STACK_PID" ]; then
        kill -TERM "$STACK_PID" 2>/dev/null || true
        wait "$STACK_PID" 2>/dev/null || true
        STACK_PID=""
    fi
}
trap 'stop_stack; rm -rf "$LOGS"' EXIT INT TERM

# One stack per mode: the functions read the log setting at start.
run_mode() { # $1 = off|on
    local mode="$1" key dataapi_port listen_port
    if [ "$mode" = on ]; then key=alias/tollgate-log; else key=""; fi
    dataapi_port=$(free_port)
    listen_port=$(free_port)
    TOLLGATE_LOG_KMS_KEY_ID="$key" TOLLGATE_STANDIN_DATAAPI_PORT="$dataapi_port" \
        TOLLGATE_LISTEN="127.0.0.1:$listen_port" TOLLGATE_RECONCILE_INTERVAL_MS=0 \
        bash scripts/aws-local.sh >"$LOGS/stack-$mode.log" 2>&1 &
    STACK_PID=$!
    local deadline=$((SECONDS + 900))
    until curl -sf "http://127.0.0.1:$listen_port/healthz" >/dev/null 2>&1; do
        if ! kill -0 "$STACK_PID" 2>/dev/null || [ $SECONDS -gt $deadline ]; then
            echo "the aws-mode stack ($mode) did not start:" >&2
            tail -30 "$LOGS/stack-$mode.log" >&2
            exit 1
        fi
        sleep 1
    done
    python3 -S - "$mode" "$COUNTS" "$CONCURRENCY" "$listen_port" "$dataapi_port" >>"$LOGS/results.jsonl" <<'PY'
import http.client, json, sys, time, threading
mode, counts, conc, port, dataapi = sys.argv[1], [int(c) for c in sys.argv[2].split(",")], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])

def get(path):
    c = http.client.HTTPConnection("127.0.0.1", dataapi, timeout=10)
    c.request("GET", path)
    s = json.loads(c.getresponse().read())
    c.close()
    return s

def stats():
    return {"ops": get("/_dataapi-local/stats"), "statements": get("/_dataapi-local/stats/statements")}

def kind(sql):
    # Marking and sequencing: migration 0004's function, or 0005's that also answers the
    # integration's read. Integration: every other statement on the log's state row (the
    # pending read, the compare-and-set; core/src/sql.rs, mod tlog).
    if "tlog_mark_audited" in sql:
        return "marking"
    if "tlog_state" in sql:
        return "integration_advance" if sql.startswith("UPDATE tlog_state") else "integration_read"
    return "other"

def settled(quiet=3.0, limit=300.0):
    # The writer marks and integrates after the answers: wait until no call is made for `quiet` s.
    last, since, start = stats(), time.monotonic(), time.monotonic()
    while time.monotonic() - since < quiet:
        time.sleep(0.5)
        now = stats()
        if now != last:
            last, since = now, time.monotonic()
        if time.monotonic() - start > limit:
            raise SystemExit(f"calls did not settle in {limit} s")
    return last

def send(n):
    statuses, lock, next_i = {}, threading.Lock(), [0]
    def worker():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while True:
            with lock:
                i = next_i[0]; next_i[0] += 1
            if i >= n:
                break
            body = f"bench {mode} {i}".encode()
            try:
                conn.request("POST", f"/v1/echo/bench/{i}", body=body, headers={"content-type": "text/plain"})
                r = conn.getresponse(); r.read(); status = r.status
                if r.getheader("connection", "").lower() == "close":
                    conn.close(); conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            except Exception:
                conn.close(); conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60); status = 0
            with lock:
                statuses[status] = statuses.get(status, 0) + 1
    threads = [threading.Thread(target=worker) for _ in range(conc)]
    for t in threads: t.start()
    for t in threads: t.join()
    return statuses

# Warm-up (the first batch creates connections and prepares statements), then each count.
send(50); settled()
for n in counts:
    before = settled()
    t0 = time.monotonic()
    statuses = send(n)
    elapsed = time.monotonic() - t0
    after = settled()
    ops = {k: after["ops"][k] - before["ops"].get(k, 0) for k in after["ops"]}
    total = sum(ops.values())
    kinds = {"marking": 0, "integration_read": 0, "integration_advance": 0, "other": 0}
    for sql, count in after["statements"].items():
        kinds[kind(sql)] += count - before["statements"].get(sql, 0)
    print(json.dumps({"log": mode, "requests": n, "answered": statuses, "seconds": round(elapsed, 2),
                      "data_api_calls": total, "per_1000_requests": round(total * 1000 / n, 2), "by_operation": ops,
                      "by_kind": kinds,
                      "by_kind_per_1000_requests": {k: round(v * 1000 / n, 2) for k, v in kinds.items()}}), flush=True)
PY
    stop_stack
}

run_mode off
run_mode on

python3 -S - "$LOGS/results.jsonl" "$OUT" "$CONCURRENCY" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
by = {(r["log"], r["requests"]): r for r in rows}
# The totals also count the group commits, whose number follows the run's timing (the same
# requests commit in more or fewer calls from one run to the next): "extra" is their difference,
# noise included. The log's own cost is read from the statements: integration calls (reads and
# compare-and-sets) exist only with the log on, and marking is one call per object either way.
out = {"benchmark": "dataapi-calls", "concurrency": int(sys.argv[3]), "runs": rows, "extra_per_1000_requests": {},
       "by_kind_per_1000_requests": {}, "integration_per_1000_requests": {}}
print(f"{'requests':>9} {'log off /1k':>12} {'log on /1k':>11} {'extra /1k':>10} {'ratio':>6}"
      f" {'marking off/on /1k':>19} {'integration reads+advances /1k':>31} {'events/object':>14}")
for n in sorted({r["requests"] for r in rows}):
    off, on = by[("off", n)], by[("on", n)]
    extra = on["per_1000_requests"] - off["per_1000_requests"]
    out["extra_per_1000_requests"][str(n)] = round(extra, 2)
    ratio = on["per_1000_requests"] / off["per_1000_requests"] if off["per_1000_requests"] else float("nan")
    k_off, k_on = off["by_kind_per_1000_requests"], on["by_kind_per_1000_requests"]
    out["by_kind_per_1000_requests"][str(n)] = {"off": k_off, "on": k_on}
    out["integration_per_1000_requests"][str(n)] = round(k_on["integration_read"] + k_on["integration_advance"], 2)
    # One marking call per audit object (a writer batch): the events per batch the rounds follow.
    per_object = n / on["by_kind"]["marking"] if on["by_kind"]["marking"] else float("nan")
    marking = f"{k_off['marking']:.2f}/{k_on['marking']:.2f}"
    integration = f"{k_on['integration_read']:.2f}+{k_on['integration_advance']:.2f}"
    print(f"{n:>9} {off['per_1000_requests']:>12.2f} {on['per_1000_requests']:>11.2f} {extra:>10.2f} {ratio:>6.3f}"
          f" {marking:>19} {integration:>31} {per_object:>14.1f}")
json.dump(out, open(sys.argv[2], "w"), indent=1)
print(f"written {sys.argv[2]}")
PY
