#!/usr/bin/env bash
# Watch a bottleneck live: starts the counter service and gateway on picked ports with the
# chosen bottleneck, Prometheus with the shipped dashboards/prometheus.yml and alert rules
# (the picked admin ports go into its file_sd target list), Grafana with the shipped
# provisioning when it is installed, drives load, and prints where to look. Stops by itself
# after --duration, or on Ctrl-C, and stops everything it started.
#
#   scripts/watch.sh [--bottleneck global-lock|dial-per-request|single-connection|undersized-workers|tuned]
#                    [--duration SECONDS] [--concurrency N] [--prometheus-port PORT] [--grafana-port PORT]
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

bottleneck=global-lock
duration=300
concurrency=32
prom_port=9090
grafana_port=3000
while [ $# -gt 0 ]; do
  case "$1" in
    --bottleneck) bottleneck=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --concurrency) concurrency=$2; shift 2 ;;
    --prometheus-port) prom_port=$2; shift 2 ;;
    --grafana-port) grafana_port=$2; shift 2 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "watch.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$duration" in ''|*[!0-9]*) echo "watch.sh: --duration takes whole seconds" >&2; exit 2 ;; esac

# The same switches as the lab's scenarios (src/lab/scenario.rs).
service_args=(--worker-threads 8)
store_work=20us
gateway_args=(--coalesce --pool-size 8)
load_args=(--mix increment)
case "$bottleneck" in
  # 5x the store's work under the one lock, as in the lab: at 20us a single lock admits more
  # increments a second than two cores drive, and it is rightly found uncontended.
  global-lock) service_args+=(--lock global); store_work=100us ;;
  dial-per-request) gateway_args=(--dial-per-request) ;;
  single-connection) service_args+=(--max-streams 4); gateway_args=(--pool-size 1 --streams-per-channel 4) ;;
  undersized-workers)
    service_args+=(--store-delay 20ms); gateway_args=(--write-buffer --flush-workers 1)
    load_args=(--mix batch --batch-size 20 --async) ;;
  tuned) ;;
  *) echo "watch.sh: unknown bottleneck $bottleneck" >&2; exit 2 ;;
esac

bin=${PINCHPOINT_BIN:-}
if [ -z "$bin" ]; then
  cargo build --quiet --bin pinchpoint
  bin="${CARGO_TARGET_DIR:-$repo/target}/debug/pinchpoint"
fi

work=$(mktemp -d -t pinchpoint-watch.XXXXXX)
pids=()
cleanup() {
  trap - EXIT INT TERM
  # SIGTERM lets the gateway and service drain; the load's partial report has no reader here,
  # so it is killed outright, and anything still running after 5 s is killed too.
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  [ -n "${load_pid:-}" ] && kill -KILL "$load_pid" 2>/dev/null
  for _ in $(seq 50); do
    alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
  echo "watch.sh: stopped everything it started"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Starts a pinchpoint process; its stdout (the listener lines) goes to $work/NAME.out.
start() {
  local name=$1; shift
  "$bin" "$@" >"$work/$name.out" 2>"$work/$name.err" &
  pids+=($!)
}

# Waits (at most 30 s) for NAME to print "<role> KIND listening on ADDR"; prints ADDR.
listener() {
  local name=$1 kind=$2
  for _ in $(seq 300); do
    local addr
    addr=$(awk -v k="$kind" '$2 == k && $3 == "listening" { print $5 }' "$work/$name.out")
    if [ -n "$addr" ]; then echo "$addr"; return 0; fi
    sleep 0.1
  done
  echo "watch.sh: $name did not start; its stderr:" >&2
  cat "$work/$name.err" >&2
  return 1
}

start service service --listen 127.0.0.1:0 --admin 127.0.0.1:0 --store-work "$store_work" "${service_args[@]}"
service_grpc=$(listener service grpc)
service_admin=$(listener service admin)
start gateway gateway --listen 127.0.0.1:0 --admin 127.0.0.1:0 --service "http://$service_grpc" "${gateway_args[@]}"
gateway_http=$(listener gateway http)
gateway_admin=$(listener gateway admin)

# Prometheus: the shipped config and rules, unchanged, with this run's targets in targets/.
mkdir -p "$work/prometheus/targets" "$work/prometheus/data"
cp dashboards/prometheus.yml dashboards/alerts.yml "$work/prometheus/"
cat >"$work/prometheus/targets/lab.json" <<JSON
[{"targets": ["$gateway_admin"], "labels": {"role": "gateway"}},
 {"targets": ["$service_admin"], "labels": {"role": "service"}}]
JSON
prometheus_url=""
if command -v prometheus >/dev/null 2>&1; then
  prometheus --config.file="$work/prometheus/prometheus.yml" --storage.tsdb.path="$work/prometheus/data" \
    --web.listen-address="127.0.0.1:$prom_port" --log.level=warn >"$work/prometheus.log" 2>&1 &
  pids+=($!)
  prometheus_url="http://127.0.0.1:$prom_port"
else
  echo "watch.sh: MISSING prometheus: no dashboards or alerts without it. Install Debian's package" >&2
  echo "          (apt-get install prometheus) and rerun; the processes and load run anyway." >&2
fi

grafana_url=""
grafana=$(command -v grafana-server || command -v grafana || true)
if [ -n "$grafana" ] && [ -n "$prometheus_url" ]; then
  mkdir -p "$work/grafana/data" "$work/grafana/provisioning/plugins" "$work/grafana/provisioning/alerting"
  cp -r dashboards/provisioning/datasources dashboards/provisioning/dashboards "$work/grafana/provisioning/"
  home=${GRAFANA_HOME:-/usr/share/grafana}
  sub=(); [ "$(basename "$grafana")" = grafana ] && sub=(server)
  PINCHPOINT_PROMETHEUS_URL=$prometheus_url PINCHPOINT_DASHBOARDS_DIR="$repo/dashboards" \
    GF_PATHS_PROVISIONING="$work/grafana/provisioning" GF_PATHS_DATA="$work/grafana/data" \
    GF_SERVER_HTTP_ADDR=127.0.0.1 GF_SERVER_HTTP_PORT=$grafana_port \
    GF_AUTH_ANONYMOUS_ENABLED=true GF_AUTH_ANONYMOUS_ORG_ROLE=Admin \
    "$grafana" "${sub[@]}" --homepath "$home" >"$work/grafana.log" 2>&1 &
  pids+=($!)
  grafana_url="http://127.0.0.1:$grafana_port"
elif [ -z "$grafana" ]; then
  echo "watch.sh: MISSING grafana-server: Grafana is not a Debian package. Install it from Grafana's" >&2
  echo "          APT repository (apt.grafana.com) or tarball, or point your own Grafana at" >&2
  echo "          dashboards/provisioning/ (set PINCHPOINT_PROMETHEUS_URL and PINCHPOINT_DASHBOARDS_DIR)." >&2
fi

echo
echo "bottleneck:  $bottleneck for ${duration}s, $concurrency concurrent requests"
echo "gateway:     http://$gateway_http   metrics http://$gateway_admin/metrics"
echo "service:     grpc $service_grpc   metrics http://$service_admin/metrics"
[ -n "$prometheus_url" ] && echo "prometheus:  $prometheus_url/targets   alerts $prometheus_url/alerts"
[ -n "$grafana_url" ] && echo "grafana:     $grafana_url/d/pinchpoint-overview   (anonymous admin)"
echo "flamegraph:  $bin flame --target http://$service_admin --kind contention -o contention.svg"
echo "Ctrl-C stops everything."
echo

"$bin" load --url "http://$gateway_http" -c "$concurrency" --duration "${duration}s" "${load_args[@]}" &
pids+=($!)
load_pid=$!
wait "$load_pid" || true
