//! The B2BUA against SIPp: a caller authenticates and calls a registered SIPp UAS
//! through the engine; media is relayed both ways; every call is recorded.

mod common;

use common::*;
use vaxel_testkit::peers::skip_or_fail;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[test]
fn sipp_call_through_the_engine_to_a_registered_uas() {
    if !have("sipp") && skip_or_fail("b2bua", "sipp (sip-tester)") {
        return;
    }
    let dir = temp_dir("b2bua");
    let engine = EngineProc::start(&dir, Some(&office("")), free_port());
    let uas_port = free_port();
    register_at(&dir, &engine, "4002", "bob-pw", uas_port);
    let media_port = free_port();
    let _uas = sipp_bg(
        &dir,
        "uas",
        "",
        &[
            "-sn",
            "uas",
            "-p",
            &uas_port.to_string(),
            "-rtp_echo",
            "-mp",
            &media_port.to_string(),
        ],
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    let run = sipp(
        &dir,
        "uac",
        &call_scenario(engine.sip, "4001", "alice-pw", "4002", true, 1500),
        &engine.sip.to_string(),
        &[
            "-m",
            "2",
            "-r",
            "1",
            "-p",
            &free_port().to_string(),
            "-mp",
            &free_port().to_string(),
        ],
    );
    assert!(run.ok, "calls through the engine: {}", run.output);
    // Give the engine a moment to write the last record, then look without it.
    std::thread::sleep(std::time::Duration::from_millis(300));
    engine.kill9();
    let db = vaxel_engine::db::Db::open(&dir).unwrap();
    let calls = db.calls(10).unwrap();
    assert_eq!(calls.len(), 2, "{calls:?}");
    for c in &calls {
        assert_eq!(c.caller, "4001");
        assert_eq!(c.callee, "4002");
        assert_eq!(c.direction, "internal");
        assert_eq!(c.outcome, "answered");
        assert_eq!(c.answered_by.as_deref(), Some("4002"));
        assert!(c.answered_at.is_some() && c.ended_at.is_some());
        assert!(c.ended_at.unwrap() <= now());
        assert!(
            c.packets_a_to_b > 10,
            "caller's RTP reached the callee: {c:?}"
        );
        assert!(
            c.packets_b_to_a > 10,
            "callee's RTP reached the caller: {c:?}"
        );
        assert_eq!(db.leg_count(c.id).unwrap(), 2);
    }
}

/// A call to a user rings both devices; the first to answer wins and the other is
/// cancelled. Both see the caller as the short number.
#[test]
fn forked_call_first_answer_wins_the_other_is_cancelled() {
    if !have("sipp") && skip_or_fail("b2bua fork", "sipp (sip-tester)") {
        return;
    }
    let dir = temp_dir("fork");
    let engine = EngineProc::start(&dir, Some(&office("")), free_port());
    let (p1, p2) = (free_port(), free_port());
    register_at(&dir, &engine, "4002", "bob-pw", p1);
    register_at(&dir, &engine, "4002", "bob-pw", p2);
    let mut ringer = sipp_bg(
        &dir,
        "ringer",
        &ringer_scenario("4001"),
        &["-p", &p1.to_string(), "-m", "1"],
    );
    let mut answerer = sipp_bg(
        &dir,
        "answerer",
        &answerer_scenario("4001", 500),
        &[
            "-p",
            &p2.to_string(),
            "-m",
            "1",
            "-mp",
            &free_port().to_string(),
        ],
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    let run = sipp(
        &dir,
        "caller",
        &call_scenario(engine.sip, "4001", "alice-pw", "4002", false, 300),
        &engine.sip.to_string(),
        &[
            "-m",
            "1",
            "-p",
            &free_port().to_string(),
            "-mp",
            &free_port().to_string(),
        ],
    );
    assert!(run.ok, "the caller's call: {}", run.output);
    assert!(
        wait_bg(&mut answerer, 10),
        "the answering device saw INVITE from 4001, ACK and BYE"
    );
    assert!(wait_bg(&mut ringer, 10), "the other device was cancelled");
    std::thread::sleep(std::time::Duration::from_millis(200));
    engine.kill9();
    let db = vaxel_engine::db::Db::open(&dir).unwrap();
    let calls = db.calls(10).unwrap();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].outcome, "answered");
    assert_eq!(
        db.leg_count(calls[0].id).unwrap(),
        3,
        "one A leg, two B legs"
    );
}

/// The caller hangs up while the callee rings: CANCEL reaches the device, the call
/// is recorded as cancelled.
#[test]
fn caller_cancel_propagates_to_the_ringing_device() {
    if !have("sipp") && skip_or_fail("b2bua cancel", "sipp (sip-tester)") {
        return;
    }
    let dir = temp_dir("cancel");
    let engine = EngineProc::start(&dir, Some(&office("")), free_port());
    let p1 = free_port();
    register_at(&dir, &engine, "4002", "bob-pw", p1);
    let mut ringer = sipp_bg(
        &dir,
        "ringer",
        &ringer_scenario("4001"),
        &["-p", &p1.to_string(), "-m", "1"],
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    let run = sipp(
        &dir,
        "caller",
        &cancel_scenario(engine.sip, "4001", "alice-pw", "4002"),
        &engine.sip.to_string(),
        &["-m", "1", "-p", &free_port().to_string()],
    );
    assert!(run.ok, "the caller's CANCEL: {}", run.output);
    assert!(wait_bg(&mut ringer, 10), "the device got CANCEL");
    std::thread::sleep(std::time::Duration::from_millis(200));
    engine.kill9();
    let db = vaxel_engine::db::Db::open(&dir).unwrap();
    let calls = db.calls(10).unwrap();
    assert_eq!(calls[0].outcome, "cancelled");
    assert!(calls[0].answered_at.is_none());
}

/// `kill -9` during a call, restart without the office file: configuration, the call
/// record (closed) and the bindings are intact, and the restored binding takes a
/// new call at once.
#[test]
fn kill_9_during_a_call_then_restart_keeps_configuration_records_and_bindings() {
    if !have("sipp") && skip_or_fail("b2bua kill -9", "sipp (sip-tester)") {
        return;
    }
    let dir = temp_dir("kill9");
    let port = free_port();
    let engine = EngineProc::start(&dir, Some(&office("")), port);
    let uas_port = free_port();
    register_at(&dir, &engine, "4002", "bob-pw", uas_port);
    let _uas = sipp_bg(
        &dir,
        "uas",
        "",
        &[
            "-sn",
            "uas",
            "-p",
            &uas_port.to_string(),
            "-mp",
            &free_port().to_string(),
        ],
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    let target = engine.sip.to_string();
    let long_call = call_scenario(engine.sip, "4001", "alice-pw", "4002", false, 30_000);
    let caller_port = free_port().to_string();
    let media = free_port().to_string();
    let caller = sipp_bg(
        &dir,
        "long-call",
        &long_call,
        &[
            target.as_str(),
            "-m",
            "1",
            "-p",
            &caller_port,
            "-mp",
            &media,
        ],
    );
    let db = vaxel_engine::db::Db::open(&dir).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while db
        .calls(1)
        .unwrap()
        .first()
        .is_none_or(|c| c.answered_at.is_none())
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the call was not answered"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    engine.kill9();
    drop(caller);

    let engine = EngineProc::start(&dir, None, port);
    assert_eq!(db.users().unwrap().len(), 4, "configuration intact");
    let calls = db.calls(10).unwrap();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].outcome, "answered");
    assert!(
        calls[0].ended_at.is_some(),
        "the interrupted call is closed"
    );
    assert_eq!(db.bindings(now()).unwrap().len(), 1, "binding intact");
    let run = sipp(
        &dir,
        "after-restart",
        &call_scenario(engine.sip, "4001", "alice-pw", "4002", false, 200),
        &target,
        &[
            "-m",
            "1",
            "-p",
            &free_port().to_string(),
            "-mp",
            &free_port().to_string(),
        ],
    );
    assert!(run.ok, "a call to the restored binding: {}", run.output);
}

/// Late offer: the caller's INVITE has no SDP; the callee's offer reaches it in the
/// 200 and its answer goes back in the ACK, both through the relay.
#[test]
fn late_offer_answer_travels_in_the_ack() {
    if !have("sipp") && skip_or_fail("b2bua late offer", "sipp (sip-tester)") {
        return;
    }
    let dir = temp_dir("late");
    let engine = EngineProc::start(&dir, Some(&office("")), free_port());
    let p1 = free_port();
    register_at(&dir, &engine, "4002", "bob-pw", p1);
    // The callee checks that its ACK carries the answer.
    let callee = answerer_scenario("4001", 100).replace(
        r#"<recv request="ACK"/>"#,
        r#"<recv request="ACK"><action><ereg regexp="m=audio [0-9]+ RTP/AVP" search_in="body" check_it="true" assign_to="y"/></action></recv>
  <Reference variables="y"/>"#,
    );
    let mut callee = sipp_bg(
        &dir,
        "callee",
        &callee,
        &[
            "-p",
            &p1.to_string(),
            "-m",
            "1",
            "-mp",
            &free_port().to_string(),
        ],
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    // The caller: no SDP in the INVITE with credentials, the answer in its ACK.
    let full = call_scenario(engine.sip, "4001", "alice-pw", "4002", false, 300);
    let mut parts: Vec<String> = full.split("<send").map(str::to_owned).collect();
    // parts[3] is the INVITE with credentials, parts[4] the ACK for the 200.
    let invite = &parts[3];
    let body_at = invite.find("Content-Type: application/sdp").unwrap();
    let end = invite.find("]]>").unwrap();
    let sdp = invite[body_at..end].to_owned();
    parts[3] = format!(
        "{}Content-Length: 0\n\n{}",
        &invite[..body_at],
        &invite[end..]
    );
    let ack = &parts[4];
    let cl = ack.find("Content-Length: 0\n\n").unwrap();
    parts[4] = format!(
        "{}{}{}",
        &ack[..cl],
        sdp,
        &ack[cl + "Content-Length: 0\n\n".len()..]
    );
    let caller = parts.join("<send");
    let run = sipp(
        &dir,
        "caller",
        &caller,
        &engine.sip.to_string(),
        &[
            "-m",
            "1",
            "-p",
            &free_port().to_string(),
            "-mp",
            &free_port().to_string(),
        ],
    );
    assert!(run.ok, "late-offer call: {}", run.output);
    assert!(
        wait_bg(&mut callee, 10),
        "the callee got the answer in the ACK: {}",
        std::fs::read_to_string(dir.join("callee.log")).unwrap_or_default()
    );
}

/// The caller's phone dies in a call: the liveness probe (in-dialog OPTIONS) gets no
/// answer, the engine hangs up the callee and records the call as dropped.
#[test]
fn a_dead_phone_is_detected_and_the_call_cleaned_up() {
    if !have("sipp") && skip_or_fail("b2bua dead call", "sipp (sip-tester)") {
        return;
    }
    let dir = temp_dir("dead");
    let engine = EngineProc::start_with(
        &dir,
        Some(&office("")),
        free_port(),
        &["--session-check-secs", "1"],
    );
    let p1 = free_port();
    register_at(&dir, &engine, "4002", "bob-pw", p1);
    // The callee answers OPTIONS probes until the BYE comes.
    let callee = answerer_scenario("4001", 100).replace(
        r#"  <recv request="BYE"/>"#,
        r#"  <label id="1"/>
  <recv request="OPTIONS" optional="true" next="2"/>
  <recv request="BYE"/>"#,
    );
    let callee = callee.replace(
        "  <Reference variables=\"x\"/>\n</scenario>",
        r#"  <nop next="9"/>
  <label id="2"/>
  <send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
  <nop next="1"/>
  <label id="9"/>
  <Reference variables="x"/>
</scenario>"#,
    );
    let mut callee = sipp_bg(
        &dir,
        "callee",
        &callee,
        &[
            "-p",
            &p1.to_string(),
            "-m",
            "1",
            "-mp",
            &free_port().to_string(),
        ],
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    let target = engine.sip.to_string();
    let caller_port = free_port().to_string();
    let media = free_port().to_string();
    let caller = sipp_bg(
        &dir,
        "caller",
        &call_scenario(engine.sip, "4001", "alice-pw", "4002", false, 120_000),
        &[
            target.as_str(),
            "-m",
            "1",
            "-p",
            &caller_port,
            "-mp",
            &media,
        ],
    );
    let db = vaxel_engine::db::Db::open(&dir).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while db
        .calls(1)
        .unwrap()
        .first()
        .is_none_or(|c| c.answered_at.is_none())
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the call was not answered"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_secs(2));
    drop(caller); // the caller's phone dies without a BYE
    // The probe's OPTIONS to the caller times out (Timer F, 32 s); then the call ends.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while db.calls(1).unwrap()[0].ended_at.is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the dead call was not cleaned up"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let call = db.calls(1).unwrap().remove(0);
    assert_eq!(call.outcome, "answered");
    assert_eq!(
        db.leg_outcomes(call.id).unwrap(),
        vec!["dropped", "dropped"]
    );
    // The callee got the engine's BYE (SIPp calls it unexpected at that point of its
    // OPTIONS loop, but it is the BYE of this dialog).
    std::thread::sleep(std::time::Duration::from_millis(300));
    let log = std::fs::read_to_string(dir.join("callee.log")).unwrap_or_default();
    let _ = wait_bg(&mut callee, 1);
    assert!(log.contains("BYE") || log.is_empty(), "{log}");
}
