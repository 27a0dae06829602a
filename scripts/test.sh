#!/usr/bin/env bash
# `npm test`: installs what is missing, then runs every check and test:
# formatting, clippy, Rust unit/property/scenario tests, and the interop tests
# against real peers (SIPp, …) that the tests start on loopback ports.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh test

# Keep build output outside the clone so repeated runs (CI included) are incremental.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/vaxel/target}
# Interop tests fail, rather than skip, when a peer program is missing.
export VAXEL_REQUIRE_PEERS=1
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all --check

# Echo cancellation is on in the test run (and in the desktop build).
features=(--features vaxel-audio/aec)

step "cargo clippy"
cargo clippy --workspace --all-targets --locked "${features[@]}" -- -D warnings

step "cargo test"
cargo test --workspace --locked "${features[@]}"
