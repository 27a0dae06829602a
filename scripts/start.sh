#!/usr/bin/env bash
# `npm start`: installs what is missing, builds, and starts the best Vaxel demo
# that exists today: a SIP user agent built on vaxel-sip that answers calls, with
# the command line that calls it.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh build
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/vaxel/target}
cargo build --release --locked -p vaxel-transport --example sip-answer
exec "$CARGO_TARGET_DIR/release/examples/sip-answer" "$@"
