#!/usr/bin/env bash
# The deployment checks (part of .ci/run): the template against CloudFormation's specification
# and SAM (cfn-lint, sam validate --lint), security policy (checkov; every skip is on its resource
# with the reason), the Dockerfile (hadolint), the workflows (actionlint), and `sam build` of
# every function (arm64, cargo-lambda), whose outputs are checked to be arm64 Linux executables.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/prereqs.sh
ensure_infra_tools
export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}" SAM_CLI_TELEMETRY=0

echo "== cfn-lint template.yaml"
cfn-lint template.yaml
echo "== sam validate --lint"
sam validate --lint
echo "== checkov"
checkov -f template.yaml --framework cloudformation --skip-download --compact --quiet
echo "== hadolint Dockerfile"
hadolint Dockerfile
echo "== actionlint"
actionlint
echo "== sam build"
started=$SECONDS
sam build --beta-features --parallel
echo "   sam build took $((SECONDS - started)) s"
python3 -S - <<'PY'
import pathlib, re
functions = re.findall(r"^  (\w+Function):\n    Type: AWS::Serverless::Function", pathlib.Path("template.yaml").read_text(), re.M)
assert len(functions) >= 5, functions
for name in functions:
    binary = pathlib.Path(".aws-sam/build") / name / "bootstrap"
    head = binary.read_bytes()[:20]
    # ELF, 64-bit, e_machine 183 = AArch64
    assert head[:4] == b"\x7fELF" and head[4] == 2 and int.from_bytes(head[18:20], "little") == 183, name
    print(f"   {name}: {binary} ({binary.stat().st_size / 1e6:.1f} MB, arm64)")
PY
