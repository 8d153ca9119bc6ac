# Installs what tollgate's tests and tools need, each only when missing, and the small helpers
# the scripts share. Sourced by the scripts in this directory.

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

apt_install() {
    as_root apt-get install -y --no-install-recommends "$@" >/dev/null 2>&1 || {
        as_root apt-get update >/dev/null
        as_root apt-get install -y --no-install-recommends "$@" >/dev/null
    }
}

# What the scripts cannot install themselves, checked before anything runs: one line for each
# that is missing, saying how to get it. Returns non-zero if any is.
check_prerequisites() {
    local missing=0
    need() { # command, how to install it
        if ! command -v "$1" >/dev/null 2>&1; then echo "missing prerequisite: $1 ($2)" >&2; missing=1; fi
    }
    need rustup "install Rust with rustup: https://rustup.rs, then open a new shell"
    need cargo "install Rust with rustup: https://rustup.rs, then open a new shell"
    need python3 "install Python 3.11 or later with pip (Debian/Ubuntu: apt-get install -y python3 python3-venv)"
    need git "apt-get install -y git"
    need sha256sum "apt-get install -y coreutils"
    if command -v python3 >/dev/null 2>&1 && ! python3 -S -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
        echo "missing prerequisite: Python 3.11 or later (python3 is $(python3 -S -V 2>&1); install a newer one)" >&2
        missing=1
    fi
    if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && [ -z "${TOLLGATE_PG_BIN:-}" ] \
        && ! command -v apt-get >/dev/null 2>&1; then
        echo "missing prerequisite: PostgreSQL server binaries (no apt-get to install them: install PostgreSQL 15+ and set TOLLGATE_PG_BIN to its bin directory)" >&2
        missing=1
    fi
    if [ "$(id -u)" != 0 ] && ! command -v sudo >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
        echo "missing prerequisite: sudo (the scripts install Debian packages with it when not root)" >&2
        missing=1
    fi
    return "$missing"
}

# PostgreSQL server binaries (initdb, pg_ctl) for the private clusters the tests start.
ensure_postgresql() {
    if [ -n "${TOLLGATE_PG_BIN:-}" ] && [ -x "$TOLLGATE_PG_BIN/initdb" ]; then return; fi
    if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then return; fi
    echo "installing postgresql" >&2
    apt_install postgresql
    # Debian's package starts a cluster of its own; the tests do not use it.
    as_root service postgresql stop >/dev/null 2>&1 || true
}

# The pinned Python tools. Each lives in its own virtual environment under TOLLGATE_TOOLS_DIR
# (outside the clone, shared by clones), installed from tools/python/NAME.lock: the tool's
# version from NAME.in and every package it pulls in, frozen (scripts/lock-tools.sh writes it).
# Nothing goes into the system Python; the commands NAME.in lists are wrappers in
# $TOLLGATE_TOOLS_DIR/bin, which is first on PATH for the scripts and where the tests look
# (tollgate_testkit::tool). Python in the scripts themselves runs with -S: the standard library
# only, never whatever the global site-packages holds (scripts/check-tools.py checks all this).
TOLLGATE_TOOLS_DIR="${TOLLGATE_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tollgate/tools}"
export TOLLGATE_TOOLS_DIR
case ":$PATH:" in
    *":$TOLLGATE_TOOLS_DIR/bin:"*) ;;
    *) export PATH="$TOLLGATE_TOOLS_DIR/bin:$PATH" ;;
esac
TOLLGATE_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# ensure_tool NAME...: each tool installed from its lock, once; reinstalled only when its lock
# or the Python it was built with changes.
ensure_tool() {
    local name
    mkdir -p "$TOLLGATE_TOOLS_DIR/bin"
    for name in "$@"; do
        local lock="$TOLLGATE_REPO/tools/python/$name.lock" spec="$TOLLGATE_REPO/tools/python/$name.in"
        local venv="$TOLLGATE_TOOLS_DIR/$name" stamp command
        [ -f "$lock" ] || { echo "no pinned tool $name (tools/python/$name.lock)" >&2; return 2; }
        stamp="$( { cat "$lock"; python3 -S -c 'import sys; print(sys.version, sys.base_prefix)'; } | sha256sum | cut -d' ' -f1)"
        # One installer at a time per tool (two test runs on one machine share the tools
        # directory; interleaved installs once left a venv with half its packages): the stamp is
        # read again under the lock, so the second waits and then finds the tool installed.
        (
            # (errexit does not reach into a `( ... ) || ...` list: each step says how it fails.)
            flock 9 || exit 1
            if [ "$(cat "$venv/.tollgate-stamp" 2>/dev/null)" != "$stamp" ]; then
                echo "installing $name ($(grep -v '^#' "$spec")) into $venv" >&2
                local started=$SECONDS
                rm -rf "$venv"
                if ! python3 -S -m venv "$venv" 2>/dev/null; then
                    # Debian's own python3 keeps venv/ensurepip in a separate package.
                    rm -rf "$venv"
                    apt_install python3-venv || exit 1
                    python3 -S -m venv "$venv" || exit 1
                fi
                "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --require-virtualenv \
                    --no-input -r "$lock" || { echo "installing $name failed" >&2; exit 1; }
                echo "$stamp" >"$venv/.tollgate-stamp" || exit 1
                echo "   $name installed in $((SECONDS - started)) s" >&2
            fi
        ) 9>"$TOLLGATE_TOOLS_DIR/.$name.install-lock" || return 1
        for command in $(sed -n 's/^# commands: //p' "$spec"); do
            # The tool's own environment first on PATH for what it starts (cargo-lambda runs
            # its zig through `python3 -m ziglang`).
            printf '#!/bin/sh\n# %s from the pinned tool %s\nPATH="%s/bin:$PATH" exec "%s/bin/%s" "$@"\n' \
                "$command" "$name" "$venv" "$venv" "$command" >"$TOLLGATE_TOOLS_DIR/bin/$command.tmp"
            chmod +x "$TOLLGATE_TOOLS_DIR/bin/$command.tmp"
            mv -f "$TOLLGATE_TOOLS_DIR/bin/$command.tmp" "$TOLLGATE_TOOLS_DIR/bin/$command"
        done
    done
    hash -r
}

# The Python interpreter of tool NAME's environment, for script lines that need its packages
# (moto's boto3).
tool_python() { echo "$TOLLGATE_TOOLS_DIR/$1/bin/python"; }

# The Rust toolchain of rust-toolchain.toml with its components and targets (rustup installs a
# missing toolchain only when asked: RUSTUP_AUTO_INSTALL may be off).
ensure_rust_toolchain() {
    local channel components targets
    channel="$(sed -n 's/^channel = "\(.*\)"/\1/p' "$TOLLGATE_REPO/rust-toolchain.toml")"
    components="$(sed -n 's/^components = \[\(.*\)\]/\1/p' "$TOLLGATE_REPO/rust-toolchain.toml" | tr -d '",')"
    targets="$(sed -n 's/^targets = \[\(.*\)\]/\1/p' "$TOLLGATE_REPO/rust-toolchain.toml" | tr -d '",')"
    if ! rustup toolchain list | grep -q "^$channel"; then
        echo "installing Rust $channel" >&2
        rustup toolchain install "$channel" --profile minimal >/dev/null
    fi
    local installed
    installed="$(rustup +"$channel" component list --installed 2>/dev/null)"
    for c in $components; do
        grep -q "^$c" <<<"$installed" || rustup component add --toolchain "$channel" "$c" >/dev/null
    done
    installed="$(rustup +"$channel" target list --installed 2>/dev/null)"
    for t in $targets; do
        grep -qx "$t" <<<"$installed" || { echo "installing the $t target" >&2; rustup target add --toolchain "$channel" "$t" >/dev/null; }
    done
}

# The tools the test command needs.
# curl and jq, for the documented command lines, the example API client (examples/client.sh)
# and the scripts that talk to a running ingress.
ensure_http_tools() {
    local tool
    for tool in curl jq; do
        if ! command -v "$tool" >/dev/null 2>&1; then
            echo "installing $tool" >&2
            apt_install "$tool"
        fi
    done
}

ensure_test_tools() {
    ensure_postgresql
    ensure_http_tools
    ensure_tool moto cargo-lambda awscli schemathesis openapi-python-client
}

# The deployment checks' tools.
ensure_infra_tools() {
    ensure_rust_toolchain
    ensure_tool cargo-lambda cfn-lint aws-sam-cli checkov hadolint actionlint
}

# A free TCP port on 127.0.0.1 (free now; whoever binds it first gets it).
free_port() { python3 -S -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Waits until something listens on 127.0.0.1:PORT, for up to SECONDS (default 30).
wait_port() {
    local port="$1" tries=$(( ${2:-30} * 10 ))
    for _ in $(seq 1 "$tries"); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0; sleep 0.1; done
    echo "nothing listens on $port" >&2; return 1
}
