#!/usr/bin/env bash
# The fault soak at full size: 1,000,000 mixed good and bad requests against an in-process
# ingress (embedded mode, release build) while the request log fails for 300 ms every 2 s,
# with clients leaving mid-body and while their function runs; then the books are balanced
# (ingress/tests/soak.rs says what is counted and asserted). The test command runs the same
# soak with 20,000 requests.
#
#   bash bench/soak.sh [requests]        # default 1000000
set -euo pipefail
cd "$(dirname "$0")/.."
requests="${1:-1000000}"
started=$SECONDS
RUST_BACKTRACE=0 TOLLGATE_SOAK_REQUESTS="$requests" \
    cargo test --release -p tollgate-ingress --test soak -- --nocapture 2>&1 | grep -E '^soak:|test result|panicked'
echo "soak of $requests requests: $((SECONDS - started)) s (build included)"
