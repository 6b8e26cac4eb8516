#!/usr/bin/env bash
# The field report's A-grade: the split counter system (gateway + service, the lab's `tuned`
# flags) at >= 0.95x the monolith's throughput with p99 <= 80 ms, measured two ways in one run:
#
#   1. `pinchpoint lab --compare monolith tuned` up to L4 (20k requests, 200 concurrent), runs
#      interleaved; the B/A ratio of each pair of runs, min/median/max, and the CPU each
#      process spent per request.
#   2. wrk (an independent client) against the monolith and the split system, started with
#      the lab's flags (and the split also with 2 coalescing lanes), in interleaved rounds; the
#      same ratio with its spread, wrk's p99, and CPU per request from /proc/PID/stat.
#
#   scripts/agrade.sh                              # ~3 minutes
#   ROUNDS=3 DURATION=3 LAB_REPEATS=3 scripts/agrade.sh
#   KEYS=1 STORE_WORK=0s scripts/agrade.sh         # wrk on one hot key, no store work
#   PINCHPOINT=/path/to/pinchpoint scripts/agrade.sh   # skip the build
#
# The load generator, the gateway and the service share the machine's cores, so both ratios
# are throughput per CPU second as much as anything; the CPU columns say where it goes.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-5}            # wrk rounds per system
DURATION=${DURATION:-5}        # seconds per wrk run
CONNS=${CONNS:-200}            # wrk connections (L4's concurrency)
THREADS=${THREADS:-2}          # wrk threads
KEYS=${KEYS:-100}              # distinct counters wrk spreads over (the lab's default)
LANES=${LANES:-8 2}            # split systems wrk measures: --coalesce-lanes of each gateway
LAB_REPEATS=${LAB_REPEATS:-5}  # interleaved run pairs per level in lab --compare
STORE_WORK=${STORE_WORK:-20us} # the lab's --store-work
TARGET_DIR=${CARGO_TARGET_DIR:-target}

if ! command -v wrk >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "installing wrk..." >&2
        apt-get install -y wrk >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }
    else
        echo "agrade: wrk is not installed (apt-get install wrk)" >&2
        exit 2
    fi
fi
if [ -z "${PINCHPOINT:-}" ]; then
    cargo build --release --quiet --bin pinchpoint
    PINCHPOINT="$TARGET_DIR/release/pinchpoint"
fi

WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

echo "agrade: $(uptime)"
median() { sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
spread() { sort -g | awk '{v[NR] = $1} END {m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "min %.3f median %.3f max %.3f", v[1], m, v[NR]}'; }

# ---- 1. lab --compare -------------------------------------------------------------------
echo
echo "== lab --compare monolith tuned, L1-L4, $LAB_REPEATS interleaved pairs per level (store work $STORE_WORK)"
timeout 900 "$PINCHPOINT" lab --compare monolith tuned --max-levels 4 --repeats "$LAB_REPEATS" \
    --store-work "$STORE_WORK" --no-flamegraphs --json >"$WORK/compare.json" 2>"$WORK/compare.log" ||
    { cat "$WORK/compare.log" >&2; exit 1; }
python3 - "$WORK/compare.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
def cpu(d):
    return " + ".join(f"{k} {v:.1f}" for k, v in d.items() if k != "total") + f" = {d.get('total', float('nan')):.1f} µs"
for row in r["rows"]:
    q = row["qps_ratio_rounds"]
    a, b = row["a"], row["b"]
    print(f"   {row['level']}: monolith {a['qps_median']:7.0f} QPS p99 {a['p99']*1e3:6.1f} ms | "
          f"tuned {b['qps_median']:7.0f} QPS p99 {b['p99']*1e3:6.1f} ms | "
          f"B/A min {q['min']:.3f} median {q['median']:.3f} max {q['max']:.3f}")
    print(f"        cpu/request  monolith: {cpu(row['cpu_us_per_request_a'])}   tuned: {cpu(row['cpu_us_per_request_b'])}")
l4 = next((row for row in r["rows"] if row["level"] == "L4"), r["rows"][-1])
ok = l4["qps_ratio_rounds"]["median"] >= 0.95 and l4["b"]["p99"] <= 0.080
grade = "A" if ok else ("B" if l4["qps_ratio_rounds"]["median"] >= 0.71 else "below B")
print(f"lab {l4['level']}: tuned / monolith QPS median {l4['qps_ratio_rounds']['median']:.3f}, "
      f"tuned p99 {l4['b']['p99']*1e3:.1f} ms -> {grade} (A: >= 0.95x with p99 <= 80 ms; B: >= 0.71x)")
EOF

# ---- 2. wrk against both ----------------------------------------------------------------
start() { # name args... ; starts pinchpoint with args, logs to $WORK/name.log
    local name=$1
    shift
    "$PINCHPOINT" "$@" >"$WORK/$name.log" 2>"$WORK/$name.err" &
    PIDS+=($!)
    eval "${name}_PID=$!"
}
addr_of() { # name kind
    local a=""
    for _ in $(seq 200); do
        a=$(sed -n "s/^[a-z]* $2 listening on //p" "$WORK/$1.log")
        [ -n "$a" ] && { echo "$a"; return; }
        sleep 0.05
    done
    echo "agrade: $1 did not announce its $2 listener; its stderr:" >&2
    cat "$WORK/$1.err" >&2
    exit 2
}
COMMON=(--leak-threshold 500ms)
start monolith monolith --listen 127.0.0.1:0 --admin 127.0.0.1:0 --store-work "$STORE_WORK" "${COMMON[@]}"
start service --worker-threads 8 service --listen 127.0.0.1:0 --admin 127.0.0.1:0 --store-work "$STORE_WORK" "${COMMON[@]}"
MONO_URL="http://$(addr_of monolith http)"
SVC_URL="http://$(addr_of service grpc)"
# One gateway per lane count, all in front of the same service; each is measured alone.
declare -A GW_URL GW_PID
for lanes in $LANES; do
    start "gw$lanes" gateway --listen 127.0.0.1:0 --admin 127.0.0.1:0 --service "$SVC_URL" --coalesce --pool-size 8 \
        --coalesce-lanes "$lanes" "${COMMON[@]}"
    GW_PID[$lanes]=$!
    GW_URL[$lanes]="http://$(addr_of "gw$lanes" http)"
done
for url in "$MONO_URL" "${GW_URL[@]}"; do
    for _ in $(seq 200); do curl -sf "$url/health" >/dev/null && break; sleep 0.05; done
done

cat >"$WORK/increment.lua" <<LUA
local n = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
    n = n + 1
    local body = string.format('{"resource_id":"agrade-%d","counter_type":"wrk","delta":1}', n % $KEYS)
    return wrk.format(nil, "/api/v1/counter/increment", nil, body)
end
LUA

cpu_of() { awk '{sub(/^.*\) /, ""); split($0, f, " "); printf "%d", f[12] + f[13]}' "/proc/$1/stat"; }
ms_of() { # wrk latency "12.34ms" / "980.00us" / "1.02s" -> ms
    awk -v v="$1" 'BEGIN {n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0; else if (v ~ /s$/) n *= 1000; printf "%.2f", n}'
}
# Runs wrk against $1 for $2 s; prints "QPS P99_MS ERRORS CPU_US_PER_REQ..." for the pids in $3.
run_wrk() {
    local url=$1 secs=$2 pids=$3 out before=() i=0 p
    for p in $pids; do before+=("$(cpu_of "$p")"); done
    out=$(timeout $((secs + 30)) wrk -t"$THREADS" -c"$CONNS" -d"${secs}s" --latency -s "$WORK/increment.lua" "$url")
    local qps p99 errs reqs cpus=""
    qps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
    reqs=$(awk '/requests in/ {print $1}' <<<"$out")
    p99=$(ms_of "$(awk '$1 == "99%" {print $2}' <<<"$out")")
    errs=$(awk '/Non-2xx or 3xx responses:/ {n += $NF} /Socket errors:/ {gsub(",", ""); n += $4 + $6 + $8 + $10} END {print n + 0}' <<<"$out")
    for p in $pids; do
        cpus="$cpus $(awk -v a="${before[$i]}" -v b="$(cpu_of "$p")" -v r="$reqs" 'BEGIN {printf "%.1f", (b - a) / 100 / r * 1e6}')"
        i=$((i + 1))
    done
    echo "$qps $p99 $errs$cpus"
}

echo
echo "== wrk: $CONNS connections, $THREADS threads, ${DURATION}s per run, $ROUNDS interleaved rounds, $KEYS key(s), store work $STORE_WORK"
echo "   split N = gateway --coalesce --pool-size 8 --coalesce-lanes N + service --worker-threads 8 (N=8 is the lab's tuned)"
run_wrk "$MONO_URL" 1 "$monolith_PID" >/dev/null # warm-up
for lanes in $LANES; do run_wrk "${GW_URL[$lanes]}" 1 "$service_PID" >/dev/null; done
read -r -a systems <<<"mono $LANES"
declare -A QPS P99 RATIOS CPU
for r in $(seq "$ROUNDS"); do
    # Rotate who goes first so a drift in machine load hits every system alike.
    k=$(((r - 1) % ${#systems[@]}))
    for sys in "${systems[@]:k}" "${systems[@]:0:k}"; do
        if [ "$sys" = mono ]; then
            read -r q p e c <<<"$(run_wrk "$MONO_URL" "$DURATION" "$monolith_PID")"
            CPU[mono]="${CPU[mono]:-} $c"
            printf 'round %d: monolith  %7.0f req/s p99 %7.2f ms (%s errors; monolith %s µs cpu/req)\n' "$r" "$q" "$p" "$e" "$c"
        else
            read -r q p e gc sc <<<"$(run_wrk "${GW_URL[$sys]}" "$DURATION" "${GW_PID[$sys]} $service_PID")"
            CPU[$sys]="${CPU[$sys]:-} $(awk -v a="$gc" -v b="$sc" 'BEGIN {printf "%.1f", a + b}')"
            printf 'round %d: split N=%-2s %7.0f req/s p99 %7.2f ms (%s errors; gateway %s + service %s µs cpu/req)\n' \
                "$r" "$sys" "$q" "$p" "$e" "$gc" "$sc"
        fi
        QPS[$sys]=$q
        P99[$sys]="${P99[$sys]:-} $p"
    done
    for lanes in $LANES; do
        RATIOS[$lanes]="${RATIOS[$lanes]:-} $(awk -v a="${QPS[$lanes]}" -v b="${QPS[mono]}" 'BEGIN {printf "%.3f", a / b}')"
    done
done
echo "wrk: monolith p99 median $(echo ${P99[mono]} | tr ' ' '\n' | median) ms, cpu/request median $(echo ${CPU[mono]} | tr ' ' '\n' | median) µs"
for lanes in $LANES; do
    med=$(echo ${RATIOS[$lanes]} | tr ' ' '\n' | median)
    p99=$(echo ${P99[$lanes]} | tr ' ' '\n' | median)
    cpu=$(echo ${CPU[$lanes]} | tr ' ' '\n' | median)
    grade=$(awk -v r="$med" -v p="$p99" 'BEGIN {print (r >= 0.95 && p <= 80) ? "A" : (r >= 0.71 ? "B" : "below B")}')
    echo "wrk: split N=$lanes / monolith QPS $(echo ${RATIOS[$lanes]} | tr ' ' '\n' | spread); p99 median $p99 ms; cpu/request median $cpu µs (gateway + service) -> $grade"
done
echo "agrade: $(uptime)"
