#!/usr/bin/env bash
# Supply-chain checks (part of .ci/run): `cargo deny check` with deny.toml: RustSec advisories,
# licenses, bans (duplicate versions, wildcards) and sources. cargo-deny itself is installed
# once, at a pinned version, into the tools directory.
#
# The advisory database: on GitHub Actions the live one is fetched. Elsewhere (these build
# machines have no internet) a snapshot of it is used, from $TOLLGATE_ADVISORY_DB, or
# ../shared/advisory-db beside the repository, or /work/shared/advisory-db; cargo-deny reads a
# git repository, so the snapshot is committed into a throw-away one, dated as the snapshot is,
# and its age is printed (cargo-deny's staleness limit is raised to that age, and said so).
#   bash scripts/deny.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/prereqs.sh
DENY_VERSION=0.20.2
deny="$TOLLGATE_TOOLS_DIR/cargo-deny-$DENY_VERSION/bin/cargo-deny"
if [ ! -x "$deny" ]; then
    echo "installing cargo-deny $DENY_VERSION into $TOLLGATE_TOOLS_DIR/cargo-deny-$DENY_VERSION" >&2
    started=$SECONDS
    CARGO_TARGET_DIR="$(mktemp -d)" cargo install -q cargo-deny --version "$DENY_VERSION" --locked \
        --root "$TOLLGATE_TOOLS_DIR/cargo-deny-$DENY_VERSION"
    echo "   cargo-deny installed in $((SECONDS - started)) s" >&2
fi
if [ "${GITHUB_ACTIONS:-}" = true ]; then
    exec "$deny" --locked check --hide-inclusion-graph
fi
snapshot=""
for candidate in "${TOLLGATE_ADVISORY_DB:-}" "$PWD/../shared/advisory-db" /work/shared/advisory-db; do
    if [ -n "$candidate" ] && [ -f "$candidate/SNAPSHOT" ] && [ -d "$candidate/crates" ]; then
        snapshot="$candidate"
        break
    fi
done
if [ -z "$snapshot" ]; then
    echo "no RustSec advisory database here: set TOLLGATE_ADVISORY_DB to a snapshot (a copy of github.com/rustsec/advisory-db)" >&2
    exit 2
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# The directory cargo-deny derives from the database URL (advisory-db-<xxhash64 of the URL>):
# it is found by asking cargo-deny itself where it would look.
date="$(sed -n 's/.*(\([0-9-]*\)).*/\1/p' "$snapshot/SNAPSHOT" | head -1)"
age_days=$(( ( $(date -u +%s) - $(date -u -d "$date" +%s) ) / 86400 ))
db_root="$work/dbs"
mkdir -p "$db_root"
cp deny.toml "$work/deny.toml"
printf '\n# Added by scripts/deny.sh for the local snapshot:\n' >>"$work/deny.toml"
sed -i "s|^\[advisories\]|[advisories]\ndb-path = \"$db_root\"\nmaximum-db-staleness = \"P$((age_days + 1))D\"|" "$work/deny.toml"
# cargo-deny reads `cargo metadata` offline, which needs every package of the lock file on disk,
# those of other platforms too (a build fetches only its own).
cargo fetch --locked -q
probe="$("$deny" --offline --locked --config "$work/deny.toml" check advisories 2>&1 || true)"
db_dir="$(printf '%s\n' "$probe" | grep -o "$db_root/advisory-db-[0-9a-f]*" | head -1)"
if [ -z "$db_dir" ]; then
    printf '%s\n' "$probe" >&2
    echo "could not learn where cargo-deny reads the database" >&2
    exit 1
fi
mkdir -p "$db_dir"
cp -R "$snapshot/." "$db_dir/"
(
    cd "$db_dir"
    git init -q -b main
    git add -A
    GIT_AUTHOR_DATE="${date}T00:00:00Z" GIT_COMMITTER_DATE="${date}T00:00:00Z" \
        git -c user.name=tollgate -c user.email=ci@tollgate.invalid commit -q -m "$(head -1 SNAPSHOT)"
)
touch -d "${date}T00:00:00Z" "$db_dir/.git/HEAD"
echo "advisories: RustSec snapshot of $date ($age_days days old) from $snapshot"
"$deny" --offline --locked --config "$work/deny.toml" check --hide-inclusion-graph
# The database is really read: an advisory against a crate we link (itoa, every version) must
# fail the check.
mkdir -p "$db_dir/crates/itoa"
cat >"$db_dir/crates/itoa/RUSTSEC-2099-0001.md" <<'MD'
```toml
[advisory]
id = "RUSTSEC-2099-0001"
package = "itoa"
date = "2099-01-01"
categories = ["memory-corruption"]

[versions]
patched = [">= 99.0.0"]
```

# scripts/deny.sh's own canary advisory
MD
(cd "$db_dir" && git add -A && git -c user.name=tollgate -c user.email=ci@tollgate.invalid commit -q -m canary)
touch -d "${date}T00:00:00Z" "$db_dir/.git/HEAD"
if "$deny" --offline --locked --config "$work/deny.toml" check advisories >"$work/canary.log" 2>&1; then
    echo "cargo deny passed with a canary advisory against itoa: the database is not being read" >&2
    exit 1
fi
grep -q "RUSTSEC-2099-0001" "$work/canary.log" || { cat "$work/canary.log" >&2; exit 1; }
echo "advisories: the canary advisory against itoa fails the check, as it must"
