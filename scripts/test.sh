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

step "UI: build (the desktop app embeds it), type check, component tests (Vitest)"
npm run build -w ui --silent
npm run check -w ui --silent
npm test -w ui --silent

step "cargo fmt --check"
cargo fmt --all --check

# Echo cancellation is on in the test run (and in the desktop build).
features=(--features vaxel-audio/aec)

step "cargo clippy"
cargo clippy --workspace --all-targets --locked "${features[@]}" -- -D warnings

step "cargo test"
cargo test --workspace --locked "${features[@]}"

# The desktop app end to end: the real app under Xvfb, driven through tauri-driver and
# WebKitWebDriver, calling a `vaxel` CLI phone through the embedded engine.
if [ "$(uname -s)" = Linux ]; then
    step "desktop end to end (WebdriverIO + tauri-driver under Xvfb)"
    cargo build --locked "${features[@]}" -p vaxel-desktop -p vaxel-phone --bins
    xvfb-run -a -s "-screen 0 1280x800x24" node ui/e2e/call.e2e.mjs
fi
