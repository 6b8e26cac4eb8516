#!/usr/bin/env bash
# Remakes the pictures in docs/img/ as a user would see them, rendered by headless Chromium
# (Debian package `chromium`, installed when missing):
#   lab-report.png             the lab's HTML report of the global-lock scenario
#   flamegraph-cpu.png         the service's CPU flamegraph from that run
#   flamegraph-contention.png  the service's contention flamegraph from that run
#   tokio-console.png          the real tokio-console's task list for a monolith under load
#                              (tokio-console from crates.io and pyte from PyPI, installed when
#                              missing; drawn in a pseudo-terminal by scripts/console_screen.py)
#   prometheus-wait-share.png  Prometheus's graph of the overview's first query during
#                              scripts/watch.sh --bottleneck global-lock (skipped without the
#                              Debian `prometheus` package)
#
#   scripts/screenshots.sh [--skip-prometheus]
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
out="$repo/docs/img"
skip_prometheus=0
[ "${1:-}" = "--skip-prometheus" ] && skip_prometheus=1

if ! command -v chromium >/dev/null 2>&1; then
  echo "screenshots.sh: installing chromium" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium fonts-dejavu-core >/dev/null
fi

cargo build --release --quiet --bin pinchpoint
bin="${CARGO_TARGET_DIR:-$repo/target}/release/pinchpoint"
work=$(mktemp -d -t pinchpoint-shots.XXXXXX)
watch_pid=""
pids=()
cleanup() {
  [ -n "$watch_pid" ] && kill "$watch_pid" 2>/dev/null && wait "$watch_pid" 2>/dev/null
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$out"

# Renders URL into PNG at WIDTHxHEIGHT; the virtual time budget lets scripts and charts
# finish drawing before the capture.
shoot() {
  local url=$1 png=$2 size=$3
  chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --force-device-scale-factor=1 \
    --virtual-time-budget=5000 --window-size="$size" --screenshot="$png" "$url" >/dev/null 2>&1
  [ -s "$png" ] || { echo "screenshots.sh: chromium wrote nothing for $url" >&2; exit 1; }
  echo "wrote ${png#"$repo"/}"
}

# 1-3: one quick lab run of global-lock, its report and the service's flamegraphs.
"$bin" lab --quick --scenario global-lock --out "$work/lab" >"$work/lab.log" 2>&1 ||
  { cat "$work/lab.log" >&2; exit 1; }
shoot "file://$work/lab/index.html" "$out/lab-report.png" 1280,1500
cpu=$(find "$work/lab" -name 'service-cpu.svg' | head -1)
contention=$(find "$work/lab" -name 'service-contention.svg' | head -1)
[ -n "$cpu" ] && [ -n "$contention" ] || { echo "screenshots.sh: the lab wrote no flamegraphs" >&2; exit 1; }
# A flamegraph is as tall as its deepest stack (async stacks run deep): shoot all of it.
svg_height() { grep -o 'height="[0-9]*"' "$1" | head -1 | tr -dc 0-9; }
shoot "file://$cpu" "$out/flamegraph-cpu.png" "1200,$(svg_height "$cpu")"
shoot "file://$contention" "$out/flamegraph-contention.png" "1200,$(svg_height "$contention")"

# 4: tokio-console watching a monolith under load.
console=$(command -v tokio-console || true)
if [ -z "$console" ]; then
  console="$HOME/.cargo/bin/tokio-console"
  [ -x "$console" ] || cargo install --locked --quiet tokio-console
fi
python3 -c 'import pyte' 2>/dev/null || python3 -m pip install --quiet pyte 2>/dev/null ||
  python3 -m pip install --quiet --break-system-packages pyte
"$bin" monolith --listen 127.0.0.1:0 --admin 127.0.0.1:0 --console --console-addr 127.0.0.1:0 \
  >"$work/monolith.out" 2>"$work/monolith.err" &
pids+=($!)
deadline=$((SECONDS + 30))
until grep -q 'console listening' "$work/monolith.out" && grep -q 'http listening' "$work/monolith.out"; do
  [ $SECONDS -lt $deadline ] || { echo "screenshots.sh: the monolith did not start" >&2; cat "$work/monolith.err" >&2; exit 1; }
  sleep 0.2
done
http=$(awk '$2 == "http" && $3 == "listening" { print $5 }' "$work/monolith.out")
console_addr=$(awk '$2 == "console" && $3 == "listening" { print $5 }' "$work/monolith.out")
"$bin" load --url "http://$http" --duration 20s -c 8 --rate 500 >/dev/null 2>&1 &
pids+=($!)
python3 scripts/console_screen.py "$console" "http://$console_addr" "$work/console.html" --seconds 8
shoot "file://$work/console.html" "$out/tokio-console.png" 1240,620

# 5: Prometheus during load, through the shipped config.
if [ "$skip_prometheus" = 1 ]; then exit 0; fi
if ! command -v prometheus >/dev/null 2>&1; then
  echo "screenshots.sh: no prometheus (Debian package): prometheus-wait-share.png not remade" >&2
  exit 0
fi
port=19090
PINCHPOINT_BIN="$bin" scripts/watch.sh --bottleneck global-lock --duration 120 --concurrency 200 --prometheus-port "$port" \
  >"$work/watch.log" 2>&1 &
watch_pid=$!
query='topk(8, sum by (instance, lock) (rate(pinchpoint_lock_wait_seconds_sum[30s])) / on (instance) group_left() sum by (instance) (rate(pinchpoint_rpc_server_duration_seconds_sum[30s])))'
# Wait (at most 90 s) until the query has data for store.global.
deadline=$((SECONDS + 90))
until curl -sfG "http://127.0.0.1:$port/api/v1/query" --data-urlencode "query=$query" 2>/dev/null |
  grep -q 'store.global'; do
  if [ $SECONDS -ge $deadline ]; then
    echo "screenshots.sh: Prometheus never had data; watch.sh said:" >&2
    cat "$work/watch.log" >&2
    exit 1
  fi
  sleep 1
done
sleep 45 # a graph with 45 s of history reads better than one with a single point
enc=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1]))' "$query")
shoot "http://127.0.0.1:$port/graph?g0.expr=$enc&g0.tab=0&g0.range_input=2m&g0.stacked=0" \
  "$out/prometheus-wait-share.png" 1280,800
