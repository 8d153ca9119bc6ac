#!/usr/bin/env bash
# A local AWS stack for tollgate's aws mode, in one command:
#   a private PostgreSQL (initdb in a temp dir, as the postgres user when run as root),
#   dataapi-local (the RDS Data API over it), moto's S3 server with the audit bucket,
#   cargo lambda watch (Lambda Invoke API) with the function binaries attached,
#   kms-local (the KMS API, tollgate-testkit) with an Ed25519 key, alias/tollgate-log, that signs
#   the transparency log's checkpoints and digests (TOLLGATE_LOG_KMS_KEY_ID= turns the log off),
#   the trail bucket (tiles, checkpoints, digests) beside the audit bucket, as the template has,
#   the audit-digest function's schedule (its EventBridge event every
#   TOLLGATE_STANDIN_DIGEST_EVERY_S seconds, 60 by default; 0: never, invoke it yourself),
#   `tollgate migrate`, then the ingress in aws mode on 127.0.0.1:8080 (TOLLGATE_LISTEN).
# Ctrl-C (or any failure) stops everything and removes the temp dir.
# The stand-ins take free ports on 127.0.0.1; for `sam local invoke` (env.json: the function's
# container reaches them at host.docker.internal) run it as
#   TOLLGATE_STANDIN_HOST=0.0.0.0 TOLLGATE_STANDIN_DATAAPI_PORT=8082 TOLLGATE_STANDIN_S3_PORT=5000 \
#     TOLLGATE_STANDIN_LAMBDA_PORT=9000 TOLLGATE_STANDIN_KMS_PORT=8083 bash scripts/aws-local.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/prereqs.sh
ensure_postgresql
ensure_tool moto cargo-lambda


WORK="$(mktemp -d /tmp/tollgate-aws-local.XXXXXX)"
PIDS=()
PG_BIN="${TOLLGATE_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)}"
RUN_PG=()
if [ "$(id -u)" = 0 ]; then chown postgres:postgres "$WORK"; RUN_PG=(runuser -u postgres --); fi
cleanup() {
    set +e
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
    wait 2>/dev/null
    "${RUN_PG[@]}" "$PG_BIN/pg_ctl" -D "$WORK/pg" -m immediate -w stop >/dev/null 2>&1
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

# TOLLGATE_PROFILE=release for measurements (the load benchmark's aws-mode run).
PROFILE="${TOLLGATE_PROFILE:-dev}"
# The registry's local_stack functions (functions.toml).
mapfile -t local_functions < <(python3 -S -c 'import tomllib; [print(f["name"]) for f in tomllib.load(open("functions.toml","rb"))["functions"] if f["local_stack"]]')
mapfile -t function_packages < <(python3 -S -c 'import tomllib; [print("-p", tomllib.load(open(f["package"] + "/Cargo.toml","rb"))["package"]["name"]) for f in tomllib.load(open("functions.toml","rb"))["functions"] if f["local_stack"]]')
# shellcheck disable=SC2068 # each line is "-p <crate>": two words
cargo build --profile "$PROFILE" -p tollgate-ingress --features tollgate-ingress/aws -p dataapi-local \
    -p tollgate-testkit ${function_packages[@]}
# Cargo puts binaries under CARGO_TARGET_DIR when it is set (a worktree sharing a target).
TARGET="${CARGO_TARGET_DIR:-target}"
if [ "$PROFILE" = dev ]; then BIN="$TARGET/debug"; else BIN="$TARGET/$PROFILE"; fi

PG_PORT=$(free_port)
"${RUN_PG[@]}" "$PG_BIN/initdb" -D "$WORK/pg" -U postgres --auth=trust -E UTF8 >/dev/null
"${RUN_PG[@]}" "$PG_BIN/pg_ctl" -D "$WORK/pg" -l "$WORK/pg.log" -w \
    -o "-p $PG_PORT -k $WORK -c listen_addresses=127.0.0.1" start >/dev/null
"$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -qc "CREATE DATABASE tollgate"

STANDIN_HOST="${TOLLGATE_STANDIN_HOST:-127.0.0.1}"
DATAAPI_PORT="${TOLLGATE_STANDIN_DATAAPI_PORT:-$(free_port)}"
TOLLGATE_DATAAPI_LISTEN="$STANDIN_HOST:$DATAAPI_PORT" TOLLGATE_DATAAPI_PG_PORT="$PG_PORT" \
    "$BIN/dataapi-local" >"$WORK/dataapi.log" 2>&1 &
PIDS+=($!)
S3_PORT="${TOLLGATE_STANDIN_S3_PORT:-$(free_port)}"
moto_server -H "$STANDIN_HOST" -p "$S3_PORT" >"$WORK/s3.log" 2>&1 &
PIDS+=($!)
LAMBDA_PORT="${TOLLGATE_STANDIN_LAMBDA_PORT:-$(free_port)}"
cargo lambda watch --only-lambda-apis -A "$STANDIN_HOST" -P "$LAMBDA_PORT" >"$WORK/lambda.log" 2>&1 &
PIDS+=($!)
KMS_PORT="${TOLLGATE_STANDIN_KMS_PORT:-$(free_port)}"
LOG_KEY=alias/tollgate-log
TOLLGATE_KMS_LOCAL_LISTEN="$STANDIN_HOST:$KMS_PORT" TOLLGATE_KMS_LOCAL_CREATE_KEY="$LOG_KEY" \
    "$BIN/kms-local" >"$WORK/kms.log" 2>&1 &
PIDS+=($!)
wait_port "$DATAAPI_PORT"; wait_port "$S3_PORT"; wait_port "$LAMBDA_PORT"; wait_port "$KMS_PORT"

export TOLLGATE_MODE=aws
export TOLLGATE_DB_CLUSTER_ARN=arn:aws:rds:us-east-1:000000000000:cluster:tollgate-local
export TOLLGATE_DB_SECRET_ARN=arn:aws:secretsmanager:us-east-1:000000000000:secret:tollgate-local
export TOLLGATE_DB_NAME=tollgate
export TOLLGATE_AUDIT_BUCKET=tollgate-audit-local
export TOLLGATE_TRAIL_BUCKET=tollgate-trail-local
export TOLLGATE_S3_FORCE_PATH_STYLE=true
export AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local AWS_EC2_METADATA_DISABLED=true
export AWS_ENDPOINT_URL_RDS_DATA="http://127.0.0.1:$DATAAPI_PORT"
export AWS_ENDPOINT_URL_S3="http://127.0.0.1:$S3_PORT"
export AWS_ENDPOINT_URL_LAMBDA="http://127.0.0.1:$LAMBDA_PORT"
export AWS_ENDPOINT_URL_KMS="http://127.0.0.1:$KMS_PORT"
# The transparency log: checkpoints signed by the stand-in's key (set it empty to turn it off).
export TOLLGATE_LOG_KMS_KEY_ID="${TOLLGATE_LOG_KMS_KEY_ID-$LOG_KEY}"
export TOLLGATE_LOG_ORIGIN="${TOLLGATE_LOG_ORIGIN:-tollgate.local/aws-local}"
# The digests, with the template's settings unless set (DigestPeriodMinutes 60, a 2-minute grace).
export TOLLGATE_DIGEST_PERIOD_MS="${TOLLGATE_DIGEST_PERIOD_MS:-3600000}"
export TOLLGATE_DIGEST_GRACE_MS="${TOLLGATE_DIGEST_GRACE_MS:-120000}"
export TOLLGATE_DIGEST_LOOKBACK="${TOLLGATE_DIGEST_LOOKBACK:-48}"

python3 -S - <<PY
import urllib.request
for bucket in ("$TOLLGATE_AUDIT_BUCKET", "$TOLLGATE_TRAIL_BUCKET"):
    urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:$S3_PORT/{bucket}", method="PUT"))
PY

for f in "${local_functions[@]}"; do
    # audit-digest signs with the log's key: with the log off it has nothing to do (and refuses
    # to start), as a stack without the key would have no digests.
    if [ "$f" = audit-digest ] && [ -z "$TOLLGATE_LOG_KMS_KEY_ID" ]; then
        echo "audit-digest not started: the log is off (TOLLGATE_LOG_KMS_KEY_ID is empty)" >&2
        continue
    fi
    AWS_LAMBDA_FUNCTION_NAME=$f AWS_LAMBDA_FUNCTION_VERSION=1 AWS_LAMBDA_FUNCTION_MEMORY_SIZE=1024 \
    AWS_LAMBDA_RUNTIME_API="http://127.0.0.1:$LAMBDA_PORT/.rt/$f" "$BIN/$f" >"$WORK/$f.log" 2>&1 &
    PIDS+=($!)
done

"$BIN/tollgate" migrate
# The schedule (the template's rate(DigestIntervalMinutes minutes) rule): EventBridge invokes the
# function asynchronously with its scheduled event, through the Lambda Invoke API.
DIGEST_EVERY="${TOLLGATE_STANDIN_DIGEST_EVERY_S:-60}"
if [ "$DIGEST_EVERY" != 0 ] && [ -n "$TOLLGATE_LOG_KMS_KEY_ID" ]; then
    while sleep "$DIGEST_EVERY"; do
        python3 -S - <<PY >>"$WORK/schedule.log" 2>&1 || true
import urllib.request
req = urllib.request.Request("$AWS_ENDPOINT_URL_LAMBDA/2015-03-31/functions/audit-digest/invocations",
    data=open("events/audit-digest-schedule.json", "rb").read(), method="POST",
    headers={"X-Amz-Invocation-Type": "Event"})
print(urllib.request.urlopen(req).read().decode())
PY
    done &
    PIDS+=($!)
fi
echo "stand-ins: dataapi=$AWS_ENDPOINT_URL_RDS_DATA s3=$AWS_ENDPOINT_URL_S3 bucket=$TOLLGATE_AUDIT_BUCKET" >&2
cat >&2 <<MSG
local AWS stack up (logs in $WORK):
  PostgreSQL      127.0.0.1:$PG_PORT (psql -h 127.0.0.1 -p $PG_PORT -U postgres tollgate)
  RDS Data API    $AWS_ENDPOINT_URL_RDS_DATA
  S3              $AWS_ENDPOINT_URL_S3 (buckets $TOLLGATE_AUDIT_BUCKET, trail $TOLLGATE_TRAIL_BUCKET)
  Lambda          $AWS_ENDPOINT_URL_LAMBDA
  KMS             $AWS_ENDPOINT_URL_KMS (log key: ${TOLLGATE_LOG_KMS_KEY_ID:-none, the log is off})
  digests         every ${TOLLGATE_DIGEST_PERIOD_MS} ms, audit-digest invoked every ${DIGEST_EVERY} s
starting the ingress in aws mode; Ctrl-C stops everything.
MSG
"$BIN/tollgate" "$@" &
PIDS+=($!)
wait "${PIDS[-1]}"
