#!/usr/bin/env bash
# bench/run.sh — Switchyard's benchmark, one command from a fresh clone.
#
# Builds release binaries and starts, on loopback: the counter fixture (the
# upstream), Switchyard (temp SQLite) with the fixture registered as gateway
# "bench", and bench-relay (the bare-relay floor). Then, in one run:
#   1. memory: Switchyard's RSS idle, then holding 1,000 and 10,000 downstream
#      sessions that each hold a live upstream session (fresh process first,
#      so earlier load does not inflate it);
#   2. the same workload (tools/call echo {"text":"hello"}) direct to the
#      fixture, through the relay and through Switchyard, side by side (one
#      load tool, the targets taking turns of a quarter second), in rounds:
#      1 session sequential, 64 sessions x 64 concurrent, 1,000 sessions
#      round-robin at concurrency 64; medians and ratios;
#   3. the scaling curve: per-call latency with 100 / 1,000 / 10,000 open
#      sessions, calls round-robin over them, direct and through Switchyard
#      side by side, levels interleaved over rounds.
# Each run also records the CPU time every process used per call, which on
# a shared 2-core machine says more than throughput alone.
#
# Output: stdout, and bench/out/<timestamp>/ (summary.txt, results.jsonl,
# machine.txt, process logs); bench/out/latest points at the newest.
#
# Knobs (environment):
#   BENCH_QUICK=1          short run (~1 min): 1 round, 1 s runs, up to 1,000 sessions
#   BENCH_ROUNDS=3         interleaved rounds of the side-by-side scenarios
#   BENCH_DURATION=5       seconds each target is measured per side-by-side run
#   BENCH_SLICE=0.25       seconds per turn of a target in a side-by-side run
#   BENCH_WARMUP=1         seconds of unrecorded calls before each run
#   BENCH_COLD=20          fresh sessions per run for the cold-start figure
#   BENCH_SCALE_LEVELS="100 1000 10000"   open sessions for the scaling curve
#   BENCH_SCALE_DURATION=2 seconds each target is measured per scaling level
#   BENCH_SCALE_ROUNDS=3   interleaved rounds of the scaling curve
#   BENCH_MEM_LEVELS="1000 10000"         held sessions for the memory samples
#   SY_AUTH=token          Switchyard authenticates every request, as it does by
#                          default (its admin API token); otherwise --auth none,
#                          like the relay
#   BENCH_HOLD_TIMEOUT=300 seconds a holding load tool may live at most
#   BENCH_NO_BUILD=1       use the binaries already in target/release
set -euo pipefail

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
no_arguments "$0" "$@"

if [[ "${BENCH_QUICK:-0}" == 1 ]]; then
  ROUNDS=${BENCH_ROUNDS:-1}; DURATION=${BENCH_DURATION:-1}; WARMUP=${BENCH_WARMUP:-0.5}
  SCALE_LEVELS=${BENCH_SCALE_LEVELS:-"100 1000"}; SCALE_DURATION=${BENCH_SCALE_DURATION:-0.5}
  SCALE_ROUNDS=${BENCH_SCALE_ROUNDS:-1}; MEM_LEVELS=${BENCH_MEM_LEVELS:-"1000"}
else
  ROUNDS=${BENCH_ROUNDS:-3}; DURATION=${BENCH_DURATION:-5}; WARMUP=${BENCH_WARMUP:-1}
  SCALE_LEVELS=${BENCH_SCALE_LEVELS:-"100 1000 10000"}; SCALE_DURATION=${BENCH_SCALE_DURATION:-2}
  SCALE_ROUNDS=${BENCH_SCALE_ROUNDS:-3}; MEM_LEVELS=${BENCH_MEM_LEVELS:-"1000 10000"}
fi
COLD=${BENCH_COLD:-20}
SLICE=${BENCH_SLICE:-0.25}
HOLD_TIMEOUT=${BENCH_HOLD_TIMEOUT:-300}
ARGS='{"text":"hello"}'

STAMP=$(date +%Y%m%d-%H%M%S)
begin_run "$STAMP"
ln -sfn "$STAMP" "$ROOT/bench/out/latest"
RESULTS="$OUT/results.jsonl"
: > "$RESULTS"

{
  machine_description
  echo "command: ${BENCH_QUICK:+BENCH_QUICK=$BENCH_QUICK }bench/run.sh (rounds $ROUNDS, ${DURATION} s per target in turns of ${SLICE} s, ${WARMUP} s warm-up)"
} > "$OUT/machine.txt"
cat "$OUT/machine.txt"
echo

log "starting the fixture, Switchyard and bench-relay on 127.0.0.1"
start_fixture "$OUT"
start_switchyard "$OUT"
start_relay "$OUT"
log "fixture $FX_URL  switchyard $SY_URL  relay $RL_URL"
sleep 1

# 1. Memory first, on the fresh gateway: allocator high-water marks left by
# the throughput runs would otherwise be counted against the held sessions.
idle_sample "$RESULTS" "idle (started, gateway registered)" "$SY_PID"
target switchyard
for n in $MEM_LEVELS; do
  hold_and_sample "$RESULTS" "$n sessions held (each primed by one call)" "$SY_PID" \
    "$FX_BASE" "$HOLD_TIMEOUT" --url "$T_URL" ${T_HEADER:+--header "$T_HEADER"} \
    --tool "$T_TOOL" --args "$ARGS" --sessions "$n" --concurrency 64
  # The gateway hands freed memory back once a second per I/O thread, and
  # mimalloc purges a second after that (src/main.rs): give it both.
  sleep 4
  idle_sample "$RESULTS" "idle again ($n held sessions deleted)" "$SY_PID"
done

# 2. Side by side. Every run primes its sessions first, so measured calls
# are steady-state calls; first calls are what the cold-start figure measures.
# One load tool measures the three targets in turns of BENCH_SLICE seconds
# until each has had DURATION: the machine's speed drifts by tens of per
# cent over seconds, and runs one after another (what this script did until
# the fifth session) put that drift into every ratio.
declare -A SCENARIO=(
  [seq]="--sessions 1 --concurrency 1"
  [s64]="--sessions 64 --concurrency 64"
  [s1000]="--sessions 1000 --concurrency 64"
)
TARGETS=(direct relay switchyard)
for ((round = 1; round <= ROUNDS; round++)); do
  for sc in seq s64 s1000; do
    # Rotate the order each round: warm-up and cold starts run in this order.
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

# 3. Scaling: one call at a time, round-robin over N open sessions, direct
# and through Switchyard side by side (the check divides Switchyard's growth
# by direct's, which is only fair when both see the same minutes). Levels
# are interleaved over rounds, medians per level.
for ((round = 1; round <= SCALE_ROUNDS; round++)); do
  for n in $SCALE_LEVELS; do
    if ((round % 2)); then side_by_side direct switchyard; else side_by_side switchyard direct; fi
    load "$RESULTS" "round $round/$SCALE_ROUNDS scaling $n open" "${SIDE[@]}" --args "$ARGS" \
      --sessions "$n" --open-concurrency 64 --concurrency 1 --prime --duration "$SCALE_DURATION" \
      --slice "$SLICE" --warmup 0 --cold-start 0 --delete \
      --tag scenario=scaling --tag "open=$n" --tag "round=$round"
  done
done
sleep 4 # as for "idle again" above
idle_sample "$RESULTS" "idle after all runs" "$SY_PID"

echo
"$BIN/bench-summary" "$RESULTS" | tee "$OUT/summary.txt"
echo
echo "results: $OUT"
