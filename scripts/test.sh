#!/usr/bin/env bash
# The whole test suite, on a fresh Debian machine too: installs what the tests need
# (redis-server for the Redis store tests, promtool from Debian's `prometheus` package for
# tests/metrics_exposition.rs) when it is missing, then runs every test, and builds a crate that embeds pinchpoint from outside the
# repository with stock compiler flags.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing test dependencies: ${missing[*]}" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

cargo test --all-targets --features bb8,deadpool "$@"

# The library's docs build without warnings, and the package lists its files.
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --no-default-features --features profiling
cargo package --list --allow-dirty >/dev/null

# A crate outside the package, stock compiler flags: pinchpoint builds and serves /metrics
# without `--cfg tokio_unstable`.
scripts/outside-crate.sh
