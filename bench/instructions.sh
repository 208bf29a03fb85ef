#!/usr/bin/env bash
# bench/instructions.sh — what the gateway and the bare relay execute per
# call, counted by valgrind (callgrind), not timed. On a shared 2-core VM the
# CPU time per call drifts by 10–30 % from one minute to the next; an
# instruction count does not (repeat runs agree to within about 0.5 %), so
# a change of a few per cent shows here when bench/run.sh cannot see it.
#
# Starts the counter fixture natively, then, one at a time under callgrind
# (instrumentation off while starting): bench-relay on hyper-util's client
# (the floor; the gateway's client for http:// upstreams), bench-relay on
# reqwest (what that client library costs per call), and Switchyard (temp
# SQLite, the fixture registered as gateway "bench"). For each: 1,000 and
# then 3,000 tools/call over 64 fresh sessions at concurrency 64, counted
# separately; the difference divided by 2,000 is the cost of one call with
# session setup taken out, and what is left of the first count is the cost
# of one session (initialize, initialized, first call, DELETE).
#
# Counts are instructions executed in user space (callgrind's Ir): kernel
# time (about 40 µs per call here, the same for both) is not included, and
# neither are cache misses or cross-thread effects, so this complements
# bench/run.sh rather than replacing it. Threads run serialized under
# valgrind, so the counts do not depend on the machine's load.
#
# Knobs (environment):
#   BENCH_NO_BUILD=1   use the binaries already in target/release
# Needs valgrind (installed with apt-get when missing and run as root).
set -euo pipefail

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
no_arguments "$0" "$@"

if ! command -v valgrind > /dev/null; then
  if [[ $(id -u) == 0 ]] && command -v apt-get > /dev/null; then
    log "installing valgrind"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q valgrind > /dev/null
  else
    echo "instructions.sh needs valgrind (apt-get install valgrind)" >&2
    exit 2
  fi
fi

begin_run "instructions-$(date +%Y%m%d-%H%M%S)"
machine_description > "$OUT/machine.txt"
cat "$OUT/machine.txt"
echo

start_fixture "$OUT"
ARGS='{"text":"hello"}'
SMALL=1000
LARGE=3000
SESSIONS=64

# counted NAME URL PID: runs the two counted loads against a process under
# callgrind and prints "NAME Ir/call Ir/session".
counted() {
  local name=$1 url=$2 pid=$3 n
  # Warm up (connection pools, allocator) before counting.
  "$BIN/switchyard-bench" --url "$url" --tool bench-echo --args "$ARGS" --sessions "$SESSIONS" \
    --concurrency 64 --calls 500 --prime --warmup 0 --cold-start 0 --delete --timeout 120 \
    > "$OUT/$name-warmup.txt" 2>&1
  callgrind_control -i on "$pid" > /dev/null
  for n in $SMALL $LARGE; do
    callgrind_control -z "$pid" > /dev/null
    "$BIN/switchyard-bench" --url "$url" --tool bench-echo --args "$ARGS" --sessions "$SESSIONS" \
      --concurrency 64 --calls "$n" --prime --warmup 0 --cold-start 0 --delete --timeout 120 \
      > "$OUT/$name-$n.txt" 2>&1
    sleep 0.5
    callgrind_control -d "$pid" > /dev/null
  done
  callgrind_control -i off "$pid" > /dev/null
  if grep -q ' [1-9][0-9,]* errors' "$OUT/$name-$SMALL.txt" "$OUT/$name-$LARGE.txt"; then
    log "$name: the load saw errors; see $OUT/$name-*.txt"
  fi
}

# ir FILE: total instructions of one callgrind dump.
# (awk reads to the end: an early exit would fail the pipeline under pipefail)
ir() { callgrind_annotate "$1" 2> /dev/null | awk '/PROGRAM TOTALS/ && !n++ { gsub(",", "", $1); print $1 }'; }

# under_callgrind NAME ARGS...: starts ARGS under callgrind; sets VG_PID.
under_callgrind() {
  local name=$1
  shift
  valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$OUT/$name.callgrind" \
    --log-file="$OUT/$name.valgrind.log" "$@" > "$OUT/$name.log" 2>&1 &
  VG_PID=$!
  PIDS+=("$VG_PID")
}

# stop PID: ends a process started here.
stop() {
  kill -TERM "$1" 2> /dev/null || true
  for _ in $(seq 100); do kill -0 "$1" 2> /dev/null || return 0; sleep 0.1; done
  kill -KILL "$1" 2> /dev/null || true
}

declare -A PER_CALL PER_SESSION
measure() {
  local name=$1 small large
  small=$(ir "$OUT/$name.callgrind.1")
  large=$(ir "$OUT/$name.callgrind.2")
  PER_CALL[$name]=$(((large - small) / (LARGE - SMALL)))
  PER_SESSION[$name]=$(((small - PER_CALL[$name] * SMALL) / SESSIONS))
  log "$name: ${PER_CALL[$name]} instructions per call, ${PER_SESSION[$name]} per session"
}

# The relay on hyper-util (the floor, the gateway's client stack), and on
# reqwest (what the client library alone costs per call).
for client in hyper reqwest; do
  name=relay; [[ $client == hyper ]] || name=relay-$client
  log "bench-relay --client $client under callgrind"
  under_callgrind "$name" "$BIN/bench-relay" --listen 127.0.0.1:0 --upstream "$FX_URL" \
    --strip-prefix bench- --client "$client"
  RL_URL=$(first_match "$OUT/$name.log" 'http://127\.0\.0\.1:[0-9]+/mcp' 60 "$VG_PID")
  counted "$name" "$RL_URL" "$VG_PID"
  stop "$VG_PID"
  measure "$name"
done

log "switchyard under callgrind"
NO_COLOR=1 under_callgrind switchyard "$BIN/switchyard" serve --host 127.0.0.1 --port 0 --auth none \
  --allow-private-upstreams --database-url "sqlite://$TMP/switchyard.db"
SY_URL=$(first_match "$OUT/switchyard.log" 'http://127\.0\.0\.1:[0-9]+/mcp' 120 "$VG_PID")
curl -fsS -X POST "${SY_URL%/mcp}/gateways" -H 'content-type: application/json' \
  -d "{\"name\":\"bench\",\"url\":\"$FX_URL\"}" > "$OUT/register-switchyard.json"
counted switchyard "$SY_URL" "$VG_PID"
stop "$VG_PID"
measure switchyard

{
  echo "Instructions executed in user space per call (callgrind Ir; $SESSIONS sessions, concurrency 64,"
  echo "marginal cost of $((LARGE - SMALL)) calls) and per session (initialize, initialized, first call, DELETE)"
  printf '%-12s %14s %16s %14s\n' target "Ir per call" "Ir per session" "vs relay"
  for t in relay relay-reqwest switchyard; do
    printf '%-12s %14s %16s %13sx\n' "$t" "${PER_CALL[$t]}" "${PER_SESSION[$t]}" \
      "$(awk -v a="${PER_CALL[$t]}" -v b="${PER_CALL[relay]}" 'BEGIN { printf "%.2f", a / b }')"
  done
} | tee "$OUT/summary.txt"
echo
echo "results: $OUT (callgrind_annotate $OUT/switchyard.callgrind.2 for the functions)"
