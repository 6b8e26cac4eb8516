#!/usr/bin/env bash
# Builds and runs tests/outside-crate the way a user's service gets pinchpoint: from outside
# this repository (so its .cargo/config.toml and `--cfg tokio_unstable` do not apply), with
# stock compiler flags, depending on it by path with `default-features = false,
# features = ["profiling"]`. The crate serves /metrics on a loopback port it picks, scrapes it
# and checks the catalog's families; this script also checks the start-up line that says how
# to turn tokio_unstable on.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

cp -r "$repo/tests/outside-crate/." "$work/"
sed -i "s|path = \"../..\"|path = \"$repo\"|" "$work/Cargo.toml"
# Start from the repository's lock file so both builds resolve the same versions.
cp "$repo/Cargo.lock" "$work/Cargo.lock"

unset RUSTFLAGS CARGO_BUILD_RUSTFLAGS CARGO_ENCODED_RUSTFLAGS
export CARGO_TARGET_DIR="${OUTSIDE_TARGET_DIR:-$repo/target/outside-crate}"
cd "$work"
cargo build --quiet
bin="$CARGO_TARGET_DIR/debug/pinchpoint-outside"
log="$work/run.log"
if ! RUST_LOG=info timeout 60 "$bin" 127.0.0.1:0 >"$log" 2>&1; then
  echo "outside crate failed:" >&2
  cat "$log" >&2
  exit 1
fi
grep -q "listening on 127.0.0.1:" "$log"
grep -q "outside check ok" "$log"
if ! grep -q 'RUSTFLAGS="--cfg tokio_unstable"' "$log"; then
  echo "outside crate: no start-up line saying how to turn tokio_unstable on:" >&2
  cat "$log" >&2
  exit 1
fi
grep "outside check ok" "$log"
