#!/usr/bin/env bash
# bench/compare-contextforge.sh — Switchyard against ContextForge 1.1.0 (the
# reference system), side by side in one run, with the same load tool and
# the same upstream. Optional and slow: not part of bench/run.sh or CI.
#
# Installs mcp-contextforge-gateway==1.1.0 into target/contextforge/venv
# (Python >= 3.12; the pyenv 3.12.1 of these machines, or CF_PYTHON), sets it
# up as shared/peers/README.md describes (init_secrets, stateful sessions,
# rate limiting off, loopback upstreams allowed, an admin JWT), starts it,
# the counter fixture and Switchyard (with its default authentication, as
# ContextForge has its own) on loopback, registers the fixture in
# both as gateway "bench" (STREAMABLEHTTP), then measures the scenarios over
# rounds, direct / bench-relay / switchyard / contextforge taking turns, and
# prints medians and ratios (the "switchyard vs contextforge" rows; "relay vs
# contextforge" is the ceiling any gateway could reach on this machine),
# plus RSS of both gateways idle and with CF_MEM_LEVELS held sessions.
#
# Knobs (environment):
#   CF_ROUNDS=2  CF_DURATION=10  CF_WARMUP=2  CF_COLD=3
#   CF_SLICE=5                    seconds per turn of a target (all four take turns)
#   CF_SCENARIOS="seq s64"        seq = 1 session sequential, s64 = 64 x 64
#   CF_MEM_LEVELS="100"           held sessions for the memory samples
#   CF_PYTHON=/path/to/python3.12 interpreter for the venv
#   CF_START_TIMEOUT=240          seconds ContextForge may take to come up
#   BENCH_NO_BUILD=1              use the binaries already in target/release
set -euo pipefail

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
no_arguments "$0" "$@"

ROUNDS=${CF_ROUNDS:-2}
DURATION=${CF_DURATION:-10}
WARMUP=${CF_WARMUP:-2}
COLD=${CF_COLD:-3}
SLICE=${CF_SLICE:-5}
SCENARIOS=${CF_SCENARIOS:-"seq s64"}
MEM_LEVELS=${CF_MEM_LEVELS:-"100"}
START_TIMEOUT=${CF_START_TIMEOUT:-240}
CF_VERSION=1.1.0
ARGS='{"text":"hello"}'
# ContextForge can be slow under load; give each call time rather than count timeouts.
LOAD_TIMEOUT=60

begin_run "contextforge-$(date +%Y%m%d-%H%M%S)"
RESULTS="$OUT/results.jsonl"
: > "$RESULTS"

# --- ContextForge install (idempotent) ---
VENV="$ROOT/target/contextforge/venv"
if ! "$VENV/bin/python" -c "import importlib.metadata as m; assert m.version('mcp-contextforge-gateway') == '$CF_VERSION'" 2>/dev/null; then
  PY=${CF_PYTHON:-}
  if [[ -z "$PY" ]] && command -v pyenv > /dev/null && [[ -x "$(pyenv root)/versions/3.12.1/bin/python3" ]]; then
    PY="$(pyenv root)/versions/3.12.1/bin/python3"
  fi
  PY=${PY:-$(command -v python3.12 || true)}
  if [[ -z "$PY" ]]; then
    log "no Python 3.12 found: set CF_PYTHON"; exit 1
  fi
  log "installing mcp-contextforge-gateway==$CF_VERSION into $VENV (takes a few minutes)"
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install -q "mcp-contextforge-gateway==$CF_VERSION"
fi

{
  machine_description
  echo "command: bench/compare-contextforge.sh (rounds $ROUNDS, ${DURATION} s per target in turns of ${SLICE} s, scenarios $SCENARIOS)"
  echo "contextforge: mcp-contextforge-gateway $CF_VERSION, $("$VENV/bin/python" --version), mcpgateway CLI defaults (it forks 4 child processes; RSS and CPU include them)"
  echo "auth: both gateways authenticate every request (ContextForge: an admin JWT; Switchyard: its default auth, the admin API token its first start mints); the relay has none"
} > "$OUT/machine.txt"
cat "$OUT/machine.txt"
echo

start_fixture "$OUT"
# Both gateways authenticate every request, as each does out of the box:
# ContextForge a JWT, Switchyard the admin API token it mints.
SY_AUTH=token start_switchyard "$OUT"
start_relay "$OUT"

# --- ContextForge on a free loopback port, its state in a scratch folder ---
CF_DIR="$TMP/contextforge"
mkdir -p "$CF_DIR"
CF_PORT=$("$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
(cd "$CF_DIR" && "$VENV/bin/python" -m mcpgateway.scripts.init_secrets --output .env --force > /dev/null)
log "starting ContextForge on 127.0.0.1:$CF_PORT"
(
  cd "$CF_DIR"
  export USE_STATEFUL_SESSIONS=true RATE_LIMITING_ENABLED=false SSRF_ALLOW_LOCALHOST=true \
    DATABASE_URL="sqlite:///$CF_DIR/contextforge.db" CACHE_TYPE=memory \
    MCPGATEWAY_UI_ENABLED=false MCPGATEWAY_ADMIN_API_ENABLED=true LOG_LEVEL=WARNING
  exec "$VENV/bin/mcpgateway" --host 127.0.0.1 --port "$CF_PORT"
) > "$OUT/contextforge.log" 2>&1 &
CF_PID=$!; PIDS+=("$CF_PID")
CF_BASE="http://127.0.0.1:$CF_PORT"
for ((i = 0; ; i++)); do
  if curl -fsS "$CF_BASE/health" > /dev/null 2>&1; then break; fi
  if ((i >= START_TIMEOUT)) || ! kill -0 "$CF_PID" 2>/dev/null; then
    log "ContextForge did not come up; see $OUT/contextforge.log"; exit 1
  fi
  sleep 1
done
log "ContextForge up after ~${i} s"
TOKEN=$(cd "$CF_DIR" && "$VENV/bin/python" -m mcpgateway.utils.create_jwt_token \
  --username admin@example.com 2> /dev/null | tail -1)
AUTH="Authorization: Bearer $TOKEN"
curl -fsS -X POST "$CF_BASE/gateways" -H "$AUTH" -H 'content-type: application/json' \
  -d "{\"name\":\"bench\",\"url\":\"$FX_URL\",\"transport\":\"STREAMABLEHTTP\"}" \
  > "$OUT/register-contextforge.json"
CF_URL="$CF_BASE/mcp"
log "fixture $FX_URL  switchyard $SY_URL  relay $RL_URL  contextforge $CF_URL"
sleep 2

for t in switchyard contextforge; do
  target "$t"
  idle_sample "$RESULTS" "$t idle (gateway registered)" "$T_PID"
  for n in $MEM_LEVELS; do
    hold_and_sample "$RESULTS" "$t, $n sessions held" "$T_PID" "$FX_BASE" 600 \
      --url "$T_URL" --tool "$T_TOOL" ${T_HEADER:+--header "$T_HEADER"} --args "$ARGS" \
      --watch "proxy=$T_PID" --watch "upstream=$FX_PID" --sessions "$n" --concurrency 16
  done
done

declare -A SCENARIO=(
  [seq]="--sessions 1 --concurrency 1"
  [s64]="--sessions 64 --concurrency 64"
  [s1000]="--sessions 1000 --concurrency 64"
)
# The relay shows the ceiling of any gateway's ratio to ContextForge here.
# One load tool measures all four in turns of SLICE seconds (see bench/run.sh
# for why). ContextForge takes 3-4 s per call at 64 concurrent: a turn must
# span a few of those, or each of its turns is one burst of 64 calls arriving
# together, which is not its steady state. Every target gets the same turns.
TARGETS=(direct relay switchyard contextforge)
for ((round = 1; round <= ROUNDS; round++)); do
  for sc in $SCENARIOS; do
    ORDER=()
    for ((i = 0; i < ${#TARGETS[@]}; i++)); do
      ORDER+=("${TARGETS[$(((i + round - 1) % ${#TARGETS[@]}))]}")
    done
    side_by_side "${ORDER[@]}"
    # shellcheck disable=SC2086 # SCENARIO values are flag lists
    load "$RESULTS" "round $round/$ROUNDS $sc" "${SIDE[@]}" --args "$ARGS" \
      ${SCENARIO[$sc]} --prime --duration "$DURATION" --slice "$SLICE" \
      --warmup "$WARMUP" --cold-start "$COLD" --delete \
      --tag "scenario=$sc" --tag "round=$round"
  done
done

echo
"$BIN/bench-summary" --no-targets "$RESULTS" | tee "$OUT/summary.txt"
echo
echo "results: $OUT"
