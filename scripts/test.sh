#!/usr/bin/env bash
# The README's test command: installs what the tests need (idempotently), then runs them all.
# Tests start their own stand-ins (a private PostgreSQL per test, dataapi-local, moto,
# cargo lambda watch) and stop them afterwards; one that cannot start a stand-in fails, it is
# never skipped. What it installs: curl, jq and PostgreSQL's server binaries (Debian's packages, each
# only when missing), the Rust toolchain of rust-toolchain.toml, and the pinned Python tools it
# uses (moto, cargo-lambda, awscli, schemathesis, openapi-python-client), each in its own environment under
# $TOLLGATE_TOOLS_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/prereqs.sh
check_prerequisites
ensure_rust_toolchain
ensure_test_tools
TOLLGATE_PATH="$PATH" python3 -S scripts/check-tools.py --installed
cargo test --workspace "$@"
# On a full run: the events files through the real Lambda runtime API (cargo lambda watch +
# invoke), and the public API against its OpenAPI document (schemathesis, live ingress).
if [ $# -eq 0 ]; then
    bash scripts/invoke-events.sh
    bash scripts/schemathesis.sh
fi
