#!/usr/bin/env bash
# The load driver against wrk: same endpoint, same number of keep-alive connections, same
# duration. Prints both throughputs and the ratio (goal: driver >= 0.9x wrk).
#
#   benches/load_vs_wrk.sh                 # 50 connections, 5 s, 5 interleaved rounds
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
ROUNDS=${ROUNDS:-5}
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
CPU_LOG=$(mktemp)
"$SERVER_BIN" 127.0.0.1:0 >"$LOG" &
SERVER_PID=$!
trap 'kill "$SERVER_PID" 2>/dev/null; wait "$SERVER_PID" 2>/dev/null || true; rm -f "$LOG" "$CPU_LOG"' EXIT
ADDR=""
for _ in $(seq 100); do
    ADDR=$(sed -n 's/^hello_server listening on //p' "$LOG")
    [ -n "$ADDR" ] && break
    sleep 0.05
done
[ -n "$ADDR" ] || { echo "load_vs_wrk: hello_server did not start" >&2; exit 2; }
URL="http://$ADDR"

# Each prints "QPS CPU_US_PER_REQUEST" (the generator's own user+sys CPU per request, which a
# busy machine disturbs less than QPS).
cpu_of() { # command... ; prints user+sys seconds of it into $CPU_LOG, its stdout to stdout
    if [ -x /usr/bin/time ]; then
        /usr/bin/time -f '%U %S' -o "$CPU_LOG" "$@"
    else
        echo "0 0" >"$CPU_LOG"
        "$@"
    fi
}
per_req() { awk -v q="$1" -v d="$2" '{c = $1 + $2} END {printf "%s %.2f", q, (q > 0) ? c / (q * d) * 1e6 : 0}' "$CPU_LOG"; }
run_wrk() {
    local q
    q=$(cpu_of wrk -t"$THREADS" -c"$CONNS" -d"${1}s" "$URL/health" | awk '/^Requests\/sec:/ {print $2}')
    per_req "$q" "$1"
}
run_driver() {
    local q
    q=$(cpu_of "$PINCHPOINT" load --url "$URL" --mix health -c "$CONNS" --duration "${1}s" --json --no-progress \
        | sed -n 's/^ *"qps": *\([0-9.e+-]*\),\{0,1\}$/\1/p')
    per_req "$q" "$1"
}

echo "target $URL/health, $CONNS connections, ${DURATION}s per run, $ROUNDS rounds (interleaved)"
run_wrk 1 >/dev/null # warm-up
run_driver 1 >/dev/null
median() { sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
wrks=""
drvs=""
ratios=""
for r in $(seq "$ROUNDS"); do
    # Alternate who goes first so a drift in machine load hits both alike.
    if [ $((r % 2)) = 1 ]; then
        wout=$(run_wrk "$DURATION"); dout=$(run_driver "$DURATION")
    else
        dout=$(run_driver "$DURATION"); wout=$(run_wrk "$DURATION")
    fi
    read -r w wc <<<"$wout"
    read -r d dc <<<"$dout"
    ratio=$(awk -v a="$d" -v b="$w" 'BEGIN {printf "%.3f", a / b}')
    printf 'round %d: wrk %8.0f req/s (%5.2f µs cpu/req)   pinchpoint load %8.0f req/s (%5.2f µs cpu/req)   ratio %s\n' \
        "$r" "$w" "$wc" "$d" "$dc" "$ratio"
    wrks="$wrks $w"; drvs="$drvs $d"; ratios="$ratios $ratio"
done
printf 'median:  wrk %10.0f req/s   pinchpoint load %10.0f req/s   ratio %s (median of rounds; goal >= 0.9)\n' \
    "$(echo $wrks | tr ' ' '\n' | median)" "$(echo $drvs | tr ' ' '\n' | median)" \
    "$(echo $ratios | tr ' ' '\n' | median)"
