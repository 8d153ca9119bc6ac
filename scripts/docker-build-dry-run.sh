#!/usr/bin/env bash
# The Dockerfile's build stages on this host, for machines without a Docker engine: the planner
# (`cargo chef prepare` on the sources the .dockerignore lets through), the dependency layer
# (`cargo chef cook` from the recipe alone), then the source layer (`cargo build`), which must
# compile only the workspace's own crates. Then the binary serves /healthz with the image's
# settings. Not part of CI (it takes about 5 minutes on 2 cores); run it after changing the
# Dockerfile, the workspace layout or the dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/prereqs.sh
chef_version="$(sed -n 's/^ARG CHEF_VERSION=//p' Dockerfile)"
if ! cargo chef --version 2>/dev/null | grep -q "$chef_version"; then
    cargo install cargo-chef --locked --version "$chef_version"
fi
work="$(mktemp -d)"
server=""
cleanup() {
    if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/planner" "$work/build"
# COPY . . (minus .dockerignore's entries)
git ls-files -z | xargs -0 tar -cf - | tar -xf - -C "$work/planner"
(cd "$work/planner" && rm -rf target .git .github .aws-sam .tollgate bench/results)

echo "== planner: cargo chef prepare"
(cd "$work/planner" && cargo chef prepare --recipe-path recipe.json)
echo "== dependency layer: cargo chef cook (recipe only)"
cp "$work/planner/recipe.json" "$work/build/"
(cd "$work/build" && cargo chef cook --release --locked --package tollgate-ingress --features aws --recipe-path recipe.json)
echo "== source layer: cargo build"
cp -r "$work/planner/." "$work/build/"
(cd "$work/build" && cargo build --release --locked --package tollgate-ingress --features aws --bin tollgate 2>&1) | tee "$work/build.log"
outside="$(grep ' Compiling ' "$work/build.log" | grep -v "($work/build/" || true)"
if [ -n "$outside" ]; then
    echo "the source layer recompiled dependencies (the cook layer did not cache them):"
    echo "$outside"
    exit 1
fi
echo "   the source layer compiled only workspace crates"

echo "== the binary with the image's settings"
port="$(free_port)"
TOLLGATE_LISTEN="127.0.0.1:$port" TOLLGATE_ROUTES="$work/build/routes.toml" TOLLGATE_DATA_DIR="$work/data" \
    MIMALLOC_ARENA_EAGER_COMMIT=0 "$work/build/target/release/tollgate" >"$work/run.log" 2>&1 &
server=$!
for _ in $(seq 1 100); do
    if curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; then
        echo "   /healthz answered; image build stages OK"
        exit 0
    fi
    sleep 0.1
done
echo "the binary did not answer /healthz"; cat "$work/run.log"; exit 1
