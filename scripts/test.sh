#!/usr/bin/env bash
# The README's test command: installs what the tests need (idempotently), then runs them all.
# Tests start their own stand-ins (a private PostgreSQL per test, dataapi-local, ...) and
# stop them afterwards; one that cannot start a stand-in fails, it is never skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/prereqs.sh
ensure_postgresql
ensure_moto
ensure_cargo_lambda
ensure_awscli
cargo test --workspace "$@"
# The events files through the real Lambda runtime API (cargo lambda watch + invoke), on a full run.
if [ $# -eq 0 ]; then
    bash scripts/invoke-events.sh
fi
