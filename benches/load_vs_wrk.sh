#!/usr/bin/env bash
# The load driver against wrk: same endpoint, same number of keep-alive connections, same
# duration. Prints both throughputs and the ratio (goal: driver >= 0.9x wrk).
#
#   benches/load_vs_wrk.sh                 # 50 connections, 5 s, 3 interleaved rounds
#   CONNS=100 DURATION=10 ROUNDS=5 benches/load_vs_wrk.sh
#   PINCHPOINT=/path/to/pinchpoint benches/load_vs_wrk.sh   # skip the build, use this binary
#
# The target is examples/hello_server.rs (axum, GET /health -> small JSON) on 127.0.0.1.
# Both generators and the server share the machine's cores, so the ratio, not the absolute
# figure, is what this measures.
set -euo pipefail
cd "$(dirname "$0")/.."

CONNS=${CONNS:-50}
THREADS=${THREADS:-2}
DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-3}
TARGET_DIR=${CARGO_TARGET_DIR:-target}

if ! command -v wrk >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "installing wrk..." >&2
        apt-get install -y wrk >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }
    else
        echo "load_vs_wrk: wrk is not installed (apt-get install wrk)" >&2
        exit 2
    fi
fi

if [ -z "${PINCHPOINT:-}" ]; then
    cargo build --release --quiet --bin pinchpoint --example hello_server
    PINCHPOINT="$TARGET_DIR/release/pinchpoint"
else
    cargo build --release --quiet --example hello_server
fi
SERVER_BIN="$TARGET_DIR/release/examples/hello_server"
if ! "$PINCHPOINT" load --help >/dev/null 2>&1; then
    echo "load_vs_wrk: $PINCHPOINT has no 'load' subcommand" >&2
    exit 2
fi

LOG=$(mktemp)
"$SERVER_BIN" 127.0.0.1:0 >"$LOG" &
SERVER_PID=$!
trap 'kill "$SERVER_PID" 2>/dev/null; wait "$SERVER_PID" 2>/dev/null; rm -f "$LOG"' EXIT
ADDR=""
for _ in $(seq 100); do
    ADDR=$(sed -n 's/^hello_server listening on //p' "$LOG")
    [ -n "$ADDR" ] && break
    sleep 0.05
done
[ -n "$ADDR" ] || { echo "load_vs_wrk: hello_server did not start" >&2; exit 2; }
URL="http://$ADDR"

run_wrk() {
    wrk -t"$THREADS" -c"$CONNS" -d"${1}s" "$URL/health" | awk '/^Requests\/sec:/ {print $2}'
}
run_driver() {
    "$PINCHPOINT" load --url "$URL" --mix health -c "$CONNS" --duration "${1}s" --json --no-progress \
        | sed -n 's/^ *"qps": *\([0-9.e+-]*\),\{0,1\}$/\1/p'
}

echo "target $URL/health, $CONNS connections, ${DURATION}s per run, $ROUNDS rounds (interleaved)"
run_wrk 1 >/dev/null # warm-up
run_driver 1 >/dev/null
best_wrk=0
best_drv=0
for r in $(seq "$ROUNDS"); do
    w=$(run_wrk "$DURATION")
    d=$(run_driver "$DURATION")
    printf 'round %d: wrk %10.0f req/s   pinchpoint load %10.0f req/s   ratio %.3f\n' \
        "$r" "$w" "$d" "$(awk -v a="$d" -v b="$w" 'BEGIN {print a / b}')"
    best_wrk=$(awk -v a="$w" -v b="$best_wrk" 'BEGIN {print (a > b) ? a : b}')
    best_drv=$(awk -v a="$d" -v b="$best_drv" 'BEGIN {print (a > b) ? a : b}')
done
ratio=$(awk -v a="$best_drv" -v b="$best_wrk" 'BEGIN {printf "%.3f", a / b}')
printf 'best:    wrk %10.0f req/s   pinchpoint load %10.0f req/s   ratio %s (goal >= 0.9)\n' \
    "$best_wrk" "$best_drv" "$ratio"
