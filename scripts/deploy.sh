#!/usr/bin/env bash
# Deploys tollgate to AWS: `bash scripts/deploy.sh [--dry-run] [dev|prod] [image-tag]`.
#
# Needs AWS credentials for the target account and Docker with buildx; the Rust toolchain, the
# AWS CLI, SAM CLI and cargo-lambda are installed as the tests install them (scripts/prereqs.sh),
# unless TOLLGATE_DEPLOY_USE_PATH=1 says to use the `aws`, `sam` and `docker` already on PATH (your
# own installs; ingress/tests/deploy_script.rs runs it so with recording fakes). The image tag
# defaults to the current commit. Steps (docs/operations.md lists the exact calls):
#   1. sam build (every Lambda, arm64, with cargo-lambda);
#   2. the stack's state: none yet (or an unexecuted change set, REVIEW_IN_PROGRESS) -> a first
#      deploy; ROLLBACK_COMPLETE (a first create failed; CloudFormation allows only a delete) ->
#      say so, delete it, wait, then a first deploy; ROLLBACK_FAILED, DELETE_FAILED or an
#      operation in progress -> stop with what to do;
#   3. before a first deploy, the ECS service-linked role: the first cluster of an account often
#      fails with "Unable to assume the service linked role" when ECS creates it itself (ECS
#      developer guide, using-service-linked-roles.html: `aws iam create-service-linked-role
#      --aws-service-name ecs.amazonaws.com`); ELB, RDS and Application Auto Scaling create theirs
#      when the deploying principal may (iam:CreateServiceLinkedRole);
#   4. on a first deploy, sam deploy without an image: the ECR repository and everything else,
#      with the ingress service at 0 tasks;
#   5. build and push the ingress image (linux/arm64) unless that tag is already there (tags are
#      immutable);
#   6. sam deploy with ImageTag=<tag>: the service rolls to the new image (circuit breaker on).
# --dry-run: steps 1-2 and one change set (`sam deploy --no-execute-changeset`) of what the
# deploy would do, nothing executed, nothing pushed, no role created (a stack that does not exist
# yet is left in REVIEW_IN_PROGRESS with its change set, which the next deploy replaces).
# The parameters come from samconfig.toml's environment; this script only adds ImageTag.
set -euo pipefail
cd "$(dirname "$0")/.."

dry_run=0
if [ "${1:-}" = "--dry-run" ]; then dry_run=1; shift; fi
env_name="${1:-dev}"
case "$env_name" in
    dev) config_env=default ;;
    prod) config_env=prod ;;
    *) echo "usage: $0 [--dry-run] [dev|prod] [image-tag]" >&2; exit 2 ;;
esac

if [ "${TOLLGATE_DEPLOY_USE_PATH:-}" = 1 ]; then
    for tool in aws sam docker; do
        command -v "$tool" >/dev/null || { echo "TOLLGATE_DEPLOY_USE_PATH=1 but no $tool on PATH" >&2; exit 2; }
    done
else
    source scripts/prereqs.sh
    check_prerequisites
    ensure_rust_toolchain
    ensure_tool awscli aws-sam-cli cargo-lambda
fi
tag="${2:-$(git rev-parse --short=12 HEAD)}"

read_config() {
    python3 -S - "$config_env" "$1" "$2" <<'PY'
import sys, tomllib
env, section, key = sys.argv[1:4]
with open("samconfig.toml", "rb") as f:
    print(tomllib.load(f)[env][section]["parameters"][key])
PY
}
stack="$(read_config global stack_name)"
base_overrides="$(read_config global parameter_overrides)"
# samconfig.toml ships prod with a placeholder certificate (account 000000000000): say so before
# any AWS call rather than let CloudFormation fail halfway through creating the HTTPS listener.
case "$base_overrides" in
    *"CertificateArn=arn:aws:acm:"*":000000000000:"*)
        echo "samconfig.toml's $env_name CertificateArn is the placeholder: put your ACM certificate's ARN there (prod serves HTTPS only)" >&2
        exit 2 ;;
esac

deploy() { # image tag ("" on a first deploy: ImageTag keeps its default, no tasks), sam flags...
    local overrides="$base_overrides"
    if [ -n "$1" ]; then overrides="$overrides ImageTag=$1"; fi
    shift
    sam deploy --config-env "$config_env" --no-confirm-changeset --parameter-overrides "$overrides" "$@"
}

output() {
    aws cloudformation describe-stacks --stack-name "$stack" \
        --query "Stacks[0].Outputs[?OutputKey=='$1'].OutputValue" --output text
}

# The stack's status, NONE when there is none. Any other error stops the script: an expired
# token must not look like a clean account.
stack_status() {
    local err status
    err="$(mktemp)"
    if status="$(aws cloudformation describe-stacks --stack-name "$stack" \
        --query 'Stacks[0].StackStatus' --output text 2>"$err")"; then
        rm -f "$err"
        echo "$status"
    elif grep -q 'does not exist' "$err"; then
        rm -f "$err"
        echo NONE
    else
        cat "$err" >&2
        rm -f "$err"
        echo "cannot read the state of stack $stack (above); nothing was changed" >&2
        exit 1
    fi
}

ensure_ecs_service_linked_role() {
    if aws iam get-role --role-name AWSServiceRoleForECS >/dev/null 2>&1; then return; fi
    echo "== creating the ECS service-linked role (the account's first ECS cluster fails without it)"
    local err
    err="$(mktemp)"
    if ! aws iam create-service-linked-role --aws-service-name ecs.amazonaws.com >/dev/null 2>"$err"; then
        # Created meanwhile by someone else: "has been taken in this account".
        if ! grep -q 'has been taken' "$err"; then cat "$err" >&2; rm -f "$err"; exit 1; fi
    fi
    rm -f "$err"
}

echo "== sam build ($env_name)"
sam build --config-env "$config_env"

status="$(stack_status)"
first=0
case "$status" in
    NONE | REVIEW_IN_PROGRESS) first=1 ;;
    ROLLBACK_COMPLETE)
        echo "== $stack is in ROLLBACK_COMPLETE: its first create failed and CloudFormation allows only deleting it"
        echo "   (why: aws cloudformation describe-stack-events --stack-name $stack)"
        if [ "$dry_run" = 1 ]; then
            echo "== dry run: a deploy would delete $stack, wait for the delete, then create it again; no change set can be made against it"
            exit 0
        fi
        echo "== deleting $stack, then creating it again (the audit bucket, log bucket and key it made are retained)"
        aws cloudformation delete-stack --stack-name "$stack"
        aws cloudformation wait stack-delete-complete --stack-name "$stack"
        first=1
        ;;
    ROLLBACK_FAILED | DELETE_FAILED | UPDATE_ROLLBACK_FAILED)
        cat >&2 <<EOF
$stack is in $status: CloudFormation could not undo or delete what it made, and will not deploy over it.
Find the resource that failed: aws cloudformation describe-stack-events --stack-name $stack
(in prod, deletion protection on the database or the load balancer is the usual cause: lift it as
docs/operations.md's teardown says). Then: $( [ "$status" = UPDATE_ROLLBACK_FAILED ] \
    && echo "aws cloudformation continue-update-rollback --stack-name $stack" \
    || echo "aws cloudformation delete-stack --stack-name $stack")
and run this script again.
EOF
        exit 1
        ;;
    *_IN_PROGRESS)
        echo "$stack is in $status: another operation is running; run this again once it ends" >&2
        exit 1
        ;;
esac

if [ "$dry_run" = 1 ]; then
    if [ "$first" = 1 ]; then
        echo "== dry run: change set of the first deploy of $stack (infrastructure and functions, no ingress tasks)"
        if ! aws iam get-role --role-name AWSServiceRoleForECS >/dev/null 2>&1; then
            echo "   a deploy would first create the ECS service-linked role"
        fi
        deploy "" --no-execute-changeset
    else
        echo "== dry run: change set of $stack with ImageTag=$tag (a deploy would push the image first if missing)"
        deploy "$tag" --no-execute-changeset
    fi
    exit 0
fi

if [ "$first" = 1 ]; then
    ensure_ecs_service_linked_role
    echo "== first deploy of $stack: infrastructure and functions, no ingress tasks yet"
    deploy ""
fi

repo="$(output RepositoryUri)"
registry="${repo%%/*}"
repo_name="${repo#*/}"
if aws ecr describe-images --repository-name "$repo_name" --image-ids "imageTag=$tag" >/dev/null 2>&1; then
    echo "== image $repo:$tag already pushed"
else
    echo "== build and push $repo:$tag"
    aws ecr get-login-password | docker login --username AWS --password-stdin "$registry"
    docker buildx build --platform linux/arm64 --provenance=false --tag "$repo:$tag" --push .
fi

echo "== deploy $stack with ImageTag=$tag"
deploy "$tag"
echo "API: $(output ApiUrl)"
