#!/usr/bin/env bash
# `npm start`: installs what is missing, builds, and starts Vaxel.
#
# With a display (DISPLAY or WAYLAND_DISPLAY set, or macOS/Windows) that is the desktop
# app (vaxel-desktop); on first run it offers to host the office's switchboard on this
# computer (the engine in-process with the demo office) or to connect to a server.
# Without a display (or with VAXEL_HEADLESS=1) it is the routing engine with the demo
# office (assets/demo-office.toml), headless, plus the lines that register a `vaxel`
# softphone and place a call.
#
# Environment: VAXEL_SIP (default 127.0.0.1:5060), VAXEL_API (default 127.0.0.1:8080),
# VAXEL_DEMO_DATA (default ~/.local/share/vaxel/demo: the engine's database).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh build
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/vaxel/target}

display=no
case "$(uname -s)" in
    Darwin | MINGW* | MSYS* | CYGWIN*) display=yes ;;
    *) [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ] && display=yes ;;
esac
if [ "$display" = yes ] && [ -z "${VAXEL_HEADLESS:-}" ]; then
    npm run build -w ui --silent
    cargo build --release --locked -p vaxel-desktop
    # WebKitGTK paints faster and smaller without compositing and DMA-BUF (ARCHITECTURE.md §5a).
    export WEBKIT_DISABLE_COMPOSITING_MODE=${WEBKIT_DISABLE_COMPOSITING_MODE:-1}
    export WEBKIT_DISABLE_DMABUF_RENDERER=${WEBKIT_DISABLE_DMABUF_RENDERER:-1}
    exec "$CARGO_TARGET_DIR/release/vaxel-desktop" "$@"
fi
cargo build --release --locked -p vaxel-engine -p vaxel-phone --bins

bin="$CARGO_TARGET_DIR/release"
sip=${VAXEL_SIP:-127.0.0.1:5060}
api=${VAXEL_API:-127.0.0.1:8080}
data=${VAXEL_DEMO_DATA:-$HOME/.local/share/vaxel/demo}
office=assets/demo-office.toml
domain=$(sed -n 's/^domain = "\(.*\)".*/\1/p' "$office" | head -1)
# The first call flow's main numbers, the voicemail and echo-test numbers.
main=$(awk '/^\[\[routing.flows\]\]/{f=1} f&&/^numbers/{gsub(/.*\[|\].*|"/,""); print; exit}' "$office")
voicemail=$(sed -n 's/^voicemail_number = "\([^"]*\)".*/\1/p' "$office" | head -1)
echo_test=$(sed -n 's/^echo_number = "\([^"]*\)".*/\1/p' "$office" | head -1)
mkdir -p "$data"

cat <<MSG

Vaxel demo office "$domain" — routing engine on sip:$sip (UDP and TCP),
control API on http://$api/ (OpenAPI at /openapi.json), data in $data.

Main number: ${main%%,*} (also${main#*,} from the provider) — opening hours, then a
menu: 1 sales, 2 support, 0 the operator; closed → the office's voicemail.
Voicemail: call $voicemail (PIN: the office box 1234, 4001 and 4002 their extension).
Echo test: $echo_test.  Feature codes: *21*4003# forwards all your calls to 4003, #21# stops.

Demo accounts (extension / password / name):
$(awk -F' = ' '/^\[\[users\]\]/{u=1} u&&/^extension/{gsub(/"/,"",$2); e=$2} u&&/^name/{gsub(/"/,"",$2); n=$2} u&&/^password/{gsub(/"/,"",$2); printf "  %s / %s / %s\n", e, $2, n; u=0}' "$office")

Call between two demo users with the vaxel command line (two terminals):
  alias vaxel=$bin/vaxel
  VAXEL_PASSWORD=bo-4002 vaxel --profile /tmp/vaxel-bob account add --name bob --uri sip:4002@$domain --proxy sip:$sip
  VAXEL_PASSWORD=bo-4002 vaxel --profile /tmp/vaxel-bob listen --auto-answer
  VAXEL_PASSWORD=alice-4001 vaxel --profile /tmp/vaxel-alice account add --name alice --uri sip:4001@$domain --proxy sip:$sip
  VAXEL_PASSWORD=alice-4001 vaxel --profile /tmp/vaxel-alice call sip:4002@$domain --hangup-after 10
(--play FILE.wav / --record FILE.wav instead of the sound devices.) Any SIP phone
works too: username = extension, password as above, domain $domain, proxy $sip.

MSG
exec "$bin/vaxel-engine" --data "$data" --office "$office" --sip "$sip" --api "$api" \
    --prompts assets/prompts
