//! Trunks with a SIPp "provider" on 127.0.0.3: an inbound number reaches its user
//! without a challenge; outbound calls go out by prefix with the user's long number;
//! users without permission are refused; emergency numbers are always allowed; a
//! user permitted to present another number of the plan does so with
//! P-Preferred-Identity.

mod common;

use common::*;
use vaxel_testkit::peers::skip_or_fail;

fn trunk(provider_port: u16) -> String {
    format!(
        r#"
[[trunks]]
name = "provider"
host = "127.0.0.3"
port = {provider_port}
inbound = [{{ number = "+4570100000", target = "4003" }}]
outbound_prefixes = ["00"]
caller_id = "+4570100000"
"#
    )
}

#[test]
fn inbound_and_outbound_through_a_sipp_provider() {
    if !have("sipp") && skip_or_fail("trunk", "sipp (sip-tester)") {
        return;
    }
    let dir = temp_dir("trunk");
    let provider_port = free_port();
    let engine = EngineProc::start(&dir, Some(&office(&trunk(provider_port))), free_port());
    let target = engine.sip.to_string();

    // Inbound: the provider calls the main number; reception (4003) answers.
    let carla = free_port();
    register_at(&dir, &engine, "4003", "carla-pw", carla);
    let _carla = sipp_bg(
        &dir,
        "carla",
        "",
        &[
            "-sn",
            "uas",
            "-p",
            &carla.to_string(),
            "-mp",
            &free_port().to_string(),
        ],
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    let run = sipp(
        &dir,
        "provider-in",
        "",
        &target,
        &[
            "-sn",
            "uac",
            "-s",
            "+4570100000",
            "-m",
            "1",
            "-i",
            "127.0.0.3",
            "-p",
            &free_port().to_string(),
            "-mp",
            &free_port().to_string(),
            "-d",
            "500",
        ],
    );
    assert!(run.ok, "inbound call from the provider: {}", run.output);

    // Outbound by prefix: 4001 (allowed) shows its long number; 112 from 4002 (not
    // allowed external calls) still goes out.
    let mut provider = sipp_bg(
        &dir,
        "provider-out",
        &answerer_scenario("\\+45701040[0-9]+", 100),
        &[
            "-i",
            "127.0.0.3",
            "-p",
            &provider_port.to_string(),
            "-m",
            "2",
            "-mp",
            &free_port().to_string(),
        ],
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    let run = sipp(
        &dir,
        "out-4001",
        &call_scenario(engine.sip, "4001", "alice-pw", "004512345678", false, 200),
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
    assert!(run.ok, "outbound call: {}", run.output);
    let run = sipp(
        &dir,
        "refused-4002",
        &refused_scenario(engine.sip, "4002", "bob-pw", "004512345678", 403),
        &target,
        &["-m", "1", "-p", &free_port().to_string()],
    );
    assert!(
        run.ok,
        "external call without permission is refused with 403: {}",
        run.output
    );
    let run = sipp(
        &dir,
        "emergency-4002",
        &call_scenario(engine.sip, "4002", "bob-pw", "112", false, 200),
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
    assert!(run.ok, "emergency call: {}", run.output);
    assert!(
        wait_bg(&mut provider, 10),
        "the provider got both calls with a long caller number"
    );

    std::thread::sleep(std::time::Duration::from_millis(200));
    engine.kill9();
    let db = vaxel_engine::db::Db::open(&dir).unwrap();
    let mut calls = db.calls(10).unwrap();
    calls.reverse();
    let summary: Vec<(String, String, String, String)> = calls
        .iter()
        .map(|c| {
            (
                c.caller.clone(),
                c.callee.clone(),
                c.direction.clone(),
                c.outcome.clone(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                "sipp".into(),
                "4003".into(),
                "inbound".into(),
                "answered".into()
            ),
            (
                "4001".into(),
                "004512345678".into(),
                "outbound".into(),
                "answered".into()
            ),
            (
                "4002".into(),
                "112".into(),
                "outbound".into(),
                "answered".into()
            ),
        ]
    );
}

/// R-302: a user permitted to present the main number asks for it with
/// P-Preferred-Identity (RFC 3325 §9.2) and the provider sees it; a user without
/// that permission asking the same shows its own long number.
#[test]
fn a_permitted_user_presents_the_main_number_outward() {
    if !have("sipp") && skip_or_fail("trunk", "sipp (sip-tester)") {
        return;
    }
    let dir = temp_dir("trunk-present");
    let provider_port = free_port();
    let extra = format!(
        r#"
[[users]]
extension = "4005"
number = "+4570104005"
name = "Erik"
password = "erik-pw"
external_calls = true
present_numbers = ["+4570100000"]
{}"#,
        trunk(provider_port)
    );
    let engine = EngineProc::start(&dir, Some(&office(&extra)), free_port());
    let target = engine.sip.to_string();
    let with_ppi = |user: &str, password: &str| {
        call_scenario(engine.sip, user, password, "004512345678", false, 100).replace(
            &format!("Contact: <sip:{user}@[local_ip]:[local_port]>\n"),
            &format!(
                "Contact: <sip:{user}@[local_ip]:[local_port]>\nP-Preferred-Identity: <sip:+4570100000@{DOMAIN}>\n"
            ),
        )
    };
    for (user, password, shown) in [
        ("4005", "erik-pw", "\\+4570100000"),
        ("4001", "alice-pw", "\\+4570104001"),
    ] {
        let scenario = with_ppi(user, password);
        assert!(scenario.contains("P-Preferred-Identity"), "{scenario}");
        let mut provider = sipp_bg(
            &dir,
            &format!("provider-{user}"),
            &answerer_scenario(shown, 100),
            &[
                "-i",
                "127.0.0.3",
                "-p",
                &provider_port.to_string(),
                "-m",
                "1",
                "-mp",
                &free_port().to_string(),
            ],
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
        let run = sipp(
            &dir,
            &format!("out-{user}"),
            &scenario,
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
        assert!(run.ok, "outbound call from {user}: {}", run.output);
        assert!(
            wait_bg(&mut provider, 10),
            "the provider saw {user}'s call from {shown}"
        );
    }
}

/// The engine registers to a provider that challenges it (SIPp checks the digest).
#[test]
fn the_engine_registers_at_the_provider_with_digest() {
    if !have("sipp") && skip_or_fail("trunk register", "sipp (sip-tester)") {
        return;
    }
    let dir = temp_dir("trunk-register");
    let provider_port = free_port();
    let provider_scenario = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="provider registrar">
  <recv request="REGISTER"/>
  <send><![CDATA[
SIP/2.0 401 Unauthorized
[last_Via:]
[last_From:]
[last_To:];tag=[pid]p[call_number]
[last_Call-ID:]
[last_CSeq:]
WWW-Authenticate: Digest realm="provider.test", nonce="4f1d2a9b7c"
Content-Length: 0

]]></send>
  <recv request="REGISTER">
    <action><verifyauth assign_to="authvalid" username="office" password="trunk-pw"/></action>
  </recv>
  <nop hide="true" test="authvalid" next="good"/>
  <recv request="NEVER" timeout="200"/>
  <label id="good"/>
  <send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:];tag=[pid]p[call_number]
[last_Call-ID:]
[last_CSeq:]
[last_Contact:];expires=3600
Content-Length: 0

]]></send>
</scenario>
"#;
    let mut provider = sipp_bg(
        &dir,
        "provider-registrar",
        provider_scenario,
        &[
            "-i",
            "127.0.0.3",
            "-p",
            &provider_port.to_string(),
            "-m",
            "1",
        ],
    );
    std::thread::sleep(std::time::Duration::from_millis(200));
    let trunk = format!(
        "[[trunks]]\nname = \"provider\"\nhost = \"127.0.0.3\"\nport = {provider_port}\nregister = true\nusername = \"office\"\npassword = \"trunk-pw\"\noutbound_prefixes = [\"00\"]\n"
    );
    let _engine = EngineProc::start(&dir, Some(&office(&trunk)), free_port());
    assert!(
        wait_bg(&mut provider, 10),
        "the provider saw a REGISTER with valid credentials: {}",
        std::fs::read_to_string(dir.join("provider-registrar.log")).unwrap_or_default()
    );
}
