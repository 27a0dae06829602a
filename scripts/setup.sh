#!/usr/bin/env bash
# Installs what Vaxel needs to build and test, and only what is missing, so a
# second run costs a few seconds. Debian 12 (as root, or with sudo) gets its
# packages through apt; elsewhere the script says what it cannot install.
#
#   scripts/setup.sh build   toolchain and libraries needed to build
#   scripts/setup.sh test    the above plus the real peers the tests run against
#   scripts/setup.sh bench   the above plus what scripts/bench-engine.sh needs
set -euo pipefail
cd "$(dirname "$0")/.."

what=${1:-build}

say() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }

# Libraries the build links against (opus needs cmake; the desktop app WebKitGTK).
# vaxel-audio: ALSA headers for cpal; WebRTC audio processing 0.3 for the `aec` feature,
# whose bindings bindgen generates with libclang. vaxel-store: libdbus for keyring's Secret
# Service client (the OS keychain on Linux).
build_pkgs=(build-essential cmake pkg-config curl ca-certificates git libssl-dev libdbus-1-dev
    libasound2-dev libwebrtc-audio-processing-dev libclang-dev)
# The desktop app (vaxel-desktop, Tauri 2 on WebKitGTK 4.1): its libraries, plus Node.js
# for the Svelte UI when no node is installed (ARCHITECTURE.md §5a).
build_pkgs+=(libwebkit2gtk-4.1-dev libgtk-3-dev libayatana-appindicator3-dev librsvg2-dev
    libxdo-dev file wget)
command -v npm >/dev/null || build_pkgs+=(nodejs npm)
# Real programs the tests start on loopback ports (ARCHITECTURE.md §5); PulseAudio with a
# null sink is the clocked virtual sound card, espeak-ng speaks the echo tests' far end;
# gnome-keyring under dbus-run-session is the real Linux keychain, secret-tool checks it.
# Interop: Kamailio as registrar/proxy (with its presence server and TLS modules for the
# phone's presence and TLS tests), baresip phones (core modules: g711, aufile,
# sndfile, ctrl_tcp) and SIPVicious (svwar, svcrack) as the attacker.
test_pkgs=(sip-tester pulseaudio pulseaudio-utils espeak-ng dbus gnome-keyring libsecret-tools
    kamailio kamailio-presence-modules kamailio-tls-modules baresip-core sipvicious openssl)
# The desktop app's end-to-end test: a virtual display, WebKitGTK's WebDriver,
# ImageMagick's `import` for screenshots of the window, and xdotool to press the global
# hotkeys as the X server sees them.
test_pkgs+=(xvfb xauth webkit2gtk-driver imagemagick xdotool)
# scripts/bench-engine.sh: Kamailio's registrar and auth_db on SQLite, like the engine's.
bench_pkgs=(kamailio-sqlite-modules sqlite3)

apt_install() {
    local missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if ! command -v apt-get >/dev/null; then
        say "not a Debian system: please install ${missing[*]} yourself"
        return 0
    fi
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    say "installing Debian packages: ${missing[*]}"
    # The package lists may be absent on a fresh machine; refresh once per run.
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

case "$(uname -s)" in
    Linux)
        if command -v dpkg-query >/dev/null; then
            pkgs=("${build_pkgs[@]}")
            [ "$what" = test ] || [ "$what" = bench ] && pkgs+=("${test_pkgs[@]}")
            [ "$what" = bench ] && pkgs+=("${bench_pkgs[@]}")
            apt_install "${pkgs[@]}"
        fi
        ;;
    Darwin)
        command -v cmake >/dev/null || say "cmake missing: brew install cmake"
        ;;
esac

if ! command -v cargo >/dev/null; then
    if [ -x "$HOME/.cargo/bin/cargo" ]; then
        export PATH="$HOME/.cargo/bin:$PATH"
    else
        say "installing the Rust toolchain with rustup"
        curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal -c rustfmt,clippy
        export PATH="$HOME/.cargo/bin:$PATH"
    fi
fi
for c in rustfmt clippy; do
    if ! cargo "${c/rustfmt/fmt}" --version >/dev/null 2>&1; then
        command -v rustup >/dev/null && rustup component add "$c"
    fi
done

# npm packages of the UI (workspace `ui`); again when package-lock.json is newer than
# what was installed.
if [ -f package-lock.json ] && { [ ! -f node_modules/.package-lock.json ] ||
        [ package-lock.json -nt node_modules/.package-lock.json ]; }; then
    say "installing npm packages"
    npm ci --no-audit --no-fund
fi

# tauri-driver: the WebDriver server the desktop end-to-end test talks to (crates.io).
if [ "$what" = test ] && [ "$(uname -s)" = Linux ] && ! command -v tauri-driver >/dev/null &&
        [ ! -x "$HOME/.cargo/bin/tauri-driver" ]; then
    say "installing tauri-driver"
    cargo install --locked tauri-driver
fi
