#!/usr/bin/env bash
# What the probes cost in instructions, which unlike time do not depend on what else the
# machine is doing: runs the monolith, then the split system (service and gateway with the lab's
# `tuned` flags), each under callgrind, first as built and then as the uninstrumented twin, and
# prints instructions per request of each process with the on/off ratio. `--store-work 0`: the
# request path alone, without the lab's simulated store work.
#
#   scripts/overhead.sh --check && scripts/instructions.sh         # 4,000 requests, 200 connections
#   REQUESTS=10000 CONCURRENCY=50 scripts/instructions.sh
#
# Needs valgrind (Debian: `apt-get install valgrind`) and both release builds, which
# `scripts/overhead.sh` makes (this script builds them too when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "instructions.sh: needs valgrind (apt-get install valgrind)" >&2; exit 2; }

target=${CARGO_TARGET_DIR:-target}
bare_target=${PINCHPOINT_BARE_TARGET_DIR:-$target/bare}
on="$target/release/pinchpoint"
off="$bare_target/release/pinchpoint"
if [ ! -x "$on" ] || [ ! -x "$off" ]; then
  cargo build --release --bin pinchpoint
  RUSTFLAGS="--cfg tokio_unstable -C force-frame-pointers=yes --cfg pinchpoint_bare" CARGO_TARGET_DIR="$bare_target" \
    cargo build --release --bin pinchpoint
fi
requests=${REQUESTS:-4000}
concurrency=${CONCURRENCY:-200}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

# Loopback ports well away from the lab's and the defaults.
HTTP=127.0.0.1:18380 GRPC=127.0.0.1:18351 ADMIN_A=127.0.0.1:18364 ADMIN_B=127.0.0.1:18365

ready() {
  for _ in $(seq 1 400); do
    curl -sf -o /dev/null "http://$1/metrics" && return 0
    sleep 0.25
  done
  echo "instructions.sh: $1 never answered" >&2
  exit 1
}

# Starts a process under callgrind (about 50 times slower than native: the gateway gets long
# deadlines and health checks, so a slow service is not taken for a down one).
under_callgrind() {
  local name=$1
  shift
  valgrind --tool=callgrind --dump-instr=no --collect-jumps=no --callgrind-out-file="$work/$name.%p" "$@" \
    >"$work/$name.log" 2>&1 &
  echo $!
}

# Instructions the process executed between zeroing and dumping its counters.
instructions() {
  local file
  file=$(ls "$work/$1".*.1 2>/dev/null | head -1)
  [ -n "$file" ] || { echo "instructions.sh: no callgrind dump for $1; see $work/$1.log" >&2; exit 1; }
  awk '/^summary:/ {print $2}' "$file"
}

measure() {
  local bin=$1 side=$2 pids=()
  if [ "$3" = monolith ]; then
    pids+=("$(under_callgrind "monolith-$side" "$bin" monolith --listen "$HTTP" --admin "$ADMIN_A")")
    ready "$ADMIN_A"
  else
    pids+=("$(under_callgrind "service-$side" "$bin" service --listen "$GRPC" --admin "$ADMIN_B" --worker-threads 8)")
    pids+=("$(under_callgrind "gateway-$side" "$bin" gateway --listen "$HTTP" --admin "$ADMIN_A" \
      --service "http://$GRPC" --coalesce --pool-size 8 --timeout 60s --health-interval 30s)")
    ready "$ADMIN_A"
    ready "$ADMIN_B"
  fi
  "$on" load --url "http://$HTTP" -n 500 -c "$concurrency" >/dev/null
  for p in "${pids[@]}"; do callgrind_control -z "$p" >/dev/null 2>&1; done
  "$on" load --url "http://$HTTP" -n "$requests" -c "$concurrency" >"$work/load-$side.txt"
  for p in "${pids[@]}"; do callgrind_control -d "$p" >/dev/null 2>&1; done
  kill -INT "${pids[@]}"
  wait "${pids[@]}" 2>/dev/null || true
  grep -q "$requests ok" "$work/load-$side.txt" ||
    { echo "instructions.sh: not every request succeeded:" >&2; cat "$work/load-$side.txt" >&2; exit 1; }
}

printf '%-10s %14s %14s %8s\n' process "instr/req on" "instr/req off" "on/off"
for system in monolith split; do
  measure "$on" on "$system"
  measure "$off" off "$system"
  processes=(monolith)
  [ "$system" = split ] && processes=(gateway service)
  for p in "${processes[@]}"; do
    a=$(instructions "$p-on")
    b=$(instructions "$p-off")
    awk -v p="$p" -v a="$a" -v b="$b" -v n="$requests" \
      'BEGIN { printf "%-10s %14.0f %14.0f %7.3fx\n", p, a / n, b / n, a / b }'
  done
done
