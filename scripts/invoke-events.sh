#!/usr/bin/env bash
# Runs every file in events/ through its function with `cargo lambda invoke <bin> --data-file`,
# the function served by `cargo lambda watch` from its own package directory (embedded mode over
# a throw-away data directory), and checks each answer:
#   HTTP functions (echo, requests-api): an ALB response, never 5xx, 400 for a bad parameter;
#   audit-writer: a write report, or InvalidBatch for the invalid batch;
#   audit-reconciler: a pass report; audit-digest: a pass report, and for its custom resource
#   SUCCESS with the log's verifier key delivered to the ResponseURL; db-migrate: SUCCESS
#   delivered to the ResponseURL.
# Custom resource files carry a presigned S3 ResponseURL; CloudFormation's bucket is not reachable
# here, so that URL is pointed at a local catcher in a copy of the file (nothing else changes).
#
#   bash scripts/invoke-events.sh            # every function
#   bash scripts/invoke-events.sh echo       # one function
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/prereqs.sh
ensure_tool cargo-lambda
root="$PWD"
work="$(mktemp -d)"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT


# A local stand-in for CloudFormation's response bucket: records every PUT body.
catcher_port="$(free_port)"
python3 -S - "$catcher_port" "$work/responses" <<'PY' &
import http.server, sys, os
port, out = int(sys.argv[1]), sys.argv[2]
os.makedirs(out, exist_ok=True)
class H(http.server.BaseHTTPRequestHandler):
    def do_PUT(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        with open(os.path.join(out, str(len(os.listdir(out)))), "wb") as f:
            f.write(body)
        self.send_response(200); self.end_headers()
    def log_message(self, *a): pass
http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
PY
pids+=($!)

function_env() { # the environment a function is served with
    echo "TOLLGATE_DATA_DIR=$work/data"
    if [ "$1" = audit-digest ]; then
        # The custom resource must name the key and origin the function signs with: in embedded
        # mode the key file, made under this origin on first start.
        python3 -S -c 'import json, sys; p = json.load(open(sys.argv[1]))["ResourceProperties"]; print("TOLLGATE_LOG_KMS_KEY_ID=" + p["KeyId"]); print("TOLLGATE_LOG_ORIGIN=" + p["Origin"])' "$root/events/audit-digest-log-key-create.json"
    fi
}

failures=0
check() { # name, answer file, expectation
    python3 -S - "$@" <<'PY' || return 1
import json, sys, os
name, answer, rc, responses = sys.argv[1], open(sys.argv[2]).read(), int(sys.argv[3]), sys.argv[4]
def fail(msg): print(f"   FAIL {name}: {msg}\n{answer[:400]}"); sys.exit(1)
if name == "audit-writer-invalid-batch.json":
    if rc == 0 or "InvalidBatch" not in answer: fail("expected an InvalidBatch function error")
    sys.exit(0)
if rc != 0: fail(f"cargo lambda invoke exited {rc}")
out = json.loads(answer[answer.index("{"):])
if name.startswith(("echo-", "requests-api-")):
    # Over an empty request log, requests-api-get's id is unknown: 404 request_not_found is the
    # right answer there; bad-parameter must be a 400; nothing may be a 5xx.
    status = out["statusCode"]
    if status >= 500 or ("bad-parameter" in name and status != 400): fail(f"status {status}")
elif name.startswith("audit-writer-"):
    if not out["objects"]: fail("no object written")
elif name.startswith("audit-reconciler-"):
    if out.get("failed_batches", 1) != 0: fail("reconciler pass failed")
elif name.startswith("audit-digest-log-key"):
    last = sorted(os.listdir(responses), key=int)[-1]
    sent = json.load(open(os.path.join(responses, last)))
    if sent["Status"] != "SUCCESS" or "+" not in sent["Data"].get("VerifierKey", ""): fail(f"CloudFormation was told {sent}")
elif name.startswith("audit-digest-"):
    if "tree_size" not in out or "periods" not in out: fail("no digest pass report")
elif name.startswith("db-migrate-"):
    last = sorted(os.listdir(responses), key=int)[-1]
    sent = json.load(open(os.path.join(responses, last)))
    if sent["Status"] != "SUCCESS": fail(f"CloudFormation was told {sent}")
PY
}

for manifest in functions/*/Cargo.toml; do
    dir="$(dirname "$manifest")"
    bin="$(python3 -S -c 'import sys,tomllib; print(tomllib.load(open(sys.argv[1],"rb"))["bin"][0]["name"])' "$manifest")"
    if [ $# -gt 0 ] && [ "$1" != "$bin" ]; then continue; fi
    shopt -s nullglob
    files=(events/"$bin"-*.json)
    shopt -u nullglob
    [ ${#files[@]} -gt 0 ] || { echo "no events for $bin"; failures=$((failures + 1)); continue; }
    port="$(free_port)"
    # Functions with storage run embedded mode only with their `embedded` feature (AWS builds
    # leave SQLite out).
    features=()
    if python3 -S -c 'import sys,tomllib; sys.exit(0 if "embedded" in tomllib.load(open(sys.argv[1],"rb")).get("features",{}) else 1)' "$manifest"; then
        features=(--features embedded)
    fi
    # shellcheck disable=SC2046 # the variables are NAME=value words
    (cd "$dir" && exec env $(function_env "$bin") cargo lambda watch "${features[@]}" -P "$port" >"$work/$bin.watch.log" 2>&1) &
    pids+=($!)
    wait_port "$port" 120 # cargo lambda watch builds the function first
    for f in "${files[@]}"; do
        name="$(basename "$f")"
        data="$f"
        if grep -q '"ResponseURL"' "$f"; then
            data="$work/$name"
            python3 -S - "$f" "$data" "http://127.0.0.1:$catcher_port/response" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); d["ResponseURL"] = sys.argv[3]; json.dump(d, open(sys.argv[2], "w"))
PY
        fi
        rc=0
        timeout 300 cargo lambda invoke "$bin" -P "$port" --data-file "$data" >"$work/answer" 2>&1 || rc=$?
        if check "$name" "$work/answer" "$rc" "$work/responses"; then
            echo "   ok   $bin < $f"
        else
            failures=$((failures + 1))
        fi
    done
done
if [ "$failures" -gt 0 ]; then
    echo "$failures event file(s) failed"
    exit 1
fi
echo "every event file ran with cargo lambda invoke"
