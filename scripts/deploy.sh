#!/usr/bin/env bash
# Deploys tollgate to AWS: `bash scripts/deploy.sh [dev|prod] [image-tag]`.
#
# Needs AWS credentials for the target account and Docker with buildx; the Rust toolchain, the
# AWS CLI, SAM CLI and cargo-lambda are installed as the tests install them (scripts/prereqs.sh). The image tag defaults to the current commit. Steps:
#   1. sam build (every Lambda, arm64, with cargo-lambda);
#   2. on the first deploy only, sam deploy without an image: it creates the ECR repository (and
#      everything else) with the ingress service at 0 tasks;
#   3. build and push the ingress image (linux/arm64) to the stack's repository, unless that tag
#      is already there (tags are immutable);
#   4. sam deploy with ImageTag=<tag>: the service rolls to the new image (circuit breaker on).
# The parameters come from samconfig.toml's environment; this script only adds ImageTag.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/prereqs.sh
check_prerequisites
ensure_rust_toolchain
ensure_tool awscli aws-sam-cli cargo-lambda

env_name="${1:-dev}"
tag="${2:-$(git rev-parse --short=12 HEAD)}"
case "$env_name" in
    dev) config_env=default ;;
    prod) config_env=prod ;;
    *) echo "usage: $0 [dev|prod] [image-tag]" >&2; exit 2 ;;
esac

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

deploy() { # [image tag]; without one, ImageTag keeps its default (empty: no tasks)
    local overrides="$base_overrides"
    if [ -n "$1" ]; then overrides="$overrides ImageTag=$1"; fi
    sam deploy --config-env "$config_env" --no-confirm-changeset --parameter-overrides "$overrides"
}

output() {
    aws cloudformation describe-stacks --stack-name "$stack" \
        --query "Stacks[0].Outputs[?OutputKey=='$1'].OutputValue" --output text
}

echo "== sam build ($env_name)"
sam build --config-env "$config_env"

if ! aws cloudformation describe-stacks --stack-name "$stack" >/dev/null 2>&1; then
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
