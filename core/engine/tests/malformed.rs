//! R-501: malformed requests get 400 (from SIPp and from a raw socket), garbage is
//! dropped, and the engine keeps serving.

mod common;

use std::net::UdpSocket;
use std::time::Duration;

use common::*;
use vaxel_testkit::peers::skip_or_fail;

fn bad_scenario(header: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="malformed">
  <send retrans="500"><![CDATA[
INVITE sip:4002@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:4001@{DOMAIN}>;tag=[pid]m[call_number]
To: <sip:4002@{DOMAIN}>
Call-ID: [call_id]
{header}
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="400"/>
</scenario>
"#
    )
}

#[test]
fn malformed_requests_get_400_and_the_engine_keeps_serving() {
    if !have("sipp") && skip_or_fail("malformed", "sipp (sip-tester)") {
        return;
    }
    let dir = temp_dir("malformed");
    let engine = EngineProc::start(
        &dir,
        Some(&office("[protection]\nallow = [\"127.0.0.1\"]\n")),
        free_port(),
    );
    let target = engine.sip.to_string();
    // Each is malformed in a way that still lets a response be built (§8.2.6: the
    // response copies Via, From, To, Call-ID and CSeq; without those it is dropped).
    for (i, header) in [
        "CSeq: 1 INVITE\nMax-Forwards: many",
        "CSeq: 1 INVITE\nExpires: soon",
        "CSeq: 1 INVITE\nContact: <sip:@@@>;q=7",
    ]
    .iter()
    .enumerate()
    {
        let run = sipp(
            &dir,
            &format!("bad{i}"),
            &bad_scenario(header),
            &target,
            &["-m", "1", "-p", &free_port().to_string()],
        );
        assert!(run.ok, "{header:?} → 400: {}", run.output);
    }
    // Garbage and truncated messages from a raw socket: no crash, no answer needed.
    let raw = UdpSocket::bind("127.0.0.1:0").unwrap();
    for junk in [
        &b"\x00\x01\x02garbage"[..],
        b"INVITE sip:4002@x SIP/2.0\r\nVia: SIP/2.0/UDP",
        b"INVITE sip:4002@x SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKx\r\nCSeq: abc INVITE\r\n\r\n",
        b"SIP/2.0 200 OK\r\n\r\n",
        b"INVITE sip:4002@x SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKy\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:b@c>\r\nCall-ID: y\r\nCSeq: 1 REGISTER\r\n\r\n",
        &[0xffu8; 1400][..],
        b"OPTIONS sip:x SIP/2.0\r\nContent-Length: 99999999999\r\n\r\n",
    ] {
        raw.send_to(junk, engine.sip).unwrap();
    }
    std::thread::sleep(Duration::from_millis(200));
    // Still serving: a registration works.
    assert_eq!(
        register_from("127.0.0.1", engine.sip, "4002", "bob-pw"),
        Some(200)
    );
}
