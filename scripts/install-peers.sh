#!/usr/bin/env bash
# Installs the interop peers (real MCP clients/servers from other implementations)
# into target/peers/ under the repository root. Idempotent and safe to run
# concurrently (several test binaries may call it at once): all work happens
# under an exclusive flock on target/peers/.lock, and each peer is skipped when
# its stamp file matches the pinned versions below.
#
# Layout:
#   target/peers/.lock                lock file (flock)
#   target/peers/py/                  Python venv with the MCP Python SDK
#   target/peers/py/.switchyard-stamp pins the venv was built from
#
# Environment:
#   PEERS_PYTHON   interpreter used to create the venv (default: python3; needs >= 3.11)
#   PEERS_LOCK_TIMEOUT  seconds to wait for the lock (default: 1800)
#
# Only package registries are reachable from these machines: everything here
# comes from PyPI (and, later, npm) through the ordinary clients.
set -euo pipefail

SCRIPT_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)"
REPO_ROOT="$(cd -- "$SCRIPT_DIR/.." && pwd -P)"
PEERS_DIR="$REPO_ROOT/target/peers"
PY_VENV="$PEERS_DIR/py"
PY_STAMP="$PY_VENV/.switchyard-stamp"
PEERS_PYTHON="${PEERS_PYTHON:-python3}"
PEERS_LOCK_TIMEOUT="${PEERS_LOCK_TIMEOUT:-1800}"

log() { printf 'install-peers: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------------------
# Python peer: the MCP Python SDK 2.x client (`mcp.Client`).
#
# mcp 2.3.0 brings httpx2 (a separate distribution, imported by the client
# scripts directly) and mcp-types. The whole resolved set is pinned so the
# interop tests see the same peer on every machine; bump them together.
# ---------------------------------------------------------------------------
PY_REQUIREMENTS="$(cat <<'EOF'
mcp==2.3.0
mcp-types==2.3.0
httpx2==2.16.2
httpcore2==2.16.2
anyio==4.16.0
annotated-types==0.8.0
attrs==26.1.0
cffi==2.1.1
click==8.5.1
cryptography==50.0.2
h11==0.16.0
idna==3.20
jsonschema==4.26.0
jsonschema-specifications==2025.9.1
opentelemetry-api==1.45.2
pycparser==3.12
pydantic==2.14.4
pydantic_core==2.50.5
PyJWT==2.15.1
python-multipart==0.0.34
referencing==0.37.0
rpds-py==2026.9.1
sse-starlette==3.7.0
starlette==1.10.0
truststore==0.10.5
typing-inspection==0.4.5
typing_extensions==4.16.0
uvicorn==0.54.0
EOF
)"

py_base_version() {
    "$PEERS_PYTHON" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])'
}

py_stamp_content() {
    # The stamp records the pins and the base interpreter's version, so a
    # change of either rebuilds the venv.
    printf 'python %s\n%s\n' "$(py_base_version)" "$PY_REQUIREMENTS"
}

make_venv() {
    if "$PEERS_PYTHON" -m venv "$PY_VENV"; then
        return 0
    fi
    # Debian splits ensurepip/venv into python3-venv; install it when we can.
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        log "python3 -m venv failed; installing Debian's python3-venv and retrying"
        rm -rf "$PY_VENV"
        apt-get update -qq >&2 || true
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >&2
        "$PEERS_PYTHON" -m venv "$PY_VENV"
        return 0
    fi
    die "could not create a venv with $PEERS_PYTHON (on Debian: apt-get install python3-venv)"
}

install_python_peers() {
    command -v "$PEERS_PYTHON" >/dev/null 2>&1 || die "$PEERS_PYTHON not found (set PEERS_PYTHON)"
    "$PEERS_PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
        || die "$PEERS_PYTHON is $(py_base_version); the MCP Python SDK 2.x peer needs Python >= 3.11 (set PEERS_PYTHON)"

    local want
    want="$(py_stamp_content)"
    if [ -f "$PY_STAMP" ] && [ -x "$PY_VENV/bin/python" ] \
        && [ "$(cat "$PY_STAMP")" = "$want" ] \
        && "$PY_VENV/bin/python" -c 'import mcp, httpx2' >/dev/null 2>&1; then
        log "python peers up to date ($PY_VENV)"
        return 0
    fi

    log "creating python venv at $PY_VENV ($PEERS_PYTHON $(py_base_version))"
    rm -rf "$PY_VENV"
    make_venv

    local req="$PY_VENV/requirements.txt"
    printf '%s\n' "$PY_REQUIREMENTS" >"$req"
    log "installing mcp==2.3.0 and pinned dependencies from PyPI"
    PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 \
        "$PY_VENV/bin/python" -m pip install --quiet --retries 5 --timeout 60 -r "$req" >&2 \
        || die "pip install failed (the venv is left without a stamp and will be rebuilt next run)"
    "$PY_VENV/bin/python" -c 'import mcp, httpx2; from mcp import Client; from mcp.client.streamable_http import streamable_http_client' \
        || die "the installed MCP Python SDK does not import"

    # Written last: its presence means the venv is complete.
    printf '%s\n' "$want" >"$PY_STAMP.tmp"
    mv -f "$PY_STAMP.tmp" "$PY_STAMP"
    log "python peers installed ($("$PY_VENV/bin/python" -m pip show mcp 2>/dev/null | sed -n 's/^Version: /mcp /p'))"
}

# ---------------------------------------------------------------------------
# Node peers: PLACEHOLDER, intentionally does nothing yet.
#
# To be added here later (see shared peers notes for the versions that work):
# Node 22 from the npm `node` package, @modelcontextprotocol/conformance,
# @modelcontextprotocol/server-everything, @modelcontextprotocol/inspector,
# installed under target/peers/node/ with their own stamp file, following the
# same pattern as install_python_peers.
# ---------------------------------------------------------------------------
install_node_peers() {
    :
}

main() {
    mkdir -p "$PEERS_DIR"
    exec 9>"$PEERS_DIR/.lock"
    if ! flock -n 9; then
        log "waiting for another install-peers run (lock $PEERS_DIR/.lock)"
        flock -w "$PEERS_LOCK_TIMEOUT" 9 || die "timed out after ${PEERS_LOCK_TIMEOUT}s waiting for $PEERS_DIR/.lock"
    fi

    install_python_peers
    install_node_peers

    log "done"
}

main "$@"
