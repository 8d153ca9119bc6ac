#!/usr/bin/env bash
# Deletes a tollgate stack: `bash scripts/teardown.sh [dev|prod] [--yes]`.
#
# Everything the stack made goes with it (the ECR repository with its images: EmptyOnDelete),
# except what is kept on purpose, which the script names at the end:
#   - the audit bucket and its KMS key (DeletionPolicy: Retain): an audit trail outlives the
#     system that wrote it, and its objects must stay readable; with Object Lock they cannot be
#     deleted before each object's retention ends anyway;
#   - the log bucket (Retain): ALB, S3 access and VPC flow logs and the CloudWatch log archive,
#     kept for the same retention as the audit objects;
#   - the trail bucket and the log signing key (Retain): the transparency log's tiles, checkpoints
#     and signed digests stay verifiable (Object Lock keeps each object for TrailRetentionDays);
#   - a final snapshot of the database (DeletionPolicy: Snapshot): the request log can be
#     restored into a new cluster.
# Delete those by hand once their retention no longer applies (docs/operations.md, Teardown).
# prod has deletion protection on the database and the load balancer: the script lifts both
# first, after asking. Uses the pinned AWS CLI and SAM CLI as deploy.sh does (or those on PATH
# with TOLLGATE_DEPLOY_USE_PATH=1).
set -euo pipefail
cd "$(dirname "$0")/.."

env_name="${1:-dev}"
yes="${2:-}"
case "$env_name" in
    dev) config_env=default ;;
    prod) config_env=prod ;;
    *) echo "usage: $0 [dev|prod] [--yes]" >&2; exit 2 ;;
esac
if [ "${TOLLGATE_DEPLOY_USE_PATH:-}" != 1 ]; then
    source scripts/prereqs.sh
    ensure_tool awscli aws-sam-cli
fi
stack="$(python3 -S -c 'import sys, tomllib; print(tomllib.load(open("samconfig.toml", "rb"))[sys.argv[1]]["global"]["parameters"]["stack_name"])' "$config_env")"

output() {
    aws cloudformation describe-stacks --stack-name "$stack" \
        --query "Stacks[0].Outputs[?OutputKey=='$1'].OutputValue" --output text
}

err="$(mktemp)"
if ! aws cloudformation describe-stacks --stack-name "$stack" >/dev/null 2>"$err"; then
    if grep -q 'does not exist' "$err"; then rm -f "$err"; echo "no stack $stack: nothing to delete"; exit 0; fi
    cat "$err" >&2; rm -f "$err"; exit 1
fi
rm -f "$err"
audit_bucket="$(output AuditBucketName)"
log_bucket="$(output LogBucketName)"
trail_bucket="$(output TrailBucketName)"
cluster="$(output DatabaseClusterArn)"

if [ "$yes" != "--yes" ]; then
    read -r -p "Delete stack $stack (the audit bucket $audit_bucket, the log and trail buckets, the keys and a database snapshot stay)? [y/N] " answer
    [ "$answer" = y ] || { echo "nothing deleted"; exit 1; }
fi

if [ "$env_name" = prod ]; then
    echo "== lifting the deletion protection of the database and the load balancer"
    aws rds modify-db-cluster --db-cluster-identifier "$cluster" --no-deletion-protection --apply-immediately >/dev/null
    alb="$(aws cloudformation describe-stack-resource --stack-name "$stack" --logical-resource-id LoadBalancer \
        --query StackResourceDetail.PhysicalResourceId --output text)"
    aws elbv2 modify-load-balancer-attributes --load-balancer-arn "$alb" \
        --attributes Key=deletion_protection.enabled,Value=false >/dev/null
fi

echo "== sam delete $stack"
sam delete --config-env "$config_env" --stack-name "$stack" --no-prompts

cat <<MSG
$stack is deleted. Kept on purpose:
  audit bucket  $audit_bucket  (and the KMS key of its objects): the audit trail outlives the stack
  log bucket    $log_bucket  (access and flow logs, the CloudWatch log archive)
  trail bucket  $trail_bucket  (and the log signing key): the transparency log and its signed digests
  database      its final snapshot: aws rds describe-db-cluster-snapshots --db-cluster-identifier ${cluster##*:}
Delete them once their retention no longer applies: empty and delete the buckets, schedule the keys' deletion
(aws kms schedule-key-deletion), delete the snapshot (aws rds delete-db-cluster-snapshot).
MSG
