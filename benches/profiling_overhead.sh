#!/usr/bin/env bash
# What does CPU profiling at 99 Hz cost a loaded service? Side by side, interleaved.
#
# Builds release, starts the lab's tuned pair (service with the default sharded store, gateway
# with defaults plus --coalesce), then runs `pinchpoint load` ROUNDS times each way, alternating
# the order every round: "off" = no profiler, "on" = a /debug/pprof/profile capture running on
# the gateway AND the service for the whole load window (it ends after the window, so
# symbolization is not measured). Prints QPS per run, the medians and the ratio on/off.
#
#   benches/profiling_overhead.sh [ROUNDS=5] [SECONDS=8] [CONCURRENCY=64] [HZ=99]
#
# Target: on/off >= 0.98 (<= 2% throughput). Every process listens on 127.0.0.1:0; all of
# them are stopped on exit. Set CARGO_TARGET_DIR to reuse a build.
set -euo pipefail

ROUNDS=${1:-5}
SECS=${2:-8}
CONC=${3:-64}
HZ=${4:-99}
cd "$(dirname "$0")/.."
TARGET=${CARGO_TARGET_DIR:-target}

cargo build --release --quiet --bin pinchpoint
BIN="$TARGET/release/pinchpoint"
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# start NAME ARGS...: runs `pinchpoint ARGS`, waits for its listener lines.
start() {
  local name=$1; shift
  RUST_LOG=warn "$BIN" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
  PIDS+=($!)
  for _ in $(seq 1 300); do
    if [ "$(grep -c 'listening on' "$WORK/$name.out" || true)" -ge 2 ]; then return 0; fi
    sleep 0.1
  done
  echo "$name did not start:" >&2; cat "$WORK/$name.err" >&2; exit 1
}
addr() { grep " $2 listening on " "$WORK/$1.out" | awk '{print $NF}'; }

start service service --listen :0 --admin :0
start gateway gateway --listen :0 --admin :0 --service "http://$(addr service grpc)" --coalesce
URL="http://$(addr gateway http)"
GW_ADMIN="http://$(addr gateway admin)"
SVC_ADMIN="http://$(addr service admin)"

qps() { # one load run; prints its throughput
  "$BIN" load --url "$URL" --duration "${SECS}s" -c "$CONC" --no-progress 2>/dev/null \
    | awk '/^throughput/ {print $2}'
}
run_off() { qps; }
run_on() {
  local win=$((SECS + 2))
  curl -sf -o "$WORK/gw.pb.gz" "$GW_ADMIN/debug/pprof/profile?seconds=$win&hz=$HZ" &
  local c1=$!
  curl -sf -o "$WORK/svc.pb.gz" "$SVC_ADMIN/debug/pprof/profile?seconds=$win&hz=$HZ" &
  local c2=$!
  sleep 0.3 # both captures running before the load starts
  qps
  wait $c1 $c2
}

echo "warm-up..." >&2
"$BIN" load --url "$URL" --duration 3s -c "$CONC" --no-progress >/dev/null 2>&1

OFF=(); ON=()
for r in $(seq 1 "$ROUNDS"); do
  if [ $((r % 2)) -eq 1 ]; then
    a=$(run_off); b=$(run_on)
  else
    b=$(run_on); a=$(run_off)
  fi
  OFF+=("$a"); ON+=("$b")
  printf 'round %d: off %10.1f qps   on %10.1f qps\n' "$r" "$a" "$b"
done

median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }
M_OFF=$(median "${OFF[@]}")
M_ON=$(median "${ON[@]}")
echo "last capture: gateway $(stat -c %s "$WORK/gw.pb.gz") bytes, service $(stat -c %s "$WORK/svc.pb.gz") bytes (gzipped pprof)"
awk -v off="$M_OFF" -v on="$M_ON" -v hz="$HZ" 'BEGIN {
  r = on / off
  printf "median qps: off %.1f, on %.1f (CPU profile at %d Hz on gateway+service)\n", off, on, hz
  printf "ratio on/off: %.4f  (overhead %.2f%%; target <= 2%%): %s\n", r, (1 - r) * 100, (r >= 0.98 ? "PASS" : "FAIL")
}'
