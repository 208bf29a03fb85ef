#!/usr/bin/env bash
# Makes sure a C compiler is there: rustc links through the system `cc`, and
# build scripts (ring, mimalloc, SQLite) compile C, while a Rust toolchain on
# a bare image may come without one. As root with apt-get it installs
# build-essential; otherwise it says what to install and fails.
set -euo pipefail
command -v cc >/dev/null 2>&1 && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "== apt-get install build-essential (no C compiler found)" >&2
    apt-get update -qq >&2 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq build-essential >&2
else
    echo "no C compiler (cc) found; install one (on Debian: apt-get install build-essential)" >&2
    exit 1
fi
