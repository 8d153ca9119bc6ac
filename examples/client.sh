#!/usr/bin/env bash
# A small client of the tollgate API with curl and jq: call a route, find the call's record and
# audit event by its request id, page through the request log with the cursor, and read an
# RFC 9457 problem. What it does is what any client of api/openapi.json would do.
#
#   bash examples/client.sh [base-url]        # default http://127.0.0.1:8080 (cargo run)
#
# Reading the request log needs an API key with requests:read (or requests:read:own): it is
# taken from TOLLGATE_TOKEN, else from .tollgate/admin-key (what `cargo run` writes on its first
# start), and sent as `Authorization: Bearer <key>`. Keep it out of shell history and logs.
#
# ingress/tests/examples.rs runs it against a live ingress.
set -euo pipefail
base="${1:-http://127.0.0.1:8080}"
token="${TOLLGATE_TOKEN:-$(cat .tollgate/admin-key 2>/dev/null || true)}"
[ -n "$token" ] || { echo "set TOLLGATE_TOKEN to an API key with requests:read (tollgate keys create)" >&2; exit 2; }
# The key goes to curl on its standard input (a config line), never on its command line.
auth() { printf 'header = "Authorization: Bearer %s"\n' "$token"; }

# 1. A call. Its answer names its record in x-request-id.
headers="$(mktemp)"
trap 'rm -f "$headers"' EXIT
curl -fsS -D "$headers" -X POST "$base/v1/echo/orders?page=2" -H 'content-type: application/json' \
    -d '{"order_id": 12345}' | jq -c '{method, path, query, body_bytes}'
id="$(tr -d '\r' <"$headers" | sed -n 's/^x-request-id: //Ip')"
echo "request id: $id"

# 2. Its record, and its audit event once the audit writer has written it (within a second).
for _ in $(seq 1 50); do
    state="$(auth | curl -fsS -K - "$base/v1/requests/$id" | jq -r '.audit.state')"
    [ "$state" = written ] && break
    sleep 0.1
done
auth | curl -fsS -K - "$base/v1/requests/$id" \
    | jq -c '{status: .request.status, route: .request.route, audit: .audit.state, object: .audit.object_key, body_sha256: .audit.event.request.body_sha256}'

# 3. Every POST to echo, newest first, a page of 2 at a time, following next_cursor.
url="$base/v1/requests?method=POST&path_prefix=/v1/echo&limit=2"
pages=0
records=0
cursor=""
while :; do
    page="$(auth | curl -fsS -K - "$url${cursor:+&cursor=$cursor}")"
    pages=$((pages + 1))
    records=$((records + $(jq '.requests | length' <<<"$page")))
    cursor="$(jq -r '.next_cursor // empty' <<<"$page")"
    [ -n "$cursor" ] || break
done
echo "POSTs to echo: $records record(s) in $pages page(s)"

# 4. A problem: the status, the stable code to branch on, and where its own record is.
status="$(auth | curl -sS -K - -o /tmp/tollgate-problem.$$ -w '%{http_code}' "$base/v1/requests?limit=5000")"
jq -c --arg status "$status" '{http_status: ($status | tonumber), code, detail, instance}' /tmp/tollgate-problem.$$
rm -f /tmp/tollgate-problem.$$
