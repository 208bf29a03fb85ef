# bench/lib.sh — shell helpers shared by bench/run.sh and
# bench/compare-contextforge.sh: process bookkeeping (every process started
# is stopped on exit), waiting for output, reading RSS and our JSON reports,
# and starting the fixture and Switchyard on loopback. Sourced, not run.

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# Every process a script starts goes in PIDS; cleanup stops them all, then
# removes TMP. Stopping is bounded: TERM, 5 s, then KILL.
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  if [[ -n "${TMP:-}" ]]; then rm -rf "$TMP"; fi
}

# first_match FILE REGEX SECONDS PID: prints the first match once it
# appears; gives up after SECONDS, or as soon as process PID has exited.
first_match() {
  local file=$1 re=$2 secs=$3 pid=$4 i m
  for ((i = 0; i < secs * 10; i++)); do
    m=$(grep -o -m1 -E "$re" "$file" 2>/dev/null || true)
    if [[ -n "$m" ]]; then printf '%s\n' "$m"; return 0; fi
    if ! kill -0 "$pid" 2>/dev/null; then
      log "process $pid exited before writing /$re/ to $file:"; tail -5 "$file" >&2 || true
      return 1
    fi
    sleep 0.1
  done
  log "timed out waiting for /$re/ in $file:"; tail -5 "$file" >&2 || true
  return 1
}

rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

# tree_rss_kb PID: RSS of PID and all its descendants (for servers that fork workers).
tree_rss_kb() {
  local total=0 pid kids
  total=$(rss_kb "$1" 2>/dev/null || echo 0)
  kids=$(cat /proc/"$1"/task/*/children 2>/dev/null || true)
  for pid in $kids; do total=$((total + $(tree_rss_kb "$pid"))); done
  echo "$total"
}

# json_num FILE KEY: a top-level number from our own one-line JSON reports.
json_num() { grep -o "\"$2\":[0-9.]*" "$1" | head -1 | cut -d: -f2; }

# fixture_live FIXTURE_BASE: live sessions the counter fixture holds.
fixture_live() { curl -fsS "$1/stats" | grep -o '"live_sessions":[0-9]*' | cut -d: -f2; }

machine_description() {
  echo "date:    $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "commit:  $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$( [[ -n "$(git status --porcelain 2>/dev/null)" ]] && echo ' (work tree dirty)')"
  echo "cpus:    $(nproc) x $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
  echo "memory:  $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
  echo "kernel:  $(uname -r)"
}

# begin_run NAME: the run's folder bench/out/NAME (sets OUT), a scratch
# folder (TMP) and the traps that stop every process started on exit; then
# the release build (sets BIN) and the file-descriptor limit.
begin_run() {
  OUT="$ROOT/bench/out/$1"
  mkdir -p "$OUT"
  TMP=$(mktemp -d)
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  build_release
  raise_fd_limit
}

# build_release: the release binaries (unless BENCH_NO_BUILD=1); sets BIN.
build_release() {
  if [[ "${BENCH_NO_BUILD:-0}" != 1 ]]; then
    log "building release binaries"
    cargo build --release -p switchyard -p switchyard-fixtures -p switchyard-bench
  fi
  BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release"
}

# raise_fd_limit: held sessions and 64-connection pools need more than 1,024.
raise_fd_limit() {
  local hard
  hard=$(ulimit -Hn)
  if [[ "$hard" == unlimited ]]; then hard=1048576; fi
  ulimit -n "$hard" 2>/dev/null || ulimit -n 65536 2>/dev/null || true
  log "ulimit -n $(ulimit -n)"
}

# start_fixture OUT: sets FX_PID, FX_URL, FX_BASE.
start_fixture() {
  "$BIN/switchyard-fixture" --listen 127.0.0.1:0 > "$1/fixture.log" 2>&1 &
  FX_PID=$!; PIDS+=("$FX_PID")
  FX_URL=$(first_match "$1/fixture.log" 'http://127\.0\.0\.1:[0-9]+/mcp' 10 "$FX_PID")
  FX_BASE=${FX_URL%/mcp}
}

# start_switchyard OUT: Switchyard with a temp SQLite catalog and the fixture
# registered as gateway "bench"; sets SY_PID, SY_URL, SY_BASE and SY_HEADER.
# By default `--auth none` (loopback, the load is ours: what the bare relay
# does too). With SY_AUTH=token it authenticates every request as it does
# out of the box, with the admin API token its first start mints, and
# SY_HEADER is that token's Authorization header line (empty otherwise).
start_switchyard() {
  local auth=(--auth none) token_file="$TMP/switchyard-admin.token"
  SY_HEADER=
  if [[ ${SY_AUTH:-none} == token ]]; then
    auth=(--admin-token-file "$token_file")
  fi
  NO_COLOR=1 "$BIN/switchyard" serve --host 127.0.0.1 --port 0 "${auth[@]}" --allow-private-upstreams \
    --database-url "sqlite://$TMP/switchyard.db" > "$1/switchyard.log" 2>&1 &
  SY_PID=$!; PIDS+=("$SY_PID")
  SY_URL=$(first_match "$1/switchyard.log" 'http://127\.0\.0\.1:[0-9]+/mcp' 30 "$SY_PID")
  SY_BASE=${SY_URL%/mcp}
  if [[ ${SY_AUTH:-none} == token ]]; then
    # Minted before the listener opens, so it is there by now.
    [[ -s $token_file ]] || { log "switchyard wrote no admin token to $token_file"; return 1; }
    SY_HEADER="Authorization: Bearer $(< "$token_file")"
  fi
  curl -fsS -X POST "$SY_BASE/gateways" -H 'content-type: application/json' \
    ${SY_HEADER:+-H "$SY_HEADER"} \
    -d "{\"name\":\"bench\",\"url\":\"$FX_URL\"}" > "$1/register-switchyard.json"
}

# start_relay OUT: bench-relay (the bare-relay floor) in front of the
# fixture; sets RL_PID and RL_URL.
start_relay() {
  "$BIN/bench-relay" --listen 127.0.0.1:0 --upstream "$FX_URL" --strip-prefix bench- \
    > "$1/relay.log" 2>&1 &
  RL_PID=$!; PIDS+=("$RL_PID")
  RL_URL=$(first_match "$1/relay.log" 'http://127\.0\.0\.1:[0-9]+/mcp' 10 "$RL_PID")
}

# target NAME: what the load tool needs to reach one target, for direct,
# relay, switchyard, and contextforge (CF_URL, CF_PID and the AUTH header
# line, set by compare-contextforge.sh): sets T_URL, T_TOOL, T_PID (empty
# for direct: only the upstream is watched) and T_HEADER (empty: none).
target() {
  T_PID=; T_HEADER=
  case $1 in
    direct) T_URL=$FX_URL; T_TOOL=echo ;;
    relay) T_URL=$RL_URL; T_TOOL=bench-echo; T_PID=$RL_PID ;;
    switchyard) T_URL=$SY_URL; T_TOOL=bench-echo; T_PID=$SY_PID; T_HEADER=$SY_HEADER ;;
    contextforge) T_URL=$CF_URL; T_TOOL=bench-echo; T_PID=$CF_PID; T_HEADER=$AUTH ;;
    *) echo "target: unknown target $1" >&2; return 2 ;;
  esac
}

# side_by_side NAME...: sets SIDE to the flags for one load tool measuring
# these targets (see `target`) in turns, the upstream fixture watched for
# all of them.
side_by_side() {
  SIDE=(--watch "upstream=$FX_PID")
  local t
  for t in "$@"; do
    target "$t" || return
    SIDE+=(--target "$t,$T_URL,$T_TOOL${T_PID:+,proxy=$T_PID}${T_HEADER:+,header=$T_HEADER}")
  done
}

# load RESULTS LABEL ARGS...: one load-tool run; its JSON reports (one per
# target with --target) are appended to RESULTS and summarized on stderr. A
# run that fails outright is logged and skipped, so one bad run does not
# lose the others.
load() {
  local results=$1 label=$2 out rc=0 line
  shift 2
  out=$("$BIN/switchyard-bench" --json --timeout "${LOAD_TIMEOUT:-30}" "$@" 2> "$TMP/load.err") || rc=$?
  if [[ -z "$out" ]]; then
    log "$label: load tool failed (exit $rc): $(tail -3 "$TMP/load.err")"
    return 0
  fi
  printf '%s\n' "$out" >> "$results"
  # One report per line: one per target in a side-by-side run.
  while IFS= read -r line; do
    printf '%s\n' "$line" > "$TMP/last.json"
    log "$label$(grep -o '"target":"[^"]*"' "$TMP/last.json" | head -1 | cut -d'"' -f4 | sed 's/^/ /'): p50 $(grep -o '"p50":[0-9]*' "$TMP/last.json" | head -1 | cut -d: -f2) µs, $(json_num "$TMP/last.json" throughput_rps | cut -d. -f1) calls/s, $(json_num "$TMP/last.json" errors) errors"
  done <<< "$out"
}

# hold_and_sample RESULTS LABEL PID FIXTURE_BASE TIMEOUT ARGS...: runs the
# load tool in hold mode with ARGS (which must include --sessions N), and
# once every session holds its upstream session, appends a memory sample of
# PID (and its children) to RESULTS; then ends the hold (sessions deleted).
hold_and_sample() {
  local results=$1 label=$2 pid=$3 fx_base=$4 timeout=$5 n before live errors hold_pid out
  shift 5
  n=$(printf '%s\n' "$@" | grep -A1 -x -- --sessions | tail -1)
  out="$TMP/hold-$n.json"
  before=$(fixture_live "$fx_base")
  "$BIN/switchyard-bench" --json --hold "$timeout" --cold-start 0 --delete "$@" \
    > "$out" 2> "$TMP/hold.err" &
  hold_pid=$!; PIDS+=("$hold_pid")
  if first_match "$out" '"interrupted"' "$timeout" "$hold_pid" > /dev/null; then
    sleep 1 # let the last requests' buffers go before sampling
    live=$(fixture_live "$fx_base")
    errors=$(( $(json_num "$out" prime_errors) + $(json_num "$out" errors) ))
    echo "{\"memory\":{\"label\":\"$label\",\"sessions\":$n,\"rss_kb\":$(tree_rss_kb "$pid"),\"errors\":$errors,\"upstream_sessions\":$((live - before))}}" >> "$results"
    log "$label: RSS $(( $(tree_rss_kb "$pid") / 1024 )) MB, $errors errors, upstream live +$((live - before))"
  else
    log "$label: the holding load tool failed: $(tail -3 "$TMP/hold.err")"
  fi
  kill -TERM "$hold_pid" 2>/dev/null || true
  for _ in $(seq 1200); do kill -0 "$hold_pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$hold_pid" 2>/dev/null || true
  wait "$hold_pid" 2>/dev/null || true
}

# idle_sample RESULTS LABEL PID: a memory sample with no sessions held.
idle_sample() {
  echo "{\"memory\":{\"label\":\"$2\",\"sessions\":0,\"rss_kb\":$(tree_rss_kb "$3")}}" >> "$1"
}

# The scripts take no arguments (knobs are environment variables): --help
# prints the script's header comment; anything else is refused before any
# build or load starts.
no_arguments() {
  local script=$1; shift
  case "${1:-}" in
    "") ;;
    -h|--help) sed -n '2,/^set -euo/p' "$script" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "$(basename "$script") takes no arguments (got '$1'); its knobs are environment variables, see --help" >&2; exit 2 ;;
  esac
}
