#!/usr/bin/env bash
# Benchmark of the Vaxel engine against Kamailio (prints figures; not a test).
#
#   scripts/bench-engine.sh [seconds-per-step]
#   scripts/bench-engine.sh --profile [kamailio-]calls|register [rate] [seconds]
#   scripts/bench-engine.sh --calls [seconds-per-step]
#   VAXEL_BENCH_PERF=0 scripts/bench-engine.sh --profile ...   (CPU figures without perf)
#
# With --calls, only part 1 runs (the calls/s search for both servers and the ratio):
# the quick check after a change to the engine's call path.
#
# With --profile, only the engine (or Kamailio) runs, under one steady SIPp load
# (default 1000/s for 10 s); it prints the CPU time the server and SIPp used per
# call or REGISTER (is SIPp the bottleneck?) and, for the engine, the top frames of
# a `perf record -g` profile, kept in $CARGO_TARGET_DIR/profile/.
#
# 1. Calls: the highest INVITE→200→ACK→BYE rate with zero failed calls, SIPp uac →
#    server → SIPp uas (signalling only), first with vaxel-engine (B2BUA: two dialogs,
#    a media relay and a call record per call; the uac is the office's trunk so calls
#    are not challenged, like Kamailio's), then with Kamailio as a stateful proxy
#    (record_route, t_relay, the callee found with lookup("location"), -m 512).
#    The uac follows the Record-Route set (ACK and BYE loose-routed), so both
#    servers see every request of the dialog.
# 2. REGISTER/s with digest authentication (401, then 200) for both: the engine
#    checks stored HA1s and writes each binding to SQLite; Kamailio checks HA1s in
#    SQLite (auth_db) and keeps bindings in memory, written to SQLite in batches
#    (usrloc db_mode 2: with write-through, db_mode 1, its 4 workers lock each
#    other out of SQLite and answer 401/500). Both have the same 1000 users.
#    A step passes when SIPp reports no failed call AND finished within 20 % of the
#    step's length (a SIPp that cannot keep up otherwise completes late and
#    "passes"). The search doubles the rate until a rate fails twice, then bisects.
# 3. RTP: relayed streams per core with added jitter under 1 ms — the engine's
#    relay on one tokio thread, loaded by `examples/relay_bench.rs`.
# Needs: sipp (sip-tester), kamailio with kamailio-sqlite-modules, sqlite3, a release
# build (made here); `scripts/setup.sh bench` installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh bench
PROFILE=
CALLS_ONLY=
if [ "${1:-}" = --calls ]; then
    CALLS_ONLY=1
    STEP=${2:-5}
elif [ "${1:-}" = --profile ]; then
    PROFILE=${2:?--profile calls|register [rate] [seconds]}
    PROFILE_RATE=${3:-1000}
    PROFILE_SECS=${4:-10}
    STEP=$PROFILE_SECS
else
    STEP=${1:-5}
fi
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/vaxel/target}
cargo build --release -q -p vaxel-engine --bin vaxel-engine --example relay_bench
# VAXEL_ENGINE_BIN: another build of the engine to measure (A/B comparisons).
ENGINE=${VAXEL_ENGINE_BIN:-$CARGO_TARGET_DIR/release/vaxel-engine}
RELAY_BENCH="$CARGO_TARGET_DIR/release/examples/relay_bench"
WORK=$(mktemp -d)
# SIPp's own sockets get 1 MB buffers: with its 64 KB default, a SIPp process that is
# descheduled for a few milliseconds (2 cores shared by SIPp, the server and its
# threads) drops the datagrams of any server that answers in bursts, the call is
# retransmitted 500 ms later and the step "fails" on time; the same for both servers.
SIPP_OPTS="-buff_size 1048576"
PIDS=()
# Stops our own background processes (by pid) and waits until they are gone, so
# the next server can bind the same ports.
stop_all() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    PIDS=()
}
cleanup() { stop_all; rm -rf "$WORK"; }
trap cleanup EXIT
say() { printf '\033[1m[bench]\033[0m %s\n' "$*" >&2; }

SERVER_PORT=15160
UAS_PORT=15161
UAC_PORT=15162      # SIPp's own ports: explicit, so a 5060 in use elsewhere does not matter
REG_PORT=15163
DOMAIN=bench.test

# ---- scenarios ----
cat > "$WORK/register.xml" <<'XML'
<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="register with digest">
  <send retrans="500"><![CDATA[
REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:[field0]@bench.test>;tag=[pid]r[call_number]
To: <sip:[field0]@bench.test>
Call-ID: [call_id]
CSeq: 1 REGISTER
Contact: <sip:[field0]@[local_ip]:[local_port]>
Max-Forwards: 70
Expires: 3600
Content-Length: 0

]]></send>
  <recv response="401" auth="true"/>
  <send retrans="500"><![CDATA[
REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:[field0]@bench.test>;tag=[pid]r[call_number]
To: <sip:[field0]@bench.test>
Call-ID: [call_id]
CSeq: 2 REGISTER
Contact: <sip:[field0]@[local_ip]:[local_port]>
[authentication username=5001 password=pw-5001]
Max-Forwards: 70
Expires: 3600
Content-Length: 0

]]></send>
  <recv response="200"/>
</scenario>
XML
# SIPp cannot put injected fields inside [authentication], so one user (5001)
# registers over and over; the UAS registers as 5000 with its own scenario.
printf 'SEQUENTIAL\n5001;pw-5001\n' > "$WORK/users.csv"
sed 's/\[field0\]/5000/g; s/username=5001 password=pw-5001/username=5000 password=pw-5000/' \
    "$WORK/register.xml" > "$WORK/register-uas.xml"

# The caller: INVITE, 200, then ACK and BYE along the Record-Route set.
cat > "$WORK/uac.xml" <<XML
<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="uac with loose routing">
  <send retrans="500"><![CDATA[
INVITE sip:5000@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:sipp@[local_ip]:[local_port]>;tag=[pid]u[call_number]
To: <sip:5000@$DOMAIN>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: <sip:sipp@[local_ip]:[local_port]>
Max-Forwards: 70
Content-Type: application/sdp
Content-Length: [len]

v=0
o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 0
a=rtpmap:0 PCMU/8000
]]></send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200" rrs="true"/>
  <send><![CDATA[
ACK [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
[routes]
From: <sip:sipp@[local_ip]:[local_port]>;tag=[pid]u[call_number]
To: <sip:5000@$DOMAIN>[peer_tag_param]
Call-ID: [call_id]
CSeq: 1 ACK
Max-Forwards: 70
Content-Length: 0

]]></send>
  <pause/>
  <send retrans="500"><![CDATA[
BYE [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
[routes]
From: <sip:sipp@[local_ip]:[local_port]>;tag=[pid]u[call_number]
To: <sip:5000@$DOMAIN>[peer_tag_param]
Call-ID: [call_id]
CSeq: 2 BYE
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="200" crlf="true"/>
</scenario>
XML

# The callee: answers, echoing Record-Route so the caller loose-routes through a proxy.
# It answers at once without 180: Kamailio's workers relay a 180 and the 200 sent
# right after it independently, and a 180 arriving after the 200 makes SIPp's caller
# abort the call (a real phone ignores it). The ACK is optional for the same reason
# (a BYE may overtake it).
cat > "$WORK/uas.xml" <<'XML'
<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="uas echoing Record-Route">
  <recv request="INVITE"/>
  <send retrans="500"><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:];tag=[pid]s[call_number]
[last_Call-ID:]
[last_CSeq:]
[last_Record-Route:]
Contact: <sip:[local_ip]:[local_port]>
Content-Type: application/sdp
Content-Length: [len]

v=0
o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 0
a=rtpmap:0 PCMU/8000
]]></send>
  <recv request="ACK" optional="true"/>
  <recv request="BYE"/>
  <send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
</scenario>
XML

# ---- the engine's office: 1000 users, the uac's address as a trunk ----
{
    cat <<TOML
[office]
domain = "$DOMAIN"
digest = ["MD5"]
[protection]
allow = ["127.0.0.1"]
[[trunks]]
name = "sipp"
host = "127.0.0.2"
inbound = [{ number = "5000", target = "5000" }]
TOML
    for i in $(seq 5000 5999); do
        printf '[[users]]\nextension = "%s"\nname = "Bench %s"\npassword = "pw-%s"\n' "$i" "$i" "$i"
    done
} > "$WORK/office.toml"

# ---- Kamailio: stateful proxy and registrar; the same users (HA1s) in SQLite ----
KDB="$WORK/kamailio.sqlite"
{
    cat /usr/share/kamailio/db_sqlite/standard-create.sql \
        /usr/share/kamailio/db_sqlite/auth_db-create.sql \
        /usr/share/kamailio/db_sqlite/usrloc-create.sql
    echo "BEGIN;"
    for i in $(seq 5000 5999); do
        ha1=$(printf '%s' "$i:$DOMAIN:pw-$i" | md5sum | cut -d' ' -f1)
        printf "INSERT INTO subscriber (username, domain, ha1) VALUES ('%s', '%s', '%s');\n" \
            "$i" "$DOMAIN" "$ha1"
    done
    echo "COMMIT;"
} | sqlite3 "$KDB"
cat > "$WORK/kamailio.cfg" <<CFG
#!KAMAILIO
listen=udp:127.0.0.1:$SERVER_PORT
children=4
log_stderror=yes
debug=1
loadmodule "db_sqlite.so"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "auth.so"
loadmodule "auth_db.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
modparam("auth_db", "db_url", "sqlite://$KDB")
modparam("auth_db", "calculate_ha1", 0)
modparam("auth_db", "password_column", "ha1")
modparam("auth_db", "load_credentials", "")
modparam("usrloc", "db_url", "sqlite://$KDB")
modparam("usrloc", "db_mode", 2)
modparam("db_sqlite", "db_set_journal_mode", "$KDB=WAL;")
request_route {
    if (!mf_process_maxfwd_header("10")) { sl_send_reply("483", "Too Many Hops"); exit; }
    if (is_method("REGISTER")) {
        if (!www_authorize("\$td", "subscriber")) { www_challenge("\$td", "0"); exit; }
        if (!save("location")) { sl_reply_error(); }
        exit;
    }
    if (has_totag()) {
        if (loose_route()) { t_relay(); exit; }
        if (is_method("ACK")) { if (t_check_trans()) { t_relay(); } exit; }
        sl_send_reply("404", "Not here");
        exit;
    }
    if (is_method("CANCEL")) { if (t_check_trans()) { t_relay(); } exit; }
    t_check_trans();
    record_route();
    if (!lookup("location")) { sl_send_reply("404", "Not Found"); exit; }
    t_relay();
}
CFG

# The UAS in the background; its pid joins PIDS (only our own processes are stopped).
uas() {
    sipp $SIPP_OPTS -sf "$WORK/uas.xml" -i 127.0.0.1 -p "$UAS_PORT" -nostdin >/dev/null 2>&1 &
    PIDS+=($!)
    sleep 0.3
}

# Whether a step that started at $1 ended within 20 % of its length (+1 s).
on_time() {
    awk -v a="$1" -v b="$(date +%s.%N)" -v s="$STEP" 'BEGIN { exit !(b - a <= s * 1.2 + 1) }'
}

# One step of calls at `rate` per second for $STEP seconds.
calls_ok() {
    local rate=$1 n=$(( $1 * STEP )) t0
    t0=$(date +%s.%N)
    timeout $(( STEP + 40 )) sipp $SIPP_OPTS -sf "$WORK/uac.xml" -i 127.0.0.2 -p "$UAC_PORT" "127.0.0.1:$SERVER_PORT" \
        -r "$rate" -m "$n" -l $(( rate * 4 + 10 )) -nostdin -timeout $(( STEP + 30 ))s -timeout_error \
        >/dev/null 2>&1 && on_time "$t0"
}

registers_ok() {
    local rate=$1 n=$(( $1 * STEP )) t0
    t0=$(date +%s.%N)
    timeout $(( STEP + 40 )) sipp $SIPP_OPTS -sf "$WORK/register.xml" -inf "$WORK/users.csv" -i 127.0.0.1 -p "$REG_PORT" \
        "127.0.0.1:$SERVER_PORT" -r "$rate" -m "$n" -l $(( rate * 4 + 10 )) -nostdin \
        -timeout $(( STEP + 30 ))s -timeout_error >/dev/null 2>&1 && on_time "$t0"
}

# Highest rate with zero failures: double, then bisect. A rate fails only when two
# steps at it fail: on a shared machine one step now and then stalls for reasons that
# are not the server's, and a single stall would end the search early.
passes() { "$1" "$2" || "$1" "$2"; }
search() {
    local check=$1 lo=0 hi=50
    while passes "$check" "$hi"; do lo=$hi; hi=$(( hi * 2 )); [ "$hi" -gt 20000 ] && break; done
    while [ $(( hi - lo )) -gt $(( lo / 10 + 5 )) ]; do
        local mid=$(( (lo + hi) / 2 ))
        if passes "$check" "$mid"; then lo=$mid; else hi=$mid; fi
    done
    echo "$lo"
}

register_uas() {
    timeout 20 sipp $SIPP_OPTS -sf "$WORK/register-uas.xml" -i 127.0.0.1 -p "$UAS_PORT" \
        "127.0.0.1:$SERVER_PORT" -m 1 -nostdin -timeout 10s -timeout_error >/dev/null 2>&1 ||
        { say "the callee could not register (is the server up? see $1)"; cat "$1" >&2; exit 1; }
}

start_engine() {
    mkdir -p "$WORK/data"
    "$ENGINE" --data "$WORK/data" --office "$WORK/office.toml" --sip "127.0.0.1:$SERVER_PORT" \
        --api 127.0.0.1:0 >/dev/null 2>"$WORK/engine.log" &
    ENGINE_PID=$!
    PIDS+=("$ENGINE_PID")
    sleep 1
    register_uas "$WORK/engine.log"
    uas
}

start_kamailio() {
    kamailio -f "$WORK/kamailio.cfg" -m 512 -M 32 -DD -E -Y "$WORK" -P "$WORK/kam.pid" >/dev/null 2>"$WORK/kamailio.log" &
    KAM_PID=$!
    PIDS+=("$KAM_PID")
    sleep 1
    register_uas "$WORK/kamailio.log"
    uas
}

# CPU seconds (user + system) the processes $@ and their children have used so far.
cpu_secs() {
    local hz p t=0
    hz=$(getconf CLK_TCK)
    for p in "$@" $(pgrep -P "$1" || true); do
        t=$(awk -v t="$t" -v hz="$hz" '{ printf "%.2f", t + ($14 + $15) / hz }' "/proc/$p/stat" 2>/dev/null || echo "$t")
    done
    echo "$t"
}

if [ -n "$PROFILE" ]; then
    OUT=${CARGO_TARGET_DIR}/profile
    mkdir -p "$OUT"
    PERF=
    if [ "${PROFILE#kamailio-}" != "$PROFILE" ]; then
        PROFILE=${PROFILE#kamailio-}
        start_kamailio
        SERVER=$KAM_PID
        say "Kamailio: $PROFILE at $PROFILE_RATE/s for $PROFILE_SECS s"
    else
        start_engine
        SERVER=$ENGINE_PID
        say "profiling the engine: $PROFILE at $PROFILE_RATE/s for $PROFILE_SECS s"
        if [ "${VAXEL_BENCH_PERF:-1}" != 0 ]; then
            perf record ${PERF_CALL_GRAPH:--g} -F 499 -o "$OUT/perf-$PROFILE.data" -p "$ENGINE_PID" 2>"$OUT/perf.log" &
            PERF=$!
        fi
    fi
    e0=$(cpu_secs "$SERVER")
    m0=$(awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$SERVER/task/$SERVER/stat")
    t0=$(date +%s.%N)
    case $PROFILE in
        calls) sipp $SIPP_OPTS -sf "$WORK/uac.xml" -i 127.0.0.2 -p "$UAC_PORT" "127.0.0.1:$SERVER_PORT" \
                -r "$PROFILE_RATE" -m $(( PROFILE_RATE * PROFILE_SECS )) -l $(( PROFILE_RATE * 4 + 10 )) \
                -nostdin -timeout $(( PROFILE_SECS + 30 ))s -timeout_error \
                -trace_stat -fd 1 -stf "$OUT/sipp-$PROFILE.csv" -trace_err -error_file "$OUT/sipp-$PROFILE.err" >/dev/null 2>&1 & ;;
        register) sipp $SIPP_OPTS -sf "$WORK/register.xml" -inf "$WORK/users.csv" -i 127.0.0.1 -p "$REG_PORT" \
                "127.0.0.1:$SERVER_PORT" -r "$PROFILE_RATE" -m $(( PROFILE_RATE * PROFILE_SECS )) \
                -l $(( PROFILE_RATE * 4 + 10 )) -nostdin -timeout $(( PROFILE_SECS + 30 ))s -timeout_error \
                -trace_stat -fd 1 -stf "$OUT/sipp-$PROFILE.csv" -trace_err -error_file "$OUT/sipp-$PROFILE.err" >/dev/null 2>&1 & ;;
        *) say "--profile calls|register"; exit 2 ;;
    esac
    SIPP=$!
    sleep 1
    s0=$(cpu_secs "$SIPP" 2>/dev/null || echo 0)
    sleep $(( PROFILE_SECS - 2 ))
    s1=$(cpu_secs "$SIPP" 2>/dev/null || echo 0)
    rc=0; wait "$SIPP" || rc=$?
    t1=$(date +%s.%N)
    e1=$(cpu_secs "$SERVER")
    m1=$(awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$SERVER/task/$SERVER/stat")
    say "SIPp exit $rc (0: no failed call) after $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s"
    say "server CPU: $(awk -v a="$e0" -v b="$e1" -v n=$(( PROFILE_RATE * PROFILE_SECS )) 'BEGIN { printf "%.2f s, %.0f us per %s", b - a, (b - a) * 1e6 / n, "'"$PROFILE"'" }')"
    say "server's main thread: $(awk -v a="$m0" -v b="$m1" -v n=$(( PROFILE_RATE * PROFILE_SECS )) 'BEGIN { printf "%.2f s, %.0f us per %s", b - a, (b - a) * 1e6 / n, "'"$PROFILE"'" }')"
    say "SIPp CPU over $(( PROFILE_SECS - 2 )) s of steady load: $(awk -v a="$s0" -v b="$s1" -v s=$(( PROFILE_SECS - 2 )) 'BEGIN { printf "%.0f %% of a core", (b - a) * 100 / s }')"
    if [ -n "$PERF" ]; then
        kill -INT "$PERF"; wait "$PERF" || true
        perf report -i "$OUT/perf-$PROFILE.data" --no-children --percent-limit 1.5 --stdio -g none 2>/dev/null |
            grep -v '^#' | grep -v '^$' | head -40
        say "full profile: perf report -i $OUT/perf-$PROFILE.data"
    fi
    exit 0
fi

say "vaxel-engine: calls"
start_engine
ENGINE_CALLS=$(search calls_ok)
say "vaxel-engine: $ENGINE_CALLS calls/s"
if [ -n "$CALLS_ONLY" ]; then
    stop_all
    start_kamailio
    KAM_CALLS=$(search calls_ok)
    stop_all
    echo "calls/s (INVITE-200-ACK-BYE, $STEP s per step): vaxel $ENGINE_CALLS, kamailio $KAM_CALLS," \
        "ratio $(awk -v a="$ENGINE_CALLS" -v b="$KAM_CALLS" 'BEGIN { printf "%.2f", a / b }');" \
        "load average $(cut -d' ' -f1-3 /proc/loadavg)"
    exit 0
fi
ENGINE_REGS=$(search registers_ok)
say "vaxel-engine: $ENGINE_REGS REGISTER/s"
stop_all

say "Kamailio: calls"
start_kamailio
KAM_CALLS=$(search calls_ok)
say "Kamailio: $KAM_CALLS calls/s; REGISTER/s"
KAM_REGS=$(search registers_ok)
say "Kamailio: $KAM_REGS REGISTER/s"
stop_all

say "RTP relay: streams on one core with added jitter under 1 ms"
RTP_STREAMS=$("$RELAY_BENCH" --max-jitter-ms 1 | tail -1)

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
echo
echo "Highest rates with zero failures ($STEP s per step, $(nproc) cores, SIPp on the same machine):"
printf '  %-32s %8s %8s %8s\n' "" "vaxel" "kamailio" "ratio"
printf '  %-32s %8s %8s %8s\n' "calls/s (INVITE-200-ACK-BYE)" "$ENGINE_CALLS" "$KAM_CALLS" "$(ratio "$ENGINE_CALLS" "$KAM_CALLS")"
printf '  %-32s %8s %8s %8s\n' "REGISTER/s (digest, 401 + 200)" "$ENGINE_REGS" "$KAM_REGS" "$(ratio "$ENGINE_REGS" "$KAM_REGS")"
echo "  (target: vaxel >= 1.5x Kamailio; the engine also anchors media and records every call)"
echo "RTP relay, one core: $RTP_STREAMS"
echo "Load average at the end (other work on the machine skews all figures): $(cut -d' ' -f1-3 /proc/loadavg)"
