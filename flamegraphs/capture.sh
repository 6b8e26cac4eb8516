#!/usr/bin/env bash
# Re-makes the curated captures in this folder from the lab (release build):
# monolith --lock global|sharded with 20us of work under the store lock, under
# `pinchpoint load -c 100`, CPU and contention for 10 s each, and the CPU diff.
#   flamegraphs/capture.sh [SECONDS=10]
set -euo pipefail
SECS=${1:-10}
cd "$(dirname "$0")/.."
TARGET=${CARGO_TARGET_DIR:-target}
cargo build --release --quiet --bin pinchpoint
BIN="$TARGET/release/pinchpoint"
OUT=flamegraphs
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

capture() { # capture LOCKMODE NAME [svg]
  RUST_LOG=warn "$BIN" monolith --lock "$1" --store-work 20us --listen :0 --admin :0 >"$WORK/$2.out" 2>&1 &
  local mono=$!
  PIDS+=("$mono")
  for _ in $(seq 1 300); do [ "$(grep -c 'listening on' "$WORK/$2.out" || true)" -ge 2 ] && break; sleep 0.1; done
  local http admin svg=""
  http="http://$(grep ' http listening on ' "$WORK/$2.out" | awk '{print $NF}')"
  admin="http://$(grep ' admin listening on ' "$WORK/$2.out" | awk '{print $NF}')"
  "$BIN" load --url "$http" --duration "$((3 * SECS + 6))s" -c 100 --no-progress >/dev/null 2>&1 &
  local load=$!
  sleep 2
  # One CPU profile at a time; contention captures run beside each other.
  "$BIN" flame --target "$admin" --seconds "$SECS" --kind cpu -o "$OUT/$2.cpu.folded"
  if [ "${3:-}" = svg ]; then
    "$BIN" flame --target "$admin" --seconds "$SECS" --kind cpu -o "$OUT/$2.cpu.svg"
    "$BIN" flame --target "$admin" --seconds "$SECS" --kind contention -o "$OUT/$2.contention.svg" &
    svg=$!
  fi
  "$BIN" flame --target "$admin" --seconds "$SECS" --kind contention -o "$OUT/$2.contention.folded"
  [ -n "$svg" ] && wait "$svg"
  wait "$load" || true
  kill "$mono"; wait "$mono" 2>/dev/null || true
}

capture global global-lock svg
capture sharded sharded
"$BIN" flame diff "$OUT/global-lock.cpu.folded" "$OUT/sharded.cpu.folded" --normalize \
  --title "CPU: global lock (before) vs sharded (after)" -o "$OUT/global-vs-sharded.cpu.diff.svg"
ls -l "$OUT"
