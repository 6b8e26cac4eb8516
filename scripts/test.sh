#!/usr/bin/env bash
# The whole test suite, on a fresh Debian machine too: installs what the tests need
# (redis-server for the Redis store tests; Debian's `prometheus` package for promtool and the
# prometheus server that tests/metrics_exposition.rs and tests/dashboards_*.rs run; nats-server
# with JetStream for tests/consumer_broker.rs; python3 and PyPI's prometheus-client, the
# OpenMetrics reference parser) when it is missing, then runs every test, and builds a crate
# that embeds pinchpoint from outside the repository with stock compiler flags.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
if ! python3 -c 'import prometheus_client.openmetrics.parser' 2>/dev/null; then
  python3 -m pip --version >/dev/null 2>&1 || missing+=(python3 python3-pip)
fi
command -v nats-server >/dev/null 2>&1 || missing+=(nats-server)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing test dependencies: ${missing[*]}" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! python3 -c 'import prometheus_client.openmetrics.parser' 2>/dev/null; then
  echo "installing test dependency: prometheus-client (PyPI)" >&2
  # Debian's system python refuses pip installs (PEP 668) unless told otherwise; a pyenv or
  # venv python takes the plain install.
  python3 -m pip install --quiet prometheus-client 2>/dev/null ||
    python3 -m pip install --quiet --break-system-packages prometheus-client
fi

cargo test --all-targets --features bb8,deadpool "$@"

# The doctor names every lab scenario's bottleneck (release build, lab --quick).
scripts/lab-doctor.sh

# The uninstrumented twin (`--cfg pinchpoint_bare`, scripts/overhead.sh) compiles without
# warnings: every probe has its plain counterpart with the same API.
scripts/overhead.sh --check

# The docs build without warnings (library features, then all), and the package lists its files.
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --no-default-features --features profiling
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --features bb8,deadpool
# The examples in the docs run (`--all-targets` above leaves doc tests out).
cargo test --doc --features bb8,deadpool
cargo package --list --allow-dirty >/dev/null

# A crate outside the package, stock compiler flags: pinchpoint builds and serves /metrics
# without `--cfg tokio_unstable`.
scripts/outside-crate.sh
