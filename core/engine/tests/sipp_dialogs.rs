//! In-dialog behaviour of the B2BUA against SIPp: session timers (RFC 4028) with a
//! caller that stops refreshing, 422 for a too-small Session-Expires, SIP INFO DTMF
//! passed to the other leg, and INVITE with Replaces (RFC 3891) taking an answered
//! leg's place.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use vaxel_testkit::peers::skip_or_fail;

/// A SIPp caller: INVITE (407, then with credentials and `invite_headers`), 200
/// (checked by `ok_check`, XML actions), ACK, then `after_ack` (XML).
fn caller(
    engine: SocketAddr,
    user: &str,
    password: &str,
    to: &str,
    invite_headers: &str,
    ok_check: &str,
    after_ack: &str,
) -> String {
    format!(
        r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="caller {to}">
  <send retrans="500"><![CDATA[
INVITE sip:{to}@{engine} SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:{user}@{DOMAIN}>;tag=[pid]c[call_number]
To: <sip:{to}@{DOMAIN}>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: <sip:{user}@[local_ip]:[local_port]>
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="407" auth="true"/>
  <send><![CDATA[
ACK sip:{to}@{engine} SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch-1]
From: <sip:{user}@{DOMAIN}>;tag=[pid]c[call_number]
To: <sip:{to}@{DOMAIN}>[peer_tag_param]
Call-ID: [call_id]
CSeq: 1 ACK
Max-Forwards: 70
Content-Length: 0

]]></send>
  <send retrans="500"><![CDATA[
INVITE sip:{to}@{engine} SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:{user}@{DOMAIN}>;tag=[pid]c[call_number]
To: <sip:{to}@{DOMAIN}>
Call-ID: [call_id]
CSeq: 2 INVITE
Contact: <sip:{user}@[local_ip]:[local_port]>
[authentication username={user} password={password} auth_uri=sip:{to}@{engine}]
Max-Forwards: 70
{invite_headers}Content-Type: application/sdp
Content-Length: [len]

v=0
o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 8 101
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
]]></send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200" rrs="true">{ok_check}</recv>
  <send><![CDATA[
ACK [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:{user}@{DOMAIN}>;tag=[pid]c[call_number]
To: <sip:{to}@{DOMAIN}>[peer_tag_param]
Call-ID: [call_id]
CSeq: 2 ACK
Max-Forwards: 70
Content-Length: 0

]]></send>
{after_ack}
</scenario>
"#
    )
}

/// An in-dialog request from the caller (`cseq`, `method`, extra headers and body).
fn caller_request(user: &str, to: &str, cseq: u32, method: &str, extra: &str) -> String {
    format!(
        r#"  <send retrans="500"><![CDATA[
{method} [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:{user}@{DOMAIN}>;tag=[pid]c[call_number]
To: <sip:{to}@{DOMAIN}>[peer_tag_param]
Call-ID: [call_id]
CSeq: {cseq} {method}
Max-Forwards: 70
{extra}
]]></send>
"#
    )
}

/// Answering a request the engine sent (BYE): 200.
const OK_TO_LAST: &str = r#"  <send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
"#;

/// A callee that answers, then runs `after_ack` (XML), then takes the BYE.
fn callee(after_ack: &str, on_invite: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="callee">
  <recv request="INVITE">{on_invite}</recv>
  <send retrans="500"><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:];tag=[pid]b[call_number]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:[local_ip]:[local_port]>
Content-Type: application/sdp
Content-Length: [len]

v=0
o=user2 53655765 2353687637 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 8 101
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
]]></send>
  <recv request="ACK"/>
{after_ack}  <recv request="BYE"/>
{OK_TO_LAST}</scenario>
"#
    )
}

fn sipp_args(port: u16) -> Vec<String> {
    vec![
        "-m".into(),
        "1".into(),
        "-p".into(),
        port.to_string(),
        "-mp".into(),
        free_port().to_string(),
    ]
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// RFC 4028: the caller negotiates a 6 s session (our Min-SE is 4) with itself as
/// refresher, refreshes once with UPDATE (answered by the engine with
/// Session-Expires), then stops. The engine ends the call: BYE to both legs. On the
/// way, an INFO with a DTMF digit passes to the callee unchanged.
#[test]
fn sipp_session_timer_ends_a_call_whose_refresh_stops_and_info_passes() {
    if !have("sipp") && skip_or_fail("session timer", "sipp (sip-tester)") {
        return;
    }
    let dir = temp_dir("timer");
    let engine = EngineProc::start_with(
        &dir,
        Some(&office("")),
        free_port(),
        &["--session-min-se", "4", "--session-check-secs", "3600"],
    );
    let bob_port = free_port();
    register_at(&dir, &engine, "4002", "bob-pw", bob_port);
    let info_check = r#"
  <recv request="INFO">
    <action><ereg regexp="Signal=5" search_in="body" check_it="true" assign_to="d"/></action>
  </recv>
"#;
    let bob_scn = callee(&format!("{info_check}{OK_TO_LAST}"), "");
    let bob_args = sipp_args(bob_port);
    let mut bob = sipp_bg(
        &dir,
        "bob",
        &bob_scn.replace("</scenario>", "  <Reference variables=\"d\"/>\n</scenario>"),
        &strs(&bob_args),
    );
    std::thread::sleep(Duration::from_millis(300));
    let se_check = r#"<action><ereg regexp="6;refresher=uac" search_in="hdr" header="Session-Expires:" check_it="true" assign_to="se"/><ereg regexp="timer" search_in="hdr" header="Require:" check_it="true" assign_to="rq"/></action>"#;
    let mut after = caller_request(
        "4001",
        "4002",
        3,
        "INFO",
        "Content-Type: application/dtmf-relay\nContent-Length: [len]\n\nSignal=5\nDuration=160",
    );
    after.push_str("  <recv response=\"200\"/>\n  <pause milliseconds=\"2000\"/>\n");
    after.push_str(&caller_request(
        "4001",
        "4002",
        4,
        "UPDATE",
        "Supported: timer\nSession-Expires: 6;refresher=uac\nContent-Length: 0\n",
    ));
    after.push_str(
        r#"  <recv response="200"><action><ereg regexp="6;refresher=uac" search_in="hdr" header="Session-Expires:" check_it="true" assign_to="se2"/></action></recv>
  <recv request="BYE" timeout="12000"/>
"#,
    );
    after.push_str(OK_TO_LAST);
    after.push_str("  <Reference variables=\"se,rq,se2\"/>\n");
    let started = Instant::now();
    let run = sipp(
        &dir,
        "alice",
        &caller(
            engine.sip,
            "4001",
            "alice-pw",
            "4002",
            "Supported: timer\nSession-Expires: 6;refresher=uac\nMin-SE: 4\n",
            se_check,
            &after,
        ),
        &engine.sip.to_string(),
        &strs(&sipp_args(free_port())),
    );
    assert!(
        run.ok,
        "the caller got the timer, its refresh answered and then BYE: {}",
        run.output
    );
    // The BYE came about 4 s (6 − 6/3) after the refresh, not at once.
    assert!(
        started.elapsed() >= Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(
        wait_bg(&mut bob, 10),
        "the callee got the INFO with the digit and BYE: {}",
        std::fs::read_to_string(dir.join("bob.log")).unwrap_or_default()
    );
    std::thread::sleep(Duration::from_millis(300));
    let db = vaxel_engine::db::Db::open(&dir).unwrap();
    let call = db.calls(1).unwrap().remove(0);
    assert!(call.ended_at.is_some(), "{call:?}");
}

/// RFC 4028 §8.1.1: a Session-Expires below our Min-SE gets 422 with our Min-SE.
#[test]
fn sipp_too_small_session_interval_gets_422() {
    if !have("sipp") && skip_or_fail("session timer 422", "sipp (sip-tester)") {
        return;
    }
    let dir = temp_dir("timer422");
    let engine = EngineProc::start_with(
        &dir,
        Some(&office("")),
        free_port(),
        &["--session-min-se", "120"],
    );
    register_at(&dir, &engine, "4002", "bob-pw", free_port());
    let scn = caller(
        engine.sip,
        "4001",
        "alice-pw",
        "4002",
        "Supported: timer\nSession-Expires: 90\n",
        "",
        "",
    );
    // Expect 422 where the 200 would be, then acknowledge it.
    let scn = scn.replace(
        r#"<recv response="200" rrs="true"></recv>"#,
        r#"<recv response="422"><action><ereg regexp="120" search_in="hdr" header="Min-SE:" check_it="true" assign_to="m"/></action></recv>"#,
    );
    let scn = scn
        .replace(
            "ACK [next_url] SIP/2.0",
            "ACK sip:4002@[remote_ip]:[remote_port] SIP/2.0",
        )
        .replace("</scenario>", "  <Reference variables=\"m\"/>\n</scenario>");
    let run = sipp(
        &dir,
        "alice",
        &scn,
        &engine.sip.to_string(),
        &strs(&sipp_args(free_port())),
    );
    assert!(run.ok, "422 with Min-SE 120: {}", run.output);
}

/// RFC 3891: Alice calls Bob; Dan sends INVITE with Replaces naming Bob's dialog
/// with the engine (the callee wrote its Call-ID and tags to a file); Dan takes
/// Bob's place (200), Bob gets BYE, Alice stays and gets BYE when Dan hangs up.
#[test]
fn sipp_invite_with_replaces_takes_an_answered_legs_place() {
    if !have("sipp") && skip_or_fail("replaces", "sipp (sip-tester)") {
        return;
    }
    let dir = temp_dir("replaces");
    let engine = EngineProc::start(&dir, Some(&office("")), free_port());
    let bob_port = free_port();
    register_at(&dir, &engine, "4002", "bob-pw", bob_port);
    let dialog_file = dir.join("dialog.csv");
    // Bob writes the dialog as Dan's injection file: Call-ID;engine's tag;Bob's tag.
    let on_invite = format!(
        r#"<action><ereg regexp="tag=([^;>]+)" search_in="hdr" header="From:" assign_to="junk,ftag"/><exec command="printf 'SEQUENTIAL\n[call_id];[$ftag];[pid]b[call_number]\n' | tr -d '\r' > {}"/></action>"#,
        dialog_file.display()
    );
    let bob_scn = callee("", &on_invite).replace(
        "</scenario>",
        "  <Reference variables=\"junk\"/>\n</scenario>",
    );
    let mut bob = sipp_bg(&dir, "bob", &bob_scn, &strs(&sipp_args(bob_port)));
    std::thread::sleep(Duration::from_millis(300));
    let alice_scn = caller(
        engine.sip,
        "4001",
        "alice-pw",
        "4002",
        "",
        "",
        &format!("  <recv request=\"BYE\" timeout=\"20000\"/>\n{OK_TO_LAST}"),
    );
    let alice_args = sipp_args(free_port());
    let mut alice = {
        let mut a = vec![engine.sip.to_string()];
        a.extend(alice_args);
        sipp_bg(&dir, "alice", &alice_scn, &strs(&a))
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(&dialog_file).map_or(true, |s| s.lines().count() < 2) {
        assert!(Instant::now() < deadline, "Bob never answered");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    let mut dan_after = String::from("  <pause milliseconds=\"1000\"/>\n");
    dan_after.push_str(&caller_request(
        "4004",
        "4002",
        3,
        "BYE",
        "Content-Length: 0\n",
    ));
    dan_after.push_str("  <recv response=\"200\"/>\n");
    let dan_scn = caller(
        engine.sip,
        "4004",
        "dan-pw",
        "4002",
        "Replaces: [field0];from-tag=[field1];to-tag=[field2]\n",
        "",
        &dan_after,
    );
    let mut dan_args = sipp_args(free_port());
    dan_args.extend(["-inf".to_owned(), dialog_file.display().to_string()]);
    let run = sipp(
        &dir,
        "dan",
        &dan_scn,
        &engine.sip.to_string(),
        &strs(&dan_args),
    );
    assert!(
        run.ok,
        "Dan's INVITE with Replaces answered: {}",
        run.output
    );
    assert!(
        wait_bg(&mut bob, 10),
        "Bob was replaced (BYE): {}",
        std::fs::read_to_string(dir.join("bob.log")).unwrap_or_default()
    );
    assert!(
        wait_bg(&mut alice, 10),
        "Alice stayed until Dan hung up: {}",
        std::fs::read_to_string(dir.join("alice.log")).unwrap_or_default()
    );
    std::thread::sleep(Duration::from_millis(300));
    let db = vaxel_engine::db::Db::open(&dir).unwrap();
    let call = db.calls(1).unwrap().remove(0);
    assert_eq!(db.leg_count(call.id).unwrap(), 3, "A, B and Dan's leg");
    assert!(call.ended_at.is_some());
}

/// RFC 4028 on the callee's leg: the engine's INVITE asks for a session timer with
/// itself as refresher (§7.1); the callee (SIPp) answers a 6 s session, refresher
/// uac, and the engine refreshes it at half the interval (§7.4, §10): with a
/// re-INVITE offering its last SDP unchanged when the callee does not list UPDATE
/// in Allow, with UPDATE when it does. The call goes on until the caller hangs up.
fn callee_refreshed_by_the_engine(update: bool) {
    let name = if update { "cstimer-upd" } else { "cstimer-inv" };
    let dir = temp_dir(name);
    let engine = EngineProc::start_with(
        &dir,
        Some(&office("")),
        free_port(),
        &["--session-min-se", "4", "--session-check-secs", "3600"],
    );
    let bob_port = free_port();
    register_at(&dir, &engine, "4002", "bob-pw", bob_port);
    let allow = if update {
        "Allow: INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE\n"
    } else {
        "Allow: INVITE, ACK, BYE, CANCEL, OPTIONS\n"
    };
    let sdp = "v=0
o=user2 53655765 2353687637 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 8 101
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
";
    let refresh = if update {
        format!(
            r#"  <recv request="UPDATE" timeout="6000">
    <action><ereg regexp="6;refresher=uac" search_in="hdr" header="Session-Expires:" check_it="true" assign_to="r1"/></action>
  </recv>
{OK_TO_LAST}"#
        )
    } else {
        format!(
            r#"  <recv request="INVITE" timeout="6000">
    <action><ereg regexp="6;refresher=uac" search_in="hdr" header="Session-Expires:" check_it="true" assign_to="r1"/><ereg regexp="m=audio [0-9]+ RTP/AVP 8" search_in="body" check_it="true" assign_to="r2"/></action>
  </recv>
  <send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:[local_ip]:[local_port]>
Content-Type: application/sdp
Content-Length: [len]

{sdp}]]></send>
  <recv request="ACK"/>
"#
        )
    };
    let refs = if update { "i1,i2,r1" } else { "i1,i2,r1,r2" };
    let bob_scn = format!(
        r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="callee with a session timer">
  <recv request="INVITE">
    <action><ereg regexp="refresher=uac" search_in="hdr" header="Session-Expires:" check_it="true" assign_to="i1"/><ereg regexp="timer" search_in="hdr" header="Supported:" check_it="true" assign_to="i2"/></action>
  </recv>
  <send retrans="500"><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:];tag=[pid]b[call_number]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:[local_ip]:[local_port]>
Session-Expires: 6;refresher=uac
Require: timer
{allow}Content-Type: application/sdp
Content-Length: [len]

{sdp}]]></send>
  <recv request="ACK"/>
{refresh}  <recv request="BYE" timeout="10000"/>
{OK_TO_LAST}  <Reference variables="{refs}"/>
</scenario>
"#
    );
    let bob_args = sipp_args(bob_port);
    let mut bob = sipp_bg(&dir, "bob", &bob_scn, &strs(&bob_args));
    std::thread::sleep(Duration::from_millis(300));
    let after = format!(
        "  <pause milliseconds=\"5000\"/>\n{}  <recv response=\"200\"/>\n",
        caller_request("4001", "4002", 3, "BYE", "Content-Length: 0\n")
    );
    let run = sipp(
        &dir,
        "alice",
        &caller(engine.sip, "4001", "alice-pw", "4002", "", "", &after),
        &engine.sip.to_string(),
        &strs(&sipp_args(free_port())),
    );
    assert!(
        run.ok,
        "the caller's call lasted until its BYE: {}",
        run.output
    );
    assert!(
        wait_bg(&mut bob, 10),
        "the callee was asked for a timer, refreshed by {} and got BYE: {}",
        if update { "UPDATE" } else { "re-INVITE" },
        std::fs::read_to_string(dir.join("bob.log")).unwrap_or_default()
    );
}

#[test]
fn sipp_callee_session_refreshed_by_reinvite() {
    if !have("sipp") && skip_or_fail("callee session timer", "sipp (sip-tester)") {
        return;
    }
    callee_refreshed_by_the_engine(false);
}

#[test]
fn sipp_callee_session_refreshed_by_update() {
    if !have("sipp") && skip_or_fail("callee session timer", "sipp (sip-tester)") {
        return;
    }
    callee_refreshed_by_the_engine(true);
}

/// Glare (RFC 3261 §14.1) on the engine's re-INVITE after a blind transfer: Alice
/// calls Bob, Bob REFERs her to Carla; when Carla answers, the engine re-INVITEs
/// Alice with Carla's media. Alice answers 491 Request Pending (as if her own
/// re-INVITE crossed it); the engine sends the re-INVITE again after the §14.1
/// delay (0 to 2 s: Alice chose the Call-ID) and Alice accepts it.
#[test]
fn sipp_transfer_reinvite_is_retried_after_491() {
    if !have("sipp") && skip_or_fail("glare on a transfer re-INVITE", "sipp (sip-tester)") {
        return;
    }
    let dir = temp_dir("glare");
    let engine = EngineProc::start(&dir, Some(&office("")), free_port());
    let (bob_port, carla_port) = (free_port(), free_port());
    register_at(&dir, &engine, "4002", "bob-pw", bob_port);
    register_at(&dir, &engine, "4003", "carla-pw", carla_port);
    let carla_args = sipp_args(carla_port);
    let mut carla = sipp_bg(&dir, "carla", &callee("", ""), &strs(&carla_args));
    let bob_scn = format!(
        r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="referrer">
  <recv request="INVITE" rrs="true">
    <action><ereg regexp=".*" search_in="hdr" header="From:" assign_to="peer"/></action>
  </recv>
  <send retrans="500"><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:];tag=[pid]b[call_number]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:[local_ip]:[local_port]>
Content-Type: application/sdp
Content-Length: [len]

v=0
o=user2 53655765 2353687637 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 8 101
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
]]></send>
  <recv request="ACK"/>
  <pause milliseconds="500"/>
  <send retrans="500"><![CDATA[
REFER [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:4002@{DOMAIN}>;tag=[pid]b[call_number]
To:[$peer]
Call-ID: [call_id]
CSeq: 1 REFER
Contact: <sip:[local_ip]:[local_port]>
Refer-To: <sip:4003@{DOMAIN}>
Referred-By: <sip:4002@{DOMAIN}>
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="202"/>
  <recv request="NOTIFY"/>
{OK_TO_LAST}  <recv request="NOTIFY"/>
{OK_TO_LAST}  <recv request="BYE"/>
{OK_TO_LAST}</scenario>
"#
    );
    let bob_args = sipp_args(bob_port);
    let mut bob = sipp_bg(&dir, "bob", &bob_scn, &strs(&bob_args));
    std::thread::sleep(Duration::from_millis(300));
    let after = format!(
        r#"  <recv request="INVITE" timeout="10000"/>
  <send><![CDATA[
SIP/2.0 491 Request Pending
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
  <recv request="ACK"/>
  <recv request="INVITE" timeout="6000"/>
  <send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:4001@[local_ip]:[local_port]>
Content-Type: application/sdp
Content-Length: [len]

v=0
o=user1 53655765 2353687638 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 8 101
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
]]></send>
  <recv request="ACK"/>
  <pause milliseconds="500"/>
{}  <recv response="200"/>
"#,
        caller_request("4001", "4002", 3, "BYE", "Content-Length: 0\n")
    );
    let run = sipp(
        &dir,
        "alice",
        &caller(engine.sip, "4001", "alice-pw", "4002", "", "", &after),
        &engine.sip.to_string(),
        &strs(&sipp_args(free_port())),
    );
    assert!(
        run.ok,
        "Alice refused the first re-INVITE with 491 and got it again: {}",
        run.output
    );
    for (name, p) in [("bob", &mut bob), ("carla", &mut carla)] {
        assert!(
            wait_bg(p, 10),
            "{name}: {}",
            std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default()
        );
    }
}
