#!/usr/bin/env bash
# The whole test suite, as a newcomer or CI runs it: installs the interop
# peers (official MCP SDKs, pinned) into target/peers/, then runs every test
# of the workspace. Uses cargo-nextest when present (one summary line over
# all tests, each test in its own process), plain `cargo test` otherwise.
# Extra arguments go to the test runner.
set -euo pipefail
cd "$(dirname -- "${BASH_SOURCE[0]}")/.."
bash scripts/ensure-cc.sh
bash scripts/install-peers.sh
# The peers are installed now: a test that finds them missing must fail, not skip.
export SWITCHYARD_REQUIRE_PEERS=1
if cargo nextest --version >/dev/null 2>&1; then
    exec cargo nextest run --workspace --locked --no-fail-fast "$@"
else
    exec cargo test --workspace --locked --no-fail-fast "$@"
fi
