#!/usr/bin/env bash
# What the probes cost a real service, end to end: builds pinchpoint as usual and its
# uninstrumented twin (`--cfg pinchpoint_bare`: every probe compiled to its plain counterpart,
# see DESIGN.md "Probe overhead") in a target dir of its own, then has the lab run each
# scenario with both binaries side by side, interleaved, and print the on/off ratios of QPS
# and p99 with their min/median/max over the rounds.
#
#   scripts/overhead.sh                      # tuned and monolith at L4, 15 rounds
#   scripts/overhead.sh --scenario monolith --level L5 --repeats 9
#   scripts/overhead.sh --check              # only check that the twin compiles (CI)
#
# Arguments go to `pinchpoint lab --baseline-bin TWIN`; without any, `--level L4 --repeats 15`.
# The twin's target dir is $PINCHPOINT_BARE_TARGET_DIR (default: bare/ inside the target dir).
set -euo pipefail
cd "$(dirname "$0")/.."

# RUSTFLAGS replaces .cargo/config.toml's build.rustflags, so the twin gets the same flags
# spelled out plus the cfg: on and off differ in the probes only.
FLAGS="--cfg tokio_unstable -C force-frame-pointers=yes"
if ! grep -q '^rustflags = \["--cfg", "tokio_unstable", "-C", "force-frame-pointers=yes"\]$' .cargo/config.toml; then
  echo "overhead.sh: .cargo/config.toml's rustflags changed; update FLAGS here to match" >&2
  exit 2
fi
target=${CARGO_TARGET_DIR:-target}
bare_target=${PINCHPOINT_BARE_TARGET_DIR:-$target/bare}

if [ "${1:-}" = "--check" ]; then
  shift
  RUSTFLAGS="$FLAGS --cfg pinchpoint_bare -D warnings" CARGO_TARGET_DIR="$bare_target" \
    cargo check --lib --bins --features bb8,deadpool "$@"
  exit 0
fi

cargo build --release --bin pinchpoint
RUSTFLAGS="$FLAGS --cfg pinchpoint_bare" CARGO_TARGET_DIR="$bare_target" cargo build --release --bin pinchpoint

echo "load: $(uptime)" >&2
args=("$@")
[ ${#args[@]} -gt 0 ] || args=(--level L4 --repeats 15)
exec "$target/release/pinchpoint" lab --baseline-bin "$bare_target/release/pinchpoint" "${args[@]}"
