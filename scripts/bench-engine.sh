#!/usr/bin/env bash
# Benchmark of the Vaxel engine against Kamailio (prints figures; not a test).
#
#   scripts/bench-engine.sh [seconds-per-step]
#
# 1. Calls: the highest INVITE→200→ACK→BYE rate with zero failed calls, SIPp uac →
#    server → SIPp uas (signalling only), first with vaxel-engine (B2BUA: two dialogs,
#    a media relay and a call record per call; the uac is the office's trunk so calls
#    are not challenged, like Kamailio's), then with Kamailio as a stateful proxy
#    (record_route + t_relay, -m 512).
# 2. REGISTER/s with digest authentication (401, then 200) for both.
# The search doubles the rate until a step has failed calls, then bisects.
# Needs: sipp (sip-tester), kamailio, a release build (made here).
#
# Known limits (first version): SIPp's built-in uac sends ACK and BYE without Route,
# so Kamailio's in-dialog routing here is a workaround, and its call figure (200/s
# on the first run) is far below what Kamailio does in practice; its REGISTER
# figure (24000/s) is higher than SIPp itself plausibly drives. Check both with
# -trace_err before quoting the ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
STEP=${1:-5}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/vaxel/target}
cargo build --release -q -p vaxel-engine
ENGINE="$CARGO_TARGET_DIR/release/vaxel-engine"
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
say() { printf '\033[1m[bench]\033[0m %s\n' "$*" >&2; }

SERVER_PORT=15160
UAS_PORT=15161
DOMAIN=bench.test

# ---- scenarios ----
cat > "$WORK/register.xml" <<'EOF'
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
EOF
# SIPp cannot put injected fields inside [authentication], so one user (5001)
# registers over and over; the UAS registers as 5000 with its own scenario.
printf 'SEQUENTIAL\n5001;pw-5001\n' > "$WORK/users.csv"
sed 's/\[field0\]/5000/g; s/username=5001 password=pw-5001/username=5000 password=pw-5000/' \
    "$WORK/register.xml" > "$WORK/register-uas.xml"

# ---- the engine's office: 1000 users, the uac's address as a trunk ----
{
    cat <<EOF
[office]
domain = "$DOMAIN"
digest = ["MD5"]
[protection]
allow = ["127.0.0.1"]
[[trunks]]
name = "sipp"
host = "127.0.0.2"
inbound = [{ number = "5000", target = "5000" }]
EOF
    for i in $(seq 5000 5999); do
        printf '[[users]]\nextension = "%s"\nname = "Bench %s"\npassword = "pw-%s"\n' "$i" "$i" "$i"
    done
} > "$WORK/office.toml"

# ---- Kamailio: stateful proxy, and a registrar with digest against one password ----
cat > "$WORK/kamailio.cfg" <<EOF
#!KAMAILIO
listen=udp:127.0.0.1:$SERVER_PORT
children=4
log_stderror=yes
debug=1
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "auth.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
modparam("auth", "secret", "bench-secret-bench")
request_route {
    if (!mf_process_maxfwd_header("10")) { sl_send_reply("483", "Too Many Hops"); exit; }
    if (is_method("REGISTER")) {
        \$var(pw) = "pw-" + \$fU;
        if (!pv_www_authenticate("$DOMAIN", "\$var(pw)", "0")) { www_challenge("$DOMAIN", "0"); exit; }
        save("location");
        exit;
    }
    if (has_totag()) {
        # SIPp's built-in uac sends ACK and BYE to its first Request-URI without
        # Route headers, so in-dialog requests that are not loose-routed go to the uas.
        if (!loose_route()) { \$du = "sip:127.0.0.1:$UAS_PORT"; }
        if (is_method("ACK")) { if (t_check_trans()) { t_relay(); exit; } forward(); exit; }
        t_relay(); exit;
    }
    if (is_method("CANCEL")) { if (t_check_trans()) { t_relay(); } exit; }
    record_route();
    \$du = "sip:127.0.0.1:$UAS_PORT";
    t_relay();
}
EOF

# The UAS in the background; its pid joins PIDS (only our own processes are stopped).
uas() {
    sipp -sn uas -i 127.0.0.1 -p "$UAS_PORT" -nostdin >/dev/null 2>&1 &
    PIDS+=($!)
    sleep 0.3
}

# One step of calls at `rate` per second for $STEP seconds; success = exit code 0.
calls_ok() {
    local rate=$1 n=$(( $1 * STEP ))
    timeout $(( STEP + 40 )) sipp -sn uac -s 5000 -i 127.0.0.2 -p 0 "127.0.0.1:$SERVER_PORT" \
        -r "$rate" -m "$n" -l $(( rate * 4 + 10 )) -nostdin -timeout $(( STEP + 30 ))s -timeout_error \
        >/dev/null 2>&1
}

registers_ok() {
    local rate=$1 n=$(( $1 * STEP ))
    timeout $(( STEP + 40 )) sipp -sf "$WORK/register.xml" -inf "$WORK/users.csv" -i 127.0.0.1 -p 0 \
        "127.0.0.1:$SERVER_PORT" -r "$rate" -m "$n" -l $(( rate * 4 + 10 )) -nostdin \
        -timeout $(( STEP + 30 ))s -timeout_error >/dev/null 2>&1
}

# Highest rate with zero failures: double, then bisect.
search() {
    local check=$1 lo=0 hi=50
    while "$check" "$hi"; do lo=$hi; hi=$(( hi * 2 )); [ "$hi" -gt 20000 ] && break; done
    while [ $(( hi - lo )) -gt $(( lo / 10 + 5 )) ]; do
        local mid=$(( (lo + hi) / 2 ))
        if "$check" "$mid"; then lo=$mid; else hi=$mid; fi
    done
    echo "$lo"
}

register_uas_at_engine() {
    sipp -sf "$WORK/register-uas.xml" -i 127.0.0.1 -p "$UAS_PORT" \
        "127.0.0.1:$SERVER_PORT" -m 1 -nostdin >/dev/null 2>&1
}

say "vaxel-engine: calls"
mkdir -p "$WORK/data"
"$ENGINE" --data "$WORK/data" --office "$WORK/office.toml" --sip "127.0.0.1:$SERVER_PORT" \
    --api 127.0.0.1:0 >/dev/null 2>"$WORK/engine.log" &
PIDS+=($!)
sleep 1
register_uas_at_engine
uas
ENGINE_CALLS=$(search calls_ok)
say "vaxel-engine: REGISTER/s"
ENGINE_REGS=$(search registers_ok)
kill "${PIDS[@]}" 2>/dev/null || true; PIDS=(); sleep 0.5

say "Kamailio: calls"
kamailio -f "$WORK/kamailio.cfg" -m 512 -M 32 -DD -E -Y "$WORK" -P "$WORK/kam.pid" >/dev/null 2>"$WORK/kamailio.log" &
PIDS+=($!)
sleep 1
uas
KAM_CALLS=$(search calls_ok)
say "Kamailio: REGISTER/s"
KAM_REGS=$(search registers_ok)

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
echo
echo "Highest rates with zero failures ($STEP s per step, $(nproc) cores, SIPp on the same machine):"
printf '  %-32s %8s %8s %8s\n' "" "vaxel" "kamailio" "ratio"
printf '  %-32s %8s %8s %8s\n' "calls/s (INVITE-200-ACK-BYE)" "$ENGINE_CALLS" "$KAM_CALLS" "$(ratio "$ENGINE_CALLS" "$KAM_CALLS")"
printf '  %-32s %8s %8s %8s\n' "REGISTER/s (digest, 401 + 200)" "$ENGINE_REGS" "$KAM_REGS" "$(ratio "$ENGINE_REGS" "$KAM_REGS")"
echo "  (target: vaxel >= 1.5x Kamailio; the engine also anchors media and records every call)"
