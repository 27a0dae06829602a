#!/usr/bin/env bash
# Figures for the desktop app (prints them; not a test), under Xvfb:
#
#   scripts/bench-desktop.sh [runs]
#
# 1. Cold start to a usable window: from spawning the program to (a) the first page load
#    and (b) the UI having drawn itself from its first snapshot (`ui ready`), Vaxel with
#    the embedded engine and demo office already set up, next to an empty Tauri window
#    (src-tauri/examples/empty.rs) built the same way.
# 2. Idle memory after the window is up and has idled 5 s: RSS, PSS (shared pages split
#    among the processes that map them) and USS (pages no other process maps) summed over
#    the program and its WebKit processes (WebKitWebProcess, WebKitNetworkProcess), and
#    per process; Vaxel with its lighter WebKit settings, Vaxel with WebKit's defaults
#    (VAXEL_WEBKIT_DEFAULTS=1) and the empty app side by side. What Vaxel adds over the
#    empty app is the figure to keep small (ARCHITECTURE.md §5a).
# 3. Search latency per keystroke with 100,000 directory entries: the criterion bench
#    `cargo bench -p vaxel-desktop --bench search` (run it separately; it takes minutes).
#
# Release builds; WEBKIT_DISABLE_COMPOSITING_MODE=1 WEBKIT_DISABLE_DMABUF_RENDERER=1 as the
# app runs by default. Processes are stopped by their own pids.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/vaxel/target}
PROFILE=${VAXEL_BENCH_PROFILE:-release}
if [ -z "${VAXEL_BENCH_NO_BUILD:-}" ]; then
    npm run build -w ui --silent
    flag=(); [ "$PROFILE" = release ] && flag=(--release)
    cargo build "${flag[@]}" --locked -p vaxel-desktop --bin vaxel-desktop --example empty
fi
BIN="$CARGO_TARGET_DIR/$PROFILE"
if [ -z "${DISPLAY:-}" ]; then
    exec xvfb-run -a -s "-screen 0 1280x800x24" env VAXEL_BENCH_NO_BUILD=1 "$0" "$@"
fi
export WEBKIT_DISABLE_COMPOSITING_MODE=1 WEBKIT_DISABLE_DMABUF_RENDERER=1
WORK=$(mktemp -d)
export WORK
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

# One run: prints "page_ms ui_ms rss_kb pss_kb procs uss_kb" for the program, and one
# "# name rss pss uss" line per process (kB) to $WORK/procs.txt.
measure() {
    local exe=$1 log=$WORK/run.log want=$2
    : > "$log"
    "$exe" 2>"$log" >/dev/null &
    local pid=$!
    PIDS+=("$pid")
    local t0; t0=$(date +%s%N)
    for _ in $(seq 1 300); do grep -q "$want" "$log" && break; sleep 0.05; done
    sleep 5
    python3 - "$pid" "$log" <<'PY'
import os, re, sys
root = int(sys.argv[1]); log = open(sys.argv[2]).read()
def kids(p):
    out = []
    for d in os.listdir('/proc'):
        if d.isdigit():
            try:
                if int(open(f'/proc/{d}/stat').read().rsplit(')', 1)[1].split()[1]) == p:
                    out.append(int(d))
            except OSError:
                pass
    return out
todo, seen = [root], []
while todo:
    p = todo.pop(); seen.append(p); todo += kids(p)
rss = pss = uss = 0
procs = []
for p in seen:
    try:
        r = q = u = 0
        for line in open(f'/proc/{p}/smaps_rollup'):
            f = line.split()
            if f[0] == 'Rss:': r = int(f[1])
            if f[0] == 'Pss:': q = int(f[1])
            if f[0] in ('Private_Clean:', 'Private_Dirty:'): u += int(f[1])
        name = open(f'/proc/{p}/comm').read().strip()
        procs.append(f'{name} {r} {q} {u}')
        rss += r; pss += q; uss += u
    except OSError:
        pass
with open(os.environ['WORK'] + '/procs.txt', 'a') as o:
    o.write(os.path.basename(os.readlink(f'/proc/{root}/exe')) + ': ' + ' | '.join(procs) + '\n')
page = re.search(r'page loaded ms=(\d+)', log)
ui = re.search(r'ui ready ms=(\d+)', log)
print(page.group(1) if page else 'nan', ui.group(1) if ui else 'nan', rss, pss, len(seen), uss)
PY
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# Vaxel set up as "host the office" once, so every run is a warm-profile cold start.
export VAXEL_DESKTOP_DIR=$WORK/vaxel VAXEL_ENGINE_SIP=127.0.0.1:0
mkdir -p "$VAXEL_DESKTOP_DIR/config"
printf '{"mode":"host"}\n' > "$VAXEL_DESKTOP_DIR/config/settings.json"

summary() {
    python3 -c '
import sys, statistics as s
rows = [list(map(float, l.split())) for l in sys.stdin if l.strip()]
col = lambda i: [r[i] for r in rows if r[i] == r[i]]
med = lambda v: s.median(v) if v else float("nan")
print(f"{med(col(0)):.0f} {med(col(1)):.0f} {med(col(2))/1024:.0f} {med(col(3))/1024:.0f} {int(rows[0][4])} {med(col(5))/1024:.0f}")'
}
: > "$WORK/vaxel.txt"; : > "$WORK/empty.txt"; : > "$WORK/defaults.txt"; : > "$WORK/procs.txt"
for i in $(seq 1 "$RUNS"); do
    measure "$BIN/vaxel-desktop" "ui ready" >> "$WORK/vaxel.txt"
    VAXEL_WEBKIT_DEFAULTS=1 measure "$BIN/vaxel-desktop" "ui ready" >> "$WORK/defaults.txt"
    measure "$BIN/examples/empty" "page loaded" >> "$WORK/empty.txt"
done
read -r vp vu vr vs vn vq < <(summary < "$WORK/vaxel.txt")
read -r _ _ dr ds _ dq < <(summary < "$WORK/defaults.txt")
read -r ep _ er es en eq < <(summary < "$WORK/empty.txt")
echo
echo "Desktop figures under Xvfb ($PROFILE build, median of $RUNS runs, $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg)):"
printf '  %-40s %10s %10s %10s\n' "" "vaxel" "empty" "added"
printf '  %-40s %10s %10s %10s\n' "start → first page load (ms)" "$vp" "$ep" "$((vp - ep))"
printf '  %-40s %10s %10s %10s\n' "start → UI drawn from snapshot (ms)" "$vu" "-" "-"
printf '  %-40s %10s %10s %10s\n' "idle RSS, app + WebKit (MB)" "$vr" "$er" "$((vr - er))"
printf '  %-40s %10s %10s %10s\n' "idle PSS, app + WebKit (MB)" "$vs" "$es" "$((vs - es))"
printf '  %-40s %10s %10s %10s\n' "idle USS, app + WebKit (MB)" "$vq" "$eq" "$((vq - eq))"
printf '  %-40s %10s %10s\n' "processes" "$vn" "$en"
printf '  %-40s %10s %10s %10s\n' "WebKit defaults: RSS / PSS / USS (MB)" "$dr" "$ds" "$dq"
echo "  per process, last run (name rss pss uss, kB):"
tail -n 3 "$WORK/procs.txt" | sed 's/^/    /'
echo "  (targets: start ≤ 1000 ms; memory Vaxel adds ≤ 150 MB)"
