#!/usr/bin/env bash
# Starts a counter service and a gateway on free loopback ports, sends a few requests
# through the gateway, prints the answers, and stops both processes.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
bin=target/release/pinchpoint
dir=$(mktemp -d)
cleanup() { kill "${svc:-}" "${gw:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT

# Reads "<role> <kind> listening on ADDR" from a process's stdout.
wait_addr() {
  local file=$1 kind=$2
  for _ in $(seq 100); do
    addr=$(awk -v k="$kind" '$2 == k && $3 == "listening" {print $5}' "$file")
    [ -n "$addr" ] && { echo "$addr"; return; }
    sleep 0.1
  done
  echo "no $kind listener in $file" >&2; exit 2
}

$bin service --listen :0 --admin :0 >"$dir/svc" & svc=$!
grpc=$(wait_addr "$dir/svc" grpc)
$bin gateway --listen :0 --admin :0 --service "http://$grpc" >"$dir/gw" & gw=$!
http=$(wait_addr "$dir/gw" http)
echo "service on $grpc, gateway on $http"

set -x
curl -s "http://$http/health"; echo
curl -s -X POST "http://$http/api/v1/counter/increment" -d '{"resource_id":"demo","counter_type":"views","delta":5}'; echo
curl -s -X POST "http://$http/api/v1/counter/batch-increment" \
  -d '{"operations":[{"resource_id":"demo","counter_type":"views","delta":1},{"resource_id":"demo","counter_type":"likes","delta":2}]}'; echo
curl -s "http://$http/api/v1/counter/demo/views"; echo
curl -s -X POST "http://$http/api/v1/counter/increment" -d '{"resource_id":"demo","counter_type":"views","delta":0}'; echo
set +x
