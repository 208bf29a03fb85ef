#!/usr/bin/env bash
# bench/ab.sh — is a change to the gateway faster? Two or more Switchyard
# binaries, side by side with the bare relay, in one load tool.
#
#   bench/ab.sh before=/path/to/old/switchyard after=target/release/switchyard
#
# Starts the counter fixture, bench-relay and one Switchyard per NAME=BINARY
# (each with a temp SQLite catalog and the fixture registered), then runs
# rounds in which all of them take turns of a quarter second under the same
# load (AB_SESSIONS sessions, AB_CONCURRENCY workers, tools/call echo).
# Prints, per round, each gateway's throughput as a fraction of the relay's
# and its CPU per call; then per gateway the mean and median fraction and in
# how many rounds it beat the first one.
#
# Why like this: on a shared 2-core machine the speed drifts 10-30 % from
# one minute to the next, so only targets measured in the same turns compare,
# and a change worth a few per cent shows only as a direction over rounds
# (bench/RESULTS.md has runs where it did not). Build the binaries with the
# release profile (`cargo build --release`); fixture, relay and load tool
# come from target/release (built unless BENCH_NO_BUILD=1).
#
# Knobs (environment):
#   AB_ROUNDS=8  AB_DURATION=3   rounds, and seconds each target runs per round
#   AB_SESSIONS=64  AB_CONCURRENCY=64
#   AB_AUTH=token                the gateways authenticate every request (their
#                                minted admin API token); otherwise --auth none
#   BENCH_NO_BUILD=1             use the binaries already in target/release
set -euo pipefail

case "${1:-}" in
  -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
  "") echo "usage: bench/ab.sh NAME=BINARY NAME=BINARY... (see --help)" >&2; exit 2 ;;
esac
NAMES=(); BINARIES=()
for arg in "$@"; do
  name=${arg%%=*} binary=${arg#*=}
  if [[ "$arg" != *=* || ! "$name" =~ ^[A-Za-z0-9_-]+$ ]]; then
    echo "ab.sh: '$arg' is not NAME=BINARY (NAME of letters, digits, - and _)" >&2; exit 2
  fi
  if [[ ! -x "$binary" ]]; then echo "ab.sh: $binary is not an executable" >&2; exit 2; fi
  if [[ " ${NAMES[*]} " == *" $name "* || "$name" == relay ]]; then
    echo "ab.sh: the name '$name' is taken" >&2; exit 2
  fi
  NAMES+=("$name"); BINARIES+=("$(cd "$(dirname "$binary")" && pwd)/$(basename "$binary")")
done

# Binaries are resolved from the caller's directory, before moving to the root.
ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

ROUNDS=${AB_ROUNDS:-8}
DURATION=${AB_DURATION:-3}
SESSIONS=${AB_SESSIONS:-64}
CONCURRENCY=${AB_CONCURRENCY:-64}

begin_run "ab-$(date +%Y%m%d-%H%M%S)"
start_fixture "$OUT"
start_relay "$OUT"

TARGETS=(--target "relay,$RL_URL,bench-echo,proxy=$RL_PID")
for i in "${!NAMES[@]}"; do
  name=${NAMES[$i]} auth=(--auth none) header=
  if [[ ${AB_AUTH:-none} == token ]]; then auth=(--admin-token-file "$TMP/$name.token"); fi
  NO_COLOR=1 "${BINARIES[$i]}" serve --host 127.0.0.1 --port 0 "${auth[@]}" --allow-private-upstreams \
    --database-url "sqlite://$TMP/$name.db" > "$OUT/$name.log" 2>&1 &
  pid=$!; PIDS+=("$pid")
  url=$(first_match "$OUT/$name.log" 'http://127\.0\.0\.1:[0-9]+/mcp' 30 "$pid")
  if [[ ${AB_AUTH:-none} == token ]]; then header="Authorization: Bearer $(< "$TMP/$name.token")"; fi
  curl -fsS -X POST "${url%/mcp}/gateways" -H 'content-type: application/json' \
    ${header:+-H "$header"} -d "{\"name\":\"bench\",\"url\":\"$FX_URL\"}" > /dev/null
  TARGETS+=(--target "$name,$url,bench-echo,proxy=$pid${header:+,header=$header}")
  log "$name: ${BINARIES[$i]} at $url"
done

{
  machine_description
  echo "command: bench/ab.sh $* (rounds $ROUNDS, ${DURATION} s per target per round, $SESSIONS sessions x $CONCURRENCY concurrent, auth ${AB_AUTH:-none})"
} > "$OUT/machine.txt"
cat "$OUT/machine.txt"

RESULTS="$OUT/results.jsonl"
: > "$RESULTS"
for ((round = 1; round <= ROUNDS; round++)); do
  "$BIN/switchyard-bench" --json "${TARGETS[@]}" --watch "upstream=$FX_PID" \
    --args '{"text":"hello"}' --sessions "$SESSIONS" --concurrency "$CONCURRENCY" --prime \
    --duration "$DURATION" --warmup 1 --cold-start 0 --delete --tag "round=$round" \
    >> "$RESULTS" 2> "$TMP/load.err" || { log "round $round failed: $(tail -3 "$TMP/load.err")"; exit 1; }
done

# One JSON report per target and round, in target order: the relay's first.
awk -v names="${NAMES[*]}" '
  function field(key) { return match($0, "\"" key "\":[0-9.]+") ? substr($0, RSTART + length(key) + 3, RLENGTH - length(key) - 3) : 0 }
  function target() { return match($0, /"target":"[^"]*"/) ? substr($0, RSTART + 10, RLENGTH - 11) : "" }
  function median(a, n,   i, j, t) {
    for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  BEGIN { k = split(names, name, " ") }
  {
    t = target(); rps = field("throughput_rps"); calls = field("calls")
    proxy = match($0, /"proxy":[0-9.e-]+/) ? substr($0, RSTART + 8, RLENGTH - 8) : 0
    if (t == "relay") { round++; relay[round] = rps; line[round] = sprintf("round %2d  relay %6.0f calls/s", round, rps); next }
    ratio[t, round] = relay[round] > 0 ? rps / relay[round] : 0
    line[round] = line[round] sprintf("  |  %s %.3f of relay, %5.1f µs CPU/call", t, ratio[t, round], calls > 0 ? proxy * 1e6 / calls : 0)
  }
  END {
    for (r = 1; r <= round; r++) print line[r]
    print ""
    for (i = 1; i <= k; i++) {
      n = 0; sum = 0; wins = 0
      for (r = 1; r <= round; r++) { n++; v[n] = ratio[name[i], r]; sum += v[n]; if (i > 1 && ratio[name[i], r] > ratio[name[1], r]) wins++ }
      printf "%-12s mean %.3f  median %.3f of the relay", name[i], sum / n, median(v, n)
      if (i > 1) printf "  (above %s in %d of %d rounds)", name[1], wins, n
      print ""
    }
  }' "$RESULTS" | tee "$OUT/summary.txt"
echo
echo "results: $OUT"
